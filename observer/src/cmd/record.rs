//! `observer record`: a live, headless capture fed to the correlator; the audit report is
//! written when it ends (whatever ended it), and optionally the event log as it goes.

use std::{fs::File, io::BufWriter};

use anyhow::Context as _;
use observer::{eventlog::Sink, export, outfile, pipeline::events::Observed, session};

use crate::cli::RecordArgs;

pub async fn run(args: &RecordArgs) -> anyhow::Result<()> {
    outfile::refuse_input(&args.out, &args.catalog.inputs())?;
    let mut correlator = args.catalog.options().correlator()?;
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
    // The event log now exists: the report must not be written over it.
    outfile::refuse_input(&args.out, args.events.as_slice())?;
    let out = args.out.display().to_string();
    let captured = session::run(&config, session::after(args.capture.duration()), |batch| {
        for (ts, observed) in batch.iter_mut() {
            if matches!(observed, Observed::CaptureStarted { .. }) {
                // Headless: say that the capture runs, and how it ends.
                eprintln!(
                    "observer: recording; SIGINT or SIGTERM{} stops it and writes {}",
                    if args.capture.duration().is_some() {
                        " (or the --duration)"
                    } else {
                        ""
                    },
                    observer::sanitize::line(&out)
                );
            }
            correlator.observe(*ts, observed);
        }
        if let Some(log) = &mut log {
            log.write(&*batch).context("cannot write the event log")?;
        }
        Ok(())
    })
    .await;
    // Whatever happened, what was captured is written.
    let written = export::write_report(&mut correlator, &args.out, args.format);
    captured.and(written)
}
