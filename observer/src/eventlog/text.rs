//! The human-readable form of event-log lines: what `observer watch` prints without `--json`,
//! one aligned line per observation.

use crate::{
    capture::record::Process,
    format::{bytes, datetime, rate},
    pipeline::dnsmatch::DnsCheck,
    pipeline::events::{Destination, DestinationClass, DnsObserved, Observed},
};

/// Formats one observation as an aligned, human-readable line (no newline). Names, process
/// names and answer data come from the wire or from any process: the line is sanitized
/// ([`crate::sanitize::line`]) so that none of them can act on the terminal or forge a line.
pub fn text_line(unix_ns: u64, observed: &Observed) -> String {
    let t = datetime(unix_ns);
    let ts = format!(
        "{:02}:{:02}:{:02}.{:03}",
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
    let (kind, who, rest) = match observed {
        Observed::CaptureStarted {
            cgroup,
            ports,
            all_ports,
            probes,
            sources,
            proxies,
        } => {
            let attached = probes.iter().filter(|p| p.attached).count();
            let ports = if *all_ports {
                "all ports".to_owned()
            } else {
                ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut rest = format!(
                "{attached}/{} probes attached to {cgroup}; TCP ports {ports}",
                probes.len()
            );
            for p in probes.iter().filter(|p| !p.attached) {
                rest.push_str(&format!(
                    "; NOT attached: {} ({}): {}",
                    p.program,
                    p.hook,
                    p.error.as_deref().unwrap_or("?")
                ));
            }
            for s in sources.iter().filter(|s| s.fallback) {
                rest.push_str(&format!("; {}", s.detail));
            }
            for p in proxies {
                rest.push_str(&format!(
                    "; proxy {} ({}, from {})",
                    p.addr, p.url, p.source
                ));
            }
            ("capture-started", String::new(), rest)
        }
        Observed::FlowOpened {
            flow_id,
            process,
            src,
            dst,
            destination,
            adopted,
        } => (
            if *adopted {
                "flow-adopted"
            } else {
                "flow-opened"
            },
            proc_label(process),
            format!(
                "#{flow_id} {src} -> {}",
                dest_label(*dst, destination.as_ref())
            ),
        ),
        Observed::FlowEstablished {
            flow_id,
            process,
            src,
            dst,
            connect_ms,
            destination,
        } => (
            "flow-established",
            proc_label(process),
            format!(
                "#{flow_id} {src} -> {}  connect {connect_ms:.1} ms",
                dest_label(*dst, destination.as_ref())
            ),
        ),
        Observed::FlowProgress {
            flow_id,
            dst,
            bytes_sent,
            bytes_received,
            sent_bps,
            received_bps,
            ..
        } => (
            "flow-progress",
            String::new(),
            format!(
                "#{flow_id} -> {dst}  sent {} ({})  received {} ({})",
                bytes(*bytes_sent),
                rate(*sent_bps),
                bytes(*bytes_received),
                rate(*received_bps)
            ),
        ),
        Observed::FlowClosed(c) => {
            let mut how = c.outcome.as_str().to_owned();
            if let Some(by) = c.closed_by {
                how.push_str(match by {
                    crate::pipeline::events::ClosedBy::Local => " by local",
                    crate::pipeline::events::ClosedBy::Peer => " by peer",
                });
            }
            if let Some(e) = &c.error {
                how.push_str(&format!(" ({e})"));
            }
            if c.syn_retransmits > 0 {
                how.push_str(&format!(", {} SYN retransmits", c.syn_retransmits));
            }
            (
                "flow-closed",
                proc_label(&c.process),
                format!(
                    "#{} {} -> {}  {how}  sent {}  received {}  in {:.0} ms",
                    c.flow_id,
                    c.src,
                    dest_label(c.dst, c.destination.as_ref()),
                    bytes(c.bytes_sent),
                    bytes(c.bytes_received),
                    c.duration_ms
                ),
            )
        }
        Observed::FlowPayload(p) => (
            "flow-payload",
            String::new(),
            format!(
                "#{} {} -> {}  {}",
                p.flow_id,
                p.src,
                dest_label(p.dst, p.destination.as_ref()),
                payload_text(p)
            ),
        ),
        Observed::SocketError { src, dst, error } => (
            "socket-error",
            String::new(),
            format!("{src} -> {dst}  {error}"),
        ),
        Observed::DnsQuery(d) => ("dns-query", dns_who(d), dns_text(d)),
        Observed::DnsResponse(d) => ("dns-response", dns_who(d), dns_text(d)),
        Observed::CaptureStats(s) => (
            "capture-stats",
            String::new(),
            format!(
                "{} events, {} lost, {} undecodable, {} malformed DNS, {} DNS packets not copied, \
                 {} DNS messages over TCP, {} TCP DNS segments undecodable{}",
                s.events,
                s.lost_events,
                s.undecodable_events,
                s.malformed_dns,
                s.dns_skipped,
                s.dns_tcp_messages,
                s.dns_tcp_undecodable,
                if s.dns_repeats > 0 {
                    format!(", {} repeated DNS exchanges counted", s.dns_repeats)
                } else {
                    String::new()
                }
            ),
        ),
        Observed::CgroupSeen {
            cgroup_id,
            workload,
        } => (
            "cgroup-seen",
            String::new(),
            format!("#{cgroup_id} {}", workload_text(workload)),
        ),
    };
    let line = format!("{ts}  {kind:<16}  {who:<20}  {rest}");
    crate::sanitize::line(line.trim_end()).into_owned()
}

/// `dst (name [groups])`, `dst (name, undeclared)` or `dst (unresolved)`.
fn dest_label(dst: std::net::SocketAddr, destination: Option<&Destination>) -> String {
    let Some(d) = destination else {
        return dst.to_string();
    };
    let forged = d
        .forged_name
        .as_ref()
        .map(|n| format!(", forged-name attempt: {n}"))
        .unwrap_or_default();
    let mut how = String::new();
    if let Some(proxy) = d.via_proxy {
        how.push_str(&format!(", via proxy {proxy}"));
    }
    if let Some(by) = d.named_by {
        how.push_str(&format!(", named by {}", by.as_str()));
    }
    if let Some(dns) = &d.dns_name {
        how.push_str(&format!(", DNS said {dns}"));
    }
    if let Some(note) = &d.tls_note {
        how.push_str(&format!(", {note}"));
    }
    let how = format!("{how}{forged}");
    match (&d.name, d.class) {
        (Some(name), DestinationClass::Declared) => {
            format!("{dst} ({name} [{}]{how})", d.groups.join(","))
        }
        (Some(name), _) => format!("{dst} ({name}, undeclared{how})"),
        (None, _) => format!("{dst} (unresolved{how})"),
    }
}

/// What the first bytes said: `sent TLS hello sni=api.github.com`, `sent CONNECT
/// api.github.com:443`, `received HTTP 403 Forbidden`.
fn payload_text(p: &crate::pipeline::events::FlowPayload) -> String {
    use crate::pipeline::hello::{FirstReceived, FirstSent};
    let mut s = match (&p.sent, &p.received) {
        (
            Some(FirstSent::Tls {
                sni,
                ech,
                incomplete,
            }),
            _,
        ) => {
            let mut s = format!("sent TLS hello sni={}", sni.as_deref().unwrap_or("-"));
            if *ech {
                s.push_str(" [ECH]");
            }
            if *incomplete {
                s.push_str(" [SNI beyond the bytes copied]");
            }
            s
        }
        (
            Some(FirstSent::Connect {
                host,
                port,
                credentials,
                ..
            }),
            _,
        ) => format!(
            "sent CONNECT {host}:{port}{}",
            if *credentials {
                " [with credentials]"
            } else {
                ""
            }
        ),
        (
            Some(FirstSent::Http {
                method,
                host,
                port,
                absolute,
                ..
            }),
            _,
        ) => format!(
            "sent HTTP {method} {}{}{}",
            if *absolute { "absolute " } else { "" },
            host.as_deref().unwrap_or("-"),
            port.map(|p| format!(":{p}")).unwrap_or_default()
        ),
        (Some(FirstSent::Other { note }), _) => format!("sent {note}"),
        (None, Some(FirstReceived::HttpStatus { code, reason })) => {
            format!("received HTTP {code} {reason}")
        }
        (None, Some(FirstReceived::Tls { alert })) => match alert {
            Some(a) => format!("received TLS alert {a}"),
            None => "received TLS".to_owned(),
        },
        (None, Some(FirstReceived::Other { note })) => format!("received {note}"),
        (None, None) => String::new(),
    };
    s.push_str(&format!(
        "  ({} bytes{})",
        p.payload_len,
        if p.cut { ", cut" } else { "" }
    ));
    s
}

/// `/kubepods.slice/…/cri-containerd-1207….scope  pod 26a1…, containerd 1207db63eaeb, unit
/// cri-containerd-1207….scope`: the path, then what it says.
fn workload_text(w: &crate::capture::cgroups::Workload) -> String {
    let mut said = Vec::new();
    if let Some(pod) = &w.pod_uid {
        said.push(format!("pod {pod}"));
    }
    if let Some(id) = &w.container_id {
        let short: String = id.chars().take(12).collect();
        let runtime = w.runtime.map_or("container", |r| r.as_str());
        said.push(format!("{runtime} {short}"));
    }
    if let Some(unit) = &w.unit {
        said.push(format!("unit {unit}"));
    }
    if said.is_empty() {
        w.cgroup.clone()
    } else {
        format!("{}  {}", w.cgroup, said.join(", "))
    }
}

fn proc_label(p: &Process) -> String {
    format!("{}[{}]", p.comm, p.pid)
}

fn dns_who(d: &DnsObserved) -> String {
    d.process
        .as_ref()
        .map(proc_label)
        .unwrap_or_else(|| "-".to_owned())
}

fn dns_text(d: &DnsObserved) -> String {
    let q = d
        .questions
        .iter()
        .map(|q| format!("{} {}", q.name, q.rtype))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!("{} {q}", d.server);
    if let Some(rcode) = &d.rcode {
        s.push_str(&format!("  {rcode}"));
    }
    for a in &d.answers {
        s.push_str(&format!(
            "  {} {} {} (ttl {})",
            a.name, a.rtype, a.data, a.ttl
        ));
    }
    if d.tc {
        s.push_str("  [TC]");
    }
    if d.tcp {
        s.push_str("  [TCP]");
    }
    match d.check {
        Some(DnsCheck::Matched) | None => {}
        Some(check) => s.push_str(&format!("  [{}: names nothing]", check.code())),
    }
    if d.out_of_bailiwick > 0 {
        s.push_str(&format!(
            "  [{} record(s) off the question's chain ignored]",
            d.out_of_bailiwick
        ));
    }
    if d.capture_cut {
        s.push_str("  [cut at 512 bytes]");
    }
    if let Some(e) = &d.decode_error {
        s.push_str(&format!("  [{e}]"));
    }
    s
}
