//! `observer check`: the active preflight (see `observer::check`), watched by the kernel capture when the
//! observer has the privileges for it, so every failed attempt comes with what the kernel saw
//! (retransmitted SYNs, a RST, the ICMP error).

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use serde::Serialize;

use observer::{
    capture::{kernel_caps::DataSource, Capture, CaptureConfig},
    check::{self, CheckOptions, CheckReport, HostCheck},
    pipeline::correlate::{Correlator, FlowEntry},
    pipeline::events::Outcome,
    session,
};

use crate::cli::CheckArgs;

/// What the kernel saw of the check's own connections to one host.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelFlow {
    pub dst: SocketAddr,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub established: bool,
    pub rst_received: bool,
    pub syn_retransmits: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    report: &'a CheckReport,
    /// What the eBPF capture saw of the check's connections, per host; null without capture.
    kernel: Option<KernelSection>,
}

#[derive(Serialize)]
struct KernelSection {
    /// Why there is no kernel evidence, when the capture could not run.
    note: Option<String>,
    /// Needs this kernel serves by a fallback, or not at all (see docs/kernels in the README).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fallbacks: Vec<DataSource>,
    hosts: Vec<KernelHost>,
}

#[derive(Serialize)]
struct KernelHost {
    name: String,
    flows: Vec<KernelFlow>,
}

/// Runs the check; returns the exit status (docs/check.md).
pub async fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let catalog = args.catalog.options().load()?;
    let targets: Vec<check::Target> = if args.hosts.is_empty() {
        check::default_targets(&catalog)
    } else {
        args.hosts
            .iter()
            .map(|h| check::target(&catalog, h, None))
            .collect()
    };
    let options = CheckOptions {
        resolver: args.resolver,
        dns_timeout: args.dns_timeout,
        connect_timeout: args.connect_timeout,
        tls_timeout: args.tls_timeout,
        port: args.port,
        extra_ca: args.ca_file.clone(),
        proxy: check::proxy_from_env(|k| std::env::var(k).ok()),
        sinkholes: args.catalog.sinkhole.clone(),
        ..CheckOptions::default()
    };

    let config = CaptureConfig {
        ports: vec![args.port],
        all_ports: false,
        proxies: Vec::new(),
        jobs: None,
        stats_every: None,
        dns_repeats: false,
    };
    let capture = if args.no_capture {
        Err("--no-capture".to_owned())
    } else {
        Capture::start(&config).map_err(|e| e.to_string())
    };
    let mut correlator = Correlator::new(catalog.clone());
    let fallbacks: Vec<DataSource> = capture
        .as_ref()
        .map(|c| {
            c.plan
                .sources
                .iter()
                .filter(|s| s.fallback)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let (results, kernel_note) = match capture {
        Ok(capture) => {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let watch = session::run_started(
                capture,
                &config,
                async {
                    let _ = stopped.await;
                },
                |batch| {
                    for (ts, observed) in batch.iter_mut() {
                        correlator.observe(*ts, observed);
                    }
                    Ok(())
                },
            );
            let probe = async {
                let results = check::check(&targets, &options).await;
                // Let the last closes and socket errors reach the capture.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = stop.send(());
                results
            };
            let (watched, results) = tokio::join!(watch, probe);
            let note = watched.err().map(|e| format!("the capture failed: {e:#}"));
            (results?, note)
        }
        Err(why) => (check::check(&targets, &options).await?, Some(why)),
    };

    let report = check::build_report(&results, &catalog);
    let kernel = (!args.no_capture).then(|| KernelSection {
        hosts: results
            .iter()
            .map(|h| KernelHost {
                name: h.name.clone(),
                flows: kernel_flows(h, &correlator, args.port),
            })
            .collect(),
        note: kernel_note.clone(),
        fallbacks,
    });
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&Output {
            report: &report,
            kernel,
        })?;
        json.push('\n');
        json
    } else {
        let mut text = check::render_table(&results, &catalog);
        text.push_str(&kernel_table(kernel.as_ref()));
        // What servers, proxies and the kernel said is shown sanitized.
        observer::sanitize::lines(&text).into_owned()
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(check::exit_code(&results, &catalog))
}

/// The flows this process opened to the host's addresses, as the kernel saw them.
fn kernel_flows(host: &HostCheck, correlator: &Correlator, port: u16) -> Vec<KernelFlow> {
    let own = std::process::id();
    let addrs: Vec<IpAddr> = host.addresses.iter().map(|a| a.addr).collect();
    correlator
        .flows()
        .iter()
        .filter(|f| f.process.pid == own && f.dst.port() == port && addrs.contains(&f.dst.ip()))
        .map(|f: &FlowEntry| KernelFlow {
            dst: f.dst,
            outcome: f.outcome,
            error: f.error.clone(),
            established: f.established_ns.is_some(),
            rst_received: f.rst_received,
            syn_retransmits: f.syn_retransmits,
            bytes_sent: f.bytes_sent,
            bytes_received: f.bytes_received,
        })
        .collect()
}

fn kernel_table(kernel: Option<&KernelSection>) -> String {
    let Some(kernel) = kernel else {
        return String::new();
    };
    let mut out = String::from("\nWhat the kernel saw of these connections (eBPF):\n");
    if let Some(note) = &kernel.note {
        out.push_str(&format!("  not available: {note}\n"));
        return out;
    }
    for source in &kernel.fallbacks {
        out.push_str(&format!(
            "  this kernel, {}: {}\n",
            source.need.replace('_', " "),
            source.detail
        ));
    }
    for host in &kernel.hosts {
        for f in &host.flows {
            let mut line = format!(
                "  {:<44} {:<28} {}",
                host.name,
                f.dst.to_string(),
                f.outcome.map_or("open", Outcome::as_str)
            );
            if let Some(e) = &f.error {
                line.push_str(&format!(" ({e})"));
            }
            if f.syn_retransmits > 0 {
                line.push_str(&format!(", {} SYN retransmitted", f.syn_retransmits));
            }
            if f.rst_received {
                line.push_str(", RST received");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}
