//! Command line.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use observer::{
    capture::CaptureConfig,
    catalog::Catalog,
    export::Format,
    proxy::discover::{discover, parse_explicit, DiscoverOptions, WatchedProxy},
    suggest::Format as RuleFormat,
};

/// See which GitHub hosts a self-hosted Actions runner reaches, which are blocked and how,
/// from eBPF probes in the kernel.
#[derive(Debug, Parser)]
#[command(name = "observer", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every DNS query and response and every TCP flow to watched ports as they happen,
    /// each flow named and classified against the host-group catalog.
    Watch(WatchArgs),
    /// Capture without printing, then write the audit report (and optionally the event log).
    Record(RecordArgs),
    /// Rebuild the audit report offline, without root, from an event log; or, as `report merge`,
    /// combine the reports of several runners.
    Report(ReportArgs),
    /// Print the host-group catalog in effect.
    Catalog(CatalogCmdArgs),
    /// Preflight: resolve and connect (TCP, then TLS with the right SNI) to every host the runner
    /// needs, say which step fails and why; exit 0 when the essential hosts work.
    Check(CheckArgs),
    /// Firewall rules to paste (squid, nftables, iptables, harden-runner, Cilium, Suricata, Azure
    /// Firewall, AWS Network Firewall, plain list) that allow what the runner used and nothing
    /// more; or, with --diff-meta, what was used against a saved GET /meta response.
    Suggest(SuggestArgs),
    /// The live terminal UI: the verdict, every group and host with its status and rates,
    /// undeclared destinations, flows, and what changed; or a recorded event log replayed
    /// (`--replay EVENTS`, no root needed). Keys: `?`.
    Tui(TuiArgs),
    /// Capture continuously as a service: a rotating event log and per-job reports in the state
    /// directory, a control socket for the runner's job hooks, optional Prometheus metrics
    /// (docs/daemon.md).
    Daemon(DaemonArgs),
    /// From the runner's job hooks: tell `observer daemon` a job started (optionally gate it on
    /// required groups) or completed (write its report and job summary).
    Job(JobArgs),
}

/// `observer daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The control socket the job hooks talk to.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// The group whose members (the runners' users) may use the socket besides root; without
    /// it only root can.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Where the event log and the job reports are kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/observer")]
    pub state_dir: PathBuf,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off by default).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,

    /// The event log's total size kept, in MiB (the oldest files go first).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub log_max_mib: u64,

    /// Event-log files older than this many hours are removed.
    #[arg(long, value_name = "HOURS", default_value_t = 168)]
    pub log_max_hours: u64,

    /// Job reports kept in the state directory (the oldest go first).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub keep_jobs: usize,

    /// The Docker Engine API socket asked which runner created a container (containers carrying
    /// a job's runner label are the job's); `none` attributes no containers to jobs.
    #[arg(long, value_name = "PATH", default_value = observer::daemon::containers::DEFAULT_DOCKER_SOCKET)]
    pub docker_socket: PathBuf,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub catalog: CatalogArgs,
}

/// Where `observer daemon` listens by default.
pub const DEFAULT_SOCKET: &str = "/run/observer/observer.sock";

/// `observer job started|completed`.
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(subcommand)]
    pub command: JobCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// The job-started hook (ACTIONS_RUNNER_HOOK_JOB_STARTED): the daemon follows this job's
    /// processes from now on. With --require, fails the job (exit 20) when a required group is
    /// blocked now.
    Started(JobStartedArgs),
    /// The job-completed hook (ACTIONS_RUNNER_HOOK_JOB_COMPLETED): the job's report is written
    /// to the daemon's state directory and its summary appended to $GITHUB_STEP_SUMMARY. Exits
    /// 21 only with --fail-on and a finding of that kind.
    Completed(JobCompletedArgs),
}

#[derive(Debug, Args)]
pub struct JobStartedArgs {
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Groups the job needs (catalog ids, e.g. essential): the job fails before it runs when
    /// one is blocked now.
    #[arg(long, value_name = "GROUP", num_args = 1..)]
    pub require: Vec<String>,
}

#[derive(Debug, Args)]
pub struct JobCompletedArgs {
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Exit 21 when the job's report has findings of these kinds.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND")]
    pub fail_on: Vec<FailOn>,

    /// Do not append the summary to $GITHUB_STEP_SUMMARY.
    #[arg(long)]
    pub no_summary: bool,
}

