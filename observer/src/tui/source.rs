//! Where the TUI's observations come from: the live capture, or a recorded event log played at
//! its recorded pace (or faster). Either runs on its own thread and feeds the correlator behind
//! a mutex, batch by batch; the UI takes the lock at most once per tick to build its view, so
//! drawing never waits on the capture and the capture never waits on drawing.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex, MutexGuard,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    capture::CaptureConfig, eventlog::parse_line, pipeline::correlate::Correlator,
    pipeline::events::Observed, session,
};

use super::app::{SourceState, SourceStatus};

/// Lines fed per lock when a replay runs as fast as it can.
const REPLAY_CHUNK: usize = 2_000;
/// The longest a replay sleeps before looking at its stop flag again.
const REPLAY_NAP: Duration = Duration::from_millis(50);

/// How the source tells the time.
#[derive(Debug)]
enum Clock {
    /// The wall clock: the capture's timestamps are wall-clock times.
    Wall,
    /// The replay's clock: the recorded time of where the replay is.
    Replay {
        speed: f64,
        /// The first event's time and when it was played.
        start: Option<(u64, Instant)>,
        /// The latest time fed.
        fed_ns: u64,
        /// The time of the next event, while the replay waits for it.
        next_ns: Option<u64>,
    },
}

/// What the source thread and the UI share.
pub struct Shared {
    pub correlator: Correlator,
    /// Observations fed so far.
    pub observations: u64,
    /// Changes with every batch fed: the UI rebuilds its view only when it moved (or the clock
    /// did).
    pub generation: u64,
    pub state: SourceState,
    /// A replay's progress through its file, 0 to 1.
    pub progress: Option<f64>,
    /// The source thread panicked.
    pub panicked: bool,
    clock: Clock,
}

impl Shared {
    fn new(correlator: Correlator, clock: Clock) -> Self {
        Self {
            correlator,
            observations: 0,
            generation: 0,
            state: SourceState::Running,
            progress: None,
            panicked: false,
            clock,
        }
    }

    /// A finished source holding `correlator` (for tests of what the UI loop does with it).
    #[cfg(test)]
    pub fn finished(correlator: Correlator) -> Self {
        let mut s = Self::new(correlator, Clock::Wall);
        s.state = SourceState::Finished;
        s
    }

    /// Feeds one batch to the correlator.
    fn feed(&mut self, batch: &mut [(u64, Observed)]) {
        for (ts, observed) in batch.iter_mut() {
            self.correlator.observe(*ts, observed);
        }
        self.observations += batch.len() as u64;
        self.generation += 1;
        if let (Clock::Replay { fed_ns, .. }, Some(last)) =
            (&mut self.clock, batch.iter().map(|(ts, _)| *ts).max())
        {
            *fed_ns = (*fed_ns).max(last);
        }
    }

    /// "Now" for the view: the wall clock when live; when replaying, the recorded time the
    /// replay has reached (frozen at the last event once it is over).
    pub fn now_ns(&self) -> u64 {
        match &self.clock {
            Clock::Wall => wall_ns(),
            Clock::Replay {
                speed,
                start,
                fed_ns,
                next_ns,
            } => replay_now(
                *speed,
                *start,
                *fed_ns,
                *next_ns,
                self.state == SourceState::Running,
                Instant::now(),
            ),
        }
    }

    pub fn status(&self) -> SourceStatus {
        SourceStatus {
            state: self.state.clone(),
            progress: self.progress,
        }
    }
}

/// The replay's clock: the first event's time plus the wall time since it played, times the
/// speed; never before what was fed, never past the next event not fed yet.
fn replay_now(
    speed: f64,
    start: Option<(u64, Instant)>,
    fed_ns: u64,
    next_ns: Option<u64>,
    running: bool,
    at: Instant,
) -> u64 {
    let Some((first_ns, started)) = start else {
        return fed_ns;
    };
    if !running || speed == 0.0 {
        return fed_ns;
    }
    let played = at.saturating_duration_since(started).as_secs_f64() * speed * 1e9;
    let t = first_ns.saturating_add(played as u64);
    let t = next_ns.map_or(t, |n| t.min(n));
    t.max(fed_ns)
}

