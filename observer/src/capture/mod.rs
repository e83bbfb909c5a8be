//! The kernel side seen from user space: loading and attaching the eBPF programs and draining
//! their ring buffer ([`load`]), decoding the raw `#[repr(C)]` records into typed kernel events
//! ([`record`]), and finding the cgroup v2 mount they attach to ([`mountinfo`]).
//!
//! Nothing here interprets what the kernel saw: the [`crate::pipeline`] turns kernel events into
//! flows, DNS answers and names.

pub mod clock;
pub mod jobs;
pub mod kernel_caps;
pub mod load;
pub mod mountinfo;
pub mod record;
pub mod sockdiag;

pub use load::{Capture, CaptureConfig, CaptureError, ProbeStatus};
