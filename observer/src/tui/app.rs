//! The TUI's state and how it changes: a pure function of messages (a new view of the
//! correlator, a key, the source's state, the result of an export). Nothing here reads a clock,
//! the terminal or a file: "now" comes with every view, so tests replay a recorded event log
//! and get the same frames every time.

use std::path::PathBuf;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    log::{LogEntry, VerdictLog},
    rates::RateTracker,
    view::{FlowRow, FlowState, GroupRow, HostRow, Rates, Snapshot, SECOND},
};

/// Closed flows stay in the flow table this long, unless `t` keeps them all.
pub const CLOSED_LINGER: u64 = 10 * SECOND;
/// Rows a page key moves.
const PAGE: usize = 10;

/// The panels, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Groups,
    Hosts,
    Undeclared,
    Flows,
    Events,
}

impl Panel {
    pub const ALL: [Panel; 5] = [
        Panel::Groups,
        Panel::Hosts,
        Panel::Undeclared,
        Panel::Flows,
        Panel::Events,
    ];

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Groups => "Groups",
            Self::Hosts => "Hosts",
            Self::Undeclared => "Undeclared",
            Self::Flows => "Flows",
            Self::Events => "Events",
        }
    }
}

/// The flow table's sort column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Newest first.
    Age,
    Name,
    Process,
    Group,
    State,
    /// Current download rate, fastest first.
    Rate,
    /// Bytes both ways, most first.
    Bytes,
    Outcome,
}

impl SortKey {
    const ALL: [SortKey; 8] = [
        SortKey::Age,
        SortKey::Name,
        SortKey::Process,
        SortKey::Group,
        SortKey::State,
        SortKey::Rate,
        SortKey::Bytes,
        SortKey::Outcome,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Self::Age => "age",
            Self::Name => "name",
            Self::Process => "process",
            Self::Group => "group",
            Self::State => "state",
            Self::Rate => "rate",
            Self::Bytes => "bytes",
            Self::Outcome => "outcome",
        }
    }

    fn next(self) -> Self {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

/// Where the observations come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Live,
    Replay { source: String, speed: f64 },
}

/// Whether the source still produces observations.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceState {
    Running,
    /// The capture stopped (`--duration`), or the replay reached the end of the log.
    Finished,
    Failed(String),
}

/// The source's state and, for a replay, how far it got (0 to 1).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceStatus {
    pub state: SourceState,
    pub progress: Option<f64>,
}

/// Everything the App is told.
#[derive(Clone, Debug)]
pub enum Msg {
    /// A new view of the correlator (at most one per tick).
    View(Box<Snapshot>),
    /// The source's state, every tick.
    Source(SourceStatus),
    Key(KeyEvent),
    /// The result of an effect, to show: a file written, or why not.
    Done(Result<String, String>),
}

/// What the App asks the runtime to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Quit,
    /// Write the JSON audit report to this file.
    ExportReport(PathBuf),
    /// Write the report to `report` and the rule suggestions made from it to `rules`.
    ExportRules {
        report: PathBuf,
        rules: PathBuf,
    },
}

pub struct App {
    pub view: Snapshot,
    pub mode: Mode,
    pub source: SourceStatus,
    pub focus: Panel,
    selected: [usize; 5],
    /// The row the operator moved to (by key), followed when rows come and go; until they
    /// move, a panel's selection stays on its first (worst) row.
    selected_key: [Option<String>; 5],
    pub filter: String,
    pub editing_filter: bool,
    pub sort: SortKey,
    pub sort_reverse: bool,
    pub keep_closed: bool,
    pub help: bool,
    /// The details of the selection take the whole body.
    pub zoom: bool,
    /// New views are not applied (the capture goes on).
    pub paused: bool,
    /// Verdict changes, newest last.
    pub log: VerdictLog,
    /// A line for the operator: the file an export wrote, a toggle's new state.
    pub message: Option<String>,
    /// Colours on (off with NO_COLOR): status words are always written.
    pub colour: bool,
    /// Where exports go.
    pub export_dir: PathBuf,
    /// Whether a view was applied yet (the first one is diffed against nothing seen).
    applied: bool,
    rates: RateTracker,
    /// Observations per second over the last few views, once they span a second.
    pub events_per_s: Option<f64>,
    pub quit: bool,
}

