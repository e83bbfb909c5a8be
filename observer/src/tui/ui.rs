//! Drawing the App: a header (verdict, capture health), the panels, the details of the
//! selection, a footer of keys. A function of the App and the frame's size only.
//!
//! Two layouts: up to 139x39 one panel at a time (tabs) above the details; from 140x40 a
//! dashboard with the groups on top, hosts and flows on the left, undeclared destinations,
//! details and the event log on the right. Every status is a word as well as a colour, so the
//! screen reads the same with NO_COLOR.

use ratatui::{
    layout::{Alignment, Constraint, Flex, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{
        Block, BorderType, Borders, Cell, Clear, HighlightSpacing, Paragraph, Row, Table,
        TableState, Wrap,
    },
    Frame,
};
use time::OffsetDateTime;

use crate::{
    format::{bytes, rate},
    pipeline::throughput::{RateStats, ThroughputStats},
    report::Status,
};

use super::{
    app::{App, Level, LogEntry, Mode, Panel, SourceState, CLOSED_LINGER},
    view::{status_word, FlowRow, FlowState, GroupRow, HostRow, Rates, SECOND},
};

/// The dashboard layout from this size on.
const WIDE: (u16, u16) = (140, 40);
/// Below this nothing useful fits.
const MINIMUM: (u16, u16) = (40, 12);
/// The selection marker (the first column of every table).
const MARK: &str = "▶ ";

/// Styles, or none of them with NO_COLOR (then only bold and reverse video remain).
#[derive(Clone, Copy)]
struct Theme {
    colour: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.colour {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn status(self, s: Status) -> Style {
        match s {
            Status::Blocked => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Status::Degraded => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Status::Ok => self.fg(Color::Green),
            Status::Unseen => self.fg(Color::DarkGray),
        }
    }

    fn level(self, l: Level) -> Style {
        match l {
            Level::Bad => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Level::Warn => self.fg(Color::Yellow),
            Level::Good => self.fg(Color::Green),
            Level::Info => Style::new(),
        }
    }

    fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    fn header(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    fn border(self, focused: bool) -> Style {
        if focused {
            self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            self.dim()
        }
    }
}

/// The status as a word, upper case when it needs attention.
pub fn status_label(s: Status) -> &'static str {
    match s {
        Status::Blocked => "BLOCKED",
        Status::Degraded => "DEGRADED",
        Status::Ok => "ok",
        Status::Unseen => "unseen",
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let theme = Theme { colour: app.colour };
    if area.width < MINIMUM.0 || area.height < MINIMUM.1 {
        let text = format!(
            "observer tui needs at least {}x{} (80x24 recommended); q quits",
            MINIMUM.0, MINIMUM.1
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, app, theme);
    draw_footer(frame, footer, app, theme);
    if app.zoom {
        draw_details(frame, body, app, theme, true);
    } else if area.width >= WIDE.0 && area.height >= WIDE.1 {
        draw_wide(frame, body, app, theme);
    } else {
        draw_compact(frame, body, app, theme);
    }
    if app.help {
        draw_help(frame, area, app, theme);
    }
}

fn draw_compact(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let details = match area.height {
        0..18 => 0,
        18..30 => 7,
        _ => area.height / 3,
    };
    let [tabs, panel, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(details),
    ])
    .areas(area);
    draw_tabs(frame, tabs, app, theme);
    draw_panel(frame, panel, app, theme, app.focus);
    if details > 0 {
        draw_details(frame, bottom, app, theme, false);
    }
}

fn draw_wide(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let groups_height = u16::try_from(app.view.groups.len().max(1))
        .unwrap_or(10)
        .saturating_add(3)
        .min(area.height / 3);
    let [groups, rest] =
        Layout::vertical([Constraint::Length(groups_height), Constraint::Min(0)]).areas(area);
    draw_panel(frame, groups, app, theme, Panel::Groups);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(57), Constraint::Percentage(43)]).areas(rest);
    let [hosts, flows] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(left);
    draw_panel(frame, hosts, app, theme, Panel::Hosts);
    draw_panel(frame, flows, app, theme, Panel::Flows);
    let [undeclared, details, events] = Layout::vertical([
        Constraint::Percentage(28),
        Constraint::Percentage(42),
        Constraint::Percentage(30),
    ])
    .areas(right);
    draw_panel(frame, undeclared, app, theme, Panel::Undeclared);
    draw_details(frame, details, app, theme, false);
    draw_panel(frame, events, app, theme, Panel::Events);
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let v = &app.view;
    let [top, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);

    // Line 1: the verdict, and on the right where the data comes from and its time.
    let clock = format!("{} UTC", clock(v.now_ns));
    let source = match (&app.mode, &app.source.state) {
        (_, SourceState::Failed(_)) => "CAPTURE FAILED".to_owned(),
        (Mode::Live, SourceState::Finished) => "capture stopped".to_owned(),
        (Mode::Live, SourceState::Running) => "LIVE".to_owned(),
        (Mode::Replay { .. }, SourceState::Finished) => "replay done".to_owned(),
        (Mode::Replay { speed, .. }, SourceState::Running) => {
            let pace = if *speed == 0.0 {
                "max".to_owned()
            } else {
                format!("x{speed}")
            };
            match app.source.progress {
                Some(p) => format!("REPLAY {pace} {:.0}%", p * 100.0),
                None => format!("REPLAY {pace}"),
            }
        }
    };
    let paused = if app.paused { "PAUSED  " } else { "" };
    let right = format!("  {paused}{source}  {clock} ");
    let right_width = u16::try_from(right.chars().count()).unwrap_or(0);
    let verdict_style = match v.verdict.state {
        super::view::VerdictState::CanWork => theme.status(Status::Ok),
        super::view::VerdictState::Blocked => theme.status(Status::Blocked),
        super::view::VerdictState::Degraded => theme.status(Status::Degraded),
        super::view::VerdictState::Unknown => theme.dim(),
    }
    .add_modifier(Modifier::BOLD);
    let mut spans = vec![
        Span::styled(" observer ", Style::new().add_modifier(Modifier::REVERSED)),
        Span::raw(" "),
        Span::styled(v.verdict.state.word(), verdict_style),
    ];
    if !v.verdict.because.is_empty() {
        spans.push(Span::raw(format!(": {}", v.verdict.because.join("; "))));
    }
    if !v.verdict.failing_features.is_empty() {
        spans.push(Span::raw(" · features failing: "));
        spans.push(Span::styled(
            v.verdict.failing_features.join(", "),
            theme.fg(Color::Yellow),
        ));
    }
    let [left_area, right_area] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(right_width.min(area.width / 2)),
    ])
    .areas(top);
    frame.render_widget(Paragraph::new(Line::from(spans)), left_area);
    frame.render_widget(
        Paragraph::new(right)
            .alignment(Alignment::Right)
            .style(theme.dim()),
        right_area,
    );

    // Line 2: capture health.
    let c = &v.capture;
    let mut spans = match &app.mode {
        Mode::Live => vec![Span::styled(" capture ", theme.header())],
        Mode::Replay { source, .. } => vec![
            Span::styled(" replay ", theme.header()),
            Span::raw(format!("{source} · ")),
        ],
    };
    let per_s = app.events_per_s.map_or_else(
        || "-".to_owned(),
        |r| {
            if r < 10.0 {
                format!("{r:.1}")
            } else {
                format!("{r:.0}")
            }
        },
    );
    spans.push(Span::raw(format!("{} events {per_s}/s", v.observations)));
    spans.push(Span::raw(" · "));
    if c.lost_events > 0 {
        spans.push(Span::styled(
            format!("LOST {} events", c.lost_events),
            theme.status(Status::Blocked),
        ));
    } else {
        spans.push(Span::raw("0 lost"));
    }
    spans.push(Span::raw(" · "));
    let probes = format!("probes {}/{}", c.probes_attached, c.probes_total);
    if c.probes_attached < c.probes_total {
        spans.push(Span::styled(
            format!("{probes} (NOT all attached)"),
            theme.status(Status::Degraded),
        ));
    } else {
        spans.push(Span::raw(probes));
    }
    spans.push(Span::raw(format!(" · {} flows", v.flows_total)));
    if let Some(start) = c.started_ns {
        spans.push(Span::raw(format!(
            " · {}",
            duration(v.now_ns.saturating_sub(start))
        )));
    }
    if c.all_ports {
        spans.push(Span::raw(" · all ports"));
    } else if !c.ports.is_empty() {
        let ports: Vec<String> = c.ports.iter().map(u16::to_string).collect();
        spans.push(Span::raw(format!(" · ports {}", ports.join(","))));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), bottom);
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let line = if app.editing_filter {
        Line::from(vec![
            Span::styled(" filter: ", theme.header()),
            Span::raw(app.filter.clone()),
            Span::styled("█", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::styled(
                "  (name, group, process, status; Enter keeps, Esc clears)",
                theme.dim(),
            ),
        ])
    } else if let Some(message) = &app.message {
        Line::from(vec![
            Span::styled(" ", Style::new()),
            Span::styled(message.clone(), Style::new().add_modifier(Modifier::BOLD)),
            Span::styled("   Esc dismiss · ? help · q quit", theme.dim()),
        ])
    } else {
        // The most useful keys first, as many as fit; `?` lists them all.
        let keys: [(&str, &str); 11] = [
            ("q", "quit"),
            ("?", "help"),
            ("Tab", "panel"),
            ("/", "filter"),
            ("e", "report"),
            ("s", "rules"),
            ("t", "closed"),
            ("o", "sort"),
            ("↑↓", "move"),
            ("⏎", "zoom"),
            ("p", "pause"),
        ];
        let mut spans = vec![Span::raw(" ")];
        let mut room = usize::from(area.width).saturating_sub(1);
        if !app.filter.is_empty() {
            let text = format!("filter \"{}\"  ", app.filter);
            room = room.saturating_sub(text.chars().count());
            spans.push(Span::styled(
                text,
                Style::new().add_modifier(Modifier::BOLD),
            ));
        }
        for (k, what) in keys {
            let width = k.chars().count() + what.chars().count() + 3;
            if width > room {
                break;
            }
            room -= width;
            spans.push(Span::styled(k, theme.header()));
            spans.push(Span::raw(format!(" {what}  ")));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_tabs(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut spans = Vec::new();
    for (i, panel) in Panel::ALL.into_iter().enumerate() {
        let label = format!(" {} {} {} ", i + 1, panel.title(), tab_count(app, panel));
        let style = if panel == app.focus {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::styled("│", theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// What a tab says about its panel: failing counts first.
fn tab_count(app: &App, panel: Panel) -> String {
    let v = &app.view;
    let failing = |rows: &[HostRow]| {
        rows.iter()
            .filter(|h| matches!(h.status, Status::Blocked | Status::Degraded))
            .count()
    };
    match panel {
        Panel::Groups => {
            let n = v
                .groups
                .iter()
                .filter(|g| matches!(g.status, Status::Blocked | Status::Degraded))
                .count();
            if n > 0 {
                format!("{n}!")
            } else {
                v.groups.len().to_string()
            }
        }
        Panel::Hosts => match failing(&v.hosts) {
            0 => v.hosts.len().to_string(),
            n => format!("{n}!"),
        },
        Panel::Undeclared => v.undeclared.len().to_string(),
        Panel::Flows => app.len(Panel::Flows).to_string(),
        Panel::Events => app.log.len().to_string(),
    }
}

fn panel_block(app: &App, theme: Theme, panel: Panel, title: String) -> Block<'static> {
    let focused = app.focus == panel;
    let title = if focused {
        format!("[{title}]")
    } else {
        format!(" {title} ")
    };
    Block::new()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Double
        } else {
            BorderType::Plain
        })
        .border_style(theme.border(focused))
        .title(Span::styled(
            title,
            if focused {
                theme.header()
            } else {
                Style::new().add_modifier(Modifier::BOLD)
            },
        ))
}

fn draw_panel(frame: &mut Frame, area: Rect, app: &App, theme: Theme, panel: Panel) {
    if area.height < 3 || area.width < 10 {
        return;
    }
    let filter = if app.filter.is_empty() {
        String::new()
    } else {
        format!(" · filter \"{}\"", app.filter)
    };
    match panel {
        Panel::Groups => {
            let title = format!(
                "Groups · bit/s · min {} (▁ below){filter}",
                rate(app.view.min_bps)
            );
            let block = panel_block(app, theme, panel, title);
            groups_table(frame, area, app, theme, block);
        }
        Panel::Hosts => {
            let title = format!(
                "Hosts · documented and wildcard members · {}{filter}",
                app.len(panel)
            );
            let block = panel_block(app, theme, panel, title);
            hosts_table(frame, area, app, theme, block, panel);
        }
        Panel::Undeclared => {
            let title = format!("Undeclared · loudest first · {}{filter}", app.len(panel));
            let block = panel_block(app, theme, panel, title);
            hosts_table(frame, area, app, theme, block, panel);
        }
        Panel::Flows => {
            let closed = if app.keep_closed {
                "closed kept".to_owned()
            } else {
                format!("closed shown {} s", CLOSED_LINGER / SECOND)
            };
            let order = if app.sort_reverse { " reversed" } else { "" };
            let title = format!(
                "Flows · {} · by {}{order} · {closed}{filter}",
                app.len(panel),
                app.sort.word()
            );
            let block = panel_block(app, theme, panel, title);
            flows_table(frame, area, app, theme, block);
        }
        Panel::Events => {
            let title = format!("Events · verdict changes, newest first{filter}");
            let block = panel_block(app, theme, panel, title);
            events_table(frame, area, app, theme, block);
        }
    }
}

/// Column widths as the table lays them out (after the selection marker, one space apart).
fn column_widths(inner_width: u16, constraints: &[Constraint]) -> Vec<u16> {
    let mark = u16::try_from(MARK.chars().count()).unwrap_or(2);
    let area = Rect::new(0, 0, inner_width.saturating_sub(mark), 1);
    Layout::horizontal(constraints.iter().copied())
        .flex(Flex::Start)
        .spacing(1)
        .split(area)
        .iter()
        .map(|r| r.width)
        .collect()
}

/// A stateless scroll: the selection stays in view, centred once the list is longer.
fn offset_for(selected: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    selected
        .saturating_sub(height / 2)
        .min(len.saturating_sub(height))
}

#[allow(clippy::too_many_arguments)]
fn render_table(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    panel: Panel,
    block: Block<'static>,
    header: Vec<&'static str>,
    widths: Vec<Constraint>,
    rows: Vec<Row<'static>>,
    theme: Theme,
) {
    let len = rows.len();
    let inner = block.inner(area);
    let visible = usize::from(inner.height.saturating_sub(1));
    let selected = app.selected(panel).min(len.saturating_sub(1));
    let focused = app.focus == panel;
    let mut state = TableState::new()
        .with_offset(offset_for(selected, len, visible))
        .with_selected((len > 0).then_some(selected));
    let empty = len == 0;
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.header()))
        .block(block)
        .highlight_symbol(if focused { MARK } else { "  " })
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(if focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        });
    frame.render_stateful_widget(table, area, &mut state);
    if empty && inner.height > 1 {
        let text = match panel {
            Panel::Undeclared => "  nothing undeclared seen",
            Panel::Flows => "  no flow yet",
            Panel::Events => "  no change yet",
            _ if !app.filter.is_empty() => "  nothing matches the filter",
            _ => "  nothing yet",
        };
        let line = Rect::new(inner.x, inner.y + 1, inner.width, 1);
        frame.render_widget(Paragraph::new(text).style(theme.dim()), line);
    }
}

fn groups_table(frame: &mut Frame, area: Rect, app: &App, theme: Theme, block: Block<'static>) {
    let inner = block.inner(area);
    let wide = inner.width >= 110;
    let mut header = vec![
        "STATUS", "GROUP", "REACH", "BLK", "↓NOW", "↑NOW", "↓10S", "↑10S",
    ];
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Length(21),
        Constraint::Length(5),
        Constraint::Length(3),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    if wide {
        header.extend(["FLOWS", "↓BYTES", "↑BYTES"]);
        widths.extend([
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Length(10),
        ]);
    }
    header.push("5 MIN");
    widths.push(Constraint::Fill(1));
    let spark_width = column_widths(inner.width, &widths)
        .last()
        .copied()
        .unwrap_or(0);
    let rows = app
        .groups()
        .into_iter()
        .map(|g| {
            let mut cells = vec![
                Cell::new(status_label(g.status)).style(theme.status(g.status)),
                Cell::new(group_label(g)),
                Cell::new(format!("{}/{}", g.reached, g.members)),
                Cell::new(if g.blocked > 0 {
                    g.blocked.to_string()
                } else {
                    "-".to_owned()
                })
                .style(if g.blocked > 0 {
                    theme.status(Status::Blocked)
                } else {
                    Style::new()
                }),
            ];
            cells.extend(rate_cells(&g.rates));
            if wide {
                cells.push(Cell::new(g.flows.to_string()));
                cells.push(Cell::new(bytes(g.bytes_received)));
                cells.push(Cell::new(bytes(g.bytes_sent)));
            }
            cells.push(Cell::new(sparkline(
                &g.history,
                app.view.min_bps,
                usize::from(spark_width),
                theme,
            )));
            Row::new(cells)
        })
        .collect();
    render_table(
        frame,
        area,
        app,
        Panel::Groups,
        block,
        header,
        widths,
        rows,
        theme,
    );
}

fn group_label(g: &GroupRow) -> String {
    if g.required {
        format!("{}*", g.id)
    } else {
        g.id.clone()
    }
}

fn rate_cells(r: &Rates) -> [Cell<'static>; 4] {
    [
        Cell::new(short_rate(r.now_down)),
        Cell::new(short_rate(r.now_up)),
        Cell::new(short_rate(r.recent_down)),
        Cell::new(short_rate(r.recent_up)),
    ]
}

fn hosts_table(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    theme: Theme,
    block: Block<'static>,
    panel: Panel,
) {
    let inner = block.inner(area);
    let wide = inner.width >= 110;
    let (header, widths) = if wide {
        (
            vec![
                "STATUS", "NAME", "REASONS", "FLOWS", "↓NOW", "↑NOW", "↓10S", "↑10S", "↓BYTES",
                "↑BYTES", "PROCESS",
            ],
            vec![
                Constraint::Length(8),
                Constraint::Fill(3),
                Constraint::Fill(2),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Fill(1),
            ],
        )
    } else {
        (
            vec!["STATUS", "NAME", "REASONS", "FLOWS", "↓NOW", "BYTES"],
            vec![
                Constraint::Length(8),
                Constraint::Fill(1),
                Constraint::Length(16),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(9),
            ],
        )
    };
    let cols = column_widths(inner.width, &widths);
    let list = if panel == Panel::Hosts {
        app.hosts()
    } else {
        app.undeclared()
    };
    let rows = list
        .into_iter()
        .map(|h| {
            let mut cells = vec![
                Cell::new(status_label(h.status)).style(theme.status(h.status)),
                Cell::new(fit(&h.label, cols.get(1).copied().unwrap_or(20))),
                Cell::new(fit(&h.reason_codes(), cols.get(2).copied().unwrap_or(10))),
                Cell::new(h.flows.to_string()),
                Cell::new(short_rate(h.rates.now_down)),
            ];
            if wide {
                cells.push(Cell::new(short_rate(h.rates.now_up)));
                cells.push(Cell::new(short_rate(h.rates.recent_down)));
                cells.push(Cell::new(short_rate(h.rates.recent_up)));
                cells.push(Cell::new(bytes(h.bytes_received)));
                cells.push(Cell::new(bytes(h.bytes_sent)));
                cells.push(Cell::new(h.processes.join(",")));
            } else {
                cells.push(Cell::new(bytes(h.bytes_received + h.bytes_sent)));
            }
            Row::new(cells)
        })
        .collect();
    render_table(frame, area, app, panel, block, header, widths, rows, theme);
}

fn flows_table(frame: &mut Frame, area: Rect, app: &App, theme: Theme, block: Block<'static>) {
    let inner = block.inner(area);
    let wide = inner.width >= 110;
    let (header, widths) = if wide {
        (
            vec![
                "PROCESS", "NAME", "GROUP", "STATE", "AGE", "↓NOW", "↑NOW", "↓BYTES", "↑BYTES",
                "OUTCOME",
            ],
            vec![
                Constraint::Fill(1),
                Constraint::Fill(2),
                Constraint::Length(17),
                Constraint::Length(6),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(16),
            ],
        )
    } else {
        // Narrow: the state of open flows and the outcome of closed ones share a column.
        (
            vec!["PROCESS", "NAME", "GROUP", "AGE", "↓NOW", "BYTES", "STATE"],
            vec![
                Constraint::Length(9),
                Constraint::Fill(1),
                Constraint::Length(9),
                Constraint::Length(4),
                Constraint::Length(5),
                Constraint::Length(5),
                Constraint::Length(16),
            ],
        )
    };
    let cols = column_widths(inner.width, &widths);
    let now = app.view.now_ns;
    let rows = app
        .flows()
        .into_iter()
        .map(|f| {
            let r = app.flow_rates(f.flow_id);
            let outcome_style = match (f.failure, &f.warning) {
                (Some(_), _) => theme.status(Status::Blocked),
                (None, Some(_)) => theme.status(Status::Degraded),
                _ => Style::new(),
            };
            let process = if wide { &f.process } else { &f.comm };
            let state = Cell::new(f.state.word()).style(match f.state {
                FlowState::Failed => theme.status(Status::Blocked),
                FlowState::Closed => theme.dim(),
                _ => Style::new(),
            });
            let mut cells = vec![
                Cell::new(fit(process, cols.first().copied().unwrap_or(10))),
                Cell::new(fit(&f.label, cols.get(1).copied().unwrap_or(20))),
                Cell::new(fit(f.group(), cols.get(2).copied().unwrap_or(12))),
            ];
            if wide {
                cells.push(state);
            }
            cells.push(Cell::new(age(now.saturating_sub(f.opened_ns))));
            cells.push(Cell::new(short_rate(r.now_down)));
            let width = cols.last().copied().unwrap_or(16);
            if wide {
                cells.push(Cell::new(short_rate(r.now_up)));
                cells.push(Cell::new(bytes(f.bytes_received)));
                cells.push(Cell::new(bytes(f.bytes_sent)));
                cells.push(Cell::new(fit(&f.outcome_word(), width)).style(outcome_style));
            } else {
                cells.push(Cell::new(short_bytes(f.bytes_received + f.bytes_sent)));
                let word = match f.state {
                    FlowState::Connecting | FlowState::Open => f.state.word().to_owned(),
                    FlowState::Closed | FlowState::Failed => f.outcome_word(),
                };
                let style = match f.state {
                    FlowState::Failed => theme.status(Status::Blocked),
                    FlowState::Closed if f.warning.is_none() => theme.dim(),
                    _ => outcome_style,
                };
                cells.push(Cell::new(fit(&word, width)).style(style));
            }
            Row::new(cells)
        })
        .collect();
    render_table(
        frame,
        area,
        app,
        Panel::Flows,
        block,
        header,
        widths,
        rows,
        theme,
    );
}

fn events_table(frame: &mut Frame, area: Rect, app: &App, theme: Theme, block: Block<'static>) {
    let header = vec!["TIME", "LEVEL", "WHAT"];
    let widths = vec![
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Fill(1),
    ];
    let rows = app
        .events()
        .into_iter()
        .map(|e| {
            Row::new(vec![
                Cell::new(clock(e.ts_ns)),
                Cell::new(e.level.word()).style(theme.level(e.level)),
                Cell::new(e.text.clone()),
            ])
        })
        .collect();
    render_table(
        frame,
        area,
        app,
        Panel::Events,
        block,
        header,
        widths,
        rows,
        theme,
    );
}

fn draw_details(frame: &mut Frame, area: Rect, app: &App, theme: Theme, zoomed: bool) {
    if area.height < 3 {
        return;
    }
    let title = if zoomed {
        " Details · Enter or Esc returns ".to_owned()
    } else {
        " Details · Enter zooms ".to_owned()
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.dim())
        .title(Span::styled(
            title,
            Style::new().add_modifier(Modifier::BOLD),
        ));
    let lines = details(app, theme);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The details of the focused panel's selection.
fn details(app: &App, theme: Theme) -> Vec<Line<'static>> {
    let i = app.selected(app.focus);
    match app.focus {
        Panel::Groups => app
            .groups()
            .get(i)
            .map(|g| group_details(app, g, theme))
            .unwrap_or_default(),
        Panel::Hosts => app
            .hosts()
            .get(i)
            .map(|h| host_details(h, theme))
            .unwrap_or_default(),
        Panel::Undeclared => app
            .undeclared()
            .get(i)
            .map(|h| host_details(h, theme))
            .unwrap_or_default(),
        Panel::Flows => app
            .flows()
            .get(i)
            .map(|f| flow_details(app, f, theme))
            .unwrap_or_default(),
        Panel::Events => app
            .events()
            .get(i)
            .map(|e| event_details(e, theme))
            .unwrap_or_default(),
    }
}

fn label(text: &str, theme: Theme) -> Span<'static> {
    Span::styled(format!("{text} "), theme.header())
}

