//! Path walking: components, `.` and `..` (the root is its own parent), symbolic links
//! (relative to the directory holding them, at most [`SYMLOOP_MAX`] per lookup), trailing
//! slashes and the `PATH_MAX` / `NAME_MAX` limits. Each directory a name is looked up in
//! needs search permission ([`Fs::may_search`], `EACCES`).
//!
//! "The root" is the caller's ([`Fs::set_walk_root`], a process's `chroot`): absolute paths
//! and absolute link targets start there and `..` does not leave it, as Linux's
//! `follow_dotdot` stops at the task's root. A walk that starts below another directory
//! (a working directory or descriptor outside the root) is not confined, as on Linux.

use alloc::vec::Vec;

use super::inode::{Ino, Node, ROOT_INO};
use super::Fs;
use crate::fs::errno::Errno::{self, *};

/// Longest path in bytes (`PATH_MAX` without the NUL).
pub(crate) const PATH_MAX: usize = 4095;
/// Longest path component (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;
/// Symbolic links followed in one lookup before `ELOOP` (Linux's limit).
pub(crate) const SYMLOOP_MAX: u32 = 40;

/// The final component of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Last {
    /// A name to look up.
    Name(Vec<u8>),
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// The path was only slashes.
    Root,
}

/// What `openat2`'s `RESOLVE_*` flags forbid during one walk ([`Fs::with_walk_rules`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WalkRules {
    /// `RESOLVE_BENEATH`: an absolute path or link target, or `..` above the walk's root
    /// (the starting directory), is `EXDEV`.
    pub(crate) beneath: bool,
    /// `RESOLVE_NO_SYMLINKS`: following any symbolic link is `ELOOP`.
    pub(crate) no_symlinks: bool,
    /// Entering a directory another filesystem is mounted over (`/proc`, `/sys`, ...) is
    /// `EXDEV` (`RESOLVE_NO_XDEV`, and `RESOLVE_BENEATH`/`RESOLVE_IN_ROOT` walks, which
    /// stay in this filesystem).
    pub(crate) no_mounts: bool,
}

/// A path resolved up to its last component.
pub(super) struct Walk {
    /// The directory holding the last component.
    pub(super) dir: Ino,
    pub(super) last: Last,
    /// The path ended in `/`: the result must be a directory (and symlinks are followed).
    pub(super) must_dir: bool,
}

/// A fully resolved path.
pub(super) struct Resolved {
    pub(super) walk: Walk,
    /// The inode, or `None` if the last component does not exist in `walk.dir`.
    pub(super) ino: Option<Ino>,
}

/// Splits a path into its non-empty components, last first (a stack).
pub(super) fn push_components(stack: &mut Vec<Vec<u8>>, path: &[u8]) -> Result<(), Errno> {
    let start = stack.len();
    for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if c.len() > NAME_MAX {
            return Err(ENAMETOOLONG);
        }
        stack.try_reserve(1).map_err(|_| ENOMEM)?;
        stack.push(c.to_vec());
    }
    stack[start..].reverse();
    Ok(())
}

impl Fs {
    /// Resolves `path` (relative to `cwd` unless absolute) up to its last component,
    /// following symbolic links on the way; `links` counts links followed.
    /// The directory it ends in is loaded (see [`Fs::load`]).
    pub(super) fn walk_parent(
        &mut self,
        cwd: Ino,
        path: &[u8],
        links: &mut u32,
    ) -> Result<Walk, Errno> {
        if path.is_empty() {
            return Err(ENOENT);
        }
        if path.len() > PATH_MAX {
            return Err(ENAMETOOLONG);
        }
        let root = self.walk_root;
        if path[0] == b'/' && self.walk_rules.beneath {
            return Err(EXDEV);
        }
        let mut dir = if path[0] == b'/' { root } else { cwd };
        self.dir(dir)?;
        let must_dir = path.ends_with(b"/");
        let mut stack = Vec::new();
        push_components(&mut stack, path)?;
        if stack.is_empty() {
            self.load(root)?;
            return Ok(Walk {
                dir: root,
                last: Last::Root,
                must_dir: true,
            });
        }
        while stack.len() > 1 {
            let Some(comp) = stack.pop() else { break };
            // Every directory a name is looked up in must be searchable (`may_lookup`).
            self.may_search(dir)?;
            match comp.as_slice() {
                b"." => {}
                b".." => dir = self.parent_in_root(dir)?,
                name => {
                    let child = self.lookup_child(dir, name)?.ok_or(ENOENT)?;
                    let rules = self.walk_rules;
                    match &self.inode(child)?.node {
                        Node::Dir(_) if rules.no_mounts && self.mounts.contains_key(&child) => {
                            return Err(EXDEV);
                        }
                        Node::Dir(_) => dir = child,
                        Node::Symlink(_) if rules.no_symlinks => return Err(ELOOP),
                        Node::Symlink(target) => {
                            *links += 1;
                            if *links > SYMLOOP_MAX {
                                return Err(ELOOP);
                            }
                            if target.first() == Some(&b'/') {
                                if rules.beneath {
                                    return Err(EXDEV);
                                }
                                dir = root;
                            }
                            push_components(&mut stack, target)?;
                        }
                        Node::File { .. } | Node::Socket => return Err(ENOTDIR),
                    }
                }
            }
        }
        // The directory we ended in must still be one (a symlink may have led elsewhere),
        // and searchable: the last component is looked up in it.
        self.dir(dir)?;
        self.may_search(dir)?;
        let last = match stack.pop() {
            Some(c) if c == b"." => Last::Dot,
            Some(c) if c == b".." => Last::DotDot,
            Some(c) => Last::Name(c),
            None => Last::Dot,
        };
        // The last name's entry, if the host has one, is in `dir` from here on: callers
        // that create, replace or remove it see it.
        if let Last::Name(n) = &last {
            self.lookup_child(dir, n)?;
        }
        Ok(Walk {
            dir,
            last,
            must_dir,
        })
    }

