//! Installing what the build and the tests need, only when it is missing.

use std::{env, ffi::OsString, path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::check;

/// Debian packages: LLVM 22 for bpf-linker, and the real servers and clients of the network lab.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "nftables",
    "dnsmasq-base",
    "curl",
    "openssl",
    "python3",
    "tmux",
    "iperf3",
    "bpftool",
    "util-linux",
    // `observer suggest` output checked by the real tools (tests/tests/suggest.rs): `squid -k
    // parse`, and the ipset/iptables script run in a throwaway network namespace.
    "squid",
    "ipset",
    "iptables",
    // tests/tests/export_html.rs renders the HTML report in headless Chromium.
    "chromium",
    // The metrics endpoint checked by `promtool check metrics` and scraped by a real Prometheus
    // server in the lab (observer/src/metrics/tests.rs, tests/tests/metrics.rs).
    "prometheus",
    // Containers a job starts, found by the runner's Docker label (tests/tests/daemon.rs): a
    // real dockerd in the lab, its image a static busybox.
    "docker.io",
    "busybox-static",
];

/// The peers `cargo xtask bench` measures the observer against: tcpdump (Debian) and bandwhich
/// (not packaged in Debian 12: built from crates.io, pinned, into `target/tools`).
const BENCH_PACKAGES: &[&str] = &["tcpdump", "iperf3"];
const BANDWHICH_VERSION: &str = "0.23.1";

/// Installs the bench's peers when missing; returns bandwhich's path.
pub fn bench_tools(target: &std::path::Path) -> Result<PathBuf> {
    let missing = missing_of(BENCH_PACKAGES);
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let root = target.join("tools");
    let bandwhich = root.join("bin/bandwhich");
    let installed = Command::new(&bandwhich)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BANDWHICH_VERSION));
    if !installed {
        check(
            Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args([
                    "install",
                    "--locked",
                    "bandwhich",
                    "--version",
                    BANDWHICH_VERSION,
                ])
                .arg("--root")
                .arg(&root),
        )?;
    }
    Ok(bandwhich)
}

/// bpf-linker version known to build against LLVM 22 with our compilers.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// PATH with LLVM 22 and cargo's bin directory first.
pub fn tool_path() -> OsString {
    let mut dirs = vec![PathBuf::from(LLVM_BIN)];
    if let Some(home) = env::var_os("CARGO_HOME")
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").into_os_string()))
    {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    dirs.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    env::join_paths(dirs).unwrap_or_default()
}

fn missing_packages() -> Vec<&'static str> {
    missing_of(APT_PACKAGES)
}

/// The packages of `list` that dpkg does not have installed.
fn missing_of(list: &[&'static str]) -> Vec<&'static str> {
    list.iter()
        .copied()
        .filter(|pkg| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn has_rust_src() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src")
        })
}

fn has_bpf_linker() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .env("PATH", tool_path())
        .output()
        .is_ok_and(|o| o.status.success())
}

fn has_stable_components() -> bool {
    ["fmt", "clippy"].iter().all(|tool| {
        Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([tool, "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// `apt-get update`, then installs `packages` (root).
fn apt_install(packages: &[&str]) -> Result<()> {
    check(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    check(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Sets up only if something is missing (cheap checks first).
pub fn ensure() -> Result<()> {
    if missing_packages().is_empty()
        && has_rust_src()
        && has_bpf_linker()
        && has_stable_components()
    {
        return Ok(());
    }
    run()
}

/// Installs whatever is missing.
pub fn run() -> Result<()> {
    let packages = missing_packages();
    if !packages.is_empty() {
        if !is_root() {
            bail!(
                "missing Debian packages {}: run `sudo cargo xtask setup` (apt-get needs root)",
                packages.join(" ")
            );
        }
        apt_install(&packages)?;
    }
    if !has_stable_components() {
        check(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    }
    let nightly_present = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly_present {
        check(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !has_rust_src() {
        check(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !has_bpf_linker() {
        check(
            Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
                .args(["--no-default-features", "--features", "llvm-22"])
                .env("PATH", tool_path())
                .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX),
        )?;
    }
    eprintln!("xtask: set-up complete");
    Ok(())
}