fn status_span(s: Status, theme: Theme) -> Span<'static> {
    Span::styled(status_label(s), theme.status(s))
}

fn rates_text(r: &Rates) -> String {
    format!(
        "now ↓{} ↑{} · 10 s ↓{} ↑{}",
        rate(r.now_down),
        rate(r.now_up),
        rate(r.recent_down),
        rate(r.recent_up)
    )
}

/// The `traffic` line (bytes and live rates, after `prefix`) and, when measured, the
/// `active rate` line of a group, host or flow.
fn traffic_lines(
    lines: &mut Vec<Line<'static>>,
    prefix: &str,
    received: u64,
    sent: u64,
    rates: &Rates,
    throughput: &ThroughputStats,
    theme: Theme,
) {
    lines.push(Line::from(vec![
        label("traffic", theme),
        Span::raw(format!(
            "{prefix}↓{} ↑{} · {}",
            bytes(received),
            bytes(sent),
            rates_text(rates)
        )),
    ]));
    if let Some(s) = stats_text(throughput) {
        lines.push(Line::from(vec![label("active rate", theme), Span::raw(s)]));
    }
}

fn stats_text(t: &ThroughputStats) -> Option<String> {
    let one = |arrow: &str, s: &Option<RateStats>| {
        s.as_ref().map(|s| {
            format!(
                "{arrow} median {} p95 {} ({} samples, {:.1} s)",
                rate(s.median_bps),
                rate(s.p95_bps),
                s.samples,
                s.active_s
            )
        })
    };
    let parts: Vec<String> = [one("↓", &t.received), one("↑", &t.sent)]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn group_details(app: &App, g: &GroupRow, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(vec![
        Span::styled(g.id.clone(), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" — {}", g.title)),
        Span::raw(if g.required { "  required  " } else { "  " }),
        status_span(g.status, theme),
    ])];
    lines.push(Line::from(vec![
        label("hosts", theme),
        Span::raw(format!(
            "{} · {} reached · {} blocked",
            g.members, g.reached, g.blocked
        )),
    ]));
    if !g.failing.is_empty() {
        let why: Vec<String> = g
            .failing
            .iter()
            .map(|name| {
                let codes = app
                    .view
                    .hosts
                    .iter()
                    .find(|h| &h.label == name)
                    .map(HostRow::reason_codes)
                    .unwrap_or_default();
                format!("{name} ({codes})")
            })
            .collect();
        lines.push(Line::from(vec![
            label("failing", theme),
            Span::styled(why.join("; "), theme.status(Status::Blocked)),
        ]));
    }
    let flows = format!("{} flows · ", g.flows);
    traffic_lines(
        &mut lines,
        &flows,
        g.bytes_received,
        g.bytes_sent,
        &g.rates,
        &g.throughput,
        theme,
    );
    let members: Vec<Span<'static>> = app
        .view
        .hosts
        .iter()
        .filter(|h| h.groups.contains(&g.id))
        .flat_map(|h| {
            [
                Span::raw(format!("{} ", h.label)),
                Span::styled(status_word(h.status), theme.status(h.status)),
                Span::raw("  "),
            ]
        })
        .collect();
    let mut line = vec![label("members", theme)];
    line.extend(members);
    lines.push(Line::from(line));
    lines
}

