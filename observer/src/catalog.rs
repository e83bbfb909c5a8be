//! The host-group catalog: which host names a self-hosted GitHub Actions runner reaches, grouped
//! by what they are for.
//!
//! The built-in catalog is the data file `observer/data/catalog.toml`, taken from GitHub's
//! "Communicating with self-hosted runners" page. Its group ids are stable: `essential` (the only
//! group the runner cannot work without), `actions-download`, `immutable-actions`,
//! `artifacts-caches-logs`, `runner-updates`, `oidc`, `packages`, `lfs`, `dependabot` and
//! `wildcard-summary` (the page's wildcard allow list).
//!
//! # Patterns
//!
//! Patterns are applied as firewalls apply them: `*.example.com` matches any name with one or
//! more labels before `example.com` (`a.example.com`, `a.b.example.com`), never `example.com`
//! itself; any other pattern matches exactly one name. Names compare case-insensitively and a
//! trailing dot is ignored. A name may belong to several groups: [`Catalog::matches`] returns
//! every (group, pattern) pair, in catalog order.
//!
//! # The `--catalog FILE` format
//!
//! ```toml
//! # Optional, "extend" by default: add to the catalog in effect.
//! # "replace" drops the catalog in effect (the built-in one) and uses this file's groups only.
//! mode = "extend"
//!
//! # A new group: id, title and hosts are needed; required (false) and ports ([443]) may be left out.
//! [[group]]
//! id = "registries"
//! title = "The workflow's own registries"
//! required = true          # optional: the runner cannot work without it (default false)
//! summary = false           # optional: the group only summarises others (default false)
//! description = "Base images and crates the build pulls"   # optional
//! ports = [443, 5000]
//! hosts = ["registry.example.com", "*.cdn.example.com"]
//!
//! # An id already in the catalog extends that group: its hosts and ports are added; a title,
//! # description or required given here replaces the one in effect.
//! [[group]]
//! id = "essential"
//! hosts = ["ghes.example.com", "*.ghes.example.com"]
//! ports = [8443]
//! ```
//!
//! Uses: a workflow's own registries, the host names of a GitHub Enterprise Server, ports other
//! than 443. Several files apply in order. A file is checked whole before it changes anything,
//! and every problem is reported with the file and line: a host that is not a host name pattern
//! (empty label, space, `*` anywhere but as the whole first label, a bare `*`, a port, a URL),
//! an id used twice in one file, an unknown key, a value of the wrong type, an unknown mode.
//!
//! `--meta FILE` imports the `domains.actions_inbound` section of a saved `GET /meta` response
//! (`full_domains` and `wildcard_domains`) as the group `meta-actions-inbound`.
//!
//! docs/catalog.md is the reference for users, with every error message.

use std::{
    fmt::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

/// The built-in catalog, in the `--catalog` format.
pub const BUILTIN_TOML: &str = include_str!("../data/catalog.toml");
/// How the built-in catalog is named in messages.
pub const BUILTIN_SOURCE: &str = "built-in catalog";
/// The port of a group that lists none: the runner talks to GitHub over HTTPS.
pub const DEFAULT_PORT: u16 = 443;
/// Id of the group imported from a `GET /meta` response.
pub const META_GROUP_ID: &str = "meta-actions-inbound";

/// The longest host name DNS carries, in characters (without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// The longest label DNS carries.
const MAX_LABEL_LEN: usize = 63;

/// A host pattern: an exact name (`api.github.com`) or a wildcard (`*.actions.githubusercontent.com`).
///
/// Always valid and normalized (lower case, no trailing dot): build one with [`HostPattern::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPattern(String);

/// Why a text is not a host pattern.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("the host name is empty")]
    Empty,
    #[error(
        "a bare \"*\" would match every name: write a domain after it, as in \"*.example.com\""
    )]
    BareWildcard,
    #[error("a wildcard needs a domain after \"*.\"")]
    WildcardWithoutDomain,
    #[error("\"*\" may only be the whole first label, as in \"*.example.com\"")]
    MisplacedWildcard,
    #[error("empty label (a leading dot, or two dots in a row)")]
    EmptyLabel,
    #[error("a host name has no spaces")]
    Whitespace,
    #[error("a host name carries no port: list {port} in the group's `ports` instead")]
    Port { port: String },
    #[error("give the host name only, not a URL")]
    Url,
    #[error("character {0:?} is not allowed in a host name (write international names in their xn-- form)")]
    InvalidChar(char),
    #[error("label {0:?} is longer than 63 characters")]
    LabelTooLong(String),
    #[error("the name is longer than 253 characters")]
    TooLong,
    #[error("label {0:?} starts or ends with a hyphen")]
    HyphenAtEdge(String),
}

