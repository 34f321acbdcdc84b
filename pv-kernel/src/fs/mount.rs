//! The mount table: synthetic filesystems shown over directories of the ramfs (`/proc`,
//! `/sys`). A mount point is a ramfs directory whose inode the ramfs records
//! ([`super::Fs::mount`]); a path walk that reaches it hands the rest of the path to the
//! synthetic filesystem ([`super::Fs::find_mount`], `crate::linux::procfs`).
//!
//! Pure code: the kinds, their `statfs` magic numbers and the lines of `/proc/mounts` (the
//! mounted disks given by `crate::fs::disk`).

#![forbid(unsafe_code)]

use alloc::vec::Vec;

/// A synthetic filesystem kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MountKind {
    /// `proc` at `/proc`.
    Proc,
    /// `sysfs` at `/sys`.
    Sys,
    /// `devpts` at `/dev/pts`: `ptmx` and the pseudo-terminal slaves.
    DevPts,
}

impl MountKind {
    /// Every kind, in mount order.
    pub(crate) const ALL: [MountKind; 3] = [MountKind::Proc, MountKind::Sys, MountKind::DevPts];

    /// Where it is mounted.
    pub(crate) const fn path(self) -> &'static [u8] {
        match self {
            Self::Proc => b"/proc",
            Self::Sys => b"/sys",
            Self::DevPts => b"/dev/pts",
        }
    }

    /// Its `f_type` (`statfs`), Linux's magic number.
    pub(crate) const fn magic(self) -> u64 {
        match self {
            Self::Proc => 0x9fa0,     // PROC_SUPER_MAGIC
            Self::Sys => 0x6265_6572, // SYSFS_MAGIC
            Self::DevPts => 0x1cd1,   // DEVPTS_SUPER_MAGIC
        }
    }

    /// The filesystem type name (`/proc/mounts`, `/proc/filesystems`).
    pub(crate) const fn fs_type(self) -> &'static str {
        match self {
            Self::Proc => "proc",
            Self::Sys => "sysfs",
            Self::DevPts => "devpts",
        }
    }

    /// Its device number (`st_dev` of its files).
    pub(crate) const fn dev(self) -> u64 {
        match self {
            Self::Proc => 0x16,
            Self::Sys => 0x15,
            Self::DevPts => 0x18,
        }
    }
}

/// The magic number of the ramfs (everything else: tmpfs-like).
pub(crate) const TMPFS_MAGIC: u64 = 0x0102_1994;

/// A mounted disk as `/proc/mounts` shows it.
pub(crate) struct DiskMount {
    /// `vda`, ...
    pub(crate) name: [u8; 3],
    /// The mount point.
    pub(crate) path: Vec<u8>,
    /// Mounted read-only.
    pub(crate) read_only: bool,
}

/// The disks mounted now (`crate::fs::disk`).
pub(crate) fn disk_mounts() -> Vec<DiskMount> {
    super::disk::mounts()
        .into_iter()
        .map(|(slot, path, read_only)| DiskMount {
            name: crate::linux::files::dev::disk_name(slot),
            path,
            read_only,
        })
        .collect()
}

/// A path as `/proc/mounts` writes it: space, tab, newline and backslash in octal.
pub(crate) fn escape(path: &[u8]) -> alloc::string::String {
    let mut s = Vec::new();
    for &b in path {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => {
                s.extend_from_slice(alloc::format!("\\{b:03o}").as_bytes())
            }
            _ => s.push(b),
        }
    }
    alloc::string::String::from_utf8_lossy(&s).into_owned()
}

/// The text of `/proc/partitions` for disks of (slot, sectors): Linux's columns, sizes in
/// KiB blocks.
pub(crate) fn partitions_text(disks: &[(u32, u64)]) -> Vec<u8> {
    let mut s = alloc::string::String::from("major minor  #blocks  name\n\n");
    for &(slot, sectors) in disks {
        let (major, minor) = crate::linux::files::dev::Dev::Disk(slot as u8).number();
        let name = crate::linux::files::dev::disk_name(slot);
        s.push_str(&alloc::format!(
            "{major:4}  {minor:7} {:10} {}\n",
            sectors / 2,
            core::str::from_utf8(&name).unwrap_or("?")
        ));
    }
    s.into_bytes()
}

