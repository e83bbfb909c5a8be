//! The rule files `observer suggest` writes re-parse with the tools that will read them: nftables
//! (`nft -c -f`), squid (`squid -k parse`), the iptables/ipset script (`sh -n`) and the Cilium
//! policy (a YAML parser). Fed the fixture report, the report of a capture behind a proxy
//! (tests/fixtures/proxied.jsonl), the hostile report of issue 13
//! (common/hostile.rs: patterns and group ids that try to add lines and commands), and the fuzz
//! corpus of the `rules` target (tests/fuzz/corpus/rules: a flags byte, then a report). Without
//! a tool, its check is skipped with a note, except under CI=true.

#[path = "common/hostile.rs"]
mod hostile;

use std::{fs, path::PathBuf, process::Command};

const REPORT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/suggest-report.json"
);
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fuzz/corpus/rules");
/// A capture behind an HTTP proxy, whose report names the proxy and what it refused.
const PROXIED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proxied.jsonl");

/// The reports to render: (name, flags, report text).
fn reports() -> Vec<(String, u8, String)> {
    let mut reports = vec![(
        "suggest-report.json".to_owned(),
        0,
        fs::read_to_string(REPORT).expect("fixture"),
    )];
    // The hostile report, without and with the flags that add rules (3: both).
    for flags in [0, 3] {
        reports.push(("hostile report".to_owned(), flags, hostile::report()));
    }
    let proxied = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["report", PROXIED])
        .output()
        .expect("run observer report");
    assert!(proxied.status.success(), "the report of {PROXIED}");
    let proxied = String::from_utf8(proxied.stdout).expect("a UTF-8 report");
    for flags in [0, 3] {
        reports.push(("proxied capture".to_owned(), flags, proxied.clone()));
    }
    for entry in fs::read_dir(CORPUS).expect("the rules corpus") {
        let path = entry.expect("entry").path();
        let bytes = fs::read(&path).expect("corpus file");
        let Some((&flags, rest)) = bytes.split_first() else {
            continue;
        };
        let Ok(text) = String::from_utf8(rest.to_vec()) else {
            continue;
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        reports.push((name, flags, text));
    }
    reports
}

fn tool(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "{program} is needed to check the rules it reads (CI is set)"
        );
        eprintln!("{program} not installed: its re-parse check is skipped");
    }
    found
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("observer-reparse-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `observer suggest` of `report` in `format`; None when the report is refused.
fn suggest(dir: &std::path::Path, report: &str, flags: u8, format: &str) -> Option<String> {
    let input = dir.join("report.json");
    fs::write(&input, report).expect("write the report");
    let mut args = vec![
        "suggest",
        "--report",
        input.to_str().unwrap(),
        "--format",
        format,
    ];
    if flags & 1 != 0 {
        args.push("--follow-cnames");
    }
    if flags & 2 != 0 {
        args.push("--include-undeclared");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(&args)
        .output()
        .expect("run observer");
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).expect("UTF-8 rules"))
}

/// Runs `checker` on each report's rules in `format` (written to a file), expecting success.
fn reparse(format: &str, program: &str, checker: &[&str]) {
    if !tool(program) {
        return;
    }
    let dir = scratch().join(format);
    fs::create_dir_all(&dir).expect("dir");
    let mut checked = 0;
    for (name, flags, report) in reports() {
        let Some(rules) = suggest(&dir, &report, flags, format) else {
            continue;
        };
        let file = dir.join("rules");
        fs::write(&file, &rules).expect("write the rules");
        let out = Command::new(program)
            .args(checker)
            .arg(&file)
            .output()
            .expect("run the checker");
        assert!(
            out.status.success(),
            "{program} refused the {format} rules of {name}:\n{}{}\n{rules}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked > 0, "no report was rendered");
    fs::remove_dir_all(dir).ok();
}

#[test]
fn nftables_rules_pass_nft_check() {
    reparse("nftables", "nft", &["-c", "-f"]);
}

#[test]
fn squid_rules_pass_squid_parse() {
    reparse("squid", "squid", &["-k", "parse", "-f"]);
}

#[test]
fn iptables_script_passes_sh_n() {
    reparse("iptables", "sh", &["-n"]);
}

#[test]
fn cilium_policy_is_yaml() {
    let dir = scratch().join("cilium");
    fs::create_dir_all(&dir).expect("dir");
    for (name, flags, report) in reports() {
        let Some(yaml) = suggest(&dir, &report, flags, "cilium") else {
            continue;
        };
        let policy: serde_norway::Value = serde_norway::from_str(&yaml)
            .unwrap_or_else(|e| panic!("the cilium policy of {name} is not YAML: {e}\n{yaml}"));
        assert_eq!(
            policy["kind"].as_str(),
            Some("CiliumNetworkPolicy"),
            "{name}"
        );
    }
    fs::remove_dir_all(dir).ok();
}
