//! The init program's environment and working directory for `pvmux run`: `--env`,
//! `--env-file` and `--workdir`, with the defaults other runtimes give (podman, docker).
//!
//! The environment is built here, on the host, and travels whole to the guest kernel as boot
//! arguments (`env=` records, one per variable); the kernel adds nothing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context};
use pvmux_hypercalls::bootargs::{env_entry_ok, workdir_ok};

/// The guest's hostname (`uname -n` in the pvmux kernel).
pub(crate) const GUEST_HOSTNAME: &str = "pvmux";

/// `PATH` of the default environment: the one podman, docker and runc give.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Text for `pvmux run --help`.
pub(crate) const ENV_HELP: &str = "\
Environment and working directory:
  The program starts with PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin,
  HOSTNAME=pvmux (the guest's hostname), HOME=/root (it runs as root, as docker's default) and,
  only when the guest's console is a terminal (pvmux's stdin or stdout is one; podman and
  docker do the same with -t), TERM=xterm. --env-file entries override these and --env flags
  override both; the last of one name wins, and variables keep the order of their first
  definition. `--env NAME` (and a line `NAME` in a file) takes the value from pvmux's own
  environment, and is skipped when pvmux does not have it. A name must be non-empty without
  `=`, whitespace or NUL; values are any bytes but NUL. Env files are podman's format: one
  NAME=VALUE per line (the value is the rest of the line, taken literally, no quotes removed),
  blank lines and lines starting with # ignored. --workdir DIR (absolute) is the program's
  working directory, and a relative PROGRAM path is resolved there; a DIR that does not exist
  in the guest ends the run with exit status 126 and `pvmux: workdir \"DIR\" does not exist
  in the guest`. Environment and arguments share the boot arguments' size limit.";

/// One `NAME=VALUE` entry.
type Entry = Vec<u8>;

/// The environment, in order of first definition; a later entry of a name replaces its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment(Vec<Entry>);

impl Environment {
    /// The defaults (module docs); `terminal`: the guest's console is a terminal.
    pub fn defaults(terminal: bool) -> Self {
        let mut env = Self::default();
        env.set(format!("PATH={DEFAULT_PATH}").into_bytes());
        env.set(format!("HOSTNAME={GUEST_HOSTNAME}").into_bytes());
        if terminal {
            env.set(b"TERM=xterm".to_vec());
        }
        env.set(b"HOME=/root".to_vec());
        env
    }

    /// Sets a default `name` to `value` (before the flags, which may replace it).
    pub(crate) fn set_default(&mut self, name: &str, value: &str) {
        self.set(format!("{name}={value}").into_bytes());
    }

    /// Sets an entry (`NAME=VALUE`, checked by the caller).
    fn set(&mut self, entry: Entry) {
        let name = |e: &[u8]| e.iter().position(|&b| b == b'=').map(|i| e[..i].to_vec());
        let new = name(&entry);
        match self.0.iter_mut().find(|e| name(e) == new) {
            Some(old) => *old = entry,
            None => self.0.push(entry),
        }
    }

    /// Applies one `--env` value: `NAME=VALUE`, or `NAME` looked up with `lookup`.
    pub fn apply_flag(
        &mut self,
        arg: &OsStr,
        lookup: impl Fn(&OsStr) -> Option<std::ffi::OsString>,
    ) -> anyhow::Result<()> {
        if let Some(entry) = entry(arg.as_bytes(), &lookup)
            .with_context(|| format!("--env {:?}", arg.to_string_lossy()))?
        {
            self.set(entry);
        }
        Ok(())
    }

