//! From host results to group statuses, a verdict and an exit code.

use serde::Serialize;

use super::{HostCheck, SCHEMA_VERSION};
use crate::{catalog::Catalog, exit, report::Status};

/// The `--json` document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    pub schema_version: u32,
    pub verdict: Verdict,
    pub hosts: Vec<HostCheck>,
    pub groups: Vec<GroupCheck>,
}

/// One catalog group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupCheck {
    pub id: String,
    pub title: String,
    pub required: bool,
    /// `blocked` when a checked host of the group is blocked, `degraded` when one is degraded,
    /// `ok` when all are ok, `unseen` when none of its names was checked.
    pub status: Status,
    /// The checked names of the group.
    pub hosts: Vec<String>,
    /// Blocked or degraded names, which explain the status.
    pub failing_hosts: Vec<String>,
}

/// Can the runner work, and what will fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub runner_can_work: bool,
    /// The process exit status (see [`exit_code`]).
    pub exit_code: u8,
    /// One line: `runner can work` or `runner CANNOT work: ...`.
    pub summary: String,
    /// Hosts of required groups that are blocked.
    pub blocked_essential: Vec<String>,
    /// Hosts of required groups reached only with certificates that do not verify.
    pub untrusted_essential: Vec<String>,
    /// Optional groups (summary groups aside) with a blocked or untrusted host: the features
    /// that will fail.
    pub failing_features: Vec<String>,
    /// Degraded hosts that still work: worth a look, not fatal.
    pub warnings: Vec<String>,
}

/// Groups and verdict of a check.
pub fn build_report(results: &[HostCheck], catalog: &Catalog) -> CheckReport {
    let groups = group_checks(results, catalog);
    CheckReport {
        schema_version: SCHEMA_VERSION,
        verdict: verdict(results, catalog),
        hosts: results.to_vec(),
        groups,
    }
}

/// The process exit status: 0 when every checked host of the required groups can be used
/// (degraded hosts included), 10 when one is blocked, 11 when none is blocked but one answers
/// only with certificates that do not verify.
pub fn exit_code(results: &[HostCheck], catalog: &Catalog) -> u8 {
    verdict(results, catalog).exit_code
}

pub(super) fn group_checks(results: &[HostCheck], catalog: &Catalog) -> Vec<GroupCheck> {
    catalog
        .groups()
        .iter()
        .map(|group| {
            let members: Vec<&HostCheck> = results
                .iter()
                .filter(|h| h.groups.contains(&group.id))
                .collect();
            let failing: Vec<String> = members
                .iter()
                .filter(|h| h.status != Status::Ok)
                .map(|h| h.name.clone())
                .collect();
            let status = if members.is_empty() {
                Status::Unseen
            } else if members.iter().any(|h| h.status == Status::Blocked) {
                Status::Blocked
            } else if !failing.is_empty() {
                Status::Degraded
            } else {
                Status::Ok
            };
            GroupCheck {
                id: group.id.clone(),
                title: group.title.clone(),
                required: group.required,
                status,
                hosts: members.iter().map(|h| h.name.clone()).collect(),
                failing_hosts: failing,
            }
        })
        .collect()
}

/// Whether a host belongs to a required group of the catalog.
fn essential(host: &HostCheck, catalog: &Catalog) -> bool {
    catalog
        .groups()
        .iter()
        .any(|g| g.required && host.groups.contains(&g.id))
}

pub(super) fn verdict(results: &[HostCheck], catalog: &Catalog) -> Verdict {
    let essential_hosts: Vec<&HostCheck> =
        results.iter().filter(|h| essential(h, catalog)).collect();
    let blocked_essential: Vec<String> = essential_hosts
        .iter()
        .filter(|h| h.status == Status::Blocked)
        .map(|h| h.name.clone())
        .collect();
    let untrusted_essential: Vec<String> = essential_hosts
        .iter()
        .filter(|h| h.status != Status::Blocked && h.untrusted())
        .map(|h| h.name.clone())
        .collect();
    let failing_features: Vec<String> = catalog
        .groups()
        .iter()
        .filter(|g| !g.required && !g.summary)
        .filter(|g| {
            results
                .iter()
                .any(|h| h.groups.contains(&g.id) && !h.usable())
        })
        .map(|g| g.id.clone())
        .collect();
    let warnings: Vec<String> = results
        .iter()
        .filter(|h| h.status == Status::Degraded && h.usable())
        .map(|h| h.name.clone())
        .collect();
    let (exit_code, summary) = if !blocked_essential.is_empty() {
        (
            exit::ESSENTIAL_BLOCKED,
            format!(
                "runner CANNOT work: essential hosts blocked: {}",
                blocked_essential.join(", ")
            ),
        )
    } else if !untrusted_essential.is_empty() {
        (
            exit::ESSENTIAL_UNTRUSTED,
            format!(
                "runner CANNOT work: essential hosts answer with certificates that do not verify \
                 (a TLS-intercepting proxy whose CA is not trusted?): {}",
                untrusted_essential.join(", ")
            ),
        )
    } else {
        (exit::OK, "runner can work".to_owned())
    };
    Verdict {
        runner_can_work: exit_code == exit::OK,
        exit_code,
        summary,
        blocked_essential,
        untrusted_essential,
        failing_features,
        warnings,
    }
}
