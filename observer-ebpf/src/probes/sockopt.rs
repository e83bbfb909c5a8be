//! cgroup/getsockopt on the root cgroup v2: the errno a process reads with
//! `getsockopt(SO_ERROR)` on a tracked flow's socket. Non-blocking clients (curl, most runtimes)
//! learn that a connect failed this way, and reading it clears the socket's error: when an ICMP
//! error arrives while the socket is busy, the kernel keeps it in `sk_err_soft`, reports it to
//! nobody else, and the process's read is the only trace of it.
//!
//! The program runs on every getsockopt of the host, so it must never change one. The kernel
//! copies at most a page of the caller's buffer for the program; when the call's length is
//! larger (iptables-legacy reads its tables with `IPT_SO_GET_ENTRIES` buffers of many pages, a
//! failing call leaves the caller's own length), kernels before 6.5 return EFAULT to the caller
//! unless the program sets `optlen` to 0, which means "keep the kernel's result"
//! (Documentation/bpf/prog_cgroup_sockopt.rst, "Large CGROUP_SOCKOPT data"). So it does, on
//! every path.

use aya_ebpf::{macros::cgroup_sockopt, programs::SockoptContext};

use super::maps::FLOWS;

/// getsockopt programs return 1 to leave the call's result as it is.
const KEEP: i32 = 1;
const SOL_SOCKET: i32 = 1;
const SO_ERROR: i32 = 4;

/// The smallest page size of the architectures the observer runs on: the kernel gives the
/// program at most a page of the buffer.
const PAGE_SIZE: i32 = 4096;

#[cgroup_sockopt(getsockopt)]
pub fn so_error_seen(ctx: SockoptContext) -> i32 {
    try_so_error(&ctx);
    keep_large_result(&ctx);
    KEEP
}

/// A result longer than the page the program sees is left to the kernel: `optlen = 0` (module
/// docs). On a page-sized architecture larger than 4 KiB, a length between 4 KiB and the page
/// is also left to the kernel, which keeps it just the same.
#[inline(always)]
fn keep_large_result(ctx: &SockoptContext) {
    let sopt = ctx.sockopt;
    // SAFETY: the context is valid for the whole program; `optlen` is writable in getsockopt
    // programs.
    unsafe {
        if (*sopt).optlen > PAGE_SIZE {
            (*sopt).optlen = 0;
        }
    }
}

#[inline(always)]
fn try_so_error(ctx: &SockoptContext) {
    let sopt = ctx.sockopt;
    // SAFETY: the context is valid for the whole program; the value is read only after the
    // verifier-checked bounds test against `optval_end`.
    unsafe {
        if (*sopt).level != SOL_SOCKET || (*sopt).optname != SO_ERROR || (*sopt).retval != 0 {
            return;
        }
        let start = (*sopt).__bindgen_anon_2.optval as usize;
        let end = (*sopt).__bindgen_anon_3.optval_end as usize;
        if start + 4 > end {
            return;
        }
        let error = *(start as *const i32);
        if error <= 0 {
            return;
        }
        let key = (*sopt).__bindgen_anon_1.sk as u64;
        if let Some(flow) = FLOWS.get_ptr_mut(&key) {
            (*flow).sk_err = error;
        }
    }
}