impl App {
    pub fn new(mode: Mode, colour: bool, export_dir: PathBuf, now_ns: u64) -> Self {
        Self {
            view: Snapshot::empty(now_ns),
            mode,
            source: SourceStatus {
                state: SourceState::Running,
                progress: None,
            },
            focus: Panel::Groups,
            selected: [0; 5],
            selected_key: Default::default(),
            filter: String::new(),
            editing_filter: false,
            sort: SortKey::Age,
            sort_reverse: false,
            keep_closed: false,
            help: false,
            zoom: false,
            paused: false,
            log: VerdictLog::default(),
            message: None,
            colour,
            export_dir,
            applied: false,
            rates: RateTracker::default(),
            events_per_s: None,
            quit: false,
        }
    }

    /// Applies one message; returns what the runtime must do, if anything.
    pub fn update(&mut self, msg: Msg) -> Option<Effect> {
        match msg {
            Msg::View(snapshot) => {
                if !self.paused {
                    self.apply(*snapshot);
                }
                None
            }
            Msg::Source(source) => {
                if let SourceState::Failed(e) = &source.state {
                    if self.source.state != source.state {
                        self.message = Some(format!("the capture failed: {e}"));
                    }
                }
                self.source = source;
                None
            }
            Msg::Key(key) => self.key(key),
            Msg::Done(result) => {
                self.message = Some(match result {
                    Ok(text) => text,
                    Err(e) => format!("failed: {e}"),
                });
                None
            }
        }
    }

    fn apply(&mut self, next: Snapshot) {
        let previous = std::mem::replace(&mut self.view, next);
        let before = if self.applied { Some(&previous) } else { None };
        let changes = super::log::diff(before, &self.view);
        for (level, text) in changes {
            self.log.push(self.view.now_ns, level, text);
        }
        self.applied = true;
        self.events_per_s = self.rates.track(&self.view);
        self.reselect();
    }

    /// Current and recent rates of a flow (zero when unknown).
    pub fn flow_rates(&self, flow_id: u64) -> Rates {
        self.rates.flow(flow_id)
    }

