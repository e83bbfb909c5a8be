//! A CiliumNetworkPolicy for runner pods on Kubernetes: egress to the names (`toFQDNs`:
//! `matchName`, `matchPattern`) on the ports seen, and the DNS rule to kube-dns that `toFQDNs`
//! needs (Cilium learns the addresses of the names from the DNS answers its proxy sees).

use std::collections::BTreeSet;

use super::{
    plan::{Plan, Section},
    render::{self, Context, Doc, Entry, Syntax},
    safe::yaml_string,
};

/// `matchPattern` takes `*` within a label: `*.example.com`, `productionresultssa*.example.com`.
const SYNTAX: Syntax = Syntax {
    subdomains: true,
    rotating: true,
};

/// One `toFQDNs` selector line, with the comment lines before it.
struct Selector {
    notes: Vec<String>,
    line: String,
}

pub fn render(cx: &Context<'_>) -> String {
    let plan = cx.plan;
    let mut doc = Doc::new("# ");
    doc.comments(&render::header(cx));
    doc.comments(&[
        "A CiliumNetworkPolicy for the runner pods: set endpointSelector to their labels (runner \
         pods of"
            .to_owned(),
        "actions-runner-controller scale sets carry app.kubernetes.io/component: runner). \
         toFQDNs needs the"
            .to_owned(),
        "DNS rule: Cilium learns the names' addresses from the answers its DNS proxy sees. In \
         matchPattern,"
            .to_owned(),
        "\"*\" stands for characters within one label: \"*.example.com\" matches a.example.com, \
         not a.b.example.com."
            .to_owned(),
    ]);
    if let Some(hint) = render::cname_hint(plan) {
        doc.comment(hint);
    }
    let unresolved = render::unresolved_skipped(plan);
    if !unresolved.is_empty() {
        doc.comments(&unresolved);
    }
    doc.line("apiVersion: cilium.io/v2");
    doc.line("kind: CiliumNetworkPolicy");
    doc.line("metadata:");
    doc.line("  name: github-runner-egress");
    doc.line("spec:");
    doc.line("  endpointSelector:");
    doc.line("    matchLabels:");
    doc.line("      app.kubernetes.io/component: runner");
    doc.line("  egress:");
    doc.line("    # DNS to kube-dns, through Cilium's DNS proxy (needed by toFQDNs).");
    doc.line("    - toEndpoints:");
    doc.line("        - matchLabels:");
    doc.line("            k8s:io.kubernetes.pod.namespace: kube-system");
    doc.line("            k8s:k8s-app: kube-dns");
    doc.line("      toPorts:");
    doc.line("        - ports:");
    doc.line("            - port: \"53\"");
    doc.line("              protocol: ANY");
    doc.line("          rules:");
    doc.line("            dns:");
    doc.line("              - matchPattern: \"*\"");

    let mut github: Vec<&Section> = plan.github.iter().collect();
    github.extend(&plan.cnames);
    egress(&mut doc, plan, &github, true, false);
    if !plan.undeclared.is_empty() {
        doc.line("");
        for line in render::undeclared_intro(plan) {
            doc.line(format!("    # {line}"));
        }
        let undeclared: Vec<&Section> = plan.undeclared.iter().collect();
        egress(
            &mut doc,
            plan,
            &undeclared,
            plan.options.include_undeclared,
            true,
        );
    }
    doc.finish()
}

/// Egress rules for some sections: one per distinct port set.
fn egress(doc: &mut Doc, plan: &Plan, sections: &[&Section], active: bool, evidence: bool) {
    let mut by_ports: Vec<(BTreeSet<u16>, Vec<Selector>)> = Vec::new();
    for section in sections {
        let mut first = true;
        for rule in &section.rules {
            let ports = rule.ports(&plan.default_ports);
            let mut notes = Vec::new();
            if first {
                notes.push(render::section_title(section));
                first = false;
            }
            notes.extend(render::notes(rule, evidence, &plan.default_ports));
            let index = match by_ports.iter().position(|(p, _)| *p == ports) {
                Some(i) => i,
                None => {
                    by_ports.push((ports, Vec::new()));
                    by_ports.len() - 1
                }
            };
            for entry in render::entries(rule, SYNTAX) {
                let line = match entry {
                    Entry::Exact(name) => format!("- matchName: {}", yaml_string(name.as_str())),
                    Entry::Subdomains(domain) => {
                        format!("- matchPattern: {}", yaml_string(&format!("*.{domain}")))
                    }
                    Entry::Rotating(shape) => {
                        format!("- matchPattern: {}", yaml_string(&shape.glob()))
                    }
                };
                by_ports[index].1.push(Selector {
                    notes: std::mem::take(&mut notes),
                    line,
                });
            }
        }
    }
    for (ports, selectors) in by_ports {
        doc.maybe(active, "    ", "- toFQDNs:");
        for selector in selectors {
            doc.comments_at("        ", &selector.notes);
            doc.maybe(active, "        ", selector.line);
        }
        doc.maybe(active, "    ", "  toPorts:");
        doc.maybe(active, "    ", "    - ports:");
        for port in ports {
            doc.maybe(active, "    ", format!("        - port: \"{port}\""));
            doc.maybe(active, "    ", "          protocol: TCP");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{catalog::Catalog, suggest};

    /// The fixture report with undeclared names that YAML would read as other types unquoted.
    fn report_with_names(names: &[&str]) -> String {
        let text = include_str!("../../tests/fixtures/suggest-report.json");
        let mut report: serde_json::Value = serde_json::from_str(text).unwrap();
        let template = report["undeclared"][0].clone();
        let undeclared = report["undeclared"].as_array_mut().unwrap();
        for name in names {
            let mut u = template.clone();
            u["name"] = serde_json::Value::from(*name);
            undeclared.push(u);
        }
        report.to_string()
    }

    #[test]
    fn every_selector_parses_back_as_the_string_written() {
        let names = ["null", "true", "0x1f", "1e3", "yes.no"];
        let text = report_with_names(&names);
        let yaml = suggest::rules_of_report_text(
            "r.json",
            &text,
            &Catalog::builtin(),
            suggest::Format::Cilium,
            false,
            true,
        )
        .unwrap();
        let policy: serde_norway::Value = serde_norway::from_str(&yaml).expect("valid YAML");
        let mut match_names = Vec::new();
        for rule in policy["spec"]["egress"].as_sequence().unwrap() {
            for fqdn in rule["toFQDNs"].as_sequence().into_iter().flatten() {
                if let Some(name) = fqdn.get("matchName") {
                    match_names.push(name.as_str().expect("a string").to_owned());
                }
            }
        }
        for name in names {
            assert!(
                match_names.iter().any(|n| n == name),
                "{name} missing or not a string: {match_names:?}\n{yaml}"
            );
        }
    }
}
