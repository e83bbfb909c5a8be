//! The kernel/user ABI of the observer: plain `#[repr(C)]` data shared by the eBPF programs
//! (`src/main.rs`, built for `bpfel-unknown-none`) and user space (`observer`).
//!
//! Nothing here parses anything: the kernel copies bytes, user space decodes them.
#![no_std]

pub mod abi;

pub use abi::*;
