//! Containers a job starts: `container:` jobs, service containers and Docker actions run in
//! containers the runner creates with `docker create|run --label <instance label>`, whose
//! processes descend from the container runtime, not from the job's `Runner.Worker`. The
//! runner's instance label is the first six hex digits of the SHA-256 of its `.runner` file
//! (read as text, lowercased): one label per runner instance, and a runner instance runs one
//! job at a time. So a container that carries the label of a followed job's runner, and was
//! created while that job ran, is that job's.
//!
//! The capture names each flow's cgroup; a cgroup path that names a container
//! ([`crate::capture::cgroups`]) is looked up once in the Docker Engine API over its Unix socket
//! (`GET /containers/<id>/json`: its labels, name and creation time). Anyone who may use the
//! Docker socket may set any label: attribution is as trustworthy as that socket's access.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Where the Docker Engine API listens by default.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The largest `.runner` file read (the runner writes a few hundred bytes).
const MAX_RUNNER_FILE: u64 = 64 * 1024;
/// The largest inspect answer read (a container's with many mounts and labels is tens of KiB).
const MAX_INSPECT_BYTES: usize = 1 << 20;
/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Instance-label-shaped keys kept per container (six lowercase hex digits; other labels, an
/// image's say, are not kept, so no number of them can push the runner's out).
const MAX_LABELS: usize = 64;

/// The runner's instance label for the contents of its `.runner` file, as the runner computes
/// it: the text (a UTF-8 byte-order mark dropped, as .NET's `File.ReadAllText` does),
/// lowercased, hashed with SHA-256, the first six lowercase hex digits.
pub fn instance_label(runner_file: &[u8]) -> String {
    let bytes = runner_file
        .strip_prefix(&[0xef, 0xbb, 0xbf])
        .unwrap_or(runner_file);
    let text = String::from_utf8_lossy(bytes).to_lowercase();
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// The instance label of the runner whose `Runner.Worker` is `worker_pid`: its `.runner` file
/// read from the runner directory of the worker's executable, through the worker's own root.
pub fn runner_label(proc_root: &Path, worker_pid: u32) -> Result<String, String> {
    let pid_dir = proc_root.join(worker_pid.to_string());
    let dir = crate::proxy::discover::runner_dir_of(&pid_dir).ok_or_else(|| {
        "the runner directory of its Runner.Worker was not found (its executable is not in a \
         runner's bin directory)"
            .to_owned()
    })?;
    let path = pid_dir
        .join("root")
        .join(dir.strip_prefix("/").unwrap_or(&dir))
        .join(".runner");
    match crate::proxy::discover::read_regular(&path, MAX_RUNNER_FILE, false)? {
        Some((bytes, false)) => Ok(instance_label(&bytes)),
        Some((_, true)) => Err(format!(
            "{}/.runner is larger than {MAX_RUNNER_FILE} bytes",
            dir.display()
        )),
        None => Err(format!("{}/.runner does not exist", dir.display())),
    }
}

/// What the Docker Engine API says of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Its full id (64 hex digits).
    pub id: String,
    /// Its name, without Docker's leading `/` (validated: printable, at most 128 bytes).
    pub name: Option<String>,
    /// Its image as asked for (validated like the name).
    pub image: Option<String>,
    /// Its label keys shaped like a runner's instance label (six lowercase hex digits).
    pub labels: Vec<String>,
    /// When it was created, nanoseconds since the epoch.
    pub created_ns: Option<u64>,
    /// Its first process, while it runs (`State.Pid`): where its cgroup is checked.
    pub pid: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectBody {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<InspectConfig>,
    #[serde(default)]
    state: Option<InspectState>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectState {
    #[serde(default)]
    pid: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// A value shown in reports and terminals: printable ASCII without spaces or quotes, at most
/// 128 bytes; anything else is dropped.
fn shown(value: &str) -> Option<String> {
    (!value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'`')))
    .then(|| value.to_owned())
}

/// Reads an inspect answer (`GET /containers/<id>/json`).
pub fn parse_inspect(body: &[u8]) -> Result<Inspected, String> {
    let body: InspectBody =
        serde_json::from_slice(body).map_err(|e| format!("not a container's inspect: {e}"))?;
    if body.id.len() != 64
        || !body
            .id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err("the container's id is not 64 hex digits".to_owned());
    }
    let config = body.config.unwrap_or(InspectConfig {
        image: None,
        labels: None,
    });
    let created_ns = body.created.as_deref().and_then(|c| {
        time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339)
            .ok()
            .and_then(|t| u64::try_from(t.unix_timestamp_nanos()).ok())
            // Docker's zero time (`0001-01-01T00:00:00Z`) says nothing.
            .filter(|&ns| ns > 0)
    });
    Ok(Inspected {
        id: body.id,
        name: body
            .name
            .as_deref()
            .and_then(|n| shown(n.strip_prefix('/').unwrap_or(n))),
        image: config.image.as_deref().and_then(shown),
        labels: config
            .labels
            .unwrap_or_default()
            .into_keys()
            .filter(|k| k.len() == 6 && k.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .take(MAX_LABELS)
            .collect(),
        created_ns,
        pid: body
            .state
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0),
    })
}

