//! `observer suggest`: firewall rules to paste, made from what the runner used.
//!
//! From an audit report (`--report`) or an event log (`--events`), [`plan::build`] chooses the
//! smallest set of rules that allows what the runner reached or tried to reach (documented names
//! and wildcards first, rotating names generalised only as far as safe, never a public suffix),
//! and a renderer writes it in the firewall's own syntax (`--format`). Undeclared destinations
//! are suggested apart, commented out unless `--include-undeclared`. `--diff-meta` compares what
//! was used with a saved `GET /meta` response instead. docs/rules.md documents every format.

mod cilium;
mod domain;
mod harden_runner;
mod input;
mod iptables;
mod lists;
mod meta_diff;
mod nftables;
mod plan;
mod render;
mod safe;
mod squid;
mod suricata;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::ValueEnum;

use crate::options::CatalogOptions;

/// What `observer suggest` reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// An audit report (`-` for stdin).
    Report(PathBuf),
    /// An event log, whose report is built first with the catalog options.
    Events(PathBuf),
}

/// What `observer suggest` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Rules in a firewall's syntax.
    Rules {
        format: Format,
        /// Also allow the CNAME targets seen in DNS answers.
        follow_cnames: bool,
        /// Make undeclared destinations active rules (commented out otherwise).
        include_undeclared: bool,
    },
    /// What was used against the `domains.actions_inbound` of a saved `GET /meta` response.
    DiffMeta(PathBuf),
}

/// `observer suggest` options.
#[derive(Clone, Debug)]
pub struct Options {
    pub input: Input,
    pub action: Action,
    /// Where to write; `-` for stdout.
    pub out: PathBuf,
    pub catalog: CatalogOptions,
}

/// Rule syntaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One name or `*.domain` wildcard a line.
    Domains,
    /// squid.conf: `dstdomain` and `dstdom_regex` ACLs and `http_access allow` lines.
    Squid,
    /// An nftables table: address sets per site and a chain that accepts them.
    Nftables,
    /// A shell script of ipset sets and an iptables/ip6tables chain.
    Iptables,
    /// The `allowed-endpoints` of step-security/harden-runner (host:port).
    HardenRunner,
    /// A CiliumNetworkPolicy with `toFQDNs`, and the DNS rule to kube-dns it needs.
    Cilium,
    /// Suricata `tls.sni` pass rules (AWS Network Firewall, Azure Firewall Premium IDPS, ...).
    Suricata,
    /// Target FQDNs for Azure Firewall application rules (`*.example.com`).
    AzureFirewall,
    /// A domain list for AWS Network Firewall (`.example.com` for subdomains).
    AwsNetworkFirewall,
}

impl Format {
    /// The name as `--format` takes it.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// Runs `observer suggest`.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let catalog = options.catalog.load()?;
    let (report, source) = match &options.input {
        Input::Report(path) => (crate::report::read(path)?, file_name(path)),
        Input::Events(path) => (
            input::report_of_events(path, &options.catalog)?,
            file_name(path),
        ),
    };
    let text = match &options.action {
        Action::DiffMeta(meta) => {
            let text = fs::read_to_string(meta)
                .with_context(|| format!("cannot read the /meta response {}", meta.display()))?;
            let documented = meta_diff::parse_meta(&meta.display().to_string(), &text)?;
            meta_diff::render(&report, &documented, &source, &file_name(meta))
        }
        &Action::Rules {
            format,
            follow_cnames,
            include_undeclared,
        } => {
            let plan_options = plan::Options {
                follow_cnames,
                include_undeclared,
            };
            let plan = plan::build(&report, &catalog, plan_options);
            for skipped in &plan.skipped {
                let message = format!(
                    "{source}: {} {:?} left out: {}",
                    skipped.field,
                    skipped.text.as_str(),
                    skipped.why
                );
                eprintln!("observer: {}", crate::sanitize::line(&message));
            }
            render(&plan, format, &source)
        }
    };
    Ok(crate::outfile::write_out(&options.out, &text, "the rules")?)
}

/// The rules in `format` of a report given as text (what `suggest --report` reads), against
/// `catalog`; for the fuzz targets (tests/fuzz) and tests that feed reports without files.
pub fn rules_of_report_text(
    source: &str,
    text: &str,
    catalog: &crate::catalog::Catalog,
    format: Format,
    follow_cnames: bool,
    include_undeclared: bool,
) -> anyhow::Result<String> {
    let report = crate::report::parse(source, text)?;
    let options = plan::Options {
        follow_cnames,
        include_undeclared,
    };
    Ok(render(
        &plan::build(&report, catalog, options),
        format,
        source,
    ))
}

/// The rules of a plan in one format.
pub fn render(plan: &plan::Plan, format: Format, source: &str) -> String {
    let context = render::Context {
        plan,
        format,
        source,
    };
    match format {
        Format::Domains | Format::AzureFirewall | Format::AwsNetworkFirewall => {
            lists::render(&context)
        }
        Format::Squid => squid::render(&context),
        Format::Nftables => nftables::render(&context),
        Format::Iptables => iptables::render(&context),
        Format::HardenRunner => harden_runner::render(&context),
        Format::Cilium => cilium::render(&context),
        Format::Suricata => suricata::render(&context),
    }
}

/// How the input is named in the rules' header: its file name (the directory would make the
/// output depend on where it was run).
fn file_name(path: &Path) -> String {
    if path == Path::new("-") {
        return "stdin".to_owned();
    }
    safe::clean(&path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_are_the_documented_ones() {
        let names: Vec<String> = Format::value_variants().iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "domains",
                "squid",
                "nftables",
                "iptables",
                "harden-runner",
                "cilium",
                "suricata",
                "azure-firewall",
                "aws-network-firewall"
            ]
        );
    }
}
