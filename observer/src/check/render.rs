//! The text table of `observer check`: readable without colour, problems in capitals.

use std::fmt::Write as _;

use super::{
    summary::{group_checks, verdict},
    AddrCheck, HostCheck,
};
use crate::{catalog::Catalog, exit, report::Status};

/// The status as the table prints it: problems in capitals.
fn status_word(status: Status) -> &'static str {
    match status {
        // Nothing was checked: the check's own word for `unseen`.
        Status::Unseen => "unchecked",
        other => other.shouted(),
    }
}

/// An address as the table lists it: the address, with the failure code when it failed.
fn address_cell(address: &AddrCheck) -> String {
    let shown = if address.through_proxy {
        format!("via proxy {}", address.endpoint())
    } else {
        address.addr.to_string()
    };
    match address.failure() {
        Some(code) => format!("{shown} ({code})"),
        None => shown,
    }
}

/// Rows as aligned columns; the last column is not padded and no line ends with spaces.
fn columns(rows: &[Vec<String>]) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(items: &[String], separator: &str) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(separator)
    }
}

/// The table: one line per host, the details of failures, the wildcards and how they were
/// checked, one line per group, and the verdict.
pub fn render_table(results: &[HostCheck], catalog: &Catalog) -> String {
    let mut out = String::new();

    let mut rows = vec![vec![
        "STATUS".to_owned(),
        "HOST".to_owned(),
        "GROUPS".to_owned(),
        "REASONS".to_owned(),
        "ADDRESSES".to_owned(),
    ]];
    for host in results {
        let addresses: Vec<String> = host.addresses.iter().map(address_cell).collect();
        rows.push(vec![
            status_word(host.status).to_owned(),
            host.name.clone(),
            or_dash(&host.groups, ","),
            or_dash(&host.reasons, ","),
            or_dash(&addresses, ", "),
        ]);
    }
    out.push_str(&columns(&rows));

    let mut details: Vec<String> = Vec::new();
    for host in results {
        if let (Some(reason), Some(detail)) = (&host.dns.reason, &host.dns.detail) {
            details.push(format!("{} dns: {reason}: {detail}", host.name));
        }
        if let Some(proxy) = &host.proxy {
            if let Some(error) = &proxy.error {
                details.push(format!("{} proxy {}: {error}", host.name, proxy.url));
            }
        }
        for address in &host.addresses {
            if let (Some(code), Some(detail)) = (address.failure(), &address.detail) {
                details.push(format!(
                    "{} {}: {code}: {detail}",
                    host.name,
                    address.endpoint()
                ));
            }
        }
    }
    if !details.is_empty() {
        out.push_str("\nDETAILS\n");
        for line in details {
            out.push_str(&line);
            out.push('\n');
        }
    }

    let mut wildcards: Vec<&str> = Vec::new();
    for pattern in catalog.groups().iter().flat_map(|g| &g.hosts) {
        if pattern.is_wildcard() && !wildcards.contains(&pattern.as_str()) {
            wildcards.push(pattern.as_str());
        }
    }
    if !wildcards.is_empty() {
        let mut rows = vec![vec!["WILDCARD".to_owned(), "CHECKED AS".to_owned()]];
        for wildcard in wildcards {
            let names: Vec<String> = results
                .iter()
                .filter(|h| h.representative_of.as_deref() == Some(wildcard))
                .map(|h| h.name.clone())
                .collect();
            let checked = if names.is_empty() {
                "- (no representative name; only the documented names under it)".to_owned()
            } else {
                names.join(", ")
            };
            rows.push(vec![wildcard.to_owned(), checked]);
        }
        out.push('\n');
        out.push_str(&columns(&rows));
    }

    let mut rows = vec![vec![
        "GROUP".to_owned(),
        "REQUIRED".to_owned(),
        "STATUS".to_owned(),
        "FAILING HOSTS".to_owned(),
    ]];
    for group in group_checks(results, catalog) {
        rows.push(vec![
            group.id,
            if group.required { "yes" } else { "no" }.to_owned(),
            status_word(group.status).to_owned(),
            or_dash(&group.failing_hosts, ", "),
        ]);
    }
    out.push('\n');
    out.push_str(&columns(&rows));

    let verdict = verdict(results, catalog);
    out.push('\n');
    let _ = writeln!(out, "VERDICT: {}", verdict.summary);
    if verdict.exit_code == exit::ESSENTIAL_BLOCKED && !verdict.untrusted_essential.is_empty() {
        let _ = writeln!(
            out,
            "Essential hosts whose certificates do not verify: {}",
            verdict.untrusted_essential.join(", ")
        );
    }
    if !verdict.failing_features.is_empty() {
        let _ = writeln!(
            out,
            "Features that will fail: {}",
            verdict.failing_features.join(", ")
        );
    }
    if !verdict.warnings.is_empty() {
        let _ = writeln!(
            out,
            "Warnings (degraded, still usable): {}",
            verdict.warnings.join(", ")
        );
    }
    out
}
