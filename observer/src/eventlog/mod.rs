//! The event log: one JSON object per line, as `observer watch --json` prints and
//! `observer record --events` keeps (docs/events.md). Written by [`Sink`] (JSON, or the aligned
//! text of [`text`]), read back by [`parse_line`] and [`replay`], which feeds a recorded capture
//! to the correlator exactly as the live capture did.

pub mod text;

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::Path,
};

use anyhow::Context as _;
use serde::Serialize;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::{
    format::datetime, pipeline::correlate::Correlator, pipeline::events::Observed, sanitize,
};
pub use text::text_line;

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
    let nanos = at.unix_timestamp_nanos();
    let unix_ns = u64::try_from(nanos).map_err(|_| {
        if nanos < 0 {
            format!("time out of range: {ts} is before 1970")
        } else {
            format!("time out of range: {ts} is after 2554 (nanoseconds since 1970 overflow)")
        }
    })?;
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
    let ts = datetime(unix_ns).format(&Rfc3339).unwrap_or_default();
    serde_json::to_string(&Line { ts, observed }).unwrap_or_else(|e| {
        format!(r#"{{"event":"error","error":"cannot serialise an event: {e}"}}"#)
    })
}

/// Where observations go.
pub struct Sink<W: Write> {
    out: W,
    json: bool,
    written: u64,
}

impl<W: Write> Sink<W> {
    pub fn new(out: W, json: bool) -> Self {
        Self {
            out,
            json,
            written: 0,
        }
    }

    /// Bytes written so far (lines and their newlines).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The writer.
    pub fn into_inner(self) -> W {
        self.out
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
            self.written += line.len() as u64 + 1;
        }
        self.out.flush()
    }
}

/// Feeds an event log file to the correlator (see [`replay`]).
pub fn replay_file(path: &Path, correlator: &mut Correlator) -> anyhow::Result<()> {
    let file = File::open(path)
        .with_context(|| format!("cannot open the event log {}", path.display()))?;
    replay(
        BufReader::new(file),
        &path.display().to_string(),
        correlator,
    )
}

