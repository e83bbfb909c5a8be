//! Plain lists, one entry a line, `#` comments: `domains`, `azure-firewall` (target FQDNs,
//! `*.example.com`) and `aws-network-firewall` (domain list, `.example.com`).

use super::{
    plan::Section,
    render::{self, Context, Doc, Entry, Syntax},
    Format,
};

const SYNTAX: Syntax = Syntax {
    subdomains: true,
    rotating: false,
};

pub fn render(cx: &Context<'_>) -> String {
    let plan = cx.plan;
    let mut doc = Doc::new("# ");
    doc.comments(&render::header(cx));
    doc.comments(&intro(cx));
    if let Some(hint) = render::cname_hint(plan) {
        doc.comment(hint);
    }
    sections(&mut doc, cx, &plan.github, true, false);
    if !plan.cnames.is_empty() {
        doc.blank();
        doc.comment("== CNAME targets (--follow-cnames): they may change ==");
        sections(&mut doc, cx, &plan.cnames, true, false);
    }
    if !plan.undeclared.is_empty() {
        doc.blank();
        doc.comments(&render::undeclared_intro(plan));
        sections(
            &mut doc,
            cx,
            &plan.undeclared,
            plan.options.include_undeclared,
            true,
        );
    }
    let unresolved = render::unresolved_skipped(plan);
    if !unresolved.is_empty() {
        doc.blank();
        doc.comments(&unresolved);
    }
    doc.finish()
}

/// How the list is read, per format.
fn intro(cx: &Context<'_>) -> Vec<String> {
    let ports: Vec<String> = render::all_ports(cx.plan, cx.plan.options.include_undeclared)
        .iter()
        .map(u16::to_string)
        .collect();
    let ports = ports.join(",");
    match cx.format {
        Format::AzureFirewall => vec![
            format!(
                "Target FQDNs for an Azure Firewall application rule, protocol Https:{ports} \
                 (Standard or Premium SKU)."
            ),
            "\"*.example.com\" matches every name under example.com (at any depth), not \
             example.com itself."
                .to_owned(),
            "Paste the lines that do not start with # (grep -v '^#' FILE), e.g. as \
             az network firewall policy rule-collection-group collection rule add --target-fqdns."
                .to_owned(),
        ],
        Format::AwsNetworkFirewall => vec![
            format!(
                "Domain list for an AWS Network Firewall stateful domain list rule group \
                 (action Allow, TLS_SNI and HTTP_HOST), for traffic to port {ports}."
            ),
            "\".example.com\" matches example.com itself and every name under it.".to_owned(),
            "Paste the lines that do not start with # (grep -v '^#' FILE) as the rule group's \
             Targets."
                .to_owned(),
        ],
        _ => vec![format!(
            "One name a line, for TCP port {ports}; \"*.example.com\" means the names under \
             example.com, not example.com itself."
        )],
    }
}

fn entry_text(format: Format, entry: &Entry<'_>) -> String {
    match entry {
        Entry::Exact(name) => name.to_string(),
        Entry::Subdomains(domain) if format == Format::AwsNetworkFirewall => format!(".{domain}"),
        Entry::Subdomains(domain) => format!("*.{domain}"),
        Entry::Rotating(shape) => shape.glob(),
    }
}

fn sections(doc: &mut Doc, cx: &Context<'_>, sections: &[Section], active: bool, evidence: bool) {
    for section in sections {
        doc.blank();
        doc.comment(render::section_title(section));
        for rule in &section.rules {
            doc.comments(&render::notes(rule, evidence, &cx.plan.default_ports));
            if let Some(note) = render::expansion_note(rule, SYNTAX) {
                doc.comment(format!("  {note}"));
            }
            if cx.format == Format::AwsNetworkFirewall {
                if let super::plan::Target::Subdomains(domain) = &rule.target {
                    doc.comment(format!("  .{domain} also matches {domain} itself"));
                }
            }
            for entry in render::entries(rule, SYNTAX) {
                doc.maybe(active, "", entry_text(cx.format, &entry));
            }
        }
    }
}
