//! The daemon's job bookkeeping on recorded observations (root-free: the kernel's job table is
//! not live, so job starts that need it are refused with a clear error).

use super::*;
use crate::pipeline::correlate::tests::{closed, opened};

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
    d.jobs.insert(
        7,
        ActiveJob {
            slot: 7,
            identity: JobIdentity {
                repository: Some("octo/app".into()),
                ..JobIdentity::default()
            },
            worker_pid: 10,
            started_ns: 0,
            processes_listed: 1,
            correlator: options.correlator().unwrap(),
            report_path: None,
            completed_ns: None,
            after_completion: 0,
        },
    );
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
    d.jobs.insert(
        1,
        ActiveJob {
            slot: 1,
            identity: JobIdentity::default(),
            worker_pid: 10,
            started_ns: 0,
            processes_listed: 2,
            correlator: options.correlator().unwrap(),
            report_path: None,
            completed_ns: None,
            after_completion: 0,
        },
    );
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
