//! The process trees of the jobs `observer daemon` follows: a child process of a listed process
//! is listed with its parent's job slot as it is created, and a task leaves the list when it
//! exits (a recycled pid is not the job's). New threads are not listed: sockets are looked up by
//! their process's thread group id, so a job with thousands of threads takes one entry per
//! process, not per thread. Only new processes of listed processes cost a map write; every
//! other task creation and exit costs one lookup. Field offsets come from
//! `/sys/kernel/tracing/events/task/task_newtask/format` (since 3.2; `clone_flags` says whether
//! the new task is a thread) and `/sys/kernel/tracing/events/sched/sched_process_exit/format`.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use observer_ebpf::COUNTER_JOB_PIDS_FULL;

use super::maps::{count, JOB_PIDS};

// task:task_newtask
const NEWTASK_PID: usize = 8;
const NEWTASK_CLONE_FLAGS: usize = 32;
/// `CLONE_THREAD`: the new task is a thread of its creator's process.
const CLONE_THREAD: u64 = 0x0001_0000;
// sched:sched_process_exit
const EXIT_PID: usize = 24;

#[tracepoint]
pub fn job_fork(ctx: TracePointContext) -> u32 {
    // The tracepoint runs in the creator's context, before the new task can run.
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: read-only lookup of a plain value.
    let Some(&job) = (unsafe { JOB_PIDS.get(&parent) }) else {
        return 0;
    };
    // SAFETY: the offsets come from the tracepoint's format file.
    let (Ok(child), Ok(flags)) = (unsafe {
        (
            ctx.read_at::<i32>(NEWTASK_PID),
            ctx.read_at::<u64>(NEWTASK_CLONE_FLAGS),
        )
    }) else {
        return 0;
    };
    // A thread is found by its process's id, listed already.
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    // A new process's pid is its thread group id, the key its flows are looked up by.
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
