//! The pure core that turns kernel events into what the observer reports, step by step:
//!
//! 1. [`tracker`]: flow ids, outcomes, socket errors joined to their flows, DNS packets decoded
//!    ([`dns`], TCP streams reassembled by [`dnstcp`]), all as [`events::Observed`] records
//!    (the event log's lines);
//! 2. [`dnsmatch`]: each DNS response checked against the queries seen (only the first answer to
//!    a query the capture saw, from the server asked, may name anything);
//! 3. [`names`]: which name a client asked DNS for, for each address it then connects to;
//! 4. [`correlate`]: each flow and lookup classified against the catalog (documented host,
//!    undeclared destination, unresolved address), failures and timeouts kept per name;
//! 5. [`throughput`]: per flow, host and group rates from the byte counters.
//!
//! [`hello`]: a flow's first bytes each way (TLS SNI, HTTP CONNECT and proxy requests, status).
//!
//! Time is data here (kernel and wall-clock nanoseconds carried by the events), so a live
//! capture and the replay of its event log reach the same state. Nothing in this folder does
//! I/O or needs privileges.

pub mod correlate;
pub mod dns;
pub mod dnsmatch;
pub mod dnstcp;
pub mod events;
pub mod hello;
pub mod names;
pub mod throughput;
pub mod tracker;
