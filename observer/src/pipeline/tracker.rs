//! Turns the kernel's event stream into observations: flow ids, outcomes, socket errors joined to
//! their flows, decoded DNS messages. Pure: time comes in with the events and ticks, so it is
//! tested on recorded events without root.
//!
//! The kernel reports a socket's error (`sock:inet_sk_error_report`) sometimes before the flow
//! closes (ICMP errors) and sometimes just after (resets, timeouts). So a closed flow is held for
//! `CLOSE_HOLD_NS` before it is reported, and errors wait `ERROR_HOLD_NS` for their flow.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
};

use observer_ebpf::{Flow, TCP_CLOSE_WAIT, TCP_FIN_WAIT1};

use crate::{
    capture::record::{
        endpoints, DnsPacket, Endpoints, FlowRecord, KernelEvent, PayloadPacket, Process, SockError,
    },
    pipeline::dns::{normalize_name, DecodeCache},
    pipeline::dnstcp::TcpStreams,
    pipeline::events::{
        errno_name, CaptureStats, ClosedBy, DnsObserved, FlowClosed, FlowPayload, Observed, Outcome,
    },
    pipeline::hello::{parse_first_received, parse_first_sent},
};

/// How long a closed flow waits for its socket error before it is reported.
pub const CLOSE_HOLD_NS: u64 = 150_000_000;
/// How long an error waits for its flow to close.
pub const ERROR_HOLD_NS: u64 = 2_000_000_000;
/// Bound on errors waiting for a flow (a storm of errors cannot grow memory).
const MAX_PENDING_ERRORS: usize = 4096;

/// An observation with its kernel timestamp.
pub type Timed = (u64, Observed);

struct OpenFlow {
    id: u64,
    flow: Flow,
    /// Connected before the capture (adopted when it first moved payload).
    adopted: bool,
    reported: (u64, u64),
    /// When the counters were last read (or the flow opened).
    last_poll_ns: u64,
}

struct PendingClose {
    ts_ns: u64,
    id: u64,
    flow: Flow,
    adopted: bool,
    error: Option<i32>,
    /// When the counters were last read before the close.
    last_poll_ns: u64,
}

/// The state between kernel events and observations.
#[derive(Default)]
pub struct Tracker {
    next_id: u64,
    open: HashMap<u64, OpenFlow>,
    closing: Vec<PendingClose>,
    errors: VecDeque<SockError>,
    stats: CaptureStats,
    tcp: TcpStreams,
    /// Open flows with a known source port, by endpoints: first payloads find their flow here.
    by_ends: HashMap<Endpoints, u64>,
    /// Answers whose exact repeats the kernel may count instead of copying (`DnsPacket::exchange`
    /// and time), until the capture takes them ([`Tracker::take_repeatable_answers`]).
    repeatable: Vec<(u64, u64)>,
    /// Whether the kernel counts DNS repeats (`--count-dns-repeats`): only then are questions
    /// remembered and answers called repeatable (otherwise that work would be for nothing).
    count_repeats: bool,
    /// The question (a keyed hash of it) and server of recent UDP queries not answered yet, by
    /// socket and id, oldest first in `question_order`: an answer is repeatable only if it is the
    /// first from its query's server, with its query's question.
    questions: HashMap<(u64, u16), (u64, SocketAddr)>,
    question_order: VecDeque<(u64, u16)>,
    question_key: std::collections::hash_map::RandomState,
    /// DNS messages decoded lately (a repeated exchange is cloned, not parsed again).
    decoded: DecodeCache,
}

impl Tracker {
    pub fn new() -> Self {
        Self {
            next_id: 1,
            ..Self::default()
        }
    }

    /// Counters of what was seen; the capture adds the kernel's own.
    pub fn stats(&self) -> CaptureStats {
        let tcp = self.tcp.stats();
        CaptureStats {
            dns_tcp_messages: tcp.messages,
            dns_tcp_undecodable: tcp.undecodable_segments + tcp.evicted_streams,
            ..self.stats
        }
    }

