//! Binding DNS answers to their questions: only a response to a query the capture saw may name
//! addresses.
//!
//! The kernel copies every packet from port 53, and any local process can send one (its own
//! server on port 53, a user namespace's loopback). If every response fed the name cache, a forged
//! answer `api.github.com A <attacker>` would make an exfiltration flow read as the runner's own
//! essential host. So each response is checked against the queries seen ([`QueryTable`]):
//!
//! - the same local socket (kernel cookie) or the same client address and port;
//! - the same DNS id;
//! - the same question: name (case-insensitive, DNS 0x20 randomisation included), type, class;
//! - from the server the query was sent to (address and port);
//! - within [`MATCH_WINDOW_NS`] of the query's latest send;
//! - the first such response only: later ones are duplicates.
//!
//! A response that fails a rule is a [`DnsCheck`] other than `Matched`: it names nothing, it is
//! counted per kind ([`DnsCheckStats`]), and the correlator remembers the addresses it claimed so
//! a flow that then goes there is marked (see `correlate.rs`).
//!
//! # Before the capture started
//! A response whose query was sent before the capture started has no query to match. It cannot
//! be told from a forged one, so it is never used for naming: during the first
//! [`MATCH_WINDOW_NS`] of the capture such a response is counted as `before_start` (the benign
//! case) rather than `unsolicited`. Flows whose lookup happened before the capture stay
//! `unresolved`, never wrongly named.
//!
//! # Local stub resolvers
//! A stub (systemd-resolved on 127.0.0.53, dnsmasq, Docker's 127.0.0.11) asks upstream from its
//! own socket: that query is the match for the upstream's answer, and the client's query to the
//! stub is the match for the stub's answer to the client. Nothing special is needed.
//!
//! # Bounds
//! The table is bounded in bytes ([`QueryTable::with_max_bytes`], 8 MiB by default; an entry
//! costs [`ENTRY_OVERHEAD`] plus its name): when a flood of queries fills it, the oldest are
//! dropped and counted (`queries_evicted`); a late answer to a dropped query is then unsolicited
//! (it names nothing: the safe side), and the report says it is incomplete.

use std::{
    collections::{hash_map::Entry, HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};

use crate::{
    capture::record::Process,
    pipeline::{dns::Question, events::DnsObserved},
};

const NS_PER_SEC: u64 = 1_000_000_000;
/// How long after a query's latest send its response is accepted: glibc's default resolver
/// timeout (5 s) times its default attempts (2).
pub const MATCH_WINDOW_NS: u64 = 10 * NS_PER_SEC;
/// Default bound of the query table, in bytes.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 8 << 20;
/// The cost of a query entry besides its name: the entry and its two index slots.
pub const ENTRY_OVERHEAD: usize = 256;

/// What a response was, checked against the queries seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsCheck {
    /// The first response to an outstanding query: it names addresses.
    Matched,
    /// No query was seen on that socket with that id.
    Unsolicited,
    /// A query with that id was seen on that socket, for another question (name, type or class).
    Mismatched,
    /// The query matches but the response came from another server than the one asked.
    WrongServer,
    /// The query was already answered: only the first response counts.
    Duplicate,
    /// The query was sent more than the match window before the response.
    Late,
    /// No query seen, in the first seconds of the capture: probably the answer to a query sent
    /// before the capture started (see the module documentation).
    BeforeStart,
    /// A record of a matched response that is not on the question's CNAME chain (an "additional"
    /// name slipped into the answer section). Counted per record.
    OutOfBailiwick,
}

impl DnsCheck {
    /// Every kind of rejection, in the order reports list them.
    pub const REJECTIONS: [Self; 7] = [
        Self::Unsolicited,
        Self::Mismatched,
        Self::WrongServer,
        Self::OutOfBailiwick,
        Self::Duplicate,
        Self::Late,
        Self::BeforeStart,
    ];