fn host_details(h: &HostRow, theme: Theme) -> Vec<Line<'static>> {
    let mut first = vec![
        Span::styled(h.label.clone(), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw("  "),
        status_span(h.status, theme),
    ];
    if !h.groups.is_empty() {
        first.push(Span::raw(format!("  groups {}", h.groups.join(", "))));
    } else if h.unresolved {
        first.push(Span::raw("  unresolved: no DNS answer named this address"));
    } else {
        first.push(Span::raw("  undeclared: in no documented group"));
    }
    if let Some(p) = h.pattern.as_ref().filter(|p| **p != h.label) {
        first.push(Span::raw(format!(" (via {p})")));
    }
    if let Some(f) = &h.function {
        first.push(Span::raw(format!(" · used for {f}")));
    }
    let mut lines = vec![Line::from(first)];
    // Why it fails comes first: the timeline of each reason, with its evidence.
    for r in &h.reasons {
        let when = match (r.first_ns, r.last_ns) {
            (Some(a), Some(b)) if a == b => format!("at {}", clock_ms(a)),
            (Some(a), Some(b)) => format!("first {} last {}", clock_ms(a), clock_ms(b)),
            _ => String::new(),
        };
        let process = r
            .process
            .as_deref()
            .map(|p| format!(" · {p}"))
            .unwrap_or_default();
        let evidence = r
            .detail
            .clone()
            .unwrap_or_else(|| explain(&r.code).to_owned());
        lines.push(Line::from(vec![
            Span::styled(
                format!("{} ×{}", r.code, r.count),
                theme.status(if is_warning(&r.code) {
                    Status::Degraded
                } else {
                    Status::Blocked
                }),
            ),
            Span::raw(format!("  {when}{process}")),
            Span::styled(format!(" — {evidence}"), theme.dim()),
        ]));
    }
    let addresses = if h.addresses.is_empty() {
        "-".to_owned()
    } else {
        h.addresses.join(", ")
    };
    let mut second = vec![label("addresses", theme), Span::raw(addresses)];
    if !h.ports.is_empty() {
        let ports: Vec<String> = h.ports.iter().map(u16::to_string).collect();
        second.push(Span::raw(format!(" · ports {}", ports.join(","))));
    }
    lines.push(Line::from(second));
    if h.cname_chain.len() > 1 {
        lines.push(Line::from(vec![
            label("CNAME", theme),
            Span::raw(h.cname_chain.join(" → ")),
        ]));
    }
    let flows = format!("{} flows · ", h.flows);
    traffic_lines(
        &mut lines,
        &flows,
        h.bytes_received,
        h.bytes_sent,
        &h.rates,
        &h.throughput,
        theme,
    );
    let seen = match (h.first_ns, h.last_ns) {
        (Some(a), Some(b)) => format!("first {} · last {}", clock_ms(a), clock_ms(b)),
        _ => "never".to_owned(),
    };
    let by = if h.processes.is_empty() {
        String::new()
    } else {
        format!(" · by {}", h.processes.join(", "))
    };
    lines.push(Line::from(vec![
        label("seen", theme),
        Span::raw(format!("{seen}{by}")),
    ]));
    lines
}