    /// The answers seen since the last call that the kernel may count exact repeats of: each
    /// the kernel's first answer to its query (same socket, id, server and question, see
    /// `DnsPacket::exchange`), whole, NOERROR, with answers that all lie on the question's CNAME
    /// chain. A repeat of such an answer is matched and read exactly as it was: nothing about it
    /// is new but that it happened, which the kernel counts.
    pub fn take_repeatable_answers(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.repeatable)
    }

    /// Remembers a UDP query's question and server; notes a response repeatable (its
    /// `DnsPacket::exchange`, see [`Tracker::take_repeatable_answers`]) when it is the first
    /// response to such a query, from its server, with its question, and reads as a plain answer
    /// (see [`repeatable`]).
    fn note_question(&mut self, packet: &QuestionFacts, d: &DnsObserved) {
        use std::hash::BuildHasher as _;
        const MAX_QUESTIONS: usize = 8192;
        let (Some(id), [q]) = (d.id, d.questions.as_slice()) else {
            return;
        };
        let question = self.question_key.hash_one((&q.name, &q.rtype, &q.class));
        let key = (packet.cookie, id);
        if !packet.response {
            if self.questions.insert(key, (question, d.server)).is_none() {
                self.question_order.push_back(key);
                while self.question_order.len() > MAX_QUESTIONS {
                    if let Some(old) = self.question_order.pop_front() {
                        self.questions.remove(&old);
                    }
                }
            }
            return;
        }
        // Only the first response to a query may be repeatable: the entry goes with it (its slot
        // in `question_order` is skipped when it comes up).
        let asked = self.questions.remove(&key);
        let Some(exchange) = packet.exchange else {
            return;
        };
        if asked == Some((question, d.server))
            && repeatable(d)
            && self.repeatable.len() < MAX_QUESTIONS
        {
            self.repeatable.push((exchange, packet.ts_ns));
        }
    }

    /// Says whether the kernel counts DNS repeats (see `take_repeatable_answers`).
    pub fn count_dns_repeats(&mut self, on: bool) {
        self.count_repeats = on;
    }

    /// Number of flows currently open.
    #[cfg(test)]
    pub fn open_flows(&self) -> usize {
        self.open.len()
    }

    /// Feeds one kernel event.
    pub fn on_event(&mut self, event: KernelEvent) -> Vec<Timed> {
        let mut out = Vec::new();
        self.on_event_into(event, &mut out);
        out
    }

    /// Feeds one kernel event; its observations are appended to `out` (the capture's batch: a
    /// vector per event cost an allocation per packet in a flood).
    pub fn on_event_into(&mut self, event: KernelEvent, out: &mut Vec<Timed>) {
        self.stats.events += 1;
        match event {
            KernelEvent::FlowOpen(r) => out.push(self.open_flow(r, false)),
            KernelEvent::FlowAdopt(r) => out.push(self.open_flow(r, true)),
            KernelEvent::FlowEstablished(r) => out.extend(self.established(r)),
            KernelEvent::FlowClose(r) => self.close_flow(r),
            KernelEvent::SockError(e) => self.sock_error(e),
            KernelEvent::Dns(packet) => self.dns_packet(packet, out),
            KernelEvent::Payload(packet) => out.extend(self.payload(packet)),
        }
    }

    /// The first bytes of a flow: parsed, and reported with the flow's id. Flows adopted
    /// mid-stream are skipped (what the kernel saw first was not their first bytes).
    fn payload(&mut self, p: PayloadPacket) -> Option<Timed> {
        let ends = if p.received {
            Endpoints {
                src: p.endpoints.dst,
                dst: p.endpoints.src,
            }
        } else {
            p.endpoints
        };
        let Some(open) = self.by_ends.get(&ends).and_then(|key| self.open.get(key)) else {
            self.stats.payload_unmatched += 1;
            return None;
        };
        if open.adopted {
            return None;
        }
        let (sent, received) = if p.received {
            (None, Some(parse_first_received(&p.payload, p.cut)))
        } else {
            (Some(parse_first_sent(&p.payload, p.cut)), None)
        };
        Some((
            p.ts_ns,
            Observed::FlowPayload(Box::new(FlowPayload {
                flow_id: open.id,
                src: ends.src,
                dst: ends.dst,
                payload_len: p.payload_len,
                cut: p.cut,
                sent,
                received,
                destination: None,
            })),
        ))
    }

    /// Indexes an open flow by its endpoints once its source port is known.
    fn index_ends(&mut self, key: u64) {
        if let Some(open) = self.open.get(&key) {
            let ends = endpoints(&open.flow.tuple);
            if ends.src.port() != 0 {
                self.by_ends.insert(ends, key);
            }
        }
    }

    /// Counts a record that could not be decoded.
    pub fn on_undecodable(&mut self) {
        self.stats.undecodable_events += 1;
    }

    /// A snapshot of a flow's kernel counters; reports progress when bytes moved.
    pub fn on_snapshot(&mut self, key: u64, flow: &Flow, now_ns: u64) -> Option<Timed> {
        let open = self.open.get_mut(&key)?;
        if flow.ts_syn_ns != open.flow.ts_syn_ns {
            return None;
        }
        let interval_ns = now_ns.saturating_sub(open.last_poll_ns);
        open.last_poll_ns = now_ns;
        let current = (flow.bytes_sent, flow.bytes_received);
        if current == open.reported || interval_ns == 0 {
            return None;
        }
        let previous = std::mem::replace(&mut open.reported, current);
        open.flow.bytes_sent = flow.bytes_sent;
        open.flow.bytes_received = flow.bytes_received;
        open.flow.ts_last_send_ns = open.flow.ts_last_send_ns.max(flow.ts_last_send_ns);
        open.flow.ts_last_recv_ns = open.flow.ts_last_recv_ns.max(flow.ts_last_recv_ns);
        let bps =
            |now: u64, before: u64| now.saturating_sub(before) as f64 * 8e9 / interval_ns as f64;
        Some((
            now_ns,
            Observed::FlowProgress {
                flow_id: open.id,
                dst: endpoints(&flow.tuple).dst,
                bytes_sent: current.0,
                bytes_received: current.1,
                interval_ms: ms(interval_ns),
                sent_bps: bps(current.0, previous.0).round(),
                received_bps: bps(current.1, previous.1).round(),
                sent_idle_ms: (flow.ts_last_send_ns != 0)
                    .then(|| ms(now_ns.saturating_sub(flow.ts_last_send_ns))),
                received_idle_ms: (flow.ts_last_recv_ns != 0)
                    .then(|| ms(now_ns.saturating_sub(flow.ts_last_recv_ns))),
            },
        ))
    }

    /// Time passes: reports closed flows whose hold expired and errors nobody claimed.
    pub fn on_tick(&mut self, now_ns: u64) -> Vec<Timed> {
        let mut out = Vec::new();
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.closing)
            .into_iter()
            .partition(|c| now_ns.saturating_sub(c.ts_ns) >= CLOSE_HOLD_NS);
        self.closing = keep;
        out.extend(due.into_iter().map(|c| closed(&c)));
        while let Some(e) = self.errors.front() {
            if now_ns.saturating_sub(e.ts_ns) < ERROR_HOLD_NS {
                break;
            }
            let e = self.errors.pop_front().expect("front exists");
            out.push(unclaimed_error(&e));
        }
        out
    }

    /// Reports everything held back (the capture is stopping).
    pub fn flush(&mut self) -> Vec<Timed> {
        let mut out: Vec<Timed> = self.closing.drain(..).map(|c| closed(&c)).collect();
        out.extend(self.errors.drain(..).map(|e| unclaimed_error(&e)));
        out
    }

    fn open_flow(&mut self, r: FlowRecord, adopted: bool) -> Timed {
        let id = self.next_id;
        self.next_id += 1;
        let ends = endpoints(&r.flow.tuple);
        let process = Process::from(&r.flow.owner);
        self.open.insert(
            r.key,
            OpenFlow {
                id,
                flow: r.flow,
                adopted,
                reported: (0, 0),
                last_poll_ns: r.ts_ns,
            },
        );
        self.index_ends(r.key);
        (
            r.ts_ns,
            Observed::FlowOpened {
                flow_id: id,
                process,
                src: ends.src,
                dst: ends.dst,
                destination: None,
                adopted,
            },
        )
    }

    /// The id of the flow behind `r`, opening it first if its start was missed.
    fn id_for(&mut self, r: &FlowRecord) -> u64 {
        match self.open.get_mut(&r.key) {
            Some(open) if open.flow.ts_syn_ns == r.flow.ts_syn_ns => {
                open.flow = r.flow;
                open.id
            }
            _ => {
                let id = self.next_id;
                self.next_id += 1;
                self.open.insert(
                    r.key,
                    OpenFlow {
                        id,
                        flow: r.flow,
                        adopted: false,
                        reported: (0, 0),
                        last_poll_ns: r.ts_ns,
                    },
                );
                id
            }
        }
    }

    fn established(&mut self, r: FlowRecord) -> Option<Timed> {
        let id = self.id_for(&r);
        self.index_ends(r.key);
        let ends = endpoints(&r.flow.tuple);
        Some((
            r.ts_ns,
            Observed::FlowEstablished {
                flow_id: id,
                process: Process::from(&r.flow.owner),
                src: ends.src,
                dst: ends.dst,
                connect_ms: ms(r.flow.ts_established_ns.saturating_sub(r.flow.ts_syn_ns)),
                destination: None,
            },
        ))
    }

    fn close_flow(&mut self, mut r: FlowRecord) {
        // Counters polled from elsewhere (sock_diag) may be ahead of the kernel record's.
        if let Some(o) = self.open.get(&r.key) {
            if o.flow.ts_syn_ns == r.flow.ts_syn_ns {
                let (f, p) = (&mut r.flow, &o.flow);
                // Payload (beyond a FIN's one sequence number) moved after the last poll, and
                // the kernel did not time it: when it last moved is unknown, so no idle time.
                let untimed = f.ts_last_send_ns == 0
                    && f.ts_last_recv_ns == 0
                    && (f.bytes_sent > p.bytes_sent + 1 || f.bytes_received > p.bytes_received + 1);
                f.bytes_sent = f.bytes_sent.max(p.bytes_sent);
                f.bytes_received = f.bytes_received.max(p.bytes_received);
                if !untimed {
                    f.ts_last_send_ns = f.ts_last_send_ns.max(p.ts_last_send_ns);
                    f.ts_last_recv_ns = f.ts_last_recv_ns.max(p.ts_last_recv_ns);
                }
            }
        }
        let id = self.id_for(&r);
        let (last_poll_ns, adopted) = self
            .open
            .remove(&r.key)
            .map_or((r.flow.ts_syn_ns, false), |o| (o.last_poll_ns, o.adopted));
        let ends = endpoints(&r.flow.tuple);
        if self.by_ends.get(&ends) == Some(&r.key) {
            self.by_ends.remove(&ends);
        }
        let error = self
            .errors
            .iter()
            .position(|e| same_flow(&e.endpoints, &ends))
            .and_then(|i| self.errors.remove(i))
            .map(|e| e.error)
            .or((r.flow.sk_err > 0).then_some(r.flow.sk_err));
        self.closing.push(PendingClose {
            ts_ns: r.ts_ns,
            id,
            flow: r.flow,
            adopted,
            error,
            last_poll_ns,
        });
    }

    fn sock_error(&mut self, e: SockError) {
        // Error 0: the process collected the error (SO_ERROR) before the report read it; the
        // flow's own `sk_err`, read at its close, has it.
        if e.error == 0 {
            return;
        }
        if let Some(c) = self
            .closing
            .iter_mut()
            .find(|c| c.error.is_none() && same_flow(&endpoints(&c.flow.tuple), &e.endpoints))
        {
            c.error = Some(e.error);
            return;
        }
        if self.errors.len() >= MAX_PENDING_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(e);
    }

    /// A UDP packet is one message; a TCP segment completes zero or more.
    fn dns_packet(&mut self, packet: DnsPacket, out: &mut Vec<Timed>) {
        let Some(seq) = packet.tcp_seq else {
            out.push(self.dns(packet));
            return;
        };
        let (server, client) = if packet.response {
            (packet.endpoints.src, packet.endpoints.dst)
        } else {
            (packet.endpoints.dst, packet.endpoints.src)
        };
        let key = (packet.cookie, packet.response, client, server);
        let messages =
            self.tcp
                .segment(packet.ts_ns, key, seq, packet.payload_len, &packet.payload);
        for m in messages {
            out.push(self.dns(DnsPacket {
                payload_len: m.wire_len,
                payload: m.bytes,
                cut: m.cut,
                ..packet.clone()
            }));
        }
    }

    fn dns(&mut self, packet: DnsPacket) -> Timed {
        let (server, client) = if packet.response {
            (packet.endpoints.src, packet.endpoints.dst)
        } else {
            (packet.endpoints.dst, packet.endpoints.src)
        };
        let packet_facts = QuestionFacts {
            cookie: packet.cookie,
            response: packet.response,
            exchange: packet.exchange,
            ts_ns: packet.ts_ns,
        };
        let mut observed = DnsObserved {
            process: packet.process,
            cgroup_id: packet.cgroup_id,
            socket_cookie: packet.cookie,
            server,
            client,
            payload_len: packet.payload_len,
            capture_cut: packet.cut,
            tcp: packet.tcp_seq.is_some(),
            id: None,
            rcode: None,
            tc: false,
            questions: Vec::new(),
            answers: Vec::new(),
            decode_error: None,
            check: None,
            out_of_bailiwick: 0,
        };
        match self.decoded.decode(&packet.payload) {
            Ok(msg) => {
                observed.id = Some(msg.id);
                observed.rcode = packet.response.then(|| msg.rcode.into_owned());
                observed.tc = msg.tc;
                observed.questions = msg.questions;
                observed.answers = msg.answers;
                observed.decode_error = msg.incomplete;
                if self.count_repeats && packet.tcp_seq.is_none() {
                    self.note_question(&packet_facts, &observed);
                }
            }
            Err(e) => {
                self.stats.malformed_dns += 1;
                observed.decode_error = Some(e.to_string());
            }
        }
        let event = if packet.response {
            Observed::DnsResponse(Box::new(observed))
        } else {
            Observed::DnsQuery(Box::new(observed))
        };
        (packet.ts_ns, event)
    }
}

