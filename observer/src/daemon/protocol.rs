//! The control socket's protocol (docs/daemon.md): one JSON request per connection, one line,
//! at most [`MAX_REQUEST_BYTES`], versioned (`"v": 1`), answered by one JSON line. Every field is
//! validated before use: the socket is open to a group of local users, and a job's identity comes
//! from environment variables anyone can set.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The largest request read; a longer one is refused.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// The longest value of an identity field.
pub const MAX_FIELD: usize = 256;
/// The most groups a `--require` may name.
pub const MAX_REQUIRED: usize = 32;

/// A request, as sent: `{"v":1,"op":"job_started","job":{...},"require":["essential"]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// From the job-started hook: follow the caller's `Runner.Worker` and its descendants;
    /// answer whether the `require`d groups are blocked now.
    JobStarted {
        job: JobIdentity,
        #[serde(default)]
        require: Vec<String>,
    },
    /// From the job-completed hook: stop following the job, write its report, answer its
    /// summary.
    JobCompleted { job: JobIdentity },
    /// The daemon's state: capture health, jobs followed.
    Status,
}

/// The job's identity, from the `GITHUB_*` and `RUNNER_NAME` variables the runner gives its
/// hooks. Shown in reports and summaries only; the job's processes are found from the caller's
/// own process (its credentials on the socket), never from these fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_attempt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_name: Option<String>,
}

impl JobIdentity {
    /// From the hook's environment.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        Self {
            repository: get("GITHUB_REPOSITORY"),
            run_id: get("GITHUB_RUN_ID"),
            run_attempt: get("GITHUB_RUN_ATTEMPT"),
            job: get("GITHUB_JOB"),
            workflow: get("GITHUB_WORKFLOW"),
            runner_name: get("RUNNER_NAME"),
        }
    }

    /// Every field printable and bounded.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("repository", &self.repository),
            ("run_id", &self.run_id),
            ("run_attempt", &self.run_attempt),
            ("job", &self.job),
            ("workflow", &self.workflow),
            ("runner_name", &self.runner_name),
        ] {
            if let Some(v) = value {
                if v.chars().count() > MAX_FIELD {
                    return Err(format!("job.{name} is longer than {MAX_FIELD} characters"));
                }
                if v.chars().any(|c| c.is_control() || invisible(c)) {
                    return Err(format!(
                        "job.{name} holds control or invisible formatting characters"
                    ));
                }
            }
        }
        Ok(())
    }

    /// `owner/repo run 123 attempt 1 job build`, for one-line messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.repository {
            parts.push(r.clone());
        }
        if let Some(r) = &self.run_id {
            parts.push(format!("run {r}"));
        }
        if let Some(a) = &self.run_attempt {
            parts.push(format!("attempt {a}"));
        }
        if let Some(j) = &self.job {
            parts.push(format!("job {j}"));
        }
        if parts.is_empty() {
            "job".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

/// Unicode formatting characters that change how text reads without showing: bidirectional
/// overrides and isolates, zero-width characters, the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}')
}

/// A group id as `--require` names it: the catalog's id syntax.
pub fn valid_group(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses and checks one request line.
pub fn parse(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
    }
    let envelope: Envelope =
        serde_json::from_slice(line).map_err(|e| format!("not a request: {e}"))?;
    if envelope.v != VERSION {
        return Err(format!(
            "protocol version {} is not spoken here (this daemon speaks {VERSION}): use the \
             observer binary of the same version as the daemon",
            envelope.v
        ));
    }
    match &envelope.request {
        Request::JobStarted { job, require } => {
            job.validate()?;
            if require.len() > MAX_REQUIRED {
                return Err(format!("more than {MAX_REQUIRED} required groups"));
            }
            if let Some(bad) = require.iter().find(|g| !valid_group(g)) {
                return Err(format!(
                    "{:?} is not a group id",
                    bad.chars().take(64).collect::<String>()
                ));
            }
        }
        Request::JobCompleted { job } => job.validate()?,
        Request::Status => {}
    }
    Ok(envelope.request)
}

/// The answer to a request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    /// Why the request failed (`ok: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `job_started`: required groups blocked now, each `group: reason` (the gate fails when not
    /// empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<String>,
    /// `job_completed`: where the job's report was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// `job_completed`: the Markdown summary for `$GITHUB_STEP_SUMMARY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// `job_completed`: what the job's report found, for `--fail-on`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<Findings>,
    /// `status`: free-form state (capture health, jobs followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl Response {
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            v: VERSION,
            ok: false,
            error: Some(error.into()),
            ..Self::default()
        }
    }

    pub fn ok() -> Self {
        Self {
            v: VERSION,
            ok: true,
            ..Self::default()
        }
    }
}

/// What a job's report found, as `--fail-on` weighs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    /// A documented host the job reached for was blocked.
    pub blocked: bool,
    /// The job reached destinations the catalog does not document.
    pub undeclared: bool,
    /// A transfer of the job was below the minimum rate.
    pub slow: bool,
}

impl Findings {
    /// `blocked, undeclared`, or `ok`.
    pub fn describe(&self) -> String {
        let words: Vec<&str> = [
            (self.blocked, "blocked"),
            (self.undeclared, "undeclared"),
            (self.slow, "slow"),
        ]
        .into_iter()
        .filter_map(|(on, w)| on.then_some(w))
        .collect();
        if words.is_empty() {
            "ok".to_owned()
        } else {
            words.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_versioned_validated_and_bounded() {
        let ok = br#"{"v":1,"op":"job_started","job":{"repository":"o/r","run_id":"7"},"require":["essential"]}"#;
        assert!(matches!(parse(ok), Ok(Request::JobStarted { .. })));
        assert!(matches!(
            parse(br#"{"v":1,"op":"status"}"#),
            Ok(Request::Status)
        ));
        for (bad, why) in [
            (&br#"{"v":2,"op":"status"}"#[..], "version"),
            (br#"{"v":1,"op":"reboot"}"#, "not a request"),
            (br#"{"op":"status"}"#, "not a request"),
            (b"\xff\xfe", "not a request"),
            (
                br#"{"v":1,"op":"job_completed","job":{"job":"a\u001b[2Jb"}}"#,
                "control or invisible",
            ),
            (
                br#"{"v":1,"op":"job_started","job":{},"require":["essential; rm -rf /"]}"#,
                "not a group id",
            ),
            (
                "{\"v\":1,\"op\":\"job_completed\",\"job\":{\"job\":\"a\u{202E}b\"}}".as_bytes(),
                "invisible",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let long = format!(
            r#"{{"v":1,"op":"job_completed","job":{{"job":"{}"}}}}"#,
            "x".repeat(300)
        );
        assert!(parse(long.as_bytes())
            .unwrap_err()
            .contains("longer than 256"));
        let huge = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(parse(&huge).unwrap_err().contains("longer than"));
    }

    #[test]
    fn identity_comes_from_the_hook_environment() {
        let id = JobIdentity::from_env(|k| match k {
            "GITHUB_REPOSITORY" => Some("octo/app".into()),
            "GITHUB_RUN_ID" => Some("42".into()),
            "GITHUB_JOB" => Some("build".into()),
            "RUNNER_NAME" => Some(String::new()),
            _ => None,
        });
        assert_eq!(id.runner_name, None);
        assert_eq!(id.describe(), "octo/app run 42 job build");
    }
}