    /// The code reports and counters use: `dns_unsolicited`, `dns_mismatched`, ...
    pub fn code(self) -> &'static str {
        match self {
            Self::Matched => "dns_matched",
            Self::Unsolicited => "dns_unsolicited",
            Self::Mismatched => "dns_mismatched",
            Self::WrongServer => "dns_wrong_server",
            Self::Duplicate => "dns_duplicate",
            Self::Late => "dns_late",
            Self::BeforeStart => "dns_unmatched_before_start",
            Self::OutOfBailiwick => "dns_out_of_bailiwick",
        }
    }

    /// One sentence for people.
    pub fn explanation(self) -> &'static str {
        match self {
            Self::Matched => "the first response to a query the capture saw",
            Self::Unsolicited => "a DNS response no query was seen for",
            Self::Mismatched => "a DNS response whose question differs from the query's",
            Self::WrongServer => "a DNS response from another server than the one asked",
            Self::Duplicate => "a second DNS response to a query already answered",
            Self::Late => "a DNS response after the resolver timeout",
            Self::BeforeStart => {
                "a DNS response without a query in the first seconds of the capture \
                 (asked before it started)"
            }
            Self::OutOfBailiwick => "an answer record for a name off the question's CNAME chain",
        }
    }

    /// Whether this is a sign of forgery rather than of the capture's own limits.
    pub fn suspicious(self) -> bool {
        matches!(
            self,
            Self::Unsolicited | Self::Mismatched | Self::WrongServer | Self::OutOfBailiwick
        )
    }
}

/// Counters of the checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsCheckStats {
    /// Responses that matched their query and named addresses.
    pub matched: u64,
    pub unsolicited: u64,
    pub mismatched: u64,
    pub wrong_server: u64,
    pub duplicate: u64,
    pub late: u64,
    pub unmatched_before_start: u64,
    /// Records ignored in matched responses (not on the question's CNAME chain).
    pub out_of_bailiwick: u64,
    /// Queries dropped from the table to stay within its byte bound.
    pub queries_evicted: u64,
}

impl DnsCheckStats {
    pub fn count(&self, check: DnsCheck) -> u64 {
        match check {
            DnsCheck::Matched => self.matched,
            DnsCheck::Unsolicited => self.unsolicited,
            DnsCheck::Mismatched => self.mismatched,
            DnsCheck::WrongServer => self.wrong_server,
            DnsCheck::Duplicate => self.duplicate,
            DnsCheck::Late => self.late,
            DnsCheck::BeforeStart => self.unmatched_before_start,
            DnsCheck::OutOfBailiwick => self.out_of_bailiwick,
        }
    }

    pub fn add(&mut self, check: DnsCheck, n: u64) {
        let slot = match check {
            DnsCheck::Matched => &mut self.matched,
            DnsCheck::Unsolicited => &mut self.unsolicited,
            DnsCheck::Mismatched => &mut self.mismatched,
            DnsCheck::WrongServer => &mut self.wrong_server,
            DnsCheck::Duplicate => &mut self.duplicate,
            DnsCheck::Late => &mut self.late,
            DnsCheck::BeforeStart => &mut self.unmatched_before_start,
            DnsCheck::OutOfBailiwick => &mut self.out_of_bailiwick,
        };
        *slot += n;
    }

    /// Nothing rejected, nothing dropped.
    pub fn clean(&self) -> bool {
        self.rejected() == 0 && self.queries_evicted == 0
    }

    /// Responses (and records) that named nothing.
    pub fn rejected(&self) -> u64 {
        DnsCheck::REJECTIONS.iter().map(|&c| self.count(c)).sum()
    }
}

/// The question of a query, normalized for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    name: String,
    rtype: std::borrow::Cow<'static, str>,
    class: Option<String>,
}

impl Key {
    fn of(q: &Question) -> Self {
        Self {
            name: crate::pipeline::dns::normalized(&q.name).into_owned(),
            rtype: crate::pipeline::dns::rtype_upper(&q.rtype),
            class: q.class.as_ref().map(|c| c.to_ascii_uppercase()),
        }
    }

    /// Whether `q` asks this question (compared as [`Key::of`] would, without building one: a
    /// flood compares every response).
    fn asks(&self, q: &Question) -> bool {
        q.name
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&self.name)
            && q.rtype.eq_ignore_ascii_case(&self.rtype)
            && match (&q.class, &self.class) {
                (None, None) => true,
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            }
    }
}

