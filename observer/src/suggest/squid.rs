//! squid.conf lines: `dstdomain` ACLs (`.example.com` for the names under a domain),
//! `dstdom_regex` for rotating names, and the `http_access allow` lines that use them.
//!
//! When the runner went through an HTTP proxy, the header says which one the lines are for, and
//! which hosts it refused in the capture (`proxy_refused`, `proxy_auth_required`): they are in
//! the allow-list like every other blocked host the runner used, since the runner needs them;
//! the lines are what its access rules lack.

use std::collections::BTreeSet;

use crate::report::vocab::Reason;

use super::{
    plan::{Plan, Proxy, Section},
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
    doc.comments(&proxy_notes(plan));
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

/// What the capture says of its proxies: which the lines are for, and what the proxy refused,
/// wanted credentials for or could not reach.
fn proxy_notes(plan: &Plan) -> Vec<String> {
    let described = |p: &Proxy| match &p.source {
        Some(source) => format!("{} (from {source})", p.address),
        None => format!("{} (not watched: named by the report's flows)", p.address),
    };
    let (used, unused): (Vec<&Proxy>, Vec<&Proxy>) = plan.proxies.iter().partition(|p| p.used);
    let mut lines = Vec::new();
    if !used.is_empty() {
        let word = if used.len() == 1 { "proxy" } else { "proxies" };
        let list: Vec<String> = used.iter().map(|p| described(p)).collect();
        lines.push(format!(
            "For the HTTP {word} the runner went through: {}.",
            list.join(", ")
        ));
    }
    if !unused.is_empty() {
        let list: Vec<String> = unused.iter().map(|p| described(p)).collect();
        lines.push(format!(
            "Watched, but no flow went through: {}.",
            list.join(", ")
        ));
    }
    let failed = |code: Reason| -> Vec<String> {
        plan.github
            .iter()
            .flat_map(|s| &s.rules)
            .flat_map(|r| &r.seen)
            .filter(|s| s.reasons.iter().any(|r| r == code.as_str()))
            .map(|s| s.name.to_string())
            .collect()
    };
    let refused = failed(Reason::ProxyRefused);
    if !refused.is_empty() {
        lines.push(format!(
            "The proxy refused (proxy_refused) what the runner needs; allowed below: {}.",
            refused.join(", ")
        ));
    }
    let credentials = failed(Reason::ProxyAuthRequired);
    if !credentials.is_empty() {
        lines.push(format!(
            "The proxy wanted credentials (proxy_auth_required) for: {}. Allowed below: put \
             these lines before your proxy_auth rules to let the runner through without \
             credentials, or give the runner the proxy's credentials.",
            credentials.join(", ")
        ));
    }
    let upstream = failed(Reason::ProxyUpstreamFailed);
    if !upstream.is_empty() {
        lines.push(format!(
            "The proxy could not reach (proxy_upstream_failed): {}. Allowed below, but the \
             proxy's own DNS or route must be fixed too.",
            upstream.join(", ")
        ));
    }
    lines
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

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;

    fn squid(report: &str) -> String {
        super::super::rules_of_report_text(
            "r.json",
            report,
            &Catalog::builtin(),
            super::super::Format::Squid,
            false,
            false,
        )
        .expect("a report")
    }

    #[test]
    fn a_proxy_watched_but_not_used_is_said_and_its_source_stays_a_comment() {
        let text = r#"{"schema_version": 1,
            "capture": {"proxies": [{"addr": "198.18.1.6:8080", "url": "http://198.18.1.6:8080",
                "source": "evil\nhttp_access allow all"}]},
            "hosts": [{"name": "api.github.com", "pattern": "api.github.com",
                "groups": ["essential"], "status": "ok", "flows": 1}]}"#;
        let rules = squid(text);
        assert!(
            rules.contains(
                "# Watched, but no flow went through: 198.18.1.6:8080 (from evil?http_access allow all)."
            ),
            "{rules}"
        );
        assert!(!rules.contains("For the HTTP proxy"), "{rules}");
        assert!(
            !rules
                .lines()
                .any(|l| l.starts_with("http_access allow all")),
            "{rules}"
        );
    }

    #[test]
    fn a_proxy_only_the_flows_name_is_said_as_such() {
        let text = r#"{"schema_version": 1,
            "hosts": [{"name": "api.github.com", "pattern": "api.github.com",
                "groups": ["essential"], "status": "ok", "flows": 1,
                "via_proxies": ["[fd00::5]:3128"]}]}"#;
        let rules = squid(text);
        assert!(
            rules.contains(
                "# For the HTTP proxy the runner went through: [fd00::5]:3128 (not watched: named \
                 by the report's flows)."
            ),
            "{rules}"
        );
    }
}
