//! A container's flows carry its cgroup identity, end to end: a real cgroup is created in the
//! host's cgroup2 tree the way Docker's systemd driver names its containers
//! (`…/docker-<64 hex>.scope`), a real curl in the lab's runner namespace is moved into it before
//! it starts (its pid written to `cgroup.procs`), and the recorded report must name that curl's
//! flow and DNS lookup by the cgroup: runtime docker, the container id, the unit. The event log,
//! replayed offline, must say the same, and a curl outside the cgroup must not.
//!
//! No container runtime is needed (none runs on the lab machines): what the observer reads is the
//! cgroup, which is all a runtime adds that the observer sees. The cgroup is removed after, also
//! when the test fails.
//!
//! Run through `cargo xtask test` (root, one test at a time).

use std::{
    ffi::CString,
    io,
    net::{IpAddr, Ipv4Addr},
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use observer_tests::{
    observer::{observer_bin, report_host, Recording},
    require_root_or_skip, LabConfig,
};
use serde_json::Value;

const API: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);

/// The cgroup2 mount, as the observer finds it: the first cgroup2 line of mountinfo.
fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            (after.split_whitespace().next()? == "cgroup2")
                .then(|| before.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .expect("no cgroup2 mount in /proc/self/mountinfo: the observer needs cgroup v2")
}

/// cgroup directories this test created, removed (innermost first) when dropped.
struct TestCgroup {
    mount: PathBuf,
    created: Vec<PathBuf>,
    leaf: PathBuf,
}

impl TestCgroup {
    /// Creates `mount/levels[0]/levels[1]/…` (levels that exist already are kept).
    fn create(mount: &Path, levels: &[&str]) -> Self {
        let mut cgroup = Self {
            mount: mount.to_owned(),
            created: Vec::new(),
            leaf: mount.to_owned(),
        };
        for level in levels {
            cgroup.leaf.push(level);
            match std::fs::create_dir(&cgroup.leaf) {
                Ok(()) => cgroup.created.push(cgroup.leaf.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create the cgroup {}: {e}", cgroup.leaf.display()),
            }
        }
        cgroup
    }

    /// Its path below the mount, as the observer reports it.
    fn path(&self) -> String {
        format!(
            "/{}",
            self.leaf
                .strip_prefix(&self.mount)
                .expect("below the mount")
                .display()
        )
    }

    /// Its id: the inode of its directory.
    fn id(&self) -> u64 {
        std::fs::metadata(&self.leaf)
            .expect("the cgroup exists")
            .ino()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Anything left inside (a curl still exiting) goes back to the root first.
        let procs = std::fs::read_to_string(self.leaf.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let _ = std::fs::write(self.mount.join("cgroup.procs"), pid);
        }
        for dir in self.created.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = std::fs::remove_dir(dir) {
                if Instant::now() >= deadline {
                    eprintln!("cannot remove the test cgroup {}: {e}", dir.display());
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A container id as Docker writes them (64 hex digits), unique to this run.
fn container_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    let n = (u128::from(std::process::id()) << 96) ^ nanos;
    format!("0b5e{n:060x}")
}

/// Runs curl (in the lab's runner namespace) inside `cgroup`: the child writes its own pid to
/// `cgroup.procs` before `ip netns exec` runs, so everything curl does is the cgroup's.
fn curl_in_cgroup(lab: &observer_tests::Lab, cgroup: &TestCgroup, url: &str) -> String {
    let procs = CString::new(
        cgroup
            .leaf
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("no NUL in the path");
    let ca = lab.ca_file().to_string_lossy().into_owned();
    let mut cmd = lab.runner_command("curl");
    cmd.args([
        "-q",
        "--cacert",
        &ca,
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--noproxy",
        "*",
        "--max-time",
        "20",
        url,
    ])
    .stdin(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (open, write, close) on memory
    // prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // "0": the writing process itself.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let error = io::Error::last_os_error();
            libc::close(fd);
            if written == 1 {
                Ok(())
            } else {
                Err(error)
            }
        });
    }
    let out = cmd.output().expect("curl runs in the cgroup");
    assert!(
        out.status.success(),
        "curl in the cgroup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The report's flows by curl to `dst`.
fn curl_flows<'a>(report: &'a Value, dst: &str) -> Vec<&'a Value> {
    report["flows"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["dst"] == dst && f["process"]["comm"] == "curl")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_containers_flows_and_lookups_carry_its_cgroup_identity() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("cgrp")
        .a("api.github.com", API)
        .tls_server(IpAddr::V4(API))
        .start();
    let id = container_id();
    let scope = format!("docker-{id}.scope");
    let cgroup = TestCgroup::create(&cgroup2_mount(), &["observer-test.slice", &scope]);
    let recording = Recording::start(lab.work_dir(), &[]);
    let events = recording.events.clone();

    // In the "container": resolves api.github.com, then fetches from it.
    let code = curl_in_cgroup(&lab, &cgroup, "https://api.github.com/bytes/5000");
    assert_eq!(code, "200");
    // Outside it, the same request.
    let outside = lab.curl("https://api.github.com/bytes/5000", &[]);
    outside.expect_status(200);

    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["lost_events"], 0, "{stderr}");

    let flows = curl_flows(&report, "198.18.1.10:443");
    assert_eq!(flows.len(), 2, "{:#}", report["flows"]);
    let cgroup_id = cgroup.id();
    let (inside, others): (Vec<&Value>, Vec<&Value>) = flows
        .into_iter()
        .partition(|f| f["process"]["cgroup_id"] == cgroup_id);
    assert_eq!(
        (inside.len(), others.len()),
        (1, 1),
        "one flow from cgroup {cgroup_id}: {:#}",
        report["flows"]
    );
    let workload = &inside[0]["workload"];
    assert_eq!(workload["cgroup"], cgroup.path(), "{:#}", inside[0]);
    assert_eq!(workload["runtime"], "docker", "{workload:#}");
    assert_eq!(workload["container_id"], id.as_str(), "{workload:#}");
    assert_eq!(workload["unit"], scope.as_str(), "{workload:#}");
    assert!(workload.get("pod_uid").is_none(), "{workload:#}");
    // The other curl is not the container's.
    assert_ne!(
        others[0]["workload"]["container_id"],
        id.as_str(),
        "{:#}",
        others[0]
    );

    // The table names the cgroup of the host's processes: curl's lookup came from the cgroup.
    let table = report["workloads"].as_array().expect("a workloads table");
    let entry = table
        .iter()
        .find(|w| w["cgroup_id"] == cgroup_id)
        .unwrap_or_else(|| panic!("cgroup {cgroup_id} not in {table:#?}"));
    assert_eq!(entry["container_id"], id.as_str());
    let api = report_host(&report, "api.github.com");
    assert!(
        api["processes"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["cgroup_id"] == cgroup_id)),
        "{api:#}"
    );

    // The event log says it once, and replayed offline (the cgroup gone by then) gives the
    // same report.
    let log = std::fs::read_to_string(&events).expect("the event log");
    let seen: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "cgroup_seen" && e["cgroup_id"] == cgroup_id)
        .collect();
    assert_eq!(seen.len(), 1, "{log}");
    assert_eq!(seen[0]["workload"], *workload);
    drop(cgroup);
    let offline = Command::new(observer_bin())
        .arg("report")
        .arg(&events)
        .output()
        .expect("observer report runs");
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let rebuilt: Value = serde_json::from_slice(&offline.stdout).expect("report JSON on stdout");
    assert_eq!(rebuilt["workloads"], report["workloads"]);
    assert_eq!(rebuilt["flows"], report["flows"]);
}
