//! The daemon's job bookkeeping on recorded observations (root-free: the kernel's job table is
//! not live, so job starts that need it are refused with a clear error).

use super::*;
use crate::pipeline::correlate::tests::{closed, opened};

/// A followed job (its runner's label `abc123` when `label` says so).
fn active_job(options: &CatalogOptions, slot: u32, worker_pid: u32, started_ns: u64) -> ActiveJob {
    ActiveJob {
        slot,
        identity: JobIdentity::default(),
        worker_pid,
        worker_start: None,
        started_ns,
        processes_listed: 1,
        correlator: options.correlator().unwrap(),
        report_path: None,
        completed_ns: None,
        after_completion: 0,
        runner_label: Err("no label in this test".into()),
        containers: Vec::new(),
        started_wall_ns: started_ns,
        container_gaps: ContainerGaps::default(),
        cgroups: HashSet::new(),
    }
}

#[test]
fn a_job_start_needs_a_runner_worker_among_the_callers_ancestors() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(CatalogOptions::default(), JobPids::default(), dir.path()).unwrap();
    let r = d.job_started(std::process::id(), JobIdentity::default(), &[]);
    assert!(!r.ok);
    assert!(r.error.unwrap().contains("no Runner.Worker"));
}

#[test]
fn a_fake_proc_tree_finds_the_worker_and_the_job_table_must_be_live() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    for (pid, comm, ppid) in [
        (10, "Runner.Worker", 1),
        (20, "bash", 10),
        (30, "observer", 20),
    ] {
        let p = proc_root.join(pid.to_string());
        std::fs::create_dir_all(p.join("task")).unwrap();
        std::fs::write(p.join("stat"), format!("{pid} ({comm}) S {ppid} 0 0")).unwrap();
    }
    let mut d = Daemon::new(CatalogOptions::default(), JobPids::default(), dir.path())
        .unwrap()
        .with_proc_root(&proc_root);
    assert_eq!(d.worker_of(30), Ok(10));
    let r = d.job_started(30, JobIdentity::default(), &[]);
    assert!(r.error.unwrap().contains("not running with job following"));
    assert!(d.jobs.is_empty());
}

#[test]
fn observations_are_routed_to_their_job_by_the_kernel_s_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let options = CatalogOptions::default();
    let mut d = Daemon::new(options.clone(), JobPids::default(), dir.path()).unwrap();
    let mut job = active_job(&options, 7, 10, 0);
    job.identity.repository = Some("octo/app".into());
    d.jobs.insert(7, job);
    let stamped = |mut o: Observed, job: Option<u32>| {
        match &mut o {
            Observed::FlowOpened { process, .. } => process.job = job,
            Observed::FlowClosed(c) => c.process.job = job,
            _ => {}
        }
        o
    };
    d.observe(&vec![
        (1, stamped(opened(1, "198.18.1.10:443"), Some(7))),
        (1, stamped(opened(2, "198.18.1.11:443"), None)),
        (
            2,
            stamped(closed(1, "198.18.1.10:443", true, 10, 20), Some(7)),
        ),
        (2, stamped(closed(2, "198.18.1.11:443", true, 10, 20), None)),
    ]);
    let job = &d.jobs[&7];
    assert_eq!(job.correlator.flows().len(), 1);
    assert_eq!(job.correlator.flows()[0].flow_id, 1);
    // The host's correlator forgets closed flows; the job's keeps its own.
    assert!(d.host().flows().is_empty());
    assert!(d.job_flows.is_empty(), "closed flows leave the index");
}

#[test]
fn job_report_file_names_are_safe_and_pruned() {
    assert_eq!(file_part(Some("../../etc/passwd")), "_.._etc_passwd");
    assert_eq!(file_part(Some("..")), "unknown");
    assert_eq!(file_part(None), "unknown");
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(dir.path().join(format!("{i}-a-b-c.json")), "{}").unwrap();
    }
    prune_job_reports(dir.path(), 2);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(left.len(), 2);
}

