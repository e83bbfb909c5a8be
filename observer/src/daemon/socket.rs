//! The control socket: a Unix socket that root and one configurable group may connect to (mode
//! 0660), nobody else. One request per connection (docs/daemon.md); each connection is its own
//! task with a deadline, at most [`MAX_CLIENTS`] at once, so a slow or hostile client never
//! holds up the capture or the other clients: the shared state is locked only to answer.

use std::{
    collections::HashMap,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use super::{
    protocol::{self, Request, Response, MAX_REQUEST_BYTES},
    Daemon,
};

/// Clients served at once; more wait for a turn (the kernel queues their connections).
pub const MAX_CLIENTS: usize = 32;
/// Clients of one user (root aside) reading their requests at once; more wait their turn, so
/// one user's stalled connections cannot take every turn from other users' hooks.
pub const MAX_CLIENTS_PER_USER: usize = 8;
/// Connections waiting or served at once; more are told to try again.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a connection waits for its turns (its user's, then the daemon's). The client waits
/// for its answer for [`SETTLE`] + 30 s.
pub const TURN_WAIT: Duration = Duration::from_secs(10);
/// How long a client has to send its request, and to read the answer.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// How long `job completed` waits before closing the job: the job's last flows close in the
/// kernel, are held 150 ms for their socket error, and are polled once a second.
pub const SETTLE: Duration = Duration::from_millis(1500);

/// Where the socket is and who may use it.
#[derive(Clone, Debug)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// The group whose members may connect besides root (`--socket-group`).
    pub group: Option<String>,
}

/// Creates the socket: its directory if missing (0755), a stale socket of an earlier run
/// replaced (anything else at the path is refused), mode 0660, group `config.group`.
pub fn bind(config: &SocketConfig) -> anyhow::Result<UnixListener> {
    let gid = match &config.group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .map_err(|e| anyhow::anyhow!("cannot look up group {name:?}: {e}"))?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no group {name:?} on this host: create it (`groupadd {name}`) and add \
                         the runner's user to it, or pass another --socket-group"
                    )
                })?
                .gid,
        ),
        None => None,
    };
    if let Some(dir) = config.path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
        // The directory and every one above it: whoever may rename one could put their own
        // directory, and socket, in its place.
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", dir.display()))?;
        // SAFETY: geteuid has no arguments and cannot fail.
        let euid = unsafe { libc::geteuid() };
        for ancestor in dir.ancestors() {
            let meta = std::fs::metadata(ancestor)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ancestor.display()))?;
            safe_socket_dir(meta.is_dir(), meta.uid(), meta.mode(), euid)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ancestor.display()))?;
        }
    }
    match std::fs::symlink_metadata(&config.path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&config.path)?,
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket: remove it or choose another --socket",
            config.path.display()
        ),
        Err(_) => {}
    }
    let listener = UnixListener::bind(&config.path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.path.display()))?;
    std::fs::set_permissions(&config.path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = gid {
        nix::unistd::chown(&config.path, None, Some(gid)).map_err(|e| {
            anyhow::anyhow!("cannot give {} to its group: {e}", config.path.display())
        })?;
    }
    Ok(listener)
}