impl HostPattern {
    /// Checks and normalizes a pattern: lower case, without its trailing dot.
    pub fn parse(text: &str) -> Result<Self, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if text.contains('/') {
            return Err(HostError::Url);
        }
        if text.chars().any(char::is_whitespace) {
            return Err(HostError::Whitespace);
        }
        if let Some((host, port)) = text.rsplit_once(':') {
            if !host.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HostError::Port {
                    port: port.to_owned(),
                });
            }
            return Err(HostError::InvalidChar(':'));
        }
        let without_dot = text.strip_suffix('.');
        let text = without_dot.unwrap_or(text).to_ascii_lowercase();
        if text.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if text == "*" {
            // `*.` is a wildcard without its domain; `*` alone is a bare wildcard.
            return Err(if without_dot.is_some() {
                HostError::WildcardWithoutDomain
            } else {
                HostError::BareWildcard
            });
        }
        let domain = match text.strip_prefix("*.") {
            Some("") => return Err(HostError::WildcardWithoutDomain),
            Some(domain) => domain,
            None => &text,
        };
        if domain.contains('*') {
            return Err(HostError::MisplacedWildcard);
        }
        if domain.len() > MAX_NAME_LEN {
            return Err(HostError::TooLong);
        }
        for label in domain.split('.') {
            if label.is_empty() {
                return Err(HostError::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(HostError::LabelTooLong(label.to_owned()));
            }
            if let Some(c) = label
                .chars()
                .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            {
                return Err(HostError::InvalidChar(c));
            }
            // A host name's label neither starts nor ends with a hyphen (RFC 1123); a name
            // such as `-i` would read as an option in a rule file (squid's `dstdomain -i`).
            if label.starts_with('-') || label.ends_with('-') {
                return Err(HostError::HyphenAtEdge(label.to_owned()));
            }
        }
        Ok(Self(text))
    }

    /// The pattern as written in catalogs: lower case, no trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*.example.com` rather than an exact name.
    pub fn is_wildcard(&self) -> bool {
        is_wildcard(&self.0)
    }

    /// Whether `name` matches, as a firewall would decide: case-insensitive, trailing dot ignored,
    /// `*.d` matching one or more labels before `d` but not `d` itself.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let Some(domain) = self.0.strip_prefix("*.") else {
            return name.eq_ignore_ascii_case(self.0.as_bytes());
        };
        let domain = domain.as_bytes();
        // At least one character and a dot before the domain.
        let Some(split) = name.len().checked_sub(domain.len()) else {
            return false;
        };
        let (head, tail) = name.split_at(split);
        let Some((&b'.', labels)) = head.split_last() else {
            return false;
        };
        tail.eq_ignore_ascii_case(domain)
            && !labels.is_empty()
            && labels.split(|&b| b == b'.').all(|label| !label.is_empty())
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a pattern is a wildcard (`*.example.com`) rather than an exact name.
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.starts_with("*.")
}

/// A group of hosts needed for one purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Stable id (`essential`, `packages`, ...).
    pub id: String,
    /// Short title (`Essential operations`).
    pub title: String,
    /// The runner does not work without this group (only `essential` in the built-in catalog).
    pub required: bool,
    /// The group summarises others (the document's wildcard list, a `/meta` import) rather
    /// than serving a feature of its own; verdicts do not list it as a failing feature.
    pub summary: bool,
    /// What the group is for, from GitHub's documentation; may be empty.
    pub description: String,
    /// TCP ports the hosts are reached on; `[443]` unless the catalog says otherwise.
    pub ports: Vec<u16>,
    /// The patterns, in catalog order, without duplicates.
    pub hosts: Vec<HostPattern>,
}

impl Group {
    #[cfg(test)]
    /// Every pattern of this group that `name` matches.
    pub fn patterns_matching<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a HostPattern> + 'a {
        self.hosts.iter().filter(move |p| p.matches(name))
    }
}

/// A name's membership of a group: the group and the pattern that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership<'a> {
    pub group: &'a Group,
    pub pattern: &'a HostPattern,
}

/// Why a catalog file or meta file was not used. Messages name the file, and the line when known.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}{}: {problem}", line_suffix(.line))]
    Invalid {
        file: String,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        problem: Problem,
    },
}

fn line_suffix(line: &Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

impl CatalogError {
    #[cfg(test)]
    /// The problem, for an invalid file.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid { problem, .. } => Some(problem),
        }
    }

    #[cfg(test)]
    /// The line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid { line, .. } => *line,
        }
    }
}

/// What is wrong in a catalog or meta file.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    /// Not TOML, an unknown key, a value of the wrong type, an unknown mode (the parser's words).
    #[error("{0}")]
    Syntax(String),
    #[error("host {host:?}: {reason}")]
    Host { host: String, reason: HostError },
    #[error("group id {id:?}: {reason}")]
    GroupId { id: String, reason: &'static str },
    #[error("group {id:?} is defined twice in this file (first on line {first_line})")]
    DuplicateGroup { id: String, first_line: usize },
    #[error("group {id:?} is not in the catalog, so it needs a title")]
    MissingTitle { id: String },
    #[error("group {id:?} is not in the catalog, so it needs hosts")]
    NoHosts { id: String },
    #[error("port 0 is not a port (ports are 1 to 65535)")]
    PortZero,
    #[error("mode = \"replace\" without any [[group]] would leave an empty catalog")]
    EmptyReplace,
    #[error("not JSON: {0}")]
    Json(String),
    #[error("no {0} section")]
    MetaMissing(&'static str),
    #[error("{0} is not a list of strings")]
    MetaNotStrings(&'static str),
    #[error("{list}[{index}]: host {host:?}: {reason}")]
    MetaHost {
        list: &'static str,
        index: usize,
        host: String,
        reason: HostError,
    },
    #[error("domains.actions_inbound lists no domains")]
    MetaEmpty,
}

/// The catalog in effect: groups in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    groups: Vec<Group>,
}

/// How a `--catalog` file combines with the catalog in effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Extend,
    Replace,
}

/// A `--catalog` file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    mode: Option<Spanned<Mode>>,
    #[serde(default)]
    group: Vec<Spanned<GroupDef>>,
}

/// A `[[group]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDef {
    id: Spanned<String>,
    title: Option<String>,
    required: Option<bool>,
    summary: Option<bool>,
    description: Option<String>,
    ports: Option<Vec<Spanned<u16>>>,
    hosts: Option<Vec<Spanned<String>>>,
}

/// A checked `[[group]]` table.
struct GroupUpdate {
    line: usize,
    id: String,
    title: Option<String>,
    required: Option<bool>,
    summary: Option<bool>,
    description: Option<String>,
    ports: Option<Vec<u16>>,
    hosts: Vec<HostPattern>,
}

