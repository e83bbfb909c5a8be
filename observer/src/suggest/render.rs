//! What every format says the same way: the header, the evidence behind each rule, section
//! titles, and the entries a rule becomes in a syntax that can or cannot express wildcards and
//! rotating names.
//!
//! [`Doc`] writes every line through [`safe::one_line`] and every comment through
//! [`safe::one_line`]: whatever a renderer passes, no text adds a line.

use std::collections::BTreeSet;

use crate::report::Status;

use super::{
    domain::{self, Rotating},
    plan::{Basis, Plan, Rule, Section, Seen, Target, Unresolved},
    safe::{self, Name, WildDomain},
    Format,
};

/// What a renderer works from.
pub struct Context<'a> {
    pub plan: &'a Plan,
    pub format: Format,
    /// The input file's name, for the header.
    pub source: &'a str,
}

/// A text being written, with the comment marker of its syntax.
pub struct Doc {
    text: String,
    marker: &'static str,
}

impl Doc {
    pub fn new(marker: &'static str) -> Self {
        Self {
            text: String::new(),
            marker,
        }
    }

    /// A line as is, except that a line break in it cannot start another line
    /// ([`safe::one_line`]).
    pub fn line(&mut self, line: impl AsRef<str>) {
        self.text.push_str(safe::one_line(line.as_ref()).trim_end());
        self.text.push('\n');
    }

    /// A comment line, indented: nothing in `text` can end the comment
    /// ([`safe::one_line`]).
    pub fn comment_at(&mut self, indent: &str, text: impl AsRef<str>) {
        let text = safe::one_line(text.as_ref());
        if text.is_empty() {
            self.line(format!("{indent}{}", self.marker.trim_end()));
        } else {
            self.line(format!("{indent}{}{text}", self.marker));
        }
    }

    pub fn comment(&mut self, text: impl AsRef<str>) {
        self.comment_at("", text);
    }

    /// Several comment lines, indented.
    pub fn comments_at(&mut self, indent: &str, lines: &[String]) {
        for line in lines {
            self.comment_at(indent, line);
        }
    }

    pub fn comments(&mut self, lines: &[String]) {
        self.comments_at("", lines);
    }

    /// A line that is active, or written commented out (`#line`) when `active` is false.
    pub fn maybe(&mut self, active: bool, indent: &str, line: impl AsRef<str>) {
        if active {
            self.line(format!("{indent}{}", line.as_ref()));
        } else {
            self.line(format!(
                "{indent}{}{}",
                self.marker.trim_end(),
                line.as_ref()
            ));
        }
    }

    /// An empty line, unless the text starts or a block just opened or one is already there.
    pub fn blank(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with("\n\n") && !self.text.ends_with("{\n") {
            self.text.push('\n');
        }
    }

    pub fn finish(mut self) -> String {
        while self.text.ends_with("\n\n") {
            self.text.pop();
        }
        self.text
    }
}

/// The header: what this is, from what, how far to trust it, and what of the report was
/// skipped.
pub fn header(cx: &Context<'_>) -> Vec<String> {
    let plan = cx.plan;
    let c = &plan.capture;
    let mut lines = vec![format!(
        "Suggested by observer {} (observer suggest --format {}) from {}.",
        env!("CARGO_PKG_VERSION"),
        cx.format.name(),
        cx.source
    )];
    let window = match (&c.started_at, &c.ended_at) {
        (Some(start), Some(end)) => format!("{start} to {end} ({:.1} s)", c.duration_s),
        _ => "unknown window".to_owned(),
    };
    let generator = if c.generator.as_str().is_empty() {
        "an unknown observer".to_owned()
    } else {
        c.generator.to_string()
    };
    lines.push(format!(
        "Capture by {generator}: {window}, {}.",
        if c.complete { "complete" } else { "INCOMPLETE" }
    ));
    if !c.complete {
        let why = if c.incomplete_because.is_empty() {
            "the report does not say it is complete".to_owned()
        } else {
            c.incomplete_because.join(" ")
        };
        lines.push(format!(
            "WARNING: the capture is incomplete ({why}): the runner may need more than this."
        ));
    }
    lines.push(
        "Allows what the runner used in that window and nothing more; features it did not use \
         need more names (observer catalog)."
            .to_owned(),
    );
    if plan.unused_documented > 0 {
        lines.push(format!(
            "{} documented names were not used and are not allowed here.",
            plan.unused_documented
        ));
    }
    let blocked = blocked_names(plan);
    if !blocked.is_empty() {
        lines.push(format!(
            "Failed in the capture (blocked or degraded), the firewall must open: {}.",
            blocked.join(", ")
        ));
    }
    lines.extend(skipped(plan));
    lines
}

