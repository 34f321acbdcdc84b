//! Mount points: directories of this filesystem over which a synthetic filesystem is shown
//! (see [`crate::fs::mount`]). [`Fs::find_mount`] walks a path like the lookups do and
//! reports whether it enters a mount point, with the rest of the path.

use alloc::vec::Vec;

use super::inode::{Ino, Node, ROOT_INO};
use super::path::{push_components, PATH_MAX, SYMLOOP_MAX};
use super::Fs;
use crate::fs::errno::Errno;
use crate::fs::mount::MountKind;

/// A path that enters a mount point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Crossing {
    /// The filesystem mounted there.
    pub(crate) kind: MountKind,
    /// The components after the mount point (in order; may hold `.` and `..`).
    pub(crate) rest: Vec<Vec<u8>>,
}

impl Fs {
    /// Shows `kind` over the directory `path` (created if missing).
    pub(crate) fn mount(&mut self, path: &[u8], kind: MountKind) -> Result<(), Errno> {
        let ino = match self.lookup(ROOT_INO, path, true) {
            Ok(ino) => ino,
            Err(_) => self.mkdir(ROOT_INO, path, 0o555)?,
        };
        self.dir(ino)?;
        if let Some(&(_, old)) = self.own_mounts.iter().find(|(k, _)| *k == kind) {
            self.mounts.remove(&old);
        }
        self.own_mounts.retain(|(k, _)| *k != kind);
        self.own_mounts.push((kind, ino));
        self.mounts.insert(ino, kind);
        Ok(())
    }

    /// Whether directory `ino` is a kind's own mount point.
    fn is_own_mount(&self, ino: Ino) -> bool {
        self.own_mounts.iter().any(|&(_, i)| i == ino)
    }

    /// Shows `kind` over directory `ino` too (`mount -t proc proc DIR`, a chroot's `/proc`):
    /// `EBUSY` if something is shown there already.
    pub(crate) fn mount_at(&mut self, ino: Ino, kind: MountKind) -> Result<(), Errno> {
        self.dir(ino)?;
        if self.mounts.contains_key(&ino) {
            return Err(Errno::EBUSY);
        }
        self.mounts.insert(ino, kind);
        Ok(())
    }

    /// Takes what [`Fs::mount_at`] showed over directory `ino` away: `EINVAL` if nothing
    /// is, `EBUSY` for a kind's own mount point (`/proc`, `/sys`, `/dev/pts` stay).
    pub(crate) fn unmount_at(&mut self, ino: Ino) -> Result<(), Errno> {
        if !self.mounts.contains_key(&ino) {
            return Err(Errno::EINVAL);
        }
        if self.is_own_mount(ino) {
            return Err(Errno::EBUSY);
        }
        self.mounts.remove(&ino);
        Ok(())
    }

    /// What is shown over a directory other than its kind's own mount point.
    pub(crate) fn extra_mounts(&self) -> Vec<(Ino, MountKind)> {
        self.mounts
            .iter()
            .filter(|(&ino, _)| !self.is_own_mount(ino))
            .map(|(&i, &k)| (i, k))
            .collect()
    }

