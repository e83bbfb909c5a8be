//! The command layer: each `observer` subcommand turns its parsed flags ([`crate::cli`]) into
//! the plain option structs of the subsystems, once, and runs them. Only this layer and `main`
//! know the command line; everything below takes domain values.

mod catalog;
mod check;
mod daemon;
mod job;
mod record;
mod report;
mod suggest;
mod tui;
mod watch;

use std::future::Future;

use observer::{exit, options::CatalogOptions, pipeline::correlate::Limits};

use crate::cli::{CatalogArgs, Command};

/// Runs one subcommand; the exit status on success (docs: README, docs/check.md).
pub fn run(command: &Command) -> anyhow::Result<u8> {
    match command {
        Command::Watch(args) => block_on(watch::run(args)).map(|()| exit::OK),
        Command::Record(args) => block_on(record::run(args)).map(|()| exit::OK),
        Command::Report(args) => report::run(args).map(|()| exit::OK),
        Command::Catalog(args) => catalog::run(args).map(|()| exit::OK),
        Command::Check(args) => block_on(check::run(args)),
        Command::Suggest(args) => suggest::run(args).map(|()| exit::OK),
        Command::Tui(args) => tui::run(args).map(|()| exit::OK),
        Command::Daemon(args) => block_on(daemon::run(args)).map(|()| exit::OK),
        Command::Job(args) => block_on(job::run(&args.command)),
    }
}

/// Runs a capture on a single-threaded runtime (the work is light; one thread keeps it simple).
fn block_on<T>(task: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(task)
}

impl CatalogArgs {
    /// The files these flags read (an output must not be one of them).
    pub fn inputs(&self) -> Vec<&std::path::Path> {
        self.catalog
            .iter()
            .chain(&self.meta)
            .map(std::path::PathBuf::as_path)
            .collect()
    }

    /// The catalog options these flags say.
    pub fn options(&self) -> CatalogOptions {
        CatalogOptions {
            catalog_files: self.catalog.clone(),
            meta_files: self.meta.clone(),
            sinkholes: self.sinkhole.clone(),
            limits: Limits {
                min_bps: self.min_throughput * 1000.0,
                long_poll_ns: u64::try_from(self.long_poll.as_nanos()).unwrap_or(u64::MAX),
                max_flows: self.max_flows,
            },
        }
    }
}
