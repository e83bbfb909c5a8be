//! Everything of a report that reaches a rule file passes here first.
//!
//! Reports travel: a fleet's reports are merged and fed to `observer suggest` on an admin's
//! machine, and the rule files it writes are run as root (the iptables/ipset script), loaded
//! into firewalls (nftables, Suricata) or pasted into configurations (squid.conf, YAML). A
//! report is therefore hostile input: a pattern with a newline in it adds a shell command, a
//! group id with a newline adds `http_access allow all`, a pattern that does not match its
//! host widens a rule to a whole cloud. So no renderer ever sees a report's text. This module
//! turns each value into a type that can only be built here, after the check its field needs:
//!
//! | field | type | rule |
//! |---|---|---|
//! | `hosts[].name`, `undeclared[].name`, `cname_chain[]` | [`Name`] | a host name as catalogs take it ([`HostPattern`]), not a wildcard |
//! | `hosts[].pattern` | [`ReportPattern`] | a host pattern that matches its host; a wildcard from it only where the catalog in effect documents it, never over a public suffix ([`WildDomain`]) |
//! | `hosts[].groups[]` | [`GroupId`] | `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, the catalog's own alphabet |
//! | process names, reason codes, times, generator | [`Text`] | printable ASCII without quotes, backslashes, `` ` `` or `$`; for comments only |
//! | addresses, ports | `IpAddr`, `u16` | typed by the report reader already |
//!
//! A value that fails its check is skipped with a warning naming its field (`hosts[3].pattern`)
//! in the output's skipped section and on stderr, never used. Then each syntax quotes what it
//! writes anyway (defence in depth): [`sh_quote`] for every data argument of the shell script,
//! [`yaml_string`] for YAML values, [`nft_string`] for nftables strings, and
//! [`one_line`] for every line and comment of every format ([`super::render::Doc`] applies it,
//! so no comment can end early and no line can become two, whatever a renderer passes).

use std::{borrow::Borrow, fmt, net::IpAddr};

use crate::catalog::HostPattern;

use super::domain;