#[derive(Clone, Debug)]
struct Outstanding {
    /// Latest send of the query (resends of the same query refresh it).
    ts_ns: u64,
    cookie: u64,
    client: SocketAddr,
    server: SocketAddr,
    id: u16,
    question: Key,
    process: Option<Process>,
    answered: bool,
    /// The next older entry of the same (client, id), and of the same (cookie, id).
    older_by_client: Option<u64>,
    older_by_cookie: Option<u64>,
}

impl Outstanding {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD + self.question.name.len()
    }
}

/// A matched response: the query it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedQuery {
    pub ts_ns: u64,
    pub process: Option<Process>,
}

/// The queries seen, waiting for (or recently given) their response.
///
/// Entries are numbered in the order they came and leave oldest first (by age or by the byte
/// bound), so they live in a queue indexed by number, and each index ((client, id) and
/// (socket cookie, id)) keeps only the newest entry's number: entries of the same index are
/// chained from newest to oldest, and a chain ends at the first number that already left. A
/// query costs no allocation beyond its question's text, a response none.
#[derive(Clone, Debug)]
pub struct QueryTable {
    /// Entry number `first + i` at `entries[i]`.
    entries: VecDeque<Outstanding>,
    first: u64,
    by_client: HashMap<(SocketAddr, u16), u64>,
    by_cookie: HashMap<(u64, u16), u64>,
    bytes: usize,
    max_bytes: usize,
    started_ns: Option<u64>,
    stats: DnsCheckStats,
}

impl Default for QueryTable {
    fn default() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_QUERY_BYTES)
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// What the entries of a response's socket and id said about it (see [`QueryTable::check`]).
#[derive(Default)]
struct Seen {
    any: bool,
    same_question: bool,
    from_server: bool,
    answered: bool,
    /// The most recent unanswered query within the window: (send time, entry number).
    live: Option<(u64, u64)>,
}

