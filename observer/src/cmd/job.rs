//! `observer job started|completed`: what the runner's job hooks run (docs/daemon.md). They
//! send the job's identity (its `GITHUB_*` variables) to the daemon, which finds the job's
//! processes from this process's own credentials on the socket.
//!
//! Monitoring must not stop CI: when the daemon cannot be reached, the hooks say so on stderr
//! and exit 0, unless the job asked for a gate (`--require`) or a verdict (`--fail-on`), which
//! cannot be given without the daemon.

use std::io::Write as _;

use observer::{
    daemon::{
        protocol::{Envelope, JobIdentity, Request, VERSION},
        socket,
    },
    exit,
};

use crate::cli::{FailOn, JobCommand};

/// `job started --require`: a required group is blocked now.
pub const REQUIRED_BLOCKED: u8 = 20;
/// `job completed --fail-on`: the job's report has a finding of that kind.
pub const FINDINGS: u8 = 21;

pub async fn run(command: &JobCommand) -> anyhow::Result<u8> {
    let identity = JobIdentity::from_env(|k| std::env::var(k).ok());
    match command {
        JobCommand::Started(args) => {
            let request = Envelope {
                v: VERSION,
                request: Request::JobStarted {
                    job: identity,
                    require: args.require.clone(),
                },
            };
            let response = match socket::request(&args.socket, &request).await {
                Ok(r) => r,
                Err(e) if args.require.is_empty() => {
                    eprintln!("observer: warning: the job is not observed: {e:#}");
                    return Ok(exit::OK);
                }
                Err(e) => return Err(e),
            };
            if !response.ok {
                let why = response.error.unwrap_or_default();
                if args.require.is_empty() {
                    eprintln!(
                        "observer: warning: the job is not observed: {}",
                        observer::sanitize::line(&why)
                    );
                    return Ok(exit::OK);
                }
                anyhow::bail!("the daemon refused: {why}");
            }
            if !response.blocked.is_empty() {
                eprintln!(
                    "observer: required groups are blocked now: {}",
                    observer::sanitize::line(&response.blocked.join("; "))
                );
                return Ok(REQUIRED_BLOCKED);
            }
            Ok(exit::OK)
        }
        JobCommand::Completed(args) => {
            let request = Envelope {
                v: VERSION,
                request: Request::JobCompleted { job: identity },
            };
            let response = match socket::request(&args.socket, &request).await {
                Ok(r) => r,
                Err(e) if args.fail_on.is_empty() => {
                    eprintln!("observer: warning: no job report: {e:#}");
                    return Ok(exit::OK);
                }
                Err(e) => return Err(e),
            };
            if !response.ok {
                let why = response.error.unwrap_or_default();
                if args.fail_on.is_empty() {
                    eprintln!(
                        "observer: warning: no job report: {}",
                        observer::sanitize::line(&why)
                    );
                    return Ok(exit::OK);
                }
                anyhow::bail!("the daemon refused: {why}");
            }
            if let (false, Some(summary), Some(path)) = (
                args.no_summary,
                &response.summary,
                std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()),
            ) {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot append to $GITHUB_STEP_SUMMARY ({}): {e}",
                            std::path::Path::new(&path).display()
                        )
                    })?;
                writeln!(file, "{summary}")?;
            }
            let findings = response.findings.unwrap_or_default();
            eprintln!(
                "observer: job report {}: {}",
                observer::sanitize::line(response.report.as_deref().unwrap_or("-")),
                findings.describe()
            );
            let failed = args.fail_on.iter().any(|k| match k {
                FailOn::Blocked => findings.blocked,
                FailOn::Undeclared => findings.undeclared,
                FailOn::Slow => findings.slow,
            });
            Ok(if failed { FINDINGS } else { exit::OK })
        }
    }
}
