//! `observer daemon`: the capture as a service (docs/daemon.md). One capture runs for the
//! daemon's life; every batch of observations goes to
//!
//! - the host's correlator, which forgets each flow once it has closed (memory follows the open
//!   flows), and the Prometheus metrics it feeds ([`crate::metrics`]): their statuses over the
//!   last ten minutes are what `job started --require` judges "now" by;
//! - each job followed: a correlator fed only the job's observations: flows and DNS lookups
//!   whose process the kernel stamped with the job's slot (the job's `Runner.Worker` and every
//!   descendant, see `capture::jobs`), and the capture's own health;
//! - the rotating event log in the state directory ([`rotate`]).
//!
//! Containers the job's runner creates (`container:` jobs, services, Docker actions) are found
//! by the runner's Docker label ([`containers`]): their cgroups' flows and lookups are the job's
//! too, including those that came in the seconds before the container was looked up.
//!
//! Jobs are started and completed over the control socket ([`socket`], [`protocol`]) by the
//! runner's hooks (`observer job started|completed`). The job's processes are found from the
//! caller's own pid, which the kernel gives with the connection: a caller can only name its own
//! `Runner.Worker`, never another runner's.

pub mod containers;
pub mod protocol;
pub mod rotate;
pub mod socket;
pub mod summary;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
};

use crate::{
    capture::jobs::{ancestry, descendants, JobPids},
    metrics::{Metrics, MetricsConfig},
    options::CatalogOptions,
    pipeline::correlate::Correlator,
    pipeline::events::Observed,
    report::{self, rfc3339, JobContainer, JobSection, Report, Status},
    session::Batch,
};

use protocol::{Findings, JobIdentity, Response};

/// The command name of the runner's job process.
pub const WORKER_COMM: &str = "Runner.Worker";
/// Jobs followed at once (a host with more runner instances than this is unusual).
pub const MAX_JOBS: usize = 256;
/// Flows of followed jobs remembered by id (their progress and first bytes carry only the id).
const MAX_JOB_FLOWS: usize = 262_144;
/// How often jobs whose `Runner.Worker` ended without completing are looked for.
const REAP_EVERY_NS: u64 = 10_000_000_000;
/// Containers listed per job.
const MAX_JOB_CONTAINERS: usize = 64;
/// Cgroups remembered per job (for their workloads).
const MAX_JOB_CGROUPS: usize = 4096;
/// Container cgroups looked up in the Docker API (each once; more are not looked up).
const MAX_CONTAINER_LOOKUPS: usize = 4096;
/// Observations of no job kept for a container looked up late (a container's first flows come
/// before the answer about it), at most this many and this old.
const RECENT_MAX: usize = 4096;
const RECENT_NS: u64 = 10_000_000_000;
/// A container created this long before its job started is still the job's (clock skew).
const CREATED_SLACK_NS: u64 = 2_000_000_000;

/// A container cgroup to look up in the Docker API ([`Daemon::take_container_lookups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLookup {
    pub cgroup_id: u64,
    /// The cgroup's path (below the cgroup2 mount), checked against the container's own.
    pub cgroup: String,
    pub container_id: String,
}

/// One job being followed.
struct ActiveJob {
    slot: u32,
    identity: JobIdentity,
    worker_pid: u32,
    /// The worker's start time (`/proc/PID/stat`): a pid reused by another process is not it.
    worker_start: Option<u64>,
    started_ns: u64,
    processes_listed: u64,
    correlator: Correlator,
    /// Where its report is (written at the first `job completed`, rewritten at later ones and
    /// when its worker ends).
    report_path: Option<PathBuf>,
    /// When `job completed` first came; the job is followed until its worker ends all the same
    /// (job code can call `job completed` itself: what it does after still counts).
    completed_ns: Option<u64>,
    /// Observations of the job after its first `job completed`.
    after_completion: u64,
    /// Its runner's Docker instance label, or why it is unknown.
    runner_label: Result<String, String>,
    containers: Vec<JobContainer>,
    /// The wall clock at its start (containers' creation times are the wall clock's).
    started_wall_ns: u64,
    /// What may be missing of its containers: said in its report.
    container_gaps: ContainerGaps,
    /// The cgroups of its flows and lookups (their workloads are given to it as they are named).
    cgroups: HashSet<u64>,
}

