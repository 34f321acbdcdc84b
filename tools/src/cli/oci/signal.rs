//! Signal names and numbers as `runc kill` takes them: `TERM`, `SIGTERM`, `sigterm`, `15`.

use anyhow::bail;

/// Linux's standard signals, by number (index + 1).
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// A signal name or number (1..=31; real-time signals are not supported).
pub(crate) fn parse(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=NAMES.len() as i32).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal number {n}: pvmux sends signals 1 to 31");
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let name = match name {
        "IOT" => "ABRT",
        "CLD" => "CHLD",
        "POLL" => "IO",
        n => n,
    };
    match NAMES.iter().position(|n| *n == name) {
        Some(i) => Ok(i as i32 + 1),
        None => bail!("unknown signal {s:?}"),
    }
}

/// `SIGTERM` for signal 15.
pub(crate) fn name(signo: i32) -> String {
    match usize::try_from(signo - 1).ok().and_then(|i| NAMES.get(i)) {
        Some(n) => format!("SIG{n}"),
        None => format!("signal {signo}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        for (s, n) in [
            ("TERM", 15),
            ("SIGTERM", 15),
            ("sigkill", 9),
            ("9", 9),
            ("KILL", 9),
            ("WINCH", 28),
            ("SYS", 31),
            ("1", 1),
        ] {
            assert_eq!(parse(s).unwrap(), n, "{s}");
        }
        for bad in ["0", "32", "-1", "SIGFOO", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(40), "signal 40");
    }
}
