//! Kernel programs, one file per hook family. Every program only observes: skb and sock_addr
//! programs return "allow" on every path, tracepoints return 0.

mod dns;
mod jobs;
mod maps;
mod owner;
mod payload;
mod sockopt;
mod tcp;