/// What `--fail-on` weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// A documented host the job needed was blocked.
    Blocked,
    /// The job reached destinations GitHub's list does not document.
    Undeclared,
    /// A transfer of the job was below the minimum rate.
    Slow,
}

/// What to capture, and for how long.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Destination TCP ports to watch, comma-separated [default: the catalog's ports, 443].
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Option<Vec<u16>>,

    /// Watch TCP flows to every destination port.
    #[arg(long, conflicts_with = "ports")]
    pub all_ports: bool,

    /// Stop after this many seconds (default: until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<Duration>,

    /// An HTTP proxy the runner goes through, ADDR:PORT, NAME:PORT or a URL (repeatable): its
    /// port is watched and flows to it are named by their CONNECT target. Proxies are also
    /// found in running runners' environment, their .env and .proxy files, and this process's
    /// https_proxy/http_proxy (docs/proxy.md).
    #[arg(long = "proxy", value_name = "ADDR:PORT", value_parser = parse_proxy)]
    pub proxies: Vec<String>,

    /// A runner's directory (the one with `run.sh`), whose .env and .proxy files name its
    /// proxy (repeatable); running runners' directories are found by themselves.
    #[arg(long = "runner-dir", value_name = "DIR")]
    pub runner_dirs: Vec<PathBuf>,

    /// Watch only the proxies given with --proxy: do not look for them in runner processes,
    /// runner directories and the environment.
    #[arg(long)]
    pub no_proxy_discovery: bool,

    /// Experimental: count exact repeats of a DNS exchange read less than a second before in the
    /// kernel instead of copying them (`dns_repeats`; docs/events.md says what it may still get
    /// wrong). Off by default: every DNS packet is copied.
    #[arg(long)]
    pub count_dns_repeats: bool,
}

impl CaptureArgs {
    /// The capture's settings, with the proxies found on this host (what could not be used is
    /// said on stderr).
    pub fn config(&self, catalog: &Catalog) -> CaptureConfig {
        let found = discover(&DiscoverOptions::on_this_host(
            self.proxies.clone(),
            self.runner_dirs.clone(),
            !self.no_proxy_discovery,
        ));
        for problem in &found.problems {
            eprintln!(
                "observer: warning: proxy not watched: {}",
                observer::sanitize::line(problem)
            );
        }
        self.config_with(catalog, found.proxies)
    }

    pub fn config_with(&self, catalog: &Catalog, proxies: Vec<WatchedProxy>) -> CaptureConfig {
        CaptureConfig {
            ports: self.ports.clone().unwrap_or_else(|| catalog.ports()),
            all_ports: self.all_ports,
            proxies,
            jobs: None,
            stats_every: None,
            dns_repeats: self.count_dns_repeats,
        }
    }

    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }
}

fn parse_proxy(text: &str) -> Result<String, String> {
    parse_explicit(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is not a usable duration"))
}

/// Which catalog to use.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// A TOML catalog file that extends (or, with `mode = "replace"`, replaces) the built-in
    /// catalog; see docs/catalog.md. May be given several times.
    #[arg(long, value_name = "FILE")]
    pub catalog: Vec<PathBuf>,

    /// A saved `GET /meta` response whose `domains.actions_inbound` becomes a group. May be
    /// given several times.
    #[arg(long, value_name = "FILE")]
    pub meta: Vec<PathBuf>,

    /// An address a DNS filter answers instead of the real one (besides 0.0.0.0, :: and
    /// 127.0.0.0/8): names answered with it are reported as `dns_sinkhole`. May be repeated.
    #[arg(long, value_name = "ADDR")]
    pub sinkhole: Vec<std::net::IpAddr>,

    /// The rate below which a transfer of 32 KiB or more is `slow_throughput`, in kbit/s (the
    /// document asks for at least 70 kbit/s up and down).
    #[arg(long, value_name = "KBIT/S", default_value_t = 70.0, value_parser = parse_rate)]
    pub min_throughput: f64,

    /// How long the runner's long poll waits for an answer, in seconds: a connection to the
    /// essential group cut while a request waited, well before this, is `long_poll_cut`.
    #[arg(long, value_name = "SECS", default_value = "50", value_parser = parse_seconds)]
    pub long_poll: Duration,

    /// Flows kept for the report; more are counted, and the report says it is incomplete.
    /// A report of the default 200,000 flows takes about 1.5 GB to build (docs/architecture.md).
    #[arg(long, value_name = "N", default_value_t = observer::pipeline::correlate::MAX_FLOWS,
          value_parser = clap::value_parser!(usize))]
    pub max_flows: usize,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a positive number of kbit/s")),
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// One JSON object per line (schema in docs/events.md) instead of aligned text.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Where to write the report; `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// The report's format: JSON (docs/report.md), or Markdown, HTML or CSV of flows
    /// (docs/report-formats.md).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Also keep the event log (the lines `watch --json` prints), for `observer report`.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub catalog: CatalogArgs,
}

