//! Writing an output file the user named (`--out`).

use std::io::{self, Write as _};

/// Writes `text` to `out`: `-` is stdout (a reader that went away, `| head`, is an error that
/// `main` takes for success); a file is written atomically, a temporary file beside it synced then renamed, so a
/// reader never sees half of it. `what` names the content in errors ("the report").
pub fn write_out(out: &std::path::Path, text: &str, what: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::{fs, path::Path};
    if out == Path::new("-") {
        return io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .with_context(|| format!("cannot write {what}"));
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = fs::write(&tmp, text)
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, out));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {what} to {}", out.display()))
}