impl Catalog {
    /// The built-in catalog (from GitHub's documentation).
    pub fn builtin() -> Self {
        let mut catalog = Self::default();
        // The data file is part of the program and checked by the tests; an error here is a
        // bug in the build, not something a user can cause.
        catalog
            .apply_toml(BUILTIN_SOURCE, BUILTIN_TOML)
            .expect("the built-in catalog is valid");
        catalog
    }

    /// The built-in catalog with the `--catalog` files, then the `--meta` files, applied in order.
    pub fn load(catalog_files: &[PathBuf], meta_files: &[PathBuf]) -> Result<Self, CatalogError> {
        let mut catalog = Self::builtin();
        for path in catalog_files {
            catalog.apply_file(path)?;
        }
        for path in meta_files {
            catalog.import_meta_file(path)?;
        }
        Ok(catalog)
    }

    /// The groups, in catalog order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    #[cfg(test)]
    /// The group with this id.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// Every (group, pattern) pair that `name` matches, in catalog order.
    pub fn matches<'a>(&'a self, name: &str) -> Vec<Membership<'a>> {
        self.groups
            .iter()
            .flat_map(|group| {
                group
                    .hosts
                    .iter()
                    .filter(|p| p.matches(name))
                    .map(move |pattern| Membership { group, pattern })
            })
            .collect()
    }

    /// The exact (non-wildcard) names of the catalog, each once, in catalog order: the names
    /// one can resolve to check a host without waiting for a runner to use it.
    pub fn exact_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for pattern in self.groups.iter().flat_map(|g| &g.hosts) {
            if !pattern.is_wildcard() && !names.contains(&pattern.as_str()) {
                names.push(pattern.as_str());
            }
        }
        names
    }

    /// Every port of every group, sorted, each once.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.groups.iter().flat_map(|g| g.ports.clone()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Reads a `--catalog` file and applies it (see the module documentation for the format).
    pub fn apply_file(&mut self, path: &Path) -> Result<(), CatalogError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            file: file.clone(),
            source,
        })?;
        self.apply_toml(&file, &text)
    }

    /// Applies a catalog in the `--catalog` format; `source` names it in errors. On error the
    /// catalog is unchanged.
    pub fn apply_toml(&mut self, source: &str, text: &str) -> Result<(), CatalogError> {
        let invalid = |line: Option<usize>, problem: Problem| CatalogError::Invalid {
            file: source.to_owned(),
            line,
            problem,
        };
        let at = |offset: usize| Some(line_of(text, offset));
        let file: FileDef = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            invalid(
                line,
                Problem::Syntax(syntax_message(text, line, e.message())),
            )
        })?;
        let mode = file.mode.as_ref().map_or(Mode::Extend, |m| *m.get_ref());
        if mode == Mode::Replace && file.group.is_empty() {
            let line = file.mode.as_ref().and_then(|m| at(m.span().start));
            return Err(invalid(line, Problem::EmptyReplace));
        }

        let mut updates: Vec<GroupUpdate> = Vec::with_capacity(file.group.len());
        for group in &file.group {
            let def = group.get_ref();
            let id = def.id.get_ref();
            let id_line = line_of(text, def.id.span().start);
            if let Some(reason) = id_problem(id) {
                return Err(invalid(
                    Some(id_line),
                    Problem::GroupId {
                        id: id.clone(),
                        reason,
                    },
                ));
            }
            if let Some(first) = updates.iter().find(|u| &u.id == id) {
                return Err(invalid(
                    Some(id_line),
                    Problem::DuplicateGroup {
                        id: id.clone(),
                        first_line: first.line,
                    },
                ));
            }
            let mut ports = None;
            if let Some(list) = &def.ports {
                let mut checked = Vec::with_capacity(list.len());
                for port in list {
                    if *port.get_ref() == 0 {
                        return Err(invalid(at(port.span().start), Problem::PortZero));
                    }
                    if !checked.contains(port.get_ref()) {
                        checked.push(*port.get_ref());
                    }
                }
                ports = Some(checked);
            }
            let mut hosts: Vec<HostPattern> = Vec::new();
            for host in def.hosts.iter().flatten() {
                let pattern = HostPattern::parse(host.get_ref()).map_err(|reason| {
                    invalid(
                        at(host.span().start),
                        Problem::Host {
                            host: host.get_ref().clone(),
                            reason,
                        },
                    )
                })?;
                if !hosts.contains(&pattern) {
                    hosts.push(pattern);
                }
            }
            updates.push(GroupUpdate {
                line: id_line,
                id: id.clone(),
                title: def.title.clone(),
                required: def.required,
                summary: def.summary,
                description: def.description.clone(),
                ports,
                hosts,
            });
        }

        let mut next = match mode {
            Mode::Extend => self.clone(),
            Mode::Replace => Self::default(),
        };
        for update in updates {
            if let Some(group) = next.groups.iter_mut().find(|g| g.id == update.id) {
                if let Some(title) = update.title {
                    group.title = title;
                }
                if let Some(required) = update.required {
                    group.required = required;
                }
                if let Some(summary) = update.summary {
                    group.summary = summary;
                }
                if let Some(description) = update.description {
                    group.description = description;
                }
                for port in update.ports.into_iter().flatten() {
                    if !group.ports.contains(&port) {
                        group.ports.push(port);
                    }
                }
                for host in update.hosts {
                    if !group.hosts.contains(&host) {
                        group.hosts.push(host);
                    }
                }
                continue;
            }
            let Some(title) = update.title else {
                return Err(invalid(
                    Some(update.line),
                    Problem::MissingTitle { id: update.id },
                ));
            };
            if update.hosts.is_empty() {
                return Err(invalid(
                    Some(update.line),
                    Problem::NoHosts { id: update.id },
                ));
            }
            next.groups.push(Group {
                id: update.id,
                title,
                required: update.required.unwrap_or(false),
                summary: update.summary.unwrap_or(false),
                description: update.description.unwrap_or_default(),
                ports: update.ports.unwrap_or_else(|| vec![DEFAULT_PORT]),
                hosts: update.hosts,
            });
        }
        *self = next;
        Ok(())
    }

    /// Reads a saved `GET /meta` response and imports its `domains.actions_inbound` section.
    pub fn import_meta_file(&mut self, path: &Path) -> Result<(), CatalogError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            file: file.clone(),
            source,
        })?;
        self.import_meta_json(&file, &text)
    }

    /// Imports the `domains.actions_inbound` section (`full_domains`, `wildcard_domains`) of a
    /// `GET /meta` response as the group `meta-actions-inbound`, replacing an earlier import.
    /// `source` names the file in errors and in the group's description.
    pub fn import_meta_json(&mut self, source: &str, text: &str) -> Result<(), CatalogError> {
        let invalid = |problem: Problem| CatalogError::Invalid {
            file: source.to_owned(),
            line: None,
            problem,
        };
        let meta: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(Problem::Json(e.to_string())))?;
        let section = meta
            .get("domains")
            .and_then(|d| d.get("actions_inbound"))
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| invalid(Problem::MetaMissing("domains.actions_inbound")))?;
        let lists = [
            ("full_domains", "domains.actions_inbound.full_domains"),
            (
                "wildcard_domains",
                "domains.actions_inbound.wildcard_domains",
            ),
        ];
        if lists.iter().all(|(key, _)| !section.contains_key(*key)) {
            return Err(invalid(Problem::MetaMissing(
                "domains.actions_inbound.full_domains or wildcard_domains",
            )));
        }
        let mut hosts: Vec<HostPattern> = Vec::new();
        for (key, list) in lists {
            let Some(value) = section.get(key) else {
                continue;
            };
            let items = value
                .as_array()
                .ok_or_else(|| invalid(Problem::MetaNotStrings(list)))?;
            for (index, item) in items.iter().enumerate() {
                let text = item
                    .as_str()
                    .ok_or_else(|| invalid(Problem::MetaNotStrings(list)))?;
                let pattern = HostPattern::parse(text).map_err(|reason| {
                    invalid(Problem::MetaHost {
                        list,
                        index,
                        host: text.to_owned(),
                        reason,
                    })
                })?;
                if !hosts.contains(&pattern) {
                    hosts.push(pattern);
                }
            }
        }
        if hosts.is_empty() {
            return Err(invalid(Problem::MetaEmpty));
        }
        let group = Group {
            id: META_GROUP_ID.to_owned(),
            title: "Actions inbound domains from GET /meta".to_owned(),
            required: false,
            summary: true,
            description: format!(
                "Imported from {source}: the domains.actions_inbound section of the REST API \
                 meta endpoint."
            ),
            ports: vec![DEFAULT_PORT],
            hosts,
        };
        match self.groups.iter_mut().find(|g| g.id == META_GROUP_ID) {
            Some(existing) => *existing = group,
            None => self.groups.push(group),
        }
        Ok(())
    }

    /// The catalog as a table: group id, required, ports, one pattern a line.
    pub fn render_text(&self) -> String {
        const HEAD: [&str; 4] = ["GROUP", "REQUIRED", "PORTS", "HOSTS"];
        let rows: Vec<(&str, &str, String, &[HostPattern])> = self
            .groups
            .iter()
            .map(|g| {
                let ports = g
                    .ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let required = if g.required { "yes" } else { "no" };
                (g.id.as_str(), required, ports, g.hosts.as_slice())
            })
            .collect();
        let id_w = rows
            .iter()
            .map(|r| r.0.len())
            .fold(HEAD[0].len(), usize::max);
        let req_w = HEAD[1].len();
        let ports_w = rows
            .iter()
            .map(|r| r.2.len())
            .fold(HEAD[2].len(), usize::max);
        let mut out = String::new();
        let mut line = |a: &str, b: &str, c: &str, d: &str| {
            let row = format!("{a:id_w$}  {b:req_w$}  {c:ports_w$}  {d}");
            out.push_str(row.trim_end());
            out.push('\n');
        };
        line(HEAD[0], HEAD[1], HEAD[2], HEAD[3]);
        for (id, required, ports, hosts) in &rows {
            let mut hosts = hosts.iter();
            let first = hosts.next().map_or("", HostPattern::as_str);
            line(id, required, ports, first);
            for host in hosts {
                line("", "", "", host.as_str());
            }
        }
        out
    }

    /// The catalog as a `--catalog` file with `mode = "replace"`: reading it back gives the
    /// same catalog.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# observer host-group catalog (format: docs/catalog.md).\n\
             # mode = \"replace\": this file is the whole catalog.\n\
             mode = \"replace\"\n",
        );
        for g in &self.groups {
            let _ = write!(
                out,
                "\n[[group]]\nid = {}\ntitle = {}\nrequired = {}\n",
                toml_string(&g.id),
                toml_string(&g.title),
                g.required
            );
            if g.summary {
                out.push_str("summary = true\n");
            }
            if !g.description.is_empty() {
                let _ = writeln!(out, "description = {}", toml_string(&g.description));
            }
            let ports: Vec<String> = g.ports.iter().map(u16::to_string).collect();
            let _ = writeln!(out, "ports = [{}]", ports.join(", "));
            out.push_str("hosts = [\n");
            for host in &g.hosts {
                let _ = writeln!(out, "    {},", toml_string(host.as_str()));
            }
            out.push_str("]\n");
        }
        out
    }
}

