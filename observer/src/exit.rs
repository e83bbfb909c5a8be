//! The exit statuses of `observer`, in one place (README, docs/check.md).

use std::io;

use crate::capture::CaptureError;

/// Success. For `observer check`: every host of the required groups is reachable (some may be
/// degraded).
pub const OK: u8 = 0;
/// The command failed (the message is on stderr).
pub const FAILURE: u8 = 1;
/// Bad usage (clap's own status for a command line it rejects).
pub const USAGE: u8 = 2;
/// The capture could not start (privileges, cgroup v2, kernel features).
pub const CAPTURE: u8 = 3;
/// `observer check`: a host of a required group is blocked.
pub const ESSENTIAL_BLOCKED: u8 = 10;
/// `observer check`: no essential host is blocked, but one is reachable only with a certificate
/// that does not verify (a TLS-intercepting proxy whose CA the machine does not trust).
pub const ESSENTIAL_UNTRUSTED: u8 = 11;

/// The status for a command that failed with `error`; `None` when it did not really fail: the
/// reader of our standard output went away (`observer watch | head`), which is success.
pub fn for_error(error: &anyhow::Error) -> Option<u8> {
    if error
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
    {
        None
    } else if error.downcast_ref::<CaptureError>().is_some() {
        Some(CAPTURE)
    } else {
        Some(FAILURE)
    }
}
