//! cgroup v2 identity: which workload (systemd unit, container, Kubernetes pod) a flow or a DNS
//! lookup belongs to.
//!
//! Every kernel record carries a cgroup v2 id (`bpf_get_current_cgroup_id`,
//! `bpf_skb_cgroup_id`): the inode number of the cgroup's directory in the cgroup2 mount
//! ([`super::mountinfo`]). The id alone says nothing; its path does, because container runtimes
//! and the kubelet name their cgroups after what runs in them:
//!
//! | layout | path |
//! |---|---|
//! | Docker, systemd driver | `/system.slice/docker-<id>.scope` |
//! | Docker, cgroupfs driver (and Docker-in-Docker) | `/docker/<id>` |
//! | Podman (rootful, rootless) | `/machine.slice/libpod-<id>.scope[/container]`, `/user.slice/…/user@1000.service/user.slice/libpod-<id>.scope`, cgroupfs `/libpod_parent/libpod-<id>` |
//! | Kubernetes, systemd driver | `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid, '-' as '_'>.slice/cri-containerd-<id>.scope` (`crio-<id>.scope`, `docker-<id>.scope`; no QoS level for guaranteed pods) |
//! | Kubernetes, cgroupfs driver | `/kubepods/burstable/pod<uid>/<id>` (`crio-<id>`) |
//! | Actions Runner Controller, dind | the runner pod's `dind` container, its job containers below it: `…/cri-containerd-<dind>.scope/docker/<job container>` |
//!
//! So [`Resolver`] maps ids to paths by walking the cgroup2 tree (ids are 64-bit kernfs ids,
//! never reused within a boot, so a path once found stays right), and [`classify`] reads a path
//! into a [`Workload`]. [`Lookups`] runs the resolver on a thread of its own: a walk reads every
//! cgroup directory of the host, which the capture loop must not wait for.
//!
//! # Trust and bounds
//!
//! A cgroup path is partly chosen by whoever may create cgroups below their own: a service
//! with `Delegate=yes`, a user's `user@UID.service`, a container with a writable cgroupfs (a
//! `dind` sidecar). Only the part of a path above such a subtree is the host's word. Hence:
//! - a pod is read only from the kubelet's own levels at the top of the tree
//!   (`/kubepods.slice`, `/kubepods`, kind's `/kubelet.slice/kubelet-kubepods.slice`), level by
//!   level, each named after its parent as systemd and the kubelet name them: nobody below can
//!   claim a pod;
//! - a container is read anywhere, the innermost one winning (Docker-in-Docker's job
//!   containers are more telling than the `dind` container around them): a process can only
//!   claim a container below its own cgroup, and the path, always reported, shows where;
//! - ids are validated (64 lowercase hex digits for containers; a UUID, or the 32 hex digits of
//!   a static pod's config hash, for pods); names are shown with their control characters
//!   escaped ([`crate::sanitize::line`]) and cut at [`MAX_SHOWN`] characters;
//! - a walk goes at most [`MAX_DEPTH`] levels down, keeps at most [`MAX_CGROUPS`] directories and
//!   [`MAX_WALK_BYTES`] of paths (breadth first, so that a flood deep in one subtree does not hide
//!   the shallow cgroups where containers live), and happens at most once per [`MIN_REWALK`]:
//!   an id no walk finds (its cgroup gone before it was looked up) is counted, not retried.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fs,
    os::unix::fs::{DirEntryExt as _, MetadataExt as _},
    path::PathBuf,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// A miss walks the tree again at most this often.
pub const MIN_REWALK: Duration = Duration::from_secs(1);
/// Levels walked below the cgroup2 root (Kubernetes with Docker-in-Docker needs 6).
pub const MAX_DEPTH: usize = 16;
/// cgroup directories a walk keeps.
pub const MAX_CGROUPS: usize = 65_536;
/// Approximate bytes of the paths a walk keeps.
pub const MAX_WALK_BYTES: usize = 8 << 20;
/// Characters of a path or unit name shown; longer ones are cut and end with `…`.
pub const MAX_SHOWN: usize = 1024;
/// Ids waiting for their lookup; more are asked again the next time they are seen.
const MAX_PENDING: usize = 4096;
/// Ids a capture remembers having asked for; past this the memory starts again (an id is then
/// looked up, and reported, once more).
pub const MAX_ASKED: usize = 65_536;
/// What one path costs besides its characters (map slot, allocation).
const PATH_OVERHEAD: usize = 64;

