//! Names for addresses: which name a client asked DNS for, for the address it then connects to.
//!
//! [`NameCache`] is fed with the DNS responses that matched a query the capture saw (see
//! `dnsmatch.rs`: nothing else may name an address) and answers, for an address,
//! the name the client asked for (the question, not the CDN name at the end of the CNAME chain),
//! with the chain kept as evidence. It is pure: time is the kernel timestamp of the events.
//!
//! # Attribution
//!
//! A response's CNAME records are followed from its question name, through chains of any depth
//! and in any order, stopping at a loop or after [`MAX_CHAIN`] names. An address record of the
//! type asked whose owner is on that chain is attributed to the question name. Every other record
//! (another owner, another type, beyond a cut chain; or any record of a response without a
//! question) is ignored and returned in the [`Observation`]: a server answers for the question
//! it was asked, and a record for another name is how a forged answer would slip
//! `api.github.com A <attacker>` into a lookup of `x.attacker.example`.
//!
//! When several names share an address (CDNs), [`NameCache::lookup`] prefers the name most
//! recently resolved by the same process, then by the same cgroup, then the most recent overall,
//! and lists the others as alternatives. An entry whose TTL has passed is still returned, marked
//! `expired`: clients connect after the TTL, from their own caches and connection pools.
//!
//! # Bounds
//!
//! Memory is bounded whatever the traffic ([`Limits`], defaults in brackets):
//! - at most `max_addresses` addresses [65,536]; past that the least recently resolved address
//!   is dropped;
//! - at most `max_names_per_address` names per address [16] (shared CDN addresses); past that the
//!   least recently resolved name of that address is dropped;
//! - a name for an address is dropped `grace_ns` after its TTL expired [1 hour]: on insert into
//!   that address, by [`NameCache::purge`], and by a full purge at most once a minute (of event
//!   time) on insert; [`NameCache::lookup`] already ignores such entries;
//! - at most [`MAX_RESOLVERS`] (process, cgroup) resolvers remembered per name and address;
//! - at most `max_names` per-name records [65,536], the least recently seen dropped first, each
//!   with at most `max_addresses_per_name` addresses [32] and `max_processes_per_name`
//!   processes [8]. Per-name records do not expire: a report at the end of a run lists them all.
//!
//! - besides these counts, at most `max_address_bytes` [16 MiB] for the addresses' names and
//!   `max_name_bytes` [16 MiB] for the per-name records, in approximate heap bytes (a name can
//!   be 1,000 characters after escaping, so counting entries alone bounds nothing): past that
//!   the least recently resolved address, or least recently seen name, goes first.
//!
//! Every drop is counted in [`NamesStats`]; a report whose cache dropped anything says it is
//! incomplete.

use std::{
    borrow::Cow,
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

#[cfg(test)]
use crate::pipeline::dns::DnsMessage;
use crate::{
    capture::record::Process,
    pipeline::dns::{normalized, Answer, Question},
};

const NS_PER_SEC: u64 = 1_000_000_000;

/// The longest CNAME chain followed, in names (the question included).
pub const MAX_CHAIN: usize = 16;
/// Resolvers (process, cgroup) remembered for one name of one address.
pub const MAX_RESOLVERS: usize = 8;
/// How often, in event time, inserting runs a full purge of entries past their grace.
pub const PURGE_INTERVAL_NS: u64 = 60 * NS_PER_SEC;

/// The bounds of a [`NameCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Addresses kept.
    pub max_addresses: usize,
    /// Names kept for one address.
    pub max_names_per_address: usize,
    /// How long after its TTL expired a name for an address is kept, in nanoseconds.
    pub grace_ns: u64,
    /// Per-name records kept.
    pub max_names: usize,
    /// Approximate bytes the addresses' names may take (names can be 1,000 characters).
    pub max_address_bytes: usize,
    /// Approximate bytes the per-name records may take.
    pub max_name_bytes: usize,
    /// Addresses kept in one per-name record.
    pub max_addresses_per_name: usize,
    /// Processes kept in one per-name record.
    pub max_processes_per_name: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_addresses: 65_536,
            max_names_per_address: 16,
            grace_ns: 3_600 * NS_PER_SEC,
            max_names: 65_536,
            max_address_bytes: 16 << 20,
            max_name_bytes: 16 << 20,
            max_addresses_per_name: 32,
            max_processes_per_name: 8,
        }
    }
}

/// Why a name was chosen among those sharing an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The same process resolved it (most recently among the names it resolved).
    SameProcess,
    /// A process of the same cgroup resolved it.
    SameCgroup,
    /// The most recently resolved name of the address.
    MostRecent,
    /// The TLS server name the client sent picked it among the names of the address.
    ServerName,
}

/// The name behind an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The name the client asked for (normalized: lower case, no trailing dot).
    pub name: String,
    /// From `name` to the owner of the address record, both included: one name when the answer
    /// had no CNAME, `[asked, cname target, ..., address owner]` otherwise.
    pub cname_chain: Vec<String>,
    /// TTL of the address record, in seconds.
    pub ttl: u32,
    /// Kernel time of the latest response that gave this address for this name.
    pub resolved_at_ns: u64,
    /// The TTL had passed at the time of the lookup (the answer is still the best evidence).
    pub expired: bool,
    /// Why this name was chosen.
    pub basis: Basis,
    /// Other names seen for this address, most recently resolved first.
    pub alternatives: Vec<String>,
}

/// What was seen of one name the clients asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameRecord {
    /// The name, normalized.
    pub name: String,
    /// Response code of the latest response (`NOERROR`, `NXDOMAIN`, ...), when it was known.
    pub rcode: Option<String>,
    /// Addresses answered for the name, most recent first (A and AAAA responses merged).
    pub addresses: Vec<IpAddr>,
    /// The chain of the latest response with answers (see [`Resolution::cname_chain`]).
    pub cname_chain: Vec<String>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Responses seen for the name.
    pub responses: u64,
    /// Processes that received answers for the name, most recent first.
    pub processes: Vec<Process>,
    /// What the responses said, per record type asked (A and AAAA are asked together by
    /// getaddrinfo and fail or work independently), in the order first asked.
    pub outcomes: Vec<TypeOutcome>,
}

/// What the responses for one (name, record type) said, counted per response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeOutcome {
    /// `A`, `AAAA`, ...
    pub rtype: String,
    /// Responses with at least one usable address (not a sinkhole).
    pub answered: u64,
    /// Responses whose addresses were all sinkholes (0.0.0.0, ::, 127.0.0.0/8, `--sinkhole`).
    pub sinkholed: u64,
    /// NOERROR responses without an address of the type (NODATA).
    pub empty: u64,
    /// Responses with an error code, per code (`SERVFAIL`, `REFUSED`, `NXDOMAIN`, ...).
    pub errors: Vec<(String, u64)>,
    pub first_failure_ns: Option<u64>,
    pub last_failure_ns: Option<u64>,
    /// A response with a usable address came after a failure of this type (a retry worked).
    pub answered_after_failure: bool,
}

