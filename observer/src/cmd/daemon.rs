//! `observer daemon`: the capture as a service (docs/daemon.md). Wires the library's daemon
//! state, the control socket, the rotating event log, SIGHUP (catalog reload) and the capture
//! loop (which stops on SIGINT/SIGTERM).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use observer::{
    capture::jobs::JobPids,
    daemon::{
        containers::DockerApi,
        rotate::{EventLog, Limits},
        socket::{self, SocketConfig},
        ContainerLookup, Daemon,
    },
    metrics::serve::{MetricsServer, Render},
    session,
};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::DaemonArgs;

pub async fn run(args: &DaemonArgs) -> anyhow::Result<()> {
    let options = args.catalog.options();
    let catalog = options.load()?;
    let jobs = JobPids::default();
    let mut config = args.capture.config(&catalog);
    config.jobs = Some(jobs.clone());
    config.stats_every = Some(Duration::from_secs(10));
    std::fs::create_dir_all(&args.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            args.state_dir.display()
        )
    })?;
    let mut daemon = Daemon::new(options, jobs, &args.state_dir)?;
    daemon.max_job_reports = args.keep_jobs.max(1);
    daemon.follow_containers = args.docker_socket != std::path::Path::new("none");
    let daemon = Arc::new(Mutex::new(daemon));
    let mut log = EventLog::new(
        &args.state_dir.join("events"),
        Limits {
            total_bytes: args.log_max_mib.saturating_mul(1 << 20),
            max_age: Duration::from_secs(args.log_max_hours.saturating_mul(3600)),
            ..Limits::default()
        },
    )
    .with_context(|| {
        format!(
            "cannot write the event log under {}",
            args.state_dir.display()
        )
    })?;
    let listener = socket::bind(&SocketConfig {
        path: args.socket.clone(),
        group: args.socket_group.clone(),
    })?;
    let server = tokio::spawn(socket::serve(listener, Arc::clone(&daemon)));
    let metrics = match args.metrics {
        Some(addr) => {
            let endpoint = MetricsServer::bind(addr).await?;
            let state = Arc::clone(&daemon);
            let render: Render = Arc::new(move || match state.lock() {
                Ok(d) => d.render_metrics(),
                Err(_) => String::new(),
            });
            eprintln!("observer: metrics at http://{addr}/metrics");
            Some(tokio::spawn(async move {
                if let Err(e) = endpoint.run(render).await {
                    eprintln!("observer: the metrics endpoint stopped: {e}");
                }
            }))
        }
        None => None,
    };
    let reload = {
        let daemon = Arc::clone(&daemon);
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let result = daemon.lock().map(|mut d| d.reload());
                match result {
                    Ok(Ok(())) => eprintln!("observer: SIGHUP: catalog reloaded"),
                    Ok(Err(e)) => eprintln!(
                        "observer: SIGHUP: the catalog did not load, the old one stays: {}",
                        observer::sanitize::lines(&format!("{e:#}"))
                    ),
                    Err(_) => eprintln!("observer: SIGHUP: the daemon's state is unusable"),
                }
            }
        })
    };
    eprintln!(
        "observer: daemon listening on {}; state in {}",
        args.socket.display(),
        args.state_dir.display()
    );
    // Containers are looked up off the capture's path (each cgroup once), a few at a time so
    // that a slow answer does not hold up the others past the daemon's replay window.
    let (lookup_tx, mut lookup_rx) = tokio::sync::mpsc::unbounded_channel::<ContainerLookup>();
    let lookups = (args.docker_socket != std::path::Path::new("none")).then(|| {
        let api = Arc::new(DockerApi::new(&args.docker_socket));
        let daemon = Arc::clone(&daemon);
        let turns = Arc::new(tokio::sync::Semaphore::new(4));
        tokio::spawn(async move {
            while let Some(lookup) = lookup_rx.recv().await {
                let Ok(turn) = Arc::clone(&turns).acquire_owned().await else {
                    return;
                };
                let (api, daemon) = (Arc::clone(&api), Arc::clone(&daemon));
                tokio::spawn(async move {
                    let answer = api.inspect(&lookup.container_id).await;
                    drop(turn);
                    if let Ok(mut d) = daemon.lock() {
                        d.container_found(&lookup, answer);
                    }
                });
            }
        })
    });
    let mut log_failures = 0u64;
    let result = session::run(&config, session::after(args.capture.duration()), |batch| {
        if let Ok(mut d) = daemon.lock() {
            d.observe(batch);
            for lookup in d.take_container_lookups() {
                if lookups.is_some() {
                    let _ = lookup_tx.send(lookup);
                }
            }
        }
        // A full disk must not stop the capture: the log is evidence, the capture the job.
        if let Err(e) = log.write(batch, SystemTime::now()) {
            log_failures += 1;
            if log_failures.is_power_of_two() {
                eprintln!(
                    "observer: warning: the event log is not written ({log_failures} times): {e:#}"
                );
            }
        }
        Ok(())
    })
    .await;
    server.abort();
    reload.abort();
    if let Some(lookups) = lookups {
        lookups.abort();
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    let _ = std::fs::remove_file(&args.socket);
    let _ = log.flush();
    result
}
