//! What to allow: the pure core of `observer suggest`. From a report and the catalog in
//! effect, [`build`] chooses the smallest set of rules that covers what the runner used, grouped
//! by site, with the evidence behind each rule. The formats only render a [`Plan`].
//!
//! # Choices
//!
//! - A host counts when it was used: it had flows, or DNS answers for it were seen. Blocked
//!   hosts count (the admin must open them); documented hosts never seen do not.
//! - A name the catalog lists exactly is allowed by that name.
//! - A name under a documented wildcard of a feature group (`*.actions.githubusercontent.com`)
//!   is allowed by the wildcard, since GitHub says only the listed names stay constant; unless
//!   the wildcard spans a public suffix (`*.blob.core.windows.net`: anyone can create names
//!   there), in which case the names are generalised only as far as their rotating numbers
//!   (`productionresultssa*.blob.core.windows.net`), or kept as seen.
//! - A name documented only by the summary wildcards (`*.github.com`, `*.githubusercontent.com`)
//!   is allowed by its own name (or rotating shape): the summary is an example allow list, far
//!   wider than what was used.
//! - Undeclared names are kept apart, as seen; two names or more of one rotating shape under a
//!   domain that is not a public suffix are generalised. Addresses no DNS answer named are kept
//!   apart too.
//! - CNAME targets are added only when asked, marked as names that may change.
//! - Hosts reached through an HTTP proxy are hosts like any other, on the port the client asked
//!   the proxy for (`CONNECT host:443`), not the proxy's: a host the proxy refused
//!   (`proxy_refused`, `proxy_auth_required`) or could not reach is blocked, and so allowed like
//!   every blocked host the runner used. The proxies themselves ([`Plan::proxies`]) are named
//!   for the formats that configure a proxy (squid).
//! - Only the catalog in effect says what is documented. A report's own `pattern` is checked
//!   (it must match its host) but never made a rule: a name the catalog does not know is allowed
//!   by itself, with a note to pass the report's catalog (`--catalog`). Every value of the report
//!   is checked by [`super::safe`]; what fails is in [`Plan::skipped`], by field.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use crate::{
    catalog::{Catalog, DEFAULT_PORT},
    report::{self, vocab::Reason, HostReport, Process, Report, Status, UndeclaredReport},
};

use super::{
    domain::{self, Rotating},
    safe::{GroupId, Name, ReportPattern, Text, WildDomain},
};

/// Options that change what is allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Add the CNAME targets seen in DNS answers (some firewalls check every name of a chain).
    pub follow_cnames: bool,
    /// Make the undeclared names and unresolved addresses active rules rather than commented-out
    /// suggestions.
    pub include_undeclared: bool,
}

/// What a rule allows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Exactly this name.
    Exact(Name),
    /// `*.domain`: any name with one or more labels before `domain`, not `domain` itself.
    Subdomains(WildDomain),
    /// Names of one rotating shape.
    Rotating(Rotating),
}

impl Target {
    /// As catalogs write it: `api.github.com`, `*.actions.githubusercontent.com`,
    /// `productionresultssa*.blob.core.windows.net`.
    pub fn display(&self) -> String {
        match self {
            Self::Exact(name) => name.to_string(),
            Self::Subdomains(domain) => format!("*.{domain}"),
            Self::Rotating(r) => r.glob(),
        }
    }

    /// The domain the rule sits in, for grouping.
    fn base(&self) -> &str {
        match self {
            Self::Exact(name) => name.as_str(),
            Self::Subdomains(domain) => domain.as_str(),
            Self::Rotating(r) => r.parent().as_str(),
        }
    }

    /// Whether everything `other` allows, this allows too.
    fn covers(&self, other: &Target) -> bool {
        let Self::Subdomains(domain) = self else {
            return self == other;
        };
        let under = |name: &str| {
            name.strip_suffix(domain.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
        };
        match other {
            Self::Exact(name) => under(name.as_str()),
            Self::Subdomains(d) => d == domain || under(d.as_str()),
            Self::Rotating(r) => {
                r.parent().as_str() == domain.as_str() || under(r.parent().as_str())
            }
        }
    }
}

/// Why a rule has its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The catalog lists this exact name.
    DocumentedName,
    /// A documented wildcard of a feature group.
    DocumentedWildcard,
    /// The name as seen; `note` says why not a wildcard.
    ObservedName { note: Option<String> },
    /// Names seen, generalised to their rotating shape; `documented` is the wildcard that
    /// covers them and was not used, if any.
    Rotating { documented: Option<String> },
    /// A CNAME target of these observed names: it may change.
    CnameTarget { via: Vec<Name> },
}

