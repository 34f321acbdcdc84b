//! Block devices owned by one kernel at a time (`pvmux run --disk`, `pvmux disk move`;
//! docs/ABI.md §disks, docs/MULTIKERNEL.md "Devices and who owns them").
//!
//! A [`Disk`] is an image file the host opened for one tenant and locked
//! (`flock(LOCK_EX | LOCK_NB)` on its open file description): while a tenant holds it, no
//! other pvmux process can open it as a disk, and the lock goes when the file is closed —
//! when the guest has given the disk back ([`Disks::detach`]) or the tenant's host process
//! ends, however it ends. A tenant's [`Disks`] are its slots; the guest learns of attach and
//! detach requests through `pending::DISK` and answers each one (`DiskReport`).
//!
//! The guest is untrusted: every ring descriptor is copied out of guest memory once, then
//! checked (op, reserved field, sector range inside the disk with overflow checks, transfer
//! at most `IO_MAX`, buffer inside guest memory) before any I/O; data moves between the file
//! and a host buffer, and from it into guest memory by copy. Slot numbers, counts and
//! generations are checked against the host's own table; nothing the guest writes to the
//! ring after the copy matters. What the guest says of its mounts (`DiskMounted`) is only
//! shown (`pvmux disk ls`): its slot and flags are checked, its path bounded and shown only
//! if it is absolute, printable UTF-8 (`?` otherwise).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pvmux_hypercalls::disk::{
    event, flag, mounted, op, DiskDesc, DiskEvent, DESC_LEN, IO_MAX, MAX_DISKS, MOUNTED_PATH_MAX,
    PATH_MAX, RING_MAX, SECTOR_SIZE, STATUS_OFFSET,
};
use pvmux_hypercalls::HcError;
use zerocopy::{FromBytes, IntoBytes};

use crate::GuestMemory;

/// How long the host waits for the guest to answer an attach or a detach (a detach writes
/// the guest's cached changes first).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a tenant with disks is not snapshotted (`pvmux snapshot`).
pub const SNAPSHOT_REFUSAL: &str = "it has disks (--disk, pvmux disk move): move them to \
     another tenant first (pvmux disk move); a snapshot does not carry a disk's image";

/// Linux errno values the disk protocol uses.
mod errno {
    pub(super) const EIO: u32 = 5;
    pub(super) const EAGAIN: u32 = 11;
    pub(super) const EFAULT: u32 = 14;
    pub(super) const EBUSY: u32 = 16;
    pub(super) const EINVAL: u32 = 22;
    pub(super) const EROFS: u32 = 30;
}

/// Why a disk cannot be opened, attached or detached.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image cannot be opened.
    #[error("cannot open disk image {}: {source}", path.display())]
    Open {
        /// The image.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another kernel (another pvmux process) holds the image.
    #[error(
        "disk image {} is in use by another kernel (it is locked); `pvmux disk move` hands \
         a disk from one tenant to another",
        path.display()
    )]
    InUse {
        /// The image.
        path: PathBuf,
    },
    /// Not a regular file or block device, empty, or not whole sectors.
    #[error("disk image {} is not usable: {why}", path.display())]
    BadImage {
        /// The image.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A mount path the guest cannot use.
    #[error("disk mount path {0:?} must be absolute, not `/`, at most 255 bytes, without NUL")]
    BadMountPath(String),
    /// The tenant already has [`MAX_DISKS`] disks.
    #[error("the tenant already has {MAX_DISKS} disks")]
    TooMany,
    /// The same image is attached to this tenant already.
    #[error("disk image {} is already attached to this tenant", path.display())]
    AlreadyAttached {
        /// The image.
        path: PathBuf,
    },
    /// No disk matches the name given.
    #[error("the tenant has no disk {0:?}")]
    NoSuchDisk(String),
    /// More than one disk, and none named.
    #[error("the tenant has {0} disks: name one (its name, vdX, or its image path)")]
    Ambiguous(usize),
    /// An attach or detach of the same disk is under way.
    #[error("disk {0} is busy with another request")]
    Busy(String),
    /// The guest refused (`errno` is its Linux error number).
    #[error("the guest {what}: {}", errno_text(*errno))]
    Guest {
        /// What it refused.
        what: &'static str,
        /// Its errno.
        errno: u32,
    },
    /// The guest did not answer in time.
    #[error("the guest kernel did not answer within {0:?}")]
    NoAnswer(Duration),
    /// The tenant is not running.
    #[error("the tenant is not running")]
    NotRunning,
    /// A kernel switch (`pvmux upgrade`) or a snapshot holds the disks: they stay as they
    /// are until it is done.
    #[error(
        "an upgrade or a snapshot of the tenant's kernel is under way: try again when it is done"
    )]
    Held,
}

