//! The panels' tables: groups, hosts and undeclared destinations, flows, the event log; and
//! how a table keeps its selection in sight.

use ratatui::{
    layout::{Constraint, Flex, Layout, Rect},
    style::{Modifier, Style},
    widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState},
    Frame,
};

use crate::{
    format::bytes,
    report::Status,
    tui::app::{App, Panel},
    tui::view::{FlowState, GroupRow, Rates},
};

use super::{
    sparkline::sparkline,
    text::{age, clock, fit, short_bytes, short_rate},
    Theme, MARK,
};

/// Column widths as the table lays them out (after the selection marker, one space apart).
pub(super) fn column_widths(inner_width: u16, constraints: &[Constraint]) -> Vec<u16> {
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
pub(super) fn offset_for(selected: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    selected
        .saturating_sub(height / 2)
        .min(len.saturating_sub(height))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn render_table(
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

pub(super) fn groups_table(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    theme: Theme,
    block: Block<'static>,
) {
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
                Cell::new(g.status.shouted()).style(theme.status(g.status)),
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

pub(super) fn group_label(g: &GroupRow) -> String {
    if g.required {
        format!("{}*", g.id)
    } else {
        g.id.clone()
    }
}

pub(super) fn rate_cells(r: &Rates) -> [Cell<'static>; 4] {
    [
        Cell::new(short_rate(r.now_down)),
        Cell::new(short_rate(r.now_up)),
        Cell::new(short_rate(r.recent_down)),
        Cell::new(short_rate(r.recent_up)),
    ]
}

pub(super) fn hosts_table(
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
    let name_width = cols.get(1).copied().unwrap_or(20);
    let rows = list
        .into_iter()
        .map(|h| {
            let mut cells = vec![
                Cell::new(h.status.shouted()).style(theme.status(h.status)),
                Cell::new(fit(&h.name_cell(usize::from(name_width)), name_width)),
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

pub(super) fn flows_table(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    theme: Theme,
    block: Block<'static>,
) {
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
                Cell::new(fit(&f.name_cell(), cols.get(1).copied().unwrap_or(20))),
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

pub(super) fn events_table(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    theme: Theme,
    block: Block<'static>,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_stays_in_sight() {
        assert_eq!(offset_for(0, 100, 10), 0);
        assert_eq!(offset_for(50, 100, 10), 45);
        assert_eq!(offset_for(99, 100, 10), 90);
    }
}
