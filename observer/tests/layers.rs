//! The library's layers, checked: no module imports one above it (docs/architecture.md).
//!
//! Each top-level module of `observer/src` may name only the modules listed for it below; the
//! library never names the command line (`cli`, `cmd`: the binary's own modules). A path is
//! counted wherever the production code names it (comments, where a doc may link upwards, and
//! test modules, which may build a report to check a line, are left out): `crate::x::...`
//! anywhere, and the entries of `use crate::{x::..., y, ...}` blocks.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Which modules each top-level module may use, bottom of the stack first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("format", &[]),
    ("hash", &[]),
    ("sanitize", &[]),
    ("outfile", &[]),
    ("catalog", &[]),
    ("proxy", &["sanitize"]),
    ("capture", &["format", "hash", "sanitize", "proxy"]),
    (
        "pipeline",
        &["capture", "catalog", "format", "hash", "proxy"],
    ),
    ("session", &["capture", "pipeline"]),
    ("eventlog", &["capture", "pipeline", "format", "sanitize"]),
    ("options", &["catalog", "pipeline"]),
    ("exit", &["capture"]),
    (
        "report",
        &["capture", "pipeline", "catalog", "format", "proxy"],
    ),
    (
        "export",
        &[
            "capture", "pipeline", "catalog", "report", "format", "outfile", "sanitize",
        ],
    ),
    (
        "suggest",
        &[
            "pipeline", "catalog", "report", "eventlog", "options", "format", "hash", "outfile",
            "sanitize",
        ],
    ),
    (
        "check",
        &[
            "pipeline", "catalog", "report", "format", "exit", "sanitize", "proxy",
        ],
    ),
    (
        "metrics",
        &[
            "capture", "pipeline", "catalog", "report", "format", "sanitize", "proxy",
        ],
    ),
    (
        "daemon",
        &[
            "capture", "pipeline", "catalog", "session", "eventlog", "options", "report", "export",
            "format", "sanitize", "proxy", "metrics",
        ],
    ),
    (
        "tui",
        &[
            "capture", "pipeline", "catalog", "session", "eventlog", "options", "report", "export",
            "suggest", "format", "sanitize",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source text names through `crate::`, outside comments.
fn named_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(block) = rest.strip_prefix('{') {
            // A use block: its top-level entries, up to the matching brace.
            let mut depth = 1;
            let mut entry_start = true;
            for (i, c) in block.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            rest = &block[i..];
                            break;
                        }
                    }
                    ',' if depth == 1 => entry_start = true,
                    c if entry_start && depth == 1 && !c.is_whitespace() => {
                        entry_start = false;
                        let name = ident(&block[i..]);
                        if !name.is_empty() && name != "self" {
                            names.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// A source text without its test module (`#[cfg(test)]` before `mod tests`, at the end of the
/// file by this project's habit).
fn production_code(text: &str) -> &str {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "#[cfg(test)]"
            && text[at + line.len()..].trim_start().starts_with("mod ")
        {
            return &text[..at];
        }
        at += line.len();
    }
    text
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    let mut seen_tops = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let top = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if ["main", "lib", "cli", "cmd"].contains(&top.as_str()) {
            continue;
        }
        seen_tops.insert(top.clone());
        let Some(may) = allowed.get(top.as_str()) else {
            problems.push(format!(
                "{}: module `{top}` has no place in the layer table of this test",
                relative.display()
            ));
            continue;
        };
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = fs::read_to_string(file).unwrap();
        for name in named_modules(production_code(&text)) {
            if name != top && !may.contains(&name.as_str()) {
                problems.push(format!(
                    "{}: `{top}` uses `crate::{name}`",
                    relative.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every module in the table exists (the table follows the tree).
    for (top, _) in ALLOWED {
        assert!(seen_tops.contains(*top), "no module `{top}` in src/");
    }
}

#[test]
fn the_library_never_names_the_command_line() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(!lib.contains("mod cli") && !lib.contains("mod cmd"));
}

#[test]
fn test_modules_are_left_out() {
    let text = "use crate::format;\n#[cfg(test)]\nfn helper() {}\n#[cfg(test)]\nmod tests {\n    use crate::report;\n}\n";
    let names: Vec<String> = named_modules(production_code(text)).into_iter().collect();
    assert_eq!(names, ["format"]);
}

#[test]
fn the_scanner_reads_paths_and_use_blocks() {
    let text =
        "use crate::{\n    capture::{record::Process, ProbeStatus},\n    pipeline::dns,\n};\n\
                fn f() { crate::format::bytes(1); } // crate::tui\nuse crate::{self as c, report};";
    let names: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(names, ["capture", "format", "pipeline", "report"]);
}