fn is_warning(code: &str) -> bool {
    matches!(code, "slow_throughput" | "long_poll_cut")
}

/// What a reason code means (docs/report.md).
pub fn explain(code: &str) -> &'static str {
    match code {
        "tcp_reset" => "RST in answer to the SYN: nothing listens, or a firewall rejects with tcp reset",
        "tcp_timeout" => "the SYN was never answered: a firewall drops it, or the route is broken",
        "tcp_unreachable" => "ICMP unreachable or administratively prohibited",
        "tcp_error" => "another socket error before the handshake completed",
        "tls_reset" => "the far side cut the connection right after the client's TLS hello: an SNI-filtering firewall",
        "connection_reset" => "established, then reset or timed out before any data came back",
        "dns_nxdomain" => "the DNS answer was NXDOMAIN: the name does not exist for this resolver",
        "dns_servfail" => "the DNS answer was SERVFAIL",
        "dns_refused" => "the DNS server refused to answer",
        "dns_timeout" => "DNS queries were never answered",
        "dns_sinkhole" => "the DNS answer was a filter's sinkhole address (0.0.0.0, ::, or --sinkhole)",
        "dns_no_address" => "the name resolved to no address and no connection was made",
        "slow_throughput" => "a transfer moved below the minimum rate",
        "long_poll_cut" => "an idle connection was cut by the far side before the long poll's answer",
        _ => "",
    }
}

