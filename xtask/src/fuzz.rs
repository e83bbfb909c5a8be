//! `cargo xtask fuzz [--seconds N]`: every cargo-fuzz target of tests/fuzz (its own workspace,
//! nightly, libFuzzer), one after the other, each for N seconds, on one core.
//!
//! The committed corpus (tests/fuzz/corpus/TARGET) seeds each run and is only read; what a run
//! learns goes to target/fuzz/corpus/TARGET, kept between runs. A crash stops with the input
//! saved under tests/fuzz/artifacts/TARGET and the command to reproduce it.

use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::{check, workspace_root};

/// The fuzz targets (tests/fuzz/fuzz_targets/*.rs).
pub const TARGETS: [&str; 7] = [
    "record",
    "dns",
    "event_line",
    "report",
    "catalog",
    "rules",
    "first_bytes",
];

/// `cargo fuzz` on the nightly toolchain.
fn cargo_fuzz() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz"])
        .env("PATH", crate::setup::tool_path())
        .current_dir(workspace_root().join("tests"));
    cmd
}

/// Installs cargo-fuzz when it is missing.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = cargo_fuzz()
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        check(crate::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// How the targets are built: optimised for real runs, unoptimised (faster to build) for the
/// short smoke of `cargo xtask test`.
#[derive(Clone, Copy)]
pub enum Build {
    Optimised,
    Smoke,
}

impl Build {
    fn flag(self) -> &'static str {
        match self {
            Build::Optimised => "-O",
            Build::Smoke => "--dev",
        }
    }

    /// How long each target runs: `seconds` for real runs; for the smoke a fixed seed and at
    /// most 2,000 inputs (within `seconds`), so that CI tries the same inputs in the same order
    /// on every run (the slowest target, event_line, manages a few dozen a second).
    fn limits(self, seconds: u32) -> Vec<String> {
        match self {
            Build::Optimised => vec![format!("-max_total_time={seconds}")],
            Build::Smoke => vec![
                "-seed=1".to_owned(),
                "-runs=2000".to_owned(),
                format!("-max_total_time={seconds}"),
            ],
        }
    }
}

/// Builds every target, then runs each for `seconds` (only those named in `only`, when any).
pub fn run(seconds: u32, build: Build, only: &[String]) -> Result<()> {
    if let Some(unknown) = only.iter().find(|t| !TARGETS.contains(&t.as_str())) {
        bail!(
            "no fuzz target {unknown}: the targets are {}",
            TARGETS.join(", ")
        );
    }
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let target_dir = root.join("target/fuzz");
    check(
        cargo_fuzz()
            .args(["build", build.flag(), "--fuzz-dir", "fuzz", "--target-dir"])
            .arg(&target_dir),
    )?;
    for target in TARGETS
        .into_iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t))
    {
        let learned = target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&learned)
            .with_context(|| format!("cannot create {}", learned.display()))?;
        let seeds = root.join("tests/fuzz/corpus").join(target);
        let status = cargo_fuzz()
            .args(["run", build.flag(), "--fuzz-dir", "fuzz", "--target-dir"])
            .arg(&target_dir)
            .arg(target)
            .arg(&learned)
            .arg(&seeds)
            .arg("--")
            .args(build.limits(seconds))
            .args([
                "-max_len=65536",
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ])
            .status()
            .context("cannot start cargo fuzz")?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed ({status}): the input is under \
                 tests/fuzz/artifacts/{target}; reproduce with `cd tests && cargo +nightly fuzz \
                 run --fuzz-dir fuzz {target} fuzz/artifacts/{target}/<file>`"
            );
        }
    }
    Ok(())
}
