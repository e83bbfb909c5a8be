//! The process trees of the jobs `observer daemon` follows: a child of a listed process is
//! listed with its parent's job slot as it is forked, and a task leaves the list when it exits
//! (a recycled pid is not the job's). Only forks of listed processes cost a map write; every
//! other fork and exit costs one lookup. Field offsets come from
//! `/sys/kernel/tracing/events/sched/sched_process_{fork,exit}/format` (stable since 2.6).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use observer_ebpf::COUNTER_JOB_PIDS_FULL;

use super::maps::{count, JOB_PIDS};

// sched:sched_process_fork
const FORK_CHILD_PID: usize = 20;
// sched:sched_process_exit
const EXIT_PID: usize = 24;

#[tracepoint]
pub fn job_fork(ctx: TracePointContext) -> u32 {
    // The tracepoint runs in the parent's context.
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: read-only lookup of a plain value.
    let Some(&job) = (unsafe { JOB_PIDS.get(&parent) }) else {
        return 0;
    };
    // SAFETY: the offset comes from the tracepoint's format file.
    let Ok(child) = (unsafe { ctx.read_at::<i32>(FORK_CHILD_PID) }) else {
        return 0;
    };
    // A new thread's id is listed too (it is its own key until it exits); a new process's is
    // its thread group id, the key its flows are looked up by.
    if JOB_PIDS.insert(&(child as u32), &job, 0).is_err() {
        count(COUNTER_JOB_PIDS_FULL);
    }
    0
}

#[tracepoint]
pub fn job_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: the offset comes from the tracepoint's format file.
    if let Ok(pid) = unsafe { ctx.read_at::<i32>(EXIT_PID) } {
        let pid = pid as u32;
        // SAFETY: read-only lookup of a plain value.
        if unsafe { JOB_PIDS.get(&pid) }.is_some() {
            let _ = JOB_PIDS.remove(&pid);
        }
    }
    0
}