#[test]
fn a_job_s_report_is_redacted_like_every_other_report() {
    // Found by a review: per-job reports were written without the redaction of task names.
    let dir = tempfile::tempdir().unwrap();
    let options = CatalogOptions::default();
    let mut d = Daemon::new(options.clone(), JobPids::default(), dir.path()).unwrap();
    d.jobs.insert(7, active_job(&options, 7, 10, 0));
    let mut o = opened(1, "198.18.1.10:443");
    if let Observed::FlowOpened { process, .. } = &mut o {
        process.job = Some(7);
        process.comm = "ghp_abcdefghijk".into();
    }
    d.observe(&vec![(1, o)]);
    let mut job = d.jobs.remove(&7).unwrap();
    let (path, summary, _) = d.write_job(&mut job, JobIdentity::default()).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("[redacted]"), "{text}");
    assert!(!text.contains("ghp_abcdefghijk") && !summary.contains("ghp_abcdefghijk"));
}

#[test]
fn a_job_s_own_process_named_runner_worker_cannot_start_a_job() {
    // Found by the hostile review: any process may call itself Runner.Worker (prctl), so job
    // code could start a "job" of its own and take its traffic out of the real job's report.
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    for (pid, comm, ppid) in [
        (10, "Runner.Worker", 1),
        (20, "bash", 10),
        (40, "Runner.Worker", 20),
        (50, "observer", 40),
    ] {
        let p = proc_root.join(pid.to_string());
        std::fs::create_dir_all(p.join("task")).unwrap();
        std::fs::write(p.join("stat"), format!("{pid} ({comm}) S {ppid} 0 0")).unwrap();
    }
    let options = CatalogOptions::default();
    let mut d = Daemon::new(options.clone(), JobPids::default(), dir.path())
        .unwrap()
        .with_proc_root(&proc_root);
    d.jobs.insert(1, active_job(&options, 1, 10, 0));
    let r = d.job_started(50, JobIdentity::default(), &[]);
    assert!(!r.ok);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("cannot start another job"),
        "{r:?}"
    );
    assert_eq!(d.jobs.len(), 1);
    // job completed by job code keeps the job followed: what it does after still counts.
    let r = d.job_completed(20, JobIdentity::default());
    assert!(r.ok, "{r:?}");
    assert!(d.jobs[&1].completed_ns.is_some());
    let path = PathBuf::from(r.report.unwrap());
    assert!(path.exists());
    // The worker ends: the final report is written where the first was.
    std::fs::remove_dir_all(proc_root.join("10")).unwrap();
    d.reap();
    assert!(d.jobs.is_empty());
    let jobs: Vec<_> = std::fs::read_dir(d.jobs_dir()).unwrap().flatten().collect();
    assert_eq!(jobs.len(), 1);
}