/// The Docker Engine API on its Unix socket.
#[derive(Debug, Clone)]
pub struct DockerApi {
    socket: PathBuf,
}

impl DockerApi {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// Inspects the container `id` (64 hex digits, checked by the caller's cgroup parsing and
    /// again here).
    pub async fn inspect(&self, id: &str) -> Result<Inspected, String> {
        if id.len() != 64 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("not a container id".to_owned());
        }
        let ask = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.socket.display()))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("HTTP handshake with {}: {e}", self.socket.display()))?;
            let driver = tokio::spawn(connection);
            let request = hyper::Request::get(format!("/containers/{id}/json"))
                .header(hyper::header::HOST, "docker")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("asking {}: {e}", self.socket.display()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_INSPECT_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer of {}: {e}", self.socket.display()))?
                .to_bytes();
            driver.abort();
            if status == hyper::StatusCode::NOT_FOUND {
                return Err(format!("no container {} in this Docker", &id[..12]));
            }
            if !status.is_success() {
                return Err(format!(
                    "{} answered {status} for container {}",
                    self.socket.display(),
                    &id[..12]
                ));
            }
            parse_inspect(&body)
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, ask)
            .await
            .map_err(|_| format!("{} did not answer within 3 s", self.socket.display()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_label_is_the_runners() {
        // `printf %s {"agentid": 1} | sha256sum`, first six digits.
        assert_eq!(instance_label(b"{\"agentId\": 1}"), "d9642a");
        // The byte-order mark .NET writes is not hashed; case is not either.
        assert_eq!(
            instance_label(b"\xef\xbb\xbf{\"AGENTID\": 1}"),
            instance_label(b"{\"agentId\": 1}")
        );
        assert_eq!(instance_label(b"").len(), 6);
    }

    #[test]
    fn an_inspect_answer_gives_labels_name_image_and_creation() {
        let id = "a".repeat(64);
        let body = format!(
            r#"{{"Id":"{id}","Name":"/a1b2_redis_c3","Created":"2026-12-01T06:00:00.5Z",
                "Config":{{"Image":"redis:7","Labels":{{"3d8b22":"","com.example":"x"}}}},
                "State":{{"Pid":4242}}}}"#
        );
        let i = parse_inspect(body.as_bytes()).expect("parsed");
        assert_eq!(i.id, id);
        assert_eq!(i.name.as_deref(), Some("a1b2_redis_c3"));
        assert_eq!(i.image.as_deref(), Some("redis:7"));
        assert_eq!(
            i.labels,
            vec!["3d8b22".to_owned()],
            "label-shaped keys only"
        );
        assert_eq!(i.created_ns, Some(1_796_104_800_500_000_000));
        assert_eq!(i.pid, Some(4242));
    }

    #[test]
    fn hostile_inspect_answers_are_refused_or_cleaned() {
        assert!(parse_inspect(b"not json").is_err());
        assert!(parse_inspect(br#"{"Id":"../../etc"}"#).is_err());
        let id = "b".repeat(64);
        let body = format!(
            r#"{{"Id":"{id}","Name":"/x\u001b[2J; rm -rf /","Config":{{"Image":"{}","Labels":null}}}}"#,
            "i".repeat(200)
        );
        let i = parse_inspect(body.as_bytes()).expect("parsed");
        assert_eq!((i.name, i.image, i.labels.len()), (None, None, 0));
        assert_eq!((i.created_ns, i.pid), (None, None));
        // An image's hundreds of labels cannot push the runner's out; zero time and a stopped
        // container's pid 0 say nothing.
        let many: Vec<String> = (0..300).map(|n| format!("\"a{n:03}\":\"\"")).collect();
        let body = format!(
            r#"{{"Id":"{id}","Created":"0001-01-01T00:00:00Z","State":{{"Pid":0}},
                "Config":{{"Labels":{{{},"d9642a":""}}}}}}"#,
            many.join(",")
        );
        let i = parse_inspect(body.as_bytes()).expect("parsed");
        assert_eq!(i.labels, vec!["d9642a".to_owned()]);
        assert_eq!((i.created_ns, i.pid), (None, None));
    }
}
