//! Drawing the App: a header (verdict, capture health), the panels, the details of the
//! selection, a footer of keys. A function of the App and the frame's size only.
//!
//! Two layouts: up to 139x39 one panel at a time (tabs) above the details; from 140x40 a
//! dashboard with the groups on top, hosts and flows on the left, undeclared destinations,
//! details and the event log on the right. Every status is a word as well as a colour, so the
//! screen reads the same with NO_COLOR.

mod details;
mod header;
mod help;
mod sparkline;
mod tables;
mod text;

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, BorderType, Borders, Paragraph, Wrap},
    Frame,
};

use crate::{
    format::rate,
    report::Status,
    tui::app::{App, Panel, CLOSED_LINGER},
    tui::log::Level,
    tui::view::{HostRow, SECOND},
};

use self::{
    details::draw_details,
    header::{draw_footer, draw_header},
    help::draw_help,
    tables::{events_table, flows_table, groups_table, hosts_table},
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
