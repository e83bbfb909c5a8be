//! `observer record` (live, headless) and `observer report` (offline, from an event log): both
//! feed the correlator and write the audit report atomically.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter},
    path::Path,
};

use anyhow::Context as _;

use crate::{
    cli::{RecordArgs, ReportArgs, ReportCommand},
    correlate::Correlator,
    export::{self, Document, Format},
    output::{parse_line, write_out, Sink},
    report, session,
};

pub async fn record(args: &RecordArgs) -> anyhow::Result<()> {
    let mut correlator = args.catalog.correlator()?;
    let config = args.capture.config(correlator.catalog());
    let mut log = match &args.events {
        Some(path) => Some(Sink::new(
            BufWriter::new(
                File::create(path)
                    .with_context(|| format!("cannot create the event log {}", path.display()))?,
            ),
            true,
        )),
        None => None,
    };
    let captured = session::run(
        &config,
        session::after(args.capture.duration()),
        |mut batch| {
            for (ts, observed) in &mut batch {
                correlator.observe(*ts, observed);
            }
            if let Some(log) = &mut log {
                log.write(&batch).context("cannot write the event log")?;
            }
            Ok(())
        },
    )
    .await;
    // Whatever happened, what was captured is written.
    let written = write_report(&mut correlator, &args.out, args.format);
    captured.and(written)
}

/// `observer report EVENTS`, or `observer report merge REPORTS...`.
pub fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let events = match (&args.command, &args.events) {
        (Some(ReportCommand::Merge(m)), _) => {
            return export::merge::run(&m.reports, &m.labels, &m.out, m.format)
        }
        (None, Some(events)) => events,
        (None, None) => anyhow::bail!("no event log given"),
    };
    let mut correlator = args.catalog.correlator()?;
    let file = File::open(events)
        .with_context(|| format!("cannot open the event log {}", events.display()))?;
    replay(
        BufReader::new(file),
        &events.display().to_string(),
        &mut correlator,
    )?;
    write_report(&mut correlator, &args.out, args.format)
}

/// Feeds every readable line of an event log to the correlator. Unreadable lines are reported on
/// stderr (the first few) and counted in the report; they never stop the replay.
pub fn replay(
    input: impl BufRead,
    source: &str,
    correlator: &mut Correlator,
) -> anyhow::Result<()> {
    const SHOWN: u64 = 5;
    let mut bad = 0u64;
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {source}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok((ts, mut observed)) => correlator.observe(ts, &mut observed),
            Err(problem) => {
                bad += 1;
                correlator.note_unreadable_line();
                if bad <= SHOWN {
                    eprintln!("observer: {source} line {}: {problem}; skipped", n + 1);
                }
            }
        }
    }
    if bad > SHOWN {
        eprintln!("observer: {source}: {bad} unreadable lines in all, skipped");
    }
    Ok(())
}

/// Writes the report in `format` to `out` (`-` for stdout), atomically.
pub fn write_report(correlator: &mut Correlator, out: &Path, format: Format) -> anyhow::Result<()> {
    correlator.finish();
    write_document(&Document::single(report::build(correlator)), out, format)
}

/// Renders a report (or a merge of reports) in `format` and writes it to `out` (`-` for
/// stdout), atomically: a temporary file beside it, then a rename, so a reader never sees half
/// a report. An incomplete capture is also said on stderr, whatever the format.
pub fn write_document(doc: &Document, out: &Path, format: Format) -> anyhow::Result<()> {
    let text = export::render(doc, format).context("cannot render the report")?;
    let capture = &doc.report.capture;
    if !capture.complete {
        eprintln!(
            "observer: the report is incomplete: {}",
            capture.incomplete_because.join("; ")
        );
    }
    write_out(out, &text, "the report")
}
