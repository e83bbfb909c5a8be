//! The help overlay (`?`): every key and what it does.

use ratatui::{
    layout::Rect,
    text::{Line, Span},
    widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap},
    Frame,
};

use crate::{format::rate, tui::app::App};

use super::Theme;

pub(super) fn draw_help(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
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
