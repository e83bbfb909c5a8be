//! Command line.

use clap::{Args, Parser, Subcommand};

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
    /// Print every DNS query and response and every TCP flow to watched ports, as they happen.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// One JSON object per line (schema in docs/events.md) instead of aligned text.
    #[arg(long)]
    pub json: bool,

    /// Destination TCP ports to watch, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "443", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,

    /// Watch TCP flows to every destination port.
    #[arg(long, conflicts_with = "ports")]
    pub all_ports: bool,

    /// Stop after this many seconds (default: until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ports_parse_and_default_to_443() {
        let Command::Watch(w) = Cli::try_parse_from(["observer", "watch"]).unwrap().command;
        assert_eq!(w.ports, [443]);
        let Command::Watch(w) = Cli::try_parse_from(["observer", "watch", "--ports", "443,8443"])
            .unwrap()
            .command;
        assert_eq!(w.ports, [443, 8443]);
        assert!(Cli::try_parse_from(["observer", "watch", "--ports", "0"]).is_err());
        assert!(Cli::try_parse_from(["observer", "watch", "--ports", "70000"]).is_err());
    }
}
