//! `observer`: the connectivity observer for hosts that run self-hosted GitHub Actions runners.
//! The binary is the command line ([`cli`]) and the command layer ([`cmd`]) over the library.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser as _;
use observer::exit;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(&cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => match exit::for_error(&e) {
            // The reader of our output went away (`observer watch | head`): not a failure.
            None => ExitCode::from(exit::OK),
            Some(code) => {
                // Errors quote files and answers: nothing in them may act on the terminal.
                eprintln!("observer: {}", observer::sanitize::lines(&format!("{e:#}")));
                ExitCode::from(code)
            }
        },
    }
}