/// Containers a job may have had that were not attributed to it.
#[derive(Debug, Default)]
struct ContainerGaps {
    /// Ended before they were looked up.
    ended: u64,
    /// Carried the label of more than one followed job's runner.
    ambiguous: u64,
    /// Not looked up: the daemon's lookup budget was spent.
    not_looked_up: u64,
    /// The last failed lookup.
    problem: Option<String>,
}

impl ContainerGaps {
    fn note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.ended > 0 {
            parts.push(format!(
                "{} container(s) ended before they were looked up",
                self.ended
            ));
        }
        if self.ambiguous > 0 {
            parts.push(format!(
                "{} container(s) carried the label of more than one followed job's runner and \
                 were given to none",
                self.ambiguous
            ));
        }
        if self.not_looked_up > 0 {
            parts.push(format!(
                "{} container cgroup(s) were not looked up (more than {MAX_CONTAINER_LOOKUPS} \
                 seen while this job ran)",
                self.not_looked_up
            ));
        }
        if let Some(p) = &self.problem {
            parts.push(format!("a lookup failed: {p}"));
        }
        (!parts.is_empty()).then(|| format!("containers may be missing: {}", parts.join("; ")))
    }
}

/// What the daemon knows; shared by the capture loop and the control socket.
pub struct Daemon {
    options: CatalogOptions,
    /// The host's correlator (closed flows forgotten) and the metrics counted from it.
    host: Correlator,
    metrics: Metrics,
    /// `capture_started`, replayed into every new correlator.
    started: Option<(u64, Observed)>,
    jobs: HashMap<u32, ActiveJob>,
    /// Flow id → job slot, for observations that carry only the flow's id.
    job_flows: HashMap<u64, u32>,
    next_slot: u32,
    job_pids: JobPids,
    state_dir: PathBuf,
    /// Job reports kept in the state directory (oldest removed first).
    pub max_job_reports: usize,
    /// Whether containers are looked up (the Docker API socket is set).
    pub follow_containers: bool,
    proc_root: PathBuf,
    /// The latest time seen (nanoseconds since the epoch).
    now_ns: u64,
    last_reap_ns: u64,
    /// Container cgroup id → job slot.
    cgroup_jobs: HashMap<u64, u32>,
    /// Observations of no job while a job may still gain containers (see [`RECENT_MAX`]).
    recent: VecDeque<(u64, Observed)>,
    lookups: Vec<ContainerLookup>,
    /// Container cgroups looked up, and when (the wall clock).
    looked_up: HashMap<u64, u64>,
    /// Container lookups that failed.
    lookup_failures: u64,
}