    /// Applies an env file's text (podman's format); `file` names it in errors.
    pub fn apply_file_text(
        &mut self,
        file: &Path,
        text: &[u8],
        lookup: impl Fn(&OsStr) -> Option<std::ffi::OsString>,
    ) -> anyhow::Result<()> {
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.trim_ascii_start();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let parsed = entry(line, &lookup)
                .with_context(|| format!("--env-file {}, line {}", file.display(), i + 1))?;
            if let Some(entry) = parsed {
                self.set(entry);
            }
        }
        Ok(())
    }

    /// Reads and applies an env file; a file that cannot be read is an error.
    pub fn apply_file(
        &mut self,
        file: &Path,
        lookup: impl Fn(&OsStr) -> Option<std::ffi::OsString>,
    ) -> anyhow::Result<()> {
        let text = std::fs::read(file)
            .with_context(|| format!("--env-file {}: cannot read it", file.display()))?;
        self.apply_file_text(file, &text, lookup)
    }

    /// The entries, in order.
    pub fn entries(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }
}

/// `NAME=VALUE` checked, or `NAME` completed from `lookup` (`None` if it has no value).
fn entry(
    arg: &[u8],
    lookup: &impl Fn(&OsStr) -> Option<std::ffi::OsString>,
) -> anyhow::Result<Option<Entry>> {
    let name = arg.split(|&b| b == b'=').next().unwrap_or_default();
    if name.is_empty() {
        bail!("invalid environment variable: the name is empty");
    }
    if name.iter().any(|b| b.is_ascii_whitespace() || *b == 0) {
        bail!(
            "invalid environment variable name {:?}: it contains whitespace or NUL",
            String::from_utf8_lossy(name)
        );
    }
    let full = if arg.len() > name.len() {
        arg.to_vec()
    } else {
        let Some(value) = lookup(OsStr::from_bytes(name)) else {
            return Ok(None);
        };
        [name, b"=", value.as_bytes()].concat()
    };
    if !env_entry_ok(&full) {
        bail!(
            "invalid environment variable {:?}: a value cannot hold a NUL byte",
            String::from_utf8_lossy(name)
        );
    }
    Ok(Some(full))
}

/// Checks `--workdir DIR`: an absolute path without NUL.
pub(crate) fn check_workdir(dir: &OsStr) -> anyhow::Result<&[u8]> {
    let bytes = dir.as_bytes();
    if !workdir_ok(bytes) {
        bail!(
            "--workdir {:?}: the working directory must be an absolute path",
            dir.to_string_lossy()
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn host(name: &OsStr) -> Option<OsString> {
        (name == "FROM_HOST").then(|| OsString::from("host value"))
    }

    fn list(env: &Environment) -> Vec<String> {
        env.entries()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    }

    #[test]
    fn defaults_then_file_then_flags() {
        assert_eq!(
            list(&Environment::defaults(false)),
            [
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=pvmux",
                "HOME=/root"
            ]
        );
        let mut env = Environment::defaults(true);
        let file = b"# comment\n\n  A=from file\nHOME=/h\r\nFROM_HOST\nMISSING\nB= spaced  \n";
        env.apply_file_text(Path::new("f"), file, host).unwrap();
        for flag in ["A=flag", "PATH=/bin", "C=x=y", "FROM_HOST", "MISSING", "E="] {
            env.apply_flag(OsStr::new(flag), host).unwrap();
        }
        assert_eq!(
            list(&env),
            [
                "PATH=/bin",
                "HOSTNAME=pvmux",
                "TERM=xterm",
                "HOME=/h",
                "A=flag",
                "FROM_HOST=host value",
                "B= spaced  ",
                "C=x=y",
                "E=",
            ]
        );
    }

    #[test]
    fn bad_names_and_workdirs() {
        let mut env = Environment::default();
        for bad in ["=x", "", "A B=1", "\tA=1"] {
            let e = env.apply_flag(OsStr::new(bad), host).unwrap_err();
            assert!(
                format!("{e:#}").contains("invalid environment variable"),
                "{e:#}"
            );
        }
        let e = env
            .apply_file_text(Path::new("/f"), b"OK=1\n=bad\n", host)
            .unwrap_err();
        assert!(format!("{e:#}").contains("/f, line 2"), "{e:#}");
        assert!(check_workdir(OsStr::new("rel/dir")).is_err());
        assert_eq!(check_workdir(OsStr::new("/a b")).unwrap(), b"/a b");
    }
}