impl QueryTable {
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            first: 0,
            by_client: HashMap::new(),
            by_cookie: HashMap::new(),
            bytes: 0,
            max_bytes,
            started_ns: None,
            stats: DnsCheckStats::default(),
        }
    }

    /// The capture started at `ts_ns` (the start of the `before_start` grace).
    pub fn started(&mut self, ts_ns: u64) {
        self.started_ns = Some(ts_ns);
    }

    pub fn stats(&self) -> DnsCheckStats {
        self.stats
    }

    /// Counts records a matched response carried off its question's chain.
    pub fn count_out_of_bailiwick(&mut self, n: u64) {
        self.stats.add(DnsCheck::OutOfBailiwick, n);
    }

    /// Bytes held (see the module documentation for the cost of an entry).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn get(&self, key: u64) -> Option<&Outstanding> {
        let i = usize::try_from(key.checked_sub(self.first)?).ok()?;
        self.entries.get(i)
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut Outstanding> {
        let i = usize::try_from(key.checked_sub(self.first)?).ok()?;
        self.entries.get_mut(i)
    }

    /// Entry numbers of a chain, newest first, from `head` (`older` gives the next link).
    fn chain(
        &self,
        head: Option<u64>,
        older: fn(&Outstanding) -> Option<u64>,
    ) -> impl Iterator<Item = (u64, &Outstanding)> {
        std::iter::successors(head.and_then(|k| Some((k, self.get(k)?))), move |(_, e)| {
            older(e).and_then(|k| Some((k, self.get(k)?)))
        })
    }

    /// Notes a query sent by a local socket.
    pub fn query(&mut self, ts_ns: u64, d: &DnsObserved) {
        let (Some(id), Some(question)) = (d.id, d.questions.first()) else {
            return;
        };
        self.expire(ts_ns);
        let client = canonical(d.client);
        let server = canonical(d.server);
        // A resend of the same query (same socket, id, question, server) refreshes its time.
        let head = self.by_client.get(&(client, id)).copied();
        let resent = self
            .chain(head, |e| e.older_by_client)
            .find(|(_, e)| e.question.asks(question) && e.server == server && !e.answered)
            .map(|(k, _)| k);
        if let Some(e) = resent.and_then(|k| self.get_mut(k)) {
            e.ts_ns = e.ts_ns.max(ts_ns);
            return;
        }
        let cost = ENTRY_OVERHEAD + crate::pipeline::dns::normalized(&question.name).len();
        if cost > self.max_bytes {
            self.stats.queries_evicted += 1;
            return;
        }
        while self.bytes + cost > self.max_bytes && !self.entries.is_empty() {
            self.pop_oldest();
            self.stats.queries_evicted += 1;
        }
        let key = self.first + self.entries.len() as u64;
        // The head may have left with the oldest entries just dropped.
        let older_by_client = self
            .by_client
            .insert((client, id), key)
            .filter(|&k| k >= self.first);
        let older_by_cookie = if d.socket_cookie != 0 {
            self.by_cookie
                .insert((d.socket_cookie, id), key)
                .filter(|&k| k >= self.first)
        } else {
            None
        };
        self.bytes += cost;
        self.entries.push_back(Outstanding {
            ts_ns,
            cookie: d.socket_cookie,
            client,
            server,
            id,
            question: Key::of(question),
            process: d.process.clone(),
            answered: false,
            older_by_client,
            older_by_cookie,
        });
    }

    /// Checks a response received by a local socket; a `Matched` one marks its query answered.
    pub fn response(&mut self, ts_ns: u64, d: &DnsObserved) -> (DnsCheck, Option<MatchedQuery>) {
        self.expire(ts_ns);
        let check = self.check(ts_ns, d);
        self.stats.add(check.0, 1);
        check
    }

    fn check(&mut self, ts_ns: u64, d: &DnsObserved) -> (DnsCheck, Option<MatchedQuery>) {
        let unsolicited = if self
            .started_ns
            .is_some_and(|s| ts_ns < s.saturating_add(MATCH_WINDOW_NS))
        {
            DnsCheck::BeforeStart
        } else {
            DnsCheck::Unsolicited
        };
        let Some(id) = d.id else {
            return (unsolicited, None);
        };
        let client = canonical(d.client);
        let server = canonical(d.server);
        let question = d.questions.first();
        // The candidates: the queries of the same (client, id), and those of the same
        // (socket cookie, id) that are not already among them.
        let by_client = self.chain(self.by_client.get(&(client, id)).copied(), |e| {
            e.older_by_client
        });
        let by_cookie = self
            .chain(
                (d.socket_cookie != 0)
                    .then(|| self.by_cookie.get(&(d.socket_cookie, id)).copied())
                    .flatten(),
                |e| e.older_by_cookie,
            )
            .filter(|(_, e)| e.client != client);
        let mut seen = Seen::default();
        for (key, e) in by_client.chain(by_cookie) {
            seen.any = true;
            if !question.is_some_and(|q| e.question.asks(q)) {
                continue;
            }
            seen.same_question = true;
            if e.server != server {
                continue;
            }
            seen.from_server = true;
            seen.answered |= e.answered;
            let live = !e.answered
                && ts_ns >= e.ts_ns.saturating_sub(NS_PER_SEC)
                && ts_ns.saturating_sub(e.ts_ns) <= MATCH_WINDOW_NS;
            if live && seen.live.is_none_or(|best| (e.ts_ns, key) > best) {
                seen.live = Some((e.ts_ns, key));
            }
        }
        if !seen.any {
            return (unsolicited, None);
        }
        if !seen.same_question {
            return (DnsCheck::Mismatched, None);
        }
        if !seen.from_server {
            return (DnsCheck::WrongServer, None);
        }
        if let Some(e) = seen.live.and_then(|(_, key)| self.get_mut(key)) {
            e.answered = true;
            return (
                DnsCheck::Matched,
                Some(MatchedQuery {
                    ts_ns: e.ts_ns,
                    process: e.process.clone(),
                }),
            );
        }
        if seen.answered {
            (DnsCheck::Duplicate, None)
        } else {
            (DnsCheck::Late, None)
        }
    }

    /// Drops queries sent more than twice the match window before `now_ns` (a response to
    /// them is judged `late` until then, `unsolicited` after).
    fn expire(&mut self, now_ns: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| now_ns.saturating_sub(e.ts_ns) > 2 * MATCH_WINDOW_NS)
        {
            self.pop_oldest();
        }
    }

    /// Drops the oldest entry; an index whose newest entry it was forgets it (older entries of
    /// an index left before it).
    fn pop_oldest(&mut self) {
        let Some(e) = self.entries.pop_front() else {
            return;
        };
        let key = self.first;
        self.first += 1;
        self.bytes = self.bytes.saturating_sub(e.cost());
        if let Entry::Occupied(head) = self.by_client.entry((e.client, e.id)) {
            if *head.get() == key {
                head.remove();
            }
        }
        if e.cookie != 0 {
            if let Entry::Occupied(head) = self.by_cookie.entry((e.cookie, e.id)) {
                if *head.get() == key {
                    head.remove();
                }
            }
        }
    }
}