/// The container runtime a cgroup path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Runtime {
    #[serde(rename = "docker")]
    Docker,
    #[serde(rename = "containerd")]
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
    #[serde(rename = "podman")]
    Podman,
    /// A runtime this build does not know (in an event log or report of a newer one).
    #[serde(rename = "other", other)]
    Other,
}

impl Runtime {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Podman => "podman",
            Self::Other => "other",
        }
    }
}

/// What a cgroup path says about the processes in it (docs/events.md, `cgroup_seen`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// The cgroup's path below the cgroup2 mount (`/system.slice/ssh.service`), control
    /// characters escaped, at most [`MAX_SHOWN`] characters.
    pub cgroup: String,
    /// The systemd unit: the last `*.service` or `*.scope` of the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The container runtime, when the path names one (the cgroupfs layout of Kubernetes names
    /// a container but not its runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// The container's id (64 hex digits), the innermost when containers nest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The Kubernetes pod's UID (`6f1c…-…`, with dashes), when the kubelet's levels say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

impl Workload {
    /// Approximate heap bytes of its strings.
    pub fn heap_bytes(&self) -> usize {
        self.cgroup.len()
            + self.unit.as_ref().map_or(0, String::len)
            + self.container_id.as_ref().map_or(0, String::len)
            + self.pod_uid.as_ref().map_or(0, String::len)
    }

    /// In a few words, the most telling first: `pod 6f1c… containerd 1207db63eaeb`,
    /// `docker 293f758723d0`, `ssh.service`, or the path.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(pod) = &self.pod_uid {
            parts.push(format!("pod {pod}"));
        }
        if let Some(id) = &self.container_id {
            let short: String = id.chars().take(12).collect();
            match self.runtime {
                Some(r) => parts.push(format!("{} {short}", r.as_str())),
                None => parts.push(format!("container {short}")),
            }
        }
        if parts.is_empty() {
            if let Some(unit) = &self.unit {
                parts.push(unit.clone());
            }
        }
        if parts.is_empty() {
            self.cgroup.clone()
        } else {
            parts.join(" ")
        }
    }
}

/// What `path` (a cgroup path below the cgroup2 mount, `/a/b`) says; see the module
/// documentation for the layouts read and what is trusted.
pub fn classify(path: &str) -> Workload {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let unit = comps
        .iter()
        .rev()
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(|c| shown(c));
    let pod = pod_of(&comps);
    let mut container = None;
    for (i, comp) in comps.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| comps[j]);
        let after_pod = pod.as_ref().is_some_and(|(at, _)| at + 1 == i);
        if let Some(found) = container_of(comp, prev, after_pod) {
            container = Some(found);
        }
    }
    let (runtime, container_id) = match container {
        Some((runtime, id)) => (runtime, Some(id.to_owned())),
        None => (None, None),
    };
    Workload {
        cgroup: shown(if path.is_empty() { "/" } else { path }),
        unit,
        runtime,
        container_id,
        pod_uid: pod.map(|(_, uid)| uid),
    }
}

/// `text` made safe to print and cut at [`MAX_SHOWN`] characters.
fn shown(text: &str) -> String {
    let clean = crate::sanitize::line(text);
    if clean.chars().count() <= MAX_SHOWN {
        return clean.into_owned();
    }
    let mut cut: String = clean.chars().take(MAX_SHOWN - 1).collect();
    cut.push('…');
    cut
}

/// `s` is `n` lowercase hexadecimal digits.
fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A pod UID: a UUID (8-4-4-4-12 lowercase hex digits), or the 32 hex digits the kubelet gives
/// a static pod (its manifest's hash).
fn pod_uid(s: &str) -> Option<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let uuid = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| is_hex(g, n));
    (uuid || is_hex(s, 32)).then(|| s.to_owned())
}

/// The pod level of a path (its index and the pod's UID), read only from the kubelet's levels
/// at the top of the tree.
fn pod_of(comps: &[&str]) -> Option<(usize, String)> {
    match comps {
        ["kubepods.slice", ..] => pod_of_slices(comps, 1, "kubepods"),
        // kind and other kubelets run with `--cgroup-root=/kubelet`.
        ["kubelet.slice", "kubelet-kubepods.slice", ..] => {
            pod_of_slices(comps, 2, "kubelet-kubepods")
        }
        ["kubepods", ..] => {
            // cgroupfs: /kubepods[/besteffort|/burstable]/pod<uid>
            let at = if matches!(comps.get(1), Some(&("besteffort" | "burstable"))) {
                2
            } else {
                1
            };
            let uid = comps.get(at)?.strip_prefix("pod")?;
            pod_uid(uid).map(|uid| (at, uid))
        }
        _ => None,
    }
}