    fn key(&mut self, key: KeyEvent) -> Option<Effect> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'd')) {
            self.quit = true;
            return Some(Effect::Quit);
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !ctrl => self.filter.push(c),
                _ => {}
            }
            self.reselect();
            return None;
        }
        if self.help {
            match key.code {
                KeyCode::Char('q') => {
                    self.quit = true;
                    return Some(Effect::Quit);
                }
                _ => self.help = false,
            }
            return None;
        }
        match key.code {
            KeyCode::Char('q') => {
                self.quit = true;
                return Some(Effect::Quit);
            }
            KeyCode::Char('?') => self.help = true,
            KeyCode::Tab => self.focus_by(1),
            KeyCode::BackTab => self.focus_by(Panel::ALL.len() - 1),
            KeyCode::Char(c @ '1'..='5') => {
                self.focus = Panel::ALL[usize::from(c as u8 - b'1')];
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown => self.move_by(PAGE as isize),
            KeyCode::PageUp => self.move_by(-(PAGE as isize)),
            KeyCode::Home | KeyCode::Char('g') => self.move_to(0),
            KeyCode::End | KeyCode::Char('G') => self.move_to(usize::MAX),
            KeyCode::Enter => self.zoom = !self.zoom,
            KeyCode::Esc => {
                if self.zoom {
                    self.zoom = false;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                    self.reselect();
                } else {
                    self.message = None;
                }
            }
            KeyCode::Char('/') => self.editing_filter = true,
            KeyCode::Char('o') => {
                self.sort = self.sort.next();
                self.sort_reverse = false;
                self.message = Some(format!("flows sorted by {}", self.sort.word()));
            }
            KeyCode::Char('O') => {
                self.sort_reverse = !self.sort_reverse;
                self.message = Some(format!(
                    "flows sorted by {}{}",
                    self.sort.word(),
                    if self.sort_reverse { ", reversed" } else { "" }
                ));
            }
            KeyCode::Char('t') => {
                self.keep_closed = !self.keep_closed;
                self.message = Some(if self.keep_closed {
                    "closed flows are kept".to_owned()
                } else {
                    format!("closed flows leave after {} s", CLOSED_LINGER / SECOND)
                });
                self.reselect();
            }
            KeyCode::Char('p' | ' ') => {
                self.paused = !self.paused;
                self.message = Some(
                    if self.paused {
                        "paused: the view is frozen, the capture goes on (p resumes)"
                    } else {
                        "resumed"
                    }
                    .to_owned(),
                );
            }
            KeyCode::Char('e') => {
                let path = self.export_path("report", "json");
                self.message = Some(format!("writing the report to {} ...", path.display()));
                return Some(Effect::ExportReport(path));
            }
            KeyCode::Char('s') => {
                let report = self.export_path("report", "json");
                let rules = self.export_path("rules", "txt");
                self.message = Some(format!(
                    "writing rule suggestions to {} ...",
                    rules.display()
                ));
                return Some(Effect::ExportRules { report, rules });
            }
            _ => {}
        }
        None
    }

    /// `DIR/observer-KIND-20261127T072924Z.EXT`, named after the view's time.
    fn export_path(&self, kind: &str, ext: &str) -> PathBuf {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.view.now_ns))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        self.export_dir.join(format!(
            "observer-{kind}-{:04}{:02}{:02}T{:02}{:02}{:02}Z.{ext}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ))
    }

    fn focus_by(&mut self, step: usize) {
        let i = (self.focus.index() + step) % Panel::ALL.len();
        self.focus = Panel::ALL[i];
    }

    /// The selected row of a panel (an index into its visible rows).
    pub fn selected(&self, panel: Panel) -> usize {
        self.selected[panel.index()]
    }

    fn move_by(&mut self, delta: isize) {
        let i = self.selected(self.focus);
        let target = if delta < 0 {
            i.saturating_sub(delta.unsigned_abs())
        } else {
            i.saturating_add(delta.unsigned_abs())
        };
        self.move_to(target);
    }

    fn move_to(&mut self, target: usize) {
        let keys = self.row_keys(self.focus);
        let p = self.focus.index();
        let i = target.min(keys.len().saturating_sub(1));
        self.selected[p] = i;
        self.selected_key[p] = keys.get(i).cloned();
    }

    /// Keeps every panel's selection on the row the operator chose (by key) when rows come
    /// and go, or within the list.
    fn reselect(&mut self) {
        for panel in Panel::ALL {
            let p = panel.index();
            let keys = self.row_keys(panel);
            let last = keys.len().saturating_sub(1);
            match &self.selected_key[p] {
                Some(k) => {
                    let i = keys
                        .iter()
                        .position(|x| x == k)
                        .unwrap_or(self.selected[p].min(last));
                    self.selected[p] = i;
                    self.selected_key[p] = keys.get(i).cloned();
                }
                None => self.selected[p] = self.selected[p].min(last),
            }
        }
    }

    fn row_keys(&self, panel: Panel) -> Vec<String> {
        match panel {
            Panel::Groups => self.groups().iter().map(|g| g.id.clone()).collect(),
            Panel::Hosts => self.hosts().iter().map(|h| h.label.clone()).collect(),
            Panel::Undeclared => self.undeclared().iter().map(|h| h.label.clone()).collect(),
            Panel::Flows => self.flows().iter().map(|f| f.flow_id.to_string()).collect(),
            Panel::Events => self.events().iter().map(|e| e.seq.to_string()).collect(),
        }
    }

    /// Whether a row's text matches the filter: every word of it, case-insensitively.
    fn matches(&self, haystack: &[&str]) -> bool {
        if self.filter.trim().is_empty() {
            return true;
        }
        let text = haystack.join(" ").to_lowercase();
        self.filter
            .to_lowercase()
            .split_whitespace()
            .all(|word| text.contains(word))
    }

    pub fn groups(&self) -> Vec<&GroupRow> {
        self.view
            .groups
            .iter()
            .filter(|g| self.matches(&[&g.id, &g.title, g.status.word()]))
            .collect()
    }

    fn host_matches(&self, h: &HostRow) -> bool {
        let mut hay: Vec<&str> = vec![&h.label, h.status.word()];
        hay.extend(h.groups.iter().map(String::as_str));
        hay.extend(h.reasons.iter().map(|r| r.code.as_str()));
        hay.extend(h.processes.iter().map(String::as_str));
        hay.extend(h.addresses.iter().map(String::as_str));
        hay.extend(h.via_proxies.iter().map(String::as_str));
        hay.extend(h.cname_chain.iter().map(String::as_str));
        self.matches(&hay)
    }

    /// Hosts, failing ones first (blocked, degraded, ok, unseen), catalog order within.
    pub fn hosts(&self) -> Vec<&HostRow> {
        let mut hosts: Vec<&HostRow> = self
            .view
            .hosts
            .iter()
            .filter(|h| self.host_matches(h))
            .collect();
        hosts.sort_by_key(|h| std::cmp::Reverse(h.status.severity()));
        hosts
    }

    /// Undeclared destinations, loudest first.
    pub fn undeclared(&self) -> Vec<&HostRow> {
        self.view
            .undeclared
            .iter()
            .filter(|h| self.host_matches(h))
            .collect()
    }

    /// The flow table: open flows, and closed ones for `CLOSED_LINGER` (all with `t`),
    /// filtered and sorted.
    pub fn flows(&self) -> Vec<&FlowRow> {
        let now = self.view.now_ns;
        let mut flows: Vec<&FlowRow> = self
            .view
            .flows
            .iter()
            .filter(|f| {
                self.keep_closed
                    || f.closed_ns
                        .is_none_or(|c| now.saturating_sub(c) <= CLOSED_LINGER)
            })
            .filter(|f| {
                let outcome = f.outcome_word();
                let mut hay: Vec<&str> =
                    vec![&f.label, &f.process, f.state.word(), &outcome, &f.dst];
                hay.push(f.group());
                hay.extend(f.groups.iter().map(String::as_str));
                hay.extend(f.via_proxy.as_deref());
                hay.extend(f.sni.as_deref());
                hay.extend(f.workload.as_deref());
                self.matches(&hay)
            })
            .collect();
        let rate = |f: &FlowRow| self.flow_rates(f.flow_id).now_down;
        match self.sort {
            SortKey::Age => flows.sort_by_key(|f| std::cmp::Reverse(f.opened_ns)),
            SortKey::Name => flows.sort_by(|a, b| a.label.cmp(&b.label)),
            SortKey::Process => flows.sort_by(|a, b| a.process.cmp(&b.process)),
            SortKey::Group => flows.sort_by(|a, b| a.group().cmp(b.group())),
            SortKey::State => flows.sort_by_key(|f| state_rank(f.state)),
            SortKey::Rate => flows.sort_by(|a, b| rate(b).total_cmp(&rate(a))),
            SortKey::Bytes => flows
                .sort_by_key(|f| std::cmp::Reverse(f.bytes_sent.saturating_add(f.bytes_received))),
            SortKey::Outcome => flows.sort_by_cached_key(|f| f.outcome_word()),
        }
        if self.sort_reverse {
            flows.reverse();
        }
        flows
    }

    /// The event log, newest first.
    pub fn events(&self) -> Vec<&LogEntry> {
        self.log
            .iter()
            .rev()
            .filter(|e| self.matches(&[&e.text, e.level.word()]))
            .collect()
    }

    /// Rows in a panel (after the filter).
    pub fn len(&self, panel: Panel) -> usize {
        match panel {
            Panel::Groups => self.groups().len(),
            Panel::Hosts => self.hosts().len(),
            Panel::Undeclared => self.undeclared().len(),
            Panel::Flows => self.flows().len(),
            Panel::Events => self.events().len(),
        }
    }
}