fn flow_details(app: &App, f: &FlowRow, theme: Theme) -> Vec<Line<'static>> {
    let class = match f.class {
        crate::pipeline::events::DestinationClass::Declared => f.groups.join(", "),
        crate::pipeline::events::DestinationClass::Undeclared => "undeclared".to_owned(),
        crate::pipeline::events::DestinationClass::Unresolved => "unresolved".to_owned(),
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("#{} {}", f.flow_id, f.process),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {} → {}  ", f.src, f.dst)),
        Span::styled(f.label.clone(), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            " [{class}]{}",
            if f.name_expired {
                " (name's TTL had passed)"
            } else {
                ""
            }
        )),
    ])];
    let state_style = match f.state {
        FlowState::Failed => theme.status(Status::Blocked),
        _ => Style::new(),
    };
    let mut state = vec![
        label("state", theme),
        Span::styled(f.state.word(), state_style),
    ];
    if let Some(o) = f.outcome {
        state.push(Span::raw(format!(" · outcome {}", o.as_str())));
    }
    if let Some(by) = f.closed_by {
        state.push(Span::raw(match by {
            crate::pipeline::events::ClosedBy::Local => ", closed by this host",
            crate::pipeline::events::ClosedBy::Peer => ", closed by the far side",
        }));
    }
    if let Some(e) = &f.error {
        state.push(Span::raw(format!(" · error {e}")));
    }
    if f.rst_received {
        state.push(Span::raw(" · RST received"));
    }
    if f.syn_retransmits > 0 || f.retransmits > 0 {
        state.push(Span::raw(format!(
            " · retransmits {} SYN, {} other",
            f.syn_retransmits, f.retransmits
        )));
    }
    lines.push(Line::from(state));
    let mut times = if f.adopted {
        format!(
            "connected before the capture, seen from {} (bytes count from there)",
            clock_ms(f.opened_ns)
        )
    } else {
        format!("opened {}", clock_ms(f.opened_ns))
    };
    if let Some(e) = f.established_ns.filter(|_| !f.adopted) {
        times.push_str(&format!(
            " · established +{}",
            millis(e.saturating_sub(f.opened_ns))
        ));
    }
    match f.closed_ns {
        Some(c) => times.push_str(&format!(
            " · closed +{}",
            millis(c.saturating_sub(f.opened_ns))
        )),
        None => times.push_str(&format!(
            " · open for {}",
            age(app.view.now_ns.saturating_sub(f.opened_ns))
        )),
    }
    if let Some(idle) = f.idle_ms.filter(|ms| *ms >= 100.0) {
        times.push_str(&format!(" · idle {:.1} s before the close", idle / 1e3));
    }
    lines.push(Line::from(vec![label("time", theme), Span::raw(times)]));
    let rates = app.flow_rates(f.flow_id);
    traffic_lines(
        &mut lines,
        "",
        f.bytes_received,
        f.bytes_sent,
        &rates,
        &f.throughput,
        theme,
    );
    if f.cname_chain.len() > 1 {
        lines.push(Line::from(vec![
            label("CNAME", theme),
            Span::raw(f.cname_chain.join(" → ")),
        ]));
    }
    if let Some(code) = f.failure {
        lines.push(Line::from(vec![
            label("failure", theme),
            Span::styled(code, theme.status(Status::Blocked)),
            Span::raw(format!(": {}", explain(code))),
        ]));
    }
    if let Some((code, detail)) = &f.warning {
        lines.push(Line::from(vec![
            label("warning", theme),
            Span::styled(*code, theme.status(Status::Degraded)),
            Span::raw(format!(": {detail}")),
        ]));
    }
    lines
}

