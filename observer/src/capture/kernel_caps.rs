//! What the running kernel offers, and the plan that picks a data source for each need.
//!
//! Runner hosts run older kernels than the one the probes were first written on: Debian 12 and
//! Amazon Linux 2023 run 6.1, Ubuntu 22.04 5.15, RHEL 9 5.14. The byte counters and the adoption
//! of flows open before the capture ride on `sock:sock_send_length` / `sock:sock_recv_length`,
//! which first appeared in Linux 6.3. On older kernels the plan falls back, per need, to
//! something that works everywhere (sock_diag netlink, see `sockdiag.rs`) and says so: in the
//! capture_started event, in `observer watch` and in the report. Nothing is lost silently.
//!
//! The probe only reads files (tracefs format files, BTF, the kernel release), so the plan is a
//! pure function of [`KernelCaps`] and is tested without root.

use std::{collections::BTreeSet, path::Path};

use serde::{Deserialize, Serialize};

/// Tracepoints the programs attach to, as (category, name).
pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("sock", "inet_sock_set_state"),
    ("tcp", "tcp_retransmit_skb"),
    ("tcp", "tcp_receive_reset"),
    ("sock", "inet_sk_error_report"),
    ("sock", "sock_send_length"),
    ("sock", "sock_recv_length"),
];

/// Where tracefs is usually mounted (the capture mounts the first if nobody did).
const TRACEFS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What the running kernel offers, as far as the observer's programs are concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCaps {
    /// `uname -r`, e.g. `6.1.0-50-amd64`.
    pub release: String,
    /// Tracepoints whose format file exists, as `category/name`.
    pub tracepoints: BTreeSet<String>,
    /// Tracefs was found (without it nothing can be said about tracepoints).
    pub tracefs: bool,
    /// `/sys/kernel/btf/vmlinux` exists.
    pub btf: bool,
    /// The kernel offers kprobes (`kprobe_events` in tracefs).
    pub kprobes: bool,
}

impl KernelCaps {
    /// Reads the running kernel's capabilities (call after tracefs is mounted).
    pub fn probe() -> Self {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let root = TRACEFS
            .iter()
            .map(Path::new)
            .find(|p| p.join("events").is_dir());
        let tracepoints = root
            .map(|root| {
                TRACEPOINTS
                    .iter()
                    .filter(|(cat, name)| {
                        root.join("events")
                            .join(cat)
                            .join(name)
                            .join("format")
                            .exists()
                    })
                    .map(|(cat, name)| format!("{cat}/{name}"))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            release,
            tracepoints,
            tracefs: root.is_some(),
            btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
            kprobes: root.is_some_and(|r| r.join("kprobe_events").exists()),
        }
    }

    /// Whether the tracepoint `category/name` exists. Without tracefs nobody knows: assume it
    /// does, and let the attach say otherwise.
    pub fn has_tracepoint(&self, category: &str, name: &str) -> bool {
        !self.tracefs || self.tracepoints.contains(&format!("{category}/{name}"))
    }

    /// (major, minor) of the release, when it parses.
    pub fn version(&self) -> Option<(u32, u32)> {
        let mut parts = self.release.split(['.', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()?;
        Some((major, minor))
    }

    /// The release as an operator knows it: "6.1" (from `6.1.0-50-amd64`).
    pub fn short_release(&self) -> String {
        self.version().map_or_else(
            || {
                if self.release.is_empty() {
                    "unknown".to_owned()
                } else {
                    self.release.clone()
                }
            },
            |(a, b)| format!("{a}.{b}"),
        )
    }

    fn older_than(&self, major: u32, minor: u32) -> bool {
        self.version().is_some_and(|v| v < (major, minor))
    }
}

/// Where the byte counts of flows come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BytesSource {
    /// `sock:sock_send_length` / `sock:sock_recv_length`: every send and receive, in the kernel.
    Tracepoints,
    /// The kernel's TCP statistics (`tcp_info` bytes acked / received) read through sock_diag
    /// netlink once a second; at the close, the kernel programs read the same counters from the
    /// socket itself (BTF offsets), so short flows are counted too.
    Polled { at_close: bool },
}

/// How flows open before the capture started are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptionSource {
    /// In the kernel, the first time such a flow moves payload (the length tracepoints).
    Tracepoints,
    /// Listed once at start-up through sock_diag (established sockets to the watched ports),
    /// their process found through /proc/*/fd; their bytes and end are then polled.
    SockDiagAtStart,
    /// Not adopted (with `--all-ports`, an accepted inbound connection could not be told from
    /// an outbound one).
    Off,
}

/// The plan: a source per need, and what the kernel lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub bytes: BytesSource,
    pub adoption: AdoptionSource,
    /// Attach the length tracepoints (false: they do not exist here, the plan replaced them).
    pub length_tracepoints: bool,
    /// What each need uses, in an operator's words.
    pub sources: Vec<DataSource>,
}

