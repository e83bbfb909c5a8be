//! The per-group sparkline: five minutes of rates on a log scale from the minimum rate.

use ratatui::{
    style::{Color, Style},
    text::{Line, Span},
};

use super::Theme;

/// A sparkline over `width` cells of the per-second `history`: each cell the peak of its
/// seconds, on a log scale from the minimum rate up; `▁` is moving but below the minimum.
pub(super) fn sparkline(
    history: &[f64],
    min_bps: f64,
    width: usize,
    theme: Theme,
) -> Line<'static> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::view::HISTORY_S;

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
}
