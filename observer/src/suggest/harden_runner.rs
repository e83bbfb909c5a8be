//! The `allowed-endpoints` of step-security/harden-runner in block mode: `host:port`, one a
//! line, in a workflow step to paste as a job's first step.

use super::{
    plan::{Plan, Rule, Section},
    render::{self, Context, Doc, Entry, Syntax},
};

/// harden-runner takes `*.example.com:443` (v2.5 and later), no pattern within a label.
const SYNTAX: Syntax = Syntax {
    subdomains: true,
    rotating: false,
};

pub fn render(cx: &Context<'_>) -> String {
    let plan = cx.plan;
    let mut doc = Doc::new("# ");
    doc.comments(&render::header(cx));
    doc.comments(&[
        "A workflow step for step-security/harden-runner in block mode: make it the first step of \
         each job."
            .to_owned(),
        "allowed-endpoints is host:port; \"*.example.com:443\" (harden-runner v2.5 or later) \
         means the names under example.com."
            .to_owned(),
    ]);
    if let Some(hint) = render::cname_hint(plan) {
        doc.comment(hint);
    }
    let mut endpoints: Vec<String> = Vec::new();
    notes(&mut doc, plan, &plan.github, &mut endpoints, false);
    if !plan.cnames.is_empty() {
        doc.comment("");
        doc.comment("== CNAME targets (--follow-cnames): they may change ==");
        notes(&mut doc, plan, &plan.cnames, &mut endpoints, false);
    }
    let mut suggested: Vec<String> = Vec::new();
    if !plan.undeclared.is_empty() {
        doc.comment("");
        let mut intro = render::undeclared_intro(plan);
        if !plan.options.include_undeclared {
            intro.pop();
            intro.push(
                "Not in allowed-endpoints: add the ones you accept (listed last), or run again \
                 with --include-undeclared."
                    .to_owned(),
            );
        }
        doc.comments(&intro);
        let target = if plan.options.include_undeclared {
            &mut endpoints
        } else {
            &mut suggested
        };
        notes(&mut doc, plan, &plan.undeclared, target, true);
    }
    let unresolved = render::unresolved_skipped(plan);
    if !unresolved.is_empty() {
        doc.comment("");
        doc.comments(&unresolved);
    }
    doc.line("- name: Harden the runner");
    doc.line("  uses: step-security/harden-runner@v2");
    doc.line("  with:");
    doc.line("    egress-policy: block");
    if endpoints.is_empty() {
        doc.line("    allowed-endpoints: \"\"");
    } else {
        doc.line("    allowed-endpoints: >");
        for endpoint in &endpoints {
            doc.line(format!("      {endpoint}"));
        }
    }
    if !suggested.is_empty() {
        doc.comment("Undeclared, to review (add to allowed-endpoints what you accept):");
        for endpoint in &suggested {
            doc.comment(format!("      {endpoint}"));
        }
    }
    doc.finish()
}

fn notes(doc: &mut Doc, plan: &Plan, sections: &[Section], out: &mut Vec<String>, evidence: bool) {
    for section in sections {
        doc.comment("");
        doc.comment(render::section_title(section));
        for rule in &section.rules {
            doc.comments(&render::notes(rule, evidence, &plan.default_ports));
            if let Some(note) = render::expansion_note(rule, SYNTAX) {
                doc.comment(format!("  {note}"));
            }
            push_endpoints(plan, rule, out);
        }
    }
}

fn push_endpoints(plan: &Plan, rule: &Rule, out: &mut Vec<String>) {
    let ports = rule.ports(&plan.default_ports);
    for entry in render::entries(rule, SYNTAX) {
        let host = match entry {
            Entry::Exact(name) => name.to_string(),
            Entry::Subdomains(domain) => format!("*.{domain}"),
            Entry::Rotating(shape) => shape.glob(),
        };
        for port in &ports {
            let endpoint = format!("{host}:{port}");
            if !out.contains(&endpoint) {
                out.push(endpoint);
            }
        }
    }
}
