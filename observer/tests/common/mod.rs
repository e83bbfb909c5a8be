//! What the black-box CLI tests share: running the built binary.

use std::process::Command;

/// Runs the built `observer` with `args`: its exit status, stdout and stderr.
pub fn observer(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(args)
        .output()
        .expect("run observer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every `observer suggest --format` (the suggest tests run each).
#[allow(dead_code)] // not every test file that shares this module suggests rules
pub const FORMATS: [&str; 9] = [
    "domains",
    "squid",
    "nftables",
    "iptables",
    "harden-runner",
    "cilium",
    "suricata",
    "azure-firewall",
    "aws-network-firewall",
];
