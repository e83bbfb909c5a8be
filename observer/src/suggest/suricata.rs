//! Suricata `pass tls` rules on the SNI, as stateful cloud firewalls take them (AWS Network
//! Firewall's Suricata-compatible rule groups in strict order, or a Suricata IPS): exact names
//! with `startswith; endswith`, subdomains with `endswith` on `.domain`, rotating names with a
//! `pcre` after a `content` prefilter.

use std::collections::BTreeSet;

use super::{
    plan::{Plan, Section},
    render::{self, Context, Doc, Entry, Syntax},
};

const SYNTAX: Syntax = Syntax {
    subdomains: true,
    rotating: true,
};

/// The first sid; local rules live in 1,000,000 to 1,999,999.
const FIRST_SID: u32 = 1_000_001;

struct Sids(u32);

impl Sids {
    fn next(&mut self) -> u32 {
        let sid = self.0;
        self.0 += 1;
        sid
    }
}

pub fn render(cx: &Context<'_>) -> String {
    let plan = cx.plan;
    let mut doc = Doc::new("# ");
    doc.comments(&render::header(cx));
    doc.comments(&[
        "Suricata rules that pass TLS by its SNI (AWS Network Firewall Suricata-compatible rule \
         groups,"
            .to_owned(),
        "strict order; or a Suricata IPS). The first rule lets TCP handshakes through so that \
         the SNI"
            .to_owned(),
        "can be seen; the policy's default drop of established traffic (or the drop rule at the \
         end)"
            .to_owned(),
        format!("blocks the rest. Rule ids (sid) start at {FIRST_SID}: change them if they clash."),
    ]);
    if let Some(hint) = render::cname_hint(plan) {
        doc.comment(hint);
    }
    let mut sids = Sids(FIRST_SID);
    let ports = render::all_ports(plan, plan.options.include_undeclared);
    doc.blank();
    doc.line(format!(
        "pass tcp $HOME_NET any -> $EXTERNAL_NET {} (msg:\"observer: TCP handshakes, so that the \
         SNI can be inspected\"; flow:not_established; sid:{}; rev:1;)",
        port_spec(&ports),
        sids.next()
    ));
    rules(&mut doc, plan, &plan.github, true, false, &mut sids);
    if !plan.cnames.is_empty() {
        doc.blank();
        doc.comment("== CNAME targets (--follow-cnames): they may change ==");
        rules(&mut doc, plan, &plan.cnames, true, false, &mut sids);
    }
    if !plan.undeclared.is_empty() {
        doc.blank();
        doc.comments(&render::undeclared_intro(plan));
        rules(
            &mut doc,
            plan,
            &plan.undeclared,
            plan.options.include_undeclared,
            true,
            &mut sids,
        );
    }
    let unresolved = render::unresolved_skipped(plan);
    if !unresolved.is_empty() {
        doc.blank();
        doc.comments(&unresolved);
    }
    doc.blank();
    doc.comment("Without a default drop for established traffic in the policy, uncomment:");
    doc.maybe(
        false,
        "",
        format!(
            "drop tls $HOME_NET any -> $EXTERNAL_NET any (msg:\"observer: TLS to a name not \
             allowed\"; flow:to_server,established; sid:{}; rev:1;)",
            sids.next()
        ),
    );
    doc.finish()
}

fn port_spec(ports: &BTreeSet<u16>) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    if list.len() == 1 {
        list[0].clone()
    } else {
        format!("[{}]", list.join(","))
    }
}

fn rules(
    doc: &mut Doc,
    plan: &Plan,
    sections: &[Section],
    active: bool,
    evidence: bool,
    sids: &mut Sids,
) {
    for section in sections {
        doc.blank();
        doc.comment(render::section_title(section));
        for rule in &section.rules {
            doc.comments(&render::notes(rule, evidence, &plan.default_ports));
            let ports = port_spec(&rule.ports(&plan.default_ports));
            for entry in render::entries(rule, SYNTAX) {
                let (label, matcher) = match entry {
                    Entry::Exact(name) => (
                        name.to_string(),
                        format!("tls.sni; content:\"{name}\"; nocase; startswith; endswith;"),
                    ),
                    Entry::Subdomains(domain) => (
                        format!("*.{domain}"),
                        format!("tls.sni; content:\".{domain}\"; nocase; endswith;"),
                    ),
                    Entry::Rotating(shape) => (
                        shape.glob(),
                        format!(
                            "tls.sni; content:\".{}\"; nocase; endswith; pcre:\"/{}/i\";",
                            shape.parent(),
                            shape.regex()
                        ),
                    ),
                };
                doc.maybe(
                    active,
                    "",
                    format!(
                        "pass tls $HOME_NET any -> $EXTERNAL_NET {ports} (msg:\"observer: \
                         {label}\"; {matcher} flow:to_server,established; sid:{}; rev:1;)",
                        sids.next()
                    ),
                );
            }
        }
    }
}
