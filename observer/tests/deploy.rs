//! The deploy recipes, checked without root: `deploy/kubernetes/daemonset.yaml` parsed as YAML
//! (serde_norway, the maintained fork of serde_yaml the tests already use) and held to what
//! docs/deploy.md says of it, and `deploy/container/Containerfile` held to what a build needs
//! (xtask/src/setup.rs, the workspace's `rust-version`).

use std::{collections::BTreeSet, fs, path::PathBuf, process::Command};

use serde::Deserialize as _;
use serde_norway::Value;

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

/// Every document of the manifest.
fn manifest() -> Vec<Value> {
    let text = repo_file("deploy/kubernetes/daemonset.yaml");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("each document is YAML"))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the manifest");
    found[0]
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn texts(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(text)
        .collect()
}

/// The observer's container of the DaemonSet.
fn container(docs: &[Value]) -> &Value {
    let containers = &of_kind(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"];
    let list = containers.as_sequence().expect("containers");
    assert_eq!(list.len(), 1, "one container");
    &list[0]
}

/// Its command line: `command` then `args`.
fn command_line(docs: &[Value]) -> Vec<String> {
    let c = container(docs);
    let mut line: Vec<String> = texts(&c["command"])
        .into_iter()
        .map(str::to_owned)
        .collect();
    line.extend(texts(&c["args"]).into_iter().map(str::to_owned));
    line
}

/// The value of `--flag` on the command line.
fn flag<'a>(line: &'a [String], name: &str) -> &'a str {
    let at = line
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("no {name} in {line:?}"));
    line.get(at + 1)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{name} without a value"))
}

#[test]
fn it_is_a_daemonset_in_the_hosts_pid_namespace_without_privilege() {
    let docs = manifest();
    let kinds: Vec<&str> = docs.iter().map(|d| text(&d["kind"])).collect();
    assert_eq!(kinds, ["Namespace", "DaemonSet", "Service"]);
    let ds = of_kind(&docs, "DaemonSet");
    assert_eq!(ds["apiVersion"], "apps/v1");
    let namespace = text(&of_kind(&docs, "Namespace")["metadata"]["name"]);
    assert_eq!(ds["metadata"]["namespace"], namespace);
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    // The kernel programs see every network namespace; the pod's network serves /metrics.
    assert_eq!(pod["hostNetwork"], false);
    // The selector selects the template.
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    let selector = ds["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&labels[k.as_str().expect("label key")], v);
    }
    // It runs on tainted runner nodes too.
    assert!(texts(&Value::Sequence(
        pod["tolerations"]
            .as_sequence()
            .expect("tolerations")
            .iter()
            .map(|t| t["operator"].clone())
            .collect()
    ))
    .contains(&"Exists"));

    let security = &container(&docs)["securityContext"];
    assert_ne!(security["privileged"], true, "not privileged: {security:?}");
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsUser"], 0, "the capabilities are root's");
    assert_eq!(texts(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
}

/// The capabilities docs/deploy.md lists in its table ("| `CAP_X` | what for |"), in order.
fn documented_capabilities() -> Vec<String> {
    let doc = repo_file("docs/deploy.md");
    let table: Vec<String> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| capability |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cell = l.split('|').nth(1).expect("a first cell").trim();
            cell.trim_matches('`').to_owned()
        })
        .collect();
    assert!(!table.is_empty(), "no capability table in docs/deploy.md");
    table
}

#[test]
fn the_capabilities_are_exactly_those_docs_deploy_md_lists() {
    let docs = manifest();
    let added: Vec<String> = texts(&container(&docs)["securityContext"]["capabilities"]["add"])
        .into_iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    assert_eq!(added, documented_capabilities());
    // The ones the capture checks for before loading anything (capture/load.rs), and
    // CAP_SYS_ADMIN only as docs/deploy.md's documented addition for older kernels.
    for needed in ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"] {
        assert!(added.iter().any(|c| c == needed), "{needed} missing");
    }
    assert!(!added.iter().any(|c| c == "CAP_SYS_ADMIN"));
    assert!(repo_file("docs/deploy.md").contains("Add `SYS_ADMIN`"));
}

