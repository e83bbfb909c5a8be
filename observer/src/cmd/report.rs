//! `observer report EVENTS` (the audit report of an event log, offline, no root) and
//! `observer report merge REPORTS...` (a fleet's reports combined).

use observer::{eventlog, export, outfile};

use crate::cli::{ReportArgs, ReportCommand};

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    if args.jobs {
        return list_jobs(&args.state_dir);
    }
    let events = match (&args.command, &args.events) {
        (Some(ReportCommand::Merge(m)), _) => {
            outfile::refuse_input(&m.out, &m.reports)?;
            return export::merge::run(&m.reports, &m.labels, &m.out, m.format);
        }
        (None, Some(events)) => events,
        (None, None) => anyhow::bail!("no event log given"),
    };
    outfile::refuse_input(&args.out, &[events])?;
    outfile::refuse_input(&args.out, &args.catalog.inputs())?;
    let mut correlator = args.catalog.options().correlator()?;
    eventlog::replay_file(events, &mut correlator)?;
    export::write_report(&mut correlator, &args.out, args.format)
}

/// `observer report --jobs`: one line per stored job report, newest first.
fn list_jobs(state_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let jobs = observer::daemon::stored_jobs(state_dir);
    let mut out = std::io::stdout().lock();
    if jobs.is_empty() {
        writeln!(
            out,
            "no job reports in {}",
            observer::sanitize::line(&state_dir.join("jobs").display().to_string())
        )?;
        return Ok(());
    }
    for (path, report) in jobs {
        let line = match report {
            Ok(r) => {
                let findings = observer::daemon::findings(&r).describe();
                let job = r.job.unwrap_or_default();
                format!(
                    "{}  {}  run {} attempt {}  job {}  {}  {}",
                    job.completed_at.as_deref().unwrap_or("-"),
                    job.repository.as_deref().unwrap_or("-"),
                    job.run_id.as_deref().unwrap_or("-"),
                    job.run_attempt.as_deref().unwrap_or("-"),
                    job.job.as_deref().unwrap_or("-"),
                    findings,
                    path.display()
                )
            }
            Err(e) => format!("{}: unreadable: {e:#}", path.display()),
        };
        writeln!(out, "{}", observer::sanitize::line(&line))?;
    }
    Ok(())
}