    /// If `path` (from `cwd` unless absolute) enters a mount point, the filesystem and the
    /// rest of the path. A final symbolic link is followed if `follow` (or the path ends in
    /// `/`). Any error of the walk is `None`: the lookup proper reports it.
    pub(crate) fn find_mount(&mut self, cwd: Ino, path: &[u8], follow: bool) -> Option<Crossing> {
        if self.mounts.is_empty() || path.is_empty() || path.len() > PATH_MAX {
            return None;
        }
        let must_dir = path.ends_with(b"/");
        let root = self.walk_root;
        let mut dir = if path[0] == b'/' { root } else { cwd };
        let mut stack = Vec::new();
        push_components(&mut stack, path).ok()?;
        let mut links = 0;
        while let Some(comp) = stack.pop() {
            if let Some(&kind) = self.mounts.get(&dir) {
                if comp != b".." {
                    stack.push(comp);
                    stack.reverse();
                    return Some(Crossing { kind, rest: stack });
                }
            }
            match comp.as_slice() {
                b"." => {}
                b".." => dir = self.parent_in_root(dir).ok()?,
                name => {
                    let child = self.lookup_child(dir, name).ok()??;
                    match &self.inode(child).ok()?.node {
                        Node::Dir(_) => dir = child,
                        Node::Symlink(t) if !stack.is_empty() || follow || must_dir => {
                            links += 1;
                            if links > SYMLOOP_MAX {
                                return None;
                            }
                            if t.first() == Some(&b'/') {
                                dir = root;
                            } else {
                                // Relative to the directory holding the link.
                            }
                            let t = t.clone();
                            push_components(&mut stack, &t).ok()?;
                        }
                        _ => return None,
                    }
                }
            }
        }
        self.mounts.get(&dir).map(|&kind| Crossing {
            kind,
            rest: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> Fs {
        let mut fs = Fs::new(|| 0);
        fs.mount(b"/proc", MountKind::Proc).unwrap();
        fs.mkdir(ROOT_INO, b"/dev", 0o755).unwrap();
        fs.symlink(ROOT_INO, b"/proc/self/fd", b"/dev/fd").unwrap();
        fs.symlink(ROOT_INO, b"../proc", b"/dev/p").unwrap();
        fs
    }

    fn rest(c: Option<Crossing>) -> Option<Vec<&'static str>> {
        c.map(|c| {
            c.rest
                .into_iter()
                .map(|v| &*alloc::string::String::from_utf8(v).unwrap().leak())
                .collect()
        })
    }

    #[test]
    fn a_kind_is_shown_over_other_directories_too() {
        let mut fs = fs();
        for d in [&b"/srv"[..], b"/srv/root", b"/srv/root/proc"] {
            fs.mkdir(ROOT_INO, d, 0o755).unwrap();
        }
        let mp = fs.lookup(ROOT_INO, b"/srv/root/proc", true).unwrap();
        let own = fs.lookup(ROOT_INO, b"/proc", true).unwrap();
        assert_eq!(fs.mount_at(own, MountKind::Sys), Err(Errno::EBUSY));
        fs.mount_at(mp, MountKind::Proc).unwrap();
        assert_eq!(fs.mount_at(mp, MountKind::Sys), Err(Errno::EBUSY));
        let rest = |c: Option<Crossing>| c.map(|c| (c.kind, c.rest));
        assert_eq!(
            rest(fs.find_mount(ROOT_INO, b"/srv/root/proc/self", true)),
            Some((MountKind::Proc, vec![b"self".to_vec()]))
        );
        // From a chroot at /srv/root, its /proc is that mount.
        let r = fs.lookup(ROOT_INO, b"/srv/root", true).unwrap();
        fs.set_walk_root(r);
        assert_eq!(
            rest(fs.find_mount(ROOT_INO, b"/proc/1", true)),
            Some((MountKind::Proc, vec![b"1".to_vec()]))
        );
        fs.set_walk_root(ROOT_INO);
        assert_eq!(fs.extra_mounts(), vec![(mp, MountKind::Proc)]);
        assert_eq!(
            fs.unmount_at(own),
            Err(Errno::EBUSY),
            "the kind's own stays"
        );
        fs.unmount_at(mp).unwrap();
        assert_eq!(fs.unmount_at(mp), Err(Errno::EINVAL));
        assert!(fs.extra_mounts().is_empty());
        assert_eq!(fs.find_mount(ROOT_INO, b"/srv/root/proc/self", true), None);
    }

    #[test]
    fn paths_into_the_mount_cross_it() {
        let mut fs = fs();
        assert_eq!(rest(fs.find_mount(ROOT_INO, b"/proc", true)), Some(vec![]));
        assert_eq!(
            rest(fs.find_mount(ROOT_INO, b"/proc/self/status", true)),
            Some(vec!["self", "status"])
        );
        assert_eq!(
            rest(fs.find_mount(ROOT_INO, b"/dev/fd/63", true)),
            Some(vec!["self", "fd", "63"])
        );
        assert_eq!(
            rest(fs.find_mount(ROOT_INO, b"dev/p/./x", true)),
            Some(vec![".", "x"])
        );
        assert_eq!(rest(fs.find_mount(ROOT_INO, b"/proc/../dev", true)), None);
        // A final link is not followed without `follow`.
        assert_eq!(rest(fs.find_mount(ROOT_INO, b"/dev/fd", false)), None);
        assert_eq!(
            rest(fs.find_mount(ROOT_INO, b"/dev/fd", true)),
            Some(vec!["self", "fd"])
        );
        assert_eq!(rest(fs.find_mount(ROOT_INO, b"/dev", true)), None);
        assert_eq!(rest(fs.find_mount(ROOT_INO, b"/nope/proc", true)), None);
    }
}