/// What was seen of one name (or address) the rule covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// The name, or the address of an unresolved flow.
    pub name: Name,
    pub status: Status,
    pub reasons: Vec<Text>,
    pub flows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Addresses usable in address rules (no sinkhole, loopback or unspecified address).
    pub addresses: Vec<IpAddr>,
    pub cname_chain: Vec<Name>,
    /// Destination ports of its flows.
    pub ports: BTreeSet<u16>,
    /// `curl[19591]`.
    pub processes: Vec<Text>,
    pub first_seen: Option<Text>,
    /// DNS answers for it came from a DNS filter's sinkhole: its real addresses are unknown.
    pub sinkholed: bool,
    /// HTTP proxies its flows went through.
    pub via_proxies: Vec<SocketAddr>,
}

impl Seen {
    /// Failed attempts in the capture: the admin must open it.
    pub fn blocked(&self) -> bool {
        self.status.is_failing()
    }

    /// Resolved, never connected to.
    pub fn resolved_only(&self) -> bool {
        self.flows == 0 && self.reasons.is_empty()
    }
}

/// One rule, and what it covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub target: Target,
    pub basis: Basis,
    /// Catalog groups of the names it covers, in the order first seen.
    pub groups: Vec<GroupId>,
    /// The observed names it covers.
    pub seen: Vec<Seen>,
}

impl Rule {
    /// TCP ports to allow: those the covered names were reached on, else `fallback`.
    pub fn ports(&self, fallback: &BTreeSet<u16>) -> BTreeSet<u16> {
        let ports: BTreeSet<u16> = self.seen.iter().flat_map(|s| s.ports.clone()).collect();
        if ports.is_empty() {
            fallback.clone()
        } else {
            ports
        }
    }

    /// The addresses of the covered names, each once, with the names that had it.
    pub fn addresses(&self) -> BTreeMap<IpAddr, Vec<&str>> {
        let mut out: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
        for seen in &self.seen {
            for address in &seen.addresses {
                let names = out.entry(*address).or_default();
                if !names.contains(&seen.name.as_str()) {
                    names.push(seen.name.as_str());
                }
            }
        }
        out
    }

    fn add_groups(&mut self, groups: &[GroupId]) {
        for g in groups {
            if !self.groups.contains(g) {
                self.groups.push(g.clone());
            }
        }
    }

    fn add_seen(&mut self, seen: Seen) {
        if !self.seen.iter().any(|s| s.name == seen.name) {
            self.seen.push(seen);
        }
    }
}

/// Rules of one site (registrable domain, or shared public suffix).
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub site: String,
    /// The site is a public suffix of the list's private section.
    pub shared_suffix: bool,
    pub rules: Vec<Rule>,
}

/// Flows to an address no DNS answer named.
#[derive(Clone, Debug, PartialEq)]
pub struct Unresolved {
    pub address: IpAddr,
    pub seen: Seen,
}

/// A value of the report that is not what its field must be, left out of every rule (see
/// [`super::safe`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// Where it was in the report: `hosts[3].pattern`.
    pub field: String,
    /// The value, made harmless (for stderr; rule files name only the field).
    pub text: Text,
    /// Why it was left out, on one line.
    pub why: String,
}

impl Skipped {
    fn new(field: String, text: &str, why: &str) -> Self {
        Self {
            field,
            text: Text::new(text),
            why: super::safe::one_line(why),
        }
    }
}

/// An HTTP proxy of the capture: watched (with where it was found), used by flows, or both.
#[derive(Clone, Debug, PartialEq)]
pub struct Proxy {
    pub address: SocketAddr,
    /// Where the capture found it (`--proxy`, a runner's environment), when it watched it.
    pub source: Option<Text>,
    /// Flows went through it.
    pub used: bool,
}

/// The capture behind the report, as the rules' header tells it.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureInfo {
    pub generator: Text,
    pub started_at: Option<Text>,
    pub ended_at: Option<Text>,
    pub duration_s: f64,
    pub complete: bool,
    pub incomplete_because: Vec<Text>,
}

/// Everything a format renders.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub options: Options,
    pub capture: CaptureInfo,
    /// Documented hosts the runner used.
    pub github: Vec<Section>,
    /// CNAME targets of those (only with `follow_cnames`).
    pub cnames: Vec<Section>,
    /// Names no group lists.
    pub undeclared: Vec<Section>,
    /// Addresses no DNS answer named.
    pub unresolved: Vec<Unresolved>,
    /// HTTP proxies the capture watched or its flows went through, in address order.
    pub proxies: Vec<Proxy>,
    /// Documented exact names not used in the capture (not allowed).
    pub unused_documented: usize,
    pub skipped: Vec<Skipped>,
    /// Ports for names with no flow: the catalog's.
    pub default_ports: BTreeSet<u16>,
}

/// Checks a name from the report before it goes into a rule: rules are configuration, and a
/// name with a quote or a newline in it would change their meaning.
fn host_name(field: String, text: &str, skipped: &mut Vec<Skipped>) -> Option<Name> {
    match Name::parse(text) {
        Ok(name) => Some(name),
        Err(why) => {
            skipped.push(Skipped::new(
                field,
                text,
                &format!("not a host name ({why})"),
            ));
            None
        }
    }
}