fn state_rank(s: FlowState) -> u8 {
    match s {
        FlowState::Failed => 0,
        FlowState::Connecting => 1,
        FlowState::Open => 2,
        FlowState::Closed => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::Catalog,
        pipeline::correlate::{
            tests::{closed, observe_answered, opened, response},
            Correlator,
        },
        pipeline::events::Observed,
        report::Status,
        tui::log::Level,
        tui::view::build,
    };

    const T0: u64 = 1_795_766_400 * SECOND;

    fn key(c: char) -> Msg {
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn code(k: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(k, KeyModifiers::NONE))
    }

    fn app() -> App {
        App::new(Mode::Live, false, PathBuf::from("."), T0)
    }

    fn tick(app: &mut App, c: &Correlator, now: u64) {
        let v = build(c, now, 0);
        assert_eq!(app.update(Msg::View(Box::new(v))), None);
    }

    fn feed(c: &mut Correlator, events: Vec<(u64, Observed)>) {
        for (ts, mut o) in events {
            observe_answered(c, ts, &mut o);
        }
    }

    #[test]
    fn keys_move_focus_and_selection_and_q_quits() {
        let mut a = app();
        let c = Correlator::new(Catalog::builtin());
        tick(&mut a, &c, T0);
        assert_eq!(a.focus, Panel::Groups);
        a.update(code(KeyCode::Tab));
        assert_eq!(a.focus, Panel::Hosts);
        a.update(code(KeyCode::BackTab));
        a.update(code(KeyCode::BackTab));
        assert_eq!(a.focus, Panel::Events);
        a.update(key('1'));
        a.update(key('j'));
        a.update(code(KeyCode::Down));
        assert_eq!(a.selected(Panel::Groups), 2);
        a.update(key('k'));
        assert_eq!(a.selected(Panel::Groups), 1);
        a.update(key('G'));
        assert_eq!(a.selected(Panel::Groups), a.len(Panel::Groups) - 1);
        a.update(code(KeyCode::PageDown));
        assert_eq!(a.selected(Panel::Groups), a.len(Panel::Groups) - 1);
        a.update(key('g'));
        assert_eq!(a.selected(Panel::Groups), 0);
        a.update(key('?'));
        assert!(a.help);
        a.update(key('x'));
        assert!(!a.help, "any key closes the help");
        assert_eq!(a.update(key('q')), Some(Effect::Quit));
        assert!(a.quit);
        let mut b = app();
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(b.update(Msg::Key(ctrl_c)), Some(Effect::Quit));
    }

    #[test]
    fn the_filter_narrows_every_list_and_esc_clears_it() {
        let mut a = app();
        let c = Correlator::new(Catalog::builtin());
        tick(&mut a, &c, T0);
        let all = a.len(Panel::Hosts);
        a.update(key('/'));
        for ch in "GHCR".chars() {
            a.update(key(ch));
        }
        assert!(a.editing_filter);
        assert_eq!(a.filter, "GHCR");
        assert_eq!(a.len(Panel::Hosts), 1);
        a.update(code(KeyCode::Enter));
        assert!(!a.editing_filter);
        assert_eq!(a.len(Panel::Hosts), 1, "kept after Enter");
        // Typing `q` in the filter does not quit.
        a.update(key('/'));
        a.update(key('q'));
        assert!(!a.quit);
        a.update(code(KeyCode::Backspace));
        a.update(code(KeyCode::Enter));
        a.update(code(KeyCode::Esc));
        assert_eq!(a.filter, "");
        assert_eq!(a.len(Panel::Hosts), all);
        // Several words must all match: a status and a group.
        a.filter = "unseen packages".into();
        assert!(a
            .hosts()
            .iter()
            .all(|h| h.status == Status::Unseen && h.groups.iter().any(|g| g == "packages")));
        assert!(!a.hosts().is_empty());
    }

    #[test]
    fn the_event_log_says_what_changed_once() {
        let mut a = app();
        let mut c = Correlator::new(Catalog::builtin());
        feed(
            &mut c,
            vec![
                (
                    T0,
                    response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]),
                ),
                (T0, opened(1, "198.18.1.10:443")),
                (T0, closed(1, "198.18.1.10:443", true, 500, 4000)),
            ],
        );
        tick(&mut a, &c, T0 + SECOND);
        let texts: Vec<&str> = a.log.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            ["verdict: runner can work", "api.github.com: reached"]
        );
        // Nothing changed: nothing logged.
        tick(&mut a, &c, T0 + 2 * SECOND);
        assert_eq!(a.log.len(), 2);
        // The same host now fails: degraded, the verdict follows.
        feed(
            &mut c,
            vec![
                (T0 + 3 * SECOND, opened(2, "198.18.1.10:443")),
                (T0 + 3 * SECOND, closed(2, "198.18.1.10:443", false, 0, 0)),
                (
                    T0 + 3 * SECOND,
                    response("ghcr.io", &[("ghcr.io", "A", "198.18.1.16")]),
                ),
                (T0 + 3 * SECOND, opened(3, "198.18.1.16:443")),
                (T0 + 3 * SECOND, closed(3, "198.18.1.16:443", false, 0, 0)),
            ],
        );
        tick(&mut a, &c, T0 + 4 * SECOND);
        let new: Vec<(Level, &str)> = a
            .log
            .iter()
            .skip(2)
            .map(|e| (e.level, e.text.as_str()))
            .collect();
        assert_eq!(
            new,
            [
                (Level::Warn, "verdict: degraded: api.github.com (tcp_reset)"),
                (
                    Level::Warn,
                    "api.github.com: ok → degraded (tcp_reset by curl[10])"
                ),
                (
                    Level::Bad,
                    "ghcr.io: unseen → blocked (tcp_reset by curl[10])"
                ),
            ]
        );
        assert!(a.log.iter().all(|e| e.ts_ns <= T0 + 4 * SECOND));
        // Newest first in the panel.
        assert_eq!(a.events()[0].text, new[2].1);
    }

    #[test]
    fn flow_rates_come_from_counters_across_views() {
        let mut a = app();
        let mut c = Correlator::new(Catalog::builtin());
        let dst = "198.18.1.10:443";
        feed(&mut c, vec![(T0, opened(1, dst))]);
        tick(&mut a, &c, T0);
        for s in 1..=4u64 {
            feed(
                &mut c,
                vec![(
                    T0 + s * SECOND,
                    Observed::FlowProgress {
                        flow_id: 1,
                        dst: dst.parse().unwrap(),
                        bytes_sent: 0,
                        bytes_received: 10_000 * s,
                        interval_ms: 1000.0,
                        sent_bps: 0.0,
                        received_bps: 0.0,
                        sent_idle_ms: None,
                        received_idle_ms: None,
                    },
                )],
            );
            tick(&mut a, &c, T0 + s * SECOND);
        }
        let r = a.flow_rates(1);
        assert_eq!(r.now_down, 80_000.0, "10 kB in the last second");
        assert_eq!(r.recent_down, 32_000.0, "40 kB over ten seconds");
        assert_eq!(r.now_up, 0.0);
        // Observations per second need a second of views.
        assert_eq!(a.events_per_s, Some(0.0));
    }

    #[test]
    fn closed_flows_linger_unless_kept_and_sorting_cycles() {
        let mut a = app();
        let mut c = Correlator::new(Catalog::builtin());
        feed(
            &mut c,
            vec![
                (T0, opened(1, "198.18.1.10:443")),
                (T0, closed(1, "198.18.1.10:443", true, 10, 100)),
                (T0 + SECOND, opened(2, "198.18.1.11:443")),
            ],
        );
        tick(&mut a, &c, T0 + SECOND);
        assert_eq!(a.len(Panel::Flows), 2);
        let ids: Vec<u64> = a.flows().iter().map(|f| f.flow_id).collect();
        assert_eq!(ids, [2, 1], "newest first");
        a.update(key('O'));
        let ids: Vec<u64> = a.flows().iter().map(|f| f.flow_id).collect();
        assert_eq!(ids, [1, 2]);
        tick(&mut a, &c, T0 + 20 * SECOND);
        assert_eq!(a.len(Panel::Flows), 1, "the closed flow left");
        a.update(key('t'));
        assert_eq!(a.len(Panel::Flows), 2);
        assert_eq!(a.message.as_deref(), Some("closed flows are kept"));
        for _ in 0..SortKey::ALL.len() {
            a.update(key('o'));
        }
        assert_eq!(a.sort, SortKey::Age, "o cycles through every column");
    }

    #[test]
    fn the_selection_follows_its_row_and_pause_freezes_the_view() {
        let mut a = app();
        let mut c = Correlator::new(Catalog::builtin());
        feed(&mut c, vec![(T0, opened(1, "198.18.1.10:443"))]);
        tick(&mut a, &c, T0);
        a.update(key('4'));
        feed(&mut c, vec![(T0 + SECOND, opened(2, "198.18.1.11:443"))]);
        tick(&mut a, &c, T0 + SECOND);
        assert_eq!(
            a.flows()[a.selected(Panel::Flows)].flow_id,
            2,
            "untouched, the selection stays on the first row"
        );
        a.update(key('j'));
        assert_eq!(a.flows()[a.selected(Panel::Flows)].flow_id, 1);
        feed(&mut c, vec![(T0 + SECOND, opened(4, "198.18.1.14:443"))]);
        tick(&mut a, &c, T0 + SECOND);
        assert_eq!(
            a.flows()[a.selected(Panel::Flows)].flow_id,
            1,
            "chosen, the selection follows its row (now the third)"
        );
        assert_eq!(a.selected(Panel::Flows), 2);
        a.update(key('p'));
        feed(
            &mut c,
            vec![(T0 + 2 * SECOND, opened(3, "198.18.1.12:443"))],
        );
        tick(&mut a, &c, T0 + 2 * SECOND);
        assert_eq!(a.len(Panel::Flows), 3, "paused");
        a.update(key('p'));
        tick(&mut a, &c, T0 + 2 * SECOND);
        assert_eq!(a.len(Panel::Flows), 4);
    }

    #[test]
    fn exports_are_named_after_the_view_time() {
        let mut a = App::new(Mode::Live, false, PathBuf::from("/tmp/x"), T0);
        let c = Correlator::new(Catalog::builtin());
        tick(&mut a, &c, T0 + 90 * SECOND);
        assert_eq!(
            a.update(key('e')),
            Some(Effect::ExportReport(PathBuf::from(
                "/tmp/x/observer-report-20261127T080130Z.json"
            )))
        );
        assert_eq!(
            a.update(key('s')),
            Some(Effect::ExportRules {
                report: PathBuf::from("/tmp/x/observer-report-20261127T080130Z.json"),
                rules: PathBuf::from("/tmp/x/observer-rules-20261127T080130Z.txt"),
            })
        );
        a.update(Msg::Done(Ok("report written to x.json".into())));
        assert_eq!(a.message.as_deref(), Some("report written to x.json"));
        a.update(Msg::Done(Err("disk full".into())));
        assert_eq!(a.message.as_deref(), Some("failed: disk full"));
    }
}