impl TypeOutcome {
    /// Responses with an error code.
    pub fn failed(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}

/// Whether an answered address is a DNS filter's sinkhole rather than a real address: 0.0.0.0,
/// ::, 127.0.0.0/8, ::1, or one of `extra` (`--sinkhole`).
pub fn is_sinkhole(addr: IpAddr, extra: &[IpAddr]) -> bool {
    let addr = addr.to_canonical();
    addr.is_unspecified() || addr.is_loopback() || extra.contains(&addr)
}

/// What one response contributed besides its names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Answer records ignored: not on the question's CNAME chain, or of another type than asked.
    pub off_chain: usize,
    /// The addresses those ignored records claimed, with their owner names.
    pub claims: Vec<(String, IpAddr)>,
}

/// Sizes and drops of a [`NameCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesStats {
    /// Addresses held.
    pub addresses: usize,
    /// Per-name records held.
    pub names: usize,
    /// Addresses dropped to stay within `max_addresses` or `max_address_bytes`.
    pub evicted_addresses: u64,
    /// Names of an address dropped to stay within `max_names_per_address`.
    pub evicted_bindings: u64,
    /// Names of an address dropped after their grace.
    pub expired_bindings: u64,
    /// Per-name records dropped to stay within `max_names` or `max_name_bytes`.
    pub evicted_names: u64,
    /// Approximate bytes held for addresses and for per-name records.
    #[serde(default)]
    pub address_bytes: usize,
    #[serde(default)]
    pub name_bytes: usize,
}

/// Who received a name for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Resolver {
    pid: Option<u32>,
    cgroup_id: u64,
    at_ns: u64,
}

/// One name for one address.
#[derive(Clone, Debug)]
struct Binding {
    name: String,
    chain: Vec<String>,
    ttl: u32,
    resolved_at_ns: u64,
    /// Most recent last.
    resolvers: Vec<Resolver>,
}

impl Binding {
    fn expires_ns(&self) -> u64 {
        self.resolved_at_ns
            .saturating_add(u64::from(self.ttl).saturating_mul(NS_PER_SEC))
    }

    fn past_grace(&self, now_ns: u64, grace_ns: u64) -> bool {
        now_ns > self.expires_ns().saturating_add(grace_ns)
    }

    /// When a resolver matching `pred` last received this binding.
    fn last_by(&self, pred: impl Fn(&Resolver) -> bool) -> Option<u64> {
        self.resolvers
            .iter()
            .filter(|r| pred(r))
            .map(|r| r.at_ns)
            .max()
    }
}

/// The names of one address.
#[derive(Clone, Debug, Default)]
struct AddrEntry {
    bindings: Vec<Binding>,
}

impl AddrEntry {
    fn last_ns(&self) -> u64 {
        self.bindings
            .iter()
            .map(|b| b.resolved_at_ns)
            .max()
            .unwrap_or(0)
    }
}

/// A bounded cache of DNS answers: address → names, and name → what was answered.
#[derive(Clone, Debug)]
pub struct NameCache {
    limits: Limits,
    addrs: HashMap<IpAddr, AddrEntry>,
    /// (latest resolution of the address, address): the eviction order.
    addr_order: BTreeSet<(u64, IpAddr)>,
    names: HashMap<String, NameRecord>,
    /// (last seen, name): the eviction order, and the order of [`NameCache::names`].
    name_order: BTreeSet<(u64, String)>,
    last_purge_ns: u64,
    stats: NamesStats,
    /// Addresses that DNS filters answer instead of the real one, besides the built-in ones.
    sinkholes: Vec<IpAddr>,
    /// Approximate bytes held by `addrs` (and `addr_order`) and by `names` (and `name_order`).
    addr_bytes: usize,
    name_bytes: usize,
    /// The response being observed is a local resolver's upstream answer.
    relayed: bool,
}

