//! `observer suggest` fed a hostile report (issue 13, defect 1), in every format: what a
//! report says goes into rule files, config lines and shell scripts that admins run as root, so
//! no value of it may add a line, a command or a wider rule. The report is in
//! common/hostile.rs; rules_reparse.rs re-parses the same output with the real checkers.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::{fs, path::PathBuf, process::Command};

use common::{observer, FORMATS};

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("observer-suggest-hostile-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A comment line in every format's syntax (`#`, indented in nftables and YAML).
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Whether `line` names every subdomain of `domain`: `.domain` or `*.domain` not preceded by a
/// label (as `.amazonaws.com` is in `github-cloud.s3.amazonaws.com`).
fn widens_to(line: &str, domain: &str) -> bool {
    line.match_indices(&format!(".{domain}")).any(|(i, _)| {
        !line[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

fn suggest(report: &std::path::Path, format: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "suggest",
        "--report",
        report.to_str().unwrap(),
        "--format",
        format,
    ];
    args.extend(extra);
    let (code, stdout, stderr) = observer(&args);
    assert_eq!(code, 0, "{format}: {stderr}");
    (stdout, stderr)
}

#[test]
fn no_report_value_escapes_its_place_in_any_format() {
    let dir = scratch();
    let report = dir.join("hostile.json");
    fs::write(&report, hostile::report()).expect("write the report");
    let f = hostile::FIRST;
    let fields = [
        format!("hosts[{f}].pattern"),
        format!("hosts[{}].pattern", f + 1),
        format!("hosts[{}].groups[1]", f + 2),
        format!("hosts[{}].groups[2]", f + 2),
        format!("hosts[{}].pattern", f + 3),
    ];
    for format in &FORMATS {
        for extra in [&[][..], &["--include-undeclared", "--follow-cnames"][..]] {
            let (rules, stderr) = suggest(&report, format, extra);
            let what = format!("{format} {extra:?}");
            for line in rules.lines() {
                // The payloads are neither run nor shown: skipped values are named by field.
                assert!(!line.contains("touch"), "{what}: {line:?}\n{rules}");
                assert!(!line.contains("$("), "{what}: {line:?}\n{rules}");
                assert!(
                    !line.contains("http_access allow all"),
                    "{what}: {line:?}\n{rules}"
                );
                if !is_comment(line) {
                    for domain in ["amazonaws.com", "evil.example", "a.b", "corp.example"] {
                        assert!(!widens_to(line, domain), "{what}: {line:?}\n{rules}");
                    }
                }
                if *format == "squid" && line.starts_with("http_access") {
                    // squid's own access lines name only its own ACLs.
                    assert!(
                        line.starts_with("http_access allow runner_"),
                        "{what}: {line:?}"
                    );
                }
            }
            for field in &fields {
                assert!(
                    rules
                        .lines()
                        .any(|l| is_comment(l) && l.contains(field.as_str())),
                    "{what}: {field} is not named in the skipped section\n{rules}"
                );
                assert!(stderr.contains(field.as_str()), "{what}: {stderr}");
            }
            assert!(
                !rules.contains("amazonaws.com: documented wildcard"),
                "{what}\n{rules}"
            );
            // A valid pattern the catalog in effect does not know: the name only, and a note
            // that says how to use the report's catalog.
            assert!(
                !rules
                    .lines()
                    .any(|l| !is_comment(l) && l.contains("*.corp.example")),
                "{what}\n{rules}"
            );
            assert!(
                rules.lines().any(|l| is_comment(l)
                    && l.contains("*.corp.example")
                    && l.contains("--catalog")),
                "{what}: no --catalog note\n{rules}"
            );
        }
    }
    // The names themselves are still allowed, as seen.
    let (domains, _) = suggest(&report, "domains", &[]);
    for name in [
        "x.evil.example",
        "x.a.b",
        "groups.example.org",
        "harmless.example",
        "x.corp.example",
    ] {
        assert!(domains.lines().any(|l| l == name), "{name}\n{domains}");
    }
    fs::remove_dir_all(dir).ok();
}

#[test]
fn diff_meta_shows_no_hostile_group_id() {
    let dir = scratch().join("meta");
    fs::create_dir_all(&dir).expect("dir");
    let report = dir.join("hostile.json");
    fs::write(&report, hostile::report()).expect("write the report");
    let meta = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/suggest-meta.json"
    );
    let (code, out, stderr) = observer(&[
        "suggest",
        "--report",
        report.to_str().unwrap(),
        "--diff-meta",
        meta,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("groups.example.org"), "{out}");
    assert!(!out.contains("touch"), "{out}");
    assert!(!out.contains("http_access"), "{out}");
    fs::remove_dir_all(dir).ok();
}

#[test]
fn the_hostile_iptables_script_passes_sh_n() {
    let dir = scratch().join("sh");
    fs::create_dir_all(&dir).expect("dir");
    let report = dir.join("hostile.json");
    fs::write(&report, hostile::report()).expect("write the report");
    for extra in [&[][..], &["--include-undeclared"][..]] {
        let (script, _) = suggest(&report, "iptables", extra);
        let file = dir.join("rules.sh");
        fs::write(&file, &script).expect("write");
        let out = Command::new("sh")
            .arg("-n")
            .arg(&file)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::remove_dir_all(dir).ok();
}
