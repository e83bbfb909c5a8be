//! A shell script of ipset sets (one per site and address family, each address with its names
//! in a comment) and a chain `RUNNER_ALLOW` in iptables and ip6tables that accepts TCP to them.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    plan::Section,
    render::{self, Context, Doc},
    safe::sh_quote,
};

/// The chain, in iptables and ip6tables.
pub const CHAIN: &str = "RUNNER_ALLOW";
/// ipset names are at most 31 characters.
const MAX_SET_NAME: usize = 31;
/// ipset comments are at most 255 characters; shorter reads better.
const MAX_COMMENT: usize = 120;

struct IpSet {
    name: String,
    ipv6: bool,
    elements: Vec<(IpAddr, String)>,
    ports: BTreeSet<u16>,
    comment: String,
    active: bool,
}

pub fn render(cx: &Context<'_>) -> String {
    let plan = cx.plan;
    let mut doc = Doc::new("# ");
    doc.line("#!/bin/sh");
    doc.comments(&render::header(cx));
    doc.comments(&[
        format!("ipset sets of addresses and a chain, {CHAIN}, that accepts TCP to them; run as root."),
        "Running it again replaces what an earlier run made. Hook the chain into your policy before"
            .to_owned(),
        format!(
            "your final DROP: iptables -A OUTPUT -j {CHAIN}; ip6tables -A OUTPUT -j {CHAIN}"
        ),
        "The addresses are those the names resolved to during the capture: CDNs change them often,"
            .to_owned(),
        "so the sets go stale; refresh them, or filter by name (--format squid). An address cannot"
            .to_owned(),
        "tell apart the names that share it.".to_owned(),
    ]);
    doc.line("set -eu");
    doc.blank();
    doc.comment("The chain first, emptied, so that the sets it used can be replaced.");
    for tool in ["iptables", "ip6tables"] {
        doc.line(format!(
            "{tool} -N {CHAIN} 2>/dev/null || {tool} -F {CHAIN}"
        ));
    }

    let mut names = SetNames::default();
    let mut sets: Vec<IpSet> = Vec::new();
    let mut active_addresses: BTreeMap<IpAddr, String> = BTreeMap::new();
    for section in &plan.github {
        doc.blank();
        doc.comment(render::section_title(section));
        for rule in &section.rules {
            doc.comments(&render::rule_notes(rule));
        }
        let new = site_sets(cx, section, &mut names);
        if new.is_empty() {
            doc.comment("No address known for these names yet.");
        }
        for set in new {
            for (address, _) in &set.elements {
                active_addresses
                    .entry(*address)
                    .or_insert_with(|| set.name.clone());
            }
            write_set(&mut doc, &set);
            sets.push(set);
        }
    }
    if !plan.cnames.is_empty() {
        doc.blank();
        doc.comment("== CNAME targets (--follow-cnames): nothing to add to address sets ==");
        doc.comment("The addresses above are already those at the end of each chain:");
        for rule in plan.cnames.iter().flat_map(|s| &s.rules) {
            doc.comment(format!("  {}", render::basis(rule)));
        }
    }

    let active = plan.options.include_undeclared;
    if !plan.undeclared.is_empty() {
        doc.blank();
        doc.comments(&render::undeclared_intro(plan));
        let mut elements = Vec::new();
        let mut ports = BTreeSet::new();
        for section in &plan.undeclared {
            doc.comment(render::section_title(section));
            for rule in &section.rules {
                doc.comments(&render::undeclared_notes(rule, &plan.default_ports));
                ports.extend(rule.ports(&plan.default_ports));
                for (address, who) in rule.addresses() {
                    elements.push((address, who.join(", ")));
                }
            }
        }
        for set in family_sets(&mut names, "undeclared", elements, &ports, active) {
            shared_notes(&mut doc, &set, &active_addresses);
            write_set(&mut doc, &set);
            sets.push(set);
        }
    }
    if !plan.unresolved.is_empty() {
        doc.blank();
        doc.comment("== Unresolved: addresses no DNS answer named ==");
        doc.comment("Hard-coded addresses, or names resolved before the capture: review each one.");
        if !active {
            doc.comment(
                "Commented out: uncomment what you accept, or run again with --include-undeclared.",
            );
        }
        let mut elements = Vec::new();
        let mut ports = BTreeSet::new();
        for u in &plan.unresolved {
            doc.comment(format!(
                "  {}",
                render::unresolved_note(u, &plan.default_ports)
            ));
            ports.extend(if u.seen.ports.is_empty() {
                plan.default_ports.clone()
            } else {
                u.seen.ports.clone()
            });
            elements.push((u.address, "unresolved".to_owned()));
        }
        for set in family_sets(&mut names, "unresolved", elements, &ports, active) {
            shared_notes(&mut doc, &set, &active_addresses);
            write_set(&mut doc, &set);
            sets.push(set);
        }
    }

    doc.blank();
    doc.comment("The chain's rules.");
    if sets.is_empty() {
        doc.comment("Nothing to allow: the report shows no host the runner used.");
    }
    for set in &sets {
        let tool = if set.ipv6 { "ip6tables" } else { "iptables" };
        let ports: Vec<String> = set.ports.iter().map(u16::to_string).collect();
        // multiport takes at most 15 ports a rule: more ports, more rules (a rule iptables
        // refused would stop the script with the chain already emptied).
        for chunk in ports.chunks(MAX_MULTIPORT) {
            let port_match = if chunk.len() == 1 {
                format!("--dport {}", sh_quote(&chunk[0]))
            } else {
                format!("-m multiport --dports {}", sh_quote(&chunk.join(",")))
            };
            doc.maybe(
                set.active,
                "",
                format!(
                    "{tool} -A {CHAIN} -p tcp {port_match} -m set --match-set {} dst -m comment \
                     --comment {} -j ACCEPT",
                    sh_quote(&set.name),
                    sh_quote(&render::shorten(&set.comment, MAX_COMMENT))
                ),
            );
        }
    }
    doc.finish()
}

