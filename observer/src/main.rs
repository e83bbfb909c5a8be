//! `observer`: the connectivity observer for hosts that run self-hosted GitHub Actions runners.

mod capture;
mod catalog;
mod cli;
mod dns;
mod events;
mod kernel;
mod mountinfo;
mod names;
mod output;
mod tracker;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;

/// Exit status: success.
const EXIT_OK: u8 = 0;
/// Exit status: the command failed (message on stderr).
const EXIT_FAILURE: u8 = 1;
/// Exit status: the capture could not start (privileges, kernel features).
const EXIT_CAPTURE: u8 = 3;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("observer: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            cli::Command::Watch(args) => watch::run(args).await,
        }
    });
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
