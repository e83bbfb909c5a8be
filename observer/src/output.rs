//! Writing observations: one JSON object per line, or aligned human-readable lines.

use std::io::{self, Write};

use serde::Serialize;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::events::{Destination, DestinationClass, DnsObserved, Observed};

/// Converts kernel monotonic timestamps (`bpf_ktime_get_ns`) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock nanoseconds since the epoch at `mono_ns`.
    wall_ns: i128,
    mono_ns: u64,
}

impl Clock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        Self {
            wall_ns: OffsetDateTime::now_utc().unix_timestamp_nanos(),
            mono_ns: monotonic_ns(),
        }
    }

    /// Nanoseconds since the Unix epoch at kernel time `mono_ns`.
    pub fn unix_ns(&self, mono_ns: u64) -> u64 {
        let ns = self.wall_ns + (i128::from(mono_ns) - i128::from(self.mono_ns));
        u64::try_from(ns).unwrap_or(0)
    }
}

fn wall(unix_ns: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Reads one line of an event log (what `watch --json` prints) back: its time in nanoseconds
/// since the Unix epoch and the observation. The error says what is wrong with the line.
pub fn parse_line(line: &str) -> Result<(u64, Observed), String> {
    let mut value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let ts = value
        .as_object_mut()
        .and_then(|o| o.remove("ts"))
        .ok_or("no \"ts\" field")?;
    let ts = ts.as_str().ok_or("\"ts\" is not a string")?;
    let at = OffsetDateTime::parse(ts, &Rfc3339).map_err(|e| format!("bad time {ts:?}: {e}"))?;
    let unix_ns = u64::try_from(at.unix_timestamp_nanos()).map_err(|_| "time before 1970")?;
    let observed = serde_json::from_value(value).map_err(|e| format!("not an event: {e}"))?;
    Ok((unix_ns, observed))
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    #[serde(flatten)]
    observed: &'a Observed,
}

/// Formats one observation at `unix_ns` as a JSON line (no newline).
pub fn json_line(unix_ns: u64, observed: &Observed) -> String {
    let ts = wall(unix_ns).format(&Rfc3339).unwrap_or_default();
    serde_json::to_string(&Line { ts, observed }).unwrap_or_else(|e| {
        format!(r#"{{"event":"error","error":"cannot serialise an event: {e}"}}"#)
    })
}

/// Formats one observation as an aligned, human-readable line (no newline).
pub fn text_line(unix_ns: u64, observed: &Observed) -> String {
    let t = wall(unix_ns);
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
                    crate::events::ClosedBy::Local => " by local",
                    crate::events::ClosedBy::Peer => " by peer",
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
                "{} events, {} lost, {} undecodable, {} malformed DNS, {} DNS packets not copied",
                s.events, s.lost_events, s.undecodable_events, s.malformed_dns, s.dns_skipped
            ),
        ),
    };
    format!("{ts}  {kind:<16}  {who:<20}  {rest}")
        .trim_end()
        .to_owned()
}

/// `dst (name [groups])`, `dst (name, undeclared)` or `dst (unresolved)`.
fn dest_label(dst: std::net::SocketAddr, destination: Option<&Destination>) -> String {
    let Some(d) = destination else {
        return dst.to_string();
    };
    match (&d.name, d.class) {
        (Some(name), DestinationClass::Declared) => {
            format!("{dst} ({name} [{}])", d.groups.join(","))
        }
        (Some(name), _) => format!("{dst} ({name}, undeclared)"),
        (None, _) => format!("{dst} (unresolved)"),
    }
}

fn proc_label(p: &crate::kernel::Process) -> String {
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
    if d.capture_cut {
        s.push_str("  [cut at 512 bytes]");
    }
    if let Some(e) = &d.decode_error {
        s.push_str(&format!("  [{e}]"));
    }
    s
}

/// A rate in bits per second as people read it (`820.1 kbit/s`).
pub fn rate(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.1} Gbit/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.1} Mbit/s", bps / 1e6)
    } else if bps >= 1e3 {
        format!("{:.1} kbit/s", bps / 1e3)
    } else {
        format!("{bps:.0} bit/s")
    }
}

/// Byte counts as people read them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Writes `text` to `out`: `-` is stdout (a reader that has seen enough, `| head`, is not a
/// failure); a file is written atomically, a temporary file beside it synced then renamed, so a
/// reader never sees half of it. `what` names the content in errors ("the report").
pub fn write_out(out: &std::path::Path, text: &str, what: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::{fs, path::Path};
    if out == Path::new("-") {
        return match io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.with_context(|| format!("cannot write {what}")),
        };
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = fs::write(&tmp, text)
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, out));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {what} to {}", out.display()))
}

