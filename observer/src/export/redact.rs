//! Defensive redaction of credentials in the few free-text fields a report carries.
//!
//! The observer records only a process's `comm` (the kernel's 16-byte task name) and socket
//! error names, never command lines, environment variables or payloads beyond DNS names. A task
//! name can still be set by a program to anything, so before a report is written the text that
//! comes from processes is passed through [`redact`], which replaces whatever looks like a
//! credential with `[redacted]`:
//!
//! - GitHub tokens: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and `github_pat_` followed by their
//!   characters (even cut short, as a 16-byte name cuts them);
//! - `KEY=VALUE` and `KEY: VALUE` where the key ends with `token`, `secret`, `password`,
//!   `passwd`, `pwd`, `apikey`, `api_key`, `api-key`, `auth` or `credentials` (so
//!   `GITHUB_TOKEN=…`, `access_token=…`, `x-auth: …`): the value is replaced, the key kept;
//! - `Authorization` and everything after it on its line; `Bearer` and the word after it;
//! - user information in URLs: `https://user:password@host` becomes `https://[redacted]@host`.
//!
//! DNS names are not redacted: they are what the report is about.

use std::borrow::Cow;

/// What replaces a credential.
pub const REDACTED: &str = "[redacted]";

/// Prefixes of GitHub's token formats.
const GITHUB_TOKEN_PREFIXES: [&str; 6] = ["github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"];

/// Key suffixes that mark the value after `=` or `:` as a secret.
const SECRET_KEYS: [&str; 11] = [
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "credentials",
    "credential",
];

/// `text` with anything that looks like a credential replaced by [`REDACTED`]; borrowed when
/// nothing was found.
pub fn redact(text: &str) -> Cow<'_, str> {
    // ASCII lower case keeps every byte offset of `text`.
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::new();
    // `text[copied..]` is not yet in `out`.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Every pattern starts with an ASCII byte.
        if !bytes[i].is_ascii() {
            i += 1;
            continue;
        }
        if let Some((start, end)) = secret_at(&lower, i) {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    if copied == 0 && out.is_empty() {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The byte range of a secret that a pattern starting at `i` reveals, if any. Every range starts
/// and ends at an ASCII byte or the end of the text, so it is a valid `str` range.
fn secret_at(lower: &str, i: usize) -> Option<(usize, usize)> {
    let bytes = lower.as_bytes();
    let rest = &lower[i..];
    let at_word_start = i == 0 || !is_word_byte(bytes[i - 1]);
    if at_word_start {
        if let Some(prefix) = GITHUB_TOKEN_PREFIXES.iter().find(|p| rest.starts_with(**p)) {
            let end = i + prefix.len() + run(&rest[prefix.len()..], is_word_byte);
            return Some((i, end));
        }
        if rest.starts_with("authorization") {
            let start = skip_separators(lower, i + "authorization".len());
            let end = lower[start..]
                .find(['\n', '\r'])
                .map_or(lower.len(), |n| start + n);
            return (end > start).then_some((start, end));
        }
        if rest.starts_with("bearer") && rest[6..].starts_with([' ', '\t']) {
            let start = i + 6 + run(&rest[6..], |b| b == b' ' || b == b'\t');
            let end = start + run(&lower[start..], |b| !b.is_ascii_whitespace());
            return (end > start).then_some((start, end));
        }
    }
    if rest.starts_with("://") {
        // `scheme://user:password@host`: the user information ends at the `@` before the path.
        let after = i + 3;
        let authority_end = lower[after..]
            .find(|c: char| c == '/' || c.is_whitespace())
            .map_or(lower.len(), |n| after + n);
        let userinfo = &lower[after..authority_end];
        if let Some(at) = userinfo.rfind('@') {
            if userinfo[..at].contains(':') {
                return Some((after, after + at));
            }
        }
        return None;
    }
    if bytes[i] == b'=' || bytes[i] == b':' {
        let key_start = lower[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |n| n + 1);
        let key = &lower[key_start..i];
        if !key.is_empty() && SECRET_KEYS.iter().any(|k| key.ends_with(k)) {
            let start = i + 1 + run(&lower[i + 1..], |b| b == b' ' || b == b'\t');
            let end = start
                + run(&lower[start..], |b| {
                    !(b.is_ascii_whitespace() || matches!(b, b'&' | b';' | b',' | b'"' | b'\''))
                });
            return (end > start).then_some((start, end));
        }
    }
    None
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Length of the leading run of bytes of `s` that satisfy `keep`.
fn run(s: &str, keep: impl Fn(u8) -> bool) -> usize {
    s.bytes().take_while(|&b| keep(b)).count()
}

/// The offset after `:`, `=` and blanks from `from`.
fn skip_separators(s: &str, from: usize) -> usize {
    from + run(&s[from..], |b| matches!(b, b':' | b'=' | b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_task_names_are_untouched_and_borrowed() {
        for name in [
            "curl",
            "Runner.Worker",
            "git-remote-http",
            "node",
            "tokenizer",
            "auth-server",
            "host:443",
            "https://github.com/a",
            "",
        ] {
            assert!(
                matches!(redact(name), Cow::Borrowed(n) if n == name),
                "{name}"
            );
        }
    }

    #[test]
    fn github_tokens_are_redacted_even_cut_short() {
        assert_eq!(redact("ghp_abc123XYZ"), "[redacted]");
        assert_eq!(redact("x ghs_ABCdef_12 y"), "x [redacted] y");
        assert_eq!(redact("github_pat_11AB_cd"), "[redacted]");
        assert_eq!(redact("GHO_x"), "[redacted]");
        assert_eq!(redact("ghr_"), "[redacted]");
        // Inside a word it is not a token prefix.
        assert_eq!(redact("aghp_x"), "aghp_x");
    }

    #[test]
    fn secret_values_lose_their_value_and_keep_their_key() {
        assert_eq!(redact("token=abc&x=1"), "token=[redacted]&x=1");
        assert_eq!(
            redact("GITHUB_TOKEN=s3cr3t run"),
            "GITHUB_TOKEN=[redacted] run"
        );
        assert_eq!(redact("access_token: abc"), "access_token: [redacted]");
        assert_eq!(redact("password=hunter2"), "password=[redacted]");
        assert_eq!(redact("x-api-key:k1,k2"), "x-api-key:[redacted],k2");
        assert_eq!(redact("token="), "token=");
    }

    #[test]
    fn authorization_headers_and_bearer_tokens_are_redacted() {
        assert_eq!(
            redact("Authorization: Bearer abc.def"),
            "Authorization: [redacted]"
        );
        assert_eq!(
            redact("authorization=Basic dXNlcg=="),
            "authorization=[redacted]"
        );
        assert_eq!(redact("bearer xyz rest"), "bearer [redacted] rest");
        assert_eq!(redact("Authorization"), "Authorization");
    }

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact("https://user:pw@github.com/x"),
            "https://[redacted]@github.com/x"
        );
        assert_eq!(
            redact("git clone https://x-access-token:ghs_abc@github.com/o/r"),
            "git clone https://[redacted]@github.com/o/r"
        );
        assert_eq!(
            redact("https://user@github.com/"),
            "https://user@github.com/"
        );
    }

    #[test]
    fn multibyte_text_is_kept_intact() {
        assert_eq!(redact("é token=ü ghp_é"), "é token=[redacted] [redacted]é");
    }
}