/// The systemd driver's levels from `comps[at]` on: each slice is named after its parent
/// (`kubepods-burstable.slice` in `kubepods.slice`), the pod's is `<parent>-pod<uid>.slice` with
/// the UID's dashes written as underscores (a dash is systemd's level separator).
fn pod_of_slices(comps: &[&str], mut at: usize, parent: &str) -> Option<(usize, String)> {
    let mut stem = parent.to_owned();
    for qos in ["besteffort", "burstable"] {
        if comps.get(at) == Some(&format!("{stem}-{qos}.slice").as_str()) {
            stem = format!("{stem}-{qos}");
            at += 1;
            break;
        }
    }
    let uid = comps
        .get(at)?
        .strip_prefix(stem.as_str())?
        .strip_prefix("-pod")?
        .strip_suffix(".slice")?;
    if uid.contains('-') {
        return None;
    }
    pod_uid(&uid.replace('_', "-")).map(|uid| (at, uid))
}

/// The container a path component names: `(runtime, id)`. `prev` is the component above it;
/// `after_pod` says it is right below a pod's level (where the cgroupfs driver names a
/// container by its bare id).
fn container_of<'a>(
    comp: &'a str,
    prev: Option<&str>,
    after_pod: bool,
) -> Option<(Option<Runtime>, &'a str)> {
    const PREFIXES: [(&str, Runtime, bool); 4] = [
        // (prefix, runtime, also without `.scope`: the runtime's cgroupfs layout)
        ("docker-", Runtime::Docker, false),
        ("cri-containerd-", Runtime::Containerd, false),
        ("crio-", Runtime::CriO, true),
        ("libpod-", Runtime::Podman, true),
    ];
    let (stem, scope) = match comp.strip_suffix(".scope") {
        Some(stem) => (stem, true),
        None => (comp, false),
    };
    for (prefix, runtime, bare) in PREFIXES {
        if let Some(id) = stem.strip_prefix(prefix) {
            if is_hex(id, 64) && (scope || bare) {
                return Some((Some(runtime), id));
            }
        }
    }
    if is_hex(comp, 64) {
        if prev == Some("docker") {
            return Some((Some(Runtime::Docker), comp));
        }
        if after_pod {
            return Some((None, comp));
        }
    }
    None
}

/// The answer to one lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The cgroup's path.
    Found(String),
    /// Not known, and the last walk was less than [`MIN_REWALK`] ago: ask again later.
    Later,
    /// No walk since the question found it: the cgroup is gone (or beyond the walk's bounds).
    Missing,
}

/// What the resolver did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolverStats {
    pub walks: u64,
    /// Ids no walk found.
    pub misses: u64,
    /// Walks stopped by a bound ([`MAX_DEPTH`], [`MAX_CGROUPS`], [`MAX_WALK_BYTES`]).
    pub truncated_walks: u64,
    /// cgroups known since the last walk.
    pub cgroups: usize,
}

/// Maps cgroup ids to paths by walking the cgroup2 tree under `root` (see the module
/// documentation for its bounds).
#[derive(Debug)]
pub struct Resolver {
    root: PathBuf,
    paths: HashMap<u64, String>,
    walked_at: Option<Instant>,
    stats: ResolverStats,
}

