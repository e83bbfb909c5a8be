//! The processes of the jobs `observer daemon` follows, shared with the kernel programs through
//! the `JOB_PIDS` map (see the ABI): the daemon lists a job's `Runner.Worker` and its current
//! descendants when the job starts; the kernel adds every child they fork and removes every task
//! that exits, and stamps each flow's and DNS socket's owner with the job's slot. A job's slot
//! is removed from the map when the job completes.
//!
//! Also the `/proc` readings the daemon needs for that: a process's ancestry (to find the
//! `Runner.Worker` that ran a hook) and its descendants. Both are bounded and never trust what
//! they read: a process can name itself anything.

use std::{
    fmt,
    path::Path,
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap as BpfHashMap, MapData};

/// A handle on the kernel's `JOB_PIDS` map; empty until the capture started with it.
#[derive(Clone, Default)]
pub struct JobPids(Arc<Mutex<Option<BpfHashMap<MapData, u32, u32>>>>);

impl fmt::Debug for JobPids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobPids")
            .field("live", &self.is_live())
            .finish()
    }
}

/// Why processes could not be listed for a job.
#[derive(Debug, thiserror::Error)]
pub enum JobPidsError {
    #[error("the capture is not running with job following")]
    NotLive,
    #[error("the kernel's job table refused process {pid}: {source}")]
    Insert {
        pid: u32,
        #[source]
        source: aya::maps::MapError,
    },
}

impl JobPids {
    pub(crate) fn install(&self, map: BpfHashMap<MapData, u32, u32>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(map);
        }
    }

    /// The capture started and the map is shared.
    pub fn is_live(&self) -> bool {
        self.0.lock().is_ok_and(|m| m.is_some())
    }

    /// Lists `pids` as the job `slot`'s (slot 0 means "no job" and is refused).
    pub fn add(&self, slot: u32, pids: &[u32]) -> Result<(), JobPidsError> {
        assert_ne!(slot, 0, "job slot 0 means no job");
        let mut guard = self.0.lock().map_err(|_| JobPidsError::NotLive)?;
        let map = guard.as_mut().ok_or(JobPidsError::NotLive)?;
        for &pid in pids {
            map.insert(pid, slot, 0)
                .map_err(|source| JobPidsError::Insert { pid, source })?;
        }
        Ok(())
    }

    /// Removes every process of the job `slot`; returns how many were listed.
    pub fn remove_job(&self, slot: u32) -> usize {
        let Ok(mut guard) = self.0.lock() else {
            return 0;
        };
        let Some(map) = guard.as_mut() else {
            return 0;
        };
        let pids: Vec<u32> = map
            .iter()
            .filter_map(Result::ok)
            .filter(|&(_, s)| s == slot)
            .map(|(pid, _)| pid)
            .collect();
        for pid in &pids {
            let _ = map.remove(pid);
        }
        pids.len()
    }
}

/// The longest ancestry followed.
const MAX_DEPTH: usize = 64;
/// The most descendants listed for one process.
pub const MAX_DESCENDANTS: usize = 4096;

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// The command name (at most 15 bytes, as the kernel keeps it).
    pub comm: String,
    /// When it started, in clock ticks after boot (`starttime`): with the pid, names one
    /// process for the machine's uptime (pids are reused).
    pub start_time: Option<u64>,
}

/// Reads `/proc/<pid>/stat` under `proc_root`.
pub fn proc_info(proc_root: &Path, pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&stat)
}

/// `pid (comm) state ppid ...`: the command name may hold spaces and parentheses, so it ends
/// at the last `)`.
fn parse_stat(stat: &str) -> Option<ProcInfo> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = stat[..open].trim().parse().ok()?;
    let comm = stat[open + 1..close].chars().take(16).collect();
    let mut rest = stat[close + 1..].split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    // Field 22; `rest` started at field 3 and has given two.
    let start_time = rest.nth(17).and_then(|t| t.parse().ok());
    Some(ProcInfo {
        pid,
        ppid,
        comm,
        start_time,
    })
}

/// `pid` and its ancestors, nearest first, up to init (bounded).
pub fn ancestry(proc_root: &Path, pid: u32) -> Vec<ProcInfo> {
    let mut out: Vec<ProcInfo> = Vec::new();
    let mut next = pid;
    while next > 0 && out.len() < MAX_DEPTH {
        let Some(info) = proc_info(proc_root, next) else {
            break;
        };
        next = info.ppid;
        let looped = out.iter().any(|p| p.pid == info.pid);
        out.push(info);
        if looped {
            break;
        }
    }
    out
}

/// The live descendants of `pid` (not `pid` itself), from every thread's `children` file
/// (Linux 3.5+, `CONFIG_PROC_CHILDREN`), breadth first, at most [`MAX_DESCENDANTS`].
pub fn descendants(proc_root: &Path, pid: u32) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let mut queue = std::collections::VecDeque::from([pid]);
    while let Some(p) = queue.pop_front() {
        let Ok(tasks) = std::fs::read_dir(proc_root.join(p.to_string()).join("task")) else {
            continue;
        };
        for task in tasks.flatten().take(MAX_DESCENDANTS) {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if out.len() >= MAX_DESCENDANTS {
                    return out;
                }
                if child != pid && !out.contains(&child) {
                    out.push(child);
                    queue.push_back(child);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let info = parse_stat("1234 (Runner.Worker) S 1200 1234 1234 0 -1").unwrap();
        assert_eq!(
            info,
            ProcInfo {
                pid: 1234,
                ppid: 1200,
                comm: "Runner.Worker".into(),
                start_time: None,
            }
        );
        // A real line of this kernel: starttime is field 22.
        let line = "4242 (Runner.Worker) S 4200 4242 4200 0 -1 4194560 1187 0 0 0 3 1 0 0 20 0 \
                    9 0 4291298 230518784 8042 18446744073709551615";
        assert_eq!(parse_stat(line).unwrap().start_time, Some(4_291_298));
        let odd = parse_stat("77 (a) b (c)) R 5 77").unwrap();
        assert_eq!((odd.comm.as_str(), odd.ppid), ("a) b (c)", 5));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 )( S 0"), None);
    }

    #[test]
    fn the_real_process_tree_is_read() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let proc_root = Path::new("/proc");
        let chain = ancestry(proc_root, child.id());
        assert_eq!(chain[0].comm, "sleep");
        assert_eq!(chain[1].pid, me);
        assert!(descendants(proc_root, me).contains(&child.id()));
        let _ = child.kill();
        let _ = child.wait();
    }
}