    /// Absolute paths start, and `..` stops, at directory `root` from now on (a process's
    /// `chroot`; [`ROOT_INO`] for `/`).
    pub(crate) fn set_walk_root(&mut self, root: Ino) {
        self.walk_root = root;
    }

    /// The root absolute paths start at (see [`Fs::set_walk_root`]).
    pub(crate) fn walk_root(&self) -> Ino {
        self.walk_root
    }

    /// Runs `f` with `rules` in force on its walks and, if given, `root` as their root
    /// (`openat2`: `RESOLVE_IN_ROOT` walks from the starting directory as a root,
    /// `RESOLVE_BENEATH` may not leave it).
    pub(crate) fn with_walk_rules<R>(
        &mut self,
        root: Option<Ino>,
        rules: WalkRules,
        f: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let saved = (self.walk_root, self.walk_rules);
        if let Some(r) = root {
            self.walk_root = r;
        }
        self.walk_rules = rules;
        let r = f(self);
        (self.walk_root, self.walk_rules) = saved;
        r
    }

    /// Runs `f` with `/` as the root (the kernel's own lookups of absolute paths it made,
    /// whatever root the current process has).
    pub(crate) fn at_real_root<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = core::mem::replace(&mut self.walk_root, ROOT_INO);
        let r = f(self);
        self.walk_root = saved;
        r
    }

    /// `..` of directory `dir`: its parent, or itself at the root.
    pub(super) fn parent_in_root(&self, dir: Ino) -> Result<Ino, Errno> {
        match dir == self.walk_root {
            true if self.walk_rules.beneath => Err(EXDEV),
            true => Ok(dir),
            false => Ok(self.dir(dir)?.parent),
        }
    }

    /// Looks up the last component of a walk.
    pub(super) fn lookup_last(&mut self, w: &Walk) -> Result<Option<Ino>, Errno> {
        Ok(match &w.last {
            Last::Root => Some(self.walk_root),
            Last::Dot => Some(w.dir),
            Last::DotDot => Some(self.parent_in_root(w.dir)?),
            Last::Name(n) => self.lookup_child(w.dir, n)?,
        })
    }

    /// Resolves a whole path; a final symbolic link is followed if `follow` (or if the path
    /// ends in `/`). A missing last component is `ino: None`, not an error.
    pub(super) fn resolve_full(
        &mut self,
        cwd: Ino,
        path: &[u8],
        follow: bool,
    ) -> Result<Resolved, Errno> {
        let mut links = 0;
        let mut walk = self.walk_parent(cwd, path, &mut links)?;
        loop {
            let Some(ino) = self.lookup_last(&walk)? else {
                return Ok(Resolved { walk, ino: None });
            };
            let target = match &self.inode(ino)?.node {
                Node::Symlink(_) if (follow || walk.must_dir) && self.walk_rules.no_symlinks => {
                    return Err(ELOOP);
                }
                Node::Symlink(t) if follow || walk.must_dir => Some(t.clone()),
                Node::Dir(_) if self.walk_rules.no_mounts && self.mounts.contains_key(&ino) => {
                    return Err(EXDEV);
                }
                _ => None,
            };
            if let Some(target) = target {
                links += 1;
                if links > SYMLOOP_MAX {
                    return Err(ELOOP);
                }
                let must_dir = walk.must_dir;
                walk = self.walk_parent(walk.dir, &target, &mut links)?;
                walk.must_dir |= must_dir;
                continue;
            }
            if walk.must_dir && !self.is_dir(ino) {
                return Err(ENOTDIR);
            }
            return Ok(Resolved {
                walk,
                ino: Some(ino),
            });
        }
    }

    /// The inode `path` names, following a final symbolic link if `follow`.
    pub(crate) fn lookup(&mut self, cwd: Ino, path: &[u8], follow: bool) -> Result<Ino, Errno> {
        self.resolve_full(cwd, path, follow)?.ino.ok_or(ENOENT)
    }

    /// The directory `path` names (for `chdir`): `ENOTDIR` if it is something else.
    pub(crate) fn lookup_dir(&mut self, cwd: Ino, path: &[u8]) -> Result<Ino, Errno> {
        let ino = self.lookup(cwd, path, true)?;
        self.dir(ino)?;
        Ok(ino)
    }
}
