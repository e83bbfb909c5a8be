//! `observer`: the connectivity observer for hosts that run self-hosted GitHub Actions runners.
//!
//! The data path, layer by layer (docs/architecture.md):
//!
//! - [`capture`]: the eBPF programs loaded and attached, their ring buffer drained, raw kernel
//!   records decoded; [`session`] runs a live capture and stamps its observations;
//! - [`pipeline`]: the pure core: flows and DNS answers tracked, names for addresses, each flow
//!   and lookup correlated with the [`catalog`], throughput;
//! - [`eventlog`]: the observations as JSON lines (and text), written and replayed;
//! - [`report`]: the audit report built from the correlator; [`export`] renders it (JSON,
//!   Markdown, HTML, CSV) and merges fleets; [`suggest`] turns it into firewall rules;
//! - [`check`]: the active preflight; [`tui`]: the live terminal UI; [`metrics`]: Prometheus
//!   metrics of a long-running capture, and their HTTP endpoint;
//! - [`proxy`]: the HTTP proxies the runner uses, parsed once and found on the host (bottom layer);
//! - [`format`], [`outfile`], [`options`], [`exit`], [`hash`]: shared helpers and settings.
//!
//! The command line lives in the binary (`cli`, `cmd`): nothing here knows it.

pub mod capture;
pub mod catalog;
pub mod check;
pub mod daemon;
pub mod eventlog;
pub mod exit;
pub mod export;
pub mod format;
pub mod hash;
pub mod metrics;
pub mod options;
pub mod outfile;
pub mod pipeline;
pub mod proxy;
pub mod report;
pub mod sanitize;
pub mod session;
pub mod suggest;
pub mod tui;