/// The valid group ids of a host; the others are skipped with a warning.
fn groups(index: usize, list: &[String], skipped: &mut Vec<Skipped>) -> Vec<GroupId> {
    let mut out = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match GroupId::parse(text) {
            Ok(id) => out.push(id),
            Err(why) => skipped.push(Skipped::new(
                format!("hosts[{index}].groups[{i}]"),
                text,
                &format!("not a group id ({why})"),
            )),
        }
    }
    out
}

/// Addresses a rule may allow: not a sinkhole answer, not the host itself, not a whole range.
fn usable(address: &IpAddr) -> bool {
    !(address.is_unspecified() || address.is_loopback() || address.is_multicast())
}

fn reason_codes(reasons: &[report::Reason]) -> Vec<Text> {
    // Warnings about hosts that work (slow transfers, cut long polls) are not failures; DNS
    // codes carry their record type (`dns_refused AAAA`).
    let failures: Vec<report::Reason> = reasons
        .iter()
        .filter(|r| !Reason::is_warning_code(&r.code))
        .cloned()
        .collect();
    report::reason_labels(&failures)
        .iter()
        .map(|c| Text::new(c))
        .collect()
}

fn processes(list: &[Process]) -> Vec<Text> {
    let mut out: Vec<Text> = Vec::new();
    for p in list {
        let text = Text::new(&format!("{}[{}]", p.comm, p.pid));
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// Keeps the valid names of a CNAME chain (`field` is where the chain is, `hosts[3]`); the
/// others are skipped with a warning.
fn chain(field: &str, names: &[String], skipped: &mut Vec<Skipped>) -> Vec<Name> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| host_name(format!("{field}.cname_chain[{i}]"), n, skipped))
        .collect()
}

fn seen_host(
    h: &HostReport,
    index: usize,
    name: Name,
    ports: BTreeSet<u16>,
    skipped: &mut Vec<Skipped>,
) -> Seen {
    let reasons = reason_codes(&h.reasons);
    let sinkholed = reasons.iter().any(|r| r == Reason::DnsSinkhole.as_str());
    Seen {
        name,
        status: h.status,
        flows: h.flows,
        bytes_sent: h.bytes_sent,
        bytes_received: h.bytes_received,
        addresses: if sinkholed {
            Vec::new()
        } else {
            h.addresses.iter().copied().filter(usable).collect()
        },
        cname_chain: chain(&format!("hosts[{index}]"), &h.cname_chain, skipped),
        ports,
        processes: processes(&h.processes),
        first_seen: h.first_seen.as_deref().map(Text::new),
        sinkholed,
        reasons,
        via_proxies: proxies_of(&format!("hosts[{index}]"), &h.via_proxies, skipped),
    }
}

/// What was seen of an undeclared destination; `chain` its checked CNAME chain, `via_proxies`
/// its checked proxies.
fn seen_undeclared(
    u: &UndeclaredReport,
    name: Name,
    chain: Vec<Name>,
    via_proxies: Vec<SocketAddr>,
) -> Seen {
    let reasons = reason_codes(&u.reasons);
    let sinkholed = reasons.iter().any(|r| r == Reason::DnsSinkhole.as_str());
    Seen {
        name,
        status: u.status,
        flows: u.flows,
        bytes_sent: u.bytes_sent,
        bytes_received: u.bytes_received,
        addresses: if sinkholed {
            Vec::new()
        } else {
            u.addresses.iter().copied().filter(usable).collect()
        },
        cname_chain: chain,
        ports: u.ports.iter().copied().filter(|p| *p != 0).collect(),
        processes: processes(&u.processes),
        first_seen: u.first_seen.as_deref().map(Text::new),
        sinkholed,
        reasons,
        via_proxies,
    }
}

/// The proxies of a host (`field` is where the host is, `hosts[3]`): each an address and port;
/// the others are skipped with a warning.
fn proxies_of(field: &str, list: &[String], skipped: &mut Vec<Skipped>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match text.parse::<SocketAddr>() {
            Ok(address) if !out.contains(&address) => out.push(address),
            Ok(_) => {}
            Err(_) => skipped.push(Skipped::new(
                format!("{field}.via_proxies[{i}]"),
                text,
                "not an address and port",
            )),
        }
    }
    out
}

/// The proxies the capture watched, with where it found each, and those its hosts' flows went
/// through.
fn proxies(report: &Report, seen: impl Iterator<Item = SocketAddr>) -> Vec<Proxy> {
    let mut out: BTreeMap<SocketAddr, Proxy> = BTreeMap::new();
    for watched in &report.capture.proxies {
        out.entry(watched.addr).or_insert(Proxy {
            address: watched.addr,
            source: Some(Text::new(&watched.source.to_string())),
            used: false,
        });
    }
    for address in seen {
        out.entry(address)
            .or_insert(Proxy {
                address,
                source: None,
                used: true,
            })
            .used = true;
    }
    out.into_values().collect()
}

/// Rules in the order they were first made, each target once.
#[derive(Default)]
struct Rules(Vec<Rule>);