/// What [`Tracker::note_question`] needs of a DNS packet.
struct QuestionFacts {
    cookie: u64,
    response: bool,
    exchange: Option<u64>,
    ts_ns: u64,
}

/// Whether a response's exact repeats may be counted rather than read (see
/// [`Tracker::take_repeatable_answers`]): whole, decoded, NOERROR, one question, answers that
/// all lie on its CNAME chain in order (stricter than the correlator, never looser). Its
/// question is its query's (checked by the caller).
fn repeatable(d: &DnsObserved) -> bool {
    const MAX_CHAIN: usize = 16;
    let [question] = d.questions.as_slice() else {
        return false;
    };
    if d.capture_cut
        || d.tc
        || d.decode_error.is_some()
        || d.rcode.as_deref() != Some("NOERROR")
        || d.answers.is_empty()
    {
        return false;
    }
    let mut chain = vec![normalize_name(&question.name)];
    for answer in &d.answers {
        if !chain.contains(&normalize_name(&answer.name)) {
            return false;
        }
        if answer.rtype == "CNAME" {
            if chain.len() >= MAX_CHAIN {
                return false;
            }
            chain.push(normalize_name(&answer.data));
        }
    }
    true
}

/// Whether an error's endpoints name this flow. The kernel may report the flow's source port as 0
/// if the error came before the port was assigned.
fn same_flow(error: &Endpoints, flow: &Endpoints) -> bool {
    error.dst == flow.dst
        && error.src.ip() == flow.src.ip()
        && (error.src.port() == flow.src.port() || flow.src.port() == 0 || error.src.port() == 0)
}