/// Groups of rejected responses kept for the report; later groups are counted, not kept.
pub const MAX_REJECTED_GROUPS: usize = 256;
/// Names and addresses kept per group.
const MAX_CLAIMS_PER_GROUP: usize = 8;
/// Addresses claimed by suspicious responses, remembered to mark flows that go there.
pub const MAX_CLAIMED_ADDRESSES: usize = 4096;

/// Rejected responses (or out-of-bailiwick records) of one kind sent to one local socket from
/// one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectedDns {
    pub check: DnsCheck,
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The process owning the socket the responses were sent to, when known.
    pub process: Option<Process>,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Names they claimed (question names, or owners of ignored records), at most 8.
    pub names: Vec<String>,
    /// Addresses they claimed, at most 8.
    pub addresses: Vec<IpAddr>,
}

/// A name a suspicious response claimed for an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub name: String,
    pub check: DnsCheck,
    pub at_ns: u64,
}

/// What the rejected responses tried: grouped for the report, and the addresses they claimed.
#[derive(Clone, Debug, Default)]
pub struct Rejections {
    groups: Vec<RejectedDns>,
    /// Rejections beyond [`MAX_REJECTED_GROUPS`] groups: counted, not kept.
    pub groups_dropped: u64,
    claims: HashMap<IpAddr, Claim>,
    claim_order: VecDeque<IpAddr>,
    /// Claimed addresses forgotten to stay within [`MAX_CLAIMED_ADDRESSES`].
    pub claims_evicted: u64,
}

impl Rejections {
    /// Notes `count` rejections of kind `check` in a response `d`, claiming `claims`.
    pub fn note(
        &mut self,
        ts_ns: u64,
        check: DnsCheck,
        count: u64,
        d: &DnsObserved,
        claims: &[(String, IpAddr)],
    ) {
        let client = canonical(d.client);
        let server = canonical(d.server);
        let i = match self
            .groups
            .iter()
            .position(|g| g.check == check && g.client == client && g.server == server)
        {
            Some(i) => Some(i),
            None if self.groups.len() < MAX_REJECTED_GROUPS => {
                self.groups.push(RejectedDns {
                    check,
                    count: 0,
                    first_ns: ts_ns,
                    last_ns: ts_ns,
                    process: d.process.clone(),
                    client,
                    server,
                    names: Vec::new(),
                    addresses: Vec::new(),
                });
                Some(self.groups.len() - 1)
            }
            None => {
                self.groups_dropped += count;
                None
            }
        };
        if let Some(g) = i.and_then(|i| self.groups.get_mut(i)) {
            g.count += count;
            g.first_ns = g.first_ns.min(ts_ns);
            g.last_ns = g.last_ns.max(ts_ns);
            if d.process.is_some() {
                g.process.clone_from(&d.process);
            }
            for (name, addr) in claims {
                if g.names.len() < MAX_CLAIMS_PER_GROUP && !g.names.contains(name) {
                    g.names.push(name.clone());
                }
                if g.addresses.len() < MAX_CLAIMS_PER_GROUP && !g.addresses.contains(addr) {
                    g.addresses.push(*addr);
                }
            }
        }
        if !check.suspicious() {
            return;
        }
        for (name, addr) in claims {
            let addr = addr.to_canonical();
            let claim = Claim {
                name: name.clone(),
                check,
                at_ns: ts_ns,
            };
            if self.claims.insert(addr, claim).is_none() {
                self.claim_order.push_back(addr);
            }
            while self.claims.len() > MAX_CLAIMED_ADDRESSES {
                let Some(oldest) = self.claim_order.pop_front() else {
                    break;
                };
                self.claims.remove(&oldest);
                self.claims_evicted += 1;
            }
        }
    }