fn event_details(e: &LogEntry, theme: Theme) -> Vec<Line<'static>> {
    vec![
        Line::from(vec![
            Span::raw(format!("{}  ", clock_ms(e.ts_ns))),
            Span::styled(e.level.word(), theme.level(e.level)),
        ]),
        Line::from(e.text.clone()),
    ]
}

fn draw_help(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let lines: Vec<Line<'static>> = [
        ("q Ctrl-C", "quit (the terminal is restored)"),
        ("?", "this help; any key closes it"),
        (
            "Tab 1-5",
            "next panel (Shift-Tab: previous); a panel by number",
        ),
        ("↑↓ j k", "move; PgUp PgDn, g G (Home End)"),
        ("Enter", "zoom the details of the selection (Esc returns)"),
        ("/", "filter the lists: name, group, process, status words"),
        ("Esc", "clear the filter, dismiss a message"),
        ("o O", "flows: next sort column, reverse the order"),
        ("t", "flows: keep closed flows (else shown for 10 s)"),
        ("p Space", "pause the view (the capture goes on)"),
        ("e", "write the audit report: observer-report-TIME.json"),
        ("s", "write rule suggestions: observer-rules-TIME.txt"),
    ]
    .into_iter()
    .map(|(k, what)| {
        Line::from(vec![
            Span::styled(format!("{k:>9}  "), theme.header()),
            Span::raw(what),
        ])
    })
    .chain([
        Line::from(""),
        Line::from(" ok reached · DEGRADED some attempts failed, or slow · BLOCKED every"),
        Line::from(" attempt failed · unseen not tried. * marks what the runner needs."),
        Line::from(format!(
            " Rates in bit/s over 1 s (NOW) and 10 s; 5 MIN: ▁ is below {}.",
            rate(app.view.min_bps)
        )),
    ])
    .collect();
    let height = u16::try_from(lines.len() + 2)
        .unwrap_or(20)
        .min(area.height);
    let width = 76.min(area.width);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(
                Block::new()
                    .borders(Borders::ALL)
                    .border_type(BorderType::Double)
                    .title(" Keys · observer tui "),
            )
            .wrap(Wrap { trim: false }),
        popup,
    );
}