fn ms(ns: u64) -> f64 {
    // Rounded to microseconds so reports stay readable.
    (ns as f64 / 1_000.0).round() / 1_000.0
}

/// How a flow ended, from what the kernel saw and the error it reported.
pub fn outcome(flow: &Flow, error: Option<i32>) -> (Outcome, Option<ClosedBy>) {
    let established = flow.ts_established_ns != 0;
    let rst = flow.ts_rst_ns != 0;
    if established {
        return match error {
            _ if rst => (Outcome::Reset, None),
            Some(libc::ECONNRESET | libc::EPIPE) => (Outcome::Reset, None),
            Some(libc::ETIMEDOUT) => (Outcome::Timeout, None),
            Some(_) => (Outcome::Error, None),
            None => {
                let peer_first = flow.states_seen & (1 << TCP_CLOSE_WAIT) != 0;
                let local_first = flow.states_seen & (1 << TCP_FIN_WAIT1) != 0;
                // Neither FIN state, no RST received and no error: this side closed abortively
                // (a close with unread data, or SO_LINGER 0), sending a RST of its own.
                let by = match (local_first, peer_first) {
                    (true, false) | (false, false) => Some(ClosedBy::Local),
                    (false, true) => Some(ClosedBy::Peer),
                    (true, true) => None,
                };
                (Outcome::Closed, by)
            }
        };
    }
    match error {
        Some(libc::ECONNREFUSED) => (Outcome::Refused, None),
        _ if rst => (Outcome::Refused, None),
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM) => {
            (Outcome::Unreachable, None)
        }
        Some(libc::ETIMEDOUT) => (Outcome::Timeout, None),
        Some(_) => (Outcome::Error, None),
        None if flow.syn_retransmits > 0 => (Outcome::Timeout, None),
        None => (Outcome::Aborted, None),
    }
}