#[test]
fn the_mounts_are_there_and_read_only_where_they_should_be() {
    let docs = manifest();
    let pod = &of_kind(&docs, "DaemonSet")["spec"]["template"]["spec"];
    let host_paths: Vec<(&str, &str)> = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(|v| (text(&v["name"]), text(&v["hostPath"]["path"])))
        .collect();
    // (host path, where in the pod, read-only)
    let expected = [
        ("/sys/fs/cgroup", "/sys/fs/cgroup", true),
        ("/sys/kernel/btf", "/sys/kernel/btf", true),
        ("/sys/kernel/tracing", "/sys/kernel/tracing", true),
        ("/var/lib/observer", "/var/lib/observer", false),
        ("/run/observer", "/run/observer", false),
    ];
    let mounts = container(&docs)["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts");
    assert_eq!(mounts.len(), expected.len(), "{mounts:?}");
    for (host, inside, read_only) in expected {
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"] == inside)
            .unwrap_or_else(|| panic!("nothing mounted at {inside}"));
        let name = text(&mount["name"]);
        assert!(
            host_paths.contains(&(name, host)),
            "{inside} is not the host's {host}: {host_paths:?}"
        );
        let ro = mount["readOnly"].as_bool().unwrap_or(false);
        assert_eq!(ro, read_only, "{inside} read-only should be {read_only}");
    }
    // Every mount is documented in docs/deploy.md's mount table.
    let doc = repo_file("docs/deploy.md");
    for (host, inside, read_only) in expected {
        let mode = if read_only { "read-only" } else { "read-write" };
        let row = format!("| `{host}` | `{inside}` | {mode} |");
        assert!(doc.contains(&row), "docs/deploy.md has no row {row}");
    }
    // The daemon's socket and state live in the host's directories.
    let line = command_line(&docs);
    assert!(flag(&line, "--socket").starts_with("/run/observer/"));
    assert_eq!(flag(&line, "--state-dir"), "/var/lib/observer");
}

/// The options of `observer daemon` the recipes may use; each must also be in its `--help`.
const DAEMON_FLAGS: &[&str] = &[
    "--socket",
    "--state-dir",
    "--metrics",
    "--socket-group",
    "--catalog",
    "--proxy",
    "--ports",
    "--docker-socket",
];

#[test]
fn the_command_line_uses_only_flags_observer_daemon_takes() {
    let docs = manifest();
    let line = command_line(&docs);
    assert_eq!(line[0], "/usr/local/bin/observer");
    assert_eq!(line[1], "daemon");
    let flags: Vec<&str> = line[2..]
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with('-'))
        .collect();
    assert_eq!(
        flags,
        ["--socket", "--state-dir", "--metrics", "--docker-socket"]
    );
    for f in &flags {
        assert!(
            DAEMON_FLAGS.contains(f),
            "{f} is no option of observer daemon"
        );
    }
    // Every flag takes a value, and no stray argument is left.
    assert_eq!(line.len() - 2, 2 * flags.len(), "{line:?}");

    let help = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["daemon", "--help"])
        .output()
        .expect("the observer runs");
    if help.status.success() {
        let help = String::from_utf8_lossy(&help.stdout);
        for f in &flags {
            assert!(
                help.contains(f),
                "observer daemon --help has no {f}:\n{help}"
            );
        }
    }
}

#[test]
fn prometheus_finds_the_metrics_port() {
    let docs = manifest();
    let line = command_line(&docs);
    let metrics = flag(&line, "--metrics");
    let (host, port) = metrics.rsplit_once(':').expect("ADDR:PORT");
    assert_eq!(host, "0.0.0.0", "reachable from the pod's network");
    let port: u64 = port.parse().expect("a port");
    let c = container(&docs);
    let ports = c["ports"].as_sequence().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["containerPort"], port);
    assert_eq!(ports[0]["name"], "metrics");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/metrics");

    let annotations = &of_kind(&docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string().as_str());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The headless Service selects the pods and names the port; it carries no scrape
    // annotations of its own (the pods' would be scraped twice).
    let service = of_kind(&docs, "Service");
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["metadata"]["namespace"], "observer");
    assert!(service["metadata"]["annotations"].is_null());
    let selector = service["spec"]["selector"].as_mapping().expect("selector");
    let labels = &of_kind(&docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector {
        assert_eq!(&labels[k.as_str().expect("label key")], v);
    }
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["port"], port);
    assert_eq!(service_port["targetPort"], "metrics");
}

