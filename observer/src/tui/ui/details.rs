//! The details of the selection: a group, a host, a flow or an event, with the explanation
//! of each reason code.

use ratatui::{
    layout::Rect,
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Wrap},
    Frame,
};

use crate::{
    export::tls_note_words,
    format::{bytes, rate},
    pipeline::events::NamedBy,
    pipeline::throughput::{RateStats, ThroughputStats, TransferStats, TransferSummary},
    report::{vocab::Reason, Status},
    tui::app::{App, Panel},
    tui::log::LogEntry,
    tui::view::{FlowRow, FlowState, GroupRow, HostRow, Rates},
};

use super::{
    text::{age, clock_ms, millis},
    Theme,
};

pub(super) fn draw_details(frame: &mut Frame, area: Rect, app: &App, theme: Theme, zoomed: bool) {
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
pub(super) fn details(app: &App, theme: Theme) -> Vec<Line<'static>> {
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

pub(super) fn label(text: &str, theme: Theme) -> Span<'static> {
    Span::styled(format!("{text} "), theme.header())
}

pub(super) fn status_span(s: Status, theme: Theme) -> Span<'static> {
    Span::styled(s.shouted(), theme.status(s))
}

pub(super) fn rates_text(r: &Rates) -> String {
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
pub(super) fn traffic_lines(
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

/// The `transfers` line: each direction's slowest transfer of 32 KiB or more, what
/// `slow_throughput` judges (docs/throughput.md), when there is one.
pub(super) fn transfer_line(lines: &mut Vec<Line<'static>>, t: &TransferStats, theme: Theme) {
    let one = |arrow: &str, x: &TransferSummary| {
        x.slowest.as_ref().map(|s| {
            format!(
                "{arrow} slowest {} ({} in {:.1} s, {}{}) of {}",
                rate(s.rate_bps),
                bytes(s.bytes),
                s.seconds,
                s.evidence.explain(),
                s.flow_id.map(|id| format!(", #{id}")).unwrap_or_default(),
                x.judged
            )
        })
    };
    let parts: Vec<String> = [one("↓", &t.received), one("↑", &t.sent)]
        .into_iter()
        .flatten()
        .collect();
    if !parts.is_empty() {
        lines.push(Line::from(vec![
            label("transfers", theme),
            Span::raw(parts.join(" · ")),
        ]));
    }
}

pub(super) fn stats_text(t: &ThroughputStats) -> Option<String> {
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

pub(super) fn group_details(app: &App, g: &GroupRow, theme: Theme) -> Vec<Line<'static>> {
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
    transfer_line(&mut lines, &g.transfers, theme);
    let members: Vec<Span<'static>> = app
        .view
        .hosts
        .iter()
        .filter(|h| h.groups.contains(&g.id))
        .flat_map(|h| {
            [
                Span::raw(format!("{} ", h.label)),
                Span::styled(h.status.word(), theme.status(h.status)),
                Span::raw("  "),
            ]
        })
        .collect();
    let mut line = vec![label("members", theme)];
    line.extend(members);
    lines.push(Line::from(line));
    lines
}

pub(super) fn host_details(h: &HostRow, theme: Theme) -> Vec<Line<'static>> {
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
        let evidence = r.detail.clone().unwrap_or_else(|| {
            Reason::from_code(&r.code)
                .map_or("", Reason::explain)
                .to_owned()
        });
        lines.push(Line::from(vec![
            Span::styled(
                match &r.record_type {
                    Some(t) => format!("{} {t} ×{}", r.code, r.count),
                    None => format!("{} ×{}", r.code, r.count),
                },
                theme.status(if Reason::is_warning_code(&r.code) {
                    Status::Degraded
                } else {
                    Status::Blocked
                }),
            ),
            Span::raw(format!("  {when}{process}")),
            Span::styled(format!(" — {evidence}"), theme.dim()),
        ]));
    }
    for note in &h.notes {
        lines.push(Line::from(vec![
            label("note", theme),
            Span::styled(note.clone(), theme.dim()),
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
    if !h.via_proxies.is_empty() {
        // The proxy's address is not the host's: the addresses are those of direct flows.
        second.push(Span::raw(format!(
            " · via proxy {}",
            h.via_proxies.join(", ")
        )));
    }
    lines.push(Line::from(second));
    if !h.named_by.is_empty() {
        let how: Vec<&str> = h.named_by.iter().map(|n| named_by_word(*n)).collect();
        lines.push(Line::from(vec![
            label("named by", theme),
            Span::raw(how.join(", ")),
        ]));
    }
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
    transfer_line(&mut lines, &h.transfers, theme);
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

pub(super) fn flow_details(app: &App, f: &FlowRow, theme: Theme) -> Vec<Line<'static>> {
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
    if let Some(w) = &f.workload {
        lines.push(Line::from(vec![
            label("workload", theme),
            Span::raw(w.clone()),
        ]));
    }
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
    transfer_line(&mut lines, &f.transfers, theme);
    if f.cname_chain.len() > 1 {
        lines.push(Line::from(vec![
            label("CNAME", theme),
            Span::raw(f.cname_chain.join(" → ")),
        ]));
    }
    naming_lines(&mut lines, f, theme);
    if let Some(code) = f.failure {
        lines.push(Line::from(vec![
            label("failure", theme),
            Span::styled(code.as_str(), theme.status(Status::Blocked)),
            Span::raw(format!(": {}", code.explain())),
        ]));
    }
    if let Some((code, detail)) = &f.warning {
        lines.push(Line::from(vec![
            label("warning", theme),
            Span::styled(code.as_str(), theme.status(Status::Degraded)),
            Span::raw(format!(": {detail}")),
        ]));
    }
    lines
}

/// How a flow's name was chosen when not by DNS alone, what its proxy was asked and answered,
/// and what its TLS hello said.
fn naming_lines(lines: &mut Vec<Line<'static>>, f: &FlowRow, theme: Theme) {
    if let Some(words) = f.named_by_words() {
        lines.push(Line::from(vec![label("named by", theme), Span::raw(words)]));
    }
    if let Some(proxy) = &f.via_proxy {
        let asked = match (f.named_by, &f.proxy_target) {
            (Some(NamedBy::HttpHost), Some(t)) => format!(" · asked an HTTP request for {t}"),
            (_, Some(t)) => format!(" · asked CONNECT {t}"),
            (_, None) => String::new(),
        };
        let mut spans = vec![label("proxy", theme), Span::raw(format!("{proxy}{asked}"))];
        match &f.proxy_status {
            Some((code, reason)) => {
                let style = if (200..300).contains(code) {
                    Style::new()
                } else {
                    theme.status(Status::Blocked)
                };
                spans.push(Span::raw(" · answered "));
                spans.push(Span::styled(format!("{code} {reason}"), style));
            }
            None if f.closed_ns.is_some() => spans.push(Span::styled(
                " · closed without answering",
                theme.status(Status::Blocked),
            )),
            None => spans.push(Span::raw(" · no answer yet")),
        }
        lines.push(Line::from(spans));
    }
    let tls = match (&f.tls_note, &f.sni) {
        (Some(note), sni) => Some(tls_note_words(note, sni.as_deref())),
        // The SNI agreed with the name DNS gave: worth a word only when nothing else says it.
        (None, Some(sni)) if f.named_by != Some(NamedBy::Sni) => {
            Some(format!("SNI {sni} (agrees with DNS)"))
        }
        _ => None,
    };
    if let Some(tls) = tls {
        lines.push(Line::from(vec![label("TLS", theme), Span::raw(tls)]));
    }
}

/// `SNI`, `CONNECT`, `HTTP Host`.
fn named_by_word(n: NamedBy) -> &'static str {
    match n {
        NamedBy::Sni => "SNI",
        NamedBy::Connect => "CONNECT",
        NamedBy::HttpHost => "HTTP Host",
    }
}

pub(super) fn event_details(e: &LogEntry, theme: Theme) -> Vec<Line<'static>> {
    vec![
        Line::from(vec![
            Span::raw(format!("{}  ", clock_ms(e.ts_ns))),
            Span::styled(e.level.word(), theme.level(e.level)),
        ]),
        Line::from(e.text.clone()),
    ]
}