/// How long after the first event an event at `ts_ns` plays.
fn due(first_ns: u64, ts_ns: u64, speed: f64) -> Duration {
    Duration::from_secs_f64(ts_ns.saturating_sub(first_ns) as f64 / 1e9 / speed)
}

pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Locks the shared state; a poisoned lock means the other side panicked.
pub fn lock(shared: &Mutex<Shared>) -> anyhow::Result<MutexGuard<'_, Shared>> {
    shared
        .lock()
        .map_err(|_| anyhow::anyhow!("the capture thread failed (panicked)"))
}

/// Marks the shared state when the source thread unwinds.
struct PanicFlag(Arc<Mutex<Shared>>);

impl Drop for PanicFlag {
    fn drop(&mut self) {
        if thread::panicking() {
            let mut s = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.panicked = true;
            s.state = SourceState::Failed("the source thread panicked".to_owned());
        }
    }
}

/// A running source.
pub struct Source {
    pub shared: Arc<Mutex<Shared>>,
    stop: Option<StopSignal>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

enum StopSignal {
    Capture(tokio::sync::oneshot::Sender<()>),
    Replay(Arc<AtomicBool>),
}

impl Source {
    /// Starts the live capture on its own thread and waits until its probes are attached, so
    /// that a capture that cannot start (no root, no cgroup v2) is reported before the screen
    /// is taken over, with its own exit status.
    pub fn live(
        config: CaptureConfig,
        duration: Option<Duration>,
        correlator: Correlator,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::new(correlator, Clock::Wall)));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let feed = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                let _flag = PanicFlag(Arc::clone(&feed));
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                let stop = async move {
                    tokio::select! {
                        () = session::after(duration) => {}
                        _ = stop_rx => {}
                    }
                };
                let mut started = Some(started_tx);
                let result = runtime.block_on(session::run(&config, stop, |batch| {
                    lock(&feed)?.feed(batch);
                    if let Some(tx) = started.take() {
                        let _ = tx.send(());
                    }
                    Ok(())
                }));
                let mut s = lock(&feed)?;
                s.state = match &result {
                    Ok(()) => SourceState::Finished,
                    Err(e) => SourceState::Failed(format!("{e:#}")),
                };
                result
            })
            .context("cannot start the capture thread")?;
        let mut source = Self {
            shared,
            stop: Some(StopSignal::Capture(stop_tx)),
            thread: Some(thread),
        };
        if started_rx.recv().is_err() {
            // The thread ended before the capture started: its error says why.
            return Err(source
                .join()
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the capture stopped before it started")));
        }
        Ok(source)
    }

    /// Plays an event log on its own thread: at its recorded pace times `speed`, or as fast as
    /// it can with `speed` 0. Unreadable lines are counted in the report, as `observer report`
    /// does.
    pub fn replay(path: &Path, speed: f64, correlator: Correlator) -> anyhow::Result<Self> {
        let file = File::open(path)
            .with_context(|| format!("cannot open the event log {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let clock = Clock::Replay {
            speed,
            start: None,
            fed_ns: 0,
            next_ns: None,
        };
        let shared = Arc::new(Mutex::new(Shared::new(correlator, clock)));
        let stop = Arc::new(AtomicBool::new(false));
        let feed = Arc::clone(&shared);
        let stopped = Arc::clone(&stop);
        let source = path.display().to_string();
        let thread = thread::Builder::new()
            .name("replay".into())
            .spawn(move || {
                let _flag = PanicFlag(Arc::clone(&feed));
                let result = play(BufReader::new(file), size, speed, &feed, &stopped)
                    .with_context(|| format!("cannot read {source}"));
                let mut s = lock(&feed)?;
                s.state = match &result {
                    Ok(()) => SourceState::Finished,
                    Err(e) => SourceState::Failed(format!("{e:#}")),
                };
                if result.is_ok() {
                    s.progress = Some(1.0);
                }
                if let Clock::Replay { next_ns, .. } = &mut s.clock {
                    *next_ns = None;
                }
                result
            })
            .context("cannot start the replay thread")?;
        Ok(Self {
            shared,
            stop: Some(StopSignal::Replay(stop)),
            thread: Some(thread),
        })
    }

    /// Stops the source and waits for its thread; the capture's error, if it failed.
    pub fn join(&mut self) -> anyhow::Result<()> {
        match self.stop.take() {
            Some(StopSignal::Capture(tx)) => {
                let _ = tx.send(());
            }
            Some(StopSignal::Replay(flag)) => flag.store(true, Ordering::Relaxed),
            None => {}
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow::anyhow!("the source thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// The replay loop: reads lines, waits until each is due, feeds them in batches.
fn play(
    input: impl BufRead,
    size: u64,
    speed: f64,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut batch: Vec<(u64, Observed)> = Vec::new();
    let mut unreadable = 0u64;
    let mut read = 0u64;
    let mut start: Option<(u64, Instant)> = None;
    let flush = |batch: &mut Vec<(u64, Observed)>,
                 unreadable: &mut u64,
                 read: u64,
                 next: Option<u64>|
     -> anyhow::Result<()> {
        let mut s = lock(shared)?;
        for _ in 0..std::mem::take(unreadable) {
            s.correlator.note_unreadable_line();
        }
        if !batch.is_empty() {
            s.feed(batch);
        }
        if size > 0 {
            s.progress = Some((read as f64 / size as f64).min(1.0));
        }
        if let Clock::Replay { next_ns, .. } = &mut s.clock {
            *next_ns = next;
        }
        batch.clear();
        Ok(())
    };
    for line in input.lines() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let line = line?;
        read += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Ok((ts, observed)) = parse_line(&line) else {
            unreadable += 1;
            continue;
        };
        let (first_ns, started) = *start.get_or_insert_with(|| {
            let now = Instant::now();
            if let Ok(mut s) = lock(shared) {
                if let Clock::Replay { start, .. } = &mut s.clock {
                    *start = Some((ts, now));
                }
            }
            (ts, now)
        });
        if speed > 0.0 {
            let at = started + due(first_ns, ts, speed);
            if Instant::now() < at {
                // Everything due so far is fed before waiting for this one.
                flush(&mut batch, &mut unreadable, read, Some(ts))?;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let now = Instant::now();
                    if now >= at {
                        break;
                    }
                    thread::sleep((at - now).min(REPLAY_NAP));
                }
            }
        }
        batch.push((ts, observed));
        if batch.len() >= REPLAY_CHUNK {
            flush(&mut batch, &mut unreadable, read, None)?;
        }
    }
    flush(&mut batch, &mut unreadable, read, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_replay_clock_runs_at_its_speed_and_waits_for_the_next_event() {
        let t0 = Instant::now();
        let start = Some((100 * S, t0));
        let at = t0 + Duration::from_secs(2);
        assert_eq!(replay_now(1.0, start, 100 * S, None, true, at), 102 * S);
        assert_eq!(replay_now(10.0, start, 100 * S, None, true, at), 120 * S);
        // Not past the next event the replay has not fed yet.
        assert_eq!(
            replay_now(10.0, start, 100 * S, Some(110 * S), true, at),
            110 * S
        );
        // As fast as possible, or over: the time of the last event fed.
        assert_eq!(replay_now(0.0, start, 105 * S, None, true, at), 105 * S);
        assert_eq!(replay_now(1.0, start, 105 * S, None, false, at), 105 * S);
        assert_eq!(due(100 * S, 103 * S, 2.0), Duration::from_millis(1500));
    }

    #[test]
    fn a_replay_feeds_every_line_and_counts_the_unreadable_ones() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/runner-workload.jsonl"
        );
        let text = std::fs::read_to_string(fixture).unwrap() + "not json\n";
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        let shared = Mutex::new(Shared::new(
            Correlator::new(Catalog::builtin()),
            Clock::Replay {
                speed: 0.0,
                start: None,
                fed_ns: 0,
                next_ns: None,
            },
        ));
        let stop = AtomicBool::new(false);
        play(text.as_bytes(), text.len() as u64, 0.0, &shared, &stop).unwrap();
        let s = shared.lock().unwrap();
        assert_eq!(s.observations, lines - 1);
        assert_eq!(s.correlator.capture().unreadable_lines, 1);
        assert_eq!(s.progress, Some(1.0));
        assert_eq!(Some(s.now_ns()), s.correlator.capture().ended_ns);
    }
}