fn closed(c: &PendingClose) -> Timed {
    let flow = &c.flow;
    let ends = endpoints(&flow.tuple);
    let (outcome, closed_by) = outcome(flow, c.error);
    let established = flow.ts_established_ns != 0;
    (
        c.ts_ns,
        Observed::FlowClosed(Box::new(FlowClosed {
            flow_id: c.id,
            process: Process::from(&flow.owner),
            src: ends.src,
            dst: ends.dst,
            destination: None,
            adopted: c.adopted,
            outcome,
            closed_by,
            error: c.error.map(errno_name),
            established,
            rst_received: flow.ts_rst_ns != 0,
            syn_retransmits: flow.syn_retransmits,
            retransmits: flow.retransmits,
            bytes_sent: flow.bytes_sent,
            bytes_received: flow.bytes_received,
            connect_ms: (established && !c.adopted)
                .then(|| ms(flow.ts_established_ns.saturating_sub(flow.ts_syn_ns))),
            duration_ms: ms(c.ts_ns.saturating_sub(flow.ts_syn_ns)),
            idle_ms: {
                let last = flow.ts_last_send_ns.max(flow.ts_last_recv_ns);
                (last != 0).then(|| ms(c.ts_ns.saturating_sub(last)))
            },
            since_poll_ms: ms(c.ts_ns.saturating_sub(c.last_poll_ns)),
            sent_idle_ms: (flow.ts_last_send_ns != 0)
                .then(|| ms(c.ts_ns.saturating_sub(flow.ts_last_send_ns))),
            received_idle_ms: (flow.ts_last_recv_ns != 0)
                .then(|| ms(c.ts_ns.saturating_sub(flow.ts_last_recv_ns))),
        })),
    )
}