/// A sparkline over `width` cells of the per-second `history`: each cell the peak of its
/// seconds, on a log scale from the minimum rate up; `▁` is moving but below the minimum.
fn sparkline(history: &[f64], min_bps: f64, width: usize, theme: Theme) -> Line<'static> {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if width == 0 || history.is_empty() {
        return Line::default();
    }
    let per_cell = history.len().div_ceil(width).max(1);
    let cells: Vec<f64> = history
        .rchunks(per_cell)
        .take(width)
        .map(|c| c.iter().copied().fold(0.0, f64::max))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let peak = cells
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(min_bps * 16.0);
    let span = (peak / min_bps).ln().max(f64::EPSILON);
    let mut spans = Vec::with_capacity(width);
    let pad = width.saturating_sub(cells.len());
    if pad > 0 {
        spans.push(Span::raw(" ".repeat(pad)));
    }
    for v in cells {
        let (ch, style) = if v <= 0.0 {
            (' ', Style::new())
        } else if v < min_bps {
            (BARS[0], theme.fg(Color::Yellow))
        } else {
            let level = 1.0 + 6.0 * ((v / min_bps).ln() / span);
            let i = (level.round() as usize).clamp(1, BARS.len() - 1);
            (BARS[i], theme.fg(Color::Green))
        };
        spans.push(Span::styled(ch.to_string(), style));
    }
    Line::from(spans)
}