/// `observer report EVENTS` rebuilds the report of an event log; `observer report merge
/// A.json B.json ...` combines the JSON reports of several runners (docs/report-formats.md).
/// (An event log named `merge` is given as `./merge`.)
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: Option<ReportCommand>,

    /// An event log written by `observer record --events` or `observer watch --json`.
    #[arg(required_unless_present = "jobs")]
    pub events: Option<PathBuf>,

    /// List the job reports `observer daemon` keeps (newest first) instead.
    #[arg(long, conflicts_with = "events")]
    pub jobs: bool,

    /// The daemon's state directory, for --jobs.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/observer",
        requires = "jobs"
    )]
    pub state_dir: PathBuf,

    /// Where to write the report; `-` for stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub out: PathBuf,

    /// The report's format: JSON (docs/report.md), or Markdown, HTML or CSV of flows
    /// (docs/report-formats.md).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    #[command(flatten)]
    pub catalog: CatalogArgs,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Combine the JSON reports of several runners into one fleet report: statuses per runner,
    /// the worst across runners, counts summed.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// JSON reports (`observer record`/`report --format json`), one per runner.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,

    /// The runner's name in the merged report, one per report in the same order
    /// [default: each file's stem].
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,

    /// Where to write the merged report; `-` for stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub out: PathBuf,

    /// The merged report's format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print JSON (docs/check.md) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Check this name instead of the catalog's hosts. May be repeated.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,

    /// DNS server to ask (`ADDR` or `ADDR:PORT`) [default: the first nameserver of
    /// /etc/resolv.conf].
    #[arg(long, value_name = "ADDR", value_parser = parse_resolver)]
    pub resolver: Option<std::net::SocketAddr>,

    /// Extra PEM file of CA certificates to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Seconds to wait for each DNS answer (each query is sent twice).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    pub dns_timeout: Duration,

    /// Seconds to wait for a TCP connection.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub connect_timeout: Duration,

    /// Seconds to wait for the TLS handshake.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub tls_timeout: Duration,

    /// TCP port to connect to.
    #[arg(long, default_value_t = 443, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Do not watch the attempts with the kernel capture (it needs root; without it the check
    /// runs anyway and says so).
    #[arg(long)]
    pub no_capture: bool,

    #[command(flatten)]
    pub catalog: CatalogArgs,
}

fn parse_resolver(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse::<std::net::SocketAddr>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
        .map_err(|_| format!("{text:?} is not an IP address (optionally with :port)"))
}

#[derive(Debug, Args)]
pub struct CatalogCmdArgs {
    /// Print it as a TOML catalog file (usable with `--catalog`) instead of a table.
    #[arg(long)]
    pub toml: bool,

    #[command(flatten)]
    pub catalog: CatalogArgs,
}

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
    #[arg(long, value_enum, default_value_t = RuleFormat::Domains)]
    pub format: RuleFormat,

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

/// `observer tui` options.
#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Play a recorded event log (`observer record --events`, `observer watch --json`) instead
    /// of capturing; needs no root.
    #[arg(
        long,
        value_name = "EVENTS",
        conflicts_with_all = ["ports", "all_ports", "duration"]
    )]
    pub replay: Option<PathBuf>,

    /// Replay speed: 1 plays at the recorded pace, 10 ten times faster, 0 as fast as possible
    /// (the final state then stays on screen).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1.0,
        value_parser = parse_speed,
        requires = "replay"
    )]
    pub speed: f64,

    /// Where `e` (the report) and `s` (rule suggestions) write their files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub export_dir: PathBuf,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub catalog: CatalogArgs,
}

fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a speed (0, or a positive factor)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    fn watch(args: &[&str]) -> WatchArgs {
        let argv = ["observer", "watch"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Watch(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ports_default_to_the_catalog_and_are_checked() {
        let catalog = Catalog::builtin();
        assert_eq!(
            watch(&[]).capture.config_with(&catalog, Vec::new()).ports,
            [443]
        );
        assert_eq!(
            watch(&["--ports", "443,8443"])
                .capture
                .config(&catalog)
                .ports,
            [443, 8443]
        );
        assert!(Cli::try_parse_from(["observer", "watch", "--ports", "0"]).is_err());
        assert!(Cli::try_parse_from(["observer", "watch", "--ports", "70000"]).is_err());
        assert!(
            Cli::try_parse_from(["observer", "watch", "--ports", "443", "--all-ports"]).is_err()
        );
    }

    #[test]
    fn durations_are_checked() {
        assert_eq!(
            watch(&["--duration", "1.5"]).capture.duration,
            Some(Duration::from_millis(1500))
        );
        for bad in ["-1", "abc", "inf", "NaN"] {
            assert!(
                Cli::try_parse_from(["observer", "watch", "--duration", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn check_options_parse() {
        let cli = Cli::try_parse_from([
            "observer",
            "check",
            "--resolver",
            "198.18.0.2",
            "--host",
            "api.github.com",
            "--connect-timeout",
            "1.5",
        ])
        .unwrap();
        let Command::Check(c) = cli.command else {
            panic!()
        };
        assert_eq!(c.resolver, Some("198.18.0.2:53".parse().unwrap()));
        assert_eq!(c.hosts, ["api.github.com"]);
        assert_eq!(c.connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.port, 443);
        assert!(Cli::try_parse_from(["observer", "check", "--resolver", "dns.example"]).is_err());
    }

    #[test]
    fn report_writes_to_stdout_by_default() {
        let Command::Report(r) = Cli::try_parse_from(["observer", "report", "ev.jsonl"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(r.out, PathBuf::from("-"));
        assert_eq!(r.format, Format::Json);
        assert!(r.command.is_none());
    }

    fn report(args: &[&str]) -> Result<ReportArgs, clap::Error> {
        let argv = ["observer", "report"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Report(r) => Ok(r),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn report_takes_an_event_log_or_merges_reports() {
        let r = report(&["ev.jsonl", "--out", "r.md", "--format", "markdown"]).unwrap();
        assert_eq!(r.events, Some(PathBuf::from("ev.jsonl")));
        assert_eq!((r.out, r.format), (PathBuf::from("r.md"), Format::Markdown));
        assert_eq!(
            report(&["ev.jsonl", "--format", "md"]).unwrap().format,
            Format::Markdown
        );

        let r = report(&[
            "merge", "a.json", "b.json", "--out", "m.json", "--label", "x", "--label", "y",
        ])
        .unwrap();
        assert_eq!(r.events, None);
        let Some(ReportCommand::Merge(m)) = r.command else {
            panic!("{r:?}")
        };
        assert_eq!(
            m.reports,
            [PathBuf::from("a.json"), PathBuf::from("b.json")]
        );
        assert_eq!(m.labels, ["x", "y"]);
        assert_eq!((m.out, m.format), (PathBuf::from("m.json"), Format::Json));
        let Some(ReportCommand::Merge(m)) = report(&["merge", "a.json", "--format", "html"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(m.format, Format::Html);

        // Neither an event log nor a merge, a merge of nothing, an unknown format.
        assert!(report(&[]).is_err());
        assert!(report(&["merge"]).is_err());
        assert!(report(&["ev.jsonl", "--format", "pdf"]).is_err());
        // An event log named like the subcommand is reached through a path.
        assert_eq!(
            report(&["./merge"]).unwrap().events,
            Some(PathBuf::from("./merge"))
        );
    }

    fn tui(args: &[&str]) -> Result<TuiArgs, clap::Error> {
        let argv = ["observer", "tui"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Tui(t) => Ok(t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_parse_and_conflict() {
        let live = tui(&["--ports", "443,8443", "--duration", "5"]).unwrap();
        assert_eq!(live.replay, None);
        assert_eq!(live.capture.ports, Some(vec![443, 8443]));
        assert_eq!(live.export_dir, PathBuf::from("."));
        let replay = tui(&["--replay", "ev.jsonl", "--speed", "0"]).unwrap();
        assert_eq!(replay.replay, Some(PathBuf::from("ev.jsonl")));
        assert_eq!(replay.speed, 0.0);
        assert_eq!(tui(&["--replay", "ev.jsonl"]).unwrap().speed, 1.0);
        for bad in [
            &["--speed", "2"][..],
            &["--replay", "x", "--speed", "-1"],
            &["--replay", "x", "--speed", "inf"],
            &["--replay", "x", "--duration", "5"],
            &["--replay", "x", "--all-ports"],
        ] {
            assert!(tui(bad).is_err(), "{bad:?}");
        }
    }
}
