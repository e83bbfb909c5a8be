//! What to check: the catalog's exact names, and representative names for its wildcards.

use serde::Serialize;

use crate::catalog::Catalog;

/// Names that stand for a wildcard of the built-in catalog: ones the runner really uses.
/// `*.github.com` and `*.githubusercontent.com` (the wildcard summary) have none: the documented
/// names under them are checked already.
pub const REPRESENTATIVES: &[(&str, &[&str])] = &[
    (
        "*.actions.githubusercontent.com",
        &[
            "broker.actions.githubusercontent.com",
            "pipelines.actions.githubusercontent.com",
            "token.actions.githubusercontent.com",
        ],
    ),
    (
        "*.blob.core.windows.net",
        &["productionresultssa0.blob.core.windows.net"],
    ),
    ("*.pkg.github.com", &["npm.pkg.github.com"]),
];

/// One name to check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    pub name: String,
    /// Ids of the groups the name belongs to (every group with a pattern matching it), in
    /// catalog order.
    pub groups: Vec<String>,
    /// The wildcard this name stands for, when it is not a documented name itself.
    pub representative_of: Option<String>,
}

/// A target for `name`, with its groups from the catalog.
pub fn target(catalog: &Catalog, name: &str, representative_of: Option<&str>) -> Target {
    let mut groups: Vec<String> = Vec::new();
    for membership in catalog.matches(name) {
        if !groups.contains(&membership.group.id) {
            groups.push(membership.group.id.clone());
        }
    }
    Target {
        name: crate::pipeline::dns::normalize_name(name),
        groups,
        representative_of: representative_of.map(str::to_owned),
    }
}

/// Every exact name of the catalog once, and the [`REPRESENTATIVES`] of its wildcards, in
/// catalog order (a group's wildcard's representatives where the wildcard is listed).
pub fn default_targets(catalog: &Catalog) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for pattern in catalog.groups().iter().flat_map(|g| &g.hosts) {
        if pattern.is_wildcard() {
            let names = REPRESENTATIVES
                .iter()
                .filter(|(wildcard, _)| *wildcard == pattern.as_str())
                .flat_map(|(_, names)| names.iter());
            for name in names {
                if !targets.iter().any(|t| t.name == *name) {
                    targets.push(target(catalog, name, Some(pattern.as_str())));
                }
            }
        } else if let Some(known) = targets.iter_mut().find(|t| t.name == pattern.as_str()) {
            // A documented name is never "only a representative".
            known.representative_of = None;
        } else {
            targets.push(target(catalog, pattern.as_str(), None));
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_targets() {
        let catalog = Catalog::builtin();
        let targets = default_targets(&catalog);
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        // Every exact name once.
        for exact in catalog.exact_names() {
            assert_eq!(names.iter().filter(|n| **n == exact).count(), 1, "{exact}");
        }
        assert_eq!(
            names,
            [
                "github.com",
                "api.github.com",
                "broker.actions.githubusercontent.com",
                "pipelines.actions.githubusercontent.com",
                "token.actions.githubusercontent.com",
                "codeload.github.com",
                "pkg.actions.githubusercontent.com",
                "ghcr.io",
                "results-receiver.actions.githubusercontent.com",
                "productionresultssa0.blob.core.windows.net",
                "objects.githubusercontent.com",
                "objects-origin.githubusercontent.com",
                "github-releases.githubusercontent.com",
                "github-registry-files.githubusercontent.com",
                "npm.pkg.github.com",
                "pkg-containers.githubusercontent.com",
                "github-cloud.githubusercontent.com",
                "github-cloud.s3.amazonaws.com",
                "dependabot-actions.githubapp.com",
            ]
        );
        let get = |name: &str| {
            targets
                .iter()
                .find(|t| t.name == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!(get("github.com").groups, ["essential", "wildcard-summary"]);
        assert_eq!(get("github.com").representative_of, None);
        let broker = get("broker.actions.githubusercontent.com");
        assert_eq!(broker.groups, ["essential", "oidc", "wildcard-summary"]);
        assert_eq!(
            broker.representative_of.as_deref(),
            Some("*.actions.githubusercontent.com")
        );
        assert_eq!(
            get("results-receiver.actions.githubusercontent.com").groups,
            [
                "essential",
                "artifacts-caches-logs",
                "oidc",
                "wildcard-summary"
            ]
        );
        assert_eq!(
            get("results-receiver.actions.githubusercontent.com").representative_of,
            None
        );
        let blob = get("productionresultssa0.blob.core.windows.net");
        assert_eq!(blob.groups, ["artifacts-caches-logs"]);
        assert_eq!(
            blob.representative_of.as_deref(),
            Some("*.blob.core.windows.net")
        );
        let npm = get("npm.pkg.github.com");
        assert_eq!(npm.groups, ["packages", "wildcard-summary"]);
        assert_eq!(npm.representative_of.as_deref(), Some("*.pkg.github.com"));
        assert_eq!(
            get("ghcr.io").groups,
            ["immutable-actions", "packages", "wildcard-summary"]
        );
        // Every name is in at least one group, and every group has at least one name.
        assert!(targets.iter().all(|t| !t.groups.is_empty()));
        for group in catalog.groups() {
            assert!(
                targets.iter().any(|t| t.groups.contains(&group.id)),
                "{}",
                group.id
            );
        }
    }

    #[test]
    fn documented_names_are_not_representatives() {
        let mut catalog = Catalog::builtin();
        catalog
            .apply_toml(
                "t.toml",
                "[[group]]\nid = \"mine\"\ntitle = \"Mine\"\nhosts = [\"Broker.Actions.GitHubUserContent.com\", \"*.corp.example\"]\n",
            )
            .expect("valid");
        let targets = default_targets(&catalog);
        let broker: Vec<&Target> = targets
            .iter()
            .filter(|t| t.name == "broker.actions.githubusercontent.com")
            .collect();
        assert_eq!(broker.len(), 1);
        assert_eq!(broker[0].representative_of, None);
        assert_eq!(
            broker[0].groups,
            ["essential", "oidc", "wildcard-summary", "mine"]
        );
        // A wildcard without a representative adds nothing.
        assert!(!targets.iter().any(|t| t.name.ends_with("corp.example")));
    }

    #[test]
    fn targets_for_given_names() {
        let catalog = Catalog::builtin();
        let t = target(&catalog, "Codeload.GitHub.com.", None);
        assert_eq!(t.name, "codeload.github.com");
        assert_eq!(t.groups, ["actions-download", "wildcard-summary"]);
        assert!(target(&catalog, "example.org", None).groups.is_empty());
    }
}
