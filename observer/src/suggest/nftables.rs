//! An nftables table (`nft -f FILE`): per site, a set of the IPv4 and a set of the IPv6
//! addresses its names resolved to, each address with its names in a comment; a chain
//! `runner_allow` that accepts TCP to them on the ports seen; a commented-out base chain to
//! start from; and the DNS-based alternative (dnsmasq `nftset=`) in comments.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    plan::{Plan, Section, Target},
    render::{self, Context, Doc},
    safe::nft_string,
};

/// The table's name.
pub const TABLE: &str = "observer_runner";
/// The regular chain that accepts what the runner needs.
pub const CHAIN: &str = "runner_allow";
/// nft keeps comments up to 128 bytes.
const MAX_COMMENT: usize = 120;

/// One address set to write.
struct AddressSet {
    name: String,
    ipv6: bool,
    /// Address and the names that had it.
    elements: Vec<(IpAddr, String)>,
    ports: BTreeSet<u16>,
    /// Written even without elements (so a resolver can fill it).
    keep_empty: bool,
    comment: String,
}

pub fn render(cx: &Context<'_>) -> String {
    let plan = cx.plan;
    let mut doc = Doc::new("# ");
    doc.line("#!/usr/sbin/nft -f");
    doc.comments(&render::header(cx));
    doc.comments(&[
        format!(
            "Address sets per site and a chain, {CHAIN}, that accepts TCP to them. The addresses"
        ),
        "are those the names resolved to during the capture: CDNs and cloud front ends change \
         them"
            .to_owned(),
        "often and answer with DNS TTLs of seconds to minutes, so these sets go stale. Refresh \
         them"
            .to_owned(),
        "(capture and suggest again), let the resolver fill them (see the end), or filter by \
         name"
            .to_owned(),
        "(--format squid). An address cannot tell apart the names that share it.".to_owned(),
        format!(
            "The table only accepts: jump to {CHAIN} from a default-drop output chain of this \
             table"
        ),
        "(see \"chain output\" below). Loading it replaces an earlier version of the table."
            .to_owned(),
    ]);
    doc.blank();
    doc.line(format!("table inet {TABLE}"));
    doc.line(format!("delete table inet {TABLE}"));
    doc.blank();
    doc.line(format!("table inet {TABLE} {{"));

    let mut names = SetNames::default();
    let mut rules: Vec<(bool, String)> = Vec::new();
    // Which active set holds each address, to warn when a suggestion shares one.
    let mut active_addresses: BTreeMap<IpAddr, (String, String)> = BTreeMap::new();
    let mut dns_lines: Vec<String> = Vec::new();

    for section in &plan.github {
        doc.blank();
        doc.comment_at("\t", render::section_title(section));
        for rule in &section.rules {
            doc.comments_at("\t", &render::rule_notes(rule));
        }
        let base = names.take(&section.site);
        let sets = site_sets(plan, section, &base);
        for set in &sets {
            for (address, who) in &set.elements {
                active_addresses
                    .entry(*address)
                    .or_insert_with(|| (set.name.clone(), who.clone()));
            }
        }
        if sets.iter().all(|s| s.elements.is_empty()) {
            doc.comment_at(
                "\t",
                "No address known for these names yet: the sets stay empty until they resolve.",
            );
        }
        write_sets(&mut doc, &sets, true, &mut rules);
        dns_lines.push(nftset_line(section, &base));
    }

    if !plan.cnames.is_empty() {
        doc.blank();
        doc.comment_at(
            "\t",
            "== CNAME targets (--follow-cnames): nothing to add to address sets ==",
        );
        doc.comment_at(
            "\t",
            "The addresses above are already those at the end of each chain:",
        );
        for rule in plan.cnames.iter().flat_map(|s| &s.rules) {
            doc.comment_at("\t", format!("  {}", render::basis(rule)));
        }
    }

    let active = plan.options.include_undeclared;
    if !plan.undeclared.is_empty() {
        doc.blank();
        doc.comments_at("\t", &render::undeclared_intro(plan));
        let mut elements: Vec<(IpAddr, String)> = Vec::new();
        let mut ports = BTreeSet::new();
        for section in &plan.undeclared {
            doc.comment_at("\t", render::section_title(section));
            for rule in &section.rules {
                doc.comments_at("\t", &render::undeclared_notes(rule, &plan.default_ports));
                ports.extend(rule.ports(&plan.default_ports));
                for (address, who) in rule.addresses() {
                    elements.push((address, who.join(", ")));
                }
            }
        }
        shared_notes(&mut doc, &elements, &active_addresses);
        let sets = family_sets("undeclared", elements, &ports, "undeclared");
        if sets.is_empty() {
            doc.comment_at("\t", "No address known for these names.");
        }
        write_sets(&mut doc, &sets, active, &mut rules);
    }

    if !plan.unresolved.is_empty() {
        doc.blank();
        doc.comment_at("\t", "== Unresolved: addresses no DNS answer named ==");
        doc.comment_at(
            "\t",
            "Hard-coded addresses, or names resolved before the capture: review each one.",
        );
        if !active {
            doc.comment_at(
                "\t",
                "Commented out: uncomment what you accept, or run again with --include-undeclared.",
            );
        }
        let mut elements = Vec::new();
        let mut ports = BTreeSet::new();
        for u in &plan.unresolved {
            doc.comment_at(
                "\t",
                format!("  {}", render::unresolved_note(u, &plan.default_ports)),
            );
            ports.extend(if u.seen.ports.is_empty() {
                plan.default_ports.clone()
            } else {
                u.seen.ports.clone()
            });
            elements.push((u.address, "unresolved".to_owned()));
        }
        shared_notes(&mut doc, &elements, &active_addresses);
        let sets = family_sets("unresolved", elements, &ports, "unresolved");
        write_sets(&mut doc, &sets, active, &mut rules);
    }

    doc.blank();
    doc.line(format!("\tchain {CHAIN} {{"));
    if rules.is_empty() {
        doc.comment_at(
            "\t\t",
            "Nothing to allow: the report shows no host the runner used.",
        );
    }
    for (active, rule) in &rules {
        doc.maybe(*active, "\t\t", rule);
    }
    doc.line("\t}");
    doc.blank();
    for line in [
        "Your base policy, for example (edit the resolvers, then uncomment):".to_owned(),
        "chain output {".to_owned(),
        "\ttype filter hook output priority filter; policy drop;".to_owned(),
        "\toif \"lo\" accept".to_owned(),
        "\tct state established,related accept".to_owned(),
        "\tip daddr 192.0.2.53 meta l4proto { tcp, udp } th dport 53 accept comment \"your resolver\""
            .to_owned(),
        format!("\tjump {CHAIN}"),
        "}".to_owned(),
    ] {
        doc.comment_at("\t", line);
    }
    doc.line("}");

    if !dns_lines.is_empty() {
        doc.blank();
        doc.comments(&[
            "DNS-based alternative: rather than freezing addresses, let the runner's resolver add \
             them to"
                .to_owned(),
            "the sets as it answers. With dnsmasq 2.87 or later (a /name/ also matches the names \
             under it):"
                .to_owned(),
        ]);
        for line in &dns_lines {
            doc.comment(format!("  {line}"));
        }
        doc.comment(
            "and give the sets \"flags timeout; timeout 1h;\" so that addresses no longer answered \
             expire.",
        );
    }
    doc.finish()
}

