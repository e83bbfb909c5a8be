//! Result of one `curl -w '%{json}'` run.

use std::net::IpAddr;
use std::process::Output;

use serde_json::Value;

/// Outcome of [`Lab::curl`](crate::Lab::curl): curl's exit code plus the
/// transfer fields of its `-w '%{json}'` output.
///
/// Numeric fields are 0 and optional ones `None` when curl did not report
/// them (e.g. when it failed before connecting).
#[derive(Debug, Clone)]
pub struct CurlResult {
    /// curl's exit code (0 = success, 6 = could not resolve host, 7 = could
    /// not connect, 28 = timeout, 60 = certificate problem, ...); -1 if curl
    /// was killed by a signal.
    pub exit_code: i32,
    /// HTTP status of the last response (0 if none).
    pub http_code: u16,
    /// Body bytes downloaded.
    pub size_download: u64,
    /// Body bytes uploaded.
    pub size_upload: u64,
    /// Bytes of response headers.
    pub size_header: u64,
    /// Bytes of the request (headers) sent.
    pub size_request: u64,
    /// Address of the last connection, if any.
    pub remote_ip: Option<IpAddr>,
    /// Port of the last connection (0 if none).
    pub remote_port: u16,
    /// curl's error message, if any.
    pub errormsg: Option<String>,
    /// The whole `%{json}` object (e.g. `json["time_total"]`); `Null` if
    /// curl printed no valid JSON.
    pub json: Value,
    /// curl's stderr (with `-sS`: only error messages).
    pub stderr: String,
    /// The command line that was run (for messages).
    pub command: String,
}

impl CurlResult {
    pub(crate) fn from_output(command: String, out: &Output) -> Self {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        let num = |k: &str| json.get(k).and_then(Value::as_u64).unwrap_or(0);
        let text = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        CurlResult {
            exit_code: out.status.code().unwrap_or(-1),
            http_code: u16::try_from(num("http_code")).unwrap_or(0),
            size_download: num("size_download"),
            size_upload: num("size_upload"),
            size_header: num("size_header"),
            size_request: num("size_request"),
            remote_ip: text("remote_ip").and_then(|s| s.parse().ok()),
            remote_port: u16::try_from(num("remote_port")).unwrap_or(0),
            errormsg: text("errormsg"),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            json,
            command,
        }
    }

    /// True if curl exited with 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// Panics with the command, exit code, error and stderr unless curl
    /// succeeded and the HTTP status is `http_code`.
    #[track_caller]
    pub fn expect_status(&self, http_code: u16) -> &Self {
        if !self.success() || self.http_code != http_code {
            panic!(
                "curl: expected exit 0 and HTTP {http_code}, got exit {} and HTTP {} \
                 (errormsg: {:?}, stderr: {:?}) from `{}`",
                self.exit_code,
                self.http_code,
                self.errormsg,
                self.stderr.trim(),
                self.command
            );
        }
        self
    }
}

/// Parses `curl --version` output into (major, minor).
pub(crate) fn parse_version(version_output: &str) -> Option<(u32, u32)> {
    let v = version_output.split_whitespace().nth(1)?;
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn parses_json_fields() {
        let out = Output {
            status: ExitStatus::from_raw(0),
            stdout: br#"{"http_code":200,"size_download":100000,"size_upload":0,
                "size_header":120,"size_request":80,"remote_ip":"198.18.1.10",
                "remote_port":443,"errormsg":null,"time_total":0.01}"#
                .to_vec(),
            stderr: Vec::new(),
        };
        let r = CurlResult::from_output("curl".into(), &out);
        assert!(r.success());
        assert_eq!(r.http_code, 200);
        assert_eq!(r.size_download, 100_000);
        assert_eq!(r.remote_ip, Some("198.18.1.10".parse().unwrap()));
        assert_eq!(r.remote_port, 443);
        assert_eq!(r.errormsg, None);
        r.expect_status(200);
    }

    #[test]
    fn handles_failure_without_json() {
        let out = Output {
            status: ExitStatus::from_raw(6 << 8),
            stdout: Vec::new(),
            stderr: b"curl: (6) Could not resolve host: x".to_vec(),
        };
        let r = CurlResult::from_output("curl".into(), &out);
        assert_eq!(r.exit_code, 6);
        assert_eq!(r.http_code, 0);
        assert_eq!(r.remote_ip, None);
        assert!(r.json.is_null());
    }

    #[test]
    fn version() {
        assert_eq!(
            parse_version("curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1"),
            Some((7, 88))
        );
        assert_eq!(parse_version("garbage"), None);
    }
}