impl Default for NameCache {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl NameCache {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            addrs: HashMap::new(),
            addr_order: BTreeSet::new(),
            names: HashMap::new(),
            name_order: BTreeSet::new(),
            last_purge_ns: 0,
            stats: NamesStats::default(),
            sinkholes: Vec::new(),
            addr_bytes: 0,
            name_bytes: 0,
            relayed: false,
        }
    }

    /// Addresses judged sinkholes besides 0.0.0.0, ::, 127.0.0.0/8 (`--sinkhole`).
    pub fn set_sinkholes(&mut self, sinkholes: Vec<IpAddr>) {
        self.sinkholes = sinkholes;
    }

    /// Sizes and drop counters.
    pub fn stats(&self) -> NamesStats {
        NamesStats {
            addresses: self.addrs.len(),
            names: self.names.len(),
            address_bytes: self.addr_bytes,
            name_bytes: self.name_bytes,
            ..self.stats
        }
    }

    /// Records a DNS response as the capture reports it: answers with their response code.
    /// Records a response a local resolver received from upstream for its client: it names
    /// addresses, but its outcome is not counted (the client's own answer, relayed by the stub,
    /// counts once).
    pub fn observe_relayed_answers(
        &mut self,
        ts_ns: u64,
        cgroup_id: u64,
        rcode: Option<&str>,
        questions: &[Question],
        answers: &[Answer],
    ) -> Observation {
        self.relayed = true;
        let seen = self.observe(ts_ns, None, cgroup_id, rcode, questions, answers);
        self.relayed = false;
        seen
    }

    pub fn observe_answers(
        &mut self,
        ts_ns: u64,
        process: Option<&Process>,
        cgroup_id: u64,
        rcode: Option<&str>,
        questions: &[Question],
        answers: &[Answer],
    ) -> Observation {
        self.observe(ts_ns, process, cgroup_id, rcode, questions, answers)
    }

    /// Records a DNS message if it is a response (queries carry no answers).
    #[cfg(test)]
    pub fn observe_message(
        &mut self,
        ts_ns: u64,
        process: Option<&Process>,
        cgroup_id: u64,
        message: &DnsMessage,
    ) {
        if message.response {
            let _ = self.observe(
                ts_ns,
                process,
                cgroup_id,
                Some(&*message.rcode),
                &message.questions,
                &message.answers,
            );
        }
    }

    /// Records the answers of a DNS response received at `ts_ns` (kernel time) by `process` (when
    /// known) in `cgroup_id`. The per-name records get no response code this way; use
    /// [`NameCache::observe_answers`] to keep it.
    #[cfg(test)]
    pub fn observe_response(
        &mut self,
        ts_ns: u64,
        process: Option<&Process>,
        cgroup_id: u64,
        questions: &[Question],
        answers: &[Answer],
    ) {
        let _ = self.observe(ts_ns, process, cgroup_id, None, questions, answers);
    }

    fn observe(
        &mut self,
        ts_ns: u64,
        process: Option<&Process>,
        cgroup_id: u64,
        rcode: Option<&str>,
        questions: &[Question],
        answers: &[Answer],
    ) -> Observation {
        if ts_ns >= self.last_purge_ns.saturating_add(PURGE_INTERVAL_NS) {
            self.purge(ts_ns);
        }
        let resolver = Resolver {
            pid: process.map(|p| p.pid),
            cgroup_id,
            at_ns: ts_ns,
        };

        // CNAME owner -> target (the first one, should a broken server send two), and the
        // address records in answer order.
        // Names are borrowed from the answers where they already are normalized (a flood's
        // responses cost no copies of their names).
        let mut cnames: HashMap<Cow<'_, str>, Cow<'_, str>> = HashMap::new();
        let mut records: Vec<(Cow<'_, str>, &str, IpAddr, u32)> = Vec::new();
        for answer in answers {
            let owner = normalized(&answer.name);
            match answer.rtype.as_str() {
                "CNAME" => {
                    cnames
                        .entry(owner)
                        .or_insert_with(|| normalized(&answer.data));
                }
                "A" | "AAAA" => {
                    if let Ok(addr) = answer.data.parse::<IpAddr>() {
                        records.push((owner, &answer.rtype, addr.to_canonical(), answer.ttl));
                    }
                }
                _ => {}
            }
        }

        // The question (a query has one; more are not answered by real servers).
        let mut off_chain = Vec::new();
        let Some(question) = questions.first() else {
            return Observation {
                off_chain: answers.len(),
                claims: records
                    .into_iter()
                    .map(|(o, _, a, _)| (o.into_owned(), a))
                    .collect(),
            };
        };
        let root = normalized(&question.name);
        let chain = follow(&root, &cnames);
        let mut addresses = Vec::new();
        for (owner, rtype, addr, ttl) in &records {
            let on_chain = chain.iter().position(|n| *n == owner);
            match on_chain {
                Some(pos) if *rtype == question.rtype => {
                    self.bind(*addr, &root, &chain[..=pos], *ttl, resolver);
                    if !addresses.contains(addr) {
                        addresses.push(*addr);
                    }
                }
                _ => off_chain.push((owner.to_string(), *addr)),
            }
        }
        // CNAME records off the chain (and other types) count as ignored records too.
        let ignored = answers
            .iter()
            .filter(|a| {
                !matches!(a.rtype.as_str(), "A" | "AAAA") && !chain.contains(&&*normalized(&a.name))
            })
            .count();
        let answered = !addresses.is_empty() || chain.len() > 1;
        if !root.is_empty() {
            let sinkholed =
                !addresses.is_empty() && addresses.iter().all(|a| is_sinkhole(*a, &self.sinkholes));
            self.note_name(
                &root,
                rcode,
                &addresses,
                answered.then_some(&chain[..]),
                ts_ns,
                process,
            );
            if !self.relayed {
                self.note_outcome(&root, &question.rtype, rcode, &addresses, sinkholed, ts_ns);
            }
        }
        Observation {
            off_chain: ignored + off_chain.len(),
            claims: off_chain,
        }
    }

    /// Records that `name` (reached through `chain`) resolved to `addr`.
    fn bind(&mut self, addr: IpAddr, name: &str, chain: &[&str], ttl: u32, resolver: Resolver) {
        let limits = self.limits;
        let now = resolver.at_ns;
        let entry = self.addrs.entry(addr).or_default();
        let old_last = (!entry.bindings.is_empty()).then(|| entry.last_ns());
        let cost_before = if entry.bindings.is_empty() {
            0
        } else {
            entry_cost(entry)
        };

        let before = entry.bindings.len();
        entry
            .bindings
            .retain(|b| !b.past_grace(now, limits.grace_ns));
        self.stats.expired_bindings += (before - entry.bindings.len()) as u64;

        match entry.bindings.iter_mut().find(|b| b.name == name) {
            Some(binding) => {
                if now >= binding.resolved_at_ns {
                    binding.resolved_at_ns = now;
                    binding.ttl = ttl;
                    if !same_chain(&binding.chain, chain) {
                        binding.chain = owned(chain);
                    }
                }
                match binding
                    .resolvers
                    .iter_mut()
                    .find(|r| r.pid == resolver.pid && r.cgroup_id == resolver.cgroup_id)
                {
                    Some(r) => r.at_ns = r.at_ns.max(now),
                    None => binding.resolvers.push(resolver),
                }
                if binding.resolvers.len() > MAX_RESOLVERS {
                    if let Some(oldest) = index_of_min(&binding.resolvers, |r| r.at_ns) {
                        binding.resolvers.remove(oldest);
                    }
                }
            }
            None => entry.bindings.push(Binding {
                name: name.to_owned(),
                chain: owned(chain),
                ttl,
                resolved_at_ns: now,
                resolvers: vec![resolver],
            }),
        }
        while entry.bindings.len() > limits.max_names_per_address {
            let Some(oldest) = index_of_min(&entry.bindings, |b| b.resolved_at_ns) else {
                break;
            };
            entry.bindings.remove(oldest);
            self.stats.evicted_bindings += 1;
        }

        if let Some(old) = old_last {
            self.addr_order.remove(&(old, addr));
        }
        let cost_after = if entry.bindings.is_empty() {
            0
        } else {
            entry_cost(entry)
        };
        if entry.bindings.is_empty() {
            self.addrs.remove(&addr);
        } else {
            self.addr_order.insert((entry.last_ns(), addr));
        }
        self.addr_bytes = (self.addr_bytes + cost_after).saturating_sub(cost_before);
        while self.addrs.len() > limits.max_addresses || self.addr_bytes > limits.max_address_bytes
        {
            let Some((_, oldest)) = self.addr_order.pop_first() else {
                break;
            };
            if let Some(gone) = self.addrs.remove(&oldest) {
                self.addr_bytes = self.addr_bytes.saturating_sub(entry_cost(&gone));
            }
            self.stats.evicted_addresses += 1;
        }
    }

    /// Updates the per-name record of `name`; `chain` is `None` when the response had no answer
    /// for it.
    fn note_name(
        &mut self,
        name: &str,
        rcode: Option<&str>,
        addresses: &[IpAddr],
        chain: Option<&[&str]>,
        ts_ns: u64,
        process: Option<&Process>,
    ) {
        let limits = self.limits;
        let mut cost_before = 0;
        // The record's place in `name_order`, taken out (its text reused) when it moves.
        let (mut ordered, mut moves) = (None, true);
        let record = match self.names.get_mut(name) {
            Some(record) => {
                cost_before = record_cost(record);
                moves = ts_ns > record.last_seen_ns;
                if moves {
                    let probe = (record.last_seen_ns, std::mem::take(&mut record.name));
                    ordered = self.name_order.take(&probe).map(|(_, n)| n);
                    record.name = probe.1;
                }
                record
            }
            None => self.names.entry(name.to_owned()).or_insert(NameRecord {
                name: name.to_owned(),
                rcode: None,
                addresses: Vec::new(),
                cname_chain: vec![name.to_owned()],
                first_seen_ns: ts_ns,
                last_seen_ns: ts_ns,
                responses: 0,
                processes: Vec::new(),
                outcomes: Vec::new(),
            }),
        };
        record.responses += 1;
        record.first_seen_ns = record.first_seen_ns.min(ts_ns);
        record.last_seen_ns = record.last_seen_ns.max(ts_ns);
        if let Some(rcode) = rcode {
            if record.rcode.as_deref() != Some(rcode) {
                record.rcode = Some(rcode.to_owned());
            }
        }
        if let Some(chain) = chain {
            if !same_chain(&record.cname_chain, chain) {
                record.cname_chain = owned(chain);
            }
        }
        for addr in addresses.iter().rev() {
            record.addresses.retain(|a| a != addr);
            record.addresses.insert(0, *addr);
        }
        record.addresses.truncate(limits.max_addresses_per_name);
        if let Some(process) = process {
            if record.processes.first() != Some(process) {
                record.processes.retain(|p| p != process);
                record.processes.insert(0, process.clone());
                record.processes.truncate(limits.max_processes_per_name);
            }
        }
        if moves {
            let name = ordered.unwrap_or_else(|| record.name.clone());
            self.name_order.insert((record.last_seen_ns, name));
        }
        let cost_after = record_cost(record);
        self.name_bytes = (self.name_bytes + cost_after).saturating_sub(cost_before);
        self.shrink_names();
    }

    /// Drops the least recently seen per-name records until the bounds hold.
    fn shrink_names(&mut self) {
        let limits = self.limits;
        while self.names.len() > limits.max_names || self.name_bytes > limits.max_name_bytes {
            let Some((_, oldest)) = self.name_order.pop_first() else {
                break;
            };
            if let Some(gone) = self.names.remove(&oldest) {
                self.name_bytes = self.name_bytes.saturating_sub(record_cost(&gone));
            }
            self.stats.evicted_names += 1;
        }
    }

    /// Counts one response's outcome for (`name`, `rtype`) in its per-name record.
    fn note_outcome(
        &mut self,
        name: &str,
        rtype: &str,
        rcode: Option<&str>,
        addresses: &[IpAddr],
        sinkholed: bool,
        ts_ns: u64,
    ) {
        let Some(record) = self.names.get_mut(name) else {
            return;
        };
        let before = record_cost(record);
        let i = match record.outcomes.iter().position(|o| o.rtype == rtype) {
            Some(i) => i,
            None if record.outcomes.len() < MAX_TYPES_PER_NAME => {
                record.outcomes.push(TypeOutcome {
                    rtype: rtype.to_owned(),
                    ..TypeOutcome::default()
                });
                record.outcomes.len() - 1
            }
            None => return,
        };
        let o = &mut record.outcomes[i];
        match rcode {
            Some("NOERROR") | None if sinkholed => o.sinkholed += 1,
            Some("NOERROR") | None if !addresses.is_empty() => {
                o.answered += 1;
                if o.first_failure_ns.is_some() {
                    o.answered_after_failure = true;
                }
            }
            Some("NOERROR") | None => o.empty += 1,
            Some(code) => {
                match o.errors.iter_mut().find(|(c, _)| c == code) {
                    Some((_, n)) => *n += 1,
                    None => o.errors.push((code.to_owned(), 1)),
                }
                o.first_failure_ns = Some(o.first_failure_ns.map_or(ts_ns, |t| t.min(ts_ns)));
                o.last_failure_ns = Some(o.last_failure_ns.map_or(ts_ns, |t| t.max(ts_ns)));
            }
        }
        let after = record_cost(record);
        self.name_bytes = (self.name_bytes + after).saturating_sub(before);
        self.shrink_names();
    }

    /// The name behind `addr` at `now_ns`, for a connection by `pid` in `cgroup_id` (either may
    /// be unknown). See the module documentation for the preference among shared addresses.
    pub fn lookup(
        &self,
        addr: IpAddr,
        now_ns: u64,
        pid: Option<u32>,
        cgroup_id: Option<u64>,
    ) -> Option<Resolution> {
        let entry = self.addrs.get(&addr.to_canonical())?;
        let mut live: Vec<&Binding> = entry
            .bindings
            .iter()
            .filter(|b| !b.past_grace(now_ns, self.limits.grace_ns))
            .collect();
        // Most recently resolved first; ties by name, for a stable answer.
        live.sort_by(|a, b| {
            b.resolved_at_ns
                .cmp(&a.resolved_at_ns)
                .then_with(|| a.name.cmp(&b.name))
        });
        let best_by = |pred: &dyn Fn(&Resolver) -> bool| -> Option<usize> {
            let mut best: Option<(u64, usize)> = None;
            for (i, binding) in live.iter().enumerate() {
                if let Some(at) = binding.last_by(pred) {
                    if best.is_none_or(|(t, _)| at > t) {
                        best = Some((at, i));
                    }
                }
            }
            best.map(|(_, i)| i)
        };
        let by_pid = pid.and_then(|pid| best_by(&|r| r.pid == Some(pid)));
        let by_cgroup = || cgroup_id.and_then(|cg| best_by(&|r| r.cgroup_id == cg));
        let (index, basis) = match by_pid {
            Some(i) => (i, Basis::SameProcess),
            None => match by_cgroup() {
                Some(i) => (i, Basis::SameCgroup),
                None if !live.is_empty() => (0, Basis::MostRecent),
                None => return None,
            },
        };
        let chosen = live.get(index)?;
        Some(Resolution {
            name: chosen.name.clone(),
            cname_chain: chosen.chain.clone(),
            ttl: chosen.ttl,
            resolved_at_ns: chosen.resolved_at_ns,
            expired: now_ns > chosen.expires_ns(),
            basis,
            alternatives: live
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, b)| b.name.clone())
                .collect(),
        })
    }

    /// The binding of `name` to `addr` at `now_ns`, if a DNS answer gave it (and it is within
    /// its grace): how a TLS server name picks its name among those sharing an address.
    pub fn lookup_name(&self, addr: IpAddr, now_ns: u64, name: &str) -> Option<Resolution> {
        let entry = self.addrs.get(&addr.to_canonical())?;
        let live = || {
            entry
                .bindings
                .iter()
                .filter(|b| !b.past_grace(now_ns, self.limits.grace_ns))
        };
        let chosen = live().find(|b| b.name == name)?;
        Some(Resolution {
            name: chosen.name.clone(),
            cname_chain: chosen.chain.clone(),
            ttl: chosen.ttl,
            resolved_at_ns: chosen.resolved_at_ns,
            expired: now_ns > chosen.expires_ns(),
            basis: Basis::ServerName,
            alternatives: live()
                .filter(|b| b.name != name)
                .map(|b| b.name.clone())
                .collect(),
        })
    }

    /// The per-name records, least recently seen first.
    pub fn names(&self) -> impl Iterator<Item = &NameRecord> {
        self.name_order
            .iter()
            .filter_map(|(_, name)| self.names.get(name))
    }

    /// The per-name record of `name` (any case, trailing dot or not).
    pub fn name(&self, name: &str) -> Option<&NameRecord> {
        self.names.get(&*normalized(name))
    }

    /// Drops every name of an address whose TTL expired more than the grace before `now_ns`,
    /// and the addresses left without names.
    pub fn purge(&mut self, now_ns: u64) {
        self.last_purge_ns = now_ns;
        let grace = self.limits.grace_ns;
        let mut reorder: Vec<(u64, IpAddr, Option<u64>)> = Vec::new();
        let mut freed = 0;
        for (addr, entry) in &mut self.addrs {
            let old = entry.last_ns();
            let before = entry.bindings.len();
            let cost_before = entry_cost(entry);
            entry.bindings.retain(|b| !b.past_grace(now_ns, grace));
            let dropped = before - entry.bindings.len();
            if dropped > 0 {
                freed += if entry.bindings.is_empty() {
                    cost_before
                } else {
                    cost_before.saturating_sub(entry_cost(entry))
                };
                self.stats.expired_bindings += dropped as u64;
                let new = (!entry.bindings.is_empty()).then(|| entry.last_ns());
                reorder.push((old, *addr, new));
            }
        }
        for (old, addr, new) in reorder {
            self.addr_order.remove(&(old, addr));
            match new {
                Some(new) => {
                    self.addr_order.insert((new, addr));
                }
                None => {
                    self.addrs.remove(&addr);
                }
            }
        }
        self.addr_bytes = self.addr_bytes.saturating_sub(freed);
    }
}

