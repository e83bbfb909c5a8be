//! cgroup/connect4|6 and cgroup/sendmsg4|6: remember which process owns each UDP socket that talks
//! to port 53, so DNS packets (seen later in softirq context) can be attributed to a process.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{bpf_get_current_cgroup_id, bpf_get_socket_cookie},
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
    EbpfContext as _,
};
use observer_ebpf::Owner;

use super::maps::{JOB_PIDS, SOCK_OWNERS};

/// Allow: sock_addr programs return 1 to let the call proceed.
const ALLOW: i32 = 1;
const IPPROTO_UDP: u32 = 17;
const DNS_PORT: u16 = 53;

/// The current task as an `Owner`.
#[inline(always)]
pub fn current_owner() -> Owner {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    Owner {
        pid,
        tid: pid_tgid as u32,
        // SAFETY: helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        // SAFETY: read-only lookup of a plain value.
        job: unsafe { JOB_PIDS.get(&pid).copied().unwrap_or(0) },
        _pad: 0,
    }
}

#[inline(always)]
fn remember_dns_socket(ctx: &SockAddrContext) {
    // SAFETY: the context pointer is valid for the whole program.
    let (protocol, user_port) = unsafe { ((*ctx.sock_addr).protocol, (*ctx.sock_addr).user_port) };
    if protocol != IPPROTO_UDP || u16::from_be(user_port as u16) != DNS_PORT {
        return;
    }
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let _ = SOCK_OWNERS.insert(&cookie, &current_owner(), 0);
}

#[cgroup_sock_addr(connect4)]
pub fn owner_connect4(ctx: SockAddrContext) -> i32 {
    remember_dns_socket(&ctx);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn owner_connect6(ctx: SockAddrContext) -> i32 {
    remember_dns_socket(&ctx);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn owner_sendmsg4(ctx: SockAddrContext) -> i32 {
    remember_dns_socket(&ctx);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn owner_sendmsg6(ctx: SockAddrContext) -> i32 {
    remember_dns_socket(&ctx);
    ALLOW
}
