//! The audit report (`schema_version` 1, documented in docs/report.md): per group, per
//! documented host, per undeclared destination and per flow.
//!
//! - [`schema`]: the serde types, shared by every writer and reader of a report;
//! - [`classify`]: whether a flow or a DNS answer failed, and why (reason codes, statuses);
//! - [`build`](mod@build): the report of the correlator's state;
//! - [`read`](mod@read): reading a report file back, checking its `schema_version` once for
//!   every reader (`observer suggest`, `observer report merge`).

pub mod build;
pub mod classify;
pub mod read;
pub mod schema;

pub use build::build;
pub use classify::{failure, warning};
pub use read::{parse, read, ReadError};
pub use schema::*;
