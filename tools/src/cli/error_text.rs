//! How the CLI says an error: its chain of causes joined with `": "`, as anyhow's `{:#}`, but
//! a cause is said once. Some errors print their source in their own message *and* return it
//! from `source()` (the host library's do, so that a log line with `{e}` alone is complete);
//! `{:#}` then repeated it: `cannot open disk image X: No such file or directory (os error
//! 2): No such file or directory (os error 2)`.

use std::fmt;

/// Displays an error chain with each cause once ([`text`]).
pub(crate) struct Chain<'a>(pub(crate) &'a anyhow::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text(self.0))
    }
}

/// `e` and its causes joined with `": "`, leaving out a cause whose message the text so far
/// already ends with (its parent said it).
pub(crate) fn text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !out.is_empty() && out.ends_with(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

/// `e` as one error whose message is [`text`] (for a reply that carries only a message).
pub(crate) fn flat(e: &anyhow::Error) -> anyhow::Error {
    anyhow::Error::msg(text(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    /// An error that prints its source and returns it, as `pvmux-host`'s do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot open disk image /x: {source}")]
    struct Open {
        source: std::io::Error,
    }

    fn not_found() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    #[test]
    fn a_source_its_parent_printed_is_said_once() {
        let e = Err::<(), _>(Open {
            source: not_found(),
        })
        .context("--disk /x is not usable")
        .unwrap_err();
        let os = not_found().to_string();
        assert_eq!(
            format!("{e:#}"),
            format!("--disk /x is not usable: cannot open disk image /x: {os}: {os}")
        );
        assert_eq!(
            text(&e),
            format!("--disk /x is not usable: cannot open disk image /x: {os}")
        );
        assert_eq!(Chain(&e).to_string(), text(&e));
    }

    #[test]
    fn causes_their_parents_did_not_print_are_all_said() {
        let e = Err::<(), _>(not_found())
            .context("cannot open /x")
            .context("--rootfs /x is not usable")
            .unwrap_err();
        assert_eq!(text(&e), format!("{e:#}"));
        // A cause with the same words as a part of its parent that is not its end stays.
        let e = anyhow::anyhow!("disk").context("disk image full");
        assert_eq!(text(&e), "disk image full: disk");
    }
}
