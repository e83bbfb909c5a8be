//! The kernel side seen from user space: loading and attaching the eBPF programs and draining
//! their ring buffer ([`load`]), decoding the raw `#[repr(C)]` records into typed kernel events
//! ([`record`]), finding the cgroup v2 mount they attach to ([`mountinfo`]), and what the
//! cgroup ids the kernel reports are: their paths, and the workloads those name ([`cgroups`]).
//!
//! Nothing here interprets what the kernel saw: the [`crate::pipeline`] turns kernel events into
//! flows, DNS answers and names.

pub mod cgroups;
pub mod clock;
pub mod jobs;
pub mod kernel_caps;
pub mod load;
pub mod mountinfo;
pub mod record;
pub mod sockdiag;

pub use load::{Capture, CaptureConfig, CaptureError, ProbeStatus};
