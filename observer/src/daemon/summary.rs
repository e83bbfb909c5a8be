//! A job's report as the few Markdown lines a job summary (`$GITHUB_STEP_SUMMARY`) has room for:
//! the groups the job used, blocked and degraded hosts with their reasons, undeclared
//! destinations, slow transfers; one line when all is well. Names come from the wire and from
//! the job's processes: everything is escaped for Markdown, and nothing is put in code spans
//! (where escapes would show and a backtick would end the span).

use crate::{
    export::escape_markdown as esc,
    report::{vocab::Reason, Report, Status},
};

use super::protocol::JobIdentity;

/// The most lines listed per section (the rest is counted).
const MAX_LINES: usize = 20;

pub fn markdown(report: &Report, id: &JobIdentity) -> String {
    let mut out = format!("### Network: {}\n\n", esc(&id.describe()));
    if !report.capture.complete {
        out.push_str(&format!(
            "⚠ The capture was incomplete: {}\n\n",
            esc(&report.capture.incomplete_because.join("; "))
        ));
    }
    let used: Vec<String> = report
        .groups
        .iter()
        .filter(|g| g.status != Status::Unseen)
        .map(|g| format!("{} ({})", esc(&g.id), g.status.word()))
        .collect();
    let problems: Vec<_> = report
        .hosts
        .iter()
        .filter(|h| matches!(h.status, Status::Blocked | Status::Degraded))
        .collect();
    let slow: Vec<String> = report
        .hosts
        .iter()
        .flat_map(|h| h.reasons.iter().map(move |r| (h.name.as_str(), r)))
        .chain(report.undeclared.iter().flat_map(|u| {
            u.reasons
                .iter()
                .map(move |r| (u.name.as_deref().unwrap_or("(unresolved)"), r))
        }))
        .filter(|(_, r)| r.code == Reason::SlowThroughput.as_str())
        .map(|(name, r)| {
            format!(
                "- {}: {}",
                esc(name),
                esc(r.detail.as_deref().unwrap_or("slow"))
            )
        })
        .collect();
    if problems.is_empty() && report.undeclared.is_empty() && slow.is_empty() {
        if used.is_empty() {
            out.push_str("No connection to a documented GitHub host was seen in this job.\n");
        } else {
            out.push_str(&format!(
                "✅ Every documented host the job used was reachable: {}.\n",
                used.join(", ")
            ));
        }
        return out;
    }
    if !used.is_empty() {
        out.push_str(&format!("Groups used: {}.\n\n", used.join(", ")));
    }
    if !problems.is_empty() {
        out.push_str("**Blocked or degraded hosts**\n\n");
        for h in problems.iter().take(MAX_LINES) {
            let reasons: Vec<String> = h
                .reasons
                .iter()
                .map(|r| match &r.detail {
                    Some(d) => format!("{} ({})", esc(&r.code), esc(d)),
                    None => esc(&r.code),
                })
                .collect();
            out.push_str(&format!(
                "- {} {}: {}\n",
                esc(&h.name),
                h.status.shouted(),
                reasons.join(", ")
            ));
        }
        more(&mut out, problems.len());
        out.push('\n');
    }
    if !report.undeclared.is_empty() {
        out.push_str("**Undeclared destinations** (not in GitHub's list for runners)\n\n");
        for u in report.undeclared.iter().take(MAX_LINES) {
            let name = match &u.name {
                Some(n) => esc(n),
                None => u
                    .addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            out.push_str(&format!("- {name}: {} flows\n", u.flows));
        }
        more(&mut out, report.undeclared.len());
        out.push('\n');
    }
    if !slow.is_empty() {
        out.push_str("**Slow transfers**\n\n");
        for line in slow.iter().take(MAX_LINES) {
            out.push_str(line);
            out.push('\n');
        }
        more(&mut out, slow.len());
    }
    out
}

fn more(out: &mut String, total: usize) {
    if total > MAX_LINES {
        out.push_str(&format!("- … and {} more\n", total - MAX_LINES));
    }
}
