//! The live capture loop shared by `watch` and `record`: drains the kernel's ring buffer, polls
//! flow counters, releases held observations, stops on SIGINT/SIGTERM or after `--duration`, and
//! hands every batch of observations (stamped in nanoseconds since the Unix epoch) to a consumer.
//!
//! It also names the cgroups of what it saw: the first time a batch's flow or DNS packet carries
//! a cgroup id, the id is looked up off the loop ([`Lookups`]: a walk of the cgroup2 tree may read
//! thousands of directories) and a `cgroup_seen` observation follows when its path is found, so
//! that the event log, replayed offline, names each flow's workload after its container is gone.

use std::{future::Future, time::Duration};

use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use observer_ebpf::DNS_PENDING_SWEEP_NS;

use crate::{
    capture::cgroups::Lookups,
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
/// At the stop, how long the cgroup lookups still owed are waited for: one walk, which may have
/// to wait for `cgroups::MIN_REWALK`.
const SETTLE_CGROUPS: Duration = Duration::from_millis(1500);
/// The room kept for a batch between batches (a burst may fill more; it is given back after).
const BATCH_CAPACITY_MAX: usize = 4096;

/// Observations stamped with nanoseconds since the Unix epoch.
pub type Batch = Vec<(u64, Observed)>;

/// Starts a capture and runs it until a signal or `stop` completes; `consume` sees every batch,
/// the last one included. An error from `consume` stops the capture (after the last batch is
/// offered).
pub async fn run(
    config: &CaptureConfig,
    stop: impl Future<Output = ()>,
    consume: impl FnMut(&mut Batch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // Listening before the programs load (which takes seconds on a slow machine): a SIGTERM or
    // SIGINT meanwhile (`systemctl stop` right after a start) stops the capture cleanly once it
    // runs, instead of killing the process by the signal's default action.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let capture = Capture::start(config)?;
    let stop = async {
        tokio::select! {
            () = stop => {}
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    };
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
    mut consume: impl FnMut(&mut Batch) -> anyhow::Result<()>,
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
    // Stamps a batch in place (kernel time to Unix time) for the consumer.
    let stamp = |items: &mut Batch| {
        for (ts, _) in items.iter_mut() {
            *ts = clock.unix_ns(*ts);
        }
    };
    let mut tracker = Tracker::new();
    tracker.count_dns_repeats(config.dns_repeats);
    let mut cgroups = Lookups::start(capture.cgroup.clone());
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
    let mut first = vec![(monotonic_ns(), started)];
    stamp(&mut first);
    consume(&mut first)?;
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
            ask_cgroups(&mut cgroups, &batch);
            stamp(&mut batch);
            consume(&mut batch)?;
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
    let mut stats_reported_ns = monotonic_ns();

    // One batch, emptied after each consumer call: its room is reused (a new vector per batch,
    // grown from empty or given room up front, cost the allocator a consolidation of its free
    // lists at each batch in a flood).
    let mut batch = Vec::new();
    let result: anyhow::Result<()> = loop {
        batch.clear();
        if batch.capacity() > BATCH_CAPACITY_MAX {
            batch.shrink_to(BATCH_CAPACITY_MAX);
        }
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
                // Held DNS queries whose answer never came: read as copied (a timeout is one).
                capture.take_held_dns_queries(now.saturating_sub(DNS_PENDING_SWEEP_NS), |record| {
                    ingest(&mut tracker, &mut diag, &mut batch, record);
                });
                read_flows(&capture, &mut tracker, &mut diag, &mut batch, now);
                let stats = stats(&tracker, &capture, &cgroups);
                let stats_due = config.stats_every.is_some_and(|every| {
                    now.saturating_sub(stats_reported_ns) >= every.as_nanos() as u64
                });
                if stats.lost_events > reported_lost || stats_due {
                    reported_lost = stats.lost_events;
                    stats_reported_ns = now;
                    batch.push((now, Observed::CaptureStats(stats)));
                }
            }
            found = cgroups.next() => {
                if let Some((cgroup_id, workload)) = found {
                    batch.push((monotonic_ns(), Observed::CgroupSeen { cgroup_id, workload }));
                }
            }
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            () = &mut stop => break Ok(()),
        }
        capture.remember_dns_answers(&tracker.take_repeatable_answers());
        ask_cgroups(&mut cgroups, &batch);
        stamp(&mut batch);
        if let Err(e) = consume(&mut batch) {
            break Err(e);
        }
    };

    // Stopping: what the kernel already delivered, a last reading of the open flows' counters
    // (bytes that moved since the last poll: an upload's answer that came just before the stop
    // is what ends and judges that upload), everything held back, and the totals.
    let mut last = Vec::new();
    capture.drain_pending(|record| ingest(&mut tracker, &mut diag, &mut last, record));
    capture.take_held_dns_queries(u64::MAX, |record| {
        ingest(&mut tracker, &mut diag, &mut last, record);
    });
    // A query the kernel released meanwhile (its answer came) is in the ring with that answer.
    capture.drain_pending(|record| ingest(&mut tracker, &mut diag, &mut last, record));
    read_flows(&capture, &mut tracker, &mut diag, &mut last, monotonic_ns());
    last.extend(tracker.flush());
    ask_cgroups(&mut cgroups, &last);
    for (cgroup_id, workload) in cgroups.settle(SETTLE_CGROUPS).await {
        last.push((
            monotonic_ns(),
            Observed::CgroupSeen {
                cgroup_id,
                workload,
            },
        ));
    }
    last.push((
        monotonic_ns(),
        Observed::CaptureStats(stats(&tracker, &capture, &cgroups)),
    ));
    stamp(&mut last);
    let last = consume(&mut last);
    result.and(last)
}

/// Reads the open flows' kernel counters (and, without the length tracepoints, the kernel's TCP
/// statistics): progress of the flows whose bytes moved, and the flows sock_diag saw closed.
fn read_flows(
    capture: &Capture,
    tracker: &mut Tracker,
    diag: &mut Option<Poller>,
    batch: &mut Vec<(u64, Observed)>,
    now: u64,
) {
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
            if let Some(event) = event {
                tracker.on_event_into(event, batch);
            }
        }
        Err(e) => {
            log::debug!("undecodable record: {e}");
            tracker.on_undecodable();
        }
    }
}

/// Asks for the workload of every cgroup id the batch's flows and DNS packets carry (each id
/// once per capture: [`Lookups::ask`] remembers).
fn ask_cgroups(cgroups: &mut Lookups, batch: &[(u64, Observed)]) {
    for (_, observed) in batch {
        match observed {
            Observed::FlowOpened { process, .. } | Observed::FlowEstablished { process, .. } => {
                cgroups.ask(process.cgroup_id);
            }
            Observed::FlowClosed(c) => cgroups.ask(c.process.cgroup_id),
            Observed::DnsQuery(d) | Observed::DnsResponse(d) => {
                cgroups.ask(d.cgroup_id);
                if let Some(p) = &d.process {
                    cgroups.ask(p.cgroup_id);
                }
            }
            _ => {}
        }
    }
}

fn stats(tracker: &Tracker, capture: &Capture, cgroups: &Lookups) -> CaptureStats {
    let (lost, skipped) = capture.kernel_counters();
    CaptureStats {
        lost_events: lost,
        dns_skipped: skipped,
        dns_repeats: capture.dns_repeats(),
        job_pids_full: capture.job_pids_full(),
        cgroups_unresolved: cgroups.unresolved(),
        ..tracker.stats()
    }
}
