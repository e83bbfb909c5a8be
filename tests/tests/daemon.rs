//! `observer daemon` end to end, as a runner host runs it: the real daemon under supervision
//! (started, SIGHUP, SIGTERM, restarted on the same state directory), a fake `Runner.Worker`
//! (a copy of bash under that name) running the job hooks as an unprivileged user, with traffic
//! inside the job (a documented host, a blocked one, an undeclared one) while another process
//! tree (this test, as root) makes its own connections that must stay out of the job. Two jobs
//! in a row; the job summary and stored report checked field by field; `--fail-on` and
//! `--require` exit codes; a job whose worker ends without its completed hook closed as
//! abandoned; a user outside the socket's group and malformed or oversized requests
//! are refused while the capture keeps running.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use observer_tests::{observer::observer_bin, require_root_or_skip, Lab, LabConfig};
use serde_json::Value;

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, last)
}

/// `nobody`/`nogroup`: the runner's unprivileged user, and the socket's group.
const RUNNER_UID: u32 = 65534;
const SOCKET_GROUP: &str = "nogroup";

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The options of the daemon whose `/metrics` the first test scrapes.
const METRICS: &[&str] = &["--metrics", "127.0.0.1:9477"];

/// `dir/bin`, readable by the runner's user, with the observer binary and the fake worker (bash
/// named `Runner.Worker`, so `dir` is its runner directory).
fn runner_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    for d in [dir, &bin] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::copy(observer_bin(), bin.join("observer")).expect("copy observer");
    std::fs::copy("/bin/bash", bin.join("Runner.Worker")).expect("copy bash");
    bin
}