impl Rules {
    fn add(&mut self, target: Target, basis: Basis, groups: &[GroupId], seen: Option<Seen>) {
        let i = match self.0.iter().position(|r| r.target == target) {
            Some(i) => i,
            None => {
                self.0.push(Rule {
                    target,
                    basis,
                    groups: Vec::new(),
                    seen: Vec::new(),
                });
                self.0.len() - 1
            }
        };
        let rule = &mut self.0[i];
        rule.add_groups(groups);
        if let Some(seen) = seen {
            rule.add_seen(seen);
        }
    }

    /// Folds rules that a wildcard rule covers into it: the smallest set of rules.
    fn fold_covered(&mut self) {
        let mut i = 0;
        while i < self.0.len() {
            let covering = (0..self.0.len()).find(|&j| {
                j != i
                    && matches!(self.0[j].target, Target::Subdomains(_))
                    && self.0[j].target.covers(&self.0[i].target)
                    && self.0[j].target != self.0[i].target
            });
            match covering {
                Some(j) => {
                    let rule = self.0.remove(i);
                    let j = if j > i { j - 1 } else { j };
                    self.0[j].add_groups(&rule.groups);
                    for seen in rule.seen {
                        self.0[j].add_seen(seen);
                    }
                }
                None => i += 1,
            }
        }
    }

    fn into_sections(self) -> Vec<Section> {
        let mut sections: Vec<Section> = Vec::new();
        for rule in self.0 {
            let site = domain::site(rule.target.base());
            match sections.iter_mut().find(|s| s.site == site.key) {
                Some(section) => section.rules.push(rule),
                None => sections.push(Section {
                    site: site.key,
                    shared_suffix: site.shared_suffix,
                    rules: vec![rule],
                }),
            }
        }
        sections
    }
}

/// Ports of each name's flows: for a flow through a proxy, the port the client asked the proxy
/// for (`CONNECT host:443`), not the proxy's.
fn ports_by_name(report: &Report) -> BTreeMap<&str, BTreeSet<u16>> {
    let mut out: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    for flow in &report.flows {
        let port = if flow.via_proxy.is_some() {
            flow.proxy_target
                .as_deref()
                .and_then(|t| t.rsplit_once(':'))
                .and_then(|(_, port)| port.parse::<u16>().ok())
        } else {
            flow.port()
        };
        if let (Some(name), Some(port)) = (flow.name.as_deref(), port.filter(|p| *p != 0)) {
            out.entry(name).or_default().insert(port);
        }
    }
    out
}

/// Chooses the rules (see the module documentation).
pub fn build(report: &Report, catalog: &Catalog, options: Options) -> Plan {
    let ports = ports_by_name(report);
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut github = Rules::default();
    let mut unused_documented = 0;
    for (index, h) in report.hosts.iter().enumerate() {
        let used = h.flows > 0 || h.first_seen.is_some();
        if !used {
            unused_documented += 1;
            continue;
        }
        let Some(name) = host_name(format!("hosts[{index}].name"), &h.name, &mut skipped) else {
            continue;
        };
        let pattern = match ReportPattern::check(&name, &h.pattern) {
            Ok(pattern) => pattern,
            Err(why) => {
                skipped.push(Skipped::new(
                    format!("hosts[{index}].pattern"),
                    &h.pattern,
                    &format!("{why}; {name} is allowed by its own name only"),
                ));
                None
            }
        };
        let groups = groups(index, &h.groups, &mut skipped);
        let seen = seen_host(
            h,
            index,
            name.clone(),
            ports.get(h.name.as_str()).cloned().unwrap_or_default(),
            &mut skipped,
        );
        let (target, basis) = choose(catalog, &name, pattern.as_ref());
        github.add(target, basis, &groups, Some(seen));
    }
    github.fold_covered();

    let cnames = if options.follow_cnames {
        cname_targets(&github.0)
    } else {
        Rules::default()
    };

    let (undeclared, unresolved) = undeclared(report, &mut skipped);
    let used_proxies: Vec<SocketAddr> = github
        .0
        .iter()
        .chain(undeclared.iter().flat_map(|s| &s.rules))
        .flat_map(|r| &r.seen)
        .chain(unresolved.iter().map(|u| &u.seen))
        .flat_map(|s| s.via_proxies.iter().copied())
        .collect();
    let proxies = proxies(report, used_proxies.into_iter());

    Plan {
        options,
        capture: CaptureInfo {
            generator: Text::new(&report.generator),
            started_at: report.capture.started_at.as_deref().map(Text::new),
            ended_at: report.capture.ended_at.as_deref().map(Text::new),
            duration_s: report.capture.duration_s,
            complete: report.capture.complete,
            incomplete_because: report
                .capture
                .incomplete_because
                .iter()
                .map(|s| Text::new(s))
                .collect(),
        },
        github: github.into_sections(),
        cnames: cnames.into_sections(),
        undeclared,
        unresolved,
        proxies,
        unused_documented,
        skipped,
        default_ports: default_ports(catalog),
    }
}