/// Record types kept per name (A, AAAA and a few others).
const MAX_TYPES_PER_NAME: usize = 4;
/// What an entry costs besides its strings: the struct, its map slot and its order-index slot.
const ENTRY_OVERHEAD: usize = 128;

/// Approximate heap bytes of a per-name record (its name counted twice: map key and order index).
fn record_cost(r: &NameRecord) -> usize {
    ENTRY_OVERHEAD
        + 2 * r.name.len()
        + r.cname_chain.iter().map(|n| n.len() + 24).sum::<usize>()
        + r.addresses.len() * 32
        + r.processes.iter().map(|p| p.comm.len() + 48).sum::<usize>()
        + r.outcomes
            .iter()
            .map(|o| 96 + o.rtype.len() + o.errors.iter().map(|(c, _)| c.len() + 32).sum::<usize>())
            .sum::<usize>()
}

/// Approximate heap bytes of an address's names.
fn entry_cost(e: &AddrEntry) -> usize {
    ENTRY_OVERHEAD
        + e.bindings
            .iter()
            .map(|b| {
                64 + b.name.len()
                    + b.chain.iter().map(|n| n.len() + 24).sum::<usize>()
                    + b.resolvers.len() * 24
            })
            .sum::<usize>()
}

/// The chain of names from `root` through `cnames`, `root` first, stopping at a loop or after
/// [`MAX_CHAIN`] names.
fn follow<'a>(root: &'a str, cnames: &'a HashMap<Cow<'_, str>, Cow<'_, str>>) -> Vec<&'a str> {
    let mut chain = vec![root];
    let mut current = root;
    while let Some(target) = cnames.get(current) {
        if chain.len() >= MAX_CHAIN || chain.contains(&&**target) {
            break;
        }
        chain.push(target);
        current = target;
    }
    chain
}

