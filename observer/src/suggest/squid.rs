//! squid.conf lines: `dstdomain` ACLs (`.example.com` for the names under a domain),
//! `dstdom_regex` for rotating names, and the `http_access allow` lines that use them.

use std::collections::BTreeSet;

use super::{
    plan::{Plan, Section},
    render::{self, Context, Doc, Entry, Syntax},
};

const SYNTAX: Syntax = Syntax {
    subdomains: true,
    rotating: true,
};

/// ACL names.
const GITHUB: &str = "runner_github";
const GITHUB_ROTATING: &str = "runner_github_rotating";
const CNAMES: &str = "runner_github_cnames";
const UNDECLARED: &str = "runner_undeclared";
const UNDECLARED_ROTATING: &str = "runner_undeclared_rotating";
const PORTS: &str = "runner_ports";
const UNDECLARED_PORTS: &str = "runner_undeclared_ports";

pub fn render(cx: &Context<'_>) -> String {
    let plan = cx.plan;
    let mut doc = Doc::new("# ");
    doc.comments(&render::header(cx));
    doc.comments(&[
        "squid.conf lines: put them before your final \"http_access deny all\".".to_owned(),
        "dstdomain \".example.com\" matches example.com itself and every name under it; \
         dstdom_regex matches the whole name."
            .to_owned(),
    ]);
    if let Some(hint) = render::cname_hint(plan) {
        doc.comment(hint);
    }
    let mut allow: Vec<(bool, String)> = Vec::new();

    let ports = ports(plan, plan.github.iter().chain(&plan.cnames));
    let any_github = !plan.github.is_empty() || !plan.cnames.is_empty();
    if any_github {
        doc.blank();
        doc.line(format!("acl {PORTS} port {}", join(&ports)));
    }
    let (plain, rotating) = acls(
        &mut doc,
        &plan.github,
        GITHUB,
        GITHUB_ROTATING,
        true,
        false,
        plan,
    );
    for (used, name) in [(plain, GITHUB), (rotating, GITHUB_ROTATING)] {
        if used {
            allow.push((true, format!("http_access allow {name} {PORTS}")));
        }
    }
    if !plan.cnames.is_empty() {
        doc.blank();
        doc.comment("== CNAME targets (--follow-cnames): they may change ==");
        let (plain, _) = acls(&mut doc, &plan.cnames, CNAMES, CNAMES, true, false, plan);
        if plain {
            allow.push((true, format!("http_access allow {CNAMES} {PORTS}")));
        }
    }
    if !plan.undeclared.is_empty() {
        let active = plan.options.include_undeclared;
        doc.blank();
        doc.comments(&render::undeclared_intro(plan));
        let ports = ports_of(plan, &plan.undeclared);
        doc.maybe(
            active,
            "",
            format!("acl {UNDECLARED_PORTS} port {}", join(&ports)),
        );
        let (plain, rotating) = acls(
            &mut doc,
            &plan.undeclared,
            UNDECLARED,
            UNDECLARED_ROTATING,
            active,
            true,
            plan,
        );
        for (used, name) in [(plain, UNDECLARED), (rotating, UNDECLARED_ROTATING)] {
            if used {
                allow.push((
                    active,
                    format!("http_access allow {name} {UNDECLARED_PORTS}"),
                ));
            }
        }
    }
    let unresolved = render::unresolved_skipped(plan);
    if !unresolved.is_empty() {
        doc.blank();
        doc.comments(&unresolved);
    }
    doc.blank();
    if allow.is_empty() {
        doc.comment("Nothing to allow: the report shows no host the runner used.");
    } else {
        doc.comment("== Access ==");
        for (active, line) in allow {
            doc.maybe(active, "", line);
        }
    }
    doc.finish()
}

fn join(ports: &BTreeSet<u16>) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ports<'a>(plan: &Plan, sections: impl Iterator<Item = &'a Section>) -> BTreeSet<u16> {
    let mut out: BTreeSet<u16> = sections
        .flat_map(|s| &s.rules)
        .flat_map(|r| r.ports(&plan.default_ports))
        .collect();
    if out.is_empty() {
        out.clone_from(&plan.default_ports);
    }
    out
}

fn ports_of(plan: &Plan, sections: &[Section]) -> BTreeSet<u16> {
    ports(plan, sections.iter())
}

/// Writes the ACL lines of some sections; returns whether the plain and the regex ACL got
/// entries.
fn acls(
    doc: &mut Doc,
    sections: &[Section],
    plain: &str,
    regex: &str,
    active: bool,
    evidence: bool,
    plan: &Plan,
) -> (bool, bool) {
    let (mut any_plain, mut any_regex) = (false, false);
    for section in sections {
        doc.blank();
        doc.comment(render::section_title(section));
        for rule in &section.rules {
            doc.comments(&render::notes(rule, evidence, &plan.default_ports));
            for entry in render::entries(rule, SYNTAX) {
                let line = match entry {
                    Entry::Exact(name) => {
                        any_plain = true;
                        format!("acl {plain} dstdomain {name}")
                    }
                    Entry::Subdomains(domain) => {
                        any_plain = true;
                        format!("acl {plain} dstdomain .{domain}")
                    }
                    Entry::Rotating(shape) => {
                        any_regex = true;
                        format!("acl {regex} dstdom_regex -i {}", shape.regex())
                    }
                };
                doc.maybe(active, "", line);
            }
        }
    }
    (any_plain, any_regex)
}
