//! `cargo xtask`: everything a fresh machine needs, in one place.
//!
//! - `setup`: installs, idempotently, what the build and the tests need (Debian packages, the
//!   nightly `rust-src` component, bpf-linker built against Debian's LLVM 22).
//! - `build`: the release binary at `target/release/observer` (kernel programs included).
//! - `run -- ARGS`: builds, then runs `observer ARGS` as root.
//! - `test`: fmt check, clippy with warnings denied, unit tests, a few seconds of each fuzz
//!   target, then the privileged lab tests.
//! - `test --kernel 6.1`: the lab tests that matter, inside a qemu guest running Debian's
//!   packaged kernel of that version (see `kernel.rs`).
//! - `bench`: the cost of observing, in the network lab (root); `bench --memory`: the memory
//!   budget of `observer report` on a flood of unique names (no root, [`membench`]);
//!   `bench --pipeline`: the user-space cost of one event, kernel records replayed through the
//!   decoder, tracker and correlator (no root, `tests/examples/pipeline.rs`).
//! - `fuzz [--seconds N]`: every fuzz target of tests/fuzz for N seconds each ([`fuzz`]).

mod fuzz;
mod kernel;
mod membench;
mod setup;

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set-up, build, run and test tasks of the observer"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (apt packages, rust-src, bpf-linker). Idempotent.
    Setup,
    /// Build the release binary (target/release/observer).
    Build,
    /// Build, then run the observer with the given arguments, e.g. `cargo xtask run -- watch`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The cost of observing, in the network lab (root): throughput, connection and DNS rates
    /// with and without the observer, its CPU time, peak RSS and lost events.
    Bench {
        /// Instead, the memory budget (no root): `observer report` of a flood of 300,000 answers
        /// for unique long names, 300,000 unanswered queries and 5,000 undeclared flows must
        /// stay under 256 MiB of peak RSS.
        #[arg(long, conflicts_with = "pipeline")]
        memory: bool,
        /// Instead, the user-space cost per event (no root): DNS floods and connection storms as
        /// kernel records, decoded, tracked and correlated; time, heap allocations and memory
        /// held per event, and the memory `observer record` holds with 100,000 flows and while
        /// it writes their report.
        #[arg(long)]
        pipeline: bool,
    },
    /// Run every fuzz target (tests/fuzz, nightly, cargo-fuzz installed when missing).
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Only these targets (repeatable; all when none is given).
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
    },
    /// fmt, clippy, unit tests, a short smoke of each fuzz target and the privileged
    /// network-lab tests.
    Test {
        /// Only run lab tests whose name contains this filter.
        #[arg(long)]
        lab_filter: Option<String>,
        /// Instead, run the lab tests inside a qemu guest booting Debian's packaged kernel of
        /// this version (e.g. 6.1), downloaded with apt-get and never installed on the host.
        #[arg(long, value_name = "VERSION")]
        kernel: Option<String>,
        /// With --kernel: the lab test binaries to run (default: capture, blocked, throughput).
        #[arg(long, value_delimiter = ',', requires = "kernel")]
        kernel_tests: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    env::set_current_dir(&root)
        .with_context(|| format!("cannot enter the workspace {}", root.display()))?;
    match cli.task {
        Task::Setup => setup::run(),
        Task::Build => build(),
        Task::Run { args } => {
            build()?;
            run(&root, &args)
        }
        Task::Test {
            lab_filter,
            kernel: Some(version),
            kernel_tests,
        } => {
            let tests = if kernel_tests.is_empty() {
                kernel::DEFAULT_TESTS
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect()
            } else {
                kernel_tests
            };
            kernel::test(&version, &tests, lab_filter.as_deref())
        }
        Task::Test { lab_filter, .. } => test(lab_filter.as_deref()),
        Task::Bench { memory: true, .. } => memory_bench(),
        Task::Bench { pipeline: true, .. } => check(&mut bench_example("pipeline")),
        Task::Bench { .. } => bench(),
        Task::Fuzz { seconds, targets } => fuzz::run(seconds, fuzz::Build::Optimised, &targets),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// The cargo that runs us, with Debian's LLVM 22 first on PATH (bpf-linker needs it).
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.env("PATH", setup::tool_path());
    cmd
}

/// Runs a command, failing with its description if it fails.
pub fn check(cmd: &mut Command) -> Result<()> {
    let what = format!("{cmd:?}");
    eprintln!("xtask: {what}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(())
}

fn build() -> Result<()> {
    setup::ensure()?;
    check(cargo().args(["build", "--release", "--locked", "-p", "observer"]))
}

fn run(root: &Path, args: &[OsString]) -> Result<()> {
    let binary = root.join("target/release/observer");
    let mut cmd = if setup::is_root() {
        Command::new(&binary)
    } else {
        eprintln!("xtask: the observer loads eBPF programs and needs root: running it with sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg(&binary);
        sudo
    };
    let status = cmd
        .args(args)
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn bench() -> Result<()> {
    build()?;
    if !setup::is_root() {
        bail!("the benchmark builds network namespaces and loads eBPF programs: run it as root");
    }
    let bandwhich = setup::bench_tools(&target_dir())?;
    check(
        bench_example("bench")
            .env(
                "OBSERVER_BIN",
                workspace_root().join("target/release/observer"),
            )
            .env("BENCH_BANDWHICH", bandwhich),
    )
}

/// `cargo run` of one of observer-tests' examples (the benches), optimised.
fn bench_example(name: &str) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "--locked",
        "-p",
        "observer-tests",
        "--example",
        name,
    ]);
    cmd
}

/// The target directory cargo builds into (`CARGO_TARGET_DIR`, or the workspace's `target`).
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn memory_bench() -> Result<()> {
    check(cargo().args(["build", "--release", "--locked", "-p", "observer"]))?;
    let target = target_dir();
    membench::run(&target.join("release/observer"), &target.join("bench"))
}

fn test(lab_filter: Option<&str>) -> Result<()> {
    setup::ensure()?;
    check(cargo().args(["fmt", "--all", "--check"]))?;
    check(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    check(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "observer-tests",
        "--locked",
    ]))?;
    // A smoke of each fuzz target: at most 2,000 inputs from a fixed seed and 20 s each, about
    // 2 minutes after the build (unoptimised: the build, not the run, is what costs here).
    fuzz::run(20, fuzz::Build::Smoke, &[])?;
    check(cargo().args(["build", "--release", "--locked", "-p", "observer"]))?;

    let ci = env::var_os("CI").is_some_and(|v| !v.is_empty());
    if !setup::is_root() {
        if ci {
            bail!("the lab tests need root (network namespaces, eBPF) and CI is set: run as root");
        }
        eprintln!(
            "xtask: not root: skipping the privileged lab tests (run `sudo cargo xtask test`)"
        );
        return Ok(());
    }
    let mut lab = cargo();
    lab.args(["test", "-p", "observer-tests", "--locked", "--"]);
    if let Some(filter) = lab_filter {
        lab.arg(filter);
    }
    lab.arg("--test-threads=1").env(
        "OBSERVER_BIN",
        workspace_root().join("target/release/observer"),
    );
    check(&mut lab)
}