/// Names of the active GitHub rules that failed in the capture.
fn blocked_names(plan: &Plan) -> Vec<Name> {
    plan.github
        .iter()
        .flat_map(|s| &s.rules)
        .flat_map(|r| &r.seen)
        .filter(|s| s.blocked())
        .map(|s| s.name.clone())
        .collect()
}

/// A section's title.
pub fn section_title(section: &Section) -> String {
    if section.shared_suffix {
        format!(
            "== {} (a public suffix: each name under it is a site of its own) ==",
            section.site
        )
    } else {
        format!("== {} ==", section.site)
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// One observed name, briefly: `ok, 2 flows`, `BLOCKED (tcp_reset), 1 flow`.
pub fn brief(seen: &Seen) -> String {
    let mut text = String::from(seen.status.shouted());
    if !seen.reasons.is_empty() {
        text.push_str(&format!(" ({})", seen.reasons.join(", ")));
    }
    if seen.flows == 0 {
        text.push_str(if seen.resolved_only() {
            ": resolved, no connection seen"
        } else {
            ", no connection"
        });
    } else {
        text.push_str(&format!(", {}", plural(seen.flows, "flow")));
    }
    if !seen.via_proxies.is_empty() {
        text.push_str(&format!(" via proxy {}", join_addresses(&seen.via_proxies)));
    }
    match seen.status {
        Status::Blocked => text.push_str(": the firewall must open it"),
        Status::Degraded => text.push_str(": some attempts failed, check that all of it is open"),
        Status::Ok | Status::Unseen => {}
    }
    if seen.sinkholed {
        text.push_str(" (a DNS filter answered with its sinkhole: fix DNS, then suggest again)");
    } else if seen.addresses.is_empty() && seen.flows == 0 && seen.blocked() {
        text.push_str(" (no address known yet)");
    }
    text
}

/// Socket addresses, comma-separated.
pub fn join_addresses(list: &[std::net::SocketAddr]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One observed name with all its evidence, for names to review: processes, flows, bytes, first
/// seen, outcome.
pub fn evidence(seen: &Seen, ports: &BTreeSet<u16>) -> String {
    let mut parts = Vec::new();
    if seen.flows == 0 {
        parts.push("resolved, no connection seen".to_owned());
    } else {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let via = if seen.via_proxies.is_empty() {
            String::new()
        } else {
            format!(" via proxy {}", join_addresses(&seen.via_proxies))
        };
        parts.push(format!(
            "{} to port {}{via}",
            plural(seen.flows, "flow"),
            ports.join(",")
        ));
        parts.push(format!(
            "{} sent, {} received",
            crate::format::bytes(seen.bytes_sent),
            crate::format::bytes(seen.bytes_received)
        ));
    }
    if !seen.processes.is_empty() {
        parts.push(format!("by {}", seen.processes.join(" ")));
    }
    if let Some(first) = &seen.first_seen {
        parts.push(format!("first seen {first}"));
    }
    if seen.status != Status::Unseen || !seen.reasons.is_empty() {
        let mut status = seen.status.shouted().to_owned();
        if !seen.reasons.is_empty() {
            status.push_str(&format!(" ({})", seen.reasons.join(", ")));
        }
        parts.push(status);
    }
    if seen.cname_chain.len() > 1 {
        parts.push(format!("CNAME {}", seen.cname_chain[1..].join(" -> ")));
    }
    format!("{}: {}", seen.name, parts.join("; "))
}

/// Why a rule has its shape, in a line.
pub fn basis(rule: &Rule) -> String {
    let groups = if rule.groups.is_empty() {
        String::new()
    } else {
        format!(" [{}]", rule.groups.join(", "))
    };
    let target = rule.target.display();
    match &rule.basis {
        Basis::DocumentedName => format!("{target}: documented{groups}"),
        Basis::DocumentedWildcard => format!("{target}: documented wildcard{groups}"),
        Basis::ObservedName { note: Some(note) } => format!("{target}: seen{groups}; {note}"),
        Basis::ObservedName { note: None } => format!("{target}: seen{groups}"),
        Basis::Rotating { documented } => {
            let Target::Rotating(shape) = &rule.target else {
                return format!("{target}{groups}");
            };
            let mut text = format!("{target}: rotating names {}{groups}", shape.human());
            if let Some(pattern) = documented {
                text.push_str(&format!("; narrower than the documented {pattern}"));
            }
            if domain::is_public_suffix(shape.parent().as_str()) {
                text.push_str(&format!(
                    "; anyone can create names of this shape under {}, listing the names seen is tighter",
                    shape.parent()
                ));
            }
            text
        }
        Basis::CnameTarget { via } => format!(
            "{target}: CNAME target of {}; may change (only the documented names stay constant)",
            via.join(", ")
        ),
    }
}

/// The comment lines of a GitHub rule: its basis, then each name seen, briefly.
pub fn rule_notes(rule: &Rule) -> Vec<String> {
    let mut lines = vec![basis(rule)];
    let only_itself =
        rule.seen.len() == 1 && rule.target == Target::Exact(rule.seen[0].name.clone());
    for seen in &rule.seen {
        if only_itself {
            lines.push(format!("  {}", brief(seen)));
        } else {
            lines.push(format!("  {}: {}", seen.name, brief(seen)));
        }
    }
    lines
}

/// The comment lines of an undeclared rule: its basis, then the full evidence of each name.
pub fn undeclared_notes(rule: &Rule, fallback: &BTreeSet<u16>) -> Vec<String> {
    let mut lines = vec![basis(rule)];
    for seen in &rule.seen {
        let ports = if seen.ports.is_empty() {
            fallback.clone()
        } else {
            seen.ports.clone()
        };
        lines.push(format!("  {}", evidence(seen, &ports)));
    }
    lines
}

/// The comment lines of a rule: the full evidence of each name for an undeclared rule
/// (`evidence`), the brief notes of a GitHub rule otherwise.
pub fn notes(rule: &Rule, evidence: bool, fallback: &BTreeSet<u16>) -> Vec<String> {
    if evidence {
        undeclared_notes(rule, fallback)
    } else {
        rule_notes(rule)
    }
}

/// `text` cut to at most `max` bytes (at a character boundary, ending in `...`), for the
/// length limits of comments in rule files (nft, ipset).
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max - 3;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

/// The comment line of an unresolved address.
pub fn unresolved_note(u: &Unresolved, fallback: &BTreeSet<u16>) -> String {
    let ports = if u.seen.ports.is_empty() {
        fallback.clone()
    } else {
        u.seen.ports.clone()
    };
    evidence(&u.seen, &ports)
}

/// What a syntax can say.
#[derive(Clone, Copy, Debug)]
pub struct Syntax {
    /// `*.domain` (or the syntax's own way to say "the subdomains of").
    pub subdomains: bool,
    /// A rotating shape (a glob or a regular expression within one label).
    pub rotating: bool,
}

/// What a rule becomes in a syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    Exact(&'a Name),
    Subdomains(&'a WildDomain),
    Rotating(&'a Rotating),
}

/// The entries of a rule: a rotating shape the syntax cannot say becomes the names seen.
pub fn entries<'a>(rule: &'a Rule, syntax: Syntax) -> Vec<Entry<'a>> {
    match &rule.target {
        Target::Exact(name) => vec![Entry::Exact(name)],
        Target::Subdomains(domain) if syntax.subdomains => vec![Entry::Subdomains(domain)],
        Target::Rotating(shape) if syntax.rotating => vec![Entry::Rotating(shape)],
        Target::Subdomains(_) | Target::Rotating(_) => {
            rule.seen.iter().map(|s| Entry::Exact(&s.name)).collect()
        }
    }
}

/// The comment to add when a rule's shape could not be said and its names are listed instead.
pub fn expansion_note(rule: &Rule, syntax: Syntax) -> Option<String> {
    match &rule.target {
        Target::Rotating(shape) if !syntax.rotating => Some(format!(
            "this syntax has no pattern for {}: the names seen are listed; add new ones as they appear",
            shape.human()
        )),
        Target::Subdomains(domain) if !syntax.subdomains => Some(format!(
            "this syntax has no wildcard for *.{domain}: the names seen are listed"
        )),
        _ => None,
    }
}

/// The ports of the active and suggested rules of a plan, for syntaxes with one port list.
pub fn all_ports(plan: &Plan, include_suggestions: bool) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    let mut sections: Vec<&Section> = plan.github.iter().chain(&plan.cnames).collect();
    if include_suggestions {
        sections.extend(&plan.undeclared);
    }
    for rule in sections.iter().flat_map(|s| &s.rules) {
        ports.extend(rule.ports(&plan.default_ports));
    }
    if ports.is_empty() {
        ports.clone_from(&plan.default_ports);
    }
    ports
}

/// The standard text before the undeclared section.
pub fn undeclared_intro(plan: &Plan) -> Vec<String> {
    let mut lines = vec![
        "== Undeclared: destinations GitHub's documentation does not list ==".to_owned(),
        "The workflows' own registries, mirrors and telemetry: review each one before allowing it."
            .to_owned(),
    ];
    if plan.options.include_undeclared {
        lines.push("Active (--include-undeclared).".to_owned());
    } else {
        lines.push(
            "Commented out: uncomment what you accept, or run again with --include-undeclared."
                .to_owned(),
        );
    }
    lines
}

/// The text for unresolved addresses in a syntax that filters by name.
pub fn unresolved_skipped(plan: &Plan) -> Vec<String> {
    if plan.unresolved.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        "== Unresolved: addresses no DNS answer named ==".to_owned(),
        "Left out: this syntax filters by name, and these flows had none (hard-coded addresses, or \
         names resolved before the capture). Review them; an address rule (--format nftables or \
         iptables) can allow them."
            .to_owned(),
    ];
    for u in &plan.unresolved {
        lines.push(format!("  {}", unresolved_note(u, &plan.default_ports)));
    }
    lines
}

/// The skipped section: each value of the report left out, by field and why (the value itself
/// only on stderr: it was not fit for a rule file).
pub fn skipped(plan: &Plan) -> Vec<String> {
    if plan.skipped.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        "== Skipped: values of the report that are not what their field must be ==".to_owned(),
        "Left out of every rule (docs/rules.md, \"What is validated\"); stderr shows the values."
            .to_owned(),
    ];
    for s in &plan.skipped {
        lines.push(format!("  {}: {}", s.field, s.why));
    }
    lines
}

/// The text for CNAME targets when `--follow-cnames` was not given but chains were seen.
pub fn cname_hint(plan: &Plan) -> Option<String> {
    if plan.options.follow_cnames {
        return None;
    }
    let any = plan
        .github
        .iter()
        .flat_map(|s| &s.rules)
        .flat_map(|r| &r.seen)
        .any(|s| s.cname_chain.len() > 1);
    any.then(|| {
        "Some names are CNAMEs; a firewall that checks every name of a chain needs the targets too: \
         --follow-cnames adds them."
            .to_owned()
    })
}