    /// The groups, in the order they were first seen.
    pub fn groups(&self) -> &[RejectedDns] {
        &self.groups
    }

    /// The name a suspicious response claimed for `addr`, if any.
    pub fn claim(&self, addr: IpAddr) -> Option<&Claim> {
        self.claims.get(&addr.to_canonical())
    }
}

/// The names and addresses of a response's A/AAAA records (a rejected response's claims): the
/// question name for records on its CNAME chain, the record's owner otherwise.
pub fn claims_of(d: &DnsObserved) -> Vec<(String, IpAddr)> {
    use crate::pipeline::dns::normalize_name;
    let mut chain: Vec<String> = d
        .questions
        .first()
        .map(|q| normalize_name(&q.name))
        .into_iter()
        .collect();
    while chain.len() < crate::pipeline::names::MAX_CHAIN {
        let Some(last) = chain.last() else { break };
        let next = d
            .answers
            .iter()
            .find(|a| a.rtype == "CNAME" && normalize_name(&a.name) == *last)
            .map(|a| normalize_name(&a.data));
        match next {
            Some(n) if !chain.contains(&n) => chain.push(n),
            _ => break,
        }
    }
    d.answers
        .iter()
        .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
        .filter_map(|a| {
            let addr = a.data.parse::<IpAddr>().ok()?.to_canonical();
            let owner = normalize_name(&a.name);
            let name = if chain.contains(&owner) {
                chain[0].clone()
            } else {
                owner
            };
            Some((name, addr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_SEC;

    fn packet(
        cookie: u64,
        client: &str,
        server: &str,
        id: u16,
        name: &str,
        rtype: &str,
    ) -> DnsObserved {
        DnsObserved {
            process: None,
            cgroup_id: 1,
            socket_cookie: cookie,
            server: server.parse().unwrap(),
            client: client.parse().unwrap(),
            payload_len: 40,
            capture_cut: false,
            tcp: false,
            id: Some(id),
            rcode: None,
            tc: false,
            questions: vec![Question {
                name: name.to_owned(),
                rtype: rtype.to_owned(),
                class: None,
            }],
            answers: Vec::new(),
            decode_error: None,
            check: None,
            out_of_bailiwick: 0,
        }
    }

    const CLIENT: &str = "198.18.0.1:40000";
    const SERVER: &str = "198.18.0.2:53";

    fn started() -> QueryTable {
        let mut t = QueryTable::default();
        t.started(0);
        t
    }

    #[test]
    fn the_first_response_to_a_query_matches_and_later_ones_are_duplicates() {
        let mut t = started();
        let q = packet(7, CLIENT, SERVER, 0x1234, "api.github.com", "A");
        t.query(20 * S, &q);
        // DNS 0x20: the server echoes the question in the case it was asked.
        let r = packet(7, CLIENT, SERVER, 0x1234, "API.GitHub.com.", "A");
        assert_eq!(t.response(21 * S, &r).0, DnsCheck::Matched);
        assert_eq!(t.response(21 * S, &r).0, DnsCheck::Duplicate);
        let s = t.stats();
        assert_eq!((s.matched, s.duplicate), (1, 1));
    }

    #[test]
    fn the_same_client_address_matches_without_the_cookie() {
        let mut t = started();
        t.query(20 * S, &packet(7, CLIENT, SERVER, 9, "a.example", "AAAA"));
        let r = packet(0, CLIENT, SERVER, 9, "a.example", "AAAA");
        assert_eq!(t.response(20 * S, &r).0, DnsCheck::Matched);
    }

    #[test]
    fn every_rule_has_its_rejection() {
        let mut t = started();
        t.query(20 * S, &packet(7, CLIENT, SERVER, 1, "a.example", "A"));
        let check = |t: &mut QueryTable, at: u64, p: DnsObserved| t.response(at, &p).0;
        // Another socket, another id.
        assert_eq!(
            check(
                &mut t,
                20 * S,
                packet(8, "198.18.0.1:40001", SERVER, 1, "a.example", "A")
            ),
            DnsCheck::Unsolicited
        );
        assert_eq!(
            check(
                &mut t,
                20 * S,
                packet(7, CLIENT, SERVER, 2, "a.example", "A")
            ),
            DnsCheck::Unsolicited
        );
        // Right id, another question: name, type or class.
        assert_eq!(
            check(
                &mut t,
                20 * S,
                packet(7, CLIENT, SERVER, 1, "api.github.com", "A")
            ),
            DnsCheck::Mismatched
        );
        assert_eq!(
            check(
                &mut t,
                20 * S,
                packet(7, CLIENT, SERVER, 1, "a.example", "AAAA")
            ),
            DnsCheck::Mismatched
        );
        let mut chaos = packet(7, CLIENT, SERVER, 1, "a.example", "A");
        chaos.questions[0].class = Some("CH".into());
        assert_eq!(check(&mut t, 20 * S, chaos), DnsCheck::Mismatched);
        // Everything right but the server.
        assert_eq!(
            check(
                &mut t,
                20 * S,
                packet(7, CLIENT, "198.18.0.66:53", 1, "a.example", "A")
            ),
            DnsCheck::WrongServer
        );
        assert_eq!(
            check(
                &mut t,
                20 * S,
                packet(7, CLIENT, "198.18.0.2:5353", 1, "a.example", "A")
            ),
            DnsCheck::WrongServer
        );
        // The query is still waiting for its real answer, until the window ends.
        assert_eq!(
            check(
                &mut t,
                31 * S,
                packet(7, CLIENT, SERVER, 1, "a.example", "A")
            ),
            DnsCheck::Late
        );
        assert_eq!(
            check(
                &mut t,
                41 * S,
                packet(7, CLIENT, SERVER, 1, "a.example", "A")
            ),
            DnsCheck::Unsolicited
        );
        let s = t.stats();
        assert_eq!(
            (
                s.unsolicited,
                s.mismatched,
                s.wrong_server,
                s.late,
                s.matched
            ),
            (3, 3, 2, 1, 0)
        );
        assert_eq!(s.rejected(), 9);
    }

    #[test]
    fn a_resend_refreshes_its_query_and_a_new_query_reuses_nothing() {
        let mut t = started();
        let q = packet(7, CLIENT, SERVER, 1, "a.example", "A");
        t.query(20 * S, &q);
        t.query(28 * S, &q);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.response(37 * S, &q).0,
            DnsCheck::Matched,
            "9 s after the resend"
        );
    }

    #[test]
    fn responses_without_a_query_early_in_the_capture_are_before_start() {
        let mut t = QueryTable::default();
        t.started(100 * S);
        let r = packet(7, CLIENT, SERVER, 1, "a.example", "A");
        assert_eq!(t.response(101 * S, &r).0, DnsCheck::BeforeStart);
        assert_eq!(t.response(111 * S, &r).0, DnsCheck::Unsolicited);
        assert_eq!(t.stats().unmatched_before_start, 1);
    }

    #[test]
    fn the_table_is_bounded_in_bytes_and_counts_what_it_drops() {
        let long = format!("{}.example", "x".repeat(900));
        let mut t = QueryTable::with_max_bytes(10 * (ENTRY_OVERHEAD + long.len()));
        t.started(0);
        for i in 0..100u16 {
            t.query(20 * S, &packet(7, CLIENT, SERVER, i, &long, "A"));
            assert!(t.bytes() <= 10 * (ENTRY_OVERHEAD + long.len()));
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.stats().queries_evicted, 90);
        // The oldest went: their answers name nothing.
        assert_eq!(
            t.response(20 * S, &packet(7, CLIENT, SERVER, 0, &long, "A"))
                .0,
            DnsCheck::Unsolicited
        );
        assert_eq!(
            t.response(20 * S, &packet(7, CLIENT, SERVER, 99, &long, "A"))
                .0,
            DnsCheck::Matched
        );
        // Old entries leave by time too.
        t.query(100 * S, &packet(7, CLIENT, SERVER, 500, "a.example", "A"));
        assert_eq!(t.len(), 1);
        assert_eq!(t.bytes(), ENTRY_OVERHEAD + "a.example".len());
        // A zero bound holds nothing and does not panic.
        let mut none = QueryTable::with_max_bytes(0);
        none.query(S, &packet(7, CLIENT, SERVER, 1, "a.example", "A"));
        assert!(none.is_empty());
    }
}
