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
