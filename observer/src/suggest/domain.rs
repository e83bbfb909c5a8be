//! Name shapes for rules: where a name belongs on the public suffix list, which wildcards are
//! safe, and the generalisation of rotating names (`productionresultssa12` → `productionresultssa*`).
//!
//! The public suffix list (both its ICANN and its private section) is compiled into the program
//! by the `psl` crate.

use std::fmt;

use psl::Type;

use super::safe::Name;

/// Where a name belongs, for grouping rules: its registrable domain (`api.github.com` →
/// `github.com`), or, under a suffix of the list's private section, that suffix
/// (`objects.githubusercontent.com` → `githubusercontent.com`): the names below such a suffix
/// belong to different sites, but an admin reads them as one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub key: String,
    /// `key` is a public suffix (private section): every name under it may have another owner.
    pub shared_suffix: bool,
}

/// The site of a name (see [`Site`]).
pub fn site(name: &str) -> Site {
    if let Some(suffix) = psl::suffix(name.as_bytes()) {
        if suffix.typ() == Some(Type::Private) {
            if let Ok(key) = std::str::from_utf8(suffix.trim().as_bytes()) {
                return Site {
                    key: key.to_owned(),
                    shared_suffix: true,
                };
            }
        }
    }
    Site {
        key: psl::domain_str(name).unwrap_or(name).to_owned(),
        shared_suffix: false,
    }
}

/// Whether `domain` is itself a public suffix (`com`, `co.uk`, `githubusercontent.com`,
/// `blob.core.windows.net`), or a bare top-level label: names under it are registered by
/// anyone, so `*.domain` would allow the whole world's names under it.
pub fn is_public_suffix(domain: &str) -> bool {
    match psl::suffix(domain.as_bytes()) {
        Some(suffix) => suffix.trim().as_bytes() == domain.as_bytes(),
        None => true,
    }
}

/// Whether the wildcard `*.domain` stays within one registrant's names.
pub fn wildcard_is_safe(domain: &str) -> bool {
    !is_public_suffix(domain)
}

/// One piece of a rotating label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Text(String),
    /// A run of one or more digits that varies between names.
    Digits,
}

/// Names that differ only in the numbers of their first label, under one parent domain:
/// `pipelinesghubeus5.actions.githubusercontent.com` and
/// `pipelinesghubeus12.actions.githubusercontent.com` are both
/// `pipelinesghubeus<N>.actions.githubusercontent.com`.
///
/// Built only from a checked [`Name`], so its parts and parent are safe in every syntax.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rotating {
    parts: Vec<Part>,
    /// The domain under the varying label (`actions.githubusercontent.com`).
    parent: Name,
}

/// The shortest fixed text a rotating label must start with: `sa*` would be far too wide.
const MIN_FIXED_PREFIX: usize = 3;