/// A `const NAME: &str = "value";` of a Rust source.
fn rust_const<'a>(source: &'a str, name: &str) -> &'a str {
    let line = source
        .lines()
        .find(|l| l.starts_with(&format!("const {name}")))
        .unwrap_or_else(|| panic!("no const {name}"));
    line.split('"').nth(1).expect("a string constant")
}

#[test]
fn the_containerfile_builds_with_what_the_setup_installs() {
    let file = repo_file("deploy/container/Containerfile");
    let stages: Vec<&str> = file.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    // The build stage: Debian 12 (as setup.rs assumes) with the workspace's Rust.
    let workspace = repo_file("Cargo.toml");
    let rust_version = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    assert_eq!(
        stages[0],
        format!("FROM docker.io/library/rust:{rust_version}-bookworm AS build")
    );
    assert_eq!(stages[1], "FROM docker.io/library/debian:bookworm-slim");

    // What setup.rs installs for a build (its other packages are the lab's).
    let setup = repo_file("xtask/src/setup.rs");
    for package in [
        "llvm-22-dev",
        "libpolly-22-dev",
        "libzstd-dev",
        "zlib1g-dev",
    ] {
        assert!(
            setup.contains(&format!("\"{package}\"")),
            "setup.rs: {package}"
        );
        assert!(
            file.contains(package),
            "the Containerfile does not install {package}"
        );
    }
    let linker = rust_const(&setup, "BPF_LINKER_VERSION");
    assert!(
        file.contains(&format!(
            "cargo install bpf-linker --version {linker} --no-default-features --features llvm-22"
        )),
        "bpf-linker {linker} as setup.rs installs it"
    );
    assert!(file.contains(&format!(
        "LLVM_SYS_221_PREFIX={}",
        rust_const(&setup, "LLVM_PREFIX")
    )));
    assert!(file.contains("--component rust-src"));
    assert!(file.contains("cargo build --release --locked -p observer"));

    // The runtime stage holds the binary where the DaemonSet runs it.
    let docs = manifest();
    let binary = &command_line(&docs)[0];
    assert!(file.contains(&format!("COPY --from=build /observer {binary}")));
    assert!(file.contains(&format!("ENTRYPOINT [\"{binary}\"]")));
    // The build context leaves the build outputs out.
    let ignore: BTreeSet<String> = repo_file(".dockerignore")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(ignore.contains("/target"), "{ignore:?}");
}

/// The flags of `observer daemon --help`.
fn daemon_help() -> String {
    let help = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["daemon", "--help"])
        .output()
        .expect("the observer runs");
    assert!(help.status.success());
    String::from_utf8_lossy(&help.stdout).into_owned()
}

#[test]
fn the_systemd_unit_runs_the_daemon_hardened_and_verifies() {
    let unit = repo_file("deploy/systemd/observer.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(&words[..2], ["/usr/local/bin/observer", "daemon"]);
    let help = daemon_help();
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "observer daemon --help has no {flag}");
    }
    // Only the capabilities docs/daemon.md lists, and the directories it writes.
    let caps: BTreeSet<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet")
        .split_whitespace()
        .collect();
    let doc = repo_file("docs/daemon.md");
    for cap in &caps {
        assert!(
            doc.contains(&format!("`{cap}`")),
            "{cap} is not explained in docs/daemon.md"
        );
    }
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/observer /run/observer",
        "RuntimeDirectory=observer",
        "StateDirectory=observer",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // systemd's own check, with the binary under test in place of the installed one.
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let Ok(_) = Command::new("systemd-analyze").arg("--version").output() else {
        assert!(!ci, "systemd-analyze is missing (Debian: systemd)");
        eprintln!("skipping systemd-analyze verify: not installed");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("observer.service");
    fs::write(
        &copy,
        unit.replace("/usr/local/bin/observer", env!("CARGO_BIN_EXE_observer")),
    )
    .expect("copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_runner_hooks_call_the_job_commands() {
    for (file, command) in [
        ("deploy/runner-hooks/job-started.sh", "job started"),
        ("deploy/runner-hooks/job-completed.sh", "job completed"),
    ] {
        let script = repo_file(file);
        assert!(script.starts_with("#!/bin/sh\n"), "{file}");
        assert!(
            script.contains(&format!(
                "\"$exec_observer\" {command} --socket /run/observer/observer.sock \"$@\""
            )),
            "{file}"
        );
        let out = Command::new("sh")
            .arg("-n")
            .arg(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(file),
            )
            .output()
            .expect("sh -n");
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
