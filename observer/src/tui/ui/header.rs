//! The header (the verdict, where the data comes from, capture health) and the footer of keys.

use ratatui::{
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use crate::{
    report::Status,
    tui::app::{App, Mode, SourceState},
};

use super::{
    text::{clock, duration, fit},
    Theme,
};

pub(super) fn draw_header(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
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
        crate::tui::view::VerdictState::CanWork => theme.status(Status::Ok),
        crate::tui::view::VerdictState::Blocked => theme.status(Status::Blocked),
        crate::tui::view::VerdictState::Degraded => theme.status(Status::Degraded),
        crate::tui::view::VerdictState::Unknown => theme.dim(),
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
    if !c.fallbacks.is_empty() {
        // Where this kernel lacks a source (details in `observer watch` and the report).
        spans.push(Span::raw(" · "));
        spans.push(Span::styled(
            format!("kernel: {}", c.fallbacks.join(", ")),
            theme.status(Status::Degraded),
        ));
    }
    if !c.proxies.is_empty() {
        // Which proxies are watched and where each was found, shortly (the report has it all):
        // flows through a proxy nobody watches are named by nothing.
        let list: Vec<String> = c
            .proxies
            .iter()
            .map(|p| format!("{} ({})", p.addr, fit(&p.source, 24)))
            .collect();
        let word = if list.len() == 1 { "proxy" } else { "proxies" };
        spans.push(Span::raw(format!(" · {word} {}", list.join(", "))));
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

pub(super) fn draw_footer(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
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