/// Whether the socket's directory keeps others from replacing the socket: a directory owned by
/// root or by the daemon's user, that nobody else may write to (or only with the sticky bit, as
/// `/tmp`). Someone who could would answer the job hooks in the daemon's place.
fn safe_socket_dir(is_dir: bool, uid: u32, mode: u32, euid: u32) -> Result<(), String> {
    if !is_dir {
        return Err("not a directory: choose another --socket".to_owned());
    }
    if uid != 0 && uid != euid {
        return Err(format!(
            "owned by uid {uid}, who could replace the socket: make it root's (`chown root`) or \
             choose another --socket"
        ));
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "writable by others (mode {:o}), who could replace the socket: `chmod go-w` it or \
             choose another --socket",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Serves clients until the listener fails.
///
/// Each connection waits for a turn of its user (root aside, at most
/// [`MAX_CLIENTS_PER_USER`] of one user read their requests at once), then of the daemon (at
/// most [`MAX_CLIENTS`] at once), for up to [`TURN_WAIT`] in all; turns are given in order
/// of arrival, so one user's stalled connections delay other clients by at most a deadline, and
/// never another user's. At most [`MAX_CONNECTIONS`] wait or are served at once; more are told
/// to try again.
pub async fn serve(listener: UnixListener, state: Arc<Mutex<Daemon>>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let users = Arc::new(Mutex::new(HashMap::<u32, Arc<Semaphore>>::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(connection) = Arc::clone(&open).try_acquire_owned() else {
            tokio::spawn(refuse(
                stream,
                format!("{MAX_CONNECTIONS} connections are open: try again"),
            ));
            continue;
        };
        let Ok(uid) = stream.peer_cred().map(|c| c.uid()) else {
            continue;
        };
        let user = (uid != 0).then(|| user_turns(&users, uid));
        let (slots, state) = (Arc::clone(&slots), Arc::clone(&state));
        tokio::spawn(async move {
            let _connection = connection;
            let turns = tokio::time::timeout(TURN_WAIT, async {
                let user_turn = match user {
                    Some(user) => Some(user.acquire_owned().await.ok()?),
                    None => None,
                };
                let slot = slots.acquire_owned().await.ok()?;
                Some((user_turn, slot))
            })
            .await;
            let Ok(Some((user_turn, _slot))) = turns else {
                refuse(
                    stream,
                    format!(
                        "the daemon is busy (no turn within {} s): try again",
                        TURN_WAIT.as_secs()
                    ),
                )
                .await;
                return;
            };
            let _ = handle(stream, &state, user_turn).await;
        });
    }
}

/// The turns of user `uid` (a semaphore of [`MAX_CLIENTS_PER_USER`] permits). Users with no
/// connection are forgotten once many users were seen.
fn user_turns(users: &Mutex<HashMap<u32, Arc<Semaphore>>>, uid: u32) -> Arc<Semaphore> {
    let Ok(mut map) = users.lock() else {
        return Arc::new(Semaphore::new(MAX_CLIENTS_PER_USER));
    };
    if map.len() >= 4096 {
        map.retain(|_, s| s.available_permits() < MAX_CLIENTS_PER_USER);
    }
    Arc::clone(
        map.entry(uid)
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_CLIENTS_PER_USER))),
    )
}

/// Answers a refused client with one error line (within the deadline) and closes.
async fn refuse(mut stream: UnixStream, why: String) {
    let mut text = serde_json::to_string(&Response::failed(why)).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let _ = tokio::time::timeout(CLIENT_DEADLINE, stream.write_all(text.as_bytes())).await;
}

/// One client: its request within the deadline, then the answer.
/// `user_turn` is given back once the request is read (the answer may wait for the job's last
/// flows: that is no reason to keep the user's other hooks waiting).
async fn handle(
    stream: UnixStream,
    state: &Mutex<Daemon>,
    user_turn: Option<OwnedSemaphorePermit>,
) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let read = tokio::time::timeout(CLIENT_DEADLINE, async {
        let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES as u64 + 1);
        reader.read_until(b'\n', &mut line).await
    })
    .await;
    drop(user_turn);
    let response = match read {
        Err(_) => Response::failed("no request within 5 s"),
        Ok(Err(e)) => Response::failed(format!("cannot read the request: {e}")),
        Ok(Ok(_)) => match protocol::parse(trim_newline(&line)) {
            Err(e) => Response::failed(e),
            Ok(request) => answer(request, peer.pid(), state).await,
        },
    };
    let mut text = serde_json::to_string(&response).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    let _ = tokio::time::timeout(CLIENT_DEADLINE, write.write_all(text.as_bytes())).await;
    Ok(())
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