/// The text of `/proc/mounts`.
pub(crate) fn mounts_text() -> Vec<u8> {
    let extra = super::with(|fs| {
        let mounts = fs.extra_mounts();
        mounts
            .into_iter()
            .filter_map(|(ino, kind)| {
                let path = crate::linux::files::path::names::dir_path(fs, ino).ok()?;
                Some((path, kind))
            })
            .collect::<Vec<_>>()
    });
    mounts_text_with(&disk_mounts(), &extra)
}

/// The synthetic filesystem kind `mount(2)` names by `fstype`, if it is one.
pub(crate) fn synthetic_kind(fstype: &[u8]) -> Option<MountKind> {
    MountKind::ALL
        .into_iter()
        .find(|k| k.fs_type().as_bytes() == fstype)
}

/// The text of `/proc/mounts`: the root ramfs, `/dev` and `/dev/shm` (directories of the
/// root), every synthetic filesystem, and the mounted disks; then the synthetic filesystems
/// a program mounted elsewhere (`extra`: path and kind).
pub(crate) fn mounts_text_with(disks: &[DiskMount], extra: &[(Vec<u8>, MountKind)]) -> Vec<u8> {
    let mut s = alloc::string::String::new();
    s.push_str("rootfs / tmpfs rw,relatime 0 0\n");
    for k in MountKind::ALL {
        let p = core::str::from_utf8(k.path()).unwrap_or("?");
        s.push_str(&alloc::format!(
            "{t} {p} {t} rw,nosuid,nodev,noexec,relatime 0 0\n",
            t = k.fs_type()
        ));
    }
    s.push_str("tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n");
    for d in disks {
        s.push_str(&alloc::format!(
            "/dev/{} {} ext2 {},relatime 0 0\n",
            core::str::from_utf8(&d.name).unwrap_or("?"),
            escape(&d.path),
            if d.read_only { "ro" } else { "rw" }
        ));
    }
    for (path, k) in extra {
        s.push_str(&alloc::format!(
            "{t} {} {t} rw,relatime 0 0
",
            escape(path),
            t = k.fs_type()
        ));
    }
    s.into_bytes()
}

/// The text of `/proc/filesystems`.
pub(crate) fn filesystems_text() -> Vec<u8> {
    b"nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tramfs\nnodev\tdevpts\n\text2\n".to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_lines_have_six_fields() {
        let extra = [(b"/srv/root/proc".to_vec(), MountKind::Proc)];
        let t = mounts_text_with(
            &[
                DiskMount {
                    name: *b"vda",
                    path: b"/mnt/a b".to_vec(),
                    read_only: false,
                },
                DiskMount {
                    name: *b"vdb",
                    path: b"/data".to_vec(),
                    read_only: true,
                },
            ],
            &extra,
        );
        let s = core::str::from_utf8(&t).unwrap();
        assert!(s.lines().count() >= 3);
        for l in s.lines() {
            assert_eq!(l.split(' ').count(), 6, "{l}");
        }
        assert!(s.contains("proc /proc proc "));
        assert!(s.contains("sysfs /sys sysfs "));
        assert!(s.contains("/dev/vda /mnt/a\\040b ext2 rw,relatime 0 0\n"));
        assert!(s.contains("/dev/vdb /data ext2 ro,relatime 0 0\n"));
        assert!(filesystems_text().ends_with(b"\text2\n"));
        assert_eq!(
            partitions_text(&[(0, 131072), (1, 2048)]),
            b"major minor  #blocks  name\n\n 254        0      65536 vda\n 254       16       1024 vdb\n"
        );
    }

    #[test]
    fn magics_are_linux_values() {
        assert_eq!(MountKind::Proc.magic(), 0x9fa0);
        assert_eq!(MountKind::Sys.magic(), 0x62656572);
    }
}