/// Where observations go.
pub struct Sink<W: Write> {
    out: W,
    json: bool,
}

impl<W: Write> Sink<W> {
    pub fn new(out: W, json: bool) -> Self {
        Self { out, json }
    }

    /// Writes observations; a closed pipe (`observer watch | head`) is reported as BrokenPipe.
    pub fn write<'a>(
        &mut self,
        items: impl IntoIterator<Item = &'a (u64, Observed)>,
    ) -> io::Result<()> {
        for (ts, observed) in items {
            let ts = *ts;
            let line = if self.json {
                json_line(ts, observed)
            } else {
                text_line(ts, observed)
            };
            writeln!(self.out, "{line}")?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::{ClosedBy, FlowClosed, Outcome},
        kernel::Process,
    };

    fn closed() -> Observed {
        Observed::FlowClosed(Box::new(FlowClosed {
            flow_id: 3,
            process: Process {
                pid: 42,
                comm: "curl".into(),
                cgroup_id: 1,
            },
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.18.1.10:443".parse().unwrap(),
            destination: None,
            adopted: false,
            outcome: Outcome::Closed,
            closed_by: Some(ClosedBy::Peer),
            error: None,
            established: true,
            rst_received: false,
            syn_retransmits: 0,
            retransmits: 0,
            bytes_sent: 1_050_000,
            bytes_received: 2048,
            connect_ms: Some(0.25),
            duration_ms: 31.5,
            idle_ms: None,
            since_poll_ms: 0.0,
        }))
    }

    const T: u64 = 1_795_766_400_000_000_000;

    #[test]
    fn json_lines_are_stable() {
        assert_eq!(
            json_line(T + 1_500_000, &closed()),
            r#"{"ts":"2026-11-27T08:00:00.0015Z","event":"flow_closed","flow_id":3,"process":{"pid":42,"comm":"curl","cgroup_id":1},"src":"198.18.0.1:40000","dst":"198.18.1.10:443","outcome":"closed","closed_by":"peer","established":true,"rst_received":false,"syn_retransmits":0,"retransmits":0,"bytes_sent":1050000,"bytes_received":2048,"connect_ms":0.25,"duration_ms":31.5,"since_poll_ms":0.0}"#
        );
    }

    #[test]
    fn text_lines_are_aligned_and_readable() {
        assert_eq!(
            text_line(T + 1_500_000, &closed()),
            "08:00:00.001  flow-closed       curl[42]              #3 198.18.0.1:40000 -> 198.18.1.10:443  closed by peer  sent 1.0 MiB  received 2.0 KiB  in 32 ms"
        );
    }

    #[test]
    fn an_adopted_flow_says_so_in_both_formats() {
        let Observed::FlowClosed(c) = closed() else {
            unreachable!()
        };
        let opened = |adopted| Observed::FlowOpened {
            flow_id: c.flow_id,
            process: c.process.clone(),
            src: c.src,
            dst: c.dst,
            destination: None,
            adopted,
        };
        assert_eq!(
            text_line(T, &opened(true)),
            "08:00:00.000  flow-adopted      curl[42]              #3 198.18.0.1:40000 -> 198.18.1.10:443"
        );
        assert!(text_line(T, &opened(false)).contains("  flow-opened  "));
        let json = json_line(T, &opened(true));
        assert!(
            json.ends_with(r#""dst":"198.18.1.10:443","adopted":true}"#),
            "{json}"
        );
        assert!(!json_line(T, &opened(false)).contains("adopted"));
        assert_eq!(parse_line(&json), Ok((T, opened(true))));
        let mut adopted_close = c.clone();
        adopted_close.adopted = true;
        adopted_close.connect_ms = None;
        let line = json_line(T, &Observed::FlowClosed(adopted_close.clone()));
        assert!(
            line.contains(r#""adopted":true"#) && !line.contains("connect_ms"),
            "{line}"
        );
        assert_eq!(
            parse_line(&line),
            Ok((T, Observed::FlowClosed(adopted_close)))
        );
    }

    #[test]
    fn lines_read_back_as_written() {
        let line = json_line(T + 1_500_000, &closed());
        assert_eq!(parse_line(&line), Ok((T + 1_500_000, closed())));
        assert!(parse_line("{").unwrap_err().starts_with("not JSON"));
        assert_eq!(
            parse_line(r#"{"event":"flow_closed"}"#),
            Err("no \"ts\" field".into())
        );
        let unknown = r#"{"ts":"2026-11-27T08:00:00Z","event":"from_the_future"}"#;
        assert!(parse_line(unknown).unwrap_err().starts_with("not an event"));
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