/// One need and the source the capture uses for it; part of the capture_started event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSource {
    /// `bytes`, `adoption`, or another need (`socket_errors`, ...).
    pub need: String,
    /// Short code of the source: `tracepoints`, `sock_diag_poll`, `sock_diag_at_start`, `off`,
    /// `unavailable`.
    pub source: String,
    /// What this means for the operator, and why this source was chosen.
    pub detail: String,
    /// True when the source is a fallback that sees less than the best one (a note in the
    /// report's completeness).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
}

impl DataSource {
    /// A few words for a status line (the TUI header): `bytes polled 1/s`, `no resets`.
    pub fn short(&self) -> String {
        match (self.need.as_str(), self.source.as_str()) {
            ("bytes", "sock_diag_poll") => "bytes polled 1/s".to_owned(),
            ("adoption", "sock_diag_at_start") => "adoption at start only".to_owned(),
            (need, "unavailable") => format!("no {}", need.replace('_', " ")),
            (need, source) => format!(
                "{} from {}",
                need.replace('_', " "),
                source.replace('_', " ")
            ),
        }
    }
}

/// Picks the best source for each need on a kernel with `caps`.
pub fn plan(caps: &KernelCaps, all_ports: bool) -> Plan {
    let kernel = caps.short_release();
    let lengths = caps.has_tracepoint("sock", "sock_send_length")
        && caps.has_tracepoint("sock", "sock_recv_length");
    let mut sources = Vec::new();
    let bytes = if lengths {
        sources.push(DataSource {
            need: "bytes".into(),
            source: "tracepoints".into(),
            detail: "byte counts from every send and receive, in the kernel \
                     (sock_send_length/sock_recv_length tracepoints)"
                .into(),
            fallback: false,
        });
        BytesSource::Tracepoints
    } else {
        let at_close = caps.btf;
        let close = if at_close {
            "final counts read from the socket at its close"
        } else {
            "no BTF, so a flow's last second (and flows shorter than a second) may be missed"
        };
        sources.push(DataSource {
            need: "bytes".into(),
            source: "sock_diag_poll".into(),
            detail: format!(
                "byte counts polled once a second from the kernel's TCP statistics \
                 (sock_diag), {close}: this kernel ({kernel}) has no send/recv length \
                 tracepoints (Linux 6.3+)"
            ),
            fallback: true,
        });
        BytesSource::Polled { at_close }
    };
    let adoption = if all_ports {
        sources.push(DataSource {
            need: "adoption".into(),
            source: "off".into(),
            detail: "flows open before the capture are not adopted with --all-ports (an \
                     accepted inbound connection could not be told from an outbound one)"
                .into(),
            fallback: false,
        });
        AdoptionSource::Off
    } else if lengths {
        sources.push(DataSource {
            need: "adoption".into(),
            source: "tracepoints".into(),
            detail: "flows open before the capture are adopted the first time they move \
                     payload"
                .into(),
            fallback: false,
        });
        AdoptionSource::Tracepoints
    } else {
        sources.push(DataSource {
            need: "adoption".into(),
            source: "sock_diag_at_start".into(),
            detail: format!(
                "flows open before the capture are listed once at start-up (sock_diag) and \
                 polled once a second; their end is seen within a second, without its cause \
                 (reset or error): this kernel ({kernel}) has no send/recv length tracepoints"
            ),
            fallback: true,
        });
        AdoptionSource::SockDiagAtStart
    };
    for (cat, name, need, what) in [
        (
            "sock",
            "inet_sk_error_report",
            "socket_errors",
            "socket errors are known only from getsockopt(SO_ERROR) and the socket's error at \
             its close",
        ),
        (
            "tcp",
            "tcp_receive_reset",
            "resets",
            "a RST received is known only from the socket's error",
        ),
        (
            "tcp",
            "tcp_retransmit_skb",
            "retransmits",
            "retransmitted SYNs and segments are not counted (timeouts are still reported)",
        ),
    ] {
        if !caps.has_tracepoint(cat, name) {
            sources.push(DataSource {
                need: need.into(),
                source: "unavailable".into(),
                detail: format!("{what}: this kernel ({kernel}) has no tracepoint {cat}/{name}"),
                fallback: true,
            });
        }
    }
    if caps.older_than(5, 3) {
        sources.push(DataSource {
            need: "so_error".into(),
            source: "unavailable".into(),
            detail: format!(
                "errors a process reads with getsockopt(SO_ERROR) are not seen: cgroup/getsockopt \
                 needs Linux 5.3, this kernel is {kernel}"
            ),
            fallback: true,
        });
    }
    if !caps.btf {
        sources.push(DataSource {
            need: "btf".into(),
            source: "unavailable".into(),
            detail: "no kernel BTF (/sys/kernel/btf/vmlinux): a socket's error at its close \
                     is not read and flows open before the capture are not adopted"
                .into(),
            fallback: true,
        });
    }
    Plan {
        bytes,
        adoption,
        length_tracepoints: lengths,
        sources,
    }
}

/// Whether `program` is one of the programs on the length tracepoints (left out, not failed,
/// when the plan replaced them).
pub fn is_length_tracepoint(program: &str) -> bool {
    matches!(program, "tcp_bytes_sent" | "tcp_bytes_received")
}

