//! `observer tui`: the live view an operator opens over SSH on a runner that misbehaves. Can
//! this runner work, what is blocked and how, what is undeclared, how fast each group moves.
//!
//! The shape (docs/tui.md): a source thread ([`source`]: the live capture, or a recorded event
//! log replayed) feeds the correlator; once per tick (4 Hz) the UI loop builds a [`view`] of it
//! and hands it to the [`app`], whose state changes only through `App::update(msg)` (with the
//! event log of verdict changes in [`log`] and per-flow rates in [`rates`]); [`ui`] draws the
//! app, one module per panel. Keys come from their own thread ([`terminal`]).

mod app;
mod log;
mod rates;
mod source;
mod terminal;
#[cfg(test)]
mod tests;
mod ui;
mod view;

use std::{
    io::IsTerminal as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ratatui::crossterm::event::Event;
use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use crate::{
    capture::CaptureConfig,
    export::{self, Format},
    options::CatalogOptions,
    suggest,
};

use app::{App, Effect, Mode, Msg};
use source::{lock, Shared, Source};

/// How often the screen is redrawn with a fresh view.
const TICK: Duration = Duration::from_millis(250);
/// A view that took this long to build is rebuilt at most every `BUILD_BACKOFF` times as long,
/// so that a huge capture keeps the lock (and the capture waiting) a small share of the time.
const BUILD_BACKOFF: u32 = 3;

/// Where the TUI's observations come from.
#[derive(Clone, Debug)]
pub enum Feed {
    /// The live capture, until `q` or the duration.
    Live {
        config: CaptureConfig,
        duration: Option<Duration>,
    },
    /// A recorded event log played at `speed` (0: as fast as possible).
    Replay { path: PathBuf, speed: f64 },
}

/// `observer tui` options.
#[derive(Clone, Debug)]
pub struct Options {
    pub feed: Feed,
    /// Where `e` (the report) and `s` (rule suggestions) write their files.
    pub export_dir: PathBuf,
    pub catalog: CatalogOptions,
}

/// Runs `observer tui` until `q` (or SIGINT, SIGTERM, SIGHUP).
pub fn run(options: &Options) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "observer tui needs a terminal; without one use `observer watch` or `observer record`"
        );
    }
    let correlator = options.catalog.correlator()?;
    let (mut source, mode) = match &options.feed {
        Feed::Replay { path, speed } => (
            Source::replay(path, *speed, correlator)?,
            Mode::Replay {
                source: path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                ),
                speed: *speed,
            },
        ),
        Feed::Live { config, duration } => (
            Source::live(config.clone(), *duration, correlator)?,
            Mode::Live,
        ),
    };
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shown = runtime.block_on(ui_loop(&source.shared, mode, colour, options));
    // The screen is back; stop the capture (or replay) and say why it failed, if it did.
    let stopped = source.join();
    shown.and(stopped)
}

async fn ui_loop(
    shared: &Mutex<Shared>,
    mode: Mode,
    colour: bool,
    options: &Options,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let now = lock(shared)?.now_ns();
    let mut app = App::new(mode, colour, options.export_dir.clone(), now);
    let mut guard = terminal::enter().context("cannot set up the terminal")?;
    let mut input = terminal::Input::start().context("cannot read the keyboard")?;
    let mut views = Views::default();
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        guard.terminal.draw(|frame| ui::draw(frame, &app))?;
        tokio::select! {
            _ = tick.tick() => {
                for msg in views.refresh(shared)? {
                    app.update(msg);
                }
            }
            event = input.events.recv() => match event {
                Some(Event::Key(key)) => {
                    if let Some(effect) = app.update(Msg::Key(key)) {
                        if effect == Effect::Quit {
                            break;
                        }
                        let done = perform(effect, shared, &options.catalog);
                        // Anything written to stderr meanwhile is painted over.
                        guard.terminal.clear()?;
                        app.update(Msg::Done(done));
                    }
                }
                // A resize is drawn at the next turn; other events mean nothing here.
                Some(_) => {}
                None => break,
            },
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
        }
        if app.quit {
            break;
        }
    }
    Ok(())
}