#[test]
fn containers_with_the_job_runner_s_label_are_the_job_s_from_their_first_flow() {
    let dir = tempfile::tempdir().unwrap();
    let options = CatalogOptions::default();
    // The job's worker lives (the daemon reaps jobs whose worker is gone).
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(proc_root.join("10/task")).unwrap();
    std::fs::write(proc_root.join("10/stat"), "10 (Runner.Worker) S 1 0 0").unwrap();
    let mut d = Daemon::new(options.clone(), JobPids::default(), dir.path())
        .unwrap()
        .with_proc_root(&proc_root);
    const S: u64 = 1_000_000_000;
    let mut job = active_job(&options, 3, 10, 100 * S);
    job.runner_label = Ok("abc123".into());
    d.jobs.insert(3, job);
    let in_cgroup = |mut o: Observed, cgroup: u64| {
        match &mut o {
            Observed::FlowOpened { process, .. } => process.cgroup_id = cgroup,
            Observed::FlowClosed(c) => c.process.cgroup_id = cgroup,
            _ => {}
        }
        o
    };
    // A container's first process (pid 1000 + its cgroup id / 100) is in /docker/<id>.
    let container = |id: char, cgroup: u64, path: &str| {
        let full = id.to_string().repeat(64);
        let pid_dir = proc_root.join((1000 + cgroup / 100).to_string());
        std::fs::create_dir_all(&pid_dir).unwrap();
        std::fs::write(pid_dir.join("cgroup"), format!("0::/docker/{full}\n")).unwrap();
        let workload = crate::capture::cgroups::classify(&path.replace("ID", &full));
        (
            ContainerLookup {
                cgroup_id: cgroup,
                cgroup: workload.cgroup.clone(),
                container_id: full,
            },
            Observed::CgroupSeen {
                cgroup_id: cgroup,
                workload,
            },
        )
    };
    let inspected =
        |id: char, labels: &[&str], created_s: u64, cgroup: u64| containers::Inspected {
            id: id.to_string().repeat(64),
            name: Some(format!("c{id}")),
            image: Some("redis:7".into()),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            created_ns: Some(created_s * S),
            pid: Some(1000 + u32::try_from(cgroup / 100).unwrap()),
        };
    let (mine, mine_seen) = container('a', 500, "/docker/ID");
    let (other, other_seen) = container('b', 600, "/docker/ID");
    let (stale, stale_seen) = container('c', 700, "/docker/ID");
    // A cgroup anyone may create, naming the job's container: not the container's.
    let (forged, forged_seen) = container(
        'a',
        800,
        "/user.slice/user@1000.service/app.slice/docker-ID.scope",
    );
    // Their first flows come before anyone knows whose containers they are.
    d.observe(&vec![
        (101 * S, in_cgroup(opened(1, "198.18.1.10:443"), 500)),
        (101 * S, in_cgroup(opened(2, "198.18.1.11:443"), 600)),
        (101 * S, in_cgroup(opened(3, "198.18.1.12:443"), 700)),
        (101 * S, in_cgroup(opened(5, "198.18.1.13:443"), 800)),
        (101 * S, mine_seen),
        (101 * S, other_seen),
        (101 * S, stale_seen),
        (101 * S, forged_seen),
    ]);
    assert_eq!(
        d.take_container_lookups(),
        vec![mine.clone(), other.clone(), stale.clone(), forged.clone()],
        "each container cgroup is looked up once"
    );
    d.container_found(&mine, Ok(inspected('a', &["abc123"], 101, 500)));
    d.container_found(&other, Ok(inspected('b', &["fff999"], 101, 600)));
    // The same runner's label on a container from before the job: a previous job's.
    d.container_found(&stale, Ok(inspected('c', &["abc123"], 90, 700)));
    // Docker's true answer about the job's container, for a cgroup that is not its.
    d.container_found(&forged, Ok(inspected('a', &["abc123"], 101, 500)));
    d.observe(&vec![
        (102 * S, in_cgroup(opened(4, "198.18.1.10:443"), 500)),
        (
            103 * S,
            in_cgroup(closed(1, "198.18.1.10:443", true, 10, 20), 500),
        ),
        (
            103 * S,
            in_cgroup(closed(2, "198.18.1.11:443", true, 10, 20), 600),
        ),
    ]);
    let job = &d.jobs[&3];
    let mut ids: Vec<u64> = job.correlator.flows().iter().map(|f| f.flow_id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![1, 4],
        "the labelled container's flows, before and after; not the forged cgroup's"
    );
    assert_eq!(job.containers.len(), 1);
    assert_eq!(job.containers[0].cgroup_id, 500);
    assert_eq!(job.containers[0].name.as_deref(), Some("ca"));
    assert!(d.take_container_lookups().is_empty());
    // A failed lookup, and a container gone before its lookup, say so in the job's report.
    d.container_found(
        &other,
        Err("cannot connect to /var/run/docker.sock: refused".into()),
    );
    d.container_found(
        &stale,
        Err("no container cccccccccccc in this Docker".into()),
    );
    let mut job = d.jobs.remove(&3).unwrap();
    d.job_flows.clear();
    let _ = d.write_job(&mut job, JobIdentity::default()).unwrap();
    let report = report::read(job.report_path.as_ref().unwrap()).unwrap();
    let section = report.job.unwrap();
    assert_eq!(section.runner_label.as_deref(), Some("abc123"));
    assert_eq!(section.containers.len(), 1);
    let note = section.containers_note.unwrap();
    assert!(
        note.contains("cannot connect to /var/run/docker.sock"),
        "{note}"
    );
    assert!(note.contains("1 container(s) ended before"), "{note}");
    // Its flows' workloads, and only theirs, are in the report.
    let ids: Vec<u64> = report.workloads.iter().map(|w| w.cgroup_id).collect();
    assert_eq!(ids, vec![500], "{:?}", report.workloads);
}