impl Daemon {
    pub fn new(
        options: CatalogOptions,
        job_pids: JobPids,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            host: options.correlator()?.forgetting_closed_flows(),
            metrics: Metrics::new(MetricsConfig::default()),
            options,
            started: None,
            jobs: HashMap::new(),
            job_flows: HashMap::new(),
            next_slot: 1,
            job_pids,
            state_dir: state_dir.to_owned(),
            max_job_reports: 1000,
            follow_containers: true,
            proc_root: PathBuf::from("/proc"),
            now_ns: 0,
            last_reap_ns: 0,
            cgroup_jobs: HashMap::new(),
            recent: VecDeque::new(),
            lookups: Vec::new(),
            looked_up: HashMap::new(),
            lookup_failures: 0,
        })
    }

    /// Where job reports are written.
    pub fn jobs_dir(&self) -> PathBuf {
        self.state_dir.join("jobs")
    }

    /// Reads the catalog files again (SIGHUP): the flows that open from now on, and new jobs,
    /// are judged by the new catalog.
    pub fn reload(&mut self) -> anyhow::Result<()> {
        let catalog = self.options.load()?;
        self.host.set_catalog(catalog);
        Ok(())
    }

    /// Takes one batch of the capture.
    pub fn observe(&mut self, batch: &Batch) {
        for (ts, observed) in batch {
            self.now_ns = self.now_ns.max(*ts);
            if let Observed::CaptureStarted { .. } = observed {
                self.started = Some((*ts, observed.clone()));
            }
            let slot = self.job_of(observed);
            if let Some(job) = slot.and_then(|s| self.jobs.get_mut(&s)) {
                if let Some(cgroup_id) = cgroup_of(observed) {
                    if job.cgroups.len() < MAX_JOB_CGROUPS {
                        job.cgroups.insert(cgroup_id);
                    }
                }
                job.correlator.observe(*ts, &mut observed.clone());
                if job.completed_ns.is_some() {
                    job.after_completion += 1;
                }
            } else if matches!(observed, Observed::CaptureStats(_)) {
                for job in self.jobs.values_mut() {
                    job.correlator.observe(*ts, &mut observed.clone());
                }
            } else if let Observed::CgroupSeen { cgroup_id, .. } = observed {
                // The workload of the job's own cgroups only.
                for job in self.jobs.values_mut() {
                    if job.cgroups.contains(cgroup_id) {
                        job.correlator.observe(*ts, &mut observed.clone());
                    }
                }
            } else if self.may_gain_containers() && is_traffic(observed) {
                self.remember(*ts, observed);
            }
            if let Observed::CgroupSeen {
                cgroup_id,
                workload,
            } = observed
            {
                self.look_up(*cgroup_id, workload);
            }
            let mut observed = observed.clone();
            self.host.observe(*ts, &mut observed);
            self.metrics.observe(&self.host, *ts, &observed);
        }
        if !self.may_gain_containers() {
            // No job can claim a container looked up now: start afresh with the next one.
            self.looked_up.clear();
            self.recent.clear();
        }
        if self.now_ns.saturating_sub(self.last_reap_ns) >= REAP_EVERY_NS {
            self.last_reap_ns = self.now_ns;
            self.reap();
        }
    }

    /// The job slot an observation belongs to, if any.
    fn job_of(&mut self, observed: &Observed) -> Option<u32> {
        match observed {
            Observed::FlowOpened {
                flow_id, process, ..
            }
            | Observed::FlowEstablished {
                flow_id, process, ..
            } => {
                let slot = process
                    .job
                    .or_else(|| self.cgroup_jobs.get(&process.cgroup_id).copied())?;
                if self.job_flows.len() < MAX_JOB_FLOWS {
                    self.job_flows.insert(*flow_id, slot);
                }
                Some(slot)
            }
            Observed::FlowClosed(c) => self
                .job_flows
                .remove(&c.flow_id)
                .or(c.process.job)
                .or_else(|| self.cgroup_jobs.get(&c.process.cgroup_id).copied()),
            Observed::FlowProgress { flow_id, .. } => self.job_flows.get(flow_id).copied(),
            Observed::FlowPayload(p) => self.job_flows.get(&p.flow_id).copied(),
            Observed::DnsQuery(d) | Observed::DnsResponse(d) => d
                .process
                .as_ref()
                .and_then(|p| p.job)
                .or_else(|| self.cgroup_jobs.get(&d.cgroup_id).copied()),
            _ => None,
        }
    }

    /// The `Runner.Worker` among `pid`'s ancestors (`pid` itself included).
    fn worker_of(&self, pid: u32) -> Result<u32, String> {
        worker_in(&ancestry(&self.proc_root, pid))
    }

    /// Closes the jobs whose `Runner.Worker` is gone: their final report is written (marked
    /// `abandoned` when the completed hook never ran: a cancelled job, a crashed runner).
    pub fn reap(&mut self) {
        let gone: Vec<u32> = self
            .jobs
            .values()
            .filter(|j| {
                crate::capture::jobs::proc_info(&self.proc_root, j.worker_pid)
                    .is_none_or(|p| p.comm != WORKER_COMM || p.start_time != j.worker_start)
            })
            .map(|j| j.slot)
            .collect();
        for slot in gone {
            self.job_pids.remove_job(slot);
            self.job_flows.retain(|_, s| *s != slot);
            self.cgroup_jobs.retain(|_, s| *s != slot);
            if let Some(mut job) = self.jobs.remove(&slot) {
                let identity = job.identity.clone();
                if let Err(e) = self.write_job(&mut job, identity) {
                    eprintln!(
                        "observer: cannot write a job's final report: {}",
                        crate::sanitize::line(&e)
                    );
                }
            }
        }
    }

    /// `job started` from the process `peer_pid`.
    pub fn job_started(
        &mut self,
        peer_pid: u32,
        identity: JobIdentity,
        require: &[String],
    ) -> Response {
        self.reap();
        let chain = ancestry(&self.proc_root, peer_pid);
        let worker = match worker_in(&chain) {
            Ok(w) => w,
            Err(e) => return Response::failed(e),
        };
        // Any process can call itself Runner.Worker: a job's own code must not start a job of
        // its own (its traffic would leave the real job's report).
        if let Some(j) = self.jobs.values().find(|j| {
            chain
                .iter()
                .any(|p| p.pid == j.worker_pid && p.pid != worker)
        }) {
            return Response::failed(format!(
                "this process belongs to the job followed for {WORKER_COMM} {}: a job's own \
                 processes cannot start another job",
                j.worker_pid
            ));
        }
        if self.jobs.values().any(|j| j.worker_pid == worker) {
            // The same worker starting again: the earlier start's report would be wrong.
            return Response::failed(format!(
                "a job is already followed for {WORKER_COMM} {worker}; each job runs its \
                 started hook once"
            ));
        }
        if self.jobs.len() >= MAX_JOBS {
            return Response::failed(format!("{MAX_JOBS} jobs are followed already"));
        }
        let slot = self.next_slot;
        self.next_slot = self.next_slot.checked_add(1).unwrap_or(1).max(1);
        let mut pids = vec![worker];
        pids.extend(descendants(&self.proc_root, worker));
        if let Err(e) = self.job_pids.add(slot, &pids) {
            self.job_pids.remove_job(slot);
            return Response::failed(format!("cannot follow the job's processes: {e}"));
        }
        let mut correlator = match self.options.correlator() {
            Ok(c) => c,
            Err(e) => return Response::failed(format!("cannot load the catalog: {e:#}")),
        };
        if let Some((ts, started)) = &self.started {
            correlator.observe(*ts, &mut started.clone());
        }
        let runner_label = if self.follow_containers {
            containers::runner_label(&self.proc_root, worker)
        } else {
            Err("--docker-socket none".to_owned())
        };
        self.jobs.insert(
            slot,
            ActiveJob {
                slot,
                identity,
                worker_pid: worker,
                worker_start: crate::capture::jobs::proc_info(&self.proc_root, worker)
                    .and_then(|p| p.start_time),
                started_ns: self.now_ns,
                processes_listed: pids.len() as u64,
                correlator,
                report_path: None,
                completed_ns: None,
                after_completion: 0,
                runner_label,
                containers: Vec::new(),
                started_wall_ns: wall_ns(),
                container_gaps: ContainerGaps::default(),
                cgroups: HashSet::new(),
            },
        );
        let mut response = Response::ok();
        response.blocked = self.blocked_now(require);
        response
    }

    /// Required groups blocked over the metrics' status window (the last ten minutes), as
    /// `group: blocked (host, host)`. A group nobody reached lately is not blocked; an unknown
    /// group id is said so.
    pub fn blocked_now(&self, require: &[String]) -> Vec<String> {
        let statuses = self.metrics.group_statuses(&self.host, self.now_ns);
        let mut out = Vec::new();
        for id in require {
            let Some((_, status, members)) = statuses.iter().find(|(g, ..)| g == id) else {
                out.push(format!("{id}: no such group in the catalog"));
                continue;
            };
            if *status == Status::Blocked {
                let failing: Vec<&str> = members
                    .iter()
                    .filter(|(_, s)| *s == Status::Blocked)
                    .map(|(p, _)| p.as_str())
                    .collect();
                out.push(format!("{id}: blocked ({})", failing.join(", ")));
            }
        }
        out
    }

    /// The metrics' text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.host, self.now_ns)
    }

    /// `job completed` from `peer_pid`: the job's report so far, written to the state
    /// directory, and its summary. The job stays followed until its worker ends, when the report
    /// is written a last time with everything (`activity_after_completion` counts what came
    /// after this call).
    pub fn job_completed(&mut self, peer_pid: u32, identity: JobIdentity) -> Response {
        let worker = match self.worker_of(peer_pid) {
            Ok(w) => w,
            Err(e) => return Response::failed(e),
        };
        let Some(slot) = self
            .jobs
            .values()
            .find(|j| j.worker_pid == worker)
            .map(|j| j.slot)
        else {
            return Response::failed(format!(
                "no job is followed for {WORKER_COMM} {worker}: was `observer job started` run \
                 by the job-started hook (and did the daemon run then)?"
            ));
        };
        let Some(mut job) = self.jobs.remove(&slot) else {
            return Response::failed("the job vanished");
        };
        job.completed_ns.get_or_insert(self.now_ns);
        let written = self.write_job(&mut job, identity);
        self.jobs.insert(slot, job);
        match written {
            Ok((path, summary, findings)) => {
                let mut response = Response::ok();
                response.report = Some(path.display().to_string());
                response.summary = Some(summary);
                response.findings = Some(findings);
                response
            }
            Err(e) => Response::failed(e),
        }
    }

    /// Builds and writes a job's report (at its path, or a new one): path, summary, findings.
    fn write_job(
        &mut self,
        job: &mut ActiveJob,
        identity: JobIdentity,
    ) -> Result<(PathBuf, String, Findings), String> {
        let abandoned = job.completed_ns.is_none();
        // The workloads of the job's own cgroups only (the host's table names every cgroup the
        // capture saw: other runners' containers and units are no business of this report).
        let cgroups: HashSet<u64> = job
            .correlator
            .flows()
            .iter()
            .map(|f| f.process.cgroup_id)
            .collect();
        for cgroup_id in cgroups {
            if job.correlator.workload(cgroup_id).is_none() {
                if let Some(workload) = self.host.workload(cgroup_id) {
                    let mut seen = Observed::CgroupSeen {
                        cgroup_id,
                        workload: workload.clone(),
                    };
                    job.correlator.observe(self.now_ns, &mut seen);
                }
            }
        }
        job.correlator.finish();
        let mut report = report::build(&job.correlator);
        // Task names, socket errors and cgroup names come from the job's processes: redacted
        // as in every other report written (docs/report-formats.md).
        crate::export::sanitize(&mut report);
        // The hook's identity fills what the start did not say.
        let id = merge_identity(job.identity.clone(), identity);
        report.job = Some(JobSection {
            repository: id.repository.clone(),
            run_id: id.run_id.clone(),
            run_attempt: id.run_attempt.clone(),
            job: id.job.clone(),
            workflow: id.workflow.clone(),
            runner_name: id.runner_name.clone(),
            worker_pid: job.worker_pid,
            started_at: rfc3339(job.started_ns),
            completed_at: job.completed_ns.and_then(rfc3339),
            processes_listed: job.processes_listed,
            abandoned,
            activity_after_completion: job.after_completion,
            runner_label: job.runner_label.as_ref().ok().cloned(),
            containers: job.containers.clone(),
            containers_note: match &job.runner_label {
                Err(e) => Some(format!("containers are not attributed: {e}")),
                Ok(_) => job.container_gaps.note(),
            },
        });
        let findings = findings(&report);
        if job.report_path.is_none() {
            let result = if abandoned {
                "failed"
            } else if findings.blocked {
                "blocked"
            } else if findings.undeclared {
                "undeclared"
            } else if findings.slow {
                "slow"
            } else {
                "ok"
            };
            let _ = self.metrics.job_finished(result);
        }
        let summary = summary::markdown(&report, &id);
        let path = self
            .write_job_report(&report, &id, job)
            .map_err(|e| format!("cannot write the job's report: {e:#}"))?;
        Ok((path, summary, findings))
    }

    fn write_job_report(
        &self,
        report: &Report,
        id: &JobIdentity,
        job: &mut ActiveJob,
    ) -> anyhow::Result<PathBuf> {
        let dir = self.jobs_dir();
        std::fs::create_dir_all(&dir)?;
        let path = match &job.report_path {
            Some(path) => path.clone(),
            None => {
                // The wall clock and the job's slot: matrix legs share their identity.
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let path = dir.join(format!(
                    "{ms}-{}-{}-{}-{}-{}.json",
                    job.slot,
                    file_part(id.repository.as_deref()),
                    file_part(id.run_id.as_deref()),
                    file_part(id.run_attempt.as_deref()),
                    file_part(id.job.as_deref()),
                ));
                job.report_path = Some(path.clone());
                path
            }
        };
        let text = serde_json::to_string_pretty(report)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        prune_job_reports(&dir, self.max_job_reports);
        Ok(path)
    }

    /// The daemon's state for `status`.
    pub fn status(&self) -> serde_json::Value {
        let jobs: Vec<serde_json::Value> = self
            .jobs
            .values()
            .map(|j| {
                serde_json::json!({
                    "slot": j.slot,
                    "worker_pid": j.worker_pid,
                    "job": j.identity.describe(),
                    "flows": j.correlator.flows().len(),
                    "containers": j.containers.iter().map(|c| &c.id[..12]).collect::<Vec<_>>(),
                })
            })
            .collect();
        let capture = self.host.capture();
        serde_json::json!({
            "jobs": jobs,
            "capture": {
                "probes_attached": capture.probes.iter().filter(|p| p.attached).count(),
                "probes": capture.probes.len(),
                "lost_events": capture.stats.lost_events,
                "proxies": capture.proxies,
            },
        })
    }

    /// Whether a container found now could be a job's: a followed job's runner label is known.
    fn may_gain_containers(&self) -> bool {
        self.follow_containers && self.jobs.values().any(|j| j.runner_label.is_ok())
    }

    /// Keeps an observation of no job for a container looked up late.
    fn remember(&mut self, ts: u64, observed: &Observed) {
        while self.recent.len() >= RECENT_MAX
            || self
                .recent
                .front()
                .is_some_and(|(t, _)| ts.saturating_sub(*t) > RECENT_NS)
        {
            self.recent.pop_front();
        }
        self.recent.push_back((ts, observed.clone()));
    }

    /// Asks about a cgroup that names a container, once, while a job may gain containers.
    fn look_up(&mut self, cgroup_id: u64, workload: &crate::capture::cgroups::Workload) {
        let Some(container_id) = &workload.container_id else {
            return;
        };
        if !self.may_gain_containers() || self.looked_up.contains_key(&cgroup_id) {
            return;
        }
        if self.looked_up.len() >= MAX_CONTAINER_LOOKUPS {
            // A container seen before every followed job started is none of theirs, nor of a
            // later job's: its entry only kept it from being asked about twice.
            let oldest_job = self
                .jobs
                .values()
                .filter(|j| j.runner_label.is_ok())
                .map(|j| j.started_wall_ns)
                .min()
                .unwrap_or(u64::MAX);
            self.looked_up.retain(|_, at| *at >= oldest_job);
        }
        if self.looked_up.len() >= MAX_CONTAINER_LOOKUPS {
            for job in self.jobs.values_mut().filter(|j| j.runner_label.is_ok()) {
                job.container_gaps.not_looked_up += 1;
            }
            return;
        }
        self.looked_up.insert(cgroup_id, wall_ns());
        self.lookups.push(ContainerLookup {
            cgroup_id,
            cgroup: workload.cgroup.clone(),
            container_id: container_id.clone(),
        });
    }

    /// The container cgroups to look up in the Docker API; each answer goes to
    /// [`Daemon::container_found`].
    pub fn take_container_lookups(&mut self) -> Vec<ContainerLookup> {
        std::mem::take(&mut self.lookups)
    }

    /// The Docker API's answer about a container cgroup: when the container carries the label
    /// of a followed job's runner (of exactly one), was created after that job started, and the
    /// cgroup is really the container's (its first process's cgroup, or below it: a cgroup path
    /// can name any container id, anyone may create cgroups below their own), its flows and
    /// lookups are the job's from now on, and those kept from the last seconds are given to it.
    pub fn container_found(
        &mut self,
        lookup: &ContainerLookup,
        answer: Result<containers::Inspected, String>,
    ) {
        let inspected = match answer {
            Ok(i) if i.id == lookup.container_id => i,
            Ok(_) => return,
            Err(e) => {
                self.lookup_failures += 1;
                if self.lookup_failures.is_power_of_two() {
                    eprintln!(
                        "observer: warning: a container was not looked up ({} times): {}",
                        self.lookup_failures,
                        crate::sanitize::line(&e)
                    );
                }
                // "No such container" is a container gone already, not a broken lookup.
                let ended = e.starts_with("no container");
                for job in self.jobs.values_mut().filter(|j| j.runner_label.is_ok()) {
                    if ended {
                        job.container_gaps.ended += 1;
                    } else {
                        job.container_gaps.problem = Some(e.clone());
                    }
                }
                return;
            }
        };
        let Some(pid) = inspected.pid else {
            // Stopped already: its cgroup cannot be checked.
            for job in self.jobs.values_mut().filter(|j| j.runner_label.is_ok()) {
                job.container_gaps.ended += 1;
            }
            return;
        };
        let Some(own) = container_cgroup(&self.proc_root, pid) else {
            // Ended between the answer and now.
            for job in self.jobs.values_mut().filter(|j| j.runner_label.is_ok()) {
                job.container_gaps.ended += 1;
            }
            return;
        };
        if !cgroup_is_the_container_s(&lookup.cgroup, &own, &inspected.id) {
            eprintln!(
                "observer: warning: cgroup {} names container {} but is not that container's \
                 ({}): not attributed to any job",
                crate::sanitize::line(&lookup.cgroup),
                &inspected.id[..12],
                crate::sanitize::line(&own)
            );
            return;
        }
        let candidates: Vec<u32> = self
            .jobs
            .values()
            .filter(|j| {
                j.runner_label
                    .as_ref()
                    .is_ok_and(|l| inspected.labels.iter().any(|k| k == l))
                    && inspected
                        .created_ns
                        .is_some_and(|c| c.saturating_add(CREATED_SLACK_NS) >= j.started_wall_ns)
            })
            .map(|j| j.slot)
            .collect();
        let slot = match candidates[..] {
            [slot] => slot,
            [] => return,
            _ => {
                for slot in &candidates {
                    if let Some(job) = self.jobs.get_mut(slot) {
                        job.container_gaps.ambiguous += 1;
                    }
                }
                return;
            }
        };
        self.cgroup_jobs.insert(lookup.cgroup_id, slot);
        let Some(job) = self.jobs.get_mut(&slot) else {
            return;
        };
        job.cgroups.insert(lookup.cgroup_id);
        if job.containers.len() < MAX_JOB_CONTAINERS {
            job.containers.push(JobContainer {
                id: inspected.id,
                name: inspected.name,
                image: inspected.image,
                cgroup_id: lookup.cgroup_id,
            });
        }
        // What came before the answer, in order.
        let mut flows = HashSet::new();
        let mut closed = HashSet::new();
        let mut kept = VecDeque::with_capacity(self.recent.len());
        for (ts, mut observed) in std::mem::take(&mut self.recent) {
            let mine = match &observed {
                Observed::FlowOpened {
                    flow_id, process, ..
                }
                | Observed::FlowEstablished {
                    flow_id, process, ..
                } if process.cgroup_id == lookup.cgroup_id => {
                    flows.insert(*flow_id);
                    true
                }
                Observed::FlowClosed(c) => {
                    let mine =
                        c.process.cgroup_id == lookup.cgroup_id || flows.contains(&c.flow_id);
                    if mine {
                        closed.insert(c.flow_id);
                    }
                    mine
                }
                Observed::FlowProgress { flow_id, .. } => flows.contains(flow_id),
                Observed::FlowPayload(p) => flows.contains(&p.flow_id),
                Observed::DnsQuery(d) | Observed::DnsResponse(d) => d.cgroup_id == lookup.cgroup_id,
                _ => false,
            };
            if mine {
                job.correlator.observe(ts, &mut observed);
            } else {
                kept.push_back((ts, observed));
            }
        }
        self.recent = kept;
        // Flows still open: their later progress and close carry only their id.
        for flow_id in flows.difference(&closed) {
            if self.job_flows.len() < MAX_JOB_FLOWS {
                self.job_flows.insert(*flow_id, slot);
            }
        }
    }

    /// The host's correlator.
    pub fn host(&self) -> &Correlator {
        &self.host
    }

    #[cfg(test)]
    fn with_proc_root(mut self, root: &Path) -> Self {
        self.proc_root = root.to_owned();
        self
    }
}