/// A rate in at most five characters, bits per second: `0`, `950b`, `70k`, `1.2M`.
pub fn short_rate(bps: f64) -> String {
    if bps <= 0.0 || !bps.is_finite() {
        return "0".to_owned();
    }
    let (v, unit) = if bps >= 1e9 {
        (bps / 1e9, "G")
    } else if bps >= 1e6 {
        (bps / 1e6, "M")
    } else if bps >= 1e3 {
        (bps / 1e3, "k")
    } else {
        (bps, "b")
    };
    if v >= 10.0 || unit == "b" {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

/// Bytes in at most five characters: `980B`, `51K`, `1.2M`.
fn short_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 10.0 {
        format!("{v:.0}{}", UNITS[unit])
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// Cuts text to `width` characters, ending with `…` when cut.
fn fit(text: &str, width: u16) -> String {
    let width = usize::from(width);
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut s: String = text.chars().take(width - 1).collect();
    s.push('…');
    s
}

fn wall(ns: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `07:29:23` (UTC).
pub fn clock(ns: u64) -> String {
    let t = wall(ns);
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// `07:29:23.497` (UTC).
fn clock_ms(ns: u64) -> String {
    let t = wall(ns);
    format!("{}.{:03}", clock(ns), t.millisecond())
}

/// `850ms`, `3.2s`.
fn millis(ns: u64) -> String {
    if ns < SECOND {
        format!("{:.0} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} s", ns as f64 / 1e9)
    }
}

/// `3s`, `2m05`, `1h02`.
fn age(ns: u64) -> String {
    let s = ns / SECOND;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}", s / 60, s % 60)
    } else {
        format!("{}h{:02}", s / 3600, (s % 3600) / 60)
    }
}

/// `0:12`, `1:02:03`.
fn duration(ns: u64) -> String {
    let s = ns / SECOND;
    if s < 3600 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::view::HISTORY_S;

    #[test]
    fn short_rates_fit_five_characters() {
        for (bps, text) in [
            (0.0, "0"),
            (950.0, "950b"),
            (70_000.0, "70k"),
            (8_500.0, "8.5k"),
            (1_234_567.0, "1.2M"),
            (123_000_000.0, "123M"),
            (2.5e9, "2.5G"),
        ] {
            assert_eq!(short_rate(bps), text);
            assert!(short_rate(bps).chars().count() <= 5);
        }
        for (n, text) in [
            (0, "0B"),
            (980, "980B"),
            (52_633, "51K"),
            (1_258_291, "1.2M"),
            (999_999, "977K"),
        ] {
            assert_eq!(short_bytes(n), text);
        }
    }

    #[test]
    fn sparklines_mark_rates_below_the_minimum() {
        let theme = Theme { colour: false };
        let mut history = vec![0.0; HISTORY_S];
        history[HISTORY_S - 1] = 50_000.0; // below 70 kbit/s
        history[HISTORY_S - 40] = 70_000.0 * 16.0; // the scale's top
        let text: String = sparkline(&history, 70_000.0, 10, theme)
            .spans
            .iter()
            .map(|s| s.content.to_string())
            .collect();
        assert_eq!(text, "        █▁");
    }

    #[test]
    fn text_is_cut_with_an_ellipsis_and_times_read_well() {
        assert_eq!(fit("results-receiver.actions", 10), "results-r…");
        assert_eq!(fit("short", 10), "short");
        assert_eq!(age(125 * SECOND), "2m05");
        assert_eq!(age(3 * 3600 * SECOND + 120 * SECOND), "3h02");
        assert_eq!(duration(3723 * SECOND), "1:02:03");
        assert_eq!(offset_for(0, 100, 10), 0);
        assert_eq!(offset_for(50, 100, 10), 45);
        assert_eq!(offset_for(99, 100, 10), 90);
    }
}
