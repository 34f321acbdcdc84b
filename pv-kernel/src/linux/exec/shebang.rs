//! `#!` scripts: the interpreter line, parsed as Linux's `binfmt_script` does.

#![deny(unsafe_code)]

use alloc::vec::Vec;

/// How much of a script Linux reads for its `#!` line (`BINPRM_BUF_SIZE`).
const BUF: usize = 256;

const fn spacetab(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses a `#!` line: `(interpreter, optional argument)`. The line is the first 255 bytes
/// at most, up to a newline or a NUL; the interpreter is its first word (after spaces and
/// tabs), the argument everything after the spaces and tabs that follow it, trailing spaces
/// and tabs removed (one argument, spaces included, `\r` kept). `None` if `file` is not a
/// script — or is one Linux refuses (`ENOEXEC`): no interpreter, or an interpreter name cut
/// off by the 255-byte limit.
pub(crate) fn shebang(file: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    if !file.starts_with(b"#!") {
        return None;
    }
    // The first bytes, NUL-padded like Linux's buffer; its last byte is always the end.
    let mut buf = [0u8; BUF];
    let n = file.len().min(BUF);
    buf[..n].copy_from_slice(&file[..n]);
    let last = BUF - 1;
    let mut end = match buf.iter().position(|&b| b == b'\n') {
        Some(nl) => nl,
        None => {
            // Without a newline the interpreter name must end (space, tab or NUL) within
            // the buffer, or it could be truncated.
            let name = (2..=last).find(|&i| !spacetab(buf[i]))?;
            (name..=last).find(|&i| spacetab(buf[i]) || buf[i] == 0)?;
            last
        }
    };
    while end > 2 && spacetab(buf[end - 1]) {
        end -= 1;
    }
    // `buf[..end]`, read as a C string from here on.
    let line = &buf[..end];
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let mut i = 2;
    while i < line.len() && spacetab(line[i]) {
        i += 1;
    }
    if i == line.len() {
        return None;
    }
    let name_end = (i..line.len())
        .find(|&j| spacetab(line[j]))
        .unwrap_or(line.len());
    let mut arg = name_end;
    while arg < line.len() && spacetab(line[arg]) {
        arg += 1;
    }
    let rest = &line[arg..];
    Some((
        line[i..name_end].to_vec(),
        (!rest.is_empty()).then(|| rest.to_vec()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Option<(String, Option<String>)> {
        shebang(s).map(|(i, a)| {
            (
                String::from_utf8(i).unwrap(),
                a.map(|a| String::from_utf8(a).unwrap()),
            )
        })
    }

    fn script(i: &str, a: Option<&str>) -> Option<(String, Option<String>)> {
        Some((i.into(), a.map(Into::into)))
    }

    #[test]
    fn interpreter_and_one_argument() {
        assert_eq!(parse(b"#!/bin/sh\necho hi\n"), script("/bin/sh", None));
        assert_eq!(parse(b"#! /bin/sh -e\n"), script("/bin/sh", Some("-e")));
        assert_eq!(
            parse(b"#!\t/usr/bin/env  python3 -u \t\n"),
            script("/usr/bin/env", Some("python3 -u"))
        );
        assert_eq!(
            parse(b"#!/bin/sh"),
            script("/bin/sh", None),
            "no newline, end of file"
        );
        assert_eq!(parse(b"#!/bin/sh   \n"), script("/bin/sh", None));
    }

    #[test]
    fn carriage_returns_and_nuls_are_linux_s() {
        // A DOS line ending stays in the name or argument ("bad interpreter: /bin/sh^M").
        assert_eq!(parse(b"#!/bin/sh\r\n"), script("/bin/sh\r", None));
        assert_eq!(parse(b"#!/bin/sh -e\r\n"), script("/bin/sh", Some("-e\r")));
        // A NUL ends the line.
        assert_eq!(parse(b"#!/bin/sh\0 -x\n"), script("/bin/sh", None));
        assert_eq!(parse(b"#!/bin/sh -a\0b\n"), script("/bin/sh", Some("-a")));
    }

    #[test]
    fn what_linux_refuses() {
        assert_eq!(parse(b"\x7fELF"), None, "not a script");
        assert_eq!(parse(b"#!\n"), None, "no interpreter");
        assert_eq!(
            parse(b"#!   \t \n/bin/sh\n"),
            None,
            "no interpreter on the line"
        );
        assert_eq!(
            parse(&[b"#!".as_slice(), &[b' '; 300]].concat()),
            None,
            "only blanks"
        );
        // An interpreter name running past 255 bytes without a newline: truncated.
        let long = [b"#!/".as_slice(), &[b'x'; 300]].concat();
        assert_eq!(parse(&long), None);
        // A long argument is cut, which is fine (the interpreter can re-read the line).
        let arg = [b"#!/bin/sh ".as_slice(), &[b'a'; 300]].concat();
        let (i, a) = shebang(&arg).unwrap();
        assert_eq!(i, b"/bin/sh");
        assert_eq!(a.unwrap().len(), 255 - 10);
        // A newline past the first 256 bytes does not count.
        let far = [b"#!/".as_slice(), &[b'y'; 260], b"\n"].concat();
        assert_eq!(parse(&far), None);
    }
}