fn unclaimed_error(e: &SockError) -> Timed {
    (
        e.ts_ns,
        Observed::SocketError {
            src: e.endpoints.src,
            dst: e.endpoints.dst,
            error: errno_name(e.error),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_ebpf::{TCP_CLOSE, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_SYN_SENT};

    const MS: u64 = 1_000_000;

    fn flow(sport: u16) -> Flow {
        let mut f = Flow {
            tuple: crate::capture::record::tuple(
                SocketAddr::from(([198, 18, 0, 1], sport)),
                "198.18.1.10:443".parse().unwrap(),
            ),
            ts_syn_ns: 1000 * MS,
            states_seen: 1 << TCP_SYN_SENT,
            ..Flow::default()
        };
        f.owner.pid = 7;
        f.owner.comm[..4].copy_from_slice(b"curl");
        f
    }

    fn rec(ts_ms: u64, f: Flow) -> FlowRecord {
        FlowRecord {
            ts_ns: ts_ms * MS,
            key: 0xabc,
            flow: f,
        }
    }

    fn closed_of(out: &[Timed]) -> &FlowClosed {
        out.iter()
            .find_map(|(_, o)| match o {
                Observed::FlowClosed(c) => Some(&**c),
                _ => None,
            })
            .expect("a flow_closed")
    }

    #[test]
    fn a_flow_adopted_mid_way_is_established_and_has_no_connect_time() {
        let mut t = Tracker::new();
        let mut f = flow(40001);
        // As the kernel adopts it: first seen established, with the bytes of that first read.
        f.ts_syn_ns = 5000 * MS;
        f.ts_established_ns = 5000 * MS;
        f.states_seen = 1 << TCP_ESTABLISHED;
        f.bytes_received = 1200;
        let out = t.on_event(KernelEvent::FlowAdopt(rec(5000, f)));
        assert!(matches!(
            out[0].1,
            Observed::FlowOpened {
                flow_id: 1,
                adopted: true,
                ..
            }
        ));
        f.bytes_received = 4000;
        assert!(t.on_snapshot(0xabc, &f, 5500 * MS).is_some());
        f.states_seen |= 1 << TCP_CLOSE_WAIT | 1 << TCP_CLOSE;
        t.on_event(KernelEvent::FlowClose(rec(6000, f)));
        let out = t.flush();
        let c = closed_of(&out);
        assert!(c.adopted && c.established);
        assert_eq!(c.connect_ms, None, "its handshake was not seen");
        assert_eq!(c.closed_by, Some(ClosedBy::Peer));
        assert_eq!(c.bytes_received, 4000);
        assert_eq!(c.duration_ms, 1000.0, "from the adoption");
    }

    #[test]
    fn a_normal_flow_opens_establishes_moves_bytes_and_closes() {
        let mut t = Tracker::new();
        let mut f = flow(0);
        let out = t.on_event(KernelEvent::FlowOpen(rec(1000, f)));
        assert!(matches!(out[0].1, Observed::FlowOpened { flow_id: 1, .. }));
        f.tuple.sport = 40000;
        f.ts_established_ns = 1002 * MS;
        f.states_seen |= 1 << TCP_ESTABLISHED;
        let out = t.on_event(KernelEvent::FlowEstablished(rec(1002, f)));
        let Observed::FlowEstablished {
            connect_ms, src, ..
        } = &out[0].1
        else {
            panic!()
        };
        assert_eq!(*connect_ms, 2.0);
        assert_eq!(src.port(), 40000);

        f.bytes_sent = 500;
        f.bytes_received = 9000;
        f.ts_last_recv_ns = 1200 * MS;
        let progress = t.on_snapshot(0xabc, &f, 1500 * MS).expect("progress");
        assert!(matches!(
            progress.1,
            Observed::FlowProgress {
                bytes_received: 9000,
                received_idle_ms: Some(300.0),
                sent_idle_ms: None,
                ..
            }
        ));
        assert!(
            t.on_snapshot(0xabc, &f, 1600 * MS).is_none(),
            "no news, no progress"
        );

        f.states_seen |= 1 << TCP_FIN_WAIT1 | 1 << TCP_CLOSE;
        t.on_event(KernelEvent::FlowClose(rec(1700, f)));
        assert!(t.on_tick(1701 * MS).is_empty(), "held for a late error");
        let out = t.on_tick(1700 * MS + CLOSE_HOLD_NS);
        let c = closed_of(&out);
        assert_eq!(c.flow_id, 1);
        assert_eq!(c.outcome, Outcome::Closed);
        assert_eq!(c.closed_by, Some(ClosedBy::Local));
        assert_eq!((c.bytes_sent, c.bytes_received), (500, 9000));
        assert_eq!(c.duration_ms, 700.0);
        assert_eq!(&*c.process.comm, "curl");
        assert_eq!(t.open_flows(), 0);
    }

    #[test]
    fn a_reset_after_close_is_joined_as_refused() {
        let mut t = Tracker::new();
        let mut f = flow(0);
        t.on_event(KernelEvent::FlowOpen(rec(1000, f)));
        f.tuple.sport = 40001;
        f.ts_rst_ns = 1001 * MS;
        t.on_event(KernelEvent::FlowClose(rec(1001, f)));
        t.on_event(KernelEvent::SockError(SockError {
            ts_ns: 1001 * MS,
            error: libc::ECONNREFUSED,
            endpoints: endpoints(&f.tuple),
        }));
        let out = t.flush();
        let c = closed_of(&out);
        assert_eq!(c.outcome, Outcome::Refused);
        assert_eq!(c.error.as_deref(), Some("ECONNREFUSED"));
        assert!(c.rst_received);
        assert!(!c.established);
        assert_eq!(out.len(), 1, "the error was claimed by the flow");
    }

    #[test]
    fn an_icmp_error_before_close_is_joined_as_unreachable() {
        let mut t = Tracker::new();
        let mut f = flow(0);
        t.on_event(KernelEvent::FlowOpen(rec(1000, f)));
        f.tuple.sport = 40002;
        t.on_event(KernelEvent::SockError(SockError {
            ts_ns: 1001 * MS,
            error: libc::EHOSTUNREACH,
            endpoints: endpoints(&f.tuple),
        }));
        t.on_event(KernelEvent::FlowClose(rec(1001, f)));
        let c = closed_of(&t.on_tick(2000 * MS)).clone();
        assert_eq!(c.outcome, Outcome::Unreachable);
        assert_eq!(c.error.as_deref(), Some("EHOSTUNREACH"));
    }

    #[test]
    fn a_lost_errno_is_taken_from_the_socket_at_its_close() {
        let mut t = Tracker::new();
        let mut f = flow(0);
        t.on_event(KernelEvent::FlowOpen(rec(1000, f)));
        f.tuple.sport = 40003;
        f.sk_err = libc::EHOSTUNREACH;
        t.on_event(KernelEvent::FlowClose(rec(1001, f)));
        // The report came after the process had collected the error: errno 0.
        t.on_event(KernelEvent::SockError(SockError {
            ts_ns: 1001 * MS,
            error: 0,
            endpoints: endpoints(&f.tuple),
        }));
        let out = t.flush();
        assert_eq!(out.len(), 1, "an errno-0 report is no news: {out:?}");
        let c = closed_of(&out);
        assert_eq!(
            (c.outcome, c.error.as_deref()),
            (Outcome::Unreachable, Some("EHOSTUNREACH"))
        );
    }

    #[test]
    fn outcomes_without_errors() {
        let mut f = flow(1);
        f.syn_retransmits = 3;
        assert_eq!(outcome(&f, None).0, Outcome::Timeout);
        assert_eq!(outcome(&f, Some(libc::ETIMEDOUT)).0, Outcome::Timeout);
        f.syn_retransmits = 0;
        assert_eq!(outcome(&f, None).0, Outcome::Aborted);
        f.ts_established_ns = 1;
        f.states_seen = 1 << TCP_CLOSE_WAIT | 1 << TCP_CLOSE;
        assert_eq!(outcome(&f, None), (Outcome::Closed, Some(ClosedBy::Peer)));
        // Closed with unread data: straight from ESTABLISHED to CLOSE, the RST sent by this side.
        f.states_seen = 1 << TCP_ESTABLISHED | 1 << TCP_CLOSE;
        assert_eq!(outcome(&f, None), (Outcome::Closed, Some(ClosedBy::Local)));
        f.ts_rst_ns = 2;
        assert_eq!(outcome(&f, Some(libc::ECONNRESET)).0, Outcome::Reset);
        let _ = TCP_CLOSE;
    }

    #[test]
    fn unclaimed_errors_are_reported_after_their_hold() {
        let mut t = Tracker::new();
        let f = flow(5);
        t.on_event(KernelEvent::SockError(SockError {
            ts_ns: 10 * MS,
            error: libc::ETIMEDOUT,
            endpoints: endpoints(&f.tuple),
        }));
        assert!(t.on_tick(20 * MS).is_empty());
        let out = t.on_tick(10 * MS + ERROR_HOLD_NS);
        assert!(matches!(&out[0].1, Observed::SocketError { error, .. } if error == "ETIMEDOUT"));
    }

    #[test]
    fn a_close_without_its_open_still_gets_reported() {
        let mut t = Tracker::new();
        let mut f = flow(9);
        f.ts_established_ns = 1001 * MS;
        t.on_event(KernelEvent::FlowClose(rec(1500, f)));
        let out = t.flush();
        assert_eq!(closed_of(&out).flow_id, 1);
    }

    #[test]
    fn malformed_dns_is_counted_and_reported() {
        let mut t = Tracker::new();
        let packet = DnsPacket {
            ts_ns: 1,
            response: true,
            cookie: 1,
            cgroup_id: 1,
            endpoints: endpoints(&flow(53).tuple),
            process: None,
            payload_len: 3,
            payload: vec![1, 2, 3],
            cut: false,
            tcp_seq: None,
            exchange: None,
        };
        let out = t.on_event(KernelEvent::Dns(packet));
        let Observed::DnsResponse(d) = &out[0].1 else {
            panic!()
        };
        assert!(d.decode_error.is_some());
        assert_eq!(t.stats().malformed_dns, 1);
    }

    /// A UDP DNS packet between 198.18.0.1:40000 and `server`, on socket 7, as the kernel copies
    /// it (`exchange`: the kernel's hash of a response).
    fn udp_dns(bytes: Vec<u8>, response: bool, server: &str, exchange: Option<u64>) -> DnsPacket {
        let client: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let server: SocketAddr = server.parse().unwrap();
        DnsPacket {
            ts_ns: 5,
            response,
            cookie: 7,
            cgroup_id: 1,
            endpoints: if response {
                Endpoints {
                    src: server,
                    dst: client,
                }
            } else {
                Endpoints {
                    src: client,
                    dst: server,
                }
            },
            process: None,
            payload_len: bytes.len() as u32,
            payload: bytes,
            cut: false,
            tcp_seq: None,
            exchange,
        }
    }

    fn dns_query(name: &str) -> Vec<u8> {
        use hickory_proto::{
            op::{Message, MessageType, Query},
            rr::{Name, RecordType},
        };
        use std::str::FromStr;
        let mut msg = Message::new();
        msg.set_id(0x1234).set_message_type(MessageType::Query);
        msg.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        msg.to_vec().unwrap()
    }

    #[test]
    fn only_a_plain_first_answer_from_the_server_asked_is_repeatable() {
        use crate::pipeline::dns::tests::{a, cname, response};
        use hickory_proto::op::ResponseCode;
        const SERVER: &str = "198.18.0.2:53";
        let answer = |name: &str, records| response(name, ResponseCode::NoError, records);
        let plain = || {
            answer(
                "api.github.com.",
                vec![a("api.github.com.", "198.18.1.10", 60)],
            )
        };
        // Asks, then hands the response to the tracker; returns what became repeatable.
        let exchange = |query: &str, reply: DnsPacket| {
            let mut t = Tracker::new();
            t.count_dns_repeats(true);
            t.on_event(KernelEvent::Dns(udp_dns(
                dns_query(query),
                false,
                SERVER,
                None,
            )));
            t.on_event(KernelEvent::Dns(reply));
            t.take_repeatable_answers()
        };

        // The first answer, from the server asked, with the question, answers on its chain.
        let first = udp_dns(plain(), true, SERVER, Some(99));
        assert_eq!(exchange("api.github.com.", first.clone()), vec![(99, 5)]);
        let chained = answer(
            "api.github.com.",
            vec![
                cname("api.github.com.", "lb.github.com.", 60),
                a("lb.github.com.", "198.18.1.11", 60),
            ],
        );
        assert_eq!(
            exchange("api.github.com.", udp_dns(chained, true, SERVER, Some(98))),
            vec![(98, 5)]
        );

        // Not when the kernel gave no hash (TCP, too long), or from another server.
        assert!(exchange("api.github.com.", udp_dns(plain(), true, SERVER, None)).is_empty());
        assert!(exchange(
            "api.github.com.",
            udp_dns(plain(), true, "198.18.0.3:53", Some(99))
        )
        .is_empty());
        // Not for another question. (A question in another case, DNS 0x20, is the same question,
        // as for the correlator; the kernel only counts byte-for-byte repeats of both anyway.)
        assert!(exchange("ghcr.io.", first.clone()).is_empty());
        assert!(exchange("api.github.com.", udp_dns(plain(), true, SERVER, Some(99))).len() == 1);
        // Not a failure, an empty answer, or a record off the question's chain.
        for bytes in [
            response("api.github.com.", ResponseCode::NXDomain, vec![]),
            answer("api.github.com.", vec![]),
            answer(
                "api.github.com.",
                vec![
                    a("api.github.com.", "198.18.1.10", 60),
                    a("evil.example.", "203.0.113.66", 60),
                ],
            ),
        ] {
            assert!(exchange("api.github.com.", udp_dns(bytes, true, SERVER, Some(97))).is_empty());
        }
        // Not a cut copy.
        let mut cut = first.clone();
        cut.cut = true;
        assert!(exchange("api.github.com.", cut).is_empty());

        // Only the first response to a query: a second one (a duplicate) is not.
        let mut t = Tracker::new();
        t.count_dns_repeats(true);
        t.on_event(KernelEvent::Dns(udp_dns(
            dns_query("api.github.com."),
            false,
            SERVER,
            None,
        )));
        t.on_event(KernelEvent::Dns(first.clone()));
        t.on_event(KernelEvent::Dns(first.clone()));
        assert_eq!(t.take_repeatable_answers(), vec![(99, 5)]);
        // Nor an answer with no query seen.
        t.on_event(KernelEvent::Dns(first));
        assert!(t.take_repeatable_answers().is_empty());

        // Without `--count-dns-repeats` nothing is remembered at all.
        let mut t = Tracker::new();
        t.on_event(KernelEvent::Dns(udp_dns(
            dns_query("api.github.com."),
            false,
            SERVER,
            None,
        )));
        t.on_event(KernelEvent::Dns(udp_dns(plain(), true, SERVER, Some(99))));
        assert!(t.take_repeatable_answers().is_empty() && t.questions.is_empty());
    }

    #[test]
    fn dns_over_tcp_is_reassembled_into_messages() {
        use crate::pipeline::dns::tests::{a, response};
        use hickory_proto::op::ResponseCode;
        let mut t = Tracker::new();
        let msg = response(
            "api.github.com.",
            ResponseCode::NoError,
            vec![a("api.github.com.", "198.18.1.10", 60)],
        );
        let mut stream = u16::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
        stream.extend_from_slice(&msg);
        let segment = |seq: u32, bytes: &[u8]| DnsPacket {
            ts_ns: 1,
            response: true,
            cookie: 4,
            cgroup_id: 1,
            endpoints: endpoints(&flow(53).tuple),
            process: None,
            payload_len: u32::try_from(bytes.len()).unwrap(),
            payload: bytes.to_vec(),
            cut: false,
            tcp_seq: Some(seq),
            exchange: None,
        };
        assert!(t
            .on_event(KernelEvent::Dns(segment(100, &stream[..1])))
            .is_empty());
        let out = t.on_event(KernelEvent::Dns(segment(101, &stream[1..])));
        let [(_, Observed::DnsResponse(d))] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(d.tcp);
        assert_eq!(d.answers[0].data, "198.18.1.10");
        assert_eq!(d.payload_len, u32::try_from(msg.len()).unwrap());
        assert_eq!(t.stats().dns_tcp_messages, 1);
    }
}