async fn answer(request: Request, pid: Option<i32>, state: &Mutex<Daemon>) -> Response {
    let Some(pid) = pid.and_then(|p| u32::try_from(p).ok()).filter(|&p| p > 0) else {
        return Response::failed("the caller's process is unknown (no SO_PEERCRED pid)");
    };
    let locked = |f: &mut dyn FnMut(&mut Daemon) -> Response| match state.lock() {
        Ok(mut daemon) => f(&mut daemon),
        Err(_) => Response::failed("the daemon's state is unusable: restart it"),
    };
    match request {
        Request::JobStarted { job, require } => {
            locked(&mut |d: &mut Daemon| d.job_started(pid, job.clone(), &require))
        }
        Request::JobCompleted { job } => {
            tokio::time::sleep(SETTLE).await;
            locked(&mut |d: &mut Daemon| d.job_completed(pid, job.clone()))
        }
        Request::Status => locked(&mut |d: &mut Daemon| {
            let mut r = Response::ok();
            r.status = Some(d.status());
            r
        }),
    }
}

/// A client: sends `request` to the daemon at `path`, returns its answer.
pub async fn request(path: &Path, request: &protocol::Envelope) -> anyhow::Result<Response> {
    let mut stream = tokio::time::timeout(CLIENT_DEADLINE, UnixStream::connect(path))
        .await
        .map_err(|_| anyhow::anyhow!("the daemon at {} did not accept within 5 s", path.display()))?
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the observer daemon at {}: {e} (is `observer daemon` running, and \
                 is this user in its --socket-group?)",
                path.display()
            )
        })?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await?;
    let mut answer = Vec::new();
    // `job completed` waits for the job's last flows before it answers.
    tokio::time::timeout(
        SETTLE + Duration::from_secs(30),
        BufReader::new(stream)
            .take(4 << 20)
            .read_until(b'\n', &mut answer),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the daemon did not answer in time"))??;
    serde_json::from_slice(trim_newline(&answer))
        .map_err(|e| anyhow::anyhow!("the daemon's answer is not understood ({e}): same versions?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_user_waits_for_a_turn_and_other_users_do_not() {
        let users = Mutex::new(HashMap::new());
        let mine = user_turns(&users, 1000);
        let held: Vec<_> = (0..MAX_CLIENTS_PER_USER)
            .map(|_| Arc::clone(&mine).try_acquire_owned().expect("a turn"))
            .collect();
        // The same user's next connection waits (it is not refused)...
        let waiting = tokio::spawn(async move { user_turns_of(mine).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "it waits for a turn");
        // ... another user's does not.
        let theirs = user_turns(&users, 1001);
        assert!(theirs.try_acquire_owned().is_ok());
        drop(held);
        assert!(
            waiting.await.expect("the waiting connection"),
            "a turn came back"
        );
    }

    async fn user_turns_of(s: Arc<Semaphore>) -> bool {
        s.acquire_owned().await.is_ok()
    }

    #[test]
    fn the_socket_directory_must_keep_others_out() {
        // /run/observer as created, and /tmp (sticky).
        assert!(safe_socket_dir(true, 0, 0o40755, 0).is_ok());
        assert!(safe_socket_dir(true, 0, 0o41777, 0).is_ok());
        // The daemon's own user's directory.
        assert!(safe_socket_dir(true, 1000, 0o40700, 1000).is_ok());
        // Another user's, a group-writable one, a file.
        let other = safe_socket_dir(true, 1000, 0o40755, 0).unwrap_err();
        assert!(other.contains("owned by uid 1000"), "{other}");
        let writable = safe_socket_dir(true, 0, 0o40775, 0).unwrap_err();
        assert!(writable.contains("chmod go-w"), "{writable}");
        assert!(safe_socket_dir(false, 0, 0o100644, 0).is_err());
    }
}
