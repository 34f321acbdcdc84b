//! `pvmux run -v/--volume HOSTDIR:GUESTDIR[:ro|rw]`: host directories the guest may write,
//! in docker's and podman's syntax. The host side is `pvmux_host::volume`; the guest learns
//! the mount points from the boot arguments' `VOLUME` records.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use pvmux_hypercalls::volume::MAX_VOLUMES;

/// One `--volume` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The host directory, or regular file (a file volume).
    pub host: PathBuf,
    /// Where the guest sees it: an absolute path without `.`/`..` components or NUL.
    pub guest: Vec<u8>,
    /// `:ro`: every change is `EROFS`.
    pub read_only: bool,
}

/// Parses `HOST:GUEST[:ro|rw]` (clap's value parser: the message is shown after
/// "invalid value ... for '--volume'", and pvmux exits with status 2). HOST must be an
/// existing directory or regular file (a file volume, mounted at the file GUEST), GUEST
/// absolute and not `/`.
pub(crate) fn parse_volume(s: &str) -> Result<VolumeSpec, String> {
    const SYNTAX: &str = "expected HOSTDIR:GUESTDIR[:ro|rw] or HOSTFILE:GUESTFILE[:ro|rw]";
    let parts: Vec<&str> = s.split(':').collect();
    let (host, guest, mode) = match parts.as_slice() {
        [h, g] => (*h, *g, None),
        [h, g, m] => (*h, *g, Some(*m)),
        [_] => {
            return Err(format!(
                "a volume needs a host directory and a guest path: {SYNTAX}"
            ))
        }
        _ => return Err(format!("too many `:` ({SYNTAX})")),
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => return Err(format!("invalid mode {m:?}: expected ro or rw")),
    };
    if host.is_empty() {
        return Err(format!("the host directory is empty ({SYNTAX})"));
    }
    let host_path = PathBuf::from(host);
    match std::fs::metadata(&host_path) {
        Ok(m) if m.is_dir() || m.is_file() => {}
        Ok(_) => {
            return Err(format!(
                "host path {host} is neither a directory nor a regular file"
            ))
        }
        Err(e) => return Err(format!("host directory {host}: {e}")),
    }
    let g = guest.as_bytes();
    if g.first() != Some(&b'/') {
        return Err(format!(
            "guest path {guest:?} is not absolute (it must start with /)"
        ));
    }
    if g.split(|&b| b == b'/').any(|c| c == b"." || c == b"..") {
        return Err(format!("guest path {guest:?} must not contain . or .."));
    }
    if g.iter().all(|&b| b == b'/') {
        return Err("the guest path cannot be / (mount a volume below it)".into());
    }
    // Trailing slashes are dropped: /data/ and /data are the same mount point.
    let end = g.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    Ok(VolumeSpec {
        host: host_path,
        guest: g[..end].to_vec(),
        read_only,
    })
}

/// Checks the whole list: at most `MAX_VOLUMES` volumes, no guest path twice (docker's
/// "Duplicate mount point") and none inside another (the guest cannot nest volumes).
pub(crate) fn check_volumes(specs: &[VolumeSpec]) -> Result<(), String> {
    if specs.len() > MAX_VOLUMES as usize {
        return Err(format!(
            "--volume: at most {MAX_VOLUMES} volumes, {} given",
            specs.len()
        ));
    }
    let show = |g: &[u8]| OsStr::from_bytes(g).to_string_lossy().into_owned();
    for (i, v) in specs.iter().enumerate() {
        for w in &specs[..i] {
            if w.guest == v.guest {
                return Err(format!(
                    "--volume: duplicate mount point {}",
                    show(&v.guest)
                ));
            }
            let inside = |a: &[u8], b: &[u8]| a.starts_with(b) && a.get(b.len()) == Some(&b'/');
            if inside(&v.guest, &w.guest) || inside(&w.guest, &v.guest) {
                return Err(format!(
                    "--volume: mount points {} and {} are nested (not supported)",
                    show(&w.guest),
                    show(&v.guest)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_and_errors() {
        let tmp = std::env::temp_dir();
        let t = tmp.to_str().unwrap();
        let v = parse_volume(&format!("{t}:/data")).unwrap();
        assert_eq!((v.guest.as_slice(), v.read_only), (&b"/data"[..], false));
        let v = parse_volume(&format!("{t}:/data/x//:ro")).unwrap();
        assert_eq!((v.guest.as_slice(), v.read_only), (&b"/data/x"[..], true));
        assert!(!parse_volume(&format!("{t}:/d:rw")).unwrap().read_only);
        let err = |s: String| parse_volume(&s).unwrap_err();
        assert!(err(format!("{t}:data")).contains("not absolute"));
        assert!(err(format!("{t}:/")).contains("cannot be /"));
        assert!(err(format!("{t}:/a/../b")).contains(". or .."));
        assert!(err(format!("{t}:/d:rx")).contains("invalid mode"));
        assert!(err(format!("{t}:/d:ro:x")).contains("too many"));
        assert!(err("/data".into()).contains("host directory and a guest path"));
        assert!(err(":/data".into()).contains("empty"));
        assert!(err("/nonexistent-pvmux-dir:/data".into()).contains("No such file"));
        assert!(err("/dev/null:/data".into()).contains("neither a directory nor a regular file"));
        let f = parse_volume("/etc/passwd:/etc/passwd:ro").unwrap();
        assert_eq!(
            (f.guest.as_slice(), f.read_only),
            (&b"/etc/passwd"[..], true)
        );
        let a = parse_volume(&format!("{t}:/d")).unwrap();
        let b = parse_volume(&format!("{t}:/d/:ro")).unwrap();
        assert!(check_volumes(std::slice::from_ref(&a)).is_ok());
        assert!(check_volumes(&[a, b])
            .unwrap_err()
            .contains("duplicate mount point /d"));
    }
}
