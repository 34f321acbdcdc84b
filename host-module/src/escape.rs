//! Escaping of guest bytes for the host's terminal: the one function every host message that
//! carries guest text goes through (crash reports — console tail, panic message, symbol
//! names —, the `killed by SIG...` line's program path, watchdog reports, crash-dump files).
//!
//! A guest must not be able to send terminal control sequences (set the window title, clear
//! the screen, OSC 52 clipboard writes, cursor movement hiding earlier lines, bidi overrides
//! reordering a line) to the operator's terminal through something the *host* prints. The
//! output is plain printable text:
//!
//! | input | output |
//! |---|---|
//! | `\` | `\\` (so every `\` in the output starts an escape: unambiguous) |
//! | C0 controls `0x00..=0x1f` but `\t` (and `\n` in [`Mode::Text`]), DEL `0x7f` | `\xHH` (ESC is `\x1b`) |
//! | a byte that is not part of valid UTF-8 | `\xHH` |
//! | C1 controls U+0080..=U+009F (valid UTF-8 `c2 80..c2 9f`) | `\u{HH}` |
//! | bidi controls (U+061C, U+200E/F, U+202A..=U+202E, U+2066..=U+2069), line/paragraph separators (U+2028/9) | `\u{HHHH}` |
//! | every other character | itself |
//!
//! The guest's own standard output and standard error streams are *not* escaped: they are
//! the program's fds 1 and 2 and pass to the host's as a native program's would (a program
//! run natively can write the same bytes to the same terminal). Everything else the host
//! prints is escaped, including the guest kernel's log when it is shown (it carries program
//! names chosen by unprivileged guest programs).

use std::fmt::Write as _;

/// Whether a newline is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Multi-line text (a panic message): `\n` and `\t` pass.
    Text,
    /// One line (a path, a console line, a symbol): only `\t` passes; `\n` is `\x0a`.
    Line,
}

/// `bytes` (any bytes, usually not valid UTF-8) as text safe to print on a terminal; see the
/// module documentation for the exact escaping.
pub fn escape_guest(bytes: &[u8], mode: Mode) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, mode);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`escape_guest`] for text already decoded (e.g. a symbol name from the kernel ELF).
pub fn escape_guest_str(s: &str, mode: Mode) -> String {
    escape_guest(s.as_bytes(), mode)
}

fn push_char(out: &mut String, c: char, mode: Mode) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push('\t'),
        '\n' if mode == Mode::Text => out.push('\n'),
        '\0'..='\x1f' | '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        '\u{80}'..='\u{9f}'
        | '\u{061c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(b: &[u8]) -> String {
        escape_guest(b, Mode::Line)
    }

    #[test]
    fn printable_text_is_unchanged() {
        assert_eq!(
            line(b"hello, world 123 ~!@#$%^&*()"),
            "hello, world 123 ~!@#$%^&*()"
        );
        assert_eq!(line("grüße → ✓ 日本".as_bytes()), "grüße → ✓ 日本");
        assert_eq!(line(b"a\tb"), "a\tb");
        assert_eq!(escape_guest(b"a\nb\n", Mode::Text), "a\nb\n");
    }

    #[test]
    fn terminal_sequences_are_escaped() {
        // Window title (OSC 0, BEL-terminated), OSC 52 clipboard (ST-terminated), clear
        // screen, 8-bit CSI.
        assert_eq!(line(b"\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(
            line(b"\x1b]52;c;ZWNobw==\x1b\\"),
            "\\x1b]52;c;ZWNobw==\\x1b\\\\"
        );
        assert_eq!(line(b"\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(line("\u{9b}2J".as_bytes()), "\\u{9b}2J");
        assert_eq!(line(b"\x9b2J"), "\\x9b2J"); // a lone C1 byte is invalid UTF-8
        assert_eq!(line(b"a\rb\x08c\x7fd\0"), "a\\x0db\\x08c\\x7fd\\x00");
        assert_eq!(line(b"a\nb"), "a\\x0ab");
        assert_eq!(escape_guest(b"a\r\nb", Mode::Text), "a\\x0d\nb");
        assert_eq!(
            line("x\u{202e}y\u{2066}z".as_bytes()),
            "x\\u{202e}y\\u{2066}z"
        );
    }

    #[test]
    fn invalid_utf8_is_escaped_byte_by_byte() {
        assert_eq!(line(b"\xff\xfe"), "\\xff\\xfe");
        assert_eq!(line(b"ok\xe2\x82"), "ok\\xe2\\x82"); // truncated sequence
        assert_eq!(line(b"\xc0\xaf"), "\\xc0\\xaf"); // overlong '/'
    }

    #[test]
    fn escaping_is_unambiguous() {
        // The guest cannot forge an escape: a literal backslash is doubled.
        assert_eq!(line(b"\\x1b"), "\\\\x1b");
        assert_ne!(line(b"\\x1b"), line(b"\x1b"));
    }

    #[test]
    fn every_byte_sequence_gives_only_printable_text() {
        // Every 1- and 2-byte input, and some 3-byte ones: no control character survives
        // (except \t), in either mode but \n in Text.
        let check = |b: &[u8]| {
            for (mode, nl_ok) in [(Mode::Line, false), (Mode::Text, true)] {
                let s = escape_guest(b, mode);
                for c in s.chars() {
                    let ok = !c.is_control() || c == '\t' || (nl_ok && c == '\n');
                    assert!(ok, "{b:x?} -> {s:?}");
                    assert!(!matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'));
                }
            }
        };
        for a in 0..=255u8 {
            check(&[a]);
            for b in 0..=255u8 {
                check(&[a, b]);
            }
        }
        for a in [0xc2u8, 0xe2, 0xef, 0xf0] {
            for b in 0x80..=0xbfu8 {
                for c in 0x80..=0xbfu8 {
                    check(&[a, b, c]);
                }
            }
        }
    }
}