/// The cgroup v2 path of process `pid` (`0::/docker/<id>`), as this process's cgroup namespace
/// sees it (the host's: the same paths as the capture's cgroup walk).
fn container_cgroup(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_owned())
        .filter(|p| p.starts_with('/'))
}

/// Whether the cgroup `looked_up` (a path below the cgroup2 mount) is the container's: the
/// cgroup of its first process (`own`, from `/proc/PID/cgroup`) or one below the part of that
/// path that names the container (an init such as systemd moves itself to `<scope>/init.scope`
/// and its services to siblings). `own` may be seen from a private cgroup namespace
/// (`/../../system.slice/docker-<id>.scope`): its leading `/..` are dropped, which names the
/// same cgroup when they climb to the root, the layout of a DaemonSet's pod. The root cgroup is
/// never a container's.
fn cgroup_is_the_container_s(looked_up: &str, own: &str, id: &str) -> bool {
    let mut own = own;
    while let Some(rest) = own.strip_prefix("/..") {
        own = rest;
    }
    let parts: Vec<&str> = own.split('/').filter(|p| !p.is_empty()).collect();
    let base_len = parts
        .iter()
        .position(|p| p.contains(id))
        .map_or(parts.len(), |i| i + 1);
    if base_len == 0 {
        return false;
    }
    let base = format!("/{}", parts[..base_len].join("/"));
    looked_up == base
        || looked_up
            .strip_prefix(base.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The wall clock, nanoseconds since the epoch.
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The cgroup an observation's process (or DNS socket) is in.
fn cgroup_of(observed: &Observed) -> Option<u64> {
    match observed {
        Observed::FlowOpened { process, .. } | Observed::FlowEstablished { process, .. } => {
            Some(process.cgroup_id)
        }
        Observed::FlowClosed(c) => Some(c.process.cgroup_id),
        Observed::DnsQuery(d) | Observed::DnsResponse(d) => Some(d.cgroup_id),
        _ => None,
    }
}

/// Observations a job's report is made of (flows and DNS), as opposed to the capture's health.
fn is_traffic(observed: &Observed) -> bool {
    matches!(
        observed,
        Observed::FlowOpened { .. }
            | Observed::FlowEstablished { .. }
            | Observed::FlowClosed(_)
            | Observed::FlowProgress { .. }
            | Observed::FlowPayload(_)
            | Observed::DnsQuery(_)
            | Observed::DnsResponse(_)
    )
}

/// The nearest `Runner.Worker` of an ancestry (see [`ancestry`]).
fn worker_in(chain: &[crate::capture::jobs::ProcInfo]) -> Result<u32, String> {
    chain
        .iter()
        .find(|p| p.comm == WORKER_COMM)
        .map(|p| p.pid)
        .ok_or_else(|| {
            format!(
                "no {WORKER_COMM} among the calling process's ancestors: run `observer job \
                 started` and `observer job completed` from the runner's job hooks \
                 (ACTIONS_RUNNER_HOOK_JOB_STARTED / _COMPLETED)"
            )
        })
}

/// The start's identity, completed by the end's.
fn merge_identity(start: JobIdentity, end: JobIdentity) -> JobIdentity {
    JobIdentity {
        repository: start.repository.or(end.repository),
        run_id: start.run_id.or(end.run_id),
        run_attempt: start.run_attempt.or(end.run_attempt),
        job: start.job.or(end.job),
        workflow: start.workflow.or(end.workflow),
        runner_name: start.runner_name.or(end.runner_name),
    }
}

/// What `--fail-on` weighs: blocked documented hosts, undeclared destinations, slow transfers.
pub fn findings(report: &Report) -> Findings {
    Findings {
        blocked: report.hosts.iter().any(|h| h.status == Status::Blocked),
        undeclared: !report.undeclared.is_empty(),
        slow: report
            .hosts
            .iter()
            .flat_map(|h| &h.reasons)
            .chain(report.undeclared.iter().flat_map(|u| &u.reasons))
            .any(|r| r.code == report::vocab::Reason::SlowThroughput.as_str()),
    }
}

/// A file-name part: letters, digits, `.`, `_`, `-` only, at most 64 characters.
fn file_part(value: Option<&str>) -> String {
    let cleaned: String = value
        .unwrap_or("unknown")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "unknown".to_owned(),
        s => s.to_owned(),
    }
}

/// Keeps the newest `keep` job reports of `dir`.
fn prune_job_reports(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut reports: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    // Names start with the completion time in milliseconds.
    reports.sort();
    let excess = reports.len().saturating_sub(keep);
    for old in &reports[..excess] {
        let _ = std::fs::remove_file(old);
    }
}

/// The stored job reports of a state directory, newest first: (path, report).
pub fn stored_jobs(state_dir: &Path) -> Vec<(PathBuf, anyhow::Result<Report>)> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("jobs")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths.reverse();
    paths
        .into_iter()
        .map(|p| {
            let report = report::read(&p).map_err(anyhow::Error::from);
            (p, report)
        })
        .collect()
}

#[cfg(test)]
mod tests;
