//! `cargo xtask test --kernel 6.1`: the lab's end-to-end tests inside a qemu guest that boots
//! another kernel (Debian's packaged one), with the host's root file system shared (virtme-ng).
//!
//! The kernel is Debian's `linux-image-<version>.0-N-amd64-unsigned` (the newest N the apt
//! sources offer): `apt-get download`, `dpkg -x` into `/opt/observer-kernels/<release>`,
//! `depmod -b` there. It is never installed on the host: the guest sees its modules directory
//! at `/lib/modules/<release>` through virtme-ng's `--rodir`. The release binary and the lab's
//! test binaries are built on the host; the guest runs the test binaries (as root, `CI=true`)
//! and prints one `KERNEL-MATRIX-RESULT <test> <exit status>` line per binary on its console,
//! which is parsed here rather than trusting vng's own exit status to carry the tests'.
//!
//! KVM hangs Debian's 6.1 at "Probing EDD" on these machines, so the guest runs under TCG
//! (`--disable-kvm`): slower, but the lab's timing-sensitive tests have margins for it.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, check, setup, workspace_root};

/// Where the packaged kernels are unpacked.
const KERNELS_DIR: &str = "/opt/observer-kernels";
/// The lab tests that matter per kernel: capture (bytes within 10 % of curl's, names, IPv6,
/// adoption), blocked reasons, throughput verdicts.
pub const DEFAULT_TESTS: &[&str] = &["capture", "blocked", "throughput"];
/// Marker lines the guest prints.
const RESULT: &str = "KERNEL-MATRIX-RESULT";
const DONE: &str = "KERNEL-MATRIX-DONE";

/// Runs the lab tests `tests` (test binaries of observer-tests) on Debian's kernel `version`
/// (e.g. "6.1"), passing `filter` to each.
pub fn test(version: &str, tests: &[String], filter: Option<&str>) -> Result<()> {
    if !setup::is_root() {
        bail!("the kernel matrix boots qemu and runs the privileged lab: run it as root");
    }
    if !version
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        bail!("--kernel takes a version such as 6.1, not {version:?}");
    }
    setup::ensure()?;
    ensure_guest_tools()?;
    let release = fetch_kernel(version)?;
    let dir = Path::new(KERNELS_DIR).join(&release);

    check(cargo().args(["build", "--release", "--locked", "-p", "observer"]))?;
    let binaries = lab_binaries(tests)?;

    let root = workspace_root();
    let out_dir = root.join("target/kernel-matrix");
    fs::create_dir_all(&out_dir)?;
    let script = out_dir.join(format!("guest-{release}.sh"));
    fs::write(&script, guest_script(&root, &binaries, filter))?;

    let started = Instant::now();
    let vmlinuz = dir.join(format!("boot/vmlinuz-{release}"));
    let modules = dir.join(format!("lib/modules/{release}"));
    // vng -v writes the guest's console to stderr: both streams are read, as one.
    let mut vng = Command::new("sh");
    vng.args(["-c", "exec \"$0\" \"$@\" 2>&1", "vng"])
        .args(["-v", "--disable-kvm", "--run"])
        .arg(&vmlinuz)
        .args(["--memory", "3G", "--cpus", "2"])
        .arg(format!(
            "--rodir=/lib/modules/{release}={}",
            modules.display()
        ))
        // The lab writes /etc/netns/<ns>: writable in the guest, untouched on the host.
        .arg("--overlay-rwdir=/etc")
        .arg("--exec")
        .arg(format!("sh {}", script.display()))
        .env("PATH", setup::tool_path())
        .stdin(Stdio::null());
    eprintln!("xtask: booting {release} under qemu (TCG): {vng:?}");
    // The console is shown as it comes (a guest run takes minutes) and kept for the verdict.
    let mut child = vng
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| "cannot start vng (pip install virtme-ng)")?;
    let mut console = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.unwrap_or_default();
            eprintln!("guest: {line}");
            console.push_str(&line);
            console.push('\n');
        }
    }
    let status = child.wait()?;
    let log = out_dir.join(format!("{release}.log"));
    fs::write(&log, &console)?;
    let elapsed = started.elapsed().as_secs();
    let results = parse_results(&console);
    for (name, status) in &results {
        eprintln!(
            "xtask: kernel {release}: lab test {name}: {}",
            if *status == 0 { "passed" } else { "FAILED" }
        );
    }
    eprintln!(
        "xtask: kernel {release}: guest run took {elapsed} s; console log {}",
        log.display()
    );
    if !console.contains(DONE) {
        bail!(
            "the guest did not finish its tests (vng exited with {}): see {}",
            status,
            log.display()
        );
    }
    let missing: Vec<&String> = binaries
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !results.iter().any(|(n, _)| n == *name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "no result from the guest for {missing:?}: see {}",
            log.display()
        );
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, status)| *status != 0)
        .map(|(n, _)| n.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "lab tests failed on kernel {release}: {}; see {}",
            failed.join(", "),
            log.display()
        );
    }
    Ok(())
}

/// `(test, exit status)` from the guest's console lines.
pub fn parse_results(console: &str) -> Vec<(String, i32)> {
    console
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(RESULT)? + RESULT.len()..];
            let mut words = rest.split_whitespace();
            let name = words.next()?.to_owned();
            let status = words.next()?.parse().ok()?;
            Some((name, status))
        })
        .collect()
}

