//! Text a terminal or a log will show, made harmless: the one sanitizer of the project.
//!
//! Much of what the observer prints comes from others: process names (any process on the runner
//! chooses its own), DNS names and answer data (from the wire), reports and event logs (from
//! other machines), server certificates and proxy errors (`observer check`). A control character
//! in any of them reaches the admin's terminal: `ESC [2J` clears the screen, `ESC ]` sets the
//! title or hides text, a carriage return or newline forges a line, C1 controls (U+0080–U+009F)
//! are escapes of their own on some terminals, and bidirectional overrides (U+202A–U+202E,
//! U+2066–U+2069) reorder what is read. Every such character is replaced *visibly* by its
//! escape (`\x1b`, `\n`, `\u{202e}`), so the line stays one line and shows what was there.
//!
//! The TUI draws cells and replaces the same characters ([`is_unsafe`]) by `?` to keep its
//! column widths; Markdown, HTML and CSV have escapers of their own (`export`).

use std::{borrow::Cow, fmt::Write as _};

/// A character a terminal may act on instead of showing: C0 controls, DEL, C1 controls, and
/// the invisible marks that reorder bidirectional text.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// One line of text for a terminal or a log: every unsafe character ([`is_unsafe`]), line
/// breaks included, replaced by its visible escape.
pub fn line(text: &str) -> Cow<'_, str> {
    clean(text, false)
}

/// Several lines for a terminal or a log: as [`line`], but line feeds are kept.
pub fn lines(text: &str) -> Cow<'_, str> {
    clean(text, true)
}

fn clean(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in ["curl[42]", "api.github.com A 140.82.112.3", "é ✅ —", ""] {
            assert!(matches!(line(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn controls_are_replaced_visibly() {
        assert_eq!(line("\u{1b}[2Jwiped"), "\\x1b[2Jwiped");
        assert_eq!(line("a\nforged line\r"), "a\\nforged line\\r");
        assert_eq!(line("tab\there\u{7f}"), "tab\\there\\x7f");
        // C1: CSI (U+009B) and OSC (U+009D) are escapes on their own.
        assert_eq!(
            line("\u{9b}2J\u{9d}0;title\u{7}"),
            "\\x9b2J\\x9d0;title\\x07"
        );
        assert_eq!(line("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(lines("one\ntwo\u{1b}"), "one\ntwo\\x1b");
        // Nothing unsafe is left, whatever the input.
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!line(&all).chars().any(is_unsafe));
        assert!(!lines(&all).chars().any(|c| is_unsafe(c) && c != '\n'));
    }
}
