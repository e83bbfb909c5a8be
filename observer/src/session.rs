//! The live capture loop shared by `watch` and `record`: drains the kernel's ring buffer, polls
//! flow counters, releases held observations, stops on SIGINT/SIGTERM or after `--duration`, and
//! hands every batch of observations (stamped in nanoseconds since the Unix epoch) to a consumer.

use std::{future::Future, time::Duration};

use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use crate::{
    capture::clock::{monotonic_ns, Clock},
    capture::kernel_caps::{AdoptionSource, BytesSource},
    capture::record::decode,
    capture::sockdiag::Poller,
    capture::{Capture, CaptureConfig},
    pipeline::events::{CaptureStats, Observed},
    pipeline::tracker::Tracker,
};

/// How often held-back observations are released.
const TICK: Duration = Duration::from_millis(100);
/// How often flow byte counters are read from the kernel map.
const POLL: Duration = Duration::from_secs(1);

/// Observations stamped with nanoseconds since the Unix epoch.
pub type Batch = Vec<(u64, Observed)>;

/// Starts a capture and runs it until a signal or `stop` completes; `consume` sees every batch,
/// the last one included. An error from `consume` stops the capture (after the last batch is
/// offered).
pub async fn run(
    config: &CaptureConfig,
    stop: impl Future<Output = ()>,
    consume: impl FnMut(Batch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let capture = Capture::start(config)?;
    run_started(capture, config, stop, consume).await
}

/// `stop` for a capture that lasts `duration`, or until a signal when `None`.
pub async fn after(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Runs a capture already started (see [`run`]).
pub async fn run_started(
    mut capture: Capture,
    config: &CaptureConfig,
    stop: impl Future<Output = ()>,
    mut consume: impl FnMut(Batch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for p in capture.probes.iter().filter(|p| !p.attached) {
        eprintln!(
            "observer: warning: {} not attached to {}: {}; continuing without it",
            p.program,
            p.hook,
            p.error.as_deref().unwrap_or("unknown error")
        );
    }
    let clock = Clock::now();
    let stamp = |items: Vec<(u64, Observed)>| -> Batch {
        items
            .into_iter()
            .map(|(mono, o)| (clock.unix_ns(mono), o))
            .collect()
    };
    let mut tracker = Tracker::new();
    let started = Observed::CaptureStarted {
        cgroup: capture.cgroup.display().to_string(),
        ports: if config.all_ports {
            Vec::new()
        } else {
            config.ports.clone()
        },
        all_ports: config.all_ports,
        probes: capture.probes.clone(),
        sources: capture.plan.sources.clone(),
        proxies: config.proxies.clone(),
    };
    consume(stamp(vec![(monotonic_ns(), started)]))?;
    // Kernels without the length tracepoints: bytes and adoption through sock_diag.
    let mut diag = (capture.plan.bytes != BytesSource::Tracepoints).then(Poller::new);
    if let Some(poller) = diag.as_mut() {
        if capture.plan.adoption == AdoptionSource::SockDiagAtStart {
            let now = monotonic_ns();
            let adopted = poller.adopt_existing(&config.ports, &capture.cgroup, now);
            let mut batch = Vec::new();
            for event in adopted {
                batch.extend(tracker.on_event(event));
            }
            consume(stamp(batch))?;
        }
    }

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    tokio::pin!(stop);
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut poll = interval(POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reported_lost = 0;

    let result: anyhow::Result<()> = loop {
        let mut batch = Vec::new();
        tokio::select! {
            drained = capture.drain(|record| ingest(&mut tracker, &mut diag, &mut batch, record)) => {
                if let Err(e) = drained {
                    break Err(e.into());
                }
            }
            _ = tick.tick() => {
                capture.drain_pending(|record| ingest(&mut tracker, &mut diag, &mut batch, record));
                batch.extend(tracker.on_tick(monotonic_ns()));
            }
            _ = poll.tick() => {
                // The kernel's word on adopted flows first (see `Poller::rewrite`).
                capture.drain_pending(|record| ingest(&mut tracker, &mut diag, &mut batch, record));
                let now = monotonic_ns();
                let mut flows = capture.flows();
                let closed = match diag.as_mut() {
                    Some(poller) => {
                        let closed = poller.poll(&mut flows, now);
                        flows.extend(poller.adopted_flows());
                        closed
                    }
                    None => Vec::new(),
                };
                for (key, flow) in flows {
                    batch.extend(tracker.on_snapshot(key, &flow, now));
                }
                for event in closed {
                    batch.extend(tracker.on_event(event));
                }
                let stats = stats(&tracker, &capture);
                if stats.lost_events > reported_lost {
                    reported_lost = stats.lost_events;
                    batch.push((now, Observed::CaptureStats(stats)));
                }
            }
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            () = &mut stop => break Ok(()),
        }
        if let Err(e) = consume(stamp(batch)) {
            break Err(e);
        }
    };

    // Stopping: what the kernel already delivered, everything held back, and the totals.
    let mut last = Vec::new();
    capture.drain_pending(|record| ingest(&mut tracker, &mut diag, &mut last, record));
    last.extend(tracker.flush());
    last.push((
        monotonic_ns(),
        Observed::CaptureStats(stats(&tracker, &capture)),
    ));
    let last = consume(stamp(last));
    result.and(last)
}

/// Decodes one ring-buffer record into the tracker, its observations into `batch`.
fn ingest(
    tracker: &mut Tracker,
    diag: &mut Option<Poller>,
    batch: &mut Vec<(u64, Observed)>,
    record: &[u8],
) {
    match decode(record) {
        Ok(event) => {
            let event = match diag.as_mut() {
                Some(poller) => poller.rewrite(event),
                None => Some(event),
            };
            batch.extend(event.into_iter().flat_map(|e| tracker.on_event(e)));
        }
        Err(e) => {
            log::debug!("undecodable record: {e}");
            tracker.on_undecodable();
        }
    }
}

fn stats(tracker: &Tracker, capture: &Capture) -> CaptureStats {
    let (lost, skipped) = capture.kernel_counters();
    CaptureStats {
        lost_events: lost,
        dns_skipped: skipped,
        job_pids_full: capture.job_pids_full(),
        ..tracker.stats()
    }
}