/// A chain of names, owned (to be kept).
fn owned(chain: &[&str]) -> Vec<String> {
    chain.iter().map(|n| (*n).to_owned()).collect()
}

/// Whether a kept chain is `chain` (a flood's answers repeat theirs: nothing is rewritten).
fn same_chain(kept: &[String], chain: &[&str]) -> bool {
    kept.iter().map(String::as_str).eq(chain.iter().copied())
}

/// Index of the element with the smallest key (the first of equals).
fn index_of_min<T>(items: &[T], key: impl Fn(&T) -> u64) -> Option<usize> {
    items
        .iter()
        .enumerate()
        .min_by_key(|(_, item)| key(item))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_SEC;

    fn q(name: &str) -> Question {
        Question {
            name: name.to_owned(),
            rtype: "A".to_owned(),
            class: None,
        }
    }

    fn rr(name: &str, rtype: &str, ttl: u32, data: &str) -> Answer {
        Answer {
            name: name.to_owned(),
            rtype: rtype.to_owned(),
            ttl,
            data: data.to_owned(),
        }
    }

    fn process(pid: u32, cgroup_id: u64) -> Process {
        Process {
            pid,
            comm: format!("p{pid}").into(),
            cgroup_id,
            job: None,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    const PIPELINES: &str = "pipelines.actions.githubusercontent.com";

    fn pipelines_answers() -> Vec<Answer> {
        vec![
            rr(PIPELINES, "CNAME", 30, "star-x.l-msedge.net"),
            rr("star-x.l-msedge.net", "CNAME", 30, "x.l-msedge.net"),
            rr("x.l-msedge.net", "A", 60, "198.18.1.12"),
        ]
    }

    fn chain(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn follows_a_cname_chain_three_deep() {
        let mut cache = NameCache::default();
        let p = process(100, 7);
        cache.observe_response(10 * S, Some(&p), 7, &[q(PIPELINES)], &pipelines_answers());
        let got = cache
            .lookup(ip("198.18.1.12"), 11 * S, None, None)
            .expect("resolved");
        assert_eq!(got.name, PIPELINES);
        assert_eq!(
            got.cname_chain,
            chain(&[PIPELINES, "star-x.l-msedge.net", "x.l-msedge.net"])
        );
        assert_eq!(got.ttl, 60);
        assert_eq!(got.resolved_at_ns, 10 * S);
        assert!(!got.expired);
        assert_eq!(got.basis, Basis::MostRecent);
        assert!(got.alternatives.is_empty());
        assert_eq!(cache.lookup(ip("198.18.1.13"), 11 * S, None, None), None);

        let record = cache.name(PIPELINES).expect("a record");
        assert_eq!(record.addresses, [ip("198.18.1.12")]);
        assert_eq!(record.cname_chain.len(), 3);
        assert_eq!(record.processes, [p]);
        assert_eq!(record.rcode, None);
        // Intermediate names are not names the client asked for.
        assert!(cache.name("x.l-msedge.net").is_none());
    }

    #[test]
    fn answers_in_any_order_and_deeper_chains() {
        let mut answers = vec![
            rr("d.cdn.example", "A", 20, "198.18.2.1"),
            rr("c.cdn.example", "CNAME", 30, "d.cdn.example"),
            rr("a.example", "CNAME", 30, "b.example"),
            rr("d.cdn.example", "A", 20, "198.18.2.2"),
            rr("b.example", "CNAME", 30, "c.cdn.example"),
        ];
        let mut cache = NameCache::default();
        cache.observe_response(S, None, 1, &[q("a.example")], &answers);
        answers.reverse();
        let mut reversed = NameCache::default();
        reversed.observe_response(S, None, 1, &[q("a.example")], &answers);
        for cache in [&cache, &reversed] {
            for addr in ["198.18.2.1", "198.18.2.2"] {
                let got = cache.lookup(ip(addr), S, None, None).expect("resolved");
                assert_eq!(got.name, "a.example");
                assert_eq!(
                    got.cname_chain,
                    chain(&["a.example", "b.example", "c.cdn.example", "d.cdn.example"])
                );
            }
        }
        assert_eq!(
            cache.name("a.example").map(|r| r.addresses.clone()),
            Some(vec![ip("198.18.2.1"), ip("198.18.2.2")])
        );
    }

    #[test]
    fn a_cname_loop_ends() {
        let mut cache = NameCache::default();
        cache.observe_response(
            S,
            None,
            1,
            &[q("a.example")],
            &[
                rr("a.example", "CNAME", 30, "b.example"),
                rr("b.example", "CNAME", 30, "c.example"),
                rr("c.example", "CNAME", 30, "a.example"),
                rr("b.example", "A", 30, "198.18.3.1"),
            ],
        );
        let got = cache
            .lookup(ip("198.18.3.1"), S, None, None)
            .expect("resolved");
        assert_eq!(got.name, "a.example");
        assert_eq!(got.cname_chain, chain(&["a.example", "b.example"]));
        assert_eq!(
            cache.name("a.example").map(|r| r.cname_chain.clone()),
            Some(chain(&["a.example", "b.example", "c.example"]))
        );
        // A loop without a question has no head: nothing to attribute, nothing breaks.
        cache.observe_response(
            S,
            None,
            1,
            &[],
            &[
                rr("x.example", "CNAME", 30, "y.example"),
                rr("y.example", "CNAME", 30, "x.example"),
            ],
        );
        // A self-loop.
        cache.observe_response(
            S,
            None,
            1,
            &[q("self.example")],
            &[rr("self.example", "CNAME", 30, "self.example")],
        );
        assert_eq!(
            cache.name("self.example").map(|r| r.cname_chain.clone()),
            Some(chain(&["self.example"]))
        );
    }

    #[test]
    fn long_chains_are_cut() {
        let names: Vec<String> = (0..40).map(|i| format!("n{i}.example")).collect();
        let mut answers: Vec<Answer> = names
            .windows(2)
            .map(|w| rr(&w[0], "CNAME", 30, &w[1]))
            .collect();
        answers.push(rr(&names[39], "A", 30, "198.18.4.1"));
        let mut cache = NameCache::default();
        let seen = cache.observe_answers(S, None, 1, None, &[q("n0.example")], &answers);
        // The end of the chain is not reached: the address names nothing.
        assert_eq!(cache.lookup(ip("198.18.4.1"), S, None, None), None);
        assert_eq!(seen.claims, [(names[39].clone(), ip("198.18.4.1"))]);
        assert_eq!(
            cache.name("n0.example").map(|r| r.cname_chain.len()),
            Some(MAX_CHAIN)
        );
    }

    #[test]
    fn without_a_question_nothing_is_named() {
        let mut cache = NameCache::default();
        let seen = cache.observe_answers(S, None, 1, None, &[], &pipelines_answers());
        assert_eq!(cache.lookup(ip("198.18.1.12"), S, None, None), None);
        assert_eq!(cache.stats().names, 0);
        assert_eq!(seen.off_chain, 3);
    }

    #[test]
    fn records_off_the_question_chain_name_nothing() {
        let mut cache = NameCache::default();
        // A lookup of the attacker's own name whose answer section slips in a record for a
        // documented name, a record of another type, and an address of the wrong family.
        let seen = cache.observe_answers(
            S,
            None,
            1,
            Some("NOERROR"),
            &[q("x.attacker.example")],
            &[
                rr("x.attacker.example", "A", 30, "198.18.5.1"),
                rr("api.github.com", "A", 30, "198.18.5.2"),
                rr("x.attacker.example", "AAAA", 30, "fd00::5"),
                rr("other.example", "AAAA", 30, "not an address"),
                rr("other.example", "TXT", 30, "\"hello\""),
                rr("other.example", "CNAME", 30, "api.github.com"),
            ],
        );
        let asked = cache
            .lookup(ip("198.18.5.1"), S, None, None)
            .expect("resolved");
        assert_eq!(asked.name, "x.attacker.example");
        assert_eq!(asked.cname_chain, chain(&["x.attacker.example"]));
        assert_eq!(cache.lookup(ip("198.18.5.2"), S, None, None), None);
        assert_eq!(cache.lookup(ip("fd00::5"), S, None, None), None);
        assert!(cache.name("api.github.com").is_none());
        assert_eq!(cache.stats().addresses, 1);
        assert_eq!(
            seen.off_chain, 4,
            "the unreadable address is no record at all"
        );
        assert_eq!(
            seen.claims,
            [
                ("api.github.com".to_owned(), ip("198.18.5.2")),
                ("x.attacker.example".to_owned(), ip("fd00::5"))
            ]
        );
    }

    #[test]
    fn shared_addresses_prefer_process_then_cgroup_then_recency() {
        let shared = "198.18.6.1";
        let mut cache = NameCache::default();
        let resolve = |cache: &mut NameCache, ts: u64, name: &str, p: &Process| {
            cache.observe_response(
                ts,
                Some(p),
                p.cgroup_id,
                &[q(name)],
                &[rr(name, "A", 300, shared)],
            );
        };
        resolve(&mut cache, S, "one.example", &process(1, 10));
        resolve(&mut cache, 2 * S, "two.example", &process(2, 20));
        resolve(&mut cache, 3 * S, "three.example", &process(3, 10));
        // Process 4 (cgroup 20) resolves one.example after everything else.
        resolve(&mut cache, 4 * S, "one.example", &process(4, 20));

        let at = 5 * S;
        let look = |pid, cgroup| cache.lookup(ip(shared), at, pid, cgroup).expect("resolved");
        let by_pid = look(Some(1), Some(20));
        assert_eq!(
            (by_pid.name.as_str(), by_pid.basis),
            ("one.example", Basis::SameProcess)
        );
        assert_eq!(by_pid.alternatives, ["three.example", "two.example"]);
        assert_eq!(by_pid.resolved_at_ns, 4 * S);

        let by_pid = look(Some(2), Some(10));
        assert_eq!(
            (by_pid.name.as_str(), by_pid.basis),
            ("two.example", Basis::SameProcess)
        );

        let by_cgroup = look(Some(99), Some(10));
        assert_eq!(
            (by_cgroup.name.as_str(), by_cgroup.basis),
            ("three.example", Basis::SameCgroup)
        );
        let by_cgroup = look(None, Some(20));
        assert_eq!(
            (by_cgroup.name.as_str(), by_cgroup.basis),
            ("one.example", Basis::SameCgroup)
        );

        let recent = look(Some(99), Some(99));
        assert_eq!(
            (recent.name.as_str(), recent.basis),
            ("one.example", Basis::MostRecent)
        );
        assert_eq!(recent.alternatives, ["three.example", "two.example"]);
        assert_eq!(look(None, None).basis, Basis::MostRecent);

        // The same process later resolves another name for the address: that one wins.
        resolve(&mut cache, 6 * S, "two.example", &process(1, 10));
        assert_eq!(
            cache
                .lookup(ip(shared), 7 * S, Some(1), None)
                .map(|r| r.name),
            Some("two.example".to_owned())
        );
    }

    #[test]
    fn expired_answers_still_resolve_until_the_grace_ends() {
        let limits = Limits {
            grace_ns: 600 * S,
            ..Limits::default()
        };
        let mut cache = NameCache::new(limits);
        cache.observe_response(100 * S, None, 1, &[q(PIPELINES)], &pipelines_answers());
        let addr = ip("198.18.1.12");
        let fresh = cache.lookup(addr, 160 * S, None, None).expect("fresh");
        assert!(!fresh.expired);
        let stale = cache.lookup(addr, 161 * S, None, None).expect("stale");
        assert!(stale.expired);
        assert_eq!(stale.name, PIPELINES);
        assert!(cache.lookup(addr, 760 * S, None, None).is_some());
        assert_eq!(cache.lookup(addr, 761 * S, None, None), None);

        // A later response purges it for good.
        cache.observe_response(
            800 * S,
            None,
            1,
            &[q("other.example")],
            &[rr("other.example", "A", 30, "198.18.7.1")],
        );
        assert_eq!(cache.stats().addresses, 1);
        assert_eq!(cache.stats().expired_bindings, 1);
        // The per-name record stays, for the report.
        assert!(cache.name(PIPELINES).is_some());
    }

    #[test]
    fn purge_drops_only_what_is_past_its_grace() {
        let limits = Limits {
            grace_ns: 10 * S,
            ..Limits::default()
        };
        let mut cache = NameCache::new(limits);
        cache.observe_response(
            S,
            None,
            1,
            &[q("short.example")],
            &[rr("short.example", "A", 1, "198.18.8.1")],
        );
        cache.observe_response(
            S,
            None,
            1,
            &[q("long.example")],
            &[rr("long.example", "A", 100, "198.18.8.2")],
        );
        // Both names on one address, one short-lived.
        cache.observe_response(
            S,
            None,
            1,
            &[q("a.example")],
            &[rr("a.example", "A", 1, "198.18.8.3")],
        );
        cache.observe_response(
            2 * S,
            None,
            1,
            &[q("b.example")],
            &[rr("b.example", "A", 100, "198.18.8.3")],
        );
        cache.purge(50 * S);
        assert_eq!(cache.lookup(ip("198.18.8.1"), 50 * S, None, None), None);
        assert!(cache.lookup(ip("198.18.8.2"), 50 * S, None, None).is_some());
        let shared = cache
            .lookup(ip("198.18.8.3"), 50 * S, None, None)
            .expect("b stays");
        assert_eq!(shared.name, "b.example");
        assert!(shared.alternatives.is_empty());
        assert_eq!(cache.stats().addresses, 2);
        assert_eq!(cache.stats().expired_bindings, 2);
        // The order index follows the map: evicting after purge still works.
        assert_eq!(cache.addr_order.len(), cache.addrs.len());
    }

    #[test]
    fn eviction_keeps_the_bounds() {
        let limits = Limits {
            max_addresses: 4,
            max_names_per_address: 3,
            max_names: 5,
            max_addresses_per_name: 2,
            max_processes_per_name: 2,
            ..Limits::default()
        };
        let mut cache = NameCache::new(limits);
        for i in 0..10u64 {
            let name = format!("n{i}.example");
            cache.observe_response(
                i * S,
                Some(&process(u32::try_from(i).unwrap_or(0), 1)),
                1,
                &[q(&name)],
                &[rr(&name, "A", 300, &format!("198.18.9.{i}"))],
            );
        }
        let stats = cache.stats();
        assert_eq!(stats.addresses, 4);
        assert_eq!(stats.evicted_addresses, 6);
        assert_eq!(stats.names, 5);
        assert_eq!(stats.evicted_names, 5);
        for i in 0..6 {
            assert_eq!(
                cache.lookup(ip(&format!("198.18.9.{i}")), 10 * S, None, None),
                None
            );
        }
        for i in 6..10 {
            assert!(cache
                .lookup(ip(&format!("198.18.9.{i}")), 10 * S, None, None)
                .is_some());
        }
        let names: Vec<&str> = cache.names().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "n5.example",
                "n6.example",
                "n7.example",
                "n8.example",
                "n9.example"
            ]
        );
        assert_eq!(cache.addr_order.len(), cache.addrs.len());
        assert_eq!(cache.name_order.len(), cache.names.len());

        // Names per address: the least recently resolved goes.
        let shared = "198.18.10.1";
        for i in 0..5u64 {
            let name = format!("s{i}.example");
            cache.observe_response(
                20 * S + i,
                None,
                1,
                &[q(&name)],
                &[rr(&name, "A", 300, shared)],
            );
        }
        let got = cache
            .lookup(ip(shared), 30 * S, None, None)
            .expect("resolved");
        assert_eq!(got.name, "s4.example");
        assert_eq!(got.alternatives, ["s3.example", "s2.example"]);
        assert_eq!(cache.stats().evicted_bindings, 2);
        assert!(cache.stats().addresses <= 4);

        // Addresses and processes per name.
        let many: Vec<Answer> = (0..5)
            .map(|i| rr("many.example", "A", 300, &format!("198.18.11.{i}")))
            .collect();
        for pid in 1..=3 {
            cache.observe_response(
                40 * S,
                Some(&process(pid, 1)),
                1,
                &[q("many.example")],
                &many,
            );
        }
        let record = cache.name("many.example").expect("record");
        assert_eq!(record.addresses, [ip("198.18.11.0"), ip("198.18.11.1")]);
        let pids: Vec<u32> = record.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [3, 2]);
        assert_eq!(record.responses, 3);
    }

    #[test]
    fn resolvers_per_name_are_bounded() {
        let mut cache = NameCache::default();
        for pid in 0..20u32 {
            cache.observe_response(
                u64::from(pid) * S,
                Some(&process(pid, 1)),
                1,
                &[q("a.example")],
                &[rr("a.example", "A", 300, "198.18.12.1")],
            );
        }
        let entry = cache.addrs.get(&ip("198.18.12.1")).expect("entry");
        assert_eq!(entry.bindings[0].resolvers.len(), MAX_RESOLVERS);
        // The oldest resolvers were dropped: pid 0 no longer counts as "same process".
        let got = cache
            .lookup(ip("198.18.12.1"), 30 * S, Some(0), None)
            .expect("resolved");
        assert_eq!(got.basis, Basis::MostRecent);
        let got = cache
            .lookup(ip("198.18.12.1"), 30 * S, Some(19), None)
            .expect("resolved");
        assert_eq!(got.basis, Basis::SameProcess);
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let mut cache = NameCache::default();
        cache.observe_response(
            S,
            None,
            1,
            &[Question {
                name: "ghcr.io".to_owned(),
                rtype: "AAAA".to_owned(),
                class: None,
            }],
            &[
                rr("ghcr.io", "AAAA", 60, "2001:db8::1"),
                rr("ghcr.io", "AAAA", 60, "::ffff:198.18.13.1"),
            ],
        );
        let v6 = cache
            .lookup(ip("2001:db8::1"), S, None, None)
            .expect("resolved");
        assert_eq!(v6.name, "ghcr.io");
        // A dual-stack socket's mapped address and the plain IPv4 one are the same.
        assert!(cache.lookup(ip("198.18.13.1"), S, None, None).is_some());
        assert!(cache
            .lookup(ip("::ffff:198.18.13.1"), S, None, None)
            .is_some());
        assert_eq!(
            cache.name("ghcr.io").map(|r| r.addresses.clone()),
            Some(vec![ip("2001:db8::1"), ip("198.18.13.1")])
        );
    }

    #[test]
    fn names_are_normalized() {
        let mut cache = NameCache::default();
        cache.observe_response(
            S,
            None,
            1,
            &[q("Pipelines.Actions.GitHubUserContent.COM.")],
            &[
                rr(
                    "PIPELINES.actions.githubusercontent.com.",
                    "CNAME",
                    30,
                    "Star-X.L-MSEDGE.net.",
                ),
                rr("star-x.l-msedge.net", "A", 30, "198.18.14.1"),
            ],
        );
        let got = cache
            .lookup(ip("198.18.14.1"), S, None, None)
            .expect("resolved");
        assert_eq!(got.name, PIPELINES);
        assert_eq!(got.cname_chain, chain(&[PIPELINES, "star-x.l-msedge.net"]));
        assert!(cache
            .name("PIPELINES.actions.githubusercontent.com.")
            .is_some());
    }

    #[test]
    fn per_name_records_keep_the_latest_response() {
        let mut cache = NameCache::default();
        let message = |rcode: &str, qname: &str, answers: Vec<Answer>| DnsMessage {
            id: 1,
            response: true,
            rcode: rcode.to_owned().into(),
            tc: false,
            questions: vec![q(qname)],
            answers,
            incomplete: None,
        };
        let p = process(42, 9);
        cache.observe_message(S, Some(&p), 9, &message("NXDOMAIN", "nope.example", vec![]));
        let mut query = message("NOERROR", "query.example", vec![]);
        query.response = false;
        cache.observe_message(S, Some(&p), 9, &query);
        assert!(cache.name("query.example").is_none());

        cache.observe_message(
            2 * S,
            Some(&p),
            9,
            &message("NOERROR", PIPELINES, pipelines_answers()),
        );
        // The AAAA query's empty answer keeps what the A query gave.
        cache.observe_message(3 * S, Some(&p), 9, &message("NOERROR", PIPELINES, vec![]));

        let nope = cache.name("nope.example").expect("record");
        assert_eq!(nope.rcode.as_deref(), Some("NXDOMAIN"));
        assert!(nope.addresses.is_empty());
        assert_eq!(nope.cname_chain, chain(&["nope.example"]));
        assert_eq!(nope.processes, std::slice::from_ref(&p));

        let pipelines = cache.name(PIPELINES).expect("record");
        assert_eq!(pipelines.rcode.as_deref(), Some("NOERROR"));
        assert_eq!(pipelines.addresses, [ip("198.18.1.12")]);
        assert_eq!(pipelines.cname_chain.len(), 3);
        assert_eq!(
            (pipelines.first_seen_ns, pipelines.last_seen_ns),
            (2 * S, 3 * S)
        );
        assert_eq!(pipelines.responses, 2);

        let order: Vec<&str> = cache.names().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["nope.example", PIPELINES]);
    }

    #[test]
    fn out_of_order_timestamps_do_not_go_back() {
        let mut cache = NameCache::default();
        cache.observe_response(
            10 * S,
            None,
            1,
            &[q("a.example")],
            &[rr("a.example", "A", 60, "198.18.15.1")],
        );
        cache.observe_response(
            5 * S,
            None,
            1,
            &[q("a.example")],
            &[rr("a.example", "A", 5, "198.18.15.1")],
        );
        let got = cache
            .lookup(ip("198.18.15.1"), 11 * S, None, None)
            .expect("resolved");
        assert_eq!((got.resolved_at_ns, got.ttl), (10 * S, 60));
        assert_eq!(cache.addr_order.len(), 1);
        let record = cache.name("a.example").expect("record");
        assert_eq!((record.first_seen_ns, record.last_seen_ns), (5 * S, 10 * S));
        assert_eq!(cache.name_order.len(), 1);
    }

    #[test]
    fn zero_limits_store_nothing_and_do_not_panic() {
        let mut cache = NameCache::new(Limits {
            max_addresses: 0,
            max_names_per_address: 0,
            grace_ns: 0,
            max_names: 0,
            max_address_bytes: 0,
            max_name_bytes: 0,
            max_addresses_per_name: 0,
            max_processes_per_name: 0,
        });
        cache.observe_response(u64::MAX, None, 1, &[q(PIPELINES)], &pipelines_answers());
        cache.observe_response(0, None, 1, &[q(PIPELINES)], &pipelines_answers());
        assert_eq!(cache.stats().addresses, 0);
        assert_eq!(cache.stats().names, 0);
        assert_eq!(
            cache.lookup(ip("198.18.1.12"), u64::MAX, Some(1), Some(1)),
            None
        );
        assert_eq!(cache.names().count(), 0);
    }

    #[test]
    fn long_names_are_bounded_in_bytes_not_entries() {
        let limits = Limits {
            max_address_bytes: 64 << 10,
            max_name_bytes: 64 << 10,
            ..Limits::default()
        };
        let mut cache = NameCache::new(limits);
        for i in 0..1000u32 {
            let name = format!("{i}.{}.example", "x".repeat(900));
            cache.observe_response(
                S + u64::from(i),
                None,
                1,
                &[q(&name)],
                &[rr(
                    &name,
                    "A",
                    300,
                    &format!("198.18.{}.{}", 20 + i / 250, i % 250),
                )],
            );
            let stats = cache.stats();
            assert!(stats.address_bytes <= 64 << 10, "{stats:?}");
            assert!(stats.name_bytes <= 64 << 10, "{stats:?}");
        }
        let stats = cache.stats();
        assert!(stats.addresses < 100 && stats.names < 100, "{stats:?}");
        assert!(
            stats.evicted_addresses > 900 && stats.evicted_names > 900,
            "{stats:?}"
        );
        // The most recent is still there.
        let last = format!("999.{}.example", "x".repeat(900));
        assert_eq!(
            cache
                .lookup(ip("198.18.23.249"), 2 * S, None, None)
                .map(|r| r.name),
            Some(last)
        );
        // Purging everything gives every byte back.
        cache.purge(u64::MAX);
        assert_eq!(cache.stats().address_bytes, 0);
    }
}