/// Why the capture cannot start on this kernel at all, if it cannot (ring buffers: 5.8).
pub fn unsupported(caps: &KernelCaps) -> Option<String> {
    caps.older_than(5, 8).then(|| {
        format!(
            "this kernel ({}) is older than Linux 5.8, which brought the BPF ring buffer the \
             observer's events travel through: run it on a 5.8 or newer kernel",
            caps.release
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(release: &str, tracepoints: &[&str], btf: bool) -> KernelCaps {
        KernelCaps {
            release: release.into(),
            tracepoints: tracepoints.iter().map(|s| (*s).to_owned()).collect(),
            tracefs: true,
            btf,
            kprobes: true,
        }
    }

    const ALL: &[&str] = &[
        "sock/inet_sock_set_state",
        "tcp/tcp_retransmit_skb",
        "tcp/tcp_receive_reset",
        "sock/inet_sk_error_report",
        "sock/sock_send_length",
        "sock/sock_recv_length",
    ];

    #[test]
    fn a_kernel_with_the_length_tracepoints_uses_them_for_bytes_and_adoption() {
        let p = plan(&caps("6.18.0-1-amd64", ALL, true), false);
        assert_eq!(p.bytes, BytesSource::Tracepoints);
        assert_eq!(p.adoption, AdoptionSource::Tracepoints);
        assert!(p.length_tracepoints);
        assert_eq!(p.sources.len(), 2, "{:#?}", p.sources);
        assert!(p.sources.iter().all(|s| !s.fallback));
    }

    #[test]
    fn debian_12_polls_bytes_and_adopts_at_start_and_says_why() {
        let p = plan(&caps("6.1.0-50-amd64", &ALL[..4], true), false);
        assert_eq!(p.bytes, BytesSource::Polled { at_close: true });
        assert_eq!(p.adoption, AdoptionSource::SockDiagAtStart);
        assert!(!p.length_tracepoints);
        let bytes = &p.sources[0];
        assert_eq!(bytes.source, "sock_diag_poll");
        assert!(bytes.fallback);
        assert!(
            bytes.detail.contains("polled once a second")
                && bytes
                    .detail
                    .contains("this kernel (6.1) has no send/recv length tracepoints"),
            "{}",
            bytes.detail
        );
        assert_eq!(p.sources[1].source, "sock_diag_at_start");
        assert_eq!(
            p.sources.len(),
            2,
            "nothing else is missing: {:#?}",
            p.sources
        );
    }

    #[test]
    fn one_length_tracepoint_alone_is_not_enough() {
        let mut tps = ALL[..4].to_vec();
        tps.push("sock/sock_send_length");
        let p = plan(&caps("6.2.0", &tps, true), false);
        assert_eq!(p.bytes, BytesSource::Polled { at_close: true });
    }

    #[test]
    fn without_btf_the_close_is_not_read_and_that_is_said() {
        let p = plan(&caps("5.15.0-91-generic", &ALL[..4], false), false);
        assert_eq!(p.bytes, BytesSource::Polled { at_close: false });
        assert!(p.sources[0].detail.contains("no BTF"));
        assert!(p.sources.iter().any(|s| s.need == "btf"));
    }

    #[test]
    fn all_ports_switches_adoption_off() {
        let p = plan(&caps("6.1.0-50-amd64", &ALL[..4], true), true);
        assert_eq!(p.adoption, AdoptionSource::Off);
        assert_eq!(p.sources[1].source, "off");
    }

    #[test]
    fn missing_tracepoints_and_old_kernels_are_named() {
        let p = plan(&caps("5.2.0", &ALL[..1], true), false);
        let needs: Vec<&str> = p.sources.iter().map(|s| s.need.as_str()).collect();
        assert_eq!(
            needs,
            [
                "bytes",
                "adoption",
                "socket_errors",
                "resets",
                "retransmits",
                "so_error"
            ]
        );
        assert!(unsupported(&caps("5.4.0-150-generic", ALL, true)).is_some());
        assert!(unsupported(&caps("5.8.0", ALL, true)).is_none());
        assert!(
            unsupported(&caps("weird", ALL, true)).is_none(),
            "unknown: try"
        );
    }

    #[test]
    fn releases_parse_as_operators_write_them() {
        assert_eq!(caps("6.1.0-50-amd64", &[], true).short_release(), "6.1");
        assert_eq!(
            caps("5.14.0-427.el9.x86_64", &[], true).version(),
            Some((5, 14))
        );
        assert_eq!(caps("6.8.0-1017-azure", &[], true).version(), Some((6, 8)));
        assert_eq!(caps("6.10rc1", &[], true).version(), Some((6, 10)));
        assert_eq!(caps("", &[], true).short_release(), "unknown");
    }

    #[test]
    fn without_tracefs_tracepoints_are_assumed_and_attaching_decides() {
        let mut c = caps("6.1.0", &[], true);
        c.tracefs = false;
        assert!(c.has_tracepoint("sock", "sock_send_length"));
    }

    #[test]
    fn the_probe_reads_this_machine_without_root() {
        let c = KernelCaps::probe();
        assert!(!c.release.is_empty());
        assert!(c.version().is_some(), "{}", c.release);
    }
}