/// A Linux errno as text for messages.
fn errno_text(e: u32) -> String {
    let s = match e {
        errno::EBUSY => "files are open on the disk, or its mount point is in use (EBUSY)",
        errno::EAGAIN => {
            "a guest program unmounted the disk lazily (umount -l) and files of it are still \
             open; the guest releases it when they are closed: try again then (EAGAIN)"
        }
        errno::EINVAL => "not an ext2 filesystem the guest can mount (EINVAL)",
        117 => "the filesystem is corrupted (EUCLEAN); run e2fsck on the image",
        errno::EIO => "I/O error (EIO)",
        errno::EROFS => "read-only (EROFS)",
        20 => "a component of the mount path is not a directory (ENOTDIR)",
        12 => "out of memory (ENOMEM)",
        _ => return format!("errno {e}"),
    };
    s.to_owned()
}

/// An open, locked disk image.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    file: File,
    read_only: bool,
    sectors: u64,
    mount: Vec<u8>,
}

/// What describes a disk to the CLI (`pvmux disk ls`, `disk move`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// Its name in the guest (`vda`, `vdb`, ... by slot).
    pub name: String,
    /// The image (absolute).
    pub path: PathBuf,
    /// Read-only.
    pub read_only: bool,
    /// Size in bytes.
    pub size: u64,
    /// The mount path the host gave the guest kernel (`--disk FILE,mount=PATH`, `disk move
    /// --mount`; empty: none, the guest's programs mount it or not). A move mounts it there
    /// in the other kernel.
    pub mount: String,
    /// Where it is mounted in the guest now, as the guest says (`DiskMounted`; `?` for a
    /// path the host does not show); empty: not mounted. Until the guest says anything,
    /// `mount` once attached.
    pub mounted_at: String,
    /// Who mounted it: `pvmux` (the guest kernel, at `mount`), `guest` (a guest program's
    /// `mount(2)`); empty when not mounted.
    pub mounted_by: &'static str,
    /// The mount is read-only (a read-only disk, or a guest program's read-only mount).
    pub mount_read_only: bool,
    /// `attaching`, `mounted`, `attached` (not mounted), `unmounting` (a guest program
    /// unmounted it lazily and files of it are still open), `detaching`.
    pub state: &'static str,
}

/// Whether `p` is a mount path the guest takes.
pub fn mount_path_ok(p: &str) -> bool {
    p.starts_with('/')
        && !p.trim_matches('/').is_empty()
        && p.len() < PATH_MAX
        && !p.contains('\0')
        && !p.split('/').any(|c| c == "." || c == "..")
}

impl Disk {
    /// Opens and locks image `path` (read-only with `read_only`), to be mounted at `mount`
    /// (empty: attached as `/dev/vdX` only, for the guest to mount).
    pub fn open(path: &Path, read_only: bool, mount: &str) -> Result<Self, DiskError> {
        if !mount.is_empty() && !mount_path_ok(mount) {
            return Err(DiskError::BadMountPath(mount.to_owned()));
        }
        let open_err = |source| DiskError::Open {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        let abs = std::fs::canonicalize(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let bad = |why: &str| DiskError::BadImage {
            path: abs.clone(),
            why: why.to_owned(),
        };
        use std::os::unix::fs::FileTypeExt;
        let size = if meta.file_type().is_block_device() {
            use std::io::Seek;
            (&file).seek(std::io::SeekFrom::End(0)).map_err(open_err)?
        } else if meta.is_file() {
            meta.len()
        } else {
            return Err(bad("not a regular file or block device"));
        };
        if size == 0 || !size.is_multiple_of(SECTOR_SIZE) {
            return Err(bad("its size is not a whole number of 512-byte sectors"));
        }
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(DiskError::InUse { path: abs }),
            Err(e) => return Err(open_err(e.into())),
        }
        Ok(Self {
            path: abs,
            file,
            read_only,
            sectors: size / SECTOR_SIZE,
            mount: mount.as_bytes().to_vec(),
        })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Performs one checked descriptor: 0 or an errno.
    fn perform(&self, mem: &GuestMemory, d: &DiskDesc) -> u32 {
        if d.reserved != 0 {
            return errno::EINVAL;
        }
        match d.op {
            op::FLUSH => {
                if d.count != 0 || d.sector != 0 || d.buf_gpa != 0 {
                    return errno::EINVAL;
                }
                if self.read_only {
                    return 0;
                }
                match self.file.sync_data() {
                    Ok(()) => 0,
                    Err(_) => errno::EIO,
                }
            }
            op::READ | op::WRITE => {
                let len = u64::from(d.count) * SECTOR_SIZE;
                let inside = d
                    .sector
                    .checked_add(u64::from(d.count))
                    .is_some_and(|end| end <= self.sectors);
                if d.count == 0 || len > IO_MAX || !inside {
                    return errno::EINVAL;
                }
                if mem.check_range(d.buf_gpa, len).is_err() {
                    return errno::EFAULT;
                }
                let off = d.sector * SECTOR_SIZE;
                if d.op == op::READ {
                    let mut buf = vec![0u8; len as usize];
                    if self.file.read_exact_at(&mut buf, off).is_err() {
                        return errno::EIO;
                    }
                    match mem.write(d.buf_gpa, &buf) {
                        Ok(()) => 0,
                        Err(_) => errno::EFAULT,
                    }
                } else {
                    if self.read_only {
                        return errno::EROFS;
                    }
                    let Ok(buf) = mem.read_vec(d.buf_gpa, len as usize) else {
                        return errno::EFAULT;
                    };
                    match self.file.write_all_at(&buf, off) {
                        Ok(()) => 0,
                        Err(_) => errno::EIO,
                    }
                }
            }
            _ => errno::EINVAL,
        }
    }
}

/// Where an attachment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Given to the guest, not yet mounted.
    Attaching,
    /// Mounted.
    Attached,
    /// Asked back.
    Detaching,
}

/// What the guest last said of a disk's mount (`DiskMounted`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum View {
    /// Nothing yet (a kernel that does not say: the host shows the path it gave).
    Unknown,
    /// Not mounted.
    Unmounted,
    /// Mounted at `path` (checked, or `?`) with `mounted` flags.
    Mounted { path: String, flags: u64 },
}