/// The daemon, stopped (SIGTERM, then SIGKILL) when dropped.
struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Daemon {
    /// Starts the daemon in the lab's runner namespace (its metrics endpoint, when `extra` asks
    /// for one, listens there) with `extra` options.
    fn start(lab: &Lab, dir: &Path, socket: &Path, extra: &[&str]) -> Self {
        let stderr = dir.join(format!(
            "daemon-{}.err",
            Instant::now().elapsed().as_nanos()
        ));
        // Only the network namespace: `ip netns exec` would remount /sys without cgroup2.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.runner_ns()))
            .arg(observer_bin())
            .args(["daemon", "--socket"])
            .arg(socket)
            .args(["--socket-group", SOCKET_GROUP, "--state-dir"])
            .arg(dir.join("state"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start observer daemon");
        let daemon = Self { child, stderr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() || !daemon.stderr().contains("listening") {
            assert!(
                Instant::now() < deadline,
                "the daemon did not start: {}",
                daemon.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The capture attaches after the socket is bound: give it a moment.
        std::thread::sleep(Duration::from_millis(1500));
        daemon
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `script` under a process named `Runner.Worker` (bash), as the runner's user, in the
/// lab's runner namespace, with the job's `GITHUB_*` variables.
fn run_job(lab: &Lab, bin: &Path, script: &str, run_id: &str, summary: &Path) -> Output {
    let worker = bin.join("Runner.Worker");
    let mut cmd = lab.runner_command("setpriv");
    cmd.args([
        "--reuid",
        &RUNNER_UID.to_string(),
        "--regid",
        &RUNNER_UID.to_string(),
        "--clear-groups",
    ])
    .arg(&worker)
    .args(["-c", script])
    .env_clear()
    .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
    .env("GITHUB_REPOSITORY", "octo/app")
    .env("GITHUB_RUN_ID", run_id)
    .env("GITHUB_RUN_ATTEMPT", "1")
    .env("GITHUB_JOB", "build")
    .env("GITHUB_WORKFLOW", "CI")
    .env("RUNNER_NAME", "lab-runner-1")
    .env("GITHUB_STEP_SUMMARY", summary);
    cmd.output().expect("run the fake Runner.Worker")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One raw request on the socket, as root; the answer line.
fn raw_request(socket: &Path, bytes: &[u8]) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connect as root");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    serde_json::from_str(answer.trim()).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

fn host<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == name))
}

#[test]
fn jobs_are_reported_from_their_own_process_tree() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("daemon")
        .a("api.github.com", v4(10))
        .tls_server(IpAddr::V4(v4(10)))
        .a("codeload.github.com", v4(22))
        .tls_server(IpAddr::V4(v4(22)))
        .a("registry.example.org", v4(27))
        .tls_server(IpAddr::V4(v4(27)))
        .a("ghcr.io", v4(24))
        .tls_server(IpAddr::V4(v4(24)))
        .start();
    lab.nft_internet(
        "table inet firewall {
            chain in {
                type filter hook input priority 0; policy accept;
                ip daddr 198.18.1.22 tcp dport 443 reject with tcp reset
            }
        }",
    );
    // A directory the runner's user can read: the observer binary and the fake worker.
    let dir = std::env::temp_dir().join(format!("observer-daemon-{}", std::process::id()));
    let _cleanup = RemoveDir(dir.clone());
    let bin = runner_bin(&dir);
    let summaries = dir.join("summaries");
    std::fs::create_dir_all(&summaries).expect("summaries");
    std::fs::set_permissions(&summaries, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let socket = dir.join("run").join("observer.sock");

    let mut daemon = Daemon::start(&lab, &dir, &socket, METRICS);
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");

    let curl = "curl -sS -k -o /dev/null --connect-timeout 3";
    let sock = socket.display();
    // Job 1: a documented host, a blocked one, an undeclared one; --fail-on blocked.
    let job1 = format!(
        "observer job started --socket {sock} || exit 90
         {curl} https://api.github.com/bytes/3000
         {curl} https://codeload.github.com/ ; true
         {curl} https://registry.example.org/bytes/100
         observer job completed --socket {sock} --fail-on blocked
         echo completed=$?"
    );
    // Concurrent traffic from another process tree (root, outside the job) while job 1 runs.
    let outsider = {
        let mut cmd = lab.runner_command("sh");
        cmd.args([
            "-c",
            "for i in 1 2 3 4 5; do curl -sS -k -o /dev/null https://ghcr.io/bytes/100; sleep 0.3; done",
        ]);
        cmd.spawn().expect("outsider curl")
    };
    let summary1 = summaries.join("job1.md");
    let out1 = run_job(&lab, &bin, &job1, "101", &summary1);
    let mut outsider = outsider;
    let _ = outsider.wait();
    let log1 = text(&out1);
    assert!(
        log1.contains("completed=21"),
        "--fail-on blocked exits 21: {log1}\n{}",
        daemon.stderr()
    );

    // Job 2: only the documented host; --fail-on blocked passes.
    let job2 = format!(
        "observer job started --socket {sock} || exit 90
         {curl} https://api.github.com/bytes/1000
         observer job completed --socket {sock} --fail-on blocked,slow
         echo completed=$?"
    );
    let summary2 = summaries.join("job2.md");
    let out2 = run_job(&lab, &bin, &job2, "102", &summary2);
    assert!(text(&out2).contains("completed=0"), "{}", text(&out2));

    // The gate: actions-download is blocked now (job 1 saw codeload.github.com reset).
    let gate = run_job(
        &lab,
        &bin,
        &format!(
            "observer job started --socket {sock} --require actions-download; echo started=$?"
        ),
        "103",
        &summaries.join("job3.md"),
    );
    let gate_log = text(&gate);
    assert!(gate_log.contains("started=20"), "{gate_log}");
    assert!(gate_log.contains("actions-download: blocked"), "{gate_log}");
    // ... and essential is fine: the gate passes (and that job is then completed).
    let pass = run_job(
        &lab,
        &bin,
        &format!(
            "observer job started --socket {sock} --require essential; echo started=$?
             observer job completed --socket {sock} --no-summary
             echo completed=$?"
        ),
        "104",
        &summaries.join("job4.md"),
    );
    assert!(text(&pass).contains("started=0"), "{}", text(&pass));

    // Users outside the group cannot connect; hostile requests are refused; capture goes on.
    let outside = lab
        .runner_command("setpriv")
        .args(["--reuid", "1", "--regid", "1", "--clear-groups"])
        .arg(bin.join("observer"))
        .args(["job", "started", "--socket"])
        .arg(&socket)
        .args(["--require", "essential"])
        .output()
        .expect("outsider");
    assert!(!outside.status.success(), "{}", text(&outside));
    assert!(
        text(&outside).contains("Permission denied"),
        "{}",
        text(&outside)
    );
    let bad = raw_request(&socket, b"{\"v\":1,\"op\":\"reboot\"}\n");
    assert_eq!(bad["ok"], false, "{bad}");
    let huge = vec![b'x'; 1 << 20];
    let answer = raw_request(&socket, &huge);
    assert_eq!(answer["ok"], false, "{answer}");
    let old = raw_request(&socket, b"{\"v\":9,\"op\":\"status\"}\n");
    assert!(
        old["error"].as_str().unwrap_or("").contains("version"),
        "{old}"
    );
    // A client that connects and says nothing does not hold anything up.
    let _silent = UnixStream::connect(&socket).expect("silent client");
    let status = raw_request(&socket, b"{\"v\":1,\"op\":\"status\"}\n");
    assert_eq!(status["ok"], true, "{status}");
    assert!(
        status["status"]["capture"]["probes_attached"]
            .as_u64()
            .unwrap_or(0)
            > 5
    );

    // Prometheus metrics, from inside the namespace the endpoint listens in.
    let scrape = lab
        .runner_command("curl")
        .args(["-sS", "http://127.0.0.1:9477/metrics"])
        .output()
        .expect("scrape");
    let page = String::from_utf8_lossy(&scrape.stdout);
    assert!(
        page.contains("observer_jobs_total{result=\"blocked\"} 1"),
        "{page}"
    );
    assert!(
        page.contains("observer_jobs_total{result=\"ok\"} 2"),
        "{page}"
    );
    assert!(
        page.contains("observer_group_status{group=\"actions-download\",status=\"blocked\"} 1"),
        "{page}"
    );

    // SIGHUP reloads; the daemon goes on.
    daemon.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(daemon.running(), "{}", daemon.stderr());
    assert!(
        daemon.stderr().contains("catalog reloaded"),
        "{}",
        daemon.stderr()
    );

    // The stored reports, field by field.
    let jobs_dir = dir.join("state").join("jobs");
    let mut reports: Vec<Value> = std::fs::read_dir(&jobs_dir)
        .expect("jobs dir")
        .flatten()
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .collect();
    reports.sort_by_key(|r| r["job"]["run_id"].as_str().unwrap_or("").to_owned());
    assert_eq!(
        reports.len(),
        4,
        "jobs 101, 102, 103 (abandoned), 104: {}\n{}",
        text(&pass),
        daemon.stderr()
    );
    // The gated job never ran its completed hook: closed as abandoned when its worker was gone.
    assert_eq!(reports[2]["job"]["run_id"], "103");
    assert_eq!(
        reports[2]["job"]["abandoned"], true,
        "{:#}",
        reports[2]["job"]
    );
    assert!(reports[3]["job"]["abandoned"].is_null());
    let r1 = &reports[0];
    assert_eq!(r1["job"]["repository"], "octo/app");
    assert_eq!(r1["job"]["run_id"], "101");
    assert_eq!(r1["job"]["run_attempt"], "1");
    assert_eq!(r1["job"]["job"], "build");
    assert_eq!(r1["job"]["workflow"], "CI");
    assert_eq!(r1["job"]["runner_name"], "lab-runner-1");
    assert!(r1["job"]["worker_pid"].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        host(r1, "api.github.com").expect("api")["status"],
        "ok",
        "{r1:#}"
    );
    let codeload = host(r1, "codeload.github.com").expect("codeload");
    assert_eq!(codeload["status"], "blocked");
    assert_eq!(codeload["reasons"][0]["code"], "tcp_reset");
    let undeclared: Vec<&str> = r1["undeclared"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(undeclared, ["registry.example.org"], "{r1:#}");
    // Nothing of the other tree: ghcr.io was reached only by the outsider.
    assert!(
        host(r1, "ghcr.io").is_none_or(|h| h["status"] == "unseen"),
        "{r1:#}"
    );
    let procs: Vec<&str> = r1["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["process"]["comm"].as_str())
        .collect();
    assert!(procs.iter().all(|c| *c == "curl"), "{procs:?}");
    assert_eq!(procs.len(), 3, "{procs:?}");
    let r2 = &reports[1];
    assert_eq!(r2["job"]["run_id"], "102");
    assert_eq!(r2["flows"].as_array().unwrap().len(), 1, "{r2:#}");
    assert!(r2["undeclared"].as_array().unwrap().is_empty());

    // The job summaries.
    let s1 = std::fs::read_to_string(&summary1).expect("summary 1");
    assert!(s1.contains("octo/app run 101 attempt 1 job build"), "{s1}");
    assert!(
        s1.contains("codeload.github.com BLOCKED: tcp\\_reset"),
        "{s1}"
    );
    assert!(s1.contains("registry.example.org"), "{s1}");
    let s2 = std::fs::read_to_string(&summary2).expect("summary 2");
    assert!(
        s2.contains("Every documented host the job used was reachable"),
        "{s2}"
    );
    assert!(!summaries.join("job4.md").exists(), "--no-summary");

    // SIGTERM: a clean stop; the socket is gone; a restart keeps the state.
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
    let events: Vec<_> = std::fs::read_dir(dir.join("state").join("events"))
        .expect("events dir")
        .flatten()
        .collect();
    assert!(!events.is_empty());
    let daemon = Daemon::start(&lab, &dir, &socket, METRICS);
    let list = Command::new(observer_bin())
        .args(["report", "--jobs", "--state-dir"])
        .arg(dir.join("state"))
        .output()
        .expect("report --jobs");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(
        listed.lines().next().unwrap_or("").contains("run 104"),
        "newest first: {listed}"
    );
    assert!(listed.contains("blocked, undeclared"), "{listed}");
    let stderr = daemon.stderr.clone();
    let status = daemon.stop();
    let stderr = std::fs::read_to_string(stderr).unwrap_or_default();
    assert!(status.success(), "{status:?}: {stderr}");
}

/// A real `dockerd` listening on `dir/docker.sock` (group `nogroup`, as the runner's user is),
/// in the lab's runner namespace, with `lab/busybox` (a static busybox) imported; stopped, its
/// mounts undone and its directory removed when dropped.
struct Dockerd {
    child: Child,
    dir: PathBuf,
}

impl Dockerd {
    fn start(lab: &Lab, dir: &Path) -> Self {
        let dir = dir.join("docker");
        std::fs::create_dir_all(&dir).expect("docker dir");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.runner_ns()))
            .arg("dockerd")
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--group",
                SOCKET_GROUP,
            ])
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd (Debian package docker.io)");
        let dockerd = Self { child, dir };
        // Minutes in an emulated guest of the kernel matrix; a second or two here.
        let deadline = Instant::now() + Duration::from_secs(240);
        while !dockerd.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(dockerd.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The image: a static busybox, imported from a tarball (nothing is pulled).
        let rootfs = dockerd.dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
        for applet in ["sh", "nc", "nslookup", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("link");
        }
        let import = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {} -c . | docker -H unix://{} import - lab/busybox",
                rootfs.display(),
                dockerd.socket().display()
            ))
            .output()
            .expect("docker import");
        assert!(import.status.success(), "{}", text(&import));
        dockerd
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .output()
            .expect("docker CLI")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ps = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ps.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // What dockerd leaves mounted (its network namespace handle), innermost first.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn containers_the_job_s_runner_starts_are_the_job_s_and_no_one_else_s() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("dockjob")
        .a("api.github.com", v4(10))
        .tls_server(IpAddr::V4(v4(10)))
        .a("registry.example.org", v4(27))
        .tls_server(IpAddr::V4(v4(27)))
        .a("ghcr.io", v4(24))
        .tls_server(IpAddr::V4(v4(24)))
        .start();
    let dir = std::env::temp_dir().join(format!("observer-dockjob-{}", std::process::id()));
    let _cleanup = RemoveDir(dir.clone());
    let bin = runner_bin(&dir);
    // The runner's configuration: its instance label is the hash of this file.
    std::fs::write(
        dir.join(".runner"),
        "{\"agentid\": 7, \"agentname\": \"lab-runner-1\", \"poolid\": 1}",
    )
    .expect(".runner");
    let dockerd = Dockerd::start(&lab, &dir);
    let socket = dir.join("run").join("observer.sock");
    // The daemon asks this dockerd about containers.
    let docker_socket = dockerd.socket().display().to_string();
    let mut daemon = Daemon::start(&lab, &dir, &socket, &["--docker-socket", &docker_socket]);
    let dns = lab.dns_server();
    let docker_host = format!("unix://{}", dockerd.socket().display());
    // Another runner's container on the same host, at the same time: its own label.
    let other = dockerd.docker(&[
        "run",
        "-d",
        "--security-opt",
        "apparmor=unconfined",
        "--network",
        "host",
        "--label",
        "0a0b0c",
        "lab/busybox",
        "sh",
        "-c",
        &format!(
            "for i in 1 2 3 4 5 6; do nslookup ghcr.io {dns}; nc -w 1 198.18.1.24 443 </dev/null; \
             sleep 0.5; done"
        ),
    ]);
    assert!(other.status.success(), "{}", text(&other));
    // The job: the runner labels its containers with its instance label (the first six hex
    // digits of the SHA-256 of its lowercased .runner file), as `docker run` does for a
    // Docker action or `docker create` for a service container.
    let job = format!(
        "observer job started --socket {sock} || exit 90
         label=$(sha256sum < {root}/.runner | cut -c1-6)
         docker -H {docker_host} run --rm --name job-step --network host --label $label \
           --security-opt apparmor=unconfined \
           lab/busybox sh -c 'nslookup api.github.com {dns}; nc -w 2 198.18.1.10 443 </dev/null;
             nslookup registry.example.org {dns}; nc -w 2 198.18.1.27 443 </dev/null; sleep 1'
         echo docker=$?
         observer job completed --socket {sock} --no-summary
         echo completed=$?",
        sock = socket.display(),
        root = dir.display(),
    );
    let out = run_job(&lab, &bin, &job, "201", &dir.join("summary.md"));
    let log = text(&out);
    assert!(
        log.contains("docker=0") && log.contains("completed=0"),
        "{log}\n{}",
        daemon.stderr()
    );
    assert!(daemon.running(), "{}", daemon.stderr());
    let jobs_dir = dir.join("state").join("jobs");
    let report: Value = std::fs::read_dir(&jobs_dir)
        .expect("jobs dir")
        .flatten()
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .next()
        .expect("the job's report");
    let section = &report["job"];
    let label = {
        let sum = Command::new("sh")
            .arg("-c")
            .arg(format!("sha256sum < {}/.runner", dir.display()))
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&sum.stdout)[..6].to_owned()
    };
    assert_eq!(section["runner_label"], label.as_str(), "{section:#}");
    let containers = section["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "only the job's container: {section:#}");
    assert_eq!(containers[0]["name"], "job-step");
    assert_eq!(containers[0]["image"], "lab/busybox");
    let id = containers[0]["id"].as_str().expect("id");
    // Every flow of the report is the container's, named by the lookups made in it.
    let flows = report["flows"].as_array().expect("flows");
    let names: Vec<&str> = flows.iter().filter_map(|f| f["name"].as_str()).collect();
    assert!(
        names.contains(&"api.github.com") && names.contains(&"registry.example.org"),
        "{names:?}: {report:#}"
    );
    for f in flows {
        assert_eq!(f["workload"]["container_id"], id, "{f:#}");
    }
    let undeclared: Vec<&str> = report["undeclared"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(undeclared, ["registry.example.org"], "{report:#}");
    // Nothing of the other runner's container.
    assert!(
        host(&report, "ghcr.io").is_none_or(|h| h["status"] == "unseen"),
        "{report:#}"
    );
    assert!(section["containers_note"].is_null(), "{section:#}");
    daemon.stop();
    drop(dockerd);
}