/// A host name from a report, checked: lower-case letters, digits, `-` and `_` in labels of at
/// most 63 characters, at most 253 in all; or the text of an address (for unresolved flows).
/// Nothing in it can end a line, a string, a comment or a shell word in any format.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Checks a name (normalised: lower case, no trailing dot); the error says why not.
    pub fn parse(text: &str) -> Result<Self, String> {
        match HostPattern::parse(text) {
            Ok(p) if p.is_wildcard() => Err("a wildcard, not an observed name".to_owned()),
            Ok(p) => Ok(Self(p.as_str().to_owned())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// An address's text (`192.0.2.1`, `2001:db8::1`): digits, hex letters, dots and colons.
    pub fn of_address(address: IpAddr) -> Self {
        Self(address.to_string())
    }

    /// The name without its first label (`actions.githubusercontent.com` of
    /// `pipelines.actions.githubusercontent.com`); a suffix of a valid name is valid.
    pub fn parent(&self) -> Option<Self> {
        let (_, parent) = self.0.split_once('.')?;
        (!parent.is_empty()).then(|| Self(parent.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// The domain of a wildcard rule (`*.domain`): a valid name that is not a public suffix, so
/// the rule stays within one registrant's names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WildDomain(Name);

impl WildDomain {
    /// The domain of a wildcard pattern, unless it is a public suffix (`*.amazonaws.com`,
    /// `*.blob.core.windows.net`: anyone can create names there).
    pub fn of(pattern: &HostPattern) -> Option<Self> {
        let domain = pattern.as_str().strip_prefix("*.")?;
        let name = Name::parse(domain).ok()?;
        domain::wildcard_is_safe(name.as_str()).then_some(Self(name))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for WildDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A report's `hosts[].pattern`, checked against its host: a valid pattern that matches the
/// name. Whether it is *documented* is for the catalog in effect to say, not the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportPattern(HostPattern);

impl ReportPattern {
    /// `None` for an empty pattern (reports may leave it out); an error that says why for a
    /// text that is not a pattern of `name`.
    pub fn check(name: &Name, text: &str) -> Result<Option<Self>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        let pattern = HostPattern::parse(text).map_err(|e| format!("not a host pattern: {e}"))?;
        if !pattern.matches(name.as_str()) {
            return Err(format!("{pattern} does not match the host {name}"));
        }
        Ok(Some(Self(pattern)))
    }

    pub fn pattern(&self) -> &HostPattern {
        &self.0
    }
}

/// The longest group id kept.
const MAX_GROUP_ID: usize = 64;

/// A catalog group id from a report: a letter or digit, then letters, digits, `.`, `_` and
/// `-`, 64 characters at most (what catalog files accept). Group ids go into comments only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(String);

impl GroupId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut chars = text.chars();
        let Some(first) = chars.next() else {
            return Err("a group id cannot be empty".to_owned());
        };
        if text.len() > MAX_GROUP_ID {
            return Err(format!("a group id has at most {MAX_GROUP_ID} characters"));
        }
        if !first.is_ascii_alphanumeric()
            || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(
                "a group id starts with a letter or digit and has only letters, digits, '.', '_' \
                 and '-'"
                    .to_owned(),
            );
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for GroupId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Text from a report shown only in comments (process names, reason codes, times): made
/// printable ASCII without quotes, backslashes, backticks or `$` (a process name is whatever
/// the process chose). Never rejected: replaced characters show where something was.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(String);

impl Text {
    pub fn new(text: &str) -> Self {
        Self(clean(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// What [`Text`] keeps: printable ASCII; quotes, backslashes, backticks and `$` become `'`,
/// anything else `?`.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '`' | '$' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

/// A character that ends a line for some reader of the formats: every control character
/// (`\n`, `\r`, `\x0b`, `\x0c`, NEL U+0085 which YAML 1.1 reads as a line break), the Unicode
/// line and paragraph separators, and what [`crate::sanitize::is_unsafe`] keeps off terminals.
fn breaks_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || crate::sanitize::is_unsafe(c)
}

/// One line of a rule file or one comment line, in any of the formats' syntaxes (`#` to the
/// end of the line in shell, squid.conf, nftables, Suricata and YAML): only a line break ends
/// such a comment or starts another rule, so every character that could be one becomes `?`.
/// Tabs stay (nftables indents with them).
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c != '\t' && breaks_line(c) { '?' } else { c })
        .collect()
}

/// A word for POSIX sh: in single quotes, each `'` written `'\''`. Nothing inside single
/// quotes is special to the shell (no `$`, no backquote, no backslash), so the word is the
/// text as is, whatever it holds.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// An nftables string: `"…"`. nft has no escape inside strings, so `"`, `\` and line breaks
/// are left out (the strings are comments: names and sites, already checked).
pub fn nft_string(text: &str) -> String {
    let inner: String = text
        .chars()
        .filter(|&c| !(c == '"' || c == '\\' || breaks_line(c)))
        .collect();
    format!("\"{inner}\"")
}

/// A YAML double-quoted scalar: always a string, whatever it looks like unquoted (`null`,
/// `true`, `0x1f`, `1e3`, `~`); `"` and `\\` escaped, control characters as `\\uNNNN`.
pub fn yaml_string(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if breaks_line(c) || u32::from(c) == 0xFEFF => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEWLINE: &str = "*.evil.example\ntouch /tmp/x\n#";
    const SUBST: &str = "*.a.b$(touch${IFS}/tmp/x)";

    fn name(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    #[test]
    fn names_are_host_names_only() {
        assert_eq!(name("API.GitHub.com.").as_str(), "api.github.com");
        for bad in [
            "",
            "*.github.com",
            "evil.example\nhttp_access allow all",
            "a.b$(touch${IFS}/tmp/x)",
            "a b",
            "a\"b",
            "a'b",
            "a;b",
            "a:443",
            "https://a.b/",
            "naïve.example",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Name::of_address("2001:db8::1".parse().unwrap()).as_str(),
            "2001:db8::1"
        );
        assert_eq!(name("a.b.c").parent(), Some(name("b.c")));
        assert_eq!(name("localhost").parent(), None);
    }

    #[test]
    fn report_patterns_must_be_patterns_of_their_host() {
        let host = name("x.evil.example");
        for bad in [NEWLINE, SUBST, "*.evil.example;x", "*"] {
            let why = ReportPattern::check(&host, bad).unwrap_err();
            assert!(why.starts_with("not a host pattern"), "{bad:?}: {why}");
        }
        let why = ReportPattern::check(&name("harmless.example"), "*.amazonaws.com").unwrap_err();
        assert!(
            why.contains("does not match the host harmless.example"),
            "{why}"
        );
        let why = ReportPattern::check(&host, "other.example").unwrap_err();
        assert!(why.contains("does not match"), "{why}");
        assert_eq!(ReportPattern::check(&host, ""), Ok(None));
        let ok = ReportPattern::check(&host, "*.evil.example")
            .unwrap()
            .unwrap();
        assert_eq!(ok.pattern().as_str(), "*.evil.example");
        assert!(ReportPattern::check(&host, "x.evil.example")
            .unwrap()
            .is_some());
    }

    #[test]
    fn wildcards_never_span_a_public_suffix() {
        let wild = |p: &str| WildDomain::of(&HostPattern::parse(p).unwrap());
        assert_eq!(
            wild("*.actions.githubusercontent.com").map(|d| d.to_string()),
            Some("actions.githubusercontent.com".to_owned())
        );
        for suffix in [
            "*.s3.amazonaws.com",
            "*.com",
            "*.co.uk",
            "*.blob.core.windows.net",
        ] {
            assert_eq!(wild(suffix), None, "{suffix}");
        }
        assert_eq!(wild("api.github.com"), None);
    }

    #[test]
    fn group_ids_have_a_fixed_alphabet() {
        for good in [
            "essential",
            "artifacts-caches-logs",
            "meta.actions_inbound",
            "Lfs2",
        ] {
            assert_eq!(GroupId::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "essential\nhttp_access allow all",
            "x y",
            "-x",
            ".x",
            "a\"b",
            "a#b",
            &"x".repeat(65),
        ] {
            assert!(GroupId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_cannot_break_out_of_a_comment_or_a_string() {
        assert_eq!(Text::new("curl").as_str(), "curl");
        assert_eq!(
            Text::new("evil\nhttp_access allow all").as_str(),
            "evil?http_access allow all"
        );
        assert_eq!(Text::new("a\"b\\c`$(x)").as_str(), "a'b'c''(x)");
        assert_eq!(Text::new("naïve").as_str(), "na?ve");
    }

    #[test]
    fn comment_lines_stay_one_line() {
        for text in [
            "a\nb",
            "a\rb",
            "a\u{b}b",
            "a\u{c}b",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{2029}b",
            "a\u{1b}b",
        ] {
            let line = one_line(text);
            assert_eq!(line, "a?b", "{text:?}");
        }
        assert_eq!(one_line("say \"hi\" # x"), "say \"hi\" # x");
        assert_eq!(one_line("\tset a {\n"), "\tset a {?");
    }

    #[test]
    fn shell_words_are_single_quoted() {
        assert_eq!(sh_quote("runner_github_com_v4"), "'runner_github_com_v4'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(touch${IFS}/tmp/x)"), "'$(touch${IFS}/tmp/x)'");
        // What sh reads back is the text itself.
        for text in ["a b", "it's", "$(touch /tmp/x)", "`x`", "a\nb", "\\", "''"] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", sh_quote(text))])
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), text, "{text:?}");
        }
    }

    #[test]
    fn nft_strings_cannot_end_early() {
        assert_eq!(nft_string("github.com"), "\"github.com\"");
        assert_eq!(nft_string("a\"; accept\n#\\"), "\"a; accept#\"");
    }

    #[test]
    fn yaml_strings_stay_strings() {
        assert_eq!(yaml_string("api.github.com"), "\"api.github.com\"");
        assert_eq!(yaml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        for text in [
            "null", "true", "0x1f", "1e3", "~", "yes", "a: b", "#x", "\"q\"", "\u{85}", "\u{2028}",
        ] {
            let parsed: String = serde_norway::from_str(&yaml_string(text)).unwrap();
            assert_eq!(parsed, text);
        }
    }
}
