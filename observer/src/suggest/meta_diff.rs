//! `--diff-meta FILE`: the names the runner used against the `domains.actions_inbound` section
//! of a saved `GET /meta` response: used but not listed there, listed but never used, and used
//! and listed (with the entry that lists each).

use crate::{
    catalog::{Catalog, HostPattern},
    report::{vocab::Reason, Reason as ReasonCount, Report, Status},
};

use super::{
    render::Doc,
    safe::{GroupId, Name},
};

/// The full domains and wildcards of a `/meta` response, in its order. Errors name the file and
/// what is missing, as `--meta` does.
pub fn parse_meta(source: &str, text: &str) -> anyhow::Result<Vec<HostPattern>> {
    let mut catalog = Catalog::default();
    catalog.import_meta_json(source, text)?;
    Ok(catalog
        .groups()
        .iter()
        .flat_map(|g| g.hosts.clone())
        .collect())
}

/// A name used in the capture.
struct Used {
    name: String,
    /// `undeclared`, or the catalog groups.
    kind: String,
    brief: String,
}

pub fn render(report: &Report, meta: &[HostPattern], source: &str, meta_name: &str) -> String {
    let mut used: Vec<Used> = Vec::new();
    for h in &report.hosts {
        if h.flows == 0 && h.first_seen.is_none() {
            continue;
        }
        let Ok(name) = Name::parse(&h.name) else {
            continue;
        };
        // Group ids of the fixed alphabet only (see super::safe): a report's text is no column.
        let groups: Vec<GroupId> = h
            .groups
            .iter()
            .filter_map(|g| GroupId::parse(g).ok())
            .collect();
        used.push(Used {
            name: name.as_str().to_owned(),
            kind: if groups.is_empty() {
                "documented".to_owned()
            } else {
                groups.join(",")
            },
            brief: brief(h.status, h.flows, &h.reasons),
        });
    }
    let mut unresolved = 0;
    for u in &report.undeclared {
        let Some(text) = &u.name else {
            unresolved += 1;
            continue;
        };
        let Ok(name) = Name::parse(text) else {
            continue;
        };
        used.push(Used {
            name: name.as_str().to_owned(),
            kind: "undeclared".to_owned(),
            brief: brief(u.status, u.flows, &u.reasons),
        });
    }

    let listing = |name: &str| {
        meta.iter()
            .filter(|p| p.matches(name))
            .max_by_key(|p| (!p.is_wildcard(), p.as_str().len()))
    };
    let missing: Vec<&Used> = used.iter().filter(|u| listing(&u.name).is_none()).collect();
    let listed: Vec<(&Used, &HostPattern)> = used
        .iter()
        .filter_map(|u| listing(&u.name).map(|p| (u, p)))
        .collect();
    let unused: Vec<&HostPattern> = meta
        .iter()
        .filter(|p| !used.iter().any(|u| p.matches(&u.name)))
        .collect();

    let mut doc = Doc::new("# ");
    doc.comment(format!(
        "observer suggest --diff-meta: the names used in {source} against domains.actions_inbound \
         of {meta_name} ({} entries).",
        meta.len()
    ));
    doc.comment(format!(
        "Used but not in /meta: {}; in /meta but never used: {}; used and in /meta: {}.",
        missing.len(),
        unused.len(),
        listed.len()
    ));
    doc.blank();
    doc.comment(format!("== Used, but not in /meta ({}) ==", missing.len()));
    doc.comment(
        "GitHub does not list them for Actions: the workflows' own destinations, or names only \
         the catalog lists.",
    );
    table(
        &mut doc,
        missing
            .iter()
            .map(|u| [u.name.clone(), u.kind.clone(), u.brief.clone()])
            .collect(),
    );
    doc.blank();
    doc.comment(format!("== In /meta, never used ({}) ==", unused.len()));
    doc.comment("Features the runner did not use in the capture, or names no longer needed.");
    for p in &unused {
        doc.line(p.as_str());
    }
    doc.blank();
    doc.comment(format!("== Used, and in /meta ({}) ==", listed.len()));
    table(
        &mut doc,
        listed
            .iter()
            .map(|(u, p)| [u.name.clone(), p.as_str().to_owned(), u.brief.clone()])
            .collect(),
    );
    if unresolved > 0 {
        doc.blank();
        doc.comment(format!(
            "Not compared: {unresolved} destinations had no name (addresses no DNS answer named)."
        ));
    }
    doc.finish()
}

/// `ok, 2 flows`, `blocked (dns_nxdomain), no flow`.
fn brief(status: Status, flows: u64, reasons: &[ReasonCount]) -> String {
    let word = match status {
        // Resolved, never connected to: more telling here than `unseen`.
        Status::Unseen => "resolved only",
        other => other.word(),
    };
    let codes: Vec<String> = crate::report::reason_labels(reasons)
        .iter()
        .map(|c| super::safe::clean(c))
        .filter(|c| !Reason::is_warning_code(c))
        .collect();
    let mut text = word.to_owned();
    if !codes.is_empty() {
        text.push_str(&format!(" ({})", codes.join(", ")));
    }
    match flows {
        0 => text.push_str(", no flow"),
        1 => text.push_str(", 1 flow"),
        n => text.push_str(&format!(", {n} flows")),
    }
    text
}

/// Rows with their columns aligned.
fn table(doc: &mut Doc, rows: Vec<[String; 3]>) {
    if rows.is_empty() {
        doc.comment("(none)");
        return;
    }
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    for [a, b, c] in rows {
        doc.line(format!("{a:w0$}  {b:w1$}  {c}"));
    }
}