impl Rotating {
    /// The rotating shape of `name`, when its first label has a number in it and starts with
    /// at least three fixed characters, and it has a parent of two labels or more.
    pub fn of(name: &Name) -> Option<Self> {
        let (label, _) = name.as_str().split_once('.')?;
        let parent = name.parent()?;
        if !parent.as_str().contains('.') {
            return None;
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut text = String::new();
        for c in label.chars() {
            if c.is_ascii_digit() {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                if parts.last() != Some(&Part::Digits) {
                    parts.push(Part::Digits);
                }
            } else {
                text.push(c);
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        let prefix_ok = matches!(parts.first(), Some(Part::Text(t))
            if t.len() >= MIN_FIXED_PREFIX && t.chars().any(|c| c.is_ascii_alphabetic()));
        (prefix_ok && parts.contains(&Part::Digits)).then_some(Self { parts, parent })
    }

    /// The domain under the varying label (`actions.githubusercontent.com`).
    pub fn parent(&self) -> &Name {
        &self.parent
    }

    /// Whether `name` has this shape.
    pub fn matches(&self, name: &Name) -> bool {
        Self::of(name).is_some_and(|r| &r == self)
    }

    /// The shape with `*` for each number: `productionresultssa*.blob.core.windows.net` (as
    /// Cilium's `matchPattern` reads it: `*` within one label).
    pub fn glob(&self) -> String {
        self.render("*", false)
    }

    /// A regular expression for the whole name, numbers as `[0-9]+`:
    /// `^productionresultssa[0-9]+\.blob\.core\.windows\.net$`.
    pub fn regex(&self) -> String {
        format!("^{}$", self.render("[0-9]+", true))
    }

    /// The shape for people: `productionresultssa<N>.blob.core.windows.net`.
    pub fn human(&self) -> String {
        self.render("<N>", false)
    }

    fn render(&self, digits: &str, escape: bool) -> String {
        let esc = |s: &str| {
            if escape {
                s.replace('.', "\\.")
            } else {
                s.to_owned()
            }
        };
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(&esc(t)),
                Part::Digits => out.push_str(digits),
            }
        }
        out.push_str(&esc("."));
        out.push_str(&esc(self.parent.as_str()));
        out
    }
}

impl fmt::Display for Rotating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.glob())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_follow_the_public_suffix_list() {
        let s = |n: &str| {
            let s = site(n);
            (s.key, s.shared_suffix)
        };
        assert_eq!(s("api.github.com"), ("github.com".into(), false));
        assert_eq!(s("github.com"), ("github.com".into(), false));
        assert_eq!(s("ghcr.io"), ("ghcr.io".into(), false));
        assert_eq!(
            s("pipelines.actions.githubusercontent.com"),
            ("githubusercontent.com".into(), true)
        );
        assert_eq!(
            s("productionresultssa3.blob.core.windows.net"),
            ("blob.core.windows.net".into(), true)
        );
        assert_eq!(
            s("github-cloud.s3.amazonaws.com"),
            ("s3.amazonaws.com".into(), true)
        );
        assert_eq!(s("x.l-msedge.lab"), ("l-msedge.lab".into(), false));
        assert_eq!(s("registry.npmjs.org"), ("npmjs.org".into(), false));
    }

    #[test]
    fn wildcards_over_public_suffixes_are_unsafe() {
        for unsafe_ in [
            "com",
            "co.uk",
            "githubusercontent.com",
            "blob.core.windows.net",
            "s3.amazonaws.com",
            "lab",
        ] {
            assert!(!wildcard_is_safe(unsafe_), "{unsafe_}");
        }
        for safe in [
            "actions.githubusercontent.com",
            "github.com",
            "pkg.github.com",
            "core.windows.net",
            "example.co.uk",
            "l-msedge.lab",
        ] {
            assert!(wildcard_is_safe(safe), "{safe}");
        }
    }

    fn name(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    #[test]
    fn rotating_names_keep_their_fixed_text() {
        let r = Rotating::of(&name("productionresultssa12.blob.core.windows.net")).unwrap();
        assert_eq!(r.glob(), "productionresultssa*.blob.core.windows.net");
        assert_eq!(
            r.regex(),
            "^productionresultssa[0-9]+\\.blob\\.core\\.windows\\.net$"
        );
        assert_eq!(r.human(), "productionresultssa<N>.blob.core.windows.net");
        assert!(r.matches(&name("productionresultssa3.blob.core.windows.net")));
        assert!(!r.matches(&name("productionresultssa3x.blob.core.windows.net")));
        assert!(!r.matches(&name("productionresultssa.blob.core.windows.net")));

        let run = Rotating::of(&name(
            "run-actions-3-azure-eastus.actions.githubusercontent.com",
        ))
        .unwrap();
        assert_eq!(
            run.glob(),
            "run-actions-*-azure-eastus.actions.githubusercontent.com"
        );
        assert!(run.matches(&name(
            "run-actions-12-azure-eastus.actions.githubusercontent.com"
        )));
        assert!(!run.matches(&name(
            "run-actions-12-azure-westus.actions.githubusercontent.com"
        )));
        assert_eq!(
            Rotating::of(&name("pipelinesghubeus5.actions.githubusercontent.com"))
                .unwrap()
                .glob(),
            "pipelinesghubeus*.actions.githubusercontent.com"
        );
    }

    #[test]
    fn too_little_fixed_text_is_not_generalised() {
        for name in [
            "api.github.com",             // no number
            "a1.example.com",             // one fixed letter
            "sa12.blob.core.windows.net", // two
            "12abc.example.com",          // starts with the number
            "_-_1.example.com",           // no letter
            "mirror1.com",                // directly under a top-level domain
            "nodots",
        ] {
            assert_eq!(Rotating::of(&self::name(name)), None, "{name}");
        }
    }
}