/// The IPv4 and IPv6 sets of a GitHub site (both always, so a resolver can fill them).
fn site_sets(plan: &Plan, section: &Section, base: &str) -> Vec<AddressSet> {
    let mut v4: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    let mut v6: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    let mut ports = BTreeSet::new();
    for rule in &section.rules {
        ports.extend(rule.ports(&plan.default_ports));
        for (address, who) in rule.addresses() {
            let map = if address.is_ipv4() { &mut v4 } else { &mut v6 };
            let names = map.entry(address).or_default();
            for name in who {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
        }
    }
    [(false, v4), (true, v6)]
        .into_iter()
        .map(|(ipv6, map)| AddressSet {
            name: format!("{base}_{}", if ipv6 { "v6" } else { "v4" }),
            ipv6,
            elements: map.into_iter().map(|(a, n)| (a, n.join(", "))).collect(),
            ports: ports.clone(),
            keep_empty: true,
            comment: section.site.clone(),
        })
        .collect()
}

/// Sets by family for a list of addresses (only the families that have some).
fn family_sets(
    base: &str,
    elements: Vec<(IpAddr, String)>,
    ports: &BTreeSet<u16>,
    comment: &str,
) -> Vec<AddressSet> {
    let mut v4: Vec<(IpAddr, String)> = Vec::new();
    let mut v6: Vec<(IpAddr, String)> = Vec::new();
    for (address, who) in elements {
        let list = if address.is_ipv4() { &mut v4 } else { &mut v6 };
        match list.iter_mut().find(|(a, _)| *a == address) {
            Some((_, names)) => {
                names.push_str(", ");
                names.push_str(&who);
            }
            None => list.push((address, who)),
        }
    }
    [(false, v4), (true, v6)]
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(ipv6, mut list)| {
            list.sort();
            AddressSet {
                name: format!("{base}_{}", if ipv6 { "v6" } else { "v4" }),
                ipv6,
                elements: list,
                ports: ports.clone(),
                keep_empty: false,
                comment: comment.to_owned(),
            }
        })
        .collect()
}

