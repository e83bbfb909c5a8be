//! Low-level helpers: running commands with good error messages, entering
//! network namespaces from a thread, and killing processes safely through
//! pidfds.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Directory in which `ip netns` keeps its namespace handles.
pub(crate) const NETNS_RUN_DIR: &str = "/run/netns";

/// Directory whose per-namespace subdirectories `ip netns exec` bind-mounts
/// over `/etc`.
pub(crate) const NETNS_ETC_DIR: &str = "/etc/netns";

/// Proxy variables removed from every command the lab runs, so that a proxy
/// configured for the host is never tried from inside the lab.
pub(crate) const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "ftp_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
];

/// Finds an executable by name in `$PATH`, falling back to the usual system
/// directories (`/usr/sbin` is often missing from non-login `$PATH`s).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fallback = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    std::env::split_paths(&path)
        .chain(fallback.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Renders a command line for error messages.
pub(crate) fn display_cmd<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        let a = a.as_ref().to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            s.push('\'');
            s.push_str(&a.replace('\'', r"'\''"));
            s.push('\'');
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs a command to completion, returning its output or an error that
/// names the command, its exit status and its stderr.
pub(crate) fn run<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Result<Output, String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("could not run `{}`: {e}", display_cmd(program, args)))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`{}` failed ({}): {}{}",
            display_cmd(program, args),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if out.stdout.is_empty() {
                String::new()
            } else {
                format!(" [stdout: {}]", String::from_utf8_lossy(&out.stdout).trim())
            }
        ))
    }
}

/// Like [`run`] but panics with the error message.
pub(crate) fn run_or_panic<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Output {
    run(program, args).unwrap_or_else(|e| panic!("network lab: {e}"))
}

/// Runs `f` on a fresh thread whose network namespace is the one named
/// `ns` (a handle in `/run/netns`). The calling thread is not affected.
pub(crate) fn in_netns<T, F>(ns: &str, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let path = Path::new(NETNS_RUN_DIR).join(ns);
    let file = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || -> io::Result<T> {
            // SAFETY: plain syscall on a valid, open fd; it only changes the
            // network namespace of this (short-lived) thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("setns({ns}): {e}")));
            }
            drop(file);
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Identity (device, inode) of a network namespace handle.
pub(crate) fn netns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Pids (other than our own) whose main thread lives in the network
/// namespace with identity `id`.
pub(crate) fn pids_in_netns(id: (u64, u64)) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid_netns_id(pid) == Some(id))
        .collect()
}

fn pid_netns_id(pid: u32) -> Option<(u64, u64)> {
    netns_id(Path::new(&format!("/proc/{pid}/ns/net")))
}

/// Opens a pidfd for `pid` (a stable process handle immune to pid reuse).
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: raw syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        None
    } else {
        // SAFETY: the kernel just returned this fd and nobody else owns it.
        Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// Sends `sig` through a pidfd. Returns false if the process is gone.
pub(crate) fn pidfd_signal(fd: &OwnedFd, sig: i32) -> bool {
    // SAFETY: raw syscall on a valid fd; null siginfo is allowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    rc == 0
}

/// Waits until the process behind `fd` has exited (pidfds become readable
/// on exit). Returns true if it exited within `timeout`.
pub(crate) fn pidfd_wait_exit(fd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            return true;
        }
        if rc == 0 {
            return false;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Whether `pid` names a live (non-zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// Kills every process in the network namespace `ns` (except ourselves):
/// SIGTERM, a short grace period, then SIGKILL. Never panics; returns a
/// description of any process that survived.
pub(crate) fn kill_netns_processes(ns: &str, grace: Duration) -> Vec<String> {
    let Some(id) = netns_id(&Path::new(NETNS_RUN_DIR).join(ns)) else {
        return Vec::new();
    };
    // Open pidfds first, then re-check the namespace so that a recycled pid
    // can never be signalled.
    let fds: Vec<(u32, OwnedFd)> = pids_in_netns(id)
        .into_iter()
        .filter_map(|pid| pidfd_open(pid).map(|fd| (pid, fd)))
        .filter(|(pid, _)| pid_netns_id(*pid) == Some(id))
        .collect();
    for (_, fd) in &fds {
        pidfd_signal(fd, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let mut survivors = Vec::new();
    for (pid, fd) in &fds {
        let left = deadline.saturating_duration_since(Instant::now());
        if !pidfd_wait_exit(fd, left) {
            pidfd_signal(fd, libc::SIGKILL);
            if !pidfd_wait_exit(fd, Duration::from_secs(2)) {
                survivors.push(format!("pid {pid} in netns {ns}"));
            }
        }
    }
    survivors
}