/// The CNAME targets of the names the rules cover, each with the names that led to it, unless
/// a rule already allows it.
fn cname_targets(rules: &[Rule]) -> Rules {
    let mut targets: Vec<(Name, Vec<Name>)> = Vec::new();
    for seen in rules.iter().flat_map(|r| &r.seen) {
        for target in seen.cname_chain.iter().skip(1) {
            let exact = Target::Exact(target.clone());
            let allowed = rules.iter().any(|r| match &r.target {
                Target::Rotating(shape) => shape.matches(target),
                other => other.covers(&exact),
            });
            if allowed {
                continue;
            }
            match targets.iter_mut().find(|(t, _)| t == target) {
                Some((_, via)) if via.contains(&seen.name) => {}
                Some((_, via)) => via.push(seen.name.clone()),
                None => targets.push((target.clone(), vec![seen.name.clone()])),
            }
        }
    }
    let mut out = Rules::default();
    for (target, via) in targets {
        out.add(Target::Exact(target), Basis::CnameTarget { via }, &[], None);
    }
    out
}

/// The catalog's ports (443 unless a catalog file says otherwise).
fn default_ports(catalog: &Catalog) -> BTreeSet<u16> {
    let ports: BTreeSet<u16> = catalog.ports().into_iter().collect();
    if ports.is_empty() {
        BTreeSet::from([DEFAULT_PORT])
    } else {
        ports
    }
}

/// The rule for a used documented host (see the module documentation). Only the catalog in
/// effect says what is documented: the report's own `pattern` (checked, see
/// [`super::safe::ReportPattern`]) is never made a rule; when the catalog does not know the
/// name, the name is allowed as seen, with a note on how to use the report's catalog.
fn choose(
    catalog: &Catalog,
    name: &Name,
    report_pattern: Option<&ReportPattern>,
) -> (Target, Basis) {
    let memberships = catalog.matches(name.as_str());
    if memberships.iter().any(|m| !m.pattern.is_wildcard()) {
        return (Target::Exact(name.clone()), Basis::DocumentedName);
    }
    if memberships.is_empty() {
        let note = report_pattern.map(|p| {
            format!(
                "the report says {} documents it, but the catalog in effect does not list it: \
                 pass the catalog the report was made with (--catalog FILE) to use it",
                p.pattern()
            )
        });
        return (Target::Exact(name.clone()), Basis::ObservedName { note });
    }
    // The most specific wildcard of a feature group, and of a summary group.
    let most_specific = |summary: bool| {
        memberships
            .iter()
            .filter(|m| m.group.summary == summary && m.pattern.is_wildcard())
            .map(|m| m.pattern)
            .max_by_key(|p| p.as_str().len())
    };
    let feature = most_specific(false);
    let summary = most_specific(true);
    if let Some(domain) = feature.and_then(WildDomain::of) {
        return (Target::Subdomains(domain), Basis::DocumentedWildcard);
    }
    let feature = feature.map(|p| p.as_str().to_owned());
    let summary = summary.map(|p| p.as_str().to_owned());
    let documented = feature.clone().or(summary.clone());
    if let (Some(pattern), Some(rotating)) = (&documented, Rotating::of(name)) {
        let parent = rotating.parent().as_str();
        let within = pattern
            .strip_prefix("*.")
            .is_some_and(|d| parent == d || parent.ends_with(&format!(".{d}")));
        // Under a public suffix, only where GitHub's own wildcard already allows all of it.
        if within && (domain::wildcard_is_safe(parent) || feature.is_some()) {
            return (
                Target::Rotating(rotating),
                Basis::Rotating {
                    documented: documented.clone(),
                },
            );
        }
    }
    let note = match (&feature, &summary) {
        (Some(pattern), _) => Some(format!(
            "the documented {pattern} spans a public suffix (anyone can create names under it): \
             only the names seen are allowed"
        )),
        (None, Some(pattern)) => Some(format!(
            "documented only by the summary wildcard {pattern}: the name seen is allowed, not \
             the whole domain"
        )),
        (None, None) => None,
    };
    (Target::Exact(name.clone()), Basis::ObservedName { note })
}