fn write_sets(doc: &mut Doc, sets: &[AddressSet], active: bool, rules: &mut Vec<(bool, String)>) {
    for set in sets {
        if set.elements.is_empty() && !set.keep_empty {
            continue;
        }
        doc.maybe(active, "\t", format!("set {} {{", set.name));
        let kind = if set.ipv6 { "ipv6_addr" } else { "ipv4_addr" };
        doc.maybe(active, "\t\t", format!("type {kind}"));
        if !set.elements.is_empty() {
            doc.maybe(active, "\t\t", "elements = {");
            let last = set.elements.len() - 1;
            for (i, (address, names)) in set.elements.iter().enumerate() {
                let comma = if i == last { "" } else { "," };
                doc.maybe(
                    active,
                    "\t\t\t",
                    format!(
                        "{address} comment {}{comma}",
                        nft_string(&render::shorten(names, MAX_COMMENT))
                    ),
                );
            }
            doc.maybe(active, "\t\t", "}");
        }
        doc.maybe(active, "\t", "}");
        let family = if set.ipv6 { "ip6" } else { "ip" };
        rules.push((
            active,
            format!(
                "{family} daddr @{} tcp dport {} accept comment {}",
                set.name,
                port_list(&set.ports),
                nft_string(&render::shorten(&set.comment, MAX_COMMENT))
            ),
        ));
    }
}

/// Warns about suggested addresses an active set already holds.
fn shared_notes(
    doc: &mut Doc,
    elements: &[(IpAddr, String)],
    active: &BTreeMap<IpAddr, (String, String)>,
) {
    for (address, who) in elements {
        if let Some((set, names)) = active.get(address) {
            doc.comment_at(
                "\t",
                format!(
                    "Note: {address} ({who}) is in {set} too ({names}): that set already lets it \
                     through."
                ),
            );
        }
    }
}

fn port_list(ports: &BTreeSet<u16>) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    if list.len() == 1 {
        list[0].clone()
    } else {
        format!("{{ {} }}", list.join(", "))
    }
}

/// The dnsmasq line that fills a site's sets.
fn nftset_line(section: &Section, base: &str) -> String {
    let mut domains: Vec<String> = Vec::new();
    for rule in &section.rules {
        let names: Vec<String> = match &rule.target {
            Target::Exact(name) => vec![name.to_string()],
            Target::Subdomains(domain) => vec![domain.to_string()],
            Target::Rotating(_) => rule.seen.iter().map(|s| s.name.to_string()).collect(),
        };
        for name in names {
            if !domains.contains(&name) {
                domains.push(name);
            }
        }
    }
    format!(
        "nftset=/{}/4#inet#{TABLE}#{base}_v4,6#inet#{TABLE}#{base}_v6",
        domains.join("/")
    )
}

/// Set names from site names: `github.com` → `github_com`, each once.
#[derive(Default)]
struct SetNames(BTreeSet<String>);

impl SetNames {
    fn take(&mut self, site: &str) -> String {
        let mut base: String = site
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if !base.starts_with(|c: char| c.is_ascii_alphabetic()) {
            base.insert_str(0, "s_");
        }
        base.truncate(48);
        let mut name = base.clone();
        let mut n = 2;
        while !self.0.insert(name.clone()) || ["undeclared", "unresolved"].contains(&name.as_str())
        {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }
}