/// Feeds every readable line of an event log to the correlator. Unreadable lines are reported on
/// stderr (the first few) and counted in the report; they never stop the replay.
pub fn replay(
    input: impl BufRead,
    source: &str,
    correlator: &mut Correlator,
) -> anyhow::Result<()> {
    const SHOWN: u64 = 5;
    let mut bad = 0u64;
    // Lines are read as bytes and decoded one by one: a line that is not UTF-8 is skipped like
    // any unreadable line, where `lines()` would stop the whole replay at it.
    for (n, line) in input.split(b'\n').enumerate() {
        let line = line.with_context(|| format!("cannot read {source}"))?;
        let parsed = match std::str::from_utf8(&line) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => parse_line(line),
            Err(e) => Err(format!("not UTF-8 text: {e}")),
        };
        match parsed {
            Ok((ts, mut observed)) => correlator.observe(ts, &mut observed),
            Err(problem) => {
                bad += 1;
                correlator.note_unreadable_line();
                if bad <= SHOWN {
                    // The problem may quote the line (an unknown event name): sanitized.
                    eprintln!(
                        "observer: {} line {}: {}; skipped",
                        sanitize::line(source),
                        n + 1,
                        sanitize::line(&problem)
                    );
                }
            }
        }
    }
    if bad > SHOWN {
        eprintln!(
            "observer: {}: {bad} unreadable lines in all, skipped",
            sanitize::line(source)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        capture::record::Process,
        pipeline::events::{ClosedBy, DnsObserved, FlowClosed, Outcome},
    };

    fn closed() -> Observed {
        Observed::FlowClosed(Box::new(FlowClosed {
            flow_id: 3,
            process: Process {
                pid: 42,
                comm: "curl".into(),
                cgroup_id: 1,
                job: None,
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
            sent_idle_ms: None,
            received_idle_ms: None,
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
    fn hostile_names_and_answers_cannot_act_on_the_terminal() {
        use crate::pipeline::dns::{decode_message, tests::response};
        use hickory_proto::{
            op::ResponseCode,
            rr::{rdata::TXT, Name, RData, Record},
        };
        // A TXT answer with an escape sequence and a forged line, as a server sends it.
        let txt = Record::from_rdata(
            "evil.example.".parse::<Name>().unwrap(),
            60,
            RData::TXT(TXT::new(vec![
                "\u{1b}[2J\n08:00:00.000  flow-closed  forged".to_owned(),
            ])),
        );
        let message =
            decode_message(&response("evil.example.", ResponseCode::NoError, vec![txt])).unwrap();
        let dns = DnsObserved {
            process: Some(Process {
                pid: 7,
                comm: "\u{1b}]0;pwned\u{7}\u{9b}2J".into(),
                cgroup_id: 1,
                job: None,
            }),
            cgroup_id: 1,
            socket_cookie: 1,
            server: "198.18.0.53:53".parse().unwrap(),
            client: "198.18.0.1:5353".parse().unwrap(),
            payload_len: 100,
            capture_cut: false,
            id: Some(message.id),
            rcode: Some(message.rcode.into_owned()),
            tc: false,
            questions: message.questions,
            answers: message.answers,
            decode_error: None,
            tcp: false,
            check: None,
            out_of_bailiwick: 0,
        };
        let line = text_line(T, &Observed::DnsResponse(Box::new(dns)));
        assert!(!line.chars().any(crate::sanitize::is_unsafe), "{line:?}");
        assert!(line.contains("\\x1b]0;pwned\\x07\\x9b2J[7]"), "{line}");
        assert!(line.contains("\\x1b[2J"), "{line}");
    }

    #[test]
    fn cgroup_seen_reads_back_and_shows_what_the_path_says() {
        let path = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddc380811_8168_4a9e_9b4a_56ded1b6fe9c.slice/cri-containerd-1207db63eaeb133a85d2b614d12d95d4dff3f29af60d7a7b3c7d39abdf4bd119.scope";
        let seen = Observed::CgroupSeen {
            cgroup_id: 4242,
            workload: crate::capture::cgroups::classify(path),
        };
        let json = json_line(T, &seen);
        assert_eq!(
            json,
            format!(
                r#"{{"ts":"2026-11-27T08:00:00Z","event":"cgroup_seen","cgroup_id":4242,"workload":{{"cgroup":"{path}","unit":"cri-containerd-1207db63eaeb133a85d2b614d12d95d4dff3f29af60d7a7b3c7d39abdf4bd119.scope","runtime":"containerd","container_id":"1207db63eaeb133a85d2b614d12d95d4dff3f29af60d7a7b3c7d39abdf4bd119","pod_uid":"dc380811-8168-4a9e-9b4a-56ded1b6fe9c"}}}}"#
            )
        );
        assert_eq!(parse_line(&json), Ok((T, seen.clone())));
        assert_eq!(
            text_line(T, &seen),
            format!(
                "08:00:00.000  cgroup-seen                             #4242 {path}  pod \
                 dc380811-8168-4a9e-9b4a-56ded1b6fe9c, containerd 1207db63eaeb, unit \
                 cri-containerd-1207db63eaeb133a85d2b614d12d95d4dff3f29af60d7a7b3c7d39abdf4bd119.scope"
            )
        );
        // The root cgroup says nothing but its path; a hostile event log's name is escaped.
        let root = Observed::CgroupSeen {
            cgroup_id: 1,
            workload: crate::capture::cgroups::classify("/"),
        };
        assert!(text_line(T, &root).ends_with("  #1 /"));
        let line = r#"{"ts":"2026-11-27T08:00:00Z","event":"cgroup_seen","cgroup_id":9,"workload":{"cgroup":"/x\u001b[2J","unit":"\u001b]0;t\u0007.scope"}}"#;
        let (_, hostile) = parse_line(line).expect("reads");
        let text = text_line(T, &hostile);
        assert!(!text.chars().any(crate::sanitize::is_unsafe), "{text:?}");
    }

    #[test]
    fn a_line_that_is_not_utf8_is_skipped_not_fatal() {
        let good = json_line(T, &closed());
        let mut log = Vec::new();
        log.extend_from_slice(good.as_bytes());
        log.extend_from_slice(b"\n{\"ts\":\"2026-11-27T08:00:00Z\",\"event\":\"\xff\"}\r\n\n");
        log.extend_from_slice(good.replace("\"flow_id\":3", "\"flow_id\":4").as_bytes());
        let mut correlator = crate::options::CatalogOptions::default()
            .correlator()
            .unwrap();
        replay(&log[..], "test", &mut correlator).expect("the replay goes on");
        correlator.finish();
        let report = crate::report::build(&correlator);
        assert_eq!(report.capture.unreadable_lines, 1);
        assert_eq!(report.flows.len(), 2, "both good lines were read");
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
        assert_eq!(
            parse_line(r#"{"ts":"2600-01-01T00:00:00Z","event":"capture_stats"}"#),
            Err("time out of range: 2600-01-01T00:00:00Z is after 2554 (nanoseconds since 1970 overflow)".into())
        );
        assert_eq!(
            parse_line(r#"{"ts":"1969-12-31T23:59:59Z","event":"capture_stats"}"#),
            Err("time out of range: 1969-12-31T23:59:59Z is before 1970".into())
        );
        let unknown = r#"{"ts":"2026-11-27T08:00:00Z","event":"from_the_future"}"#;
        assert!(parse_line(unknown).unwrap_err().starts_with("not an event"));
    }
}