/// The shell script the guest runs.
fn guest_script(root: &Path, binaries: &[(String, PathBuf)], filter: Option<&str>) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Written by `cargo xtask test --kernel`; runs inside the guest.\n",
    );
    s.push_str("uname -r\n");
    s.push_str(&format!(
        "export CI=true OBSERVER_BIN={} RUST_BACKTRACE=1 OBSERVER_LAB_READY_TIMEOUT=60\n",
        root.join("target/release/observer").display()
    ));
    // The lab's programs (curl, dnsmasq, nft, ip) and `modprobe` for the modules it needs.
    s.push_str("modprobe -a veth sch_tbf nf_tables tcp_diag inet_diag 2>&1\n");
    s.push_str(&format!("cd {}\n", root.join("tests").display()));
    for (name, path) in binaries {
        let filter = filter
            .map(|f| format!(" '{}'", f.replace('\'', "")))
            .unwrap_or_default();
        s.push_str(&format!(
            "{} --test-threads=1{filter}\necho \"{RESULT} {name} $?\"\n",
            path.display()
        ));
    }
    s.push_str(&format!("echo {DONE}\n"));
    s
}

/// Builds the lab's test binaries and returns `(test name, executable)` for `tests`.
fn lab_binaries(tests: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "-p",
        "observer-tests",
        "--locked",
        "--no-run",
        "--message-format=json",
    ]);
    for t in tests {
        cmd.args(["--test", t]);
    }
    eprintln!("xtask: {cmd:?}");
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("building the lab tests failed: {}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::new();
    for line in stdout.lines() {
        // {"reason":"compiler-artifact",...,"target":{"kind":["test"],...,"name":"capture",...},
        //  ...,"executable":"/path/capture-hash",...}
        if !line.contains("\"compiler-artifact\"") || !line.contains("\"kind\":[\"test\"]") {
            continue;
        }
        let (Some(name), Some(exe)) = (json_str(line, "name"), json_str(line, "executable")) else {
            continue;
        };
        if tests.contains(&name) {
            found.push((name, PathBuf::from(exe)));
        }
    }
    if found.len() != tests.len() {
        bail!("cargo did not build every lab test of {tests:?} (found {found:?})");
    }
    Ok(found)
}

/// The first string value of `"key":"..."` in a line of cargo's JSON (no escapes in the values
/// looked up here: test names and paths in the workspace).
fn json_str(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let end = line[start..].find('"')?;
    Some(line[start..start + end].to_owned())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .env("PATH", setup::tool_path())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// qemu, busybox (virtme-ng's initramfs), kmod (depmod) and virtme-ng, when missing.
fn ensure_guest_tools() -> Result<()> {
    let mut packages = Vec::new();
    for (program, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("depmod", "kmod"),
    ] {
        if !have(program) && !Path::new("/usr/sbin").join(program).exists() {
            packages.push(package);
        }
    }
    if !packages.is_empty() {
        check(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if !have("vng") {
        check(Command::new("pip").args(["install", "virtme-ng"]))?;
    }
    Ok(())
}

/// The newest `linux-image-<version>.0-N-amd64-unsigned` the apt sources offer, unpacked under
/// `KERNELS_DIR`; returns its release (`6.1.0-57-amd64`).
fn fetch_kernel(version: &str) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["search", "--names-only"])
        .arg(format!(
            "^linux-image-{}\\.[0-9]+-[0-9]+-amd64-unsigned$",
            version.replace('.', "\\.")
        ))
        .output()
        .context("cannot run apt-cache")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let package = newest_package(&listing).with_context(|| {
        format!(
            "no linux-image-{version}.*-amd64-unsigned package in the apt sources (Debian 12 has \
             6.1): run `apt-get update`, or pick a version Debian packages"
        )
    })?;
    let release = package
        .strip_prefix("linux-image-")
        .and_then(|p| p.strip_suffix("-unsigned"))
        .unwrap_or_default()
        .to_owned();
    let dir = Path::new(KERNELS_DIR).join(&release);
    if dir.join(format!("boot/vmlinuz-{release}")).exists()
        && dir
            .join(format!("lib/modules/{release}/modules.dep"))
            .exists()
    {
        return Ok(release);
    }
    fs::create_dir_all(KERNELS_DIR)?;
    check(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(KERNELS_DIR),
    )?;
    let deb = fs::read_dir(KERNELS_DIR)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb in {KERNELS_DIR}"))?;
    check(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir))?;
    check(Command::new("depmod").arg("-b").arg(&dir).arg(&release))?;
    Ok(release)
}

/// The package with the highest ABI number in `apt-cache search` output.
pub fn newest_package(listing: &str) -> Option<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| {
            let abi: u32 = name
                .strip_suffix("-amd64-unsigned")?
                .rsplit('-')
                .next()?
                .parse()
                .ok()?;
            Some((abi, name.to_owned()))
        })
        .max()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_abi_is_picked() {
        let listing = "linux-image-6.1.0-9-amd64-unsigned - Linux 6.1 for 64-bit PCs\n\
                       linux-image-6.1.0-57-amd64-unsigned - Linux 6.1 for 64-bit PCs\n\
                       linux-image-6.1.0-50-amd64-unsigned - Linux 6.1 for 64-bit PCs\n";
        assert_eq!(
            newest_package(listing).as_deref(),
            Some("linux-image-6.1.0-57-amd64-unsigned")
        );
        assert_eq!(newest_package(""), None);
    }

    #[test]
    fn results_are_read_from_the_console_even_amid_kernel_messages() {
        let console = "[   40.1] virtme-ng-init: starting script\n\
                       test result: ok. 6 passed\n\
                       KERNEL-MATRIX-RESULT capture 0\n\
                       [   99.2] random: crng init done KERNEL-MATRIX-RESULT blocked 101\n\
                       KERNEL-MATRIX-RESULT broken\n\
                       KERNEL-MATRIX-DONE\n";
        assert_eq!(
            parse_results(console),
            [("capture".to_owned(), 0), ("blocked".to_owned(), 101)]
        );
    }
}
