//! The observer's getsockopt program (attached to the root cgroup, so to every getsockopt on the
//! host) never changes a call's result, also when the caller's buffer is larger than a page:
//! kernels before 6.5 turn such calls into EFAULT unless the program sets `optlen` to 0
//! (observer-ebpf/src/probes/sockopt.rs). iptables-legacy reads its tables that way.
//!
//! Run through `cargo xtask test` (root, one test at a time). On kernels from 6.5 on, the kernel
//! itself forgives the old program: there this test checks the calls still work while attached.

use std::time::Duration;

use observer_tests::{observer::Observer, require_root_or_skip, LabConfig};

/// getsockopt(level, name) with a buffer of `len` bytes: the length returned, or the errno.
fn getsockopt(fd: i32, level: i32, name: i32, len: usize) -> Result<usize, i32> {
    let mut buf = vec![0u8; len];
    let mut optlen = libc::socklen_t::try_from(len).expect("small length");
    // SAFETY: `buf` has `optlen` writable bytes; `optlen` is a valid socklen_t.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut optlen) };
    if rc == 0 {
        Ok(optlen as usize)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

#[test]
fn getsockopt_larger_than_a_page_works_while_attached() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("sopt").start();
    // Sixty rules make the filter table's entries (IPT_SO_GET_ENTRIES) well over a page.
    for i in 1..=60 {
        let source = format!("198.18.0.{i}");
        let comment = format!("lab rule {i}: padding so that the table outgrows a page");
        let out = lab.run_in_runner(
            "iptables-legacy",
            &[
                "-A",
                "INPUT",
                "-s",
                &source,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "ACCEPT",
            ],
        );
        assert!(
            out.status.success(),
            "iptables-legacy -A: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = || lab.run_in_runner("iptables-legacy", &["-S", "INPUT"]);
    let before = list();
    assert!(before.status.success());

    let observer = Observer::watch(&[]);
    let started = observer
        .wait_for(Duration::from_secs(1), |e| e["event"] == "capture_started")
        .expect("capture_started");
    let attached = started["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .any(|p| p["program"] == "so_error_seen" && p["attached"] == true);
    assert!(
        attached,
        "the getsockopt program is not attached: {started:#}"
    );

    // iptables-legacy reads the whole table with one getsockopt of several pages.
    let during = list();
    assert!(
        during.status.success(),
        "iptables-legacy -S failed while the observer ran: {}",
        String::from_utf8_lossy(&during.stderr)
    );
    assert_eq!(during.stdout, before.stdout);
    assert_eq!(
        String::from_utf8_lossy(&during.stdout)
            .lines()
            .filter(|l| l.contains("lab rule"))
            .count(),
        60
    );

    lab.in_runner_ns(|| {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0, "socket");
        // A failing call with a buffer of two pages keeps its own error (not EFAULT).
        assert_eq!(
            getsockopt(fd, libc::SOL_SOCKET, 9999, 8192),
            Err(libc::ENOPROTOOPT)
        );
        // A successful call with a buffer of two pages, and SO_ERROR (what the program reads).
        assert_eq!(
            getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 8192),
            Ok(4)
        );
        assert_eq!(
            getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, 8192),
            Ok(4)
        );
        // SAFETY: the socket is ours.
        unsafe { libc::close(fd) };
    });
    let (_, stderr) = observer.stop_with_stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
