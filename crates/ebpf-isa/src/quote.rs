//! [`quoted`]: user text as error messages show it, so that no byte of input reaches a
//! terminal as a control sequence.
//!
//! Every piece of user input that goes into a message (a token of assembly, a symbol name from
//! an ELF object, a file name) goes through it: text that prints as itself is shown as is —
//! so `invalid register: %r50` reads as before —, anything else (a NUL, `ESC[2J`, an OSC
//! title, a bidi override, a quote or a backslash, empty text) is shown quoted and escaped as
//! Rust's `{:?}` does: `invalid number: "1\0"`. A plain text never contains a quote, so the
//! two forms cannot be confused. Invalid UTF-8 never gets here: callers turn bytes into text
//! first (lossily, or with an error that names the line).
//!
//! It lives in `ebpf-isa` because every crate that formats user input depends on it; the one
//! crate that does not (`ebpf-testdata`, which has no dependencies) quotes with `{:?}` itself.

use alloc::format;
use core::fmt;

/// `text`, displayed as is when it prints as itself, else quoted and escaped (see the module
/// docs).
pub fn quoted(text: &str) -> Quoted<'_> {
    Quoted(text)
}

/// The [`fmt::Display`] of [`quoted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = format!("{:?}", self.0);
        // `{:?}` adds the two quotes and lengthens whatever it escapes.
        if !self.0.is_empty() && escaped.len() == self.0.len() + 2 {
            f.write_str(self.0)
        } else {
            f.write_str(&escaped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn plain_text_is_shown_as_is_and_the_rest_escaped() {
        for plain in ["%r50", "ldxq", "it's", "é", "a b", "NOT_A_LABEL"] {
            assert_eq!(quoted(plain).to_string(), plain);
        }
        for (text, shown) in [
            ("1\0", r#""1\0""#),
            ("\u{1b}[2J", r#""\u{1b}[2J""#),
            ("\u{1b}]0;pwned\u{7}", r#""\u{1b}]0;pwned\u{7}""#),
            ("\u{9b}2J", r#""\u{9b}2J""#),
            ("\u{202e}txt", r#""\u{202e}txt""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("tab\there", r#""tab\there""#),
            ("", r#""""#),
        ] {
            assert_eq!(quoted(text).to_string(), shown, "{text:?}");
        }
    }
}