impl Resolver {
    /// A resolver of the cgroup2 tree mounted at `root`; nothing is read until a lookup.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            paths: HashMap::new(),
            walked_at: None,
            stats: ResolverStats::default(),
        }
    }

    pub fn stats(&self) -> ResolverStats {
        ResolverStats {
            cgroups: self.paths.len(),
            ..self.stats
        }
    }

    /// The path of cgroup `id`, asked at `asked`, now being `now`: known; or found by a walk,
    /// when none happened since the question and the last one is [`MIN_REWALK`] old; or
    /// [`Lookup::Later`] while a walk would come too soon; or [`Lookup::Missing`] when a walk
    /// after the question did not find it (counted).
    pub fn resolve(&mut self, id: u64, asked: Instant, now: Instant) -> Lookup {
        if let Some(path) = self.paths.get(&id) {
            return Lookup::Found(path.clone());
        }
        let walked_since = self.walked_at.is_some_and(|at| at >= asked);
        if !walked_since {
            if self
                .walked_at
                .is_some_and(|at| now.saturating_duration_since(at) < MIN_REWALK)
            {
                return Lookup::Later;
            }
            self.walk(now);
            if let Some(path) = self.paths.get(&id) {
                return Lookup::Found(path.clone());
            }
        }
        self.stats.misses += 1;
        Lookup::Missing
    }

    /// When a walk may happen again, seen from `now`.
    pub fn next_walk_in(&self, now: Instant) -> Duration {
        self.walked_at.map_or(Duration::ZERO, |at| {
            MIN_REWALK.saturating_sub(now.saturating_duration_since(at))
        })
    }

    /// Reads the tree again, breadth first, within the bounds; what it finds replaces what
    /// was known.
    pub fn walk(&mut self, now: Instant) {
        self.walked_at = Some(now);
        self.stats.walks += 1;
        let mut paths = HashMap::new();
        let mut bytes = 0;
        let mut truncated = false;
        if let Ok(meta) = fs::metadata(&self.root) {
            paths.insert(meta.ino(), "/".to_owned());
        }
        let mut queue: VecDeque<(PathBuf, String, usize)> = VecDeque::new();
        queue.push_back((self.root.clone(), String::new(), 0));
        'walk: while let Some((dir, path, depth)) = queue.pop_front() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // The type from the directory entry itself: cgroupfs fills it, no stat needed.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if paths.len() >= MAX_CGROUPS || bytes >= MAX_WALK_BYTES {
                    truncated = true;
                    break 'walk;
                }
                let child = format!("{path}/{}", entry.file_name().to_string_lossy());
                bytes += PATH_OVERHEAD + child.len();
                if depth + 1 < MAX_DEPTH {
                    queue.push_back((entry.path(), child.clone(), depth + 1));
                } else {
                    truncated |= fs::read_dir(entry.path()).is_ok_and(|mut e| {
                        e.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir())))
                    });
                }
                paths.insert(entry.ino(), child);
            }
        }
        if truncated {
            self.stats.truncated_walks += 1;
            log::debug!(
                "cgroup walk of {} stopped at its bounds ({} cgroups)",
                self.root.display(),
                paths.len()
            );
        }
        self.paths = paths;
    }
}

/// Lookups of cgroup ids off the capture loop: a thread owns the [`Resolver`]; the loop asks
/// for each id once ([`Lookups::ask`]) and receives workloads when they are found
/// ([`Lookups::next`]).
pub struct Lookups {
    requests: Option<mpsc::SyncSender<u64>>,
    answers: tokio::sync::mpsc::Receiver<(u64, Option<Workload>)>,
    asked: HashSet<u64>,
    /// The id asked last: the packets of a flood mostly carry the same one, and a hash lookup
    /// per packet showed in its profile.
    last_asked: u64,
    outstanding: usize,
    unresolved: u64,
}

impl Lookups {
    /// Starts the lookup thread for the cgroup2 tree at `root`. When the thread cannot start,
    /// says so and resolves nothing (the capture runs on without workloads).
    pub fn start(root: PathBuf) -> Self {
        let (requests, asked) = mpsc::sync_channel(MAX_PENDING);
        let (answered, answers) = tokio::sync::mpsc::channel(MAX_PENDING);
        let resolver = Resolver::new(root);
        let spawned = thread::Builder::new()
            .name("observer-cgroups".to_owned())
            .spawn(move || serve(resolver, &asked, &answered));
        let requests = match spawned {
            Ok(_) => Some(requests),
            Err(e) => {
                eprintln!(
                    "observer: warning: cannot start the cgroup lookup thread ({e}): flows and \
                     lookups carry cgroup ids without their workloads"
                );
                None
            }
        };
        Self {
            requests,
            answers,
            asked: HashSet::new(),
            last_asked: 0,
            outstanding: 0,
            unresolved: 0,
        }
    }

    /// Asks for the workload of cgroup `id` unless it was asked before (0, no cgroup, never
    /// is). Never blocks: when the thread is busy the id is asked again the next time.
    pub fn ask(&mut self, id: u64) {
        if id == 0 || id == self.last_asked {
            return;
        }
        if self.asked.contains(&id) {
            self.last_asked = id;
            return;
        }
        let Some(requests) = &self.requests else {
            return;
        };
        match requests.try_send(id) {
            Ok(()) => {
                if self.asked.len() >= MAX_ASKED {
                    self.asked.clear();
                }
                self.asked.insert(id);
                self.last_asked = id;
                self.outstanding += 1;
            }
            Err(mpsc::TrySendError::Full(_)) => {}
            Err(mpsc::TrySendError::Disconnected(_)) => self.requests = None,
        }
    }

