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
mod squid;
mod suricata;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::cli::CatalogArgs;

/// `observer suggest` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["report", "events"])))]
pub struct SuggestArgs {
    /// The audit report to make rules from (`observer record --out`, `observer report`); `-`
    /// for stdin.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// An event log (`observer record --events`, `watch --json`): the report is built from it
    /// first, with the catalog options below.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// The rule syntax to write (docs/rules.md).
    #[arg(long, value_enum, default_value_t = Format::Domains)]
    pub format: Format,

    /// Where to write the rules; `-` for stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub out: PathBuf,

    /// Also allow the CNAME targets seen in DNS answers, marked as names that may change (some
    /// firewalls check every name of a chain).
    #[arg(long)]
    pub follow_cnames: bool,

    /// Make the undeclared names and unresolved addresses active rules (they are written
    /// commented out by default, each with its evidence, to review).
    #[arg(long)]
    pub include_undeclared: bool,

    /// Instead of rules, compare what was used with the `domains.actions_inbound` section of a
    /// saved `GET /meta` response: observed but undocumented, documented but never used.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["format", "follow_cnames", "include_undeclared"])]
    pub diff_meta: Option<PathBuf>,

    #[command(flatten)]
    pub catalog: CatalogArgs,
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
pub fn run(args: &SuggestArgs) -> anyhow::Result<()> {
    let catalog = args.catalog.load()?;
    let (report, source) = match (&args.report, &args.events) {
        (Some(path), _) => (input::read_report_file(path)?, file_name(path)),
        (None, Some(path)) => (
            input::report_of_events(path, &args.catalog)?,
            file_name(path),
        ),
        (None, None) => anyhow::bail!("give --report FILE or --events FILE"),
    };
    let text = match &args.diff_meta {
        Some(meta) => {
            let text = fs::read_to_string(meta)
                .with_context(|| format!("cannot read the /meta response {}", meta.display()))?;
            let documented = meta_diff::parse_meta(&meta.display().to_string(), &text)?;
            meta_diff::render(&report, &documented, &source, &file_name(meta))
        }
        None => {
            let options = plan::Options {
                follow_cnames: args.follow_cnames,
                include_undeclared: args.include_undeclared,
            };
            let plan = plan::build(&report, &catalog, options);
            for skipped in &plan.skipped {
                eprintln!(
                    "observer: {source}: {:?} left out: not a host name ({})",
                    skipped.text, skipped.why
                );
            }
            render(&plan, args.format, &source)
        }
    };
    crate::output::write_out(&args.out, &text, "the rules")
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
    clean(&path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    ))
}

/// Text from the report made safe for a comment or a quoted string in any rule syntax: printable
/// ASCII without quotes or backslashes (a process name is whatever the process chose).
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '`' | '$' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_cannot_break_out_of_a_comment_or_a_string() {
        assert_eq!(clean("curl"), "curl");
        assert_eq!(
            clean("evil\nhttp_access allow all"),
            "evil?http_access allow all"
        );
        assert_eq!(clean("a\"b\\c`$(x)"), "a'b'c''(x)");
        assert_eq!(clean("naïve"), "na?ve");
    }

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
