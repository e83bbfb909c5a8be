//! `observer`: the connectivity observer for hosts that run self-hosted GitHub Actions runners.

mod capture;
mod catalog;
mod check;
mod check_cmd;
mod cli;
mod correlate;
mod dns;
mod events;
mod export;
mod kernel;
mod kernel_caps;
mod mountinfo;
mod names;
mod output;
mod record;
mod report;
mod session;
mod sockdiag;
mod suggest;
mod throughput;
mod tracker;
mod tui;
mod watch;

use std::{future::Future, io::Write as _, process::ExitCode};

use clap::Parser as _;

/// Exit status: success.
const EXIT_OK: u8 = 0;
/// Exit status: the command failed (message on stderr).
const EXIT_FAILURE: u8 = 1;
/// Exit status: the capture could not start (privileges, kernel features).
const EXIT_CAPTURE: u8 = 3;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        cli::Command::Report(args) => record::report(args),
        cli::Command::Catalog(args) => print_catalog(args),
        cli::Command::Suggest(args) => suggest::run(args),
        cli::Command::Tui(args) => tui::run(args),
        cli::Command::Watch(args) => block_on(watch::run(args)),
        cli::Command::Record(args) => block_on(record::record(args)),
        cli::Command::Check(args) => match block_on(check_cmd::run(args)) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("observer: {e:#}");
            if e.downcast_ref::<capture::CaptureError>().is_some() {
                ExitCode::from(EXIT_CAPTURE)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
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

fn print_catalog(args: &cli::CatalogCmdArgs) -> anyhow::Result<()> {
    let catalog = args.catalog.load()?;
    let text = if args.toml {
        catalog.to_toml()
    } else {
        catalog.render_text()
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