    /// The next workload found; an id whose cgroup was not found is counted
    /// ([`Lookups::unresolved`]) and gives `None`. Cancel-safe; pends forever once the thread
    /// is gone.
    pub async fn next(&mut self) -> Option<(u64, Workload)> {
        match self.answers.recv().await {
            Some((id, answer)) => self.take(id, answer),
            None => std::future::pending().await,
        }
    }

    /// Waits, at most `within`, for the answers still owed, and returns the workloads found.
    pub async fn settle(&mut self, within: Duration) -> Vec<(u64, Workload)> {
        let deadline = tokio::time::Instant::now() + within;
        let mut found = Vec::new();
        while self.outstanding > 0 {
            match tokio::time::timeout_at(deadline, self.answers.recv()).await {
                Ok(Some((id, answer))) => found.extend(self.take(id, answer)),
                Ok(None) | Err(_) => break,
            }
        }
        found
    }

    fn take(&mut self, id: u64, answer: Option<Workload>) -> Option<(u64, Workload)> {
        self.outstanding = self.outstanding.saturating_sub(1);
        if answer.is_none() {
            self.unresolved += 1;
        }
        answer.map(|w| (id, w))
    }

    /// Ids whose cgroup no walk found (gone before it was looked up).
    pub fn unresolved(&self) -> u64 {
        self.unresolved
    }
}

