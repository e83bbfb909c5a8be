//! A report as an attacker would write it for `observer suggest` (issue 13, defect 1): the
//! suggest fixture with four hosts appended whose pattern or groups try to break out of the
//! rule syntax, or to widen a rule beyond the name used.

use serde_json::{json, Value};

const REPORT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/suggest-report.json"
);

/// Index in `hosts` of the first appended host (the fixture has 21).
pub const FIRST: usize = 21;

/// The pattern that ends a line and runs `touch` in a shell.
pub const NEWLINE_PATTERN: &str = "*.evil.example\ntouch /tmp/x\n#";
/// The pattern that runs `touch` through command substitution.
pub const SUBST_PATTERN: &str = "*.a.b$(touch${IFS}/tmp/x)";
/// A group id that adds a squid line.
pub const SQUID_GROUP: &str = "essential\nhttp_access allow all";
/// A group id that adds a shell command.
pub const SHELL_GROUP: &str = "essential\ntouch /tmp/x";
/// A pattern far wider than the name it claims to document.
pub const WIDE_PATTERN: &str = "*.amazonaws.com";
/// A valid pattern of its host that the built-in catalog does not know.
pub const UNKNOWN_PATTERN: &str = "*.corp.example";

fn host(name: &str, pattern: &str, groups: &[&str], address: &str) -> Value {
    json!({
        "name": name,
        "pattern": pattern,
        "groups": groups,
        "status": "ok",
        "flows": 1,
        "addresses": [address],
        "cname_chain": [name],
        "first_seen": "2026-11-20T09:02:00Z",
    })
}

/// The report, as JSON text. Hosts `FIRST..FIRST + 5`: `x.evil.example` with
/// [`NEWLINE_PATTERN`], `x.a.b` with [`SUBST_PATTERN`], `groups.example.org` with the two
/// hostile groups (`groups[1]` and `groups[2]`), `harmless.example` with [`WIDE_PATTERN`],
/// `x.corp.example` with [`UNKNOWN_PATTERN`].
pub fn report() -> String {
    let text = std::fs::read_to_string(REPORT).expect("the suggest fixture");
    let mut r: Value = serde_json::from_str(&text).expect("JSON");
    let hosts = r["hosts"].as_array_mut().expect("hosts");
    assert_eq!(hosts.len(), FIRST, "the fixture changed: update FIRST");
    hosts.push(host(
        "x.evil.example",
        NEWLINE_PATTERN,
        &["essential"],
        "198.18.0.21",
    ));
    hosts.push(host("x.a.b", SUBST_PATTERN, &["essential"], "198.18.0.22"));
    hosts.push(host(
        "groups.example.org",
        "groups.example.org",
        &["essential", SQUID_GROUP, SHELL_GROUP],
        "198.18.0.23",
    ));
    hosts.push(host(
        "harmless.example",
        WIDE_PATTERN,
        &["essential"],
        "198.18.0.24",
    ));
    hosts.push(host(
        "x.corp.example",
        UNKNOWN_PATTERN,
        &["essential"],
        "198.18.0.25",
    ));
    r.to_string()
}
