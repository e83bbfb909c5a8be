//! `observer watch`: the live event stream.

use std::{
    io::{self, BufWriter},
    time::Duration,
};

use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, sleep_until, Instant, MissedTickBehavior},
};

use crate::{
    capture::{Capture, CaptureConfig},
    cli::WatchArgs,
    events::{CaptureStats, Observed},
    kernel::decode,
    output::{monotonic_ns, Clock, Sink},
    tracker::Tracker,
};

/// How often held-back observations are released.
const TICK: Duration = Duration::from_millis(100);
/// How often flow byte counters are read from the kernel map.
const POLL: Duration = Duration::from_secs(1);

pub async fn run(args: &WatchArgs) -> anyhow::Result<()> {
    let config = CaptureConfig {
        ports: args.ports.clone(),
        all_ports: args.all_ports,
    };
    let mut capture = Capture::start(&config)?;
    for p in capture.probes.iter().filter(|p| !p.attached) {
        eprintln!(
            "observer: warning: {} not attached to {}: {}; continuing without it",
            p.program,
            p.hook,
            p.error.as_deref().unwrap_or("unknown error")
        );
    }
    let clock = Clock::now();
    let mut sink = Sink::new(BufWriter::new(io::stdout().lock()), args.json, clock);
    let mut tracker = Tracker::new();
    sink.write([(
        monotonic_ns(),
        Observed::CaptureStarted {
            cgroup: capture.cgroup.display().to_string(),
            ports: if args.all_ports {
                Vec::new()
            } else {
                config.ports.clone()
            },
            all_ports: args.all_ports,
            probes: capture.probes.clone(),
        },
    )])?;

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut poll = interval(POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reported_lost = 0;

    let result: anyhow::Result<()> = loop {
        let mut batch = Vec::new();
        tokio::select! {
            drained = capture.drain(|record| match decode(record) {
                Ok(event) => batch.extend(tracker.on_event(event)),
                Err(e) => {
                    log::debug!("undecodable record: {e}");
                    tracker.on_undecodable();
                }
            }) => {
                if let Err(e) = drained {
                    break Err(e.into());
                }
            }
            _ = tick.tick() => batch.extend(tracker.on_tick(monotonic_ns())),
            _ = poll.tick() => {
                let now = monotonic_ns();
                for (key, flow) in capture.flows() {
                    batch.extend(tracker.on_snapshot(key, &flow, now));
                }
                let stats = stats(&tracker, &capture);
                if stats.lost_events > reported_lost {
                    reported_lost = stats.lost_events;
                    batch.push((now, Observed::CaptureStats(stats)));
                }
            }
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            () = wait_for(deadline) => break Ok(()),
        }
        if let Err(e) = sink.write(batch) {
            break Err(e.into());
        }
    };

    // Stopping: drain what the kernel already delivered, then report everything held back.
    let mut last = tracker.flush();
    last.push((
        monotonic_ns(),
        Observed::CaptureStats(stats(&tracker, &capture)),
    ));
    let written = sink.write(last).map_err(anyhow::Error::from);
    match result.and(written) {
        Err(e) if !is_broken_pipe(&e) => Err(e),
        _ => Ok(()),
    }
}

fn stats(tracker: &Tracker, capture: &Capture) -> CaptureStats {
    let (lost, skipped) = capture.kernel_counters();
    CaptureStats {
        lost_events: lost,
        dns_skipped: skipped,
        ..tracker.stats()
    }
}

async fn wait_for(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