/// The lookup thread: answers each id asked, walking again at most once per [`MIN_REWALK`];
/// ends when the capture drops its [`Lookups`].
fn serve(
    mut resolver: Resolver,
    asked: &mpsc::Receiver<u64>,
    answered: &tokio::sync::mpsc::Sender<(u64, Option<Workload>)>,
) {
    let mut pending: Vec<(u64, Instant)> = Vec::new();
    loop {
        let received = if pending.is_empty() {
            asked
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            asked.recv_timeout(resolver.next_walk_in(Instant::now()))
        };
        match received {
            Ok(id) => pending.push((id, Instant::now())),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while pending.len() < MAX_PENDING {
            let Ok(id) = asked.try_recv() else { break };
            pending.push((id, Instant::now()));
        }
        let now = Instant::now();
        let mut answers = Vec::new();
        pending.retain(|&(id, at)| match resolver.resolve(id, at, now) {
            Lookup::Found(path) => {
                answers.push((id, Some(classify(&path))));
                false
            }
            Lookup::Missing => {
                answers.push((id, None));
                false
            }
            Lookup::Later => true,
        });
        for answer in answers {
            if answered.blocking_send(answer).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "293f758723d0652a0b9fa869106e600079e56dae362ca84de12942d38524a272";
    const ID2: &str = "1207db63eaeb133a85d2b614d12d95d4dff3f29af60d7a7b3c7d39abdf4bd119";
    const UID: &str = "dc380811-8168-4a9e-9b4a-56ded1b6fe9c";

    fn workload(
        cgroup: &str,
        unit: Option<&str>,
        runtime: Option<Runtime>,
        container_id: Option<&str>,
        pod_uid: Option<&str>,
    ) -> Workload {
        Workload {
            cgroup: cgroup.to_owned(),
            unit: unit.map(str::to_owned),
            runtime,
            container_id: container_id.map(str::to_owned),
            pod_uid: pod_uid.map(str::to_owned),
        }
    }

    #[test]
    fn docker_podman_and_systemd_units() {
        // Docker with the systemd driver (Ubuntu 20.04).
        let p = format!("/system.slice/docker-{ID}.scope");
        let unit = format!("docker-{ID}.scope");
        assert_eq!(
            classify(&p),
            workload(&p, Some(&unit), Some(Runtime::Docker), Some(ID), None)
        );
        // Docker with the cgroupfs driver.
        let p = format!("/docker/{ID}");
        assert_eq!(
            classify(&p),
            workload(&p, None, Some(Runtime::Docker), Some(ID), None)
        );
        // Docker with `--cgroup-parent=runners.slice`, and rootless Docker.
        let p = format!("/runners.slice/docker-{ID}.scope");
        assert_eq!(classify(&p).container_id.as_deref(), Some(ID));
        let p =
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope");
        assert_eq!(classify(&p).runtime, Some(Runtime::Docker));
        // Podman: rootful (machine.slice, crun's `container` sub-cgroup), rootless, cgroupfs.
        for p in [
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            format!("/libpod_parent/libpod-{ID}"),
        ] {
            let w = classify(&p);
            assert_eq!(
                (w.runtime, w.container_id.as_deref()),
                (Some(Runtime::Podman), Some(ID)),
                "{p}"
            );
        }
        // Podman's monitor is no container.
        let w = classify(&format!("/machine.slice/libpod-conmon-{ID}.scope"));
        assert_eq!((w.runtime, w.container_id), (None, None));
        assert_eq!(
            w.unit.as_deref(),
            Some(format!("libpod-conmon-{ID}.scope").as_str())
        );
        // A runner installed as a service (svc.sh), a login session, the root.
        let p = "/system.slice/actions.runner.octo-org-octo-repo.runner-1.service";
        assert_eq!(
            classify(p),
            workload(
                p,
                Some("actions.runner.octo-org-octo-repo.runner-1.service"),
                None,
                None,
                None
            )
        );
        assert_eq!(
            classify("/user.slice/user-1000.slice/session-4.scope")
                .unit
                .as_deref(),
            Some("session-4.scope")
        );
        assert_eq!(classify("/"), workload("/", None, None, None, None));
        assert_eq!(classify(""), workload("/", None, None, None, None));
    }

    #[test]
    fn kubernetes_systemd_driver() {
        let under = UID.replace('-', "_");
        // BestEffort and Burstable pods, containerd, CRI-O (crun's sub-cgroup), cri-dockerd.
        for (qos, container, runtime) in [
            (
                "besteffort",
                format!("cri-containerd-{ID}.scope"),
                Runtime::Containerd,
            ),
            (
                "burstable",
                format!("crio-{ID}.scope/container"),
                Runtime::CriO,
            ),
            ("besteffort", format!("docker-{ID}.scope"), Runtime::Docker),
        ] {
            let p = format!(
                "/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{under}.slice/{container}"
            );
            let w = classify(&p);
            assert_eq!(w.pod_uid.as_deref(), Some(UID), "{p}");
            assert_eq!(
                (w.runtime, w.container_id.as_deref()),
                (Some(runtime), Some(ID))
            );
            assert_eq!(w.cgroup, p);
        }
        // Guaranteed pods have no QoS level; the pod's own slice (the pause container aside)
        // names the pod only.
        let p = format!("/kubepods.slice/kubepods-pod{under}.slice/cri-containerd-{ID}.scope");
        assert_eq!(classify(&p).pod_uid.as_deref(), Some(UID));
        let p =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{under}.slice");
        let w = classify(&p);
        assert_eq!((w.pod_uid.as_deref(), w.container_id), (Some(UID), None));
        assert_eq!(w.unit, None);
        // CRI-O's monitor: the pod, no container.
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{under}.slice/crio-conmon-{ID}.scope"
        );
        let w = classify(&p);
        assert_eq!((w.pod_uid.as_deref(), w.container_id), (Some(UID), None));
        // A static pod: its UID is its manifest's hash.
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c5e1c7f3d6a2b4e8f9a1b2c3d4e5f60.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            classify(&p).pod_uid.as_deref(),
            Some("0c5e1c7f3d6a2b4e8f9a1b2c3d4e5f60")
        );
        // kind (kubelet --cgroup-root=/kubelet), as its node sees it.
        let p = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod26a1a59b_8013_459b_9a20_a611facb1888.slice/cri-containerd-{ID2}.scope"
        );
        let w = classify(&p);
        assert_eq!(
            (w.pod_uid.as_deref(), w.runtime, w.container_id.as_deref()),
            (
                Some("26a1a59b-8013-459b-9a20-a611facb1888"),
                Some(Runtime::Containerd),
                Some(ID2)
            )
        );
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        for p in [
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/besteffort/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{ID}"),
        ] {
            let w = classify(&p);
            assert_eq!(
                (w.pod_uid.as_deref(), w.runtime, w.container_id.as_deref()),
                (Some(UID), None, Some(ID)),
                "{p}"
            );
        }
        let w = classify(&format!("/kubepods/burstable/pod{UID}/crio-{ID}"));
        assert_eq!(
            (w.runtime, w.pod_uid.as_deref()),
            (Some(Runtime::CriO), Some(UID))
        );
    }

    #[test]
    fn actions_runner_controller_pods() {
        let under = UID.replace('-', "_");
        let pod =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{under}.slice");
        // The runner container of a runner pod.
        let w = classify(&format!("{pod}/cri-containerd-{ID}.scope"));
        assert_eq!(
            (w.pod_uid.as_deref(), w.runtime, w.container_id.as_deref()),
            (Some(UID), Some(Runtime::Containerd), Some(ID))
        );
        // containerMode dind: the dind sidecar's dockerd (moved to `init` by its entrypoint),
        // and a job container it started (the cgroupfs driver, in the sidecar's namespace).
        let w = classify(&format!("{pod}/cri-containerd-{ID2}.scope/init"));
        assert_eq!(
            (w.runtime, w.container_id.as_deref(), w.unit),
            (
                Some(Runtime::Containerd),
                Some(ID2),
                Some(format!("cri-containerd-{ID2}.scope"))
            )
        );
        let w = classify(&format!("{pod}/cri-containerd-{ID2}.scope/docker/{ID}"));
        assert_eq!(
            (w.pod_uid.as_deref(), w.runtime, w.container_id.as_deref()),
            (Some(UID), Some(Runtime::Docker), Some(ID))
        );
    }

    #[test]
    fn claims_from_below_are_not_pods_and_bad_ids_are_nothing() {
        let under = UID.replace('-', "_");
        // A user's delegated subtree cannot claim a pod.
        let p = format!(
            "/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-pod{under}.slice/x"
        );
        assert_eq!(classify(&p).pod_uid, None);
        // Levels not named after their parent, dashes in a slice's UID, bad UUIDs.
        for p in [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{under}.slice"
            ),
            format!("/kubepods.slice/kubepods-pod{UID}.slice"),
            "/kubepods.slice/kubepods-pod12345678_1234_1234_1234_12345678901g.slice".to_owned(),
            "/kubepods.slice/kubepods-pod12345678_1234_1234_1234_123456789012_.slice".to_owned(),
            "/kubepods/podnot-a-uid/x".to_owned(),
            format!("/kubepods/burstable/pod{}", UID.to_uppercase()),
        ] {
            assert_eq!(classify(&p).pod_uid, None, "{p}");
        }
        // Container ids of the wrong length, case or alphabet; a bare id not under `docker`.
        for p in [
            format!("/system.slice/docker-{}.scope", &ID[..63]),
            format!("/system.slice/docker-{ID}0.scope"),
            format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            format!("/system.slice/docker-{}x.scope", &ID[..63]),
            format!("/system.slice/docker-{ID}"),
            format!("/system.slice/{ID}"),
            format!("/system.slice/cri-containerd-{ID}"),
        ] {
            let w = classify(&p);
            assert_eq!((w.runtime, w.container_id), (None, None), "{p}");
        }
    }

    #[test]
    fn names_are_escaped_and_cut() {
        let w = classify("/system.slice/evil\u{1b}[2J\n.service");
        assert_eq!(w.cgroup, "/system.slice/evil\\x1b[2J\\n.service");
        assert_eq!(w.unit.as_deref(), Some("evil\\x1b[2J\\n.service"));
        let long = format!("/{}", "a/".repeat(2000));
        let w = classify(&long);
        assert_eq!(w.cgroup.chars().count(), MAX_SHOWN);
        assert!(w.cgroup.ends_with('…'));
        assert_eq!(
            classify("/\u{202e}x.scope").unit.as_deref(),
            Some("\\u{202e}x.scope")
        );
    }

    #[test]
    fn labels_say_the_most_telling_first() {
        let under = UID.replace('-', "_");
        let p = format!("/kubepods.slice/kubepods-pod{under}.slice/cri-containerd-{ID}.scope");
        assert_eq!(
            classify(&p).label(),
            format!("pod {UID} containerd 293f758723d0")
        );
        assert_eq!(
            classify(&format!("/kubepods/pod{UID}/{ID}")).label(),
            format!("pod {UID} container 293f758723d0")
        );
        assert_eq!(classify("/system.slice/ssh.service").label(), "ssh.service");
        assert_eq!(classify("/init.scope/x").label(), "init.scope");
        assert_eq!(classify("/").label(), "/");
    }

    #[test]
    fn workloads_serialize_with_runtime_names_and_read_unknown_ones() {
        let w = classify(&format!("/kubepods/besteffort/pod{UID}/crio-{ID}"));
        let json = serde_json::to_value(&w).expect("serializes");
        assert_eq!(json["runtime"], "cri-o");
        assert!(json.get("unit").is_none(), "{json}");
        let back: Workload = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, w);
        let newer: Workload =
            serde_json::from_str(r#"{"cgroup":"/x","runtime":"kata","future":1}"#).expect("reads");
        assert_eq!(newer.runtime, Some(Runtime::Other));
        let old: Workload = serde_json::from_str(r#"{"cgroup":"/x"}"#).expect("reads");
        assert_eq!(old, workload("/x", None, None, None, None));
    }

    /// A fake cgroup2 tree: directories with the interface files a real one has.
    fn tree(dirs: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temp dir");
        for d in dirs {
            let dir = root.path().join(d.trim_start_matches('/'));
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join("cgroup.procs"), "").expect("write");
        }
        root
    }

    fn ino(root: &tempfile::TempDir, path: &str) -> u64 {
        fs::metadata(root.path().join(path.trim_start_matches('/')))
            .expect("exists")
            .ino()
    }

    #[test]
    fn resolver_walks_a_tree_and_rewalks_a_miss_at_most_once_a_second() {
        let docker = format!("/system.slice/docker-{ID}.scope");
        let root = tree(&[&docker, "/user.slice/user-1000.slice"]);
        let mut r = Resolver::new(root.path());
        let t0 = Instant::now();
        assert_eq!(
            r.resolve(ino(&root, &docker), t0, t0),
            Lookup::Found(docker.clone())
        );
        assert_eq!(
            r.resolve(ino(&root, "/"), t0, t0),
            Lookup::Found("/".into())
        );
        assert_eq!(
            r.resolve(ino(&root, "/user.slice"), t0, t0),
            Lookup::Found("/user.slice".into())
        );
        assert_eq!(r.stats().walks, 1);
        assert_eq!(r.stats().cgroups, 5);

        // A cgroup created after the walk: a question within the second waits...
        let pod = format!("/kubepods/besteffort/pod{UID}/{ID2}");
        fs::create_dir_all(root.path().join(pod.trim_start_matches('/'))).expect("mkdir");
        let id = ino(&root, &pod);
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(r.resolve(id, t1, t1), Lookup::Later);
        assert_eq!(r.next_walk_in(t1), Duration::from_millis(700));
        // ...and is found by the next walk, a second after the last.
        let t2 = t0 + MIN_REWALK;
        assert_eq!(r.resolve(id, t1, t2), Lookup::Found(pod.clone()));
        assert_eq!(classify(&pod).pod_uid.as_deref(), Some(UID));
        assert_eq!(r.stats().walks, 2);

        // An id no walk finds: once a walk after the question missed it, it is missing
        // (counted), without another walk.
        let t3 = t2 + 2 * MIN_REWALK;
        assert_eq!(r.resolve(u64::MAX, t3, t3), Lookup::Missing);
        assert_eq!(r.resolve(u64::MAX, t3, t3), Lookup::Missing);
        assert_eq!((r.stats().walks, r.stats().misses), (3, 2));
        // A removed cgroup is forgotten by the next walk.
        fs::remove_dir_all(root.path().join("kubepods")).expect("rm");
        let t4 = t3 + MIN_REWALK;
        r.walk(t4);
        assert_eq!(r.resolve(id, t0, t4), Lookup::Missing);
        assert_eq!(r.stats().walks, 4);
    }

    #[test]
    fn resolver_walks_within_its_bounds() {
        // Deeper than MAX_DEPTH: the levels below are not walked, and the walk says so.
        let deep = format!("/{}", vec!["d"; MAX_DEPTH + 3].join("/"));
        let root = tree(&[&deep]);
        let mut r = Resolver::new(root.path());
        let t = Instant::now();
        r.walk(t);
        let stats = r.stats();
        assert_eq!((stats.cgroups, stats.truncated_walks), (MAX_DEPTH + 1, 1));
        let last = format!("/{}", vec!["d"; MAX_DEPTH].join("/"));
        assert_eq!(r.resolve(ino(&root, &last), t, t), Lookup::Found(last));
        assert_eq!(r.resolve(ino(&root, &deep), t, t), Lookup::Missing);

        // A root that cannot be read: nothing found, nothing panics.
        let mut r = Resolver::new("/nonexistent/cgroup2");
        let t = Instant::now();
        assert_eq!(r.resolve(7, t, t), Lookup::Missing);
        assert_eq!(r.stats().cgroups, 0);
    }

    #[tokio::test]
    async fn lookups_answer_off_the_loop_and_count_the_missing() {
        let docker = format!("/system.slice/docker-{ID}.scope");
        let root = tree(&[&docker]);
        let mut lookups = Lookups::start(root.path().to_owned());
        let id = ino(&root, &docker);
        lookups.ask(id);
        lookups.ask(id); // asked once
        lookups.ask(0); // no cgroup
        lookups.ask(u64::MAX - 1); // none such
        let found = lookups.settle(Duration::from_secs(10)).await;
        assert_eq!(found, vec![(id, classify(&docker))]);
        assert_eq!(lookups.unresolved(), 1);
        // Answered ids are not asked again.
        lookups.ask(id);
        assert!(lookups.settle(Duration::from_millis(50)).await.is_empty());
    }
}