/// Coalesces views: at most one per tick, none when nothing changed, fewer when they are
/// expensive.
#[derive(Default)]
struct Views {
    generation: Option<u64>,
    now_ns: u64,
    next_build: Option<Instant>,
}

impl Views {
    fn refresh(&mut self, shared: &Mutex<Shared>) -> anyhow::Result<Vec<Msg>> {
        let s = lock(shared)?;
        if s.panicked {
            anyhow::bail!("the capture thread failed (panicked)");
        }
        let mut msgs = vec![Msg::Source(s.status())];
        let now = s.now_ns();
        let changed = self.generation != Some(s.generation) || now != self.now_ns;
        let due = self.next_build.is_none_or(|t| Instant::now() >= t);
        if changed && due {
            let started = Instant::now();
            let view = view::build(&s.correlator, now, s.observations);
            self.generation = Some(s.generation);
            drop(s);
            let cost = started.elapsed();
            self.next_build = Some(Instant::now() + cost * BUILD_BACKOFF);
            self.now_ns = now;
            msgs.push(Msg::View(Box::new(view)));
        }
        Ok(msgs)
    }
}

/// Carries out an export; the message to show.
fn perform(
    effect: Effect,
    shared: &Mutex<Shared>,
    catalog: &CatalogOptions,
) -> Result<String, String> {
    let write_report = |path: &Path| -> Result<(), String> {
        let mut s = lock(shared).map_err(|e| format!("{e:#}"))?;
        export::write_report(&mut s.correlator, path, Format::Json).map_err(|e| format!("{e:#}"))
    };
    match effect {
        Effect::Quit => Ok(String::new()),
        Effect::ExportReport(path) => {
            let path = unused(path);
            write_report(&path)?;
            Ok(format!("wrote {} (report)", path.display()))
        }
        Effect::ExportRules { report, rules } => {
            let report = unused(report);
            let rules = unused(rules);
            write_report(&report)?;
            let options = suggest::Options {
                input: suggest::Input::Report(report.clone()),
                action: suggest::Action::Rules {
                    format: suggest::Format::Domains,
                    follow_cnames: false,
                    include_undeclared: false,
                },
                out: rules.clone(),
                catalog: catalog.clone(),
            };
            suggest::run(&options).map_err(|e| format!("{e:#}"))?;
            Ok(format!(
                "wrote {} (rules) and {} (report)",
                rules.display(),
                report.display()
            ))
        }
    }
}

/// `path`, or `path-2`, `path-3`, ... when it exists.
fn unused(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2..1000)
        .map(|n| path.with_file_name(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .unwrap_or(path)
}

#[cfg(test)]
mod export_tests {
    use super::*;
    use crate::{catalog::Catalog, pipeline::correlate::Correlator};

    #[test]
    fn e_and_s_write_the_report_and_the_rules() {
        let mut c = Correlator::new(Catalog::builtin());
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/runner-workload.jsonl"
        );
        crate::eventlog::replay_file(Path::new(fixture), &mut c).unwrap();
        let shared = Mutex::new(Shared::finished(c));
        let dir = std::env::temp_dir().join(format!("observer-tui-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let catalog = CatalogOptions::default();
        let report = dir.join("observer-report-x.json");
        let said = perform(Effect::ExportReport(report.clone()), &shared, &catalog).unwrap();
        assert_eq!(said, format!("wrote {} (report)", report.display()));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(json["schema_version"], 1);
        // Again: a new name, the first file is kept.
        let again = perform(Effect::ExportReport(report.clone()), &shared, &catalog).unwrap();
        assert!(again.contains("observer-report-x-2.json"), "{again}");
        let rules = dir.join("observer-rules-x.txt");
        let said = perform(
            Effect::ExportRules {
                report: dir.join("observer-report-y.json"),
                rules: rules.clone(),
            },
            &shared,
            &catalog,
        )
        .unwrap();
        assert!(
            said.starts_with(&format!("wrote {} (rules)", rules.display())),
            "{said}"
        );
        let text = std::fs::read_to_string(&rules).unwrap();
        assert!(text.contains("api.github.com"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