#[derive(Debug)]
struct Slot {
    disk: Arc<Disk>,
    /// Where the guest says it is mounted.
    view: View,
    generation: u64,
    state: State,
    /// The guest has taken the event of the current state.
    taken: bool,
    /// The guest's answer to the current request (`None`: none yet).
    answer: Option<u32>,
    /// Someone waits for the answer (a hot-plug, not a boot disk).
    awaited: bool,
}

#[derive(Debug, Default)]
struct Table {
    slots: [Option<Slot>; MAX_DISKS as usize],
    next_gen: u64,
    /// A kernel switch holds the disks ([`Disks::hold`]): no attach or detach starts.
    held: bool,
}

/// A tenant's disks.
#[derive(Debug, Default)]
pub struct Disks {
    table: Mutex<Table>,
    answered: Condvar,
}

/// The guest's name of slot `i`.
fn slot_name(i: usize) -> String {
    format!("vd{}", char::from(b'a' + i as u8))
}

/// Slot `i` as the CLI shows it.
fn info(i: usize, s: &Slot) -> DiskInfo {
    let mount = String::from_utf8_lossy(&s.disk.mount).into_owned();
    let (mounted_at, mounted_by, mount_ro, detached) = match (&s.view, s.state) {
        (_, State::Attaching) | (View::Unmounted, _) => (String::new(), "", false, false),
        (View::Unknown, _) if mount.is_empty() => (String::new(), "", false, false),
        (View::Unknown, _) => (mount.clone(), "pvmux", s.disk.read_only, false),
        (View::Mounted { path, flags }, _) => (
            path.clone(),
            if flags & mounted::BY_PROGRAM != 0 {
                "guest"
            } else {
                "pvmux"
            },
            flags & mounted::READ_ONLY != 0 || s.disk.read_only,
            flags & mounted::DETACHED != 0,
        ),
    };
    let state = match s.state {
        State::Attaching => "attaching",
        State::Detaching => "detaching",
        State::Attached if detached => "unmounting",
        State::Attached if mounted_at.is_empty() => "attached",
        State::Attached => "mounted",
    };
    DiskInfo {
        name: slot_name(i),
        path: s.disk.path.clone(),
        read_only: s.disk.read_only,
        size: s.disk.sectors * SECTOR_SIZE,
        mount,
        mounted_at,
        mounted_by,
        mount_read_only: mount_ro,
        state,
    }
}

/// A guest's mount path as the host shows it: absolute, printable UTF-8, else `None`.
fn shown_path(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    (s.starts_with('/') && !s.chars().any(char::is_control)).then(|| s.to_owned())
}