/// The TOML parser's message, with a hint for the mistakes this format invites.
fn syntax_message(text: &str, line: Option<usize>, message: &str) -> String {
    let message = message
        .trim_end()
        .replace("expected u16", "expected a port number (1 to 65535)");
    let line_text = line
        .and_then(|l| text.lines().nth(l.saturating_sub(1)))
        .unwrap_or_default()
        .trim_start();
    if line_text.starts_with("[group]") {
        format!("{message} (write [[group]], with two brackets: a catalog has a list of groups)")
    } else {
        message
    }
}

/// Why a group id is not usable, if it is not.
fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        return Some("an id cannot be empty");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Some("use letters, digits, '-', '_' and '.' only");
    }
    None
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(catalog: &Catalog, id: &str) -> Vec<String> {
        catalog
            .group(id)
            .unwrap_or_else(|| panic!("no group {id}"))
            .hosts
            .iter()
            .map(|h| h.as_str().to_owned())
            .collect()
    }

    fn membership(catalog: &Catalog, name: &str) -> Vec<(String, String)> {
        catalog
            .matches(name)
            .iter()
            .map(|m| (m.group.id.clone(), m.pattern.as_str().to_owned()))
            .collect()
    }

    fn pattern(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// Applies `text` to the built-in catalog and returns the error.
    fn error_of(text: &str) -> CatalogError {
        let mut catalog = Catalog::builtin();
        let before = catalog.clone();
        let err = catalog
            .apply_toml("catalog.toml", text)
            .expect_err("the file should be refused");
        assert_eq!(catalog, before, "a refused file changes nothing");
        err
    }

    #[test]
    fn builtin_has_the_documented_groups() {
        let catalog = Catalog::builtin();
        let expected: &[(&str, &[&str])] = &[
            (
                "essential",
                &[
                    "github.com",
                    "api.github.com",
                    "*.actions.githubusercontent.com",
                ],
            ),
            (
                "actions-download",
                &["codeload.github.com", "pkg.actions.githubusercontent.com"],
            ),
            ("immutable-actions", &["ghcr.io"]),
            (
                "artifacts-caches-logs",
                &[
                    "results-receiver.actions.githubusercontent.com",
                    "*.blob.core.windows.net",
                ],
            ),
            (
                "runner-updates",
                &[
                    "objects.githubusercontent.com",
                    "objects-origin.githubusercontent.com",
                    "github-releases.githubusercontent.com",
                    "github-registry-files.githubusercontent.com",
                ],
            ),
            ("oidc", &["*.actions.githubusercontent.com"]),
            (
                "packages",
                &[
                    "*.pkg.github.com",
                    "pkg-containers.githubusercontent.com",
                    "ghcr.io",
                ],
            ),
            (
                "lfs",
                &[
                    "github-cloud.githubusercontent.com",
                    "github-cloud.s3.amazonaws.com",
                ],
            ),
            ("dependabot", &["dependabot-actions.githubapp.com"]),
            (
                "wildcard-summary",
                &[
                    "github.com",
                    "*.github.com",
                    "*.githubusercontent.com",
                    "ghcr.io",
                ],
            ),
        ];
        let ids: Vec<&str> = catalog.groups().iter().map(|g| g.id.as_str()).collect();
        let expected_ids: Vec<&str> = expected.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, expected_ids);
        for (id, want) in expected {
            assert_eq!(hosts(&catalog, id), *want, "hosts of {id}");
        }
        for group in catalog.groups() {
            assert_eq!(group.required, group.id == "essential", "{}", group.id);
            assert_eq!(group.ports, [443], "{}", group.id);
            assert!(!group.title.is_empty(), "{}", group.id);
            assert!(group
                .description
                .starts_with(if group.id == "wildcard-summary" {
                    "An example"
                } else {
                    "Needed for"
                }));
        }
        assert_eq!(
            catalog.group("essential").map(|g| g.title.as_str()),
            Some("Essential operations")
        );
        assert_eq!(catalog.ports(), [443]);
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let star = pattern("*.github.com");
        assert!(star.is_wildcard());
        assert!(!star.matches("github.com"));
        assert!(star.matches("api.github.com"));
        assert!(star.matches("a.b.github.com"));
        assert!(star.matches("API.GitHub.Com."));
        assert!(!star.matches("xgithub.com"));
        assert!(!star.matches(".github.com"));
        assert!(!star.matches("a..github.com"));
        assert!(!star.matches("github.com.evil.example"));
        assert!(!star.matches(""));

        let actions = pattern("*.actions.githubusercontent.com");
        assert!(actions.matches("a.b.actions.githubusercontent.com"));
        assert!(actions.matches("pipelines.actions.githubusercontent.com"));
        assert!(!actions.matches("actions.githubusercontent.com"));

        let exact = pattern("github.com");
        assert!(!exact.is_wildcard());
        assert!(exact.matches("GitHub.COM."));
        assert!(exact.matches("github.com"));
        assert!(!exact.matches("api.github.com"));
        assert!(!exact.matches("xgithub.com"));
        assert!(!exact.matches("github.com.."));

        // Non-ASCII input never panics, never matches.
        assert!(!star.matches("é.github.co"));
        assert!(!star.matches("ééééééééééé"));

        assert!(is_wildcard("*.example.com"));
        assert!(!is_wildcard("example.com"));
        // Patterns are normalized.
        assert_eq!(pattern("*.GitHub.com.").as_str(), "*.github.com");
    }

    #[test]
    fn a_name_belongs_to_every_group_that_lists_it() {
        let catalog = Catalog::builtin();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(g, p)| ((*g).to_owned(), (*p).to_owned()))
                .collect()
        };
        assert_eq!(
            membership(&catalog, "ghcr.io"),
            pairs(&[
                ("immutable-actions", "ghcr.io"),
                ("packages", "ghcr.io"),
                ("wildcard-summary", "ghcr.io"),
            ])
        );
        assert_eq!(
            membership(&catalog, "pipelines.actions.githubusercontent.com"),
            pairs(&[
                ("essential", "*.actions.githubusercontent.com"),
                ("oidc", "*.actions.githubusercontent.com"),
                ("wildcard-summary", "*.githubusercontent.com"),
            ])
        );
        assert_eq!(
            membership(&catalog, "GitHub.COM."),
            pairs(&[
                ("essential", "github.com"),
                ("wildcard-summary", "github.com")
            ])
        );
        assert_eq!(
            membership(&catalog, "api.github.com"),
            pairs(&[
                ("essential", "api.github.com"),
                ("wildcard-summary", "*.github.com"),
            ])
        );
        assert_eq!(
            membership(&catalog, "npm.pkg.github.com"),
            pairs(&[
                ("packages", "*.pkg.github.com"),
                ("wildcard-summary", "*.github.com"),
            ])
        );
        assert!(catalog.matches("example.com").is_empty());
        assert!(catalog.matches("xgithub.com").is_empty());
        let essential = catalog.group("essential").expect("essential");
        assert_eq!(essential.patterns_matching("github.com").count(), 1);
    }

    #[test]
    fn exact_names_are_listed_once_in_catalog_order() {
        let catalog = Catalog::builtin();
        assert_eq!(
            catalog.exact_names(),
            [
                "github.com",
                "api.github.com",
                "codeload.github.com",
                "pkg.actions.githubusercontent.com",
                "ghcr.io",
                "results-receiver.actions.githubusercontent.com",
                "objects.githubusercontent.com",
                "objects-origin.githubusercontent.com",
                "github-releases.githubusercontent.com",
                "github-registry-files.githubusercontent.com",
                "pkg-containers.githubusercontent.com",
                "github-cloud.githubusercontent.com",
                "github-cloud.s3.amazonaws.com",
                "dependabot-actions.githubapp.com",
            ]
        );
    }

    #[test]
    fn extend_adds_hosts_ports_and_groups() {
        let mut catalog = Catalog::builtin();
        catalog
            .apply_toml(
                "mine.toml",
                r#"
[[group]]
id = "essential"
hosts = ["ghes.example.com", "GitHub.com", "*.ghes.example.com"]
ports = [8443, 443]

[[group]]
id = "registries"
title = "Our registries"
required = true
hosts = ["registry.example.com", "*.cdn.example.com"]
"#,
            )
            .expect("valid");
        assert_eq!(
            hosts(&catalog, "essential"),
            [
                "github.com",
                "api.github.com",
                "*.actions.githubusercontent.com",
                "ghes.example.com",
                "*.ghes.example.com",
            ]
        );
        let essential = catalog.group("essential").expect("essential");
        assert_eq!(essential.ports, [443, 8443]);
        assert_eq!(essential.title, "Essential operations");
        let registries = catalog.groups().last().expect("a group");
        assert_eq!(registries.id, "registries");
        assert_eq!(registries.title, "Our registries");
        assert!(registries.required);
        assert_eq!(registries.ports, [DEFAULT_PORT]);
        assert_eq!(catalog.groups().len(), 11);
        assert_eq!(catalog.ports(), [443, 8443]);
        assert_eq!(
            membership(&catalog, "eu.cdn.example.com"),
            [("registries".to_owned(), "*.cdn.example.com".to_owned())]
        );

        // Keys given for an existing group replace the ones in effect.
        catalog
            .apply_toml(
                "more.toml",
                "mode = \"extend\"\n[[group]]\nid = \"packages\"\nrequired = true\ntitle = \"Packages\"\n",
            )
            .expect("valid");
        let packages = catalog.group("packages").expect("packages");
        assert!(packages.required);
        assert_eq!(packages.title, "Packages");
        assert_eq!(packages.hosts.len(), 3);
    }

    #[test]
    fn replace_drops_the_catalog_in_effect() {
        let mut catalog = Catalog::builtin();
        catalog
            .apply_toml(
                "ghes.toml",
                r#"
mode = "replace"
[[group]]
id = "ghes"
title = "GitHub Enterprise Server"
required = true
ports = [443, 8443]
hosts = ["ghes.corp.example", "*.ghes.corp.example"]
"#,
            )
            .expect("valid");
        assert_eq!(catalog.groups().len(), 1);
        assert_eq!(catalog.groups()[0].ports, [443, 8443]);
        assert!(catalog.matches("github.com").is_empty());
        assert_eq!(membership(&catalog, "api.ghes.corp.example").len(), 1);
    }

    #[test]
    fn files_load_from_disk() {
        let dir = std::env::temp_dir().join(format!("observer-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let toml_path = dir.join("catalog.toml");
        let meta_path = dir.join("meta.json");
        std::fs::write(
            &toml_path,
            "[[group]]\nid = \"mine\"\ntitle = \"Mine\"\nhosts = [\"a.example\"]\n",
        )
        .expect("write");
        std::fs::write(
            &meta_path,
            r#"{"domains": {"actions_inbound": {"full_domains": ["github.com"]}}}"#,
        )
        .expect("write");
        let catalog = Catalog::load(std::slice::from_ref(&toml_path), &[meta_path]).expect("loads");
        assert!(catalog.group("mine").is_some());
        assert!(catalog.group(META_GROUP_ID).is_some());
        let missing = dir.join("missing.toml");
        let err = Catalog::load(std::slice::from_ref(&missing), &[]).expect_err("missing file");
        assert_eq!(
            err.to_string(),
            format!("cannot read {}", missing.display())
        );
        assert!(std::error::Error::source(&err).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn meta_actions_inbound_becomes_a_group() {
        let mut catalog = Catalog::builtin();
        let meta = r#"{
            "verifiable_password_authentication": false,
            "domains": {
                "website": ["*.github.com"],
                "actions_inbound": {
                    "full_domains": ["github.com", "api.github.com", "GitHub.com."],
                    "wildcard_domains": ["*.actions.githubusercontent.com", "*.githubusercontent.com"]
                }
            }
        }"#;
        catalog.import_meta_json("meta.json", meta).expect("valid");
        let group = catalog.group(META_GROUP_ID).expect("imported");
        assert_eq!(
            hosts(&catalog, META_GROUP_ID),
            [
                "github.com",
                "api.github.com",
                "*.actions.githubusercontent.com",
                "*.githubusercontent.com",
            ]
        );
        assert!(!group.required);
        assert_eq!(group.ports, [443]);
        assert!(group.description.contains("meta.json"));
        assert_eq!(catalog.groups().len(), 11);
        // A second import replaces the first.
        catalog
            .import_meta_json(
                "meta2.json",
                r#"{"domains":{"actions_inbound":{"wildcard_domains":["*.example.com"]}}}"#,
            )
            .expect("valid");
        assert_eq!(hosts(&catalog, META_GROUP_ID), ["*.example.com"]);
        assert_eq!(catalog.groups().len(), 11);
    }

    #[test]
    fn meta_errors_say_what_is_missing() {
        let cases = [
            ("{", "meta.json: not JSON: "),
            ("{}", "meta.json: no domains.actions_inbound section"),
            (
                r#"{"domains": {"actions_inbound": 3}}"#,
                "meta.json: no domains.actions_inbound section",
            ),
            (
                r#"{"domains": {"actions_inbound": {}}}"#,
                "meta.json: no domains.actions_inbound.full_domains or wildcard_domains section",
            ),
            (
                r#"{"domains": {"actions_inbound": {"full_domains": "github.com"}}}"#,
                "meta.json: domains.actions_inbound.full_domains is not a list of strings",
            ),
            (
                r#"{"domains": {"actions_inbound": {"wildcard_domains": [1]}}}"#,
                "meta.json: domains.actions_inbound.wildcard_domains is not a list of strings",
            ),
            (
                r#"{"domains": {"actions_inbound": {"full_domains": [], "wildcard_domains": []}}}"#,
                "meta.json: domains.actions_inbound lists no domains",
            ),
            (
                r#"{"domains": {"actions_inbound": {"wildcard_domains": ["ok.example", "*"]}}}"#,
                "meta.json: domains.actions_inbound.wildcard_domains[1]: host \"*\": a bare \"*\" would match every name: write a domain after it, as in \"*.example.com\"",
            ),
        ];
        for (json, want) in cases {
            let mut catalog = Catalog::builtin();
            let err = catalog.import_meta_json("meta.json", json).expect_err(json);
            assert!(err.to_string().starts_with(want), "{json}: {err}");
            assert_eq!(catalog, Catalog::builtin());
        }
    }

    #[test]
    fn host_errors() {
        let cases = [
            ("", HostError::Empty),
            ("*", HostError::BareWildcard),
            ("*.", HostError::WildcardWithoutDomain),
            ("a.*.com", HostError::MisplacedWildcard),
            ("*github.com", HostError::MisplacedWildcard),
            ("git*hub.com", HostError::MisplacedWildcard),
            ("*.*.github.com", HostError::MisplacedWildcard),
            ("a..com", HostError::EmptyLabel),
            (".github.com", HostError::EmptyLabel),
            ("github.com..", HostError::EmptyLabel),
            (".", HostError::EmptyLabel),
            ("git hub.com", HostError::Whitespace),
            (" github.com", HostError::Whitespace),
            (
                "github.com:443",
                HostError::Port {
                    port: "443".to_owned(),
                },
            ),
            ("fe80::1", HostError::InvalidChar(':')),
            ("https://github.com", HostError::Url),
            ("github.com/path", HostError::Url),
            ("bücher.de", HostError::InvalidChar('ü')),
            ("a+b.com", HostError::InvalidChar('+')),
            ("-i", HostError::HyphenAtEdge("-i".to_owned())),
            ("a-.example", HostError::HyphenAtEdge("a-".to_owned())),
        ];
        for (text, want) in cases {
            assert_eq!(HostPattern::parse(text), Err(want), "{text:?}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            HostPattern::parse(&long_label),
            Err(HostError::LabelTooLong(_))
        ));
        let long_name = vec!["a".repeat(60); 5].join(".");
        assert_eq!(HostPattern::parse(&long_name), Err(HostError::TooLong));
        for ok in [
            "github.com",
            "github.com.",
            "*.github.com",
            "_dmarc.example.com",
            "10.0.0.1",
        ] {
            assert!(HostPattern::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn file_errors_name_the_file_and_line() {
        let wildcard = "\n[[group]]\nid = \"mine\"\ntitle = \"Mine\"\nhosts = [\n  \"ok.example\",\n  \"*.\",\n]\n";
        let err = error_of(wildcard);
        assert_eq!(
            err.to_string(),
            "catalog.toml line 7: host \"*.\": a wildcard needs a domain after \"*.\""
        );

        // (file, line, start of the message after "catalog.toml line N: ")
        let cases: &[(&str, usize, &str)] = &[
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nhosts = [\"*\"]\n",
                4,
                "host \"*\": a bare \"*\"",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nhosts = [\"a.*.com\"]\n",
                4,
                "host \"a.*.com\": \"*\" may only be the whole first label",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nhosts = [\"a..com\"]\n",
                4,
                "host \"a..com\": empty label",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nhosts = [\n\"git hub.com\"]\n",
                5,
                "host \"git hub.com\": a host name has no spaces",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nhosts = [\"ghes.example:8443\"]\n",
                4,
                "host \"ghes.example:8443\": a host name carries no port: list 8443 in the group's `ports` instead",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nhosts = [\"x.example\"]\n\n[[group]]\nid = \"a\"\ntitle = \"A\"\nhosts = [\"y.example\"]\n",
                7,
                "group \"a\" is defined twice in this file (first on line 2)",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nhost = [\"x.example\"]\n",
                4,
                "unknown field `host`",
            ),
            (
                "colour = \"blue\"\n",
                1,
                "unknown field `colour`",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nhosts = \"x.example\"\n",
                4,
                "invalid type: string \"x.example\", expected a sequence",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nrequired = \"yes\"\nhosts = [\"x.example\"]\n",
                4,
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                "\nmode = \"merge\"\n",
                2,
                "unknown variant `merge`, expected `extend` or `replace`",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nports = [70000]\nhosts = [\"x.example\"]\n",
                4,
                "invalid value: integer `70000`, expected a port number (1 to 65535)",
            ),
            (
                "[[group]]\nid = \"a\"\ntitle = \"A\"\nports = [\n443,\n0]\nhosts = [\"x.example\"]\n",
                6,
                "port 0 is not a port",
            ),
            (
                "[[group]]\ntitle = \"A\"\nhosts = [\"x.example\"]\n",
                1,
                "missing field `id`",
            ),
            (
                "[[group]]\nid = \"a b\"\ntitle = \"A\"\nhosts = [\"x.example\"]\n",
                2,
                "group id \"a b\": use letters, digits",
            ),
            (
                "\n[[group]]\nid = \"new\"\nhosts = [\"x.example\"]\n",
                3,
                "group \"new\" is not in the catalog, so it needs a title",
            ),
            (
                "[[group]]\nid = \"new\"\ntitle = \"New\"\n",
                2,
                "group \"new\" is not in the catalog, so it needs hosts",
            ),
            (
                "mode = \"replace\"\n",
                1,
                "mode = \"replace\" without any [[group]] would leave an empty catalog",
            ),
            (
                "[[group]\nid = 1\n",
                1,
                "",
            ),
            (
                "[group]\nid = \"a\"\n",
                1,
                "invalid type: map, expected a sequence (write [[group]], with two brackets",
            ),
        ];
        for (text, line, message) in cases {
            let err = error_of(text);
            assert_eq!(err.line(), Some(*line), "{text:?}: {err}");
            let prefix = format!("catalog.toml line {line}: {message}");
            assert!(
                err.to_string().starts_with(&prefix),
                "{text:?}:\n got: {err}\nwant: {prefix}"
            );
        }
    }

    #[test]
    fn replace_needs_titles_for_every_group() {
        let err = error_of(
            "mode = \"replace\"\n[[group]]\nid = \"essential\"\nhosts = [\"x.example\"]\n",
        );
        assert_eq!(
            err.problem(),
            Some(&Problem::MissingTitle {
                id: "essential".to_owned()
            })
        );
        assert_eq!(err.line(), Some(3));
    }

    #[test]
    fn never_panics_on_any_prefix_or_corruption() {
        let text = BUILTIN_TOML;
        let mut boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        boundaries.dedup();
        for end in boundaries {
            let mut catalog = Catalog::default();
            let _ = catalog.apply_toml("cut.toml", &text[..end]);
            let _ = catalog.import_meta_json("cut.json", &text[..end]);
        }
        for junk in [
            "\u{0}",
            "[[group]]\nid = \"\u{7f}\"",
            "hosts = [\"\u{0}\"]",
            "é",
            "*.é",
        ] {
            let _ = Catalog::default().apply_toml("junk.toml", junk);
            let _ = HostPattern::parse(junk);
        }
    }

    #[test]
    fn toml_round_trips() {
        let mut catalog = Catalog::builtin();
        catalog
            .apply_toml(
                "odd.toml",
                "[[group]]\nid = \"odd\"\ntitle = \"Quotes \\\" and \\\\ and \\u0001\"\ndescription = \"two\\nlines\\ttab\"\nports = [8443, 22]\nhosts = [\"x.example\"]\n",
            )
            .expect("valid");
        catalog
            .import_meta_json(
                "meta.json",
                r#"{"domains":{"actions_inbound":{"full_domains":["github.com"]}}}"#,
            )
            .expect("valid");
        let text = catalog.to_toml();
        let mut back = Catalog::builtin();
        back.apply_toml("round.toml", &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, catalog);
        assert!(text.starts_with("# observer host-group catalog"));
        assert!(text.contains(
            "\n[[group]]\nid = \"essential\"\ntitle = \"Essential operations\"\nrequired = true\n"
        ));
        // The built-in data itself round-trips the same way.
        let mut builtin = Catalog::default();
        builtin
            .apply_toml("round.toml", &Catalog::builtin().to_toml())
            .expect("valid");
        assert_eq!(builtin, Catalog::builtin());
    }

    #[test]
    fn text_table_snapshot() {
        let mut catalog = Catalog::default();
        catalog
            .apply_toml(
                "t.toml",
                r#"
[[group]]
id = "essential"
title = "Essential operations"
required = true
hosts = ["github.com", "api.github.com"]

[[group]]
id = "ghes-with-a-long-id"
title = "GHES"
ports = [443, 8443]
hosts = ["*.ghes.example"]
"#,
            )
            .expect("valid");
        assert_eq!(
            catalog.render_text(),
            "\
GROUP                REQUIRED  PORTS     HOSTS
essential            yes       443       github.com
                                         api.github.com
ghes-with-a-long-id  no        443,8443  *.ghes.example
"
        );
    }

    #[test]
    fn builtin_text_table_lists_every_pattern() {
        let table = Catalog::builtin().render_text();
        let lines: Vec<&str> = table.lines().collect();
        let patterns: usize = Catalog::builtin()
            .groups()
            .iter()
            .map(|g| g.hosts.len())
            .sum();
        assert_eq!(lines.len(), 1 + patterns);
        assert!(lines[0].starts_with("GROUP "));
        assert!(lines[1].starts_with("essential "));
        assert!(lines[1].ends_with(" github.com"));
        assert!(lines.iter().all(|l| l == &l.trim_end()));
    }
}