/// Undeclared names (generalised only when two or more share a rotating shape under a domain
/// that is not a public suffix) and unresolved addresses.
fn undeclared(report: &Report, skipped: &mut Vec<Skipped>) -> (Vec<Section>, Vec<Unresolved>) {
    let mut named: Vec<(Name, &UndeclaredReport, Vec<Name>, Vec<SocketAddr>)> = Vec::new();
    let mut unresolved: Vec<Unresolved> = Vec::new();
    for (index, u) in report.undeclared.iter().enumerate() {
        let field = format!("undeclared[{index}]");
        let cnames = chain(&field, &u.cname_chain, skipped);
        let via = proxies_of(&field, &u.via_proxies, skipped);
        match &u.name {
            Some(text) => {
                if let Some(name) = host_name(format!("{field}.name"), text, skipped) {
                    named.push((name, u, cnames, via));
                }
            }
            None => {
                for address in u.addresses.iter().copied().filter(usable) {
                    unresolved.push(Unresolved {
                        address,
                        seen: seen_undeclared(
                            u,
                            Name::of_address(address),
                            cnames.clone(),
                            via.clone(),
                        ),
                    });
                }
            }
        }
    }
    let mut shapes: BTreeMap<Rotating, usize> = BTreeMap::new();
    for (name, ..) in &named {
        if let Some(r) = Rotating::of(name) {
            *shapes.entry(r).or_default() += 1;
        }
    }
    let mut rules = Rules::default();
    for (name, u, cnames, via) in named {
        let rotating = Rotating::of(&name).filter(|r| {
            shapes.get(r).is_some_and(|n| *n >= 2) && domain::wildcard_is_safe(r.parent().as_str())
        });
        let seen = seen_undeclared(u, name.clone(), cnames, via);
        match rotating {
            Some(r) => rules.add(
                Target::Rotating(r),
                Basis::Rotating { documented: None },
                &[],
                Some(seen),
            ),
            None => rules.add(
                Target::Exact(name),
                Basis::ObservedName { note: None },
                &[],
                Some(seen),
            ),
        }
    }
    (rules.into_sections(), unresolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, pattern: &str, groups: &[&str], status: &str) -> String {
        format!(
            r#"{{"name": "{name}", "pattern": "{pattern}", "groups": {groups:?}, "status": "{status}",
                "flows": 1, "addresses": ["192.0.2.1"], "cname_chain": ["{name}", "cdn-1.example.net"],
                "first_seen": "2026-11-20T09:00:00Z"}}"#
        )
    }

    fn plan(hosts: &[String], undeclared: &[&str], options: Options) -> Plan {
        let undeclared: Vec<String> = undeclared
            .iter()
            .map(|n| {
                format!(
                    r#"{{"name": "{n}", "status": "ok", "flows": 1, "ports": [443],
                        "addresses": ["203.0.113.1"]}}"#
                )
            })
            .collect();
        let text = format!(
            r#"{{"schema_version": 1, "hosts": [{}], "undeclared": [{}]}}"#,
            hosts.join(","),
            undeclared.join(",")
        );
        let report = crate::report::parse("test.json", &text).unwrap();
        build(&report, &Catalog::builtin(), options)
    }

    fn targets(sections: &[Section]) -> Vec<String> {
        sections
            .iter()
            .flat_map(|s| &s.rules)
            .map(|r| r.target.display())
            .collect()
    }

    const ESSENTIAL: &[&str] = &["essential", "oidc", "wildcard-summary"];

    #[test]
    fn documented_names_and_wildcards_are_preferred() {
        let p = plan(
            &[
                host("api.github.com", "api.github.com", ESSENTIAL, "ok"),
                host(
                    "pipelinesghubeus5.actions.githubusercontent.com",
                    "*.actions.githubusercontent.com",
                    ESSENTIAL,
                    "ok",
                ),
                host(
                    "results-receiver.actions.githubusercontent.com",
                    "results-receiver.actions.githubusercontent.com",
                    &["artifacts-caches-logs"],
                    "ok",
                ),
                host(
                    "run-actions-3-azure-eastus.actions.githubusercontent.com",
                    "*.actions.githubusercontent.com",
                    ESSENTIAL,
                    "blocked",
                ),
            ],
            &[],
            Options::default(),
        );
        assert_eq!(
            targets(&p.github),
            ["api.github.com", "*.actions.githubusercontent.com"]
        );
        let wildcard = &p.github[1].rules[0];
        assert_eq!(wildcard.basis, Basis::DocumentedWildcard);
        // The documented exact name under the wildcard is folded into it.
        let seen: Vec<&str> = wildcard.seen.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            seen,
            [
                "pipelinesghubeus5.actions.githubusercontent.com",
                "run-actions-3-azure-eastus.actions.githubusercontent.com",
                "results-receiver.actions.githubusercontent.com",
            ]
        );
        assert!(wildcard
            .groups
            .iter()
            .any(|g| g.as_str() == "artifacts-caches-logs"));
        assert!(wildcard.seen[1].blocked());
    }

    #[test]
    fn names_under_a_public_suffix_wildcard_are_generalised_only_by_their_numbers() {
        let blob = ["artifacts-caches-logs"];
        let p = plan(
            &[
                host(
                    "productionresultssa3.blob.core.windows.net",
                    "*.blob.core.windows.net",
                    &blob,
                    "ok",
                ),
                host(
                    "productionresultssa12.blob.core.windows.net",
                    "*.blob.core.windows.net",
                    &blob,
                    "ok",
                ),
                host(
                    "mycache.blob.core.windows.net",
                    "*.blob.core.windows.net",
                    &blob,
                    "ok",
                ),
            ],
            &[],
            Options::default(),
        );
        assert_eq!(
            targets(&p.github),
            [
                "productionresultssa*.blob.core.windows.net",
                "mycache.blob.core.windows.net"
            ]
        );
        assert_eq!(p.github.len(), 1);
        assert_eq!(p.github[0].site, "blob.core.windows.net");
        assert!(p.github[0].shared_suffix);
        let Basis::ObservedName { note: Some(note) } = &p.github[0].rules[1].basis else {
            panic!("{:?}", p.github[0].rules[1].basis)
        };
        assert!(note.contains("spans a public suffix"), "{note}");
        // A single rotating name is generalised too: the documented wildcard says names vary.
        let single = plan(
            &[host(
                "productionresultssa12.blob.core.windows.net",
                "*.blob.core.windows.net",
                &blob,
                "ok",
            )],
            &[],
            Options::default(),
        );
        assert_eq!(
            targets(&single.github),
            ["productionresultssa*.blob.core.windows.net"]
        );
    }

    #[test]
    fn summary_wildcards_are_not_used() {
        let p = plan(
            &[
                host(
                    "uploads.github.com",
                    "*.github.com",
                    &["wildcard-summary"],
                    "ok",
                ),
                host(
                    "avatars.githubusercontent.com",
                    "*.githubusercontent.com",
                    &["wildcard-summary"],
                    "ok",
                ),
            ],
            &[],
            Options::default(),
        );
        assert_eq!(
            targets(&p.github),
            ["uploads.github.com", "avatars.githubusercontent.com"]
        );
    }

    #[test]
    fn no_rule_ever_covers_a_public_suffix() {
        let mut hosts = Vec::new();
        for (name, pattern) in [
            (
                "a.actions.githubusercontent.com",
                "*.actions.githubusercontent.com",
            ),
            ("x.githubusercontent.com", "*.githubusercontent.com"),
            ("x1234.blob.core.windows.net", "*.blob.core.windows.net"),
            ("npm.pkg.github.com", "*.pkg.github.com"),
            ("abc.github.com", "*.github.com"),
        ] {
            hosts.push(host(name, pattern, &["wildcard-summary"], "ok"));
        }
        let p = plan(
            &hosts,
            &[
                "foo1.s3.amazonaws.com",
                "foo2.s3.amazonaws.com",
                "bar1.com",
                "bar2.com",
            ],
            Options {
                follow_cnames: true,
                include_undeclared: true,
            },
        );
        for rule in p
            .github
            .iter()
            .chain(&p.cnames)
            .chain(&p.undeclared)
            .flat_map(|s| &s.rules)
        {
            match &rule.target {
                Target::Subdomains(d) => assert!(domain::wildcard_is_safe(d.as_str()), "*.{d}"),
                Target::Rotating(r) => assert!(
                    domain::wildcard_is_safe(r.parent().as_str())
                        || matches!(
                            &rule.basis,
                            Basis::Rotating {
                                documented: Some(_)
                            }
                        ),
                    "{r}"
                ),
                Target::Exact(name) => {
                    assert!(!domain::is_public_suffix(name.as_str()), "{name}");
                }
            }
        }
        // Undeclared names of one shape under a public suffix stay as seen.
        assert_eq!(
            targets(&p.undeclared),
            [
                "foo1.s3.amazonaws.com",
                "foo2.s3.amazonaws.com",
                "bar1.com",
                "bar2.com"
            ]
        );
    }

    #[test]
    fn undeclared_names_of_one_shape_are_generalised_from_two() {
        let p = plan(
            &[],
            &[
                "mirror1.example.net",
                "mirror2.example.net",
                "cache7.example.com",
            ],
            Options::default(),
        );
        assert_eq!(
            targets(&p.undeclared),
            ["mirror*.example.net", "cache7.example.com"]
        );
    }

    #[test]
    fn cname_targets_only_when_asked_and_not_twice() {
        let hosts = [
            host("api.github.com", "api.github.com", ESSENTIAL, "ok"),
            host(
                "codeload.github.com",
                "codeload.github.com",
                &["actions-download"],
                "ok",
            ),
        ];
        assert!(plan(&hosts, &[], Options::default()).cnames.is_empty());
        let p = plan(
            &hosts,
            &[],
            Options {
                follow_cnames: true,
                include_undeclared: false,
            },
        );
        assert_eq!(targets(&p.cnames), ["cdn-1.example.net"]);
        assert_eq!(
            p.cnames[0].rules[0].basis,
            Basis::CnameTarget {
                via: vec![
                    Name::parse("api.github.com").unwrap(),
                    Name::parse("codeload.github.com").unwrap()
                ]
            }
        );
    }

    #[test]
    fn a_report_pattern_is_never_a_rule() {
        let p = plan(
            &[
                // Does not match its host: skipped, the name allowed by itself.
                host("harmless.example", "*.amazonaws.com", &["essential"], "ok"),
                // Matches, but the catalog in effect does not know it.
                host("x.corp.example", "*.corp.example", &["essential"], "ok"),
            ],
            &[],
            Options::default(),
        );
        assert_eq!(targets(&p.github), ["harmless.example", "x.corp.example"]);
        assert!(p
            .github
            .iter()
            .flat_map(|s| &s.rules)
            .all(|r| matches!(r.basis, Basis::ObservedName { .. })));
        let fields: Vec<&str> = p.skipped.iter().map(|s| s.field.as_str()).collect();
        assert_eq!(fields, ["hosts[0].pattern"]);
        assert!(p.skipped[0]
            .why
            .contains("does not match the host harmless.example"));
        let Basis::ObservedName { note: Some(note) } = &p.github[1].rules[0].basis else {
            panic!("{:?}", p.github[1].rules[0].basis)
        };
        assert!(
            note.contains("*.corp.example") && note.contains("--catalog"),
            "{note}"
        );
    }

    #[test]
    fn hostile_patterns_and_group_ids_are_skipped_by_field() {
        let hostile = r#"{"name": "x.evil.example", "pattern": "*.evil.example\ntouch /tmp/x\n#",
            "groups": ["essential", "x\nhttp_access allow all"], "status": "ok", "flows": 1}"#;
        let p = plan(&[hostile.to_owned()], &[], Options::default());
        assert_eq!(targets(&p.github), ["x.evil.example"]);
        let rule = &p.github[0].rules[0];
        let groups: Vec<&str> = rule.groups.iter().map(GroupId::as_str).collect();
        assert_eq!(groups, ["essential"]);
        let fields: Vec<&str> = p.skipped.iter().map(|s| s.field.as_str()).collect();
        assert_eq!(fields, ["hosts[0].pattern", "hosts[0].groups[1]"]);
        assert!(p.skipped.iter().all(|s| !s.why.contains('\n')));
    }

    #[test]
    fn hosts_through_a_proxy_are_allowed_on_the_port_asked_for() {
        let text = r#"{"schema_version": 1,
            "capture": {"proxies": [
                {"addr": "198.18.1.5:3128", "url": "http://198.18.1.5:3128", "source": "--proxy"},
                {"addr": "198.18.1.6:8080", "url": "http://198.18.1.6:8080", "source": "--proxy"}]},
            "hosts": [{"name": "codeload.github.com", "pattern": "codeload.github.com",
                "groups": ["actions-download"], "status": "blocked", "flows": 1,
                "reasons": [{"code": "proxy_refused", "count": 1}],
                "via_proxies": ["198.18.1.5:3128", "x\nhttp_access allow all"],
                "named_by": ["connect"]}],
            "undeclared": [{"name": "registry.npmjs.org", "status": "ok", "flows": 1,
                "ports": [443], "via_proxies": ["198.18.1.7:3128"]}],
            "flows": [{"flow_id": 1, "src": "198.18.0.1:40000", "dst": "198.18.1.5:3128",
                "name": "codeload.github.com", "class": "declared",
                "via_proxy": "198.18.1.5:3128", "proxy_target": "codeload.github.com:443",
                "proxy_status": 403, "named_by": "connect"}]}"#;
        let report = crate::report::parse("proxied.json", text).unwrap();
        let p = build(&report, &Catalog::builtin(), Options::default());
        // Refused by the proxy: blocked, and allowed like any blocked host the runner used.
        assert_eq!(targets(&p.github), ["codeload.github.com"]);
        let rule = &p.github[0].rules[0];
        assert!(rule.seen[0].blocked());
        assert_eq!(rule.ports(&p.default_ports), BTreeSet::from([443]));
        assert_eq!(
            rule.seen[0].via_proxies,
            ["198.18.1.5:3128".parse::<SocketAddr>().unwrap()]
        );
        // A proxy that is no address is left out by field.
        let fields: Vec<&str> = p.skipped.iter().map(|s| s.field.as_str()).collect();
        assert_eq!(fields, ["hosts[0].via_proxies[1]"]);
        // Watched and used, watched only, used only (by an undeclared host).
        let proxies: Vec<(String, Option<&str>, bool)> = p
            .proxies
            .iter()
            .map(|x| {
                (
                    x.address.to_string(),
                    x.source.as_ref().map(Text::as_str),
                    x.used,
                )
            })
            .collect();
        assert_eq!(
            proxies,
            [
                ("198.18.1.5:3128".to_owned(), Some("--proxy"), true),
                ("198.18.1.6:8080".to_owned(), Some("--proxy"), false),
                ("198.18.1.7:3128".to_owned(), None, true),
            ]
        );
    }

    #[test]
    fn unused_hosts_and_bad_names_are_left_out() {
        let unused = r#"{"name": "github.com", "pattern": "github.com", "status": "unseen"}"#;
        let bad = host(
            "evil\\u0022.github.com",
            "*.github.com",
            &["wildcard-summary"],
            "ok",
        );
        let p = plan(&[unused.to_owned(), bad], &[], Options::default());
        assert!(p.github.is_empty());
        assert_eq!(p.unused_documented, 1);
        assert_eq!(p.skipped.len(), 1);
        assert!(
            p.skipped[0].text.as_str().contains("evil'"),
            "{:?}",
            p.skipped
        );
        assert_eq!(p.skipped[0].field, "hosts[1].name");
    }
}