impl Disks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Disks given at start (`--disk`): in their slots, to be attached when the guest
    /// boots.
    pub fn with(disks: Vec<Disk>) -> Result<Self, DiskError> {
        let d = Self::default();
        for disk in disks {
            d.insert(disk, false)?;
        }
        Ok(d)
    }

    fn insert(&self, disk: Disk, awaited: bool) -> Result<(usize, u64), DiskError> {
        let mut t = self.lock();
        if t.held {
            return Err(DiskError::Held);
        }
        if t.slots.iter().flatten().any(|s| s.disk.path == disk.path) {
            return Err(DiskError::AlreadyAttached { path: disk.path });
        }
        if !disk.mount.is_empty() && t.slots.iter().flatten().any(|s| s.disk.mount == disk.mount) {
            return Err(DiskError::BadMountPath(format!(
                "{} (another disk of this tenant is mounted there)",
                String::from_utf8_lossy(&disk.mount)
            )));
        }
        let i = t
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(DiskError::TooMany)?;
        t.next_gen += 1;
        let generation = t.next_gen;
        t.slots[i] = Some(Slot {
            disk: Arc::new(disk),
            view: View::Unknown,
            generation,
            state: State::Attaching,
            taken: false,
            answer: None,
            awaited,
        });
        Ok((i, generation))
    }

    /// The disks now.
    pub fn list(&self) -> Vec<DiskInfo> {
        let t = self.lock();
        t.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some(info(i, s.as_ref()?)))
            .collect()
    }

    /// The slot `which` names (its guest name, `vdX`, or its image's path); with `None`, the
    /// only disk.
    fn find(&self, t: &Table, which: Option<&str>) -> Result<usize, DiskError> {
        let used: Vec<usize> = (0..t.slots.len())
            .filter(|&i| t.slots[i].is_some())
            .collect();
        match which {
            None => match used.as_slice() {
                [i] => Ok(*i),
                [] => Err(DiskError::NoSuchDisk(String::new())),
                _ => Err(DiskError::Ambiguous(used.len())),
            },
            Some(w) => {
                let canon = std::fs::canonicalize(w).ok();
                used.into_iter()
                    .find(|&i| {
                        let s = t.slots[i].as_ref().map(|s| &s.disk.path);
                        slot_name(i) == w
                            || s.map(|p| p.as_path()) == Some(Path::new(w))
                            || (canon.is_some() && s == canon.as_ref())
                    })
                    .ok_or_else(|| DiskError::NoSuchDisk(w.to_owned()))
            }
        }
    }

    /// Waits for the guest's answer to slot `i`'s request of `generation`.
    fn wait(&self, i: usize, generation: u64) -> Option<u32> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut t = self.lock();
        loop {
            match &t.slots[i] {
                Some(s) if s.generation == generation => {
                    if let Some(a) = s.answer {
                        return Some(a);
                    }
                }
                _ => return None,
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            t = self
                .answered
                .wait_timeout(t, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Hot-plugs `disk` (`raise` tells the guest) and waits until the guest mounted it.
    /// On failure the disk is closed (its lock released) and the guest's reason returned.
    pub fn attach(&self, disk: Disk, raise: impl Fn()) -> Result<DiskInfo, DiskError> {
        let (i, generation) = self.insert(disk, true)?;
        raise();
        let answer = self.wait(i, generation);
        let mut t = self.lock();
        let ok = answer == Some(0);
        if !ok {
            t.slots[i] = None;
            drop(t);
            return Err(match answer {
                Some(e) => DiskError::Guest {
                    what: "cannot mount the disk",
                    errno: e,
                },
                None => DiskError::NoAnswer(ANSWER_TIMEOUT),
            });
        }
        drop(t);
        self.list()
            .into_iter()
            .find(|d| d.name == slot_name(i))
            .ok_or(DiskError::NotRunning)
    }

    /// Asks the guest to give disk `which` back (sync and unmount) and waits; then closes
    /// the image (releasing its lock). Returns the image's path, mode and mount path. If the
    /// guest refuses (files open) or does not answer, the disk stays as it was.
    pub fn detach(&self, which: Option<&str>, raise: impl Fn()) -> Result<DiskInfo, DiskError> {
        let (i, generation, info) = {
            let mut t = self.lock();
            if t.held {
                return Err(DiskError::Held);
            }
            let i = self.find(&t, which)?;
            let info = {
                let s = t.slots[i].as_ref().ok_or(DiskError::NotRunning)?;
                DiskInfo {
                    state: "detached",
                    ..info(i, s)
                }
            };
            t.next_gen += 1;
            let generation = t.next_gen;
            let s = t.slots[i].as_mut().ok_or(DiskError::NotRunning)?;
            if s.state != State::Attached {
                return Err(DiskError::Busy(slot_name(i)));
            }
            s.state = State::Detaching;
            s.generation = generation;
            s.taken = false;
            s.answer = None;
            s.awaited = true;
            (i, generation, info)
        };
        raise();
        let answer = self.wait(i, generation);
        let mut t = self.lock();
        match answer {
            Some(0) => {
                // Closing the file releases the lock (once no I/O holds the Arc).
                t.slots[i] = None;
                Ok(info)
            }
            other => {
                if let Some(s) = t.slots[i].as_mut() {
                    if s.generation == generation {
                        s.state = State::Attached;
                        s.answer = None;
                    }
                }
                Err(match other {
                    Some(e) => DiskError::Guest {
                        what: "cannot give the disk back",
                        errno: e,
                    },
                    None => DiskError::NoAnswer(ANSWER_TIMEOUT),
                })
            }
        }
    }

    /// Holds the disks for a kernel switch (`pvmux upgrade`): from here until
    /// [`Self::release`], no attach or detach starts ([`DiskError::Held`]). Refused,
    /// in words, while one is under way (a switch carries a disk the guest has, not one
    /// on its way in or out).
    pub fn hold(&self) -> Result<(), String> {
        let mut t = self.lock();
        let busy =
            t.slots.iter().enumerate().find_map(|(i, s)| {
                Some((i, s.as_ref()?)).filter(|(_, s)| s.state != State::Attached)
            });
        if let Some((i, s)) = busy {
            let doing = if s.state == State::Attaching {
                "being attached"
            } else {
                "being given back"
            };
            return Err(format!(
                "disk {} is {doing} (pvmux disk move): try again when it is done",
                slot_name(i)
            ));
        }
        t.held = true;
        Ok(())
    }

    /// Ends [`Self::hold`].
    pub fn release(&self) {
        self.lock().held = false;
    }

    /// Whether the disks a kernel's hand-over record names — (slot, size in sectors,
    /// read-only) — are exactly this tenant's: else what differs, in words.
    pub fn check_carried(&self, carried: &[(u32, u64, bool)]) -> Result<(), String> {
        let t = self.lock();
        let own: Vec<(u32, u64, bool)> = t
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as u32, s.as_ref()?)))
            .map(|(i, s)| (i, s.disk.sectors, s.disk.read_only))
            .collect();
        if own == carried {
            return Ok(());
        }
        let names = |v: &[(u32, u64, bool)]| {
            let n: Vec<String> = v.iter().map(|d| slot_name(d.0 as usize)).collect();
            if n.is_empty() {
                "none".to_owned()
            } else {
                n.join(", ")
            }
        };
        Err(format!(
            "its kernel's record names disks {} (size and mode as it says), the tenant has {}",
            names(carried),
            names(&own)
        ))
    }

    /// `DiskTake(event_gpa)`: the next event not yet taken.
    pub(crate) fn hc_take(&self, mem: &GuestMemory, gpa: u64) -> Result<u64, HcError> {
        mem.check_range(gpa, pvmux_hypercalls::disk::EVENT_LEN)
            .map_err(|_| HcError::BadAddress)?;
        let mut t = self.lock();
        for (i, s) in t.slots.iter_mut().enumerate() {
            let Some(s) = s.as_mut() else { continue };
            if s.taken || s.answer.is_some() || s.state == State::Attached {
                continue;
            }
            let mut e = DiskEvent {
                slot: i as u32,
                kind: if s.state == State::Attaching {
                    event::ATTACH
                } else {
                    event::DETACH
                },
                flags: if s.disk.read_only { flag::READ_ONLY } else { 0 },
                path_len: s.disk.mount.len() as u32,
                sectors: s.disk.sectors,
                generation: s.generation,
                ..DiskEvent::default()
            };
            e.path[..s.disk.mount.len()].copy_from_slice(&s.disk.mount);
            mem.write(gpa, e.as_bytes())
                .map_err(|_| HcError::BadAddress)?;
            s.taken = true;
            return Ok(1);
        }
        Ok(0)
    }

    /// `DiskReport(slot, generation, errno)`.
    pub(crate) fn hc_report(&self, a: [u64; 6]) -> Result<u64, HcError> {
        let (slot, generation, err) = (a[0], a[1], a[2]);
        let err = u32::try_from(err).map_err(|_| HcError::InvalidArgument)?;
        let mut t = self.lock();
        let s = usize::try_from(slot)
            .ok()
            .and_then(|i| t.slots.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(HcError::InvalidArgument)?;
        if s.generation != generation
            || !s.taken
            || s.answer.is_some()
            || s.state == State::Attached
        {
            return Err(HcError::InvalidArgument);
        }
        match (s.state, s.awaited) {
            (State::Attaching, false) => {
                // A boot disk: nobody waits; keep it if mounted, drop it if not.
                if err == 0 {
                    s.state = State::Attached;
                } else {
                    tracing::warn!(disk = %s.disk.path.display(), err, "the guest could not mount a disk");
                    t.slots[slot as usize] = None;
                }
            }
            (State::Attaching, true) if err == 0 => {
                s.state = State::Attached;
                s.answer = Some(0);
                s.awaited = false;
            }
            _ => s.answer = Some(err),
        }
        self.answered.notify_all();
        Ok(0)
    }

    /// `DiskMounted(slot, path_gpa, path_len, flags)`: where the guest says disk `slot` is
    /// mounted now. Checked (slot, flags, path length, guest memory, printable path); a path
    /// that is too long or not printable is recorded as `?` and refused.
    pub(crate) fn hc_mounted(&self, mem: &GuestMemory, a: [u64; 6]) -> Result<u64, HcError> {
        let (slot, gpa, len, flags) = (a[0], a[1], a[2], a[3]);
        if flags & !mounted::ALL != 0 || (len == 0 && flags != 0) {
            return Err(HcError::InvalidArgument);
        }
        // The path is copied before the table is locked (nothing of it is trusted).
        let path = if len == 0 || len > MOUNTED_PATH_MAX {
            None
        } else {
            let raw = mem
                .read_vec(gpa, len as usize)
                .map_err(|_| HcError::BadAddress)?;
            Some(shown_path(&raw))
        };
        let mut t = self.lock();
        let s = usize::try_from(slot)
            .ok()
            .and_then(|i| t.slots.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(HcError::InvalidArgument)?;
        let (view, result) = match path {
            _ if len == 0 => (View::Unmounted, Ok(0)),
            None => (
                View::Mounted {
                    path: "?".to_owned(),
                    flags,
                },
                Err(HcError::TooLarge),
            ),
            Some(None) => (
                View::Mounted {
                    path: "?".to_owned(),
                    flags,
                },
                Err(HcError::InvalidArgument),
            ),
            Some(Some(p)) => (View::Mounted { path: p, flags }, Ok(0)),
        };
        s.view = view;
        result
    }

    /// `DiskSubmit(slot, ring_gpa, count)`: performs the descriptors.
    pub(crate) fn hc_submit(&self, mem: &GuestMemory, a: [u64; 6]) -> Result<u64, HcError> {
        let (slot, ring, count) = (a[0], a[1], a[2]);
        if count == 0 || count > RING_MAX {
            return Err(HcError::InvalidArgument);
        }
        let disk = {
            let t = self.lock();
            usize::try_from(slot)
                .ok()
                .and_then(|i| t.slots.get(i))
                .and_then(Option::as_ref)
                .map(|s| Arc::clone(&s.disk))
                .ok_or(HcError::InvalidArgument)?
        };
        // One copy of the whole ring; the guest's later writes to it do not matter.
        let raw = mem
            .read_vec(ring, (count * DESC_LEN) as usize)
            .map_err(|_| HcError::BadAddress)?;
        for k in 0..count {
            let at = (k * DESC_LEN) as usize;
            let st = match DiskDesc::read_from_bytes(&raw[at..at + DESC_LEN as usize]) {
                Ok(d) => disk.perform(mem, &d),
                Err(_) => errno::EINVAL,
            };
            mem.write(ring + k * DESC_LEN + STATUS_OFFSET, &st.to_le_bytes())
                .map_err(|_| HcError::BadAddress)?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: &str, len: u64) -> PathBuf {
        let p = std::env::temp_dir().join(format!("pvmux-disk-{tag}-{}", std::process::id()));
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        p
    }

    #[test]
    fn images_are_locked_checked_and_mount_paths_validated() {
        let p = image("lock", 1 << 20);
        let a = Disk::open(&p, false, "/mnt/d").unwrap();
        assert!(matches!(
            Disk::open(&p, false, "/mnt/d"),
            Err(DiskError::InUse { .. })
        ));
        assert!(matches!(
            Disk::open(&p, true, "/mnt/d"),
            Err(DiskError::InUse { .. })
        ));
        drop(a);
        let b = Disk::open(&p, true, "/x").unwrap();
        drop(b);
        // No mount path: attached only (the guest's programs mount it).
        drop(Disk::open(&p, false, "").unwrap());
        for bad in ["/", "rel", "/a/../b", "/a\0b"] {
            assert!(
                matches!(Disk::open(&p, false, bad), Err(DiskError::BadMountPath(_))),
                "{bad:?}"
            );
        }
        let odd = image("odd", 1000);
        assert!(matches!(
            Disk::open(&odd, false, "/m"),
            Err(DiskError::BadImage { .. })
        ));
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(odd);
    }

    #[test]
    fn a_switch_holds_the_disks_and_checks_the_records_list() {
        let (p, q) = (image("hold-a", 64 * 512), image("hold-b", 32 * 512));
        let disks = Disks::with(vec![
            Disk::open(&p, false, "/a").unwrap(),
            Disk::open(&q, true, "").unwrap(),
        ])
        .unwrap();
        // Boot disks not mounted yet: being attached, no hold.
        assert!(disks.hold().unwrap_err().contains("vda is being attached"));
        for s in disks.lock().slots.iter_mut().flatten() {
            s.state = State::Attached;
        }
        disks.hold().unwrap();
        // Nothing comes or goes while held.
        let r = image("hold-c", 8 * 512);
        assert!(matches!(
            disks.attach(Disk::open(&r, false, "").unwrap(), || {}),
            Err(DiskError::Held)
        ));
        assert!(matches!(
            disks.detach(Some("vda"), || {}),
            Err(DiskError::Held)
        ));
        // The record must name exactly these, with their sizes and modes.
        disks
            .check_carried(&[(0, 64, false), (1, 32, true)])
            .unwrap();
        for bad in [
            &[(0, 64, false)][..],
            &[(0, 64, false), (1, 32, false)],
            &[(0, 64, false), (1, 33, true)],
            &[(0, 64, false), (2, 32, true)],
            &[],
        ] {
            let e = disks.check_carried(bad).unwrap_err();
            assert!(e.contains("the tenant has vda, vdb"), "{e}");
        }
        disks.release();
        // Released: a disk may come in again.
        assert_eq!(
            disks
                .insert(Disk::open(&r, false, "").unwrap(), true)
                .unwrap()
                .0,
            2
        );
        for f in [p, q, r] {
            let _ = std::fs::remove_file(f);
        }
    }

    #[test]
    fn descriptors_are_checked_one_by_one() {
        let p = image("ring", 64 * 512);
        let mem = GuestMemory::new(16 << 20).unwrap();
        let disks = Disks::with(vec![Disk::open(&p, false, "/m").unwrap()]).unwrap();
        let ring = 0x1000;
        let buf = 0x10000;
        mem.write(buf, &[0xab; 1024]).unwrap();
        let descs = [
            DiskDesc {
                op: op::WRITE,
                sector: 62,
                count: 2,
                buf_gpa: buf,
                ..DiskDesc::default()
            },
            DiskDesc {
                op: op::WRITE,
                sector: 63,
                count: 2,
                buf_gpa: buf,
                ..DiskDesc::default()
            },
            DiskDesc {
                op: op::READ,
                sector: u64::MAX,
                count: 2,
                buf_gpa: buf,
                ..DiskDesc::default()
            },
            DiskDesc {
                op: op::READ,
                sector: 0,
                count: 1,
                buf_gpa: (16 << 20) - 100,
                ..DiskDesc::default()
            },
            DiskDesc {
                op: 9,
                ..DiskDesc::default()
            },
            DiskDesc {
                op: op::FLUSH,
                ..DiskDesc::default()
            },
            DiskDesc {
                op: op::READ,
                sector: 0,
                count: 4096,
                buf_gpa: buf,
                ..DiskDesc::default()
            },
            DiskDesc {
                op: op::READ,
                sector: 62,
                count: 1,
                buf_gpa: 0x20000,
                reserved: 0,
                status: 77,
            },
        ];
        for (k, d) in descs.iter().enumerate() {
            mem.write(ring + k as u64 * DESC_LEN, d.as_bytes()).unwrap();
        }
        let n = disks
            .hc_submit(&mem, [0, ring, descs.len() as u64, 0, 0, 0])
            .unwrap();
        assert_eq!(n, 8);
        let status: Vec<u32> = (0..8)
            .map(|k| mem.read_u32(ring + k * DESC_LEN + STATUS_OFFSET).unwrap())
            .collect();
        assert_eq!(
            status,
            [
                0,
                errno::EINVAL,
                errno::EINVAL,
                errno::EFAULT,
                errno::EINVAL,
                0,
                errno::EINVAL,
                0
            ]
        );
        assert_eq!(mem.read_vec(0x20000, 512).unwrap(), vec![0xab; 512]);
        assert_eq!(std::fs::read(&p).unwrap()[62 * 512..], vec![0xab; 1024]);
        assert_eq!(
            disks.hc_submit(&mem, [1, ring, 1, 0, 0, 0]),
            Err(HcError::InvalidArgument)
        );
        assert_eq!(
            disks.hc_submit(&mem, [0, ring, 65, 0, 0, 0]),
            Err(HcError::InvalidArgument)
        );
        assert_eq!(
            disks.hc_submit(&mem, [0, 16 << 20, 1, 0, 0, 0]),
            Err(HcError::BadAddress)
        );
        // Events: the boot disk's attach, once; a report for the wrong generation is refused.
        assert_eq!(disks.hc_take(&mem, 0x3000).unwrap(), 1);
        assert_eq!(disks.hc_take(&mem, 0x3000).unwrap(), 0);
        let e = DiskEvent::read_from_bytes(&mem.read_vec(0x3000, 288).unwrap()).unwrap();
        assert_eq!(
            (e.slot, e.kind, e.mount_path(), e.sectors),
            (0, event::ATTACH, Some(&b"/m"[..]), 64)
        );
        assert_eq!(
            disks.hc_report([0, e.generation + 1, 0, 0, 0, 0]),
            Err(HcError::InvalidArgument)
        );
        assert_eq!(disks.hc_report([0, e.generation, 0, 0, 0, 0]), Ok(0));
        assert_eq!(disks.list()[0].state, "mounted");
        // A read-only disk refuses writes.
        drop(disks);
        let ro = Disks::with(vec![Disk::open(&p, true, "/m").unwrap()]).unwrap();
        mem.write(ring, descs[0].as_bytes()).unwrap();
        ro.hc_submit(&mem, [0, ring, 1, 0, 0, 0]).unwrap();
        assert_eq!(mem.read_u32(ring + STATUS_OFFSET).unwrap(), errno::EROFS);
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn the_guests_mounts_are_shown_only_once_checked() {
        let p = image("mounted", 64 * 512);
        let mem = GuestMemory::new(16 << 20).unwrap();
        let disks = Disks::with(vec![Disk::open(&p, false, "").unwrap()]).unwrap();
        assert_eq!(disks.hc_take(&mem, 0x3000).unwrap(), 1);
        let g = DiskEvent::read_from_bytes(&mem.read_vec(0x3000, 288).unwrap())
            .unwrap()
            .generation;
        disks.hc_report([0, g, 0, 0, 0, 0]).unwrap();
        let shown = |d: &Disks| {
            let i = d.list().remove(0);
            (i.mounted_at, i.mounted_by, i.mount_read_only, i.state)
        };
        assert_eq!(shown(&disks), (String::new(), "", false, "attached"));
        // A guest program's read-only mount.
        mem.write(0x4000, b"/mnt/a b").unwrap();
        let by = mounted::BY_PROGRAM | mounted::READ_ONLY;
        assert_eq!(disks.hc_mounted(&mem, [0, 0x4000, 8, by, 0, 0]), Ok(0));
        assert_eq!(
            shown(&disks),
            ("/mnt/a b".to_owned(), "guest", true, "mounted")
        );
        // Refused, nothing changed: unknown flags, flags without a path, no such slot, a
        // path outside guest memory.
        for a in [
            [0, 0x4000, 8, 1 << 3, 0, 0],
            [0, 0, 0, mounted::READ_ONLY, 0, 0],
            [1, 0x4000, 8, 0, 0, 0],
            [u64::MAX, 0x4000, 8, 0, 0, 0],
        ] {
            assert_eq!(
                disks.hc_mounted(&mem, a),
                Err(HcError::InvalidArgument),
                "{a:?}"
            );
        }
        assert_eq!(
            disks.hc_mounted(&mem, [0, (16 << 20) - 4, 8, 0, 0, 0]),
            Err(HcError::BadAddress)
        );
        assert_eq!(shown(&disks).0, "/mnt/a b");
        // Not shown as given: relative, control characters, not UTF-8, too long.
        for bad in [&b"mnt"[..], b"/m\x1b[2J", b"/m\n", b"/\xff"] {
            mem.write(0x4000, bad).unwrap();
            assert_eq!(
                disks.hc_mounted(&mem, [0, 0x4000, bad.len() as u64, 0, 0, 0]),
                Err(HcError::InvalidArgument),
                "{bad:?}"
            );
            assert_eq!(shown(&disks), ("?".to_owned(), "pvmux", false, "mounted"));
        }
        assert_eq!(
            disks.hc_mounted(&mem, [0, 0x4000, MOUNTED_PATH_MAX + 1, 0, 0, 0]),
            Err(HcError::TooLarge)
        );
        assert_eq!(shown(&disks).0, "?");
        // Lazily unmounted while in use, then released.
        mem.write(0x4000, b"/m").unwrap();
        let lazy = mounted::BY_PROGRAM | mounted::DETACHED;
        assert_eq!(disks.hc_mounted(&mem, [0, 0x4000, 2, lazy, 0, 0]), Ok(0));
        assert_eq!(
            shown(&disks),
            ("/m".to_owned(), "guest", false, "unmounting")
        );
        assert_eq!(disks.hc_mounted(&mem, [0, 0, 0, 0, 0, 0]), Ok(0));
        assert_eq!(shown(&disks), (String::new(), "", false, "attached"));
        // The guest kernel's own mount.
        assert_eq!(disks.hc_mounted(&mem, [0, 0x4000, 2, 0, 0, 0]), Ok(0));
        assert_eq!(shown(&disks), ("/m".to_owned(), "pvmux", false, "mounted"));
        drop(disks);
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn disks_without_a_mount_path_are_attached_only() {
        let (p, q) = (image("nomount1", 64 * 512), image("nomount2", 64 * 512));
        let mem = GuestMemory::new(16 << 20).unwrap();
        // Two disks without a path do not collide over "their" mount path.
        let disks = Disks::with(vec![
            Disk::open(&p, false, "").unwrap(),
            Disk::open(&q, true, "").unwrap(),
        ])
        .unwrap();
        for slot in 0..2 {
            assert_eq!(disks.hc_take(&mem, 0x3000).unwrap(), 1);
            let e = DiskEvent::read_from_bytes(&mem.read_vec(0x3000, 288).unwrap()).unwrap();
            assert_eq!((e.slot, e.kind, e.path_len), (slot, event::ATTACH, 0));
            assert_eq!(e.mount_path(), None);
            disks
                .hc_report([u64::from(slot), e.generation, 0, 0, 0, 0])
                .unwrap();
        }
        let l = disks.list();
        assert_eq!(
            l.iter()
                .map(|d| (d.name.as_str(), d.mount.as_str(), d.state))
                .collect::<Vec<_>>(),
            [("vda", "", "attached"), ("vdb", "", "attached")]
        );
        drop(disks);
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(q);
    }

    #[test]
    fn detach_waits_for_the_guest_and_releases_the_lock() {
        let p = image("detach", 64 * 512);
        let mem = GuestMemory::new(16 << 20).unwrap();
        let disks = Arc::new(Disks::with(vec![Disk::open(&p, false, "/m").unwrap()]).unwrap());
        assert_eq!(disks.hc_take(&mem, 0x3000).unwrap(), 1);
        let g = DiskEvent::read_from_bytes(&mem.read_vec(0x3000, 288).unwrap())
            .unwrap()
            .generation;
        disks.hc_report([0, g, 0, 0, 0, 0]).unwrap();
        // The guest refuses once (files open), then agrees.
        for answer in [errno::EBUSY, 0] {
            let d2 = Arc::clone(&disks);
            let mem2 = GuestMemory::new(16 << 20).unwrap();
            let guest = std::thread::spawn(move || loop {
                if d2.hc_take(&mem2, 0x3000).unwrap() == 1 {
                    let e =
                        DiskEvent::read_from_bytes(&mem2.read_vec(0x3000, 288).unwrap()).unwrap();
                    assert_eq!(e.kind, event::DETACH);
                    d2.hc_report([0, e.generation, u64::from(answer), 0, 0, 0])
                        .unwrap();
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            });
            let r = disks.detach(Some("vda"), || {});
            guest.join().unwrap();
            if answer == 0 {
                assert_eq!(r.unwrap().path, std::fs::canonicalize(&p).unwrap());
                assert!(disks.list().is_empty());
                // The lock is gone: another tenant can open it.
                drop(Disk::open(&p, false, "/m").unwrap());
            } else {
                assert!(matches!(
                    r,
                    Err(DiskError::Guest {
                        errno: errno::EBUSY,
                        ..
                    })
                ));
                assert_eq!(disks.list()[0].state, "mounted");
                assert!(matches!(
                    Disk::open(&p, false, "/m"),
                    Err(DiskError::InUse { .. })
                ));
            }
        }
        let _ = std::fs::remove_file(p);
    }
}
