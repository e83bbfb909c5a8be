//! `observer report EVENTS` (the audit report of an event log, offline, no root) and
//! `observer report merge REPORTS...` (a fleet's reports combined).

use observer::{eventlog, export, outfile};

use crate::cli::{ReportArgs, ReportCommand};

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
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