#[test]
fn a_worker_pid_reused_by_another_runner_worker_ends_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(proc_root.join("10/task")).unwrap();
    let stat = |start: u64| {
        format!("10 (Runner.Worker) S 1 10 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0")
    };
    std::fs::write(proc_root.join("10/stat"), stat(500)).unwrap();
    let options = CatalogOptions::default();
    let mut d = Daemon::new(options.clone(), JobPids::default(), dir.path())
        .unwrap()
        .with_proc_root(&proc_root);
    let mut job = active_job(&options, 1, 10, 0);
    job.worker_start = Some(500);
    d.jobs.insert(1, job);
    d.reap();
    assert_eq!(d.jobs.len(), 1, "the same process: still followed");
    // The worker ended and the pid came back as the next job's worker.
    std::fs::write(proc_root.join("10/stat"), stat(900)).unwrap();
    d.reap();
    assert!(d.jobs.is_empty(), "another process: the job is closed");
}

#[test]
fn a_container_two_followed_jobs_could_claim_is_given_to_neither() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    for (pid, stat) in [
        (10, "10 (Runner.Worker) S 1"),
        (20, "20 (Runner.Worker) S 1"),
    ] {
        std::fs::create_dir_all(proc_root.join(format!("{pid}/task"))).unwrap();
        std::fs::write(proc_root.join(format!("{pid}/stat")), stat).unwrap();
    }
    let id = "e".repeat(64);
    std::fs::create_dir_all(proc_root.join("3000")).unwrap();
    std::fs::write(proc_root.join("3000/cgroup"), format!("0::/docker/{id}\n")).unwrap();
    let options = CatalogOptions::default();
    let mut d = Daemon::new(options.clone(), JobPids::default(), dir.path())
        .unwrap()
        .with_proc_root(&proc_root);
    for (slot, worker) in [(1, 10), (2, 20)] {
        let mut job = active_job(&options, slot, worker, 0);
        // A collision, or a .runner padded until its hash matched another runner's label.
        job.runner_label = Ok("abc123".into());
        d.jobs.insert(slot, job);
    }
    let lookup = ContainerLookup {
        cgroup_id: 900,
        cgroup: format!("/docker/{id}"),
        container_id: id.clone(),
    };
    d.container_found(
        &lookup,
        Ok(containers::Inspected {
            id,
            name: None,
            image: None,
            labels: vec!["abc123".into()],
            created_ns: Some(5),
            pid: Some(3000),
        }),
    );
    assert!(d.cgroup_jobs.is_empty());
    for job in d.jobs.values() {
        assert_eq!(job.container_gaps.ambiguous, 1);
        assert!(job.container_gaps.note().unwrap().contains("more than one"));
    }
}

#[test]
fn a_cgroup_is_a_container_s_at_or_below_the_part_naming_it() {
    let id = "f".repeat(64);
    let scope = format!("/system.slice/docker-{id}.scope");
    // Its first process's cgroup, and below it.
    assert!(cgroup_is_the_container_s(&scope, &scope, &id));
    assert!(cgroup_is_the_container_s(
        &format!("{scope}/x"),
        &scope,
        &id
    ));
    // systemd as the container's init: it moved to init.scope, its services to siblings.
    let init = format!("{scope}/init.scope");
    let service = format!("{scope}/system.slice/redis.service");
    assert!(cgroup_is_the_container_s(&service, &init, &id));
    // Seen from a pod's private cgroup namespace.
    assert!(cgroup_is_the_container_s(
        &scope,
        &format!("/../../..{scope}"),
        &id
    ));
    // A look-alike elsewhere, a prefix that is not a parent, the root.
    let forged = format!("/user.slice/user@1000.service/docker-{id}.scope");
    assert!(!cgroup_is_the_container_s(&forged, &scope, &id));
    assert!(!cgroup_is_the_container_s(
        &format!("{scope}x"),
        &scope,
        &id
    ));
    assert!(!cgroup_is_the_container_s("/x", "/", &id));
    assert!(!cgroup_is_the_container_s("/", "/", &id));
}