/// The most ports iptables' multiport match takes in one rule.
const MAX_MULTIPORT: usize = 15;

fn site_sets(cx: &Context<'_>, section: &Section, names: &mut SetNames) -> Vec<IpSet> {
    let mut elements: Vec<(IpAddr, String)> = Vec::new();
    let mut ports = BTreeSet::new();
    for rule in &section.rules {
        ports.extend(rule.ports(&cx.plan.default_ports));
        for (address, who) in rule.addresses() {
            elements.push((address, who.join(", ")));
        }
    }
    let mut sets = family_sets(names, &section.site, elements, &ports, true);
    for set in &mut sets {
        set.comment.clone_from(&section.site);
    }
    sets
}

fn family_sets(
    names: &mut SetNames,
    base: &str,
    elements: Vec<(IpAddr, String)>,
    ports: &BTreeSet<u16>,
    active: bool,
) -> Vec<IpSet> {
    let mut by_family: [BTreeMap<IpAddr, Vec<String>>; 2] = [BTreeMap::new(), BTreeMap::new()];
    for (address, who) in elements {
        let names = by_family[usize::from(address.is_ipv6())]
            .entry(address)
            .or_default();
        if !names.contains(&who) {
            names.push(who);
        }
    }
    by_family
        .into_iter()
        .enumerate()
        .filter(|(_, map)| !map.is_empty())
        .map(|(i, map)| {
            let ipv6 = i == 1;
            IpSet {
                name: names.take(base, if ipv6 { "v6" } else { "v4" }),
                ipv6,
                elements: map.into_iter().map(|(a, n)| (a, n.join(", "))).collect(),
                ports: ports.clone(),
                comment: base.to_owned(),
                active,
            }
        })
        .collect()
}

fn write_set(doc: &mut Doc, set: &IpSet) {
    let family = if set.ipv6 { "inet6" } else { "inet" };
    doc.maybe(
        set.active,
        "",
        format!(
            "ipset create -exist {} hash:ip family {family} comment",
            sh_quote(&set.name)
        ),
    );
    doc.maybe(
        set.active,
        "",
        format!("ipset flush {}", sh_quote(&set.name)),
    );
    for (address, who) in &set.elements {
        doc.maybe(
            set.active,
            "",
            format!(
                "ipset add {} {} comment {}",
                sh_quote(&set.name),
                sh_quote(&address.to_string()),
                sh_quote(&render::shorten(who, MAX_COMMENT))
            ),
        );
    }
}

fn shared_notes(doc: &mut Doc, set: &IpSet, active: &BTreeMap<IpAddr, String>) {
    for (address, who) in &set.elements {
        if let Some(other) = active.get(address) {
            doc.comment(format!(
                "Note: {address} ({who}) is in {other} too: that set already lets it through."
            ));
        }
    }
}

/// ipset names: `runner_` + the site with `_` for dots + `_v4`, shortened with a hash to fit
/// 31 characters, each once.
#[derive(Default)]
struct SetNames(BTreeSet<String>);

impl SetNames {
    fn take(&mut self, site: &str, family: &str) -> String {
        let cleaned: String = site
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let budget = MAX_SET_NAME - "runner_".len() - family.len() - 1;
        let mut stem = cleaned.clone();
        let mut n = 0u32;
        loop {
            if stem.len() > budget || n > 0 {
                let hash = crate::hash::fnv1a(format!("{site}#{n}").as_bytes());
                let keep = budget - 5;
                stem = format!(
                    "{}_{:04x}",
                    &cleaned[..cleaned.len().min(keep)],
                    hash & 0xffff
                );
            }
            let name = format!("runner_{stem}_{family}");
            if self.0.insert(name.clone()) {
                return name;
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_15_ports_take_several_multiport_rules() {
        let mut report: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/suggest-report.json"))
                .expect("fixture");
        let flows = report["flows"].as_array_mut().expect("flows");
        let first = flows[0].clone();
        for port in 1..=20 {
            let mut f = first.clone();
            f["flow_id"] = serde_json::json!(1000 + port);
            f["dst"] = serde_json::json!(format!("192.0.2.1:{port}"));
            flows.push(f);
        }
        let text = super::super::rules_of_report_text(
            "r.json",
            &report.to_string(),
            &crate::catalog::Catalog::builtin(),
            super::super::Format::Iptables,
            false,
            false,
        )
        .expect("rules");
        let rules: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("iptables -A") && l.contains("github_com"))
            .collect();
        assert!(rules.len() >= 2, "{text}");
        for rule in &rules {
            let ports = rule
                .split("--dports '")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .map_or(1, |p| p.split(',').count());
            assert!(ports <= MAX_MULTIPORT, "{rule}");
        }
        let all: usize = rules.iter().map(|r| r.matches(',').count() + 1).sum();
        assert!(all >= 21, "every port is allowed: {rules:#?}");
    }

    #[test]
    fn set_names_fit_ipset() {
        let mut names = SetNames::default();
        assert_eq!(names.take("github.com", "v4"), "runner_github_com_v4");
        let long = names.take("a-very-long-site-name.example.co.uk", "v6");
        assert!(long.len() <= MAX_SET_NAME, "{long}");
        assert!(long.starts_with("runner_a_very_long"), "{long}");
        let again = names.take("github.com", "v4");
        assert_ne!(again, "runner_github_com_v4");
        assert!(again.len() <= MAX_SET_NAME);
    }
}
