//! The guest side of disks (`pvmux run --disk`, `pvmux disk move`; docs/ABI.md §disks): the
//! ring block device ([`RingDev`], the `DiskSubmit` doorbell), and the disk events — attach
//! (make `/dev/vdX` and, when the host names a path, mount the ext2 filesystem there) and
//! detach (write everything back, unmount, remove the node, report) — taken at boot
//! ([`attach_at_boot`]) and afterwards by the `diskd` kernel thread, woken by
//! `pending::DISK` ([`event`]). Programs mount and unmount attached disks themselves with
//! `mount(2)`/`umount2(2)` ([`mount`], [`umount`]) and read or write them raw through
//! `/dev/vdX` ([`raw_read`], [`raw_write`]). After every mount and unmount the host is told
//! where each disk is mounted (`DiskMounted`, [`report`]), for `pvmux disk ls`.
//!
//! `umount2(MNT_DETACH)` of a disk in use detaches it lazily, as Linux: it leaves the tree
//! at once, its open files and working directories go on using it, and `diskd` releases it
//! (written back, marked clean) once nothing does ([`release_detached`], polled while such
//! a disk exists). A `disk move` of it meanwhile is refused with `EAGAIN`.
//!
//! A kernel hand-over (`pvmux upgrade`) carries the disks in their slots: the old kernel
//! writes every mounted disk back and names each with its mount ([`carry`], record section
//! 47); the new one attaches and mounts them again before it takes the carried tree
//! ([`adopt`]), then finds their nodes in that tree ([`adopt_nodes`]).
//!
//! A mounted disk is a volume of the VFS (`ramfs::volume`) whose host is its
//! [`Ext2Volume`]; its volume id is [`VOLUME_BASE`] plus its slot. The filesystem's lock is
//! only ever taken under the VFS lock (so a vCPU never spins on it with events off while
//! its holder is preempted).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::disk::{
    event as ev, flag, mounted, op, DiskDesc, DiskEvent, DESC_LEN, EVENT_LEN, IO_MAX, MAX_DISKS,
    MOUNTED_PATH_MAX, RING_MAX, SECTOR_SIZE,
};
use zerocopy::{FromBytes, IntoBytes};

use super::errno::Errno::{self, *};
use super::ext2::cache::BlockDev;
use super::ext2::{Ext2, Ext2Volume};
use crate::irq::IrqLock;
use crate::sched::wait::WaitQueue;

/// Volume id of slot 0's disk (volume ids of `--volume` are below 64).
pub(crate) const VOLUME_BASE: u32 = 0x1000;

/// A disk attached to this kernel.
struct Attached {
    /// Size in sectors.
    sectors: u64,
    /// The host opened it read-only.
    read_only: bool,
    /// Its filesystem, while mounted.
    mounted: Option<Mounted>,
}

/// A mounted disk.
#[derive(Clone)]
struct Mounted {
    vol: Arc<Ext2Volume<RingDev>>,
    /// The mount point (absolute).
    path: Vec<u8>,
    /// Mounted read-only.
    read_only: bool,
    /// A program mounted it (`mount(2)`), not the kernel for an event.
    by_program: bool,
    /// Unmounted lazily (`MNT_DETACH`) while in use: out of the tree, not yet released.
    detached: bool,
}

/// How often `diskd` looks whether a lazily unmounted disk is still in use (ns).
const RELEASE_POLL_NS: u64 = 100_000_000;

/// The attached disks, by slot.
static DISKS: IrqLock<BTreeMap<u32, Attached>> = IrqLock::new(BTreeMap::new());
/// Open descriptions of each disk's `/dev/vdX` (a detach waits for none).
static RAW_OPEN: [core::sync::atomic::AtomicU32; MAX_DISKS as usize] =
    [const { core::sync::atomic::AtomicU32::new(0) }; MAX_DISKS as usize];
/// Bumped by every `pending::DISK` event.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// `diskd` waits here.
static WQ: WaitQueue = WaitQueue::new();
/// `diskd` runs.
static STARTED: AtomicBool = AtomicBool::new(false);
/// A disk was unmounted lazily: `diskd` watches it until it can be released.
static DETACHED: AtomicBool = AtomicBool::new(false);

/// Guest-physical address of `bytes` (heap and image memory; `None` elsewhere).
fn gpa_of(bytes: &[u8]) -> Option<u64> {
    crate::boot::virt_to_phys(bytes.as_ptr() as u64, bytes.len().max(1) as u64)
}

fn heap(len: usize) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| ENOMEM)?;
    v.resize(len, 0);
    Ok(v)
}

/// One disk slot reached through the ring.
pub(crate) struct RingDev {
    slot: u32,
    sectors: u64,
}

/// The data of one transfer.
enum Data<'a> {
    In(&'a [u8]),
    Out(&'a mut [u8]),
}

impl RingDev {
    /// Performs `descs` with one doorbell: the first failing descriptor's errno.
    fn submit(&self, descs: &[DiskDesc]) -> Result<(), Errno> {
        let mut ring = heap(descs.len() * DESC_LEN as usize)?;
        ring.copy_from_slice(descs.as_bytes());
        let gpa = gpa_of(&ring).ok_or(EIO)?;
        crate::hcall::disk_submit(self.slot, gpa, descs.len() as u64).map_err(|_| EIO)?;
        for k in 0..descs.len() {
            let at = k * DESC_LEN as usize + 4;
            let st = u32::from_le_bytes([ring[at], ring[at + 1], ring[at + 2], ring[at + 3]]);
            if st != 0 {
                return Err(super::volume::errno_of(st));
            }
        }
        Ok(())
    }

    /// Reads or writes `data` at `sector`: in descriptors of at most `IO_MAX` bytes, at
    /// most `RING_MAX` per doorbell; a buffer the host cannot address is bounced.
    fn transfer(&self, write: bool, sector: u64, data: Data<'_>) -> Result<(), Errno> {
        let len = match &data {
            Data::In(b) => b.len(),
            Data::Out(b) => b.len(),
        };
        if len == 0 {
            return Ok(());
        }
        if !(len as u64).is_multiple_of(SECTOR_SIZE) {
            return Err(EINVAL);
        }
        let direct = match &data {
            Data::In(b) => gpa_of(b),
            Data::Out(b) => gpa_of(b),
        };
        let mut bounce = Vec::new();
        let base = match direct {
            Some(g) => g,
            None => {
                bounce = heap(len)?;
                if let Data::In(b) = &data {
                    bounce.copy_from_slice(b);
                }
                gpa_of(&bounce).ok_or(EIO)?
            }
        };
        let mut descs = Vec::new();
        descs
            .try_reserve_exact(RING_MAX as usize)
            .map_err(|_| ENOMEM)?;
        let mut done = 0u64;
        while done < len as u64 {
            let n = (len as u64 - done).min(IO_MAX);
            descs.push(DiskDesc {
                op: if write { op::WRITE } else { op::READ },
                sector: sector + done / SECTOR_SIZE,
                count: (n / SECTOR_SIZE) as u32,
                buf_gpa: base + done,
                ..DiskDesc::default()
            });
            done += n;
            if descs.len() == RING_MAX as usize || done == len as u64 {
                self.submit(&descs)?;
                descs.clear();
            }
        }
        if let (Data::Out(b), false) = (data, bounce.is_empty()) {
            b.copy_from_slice(&bounce);
        }
        Ok(())
    }
}

impl BlockDev for RingDev {
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.transfer(false, sector, Data::Out(buf))
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), Errno> {
        self.transfer(true, sector, Data::In(buf))
    }
    fn flush(&mut self) -> Result<(), Errno> {
        self.submit(&[DiskDesc {
            op: op::FLUSH,
            ..DiskDesc::default()
        }])
    }
}

/// Seconds since the epoch (ext2 timestamps).
fn now_secs() -> u32 {
    (crate::time::realtime_ns() / 1_000_000_000) as u32
}

/// Attaches the disk of an `ATTACH` event: `/dev/vdX`, and a mount at the event's path if
/// it names one (a failed mount detaches it again).
fn attach(e: &DiskEvent) -> Result<(), Errno> {
    if e.slot >= MAX_DISKS || e.sectors == 0 {
        return Err(EINVAL);
    }
    let path = match e.path_len {
        0 => None,
        _ => Some(e.mount_path().ok_or(EINVAL)?),
    };
    {
        let mut d = DISKS.lock();
        if d.contains_key(&e.slot) {
            return Err(EBUSY);
        }
        d.insert(
            e.slot,
            Attached {
                sectors: e.sectors,
                read_only: e.flags & flag::READ_ONLY != 0,
                mounted: None,
            },
        );
    }
    if let Some(path) = path {
        if let Err(err) = mount_slot(e.slot, e.flags & flag::READ_ONLY != 0, path, false) {
            DISKS.lock().remove(&e.slot);
            return Err(err);
        }
    }
    crate::linux::files::dev::add_disk_node(e.slot);
    Ok(())
}

/// The name of disk `slot` as text (`vda`).
fn name(slot: u32) -> alloc::string::String {
    alloc::string::String::from_utf8_lossy(&crate::linux::files::dev::disk_name(slot)).into()
}

/// Mounts attached disk `slot`'s ext2 filesystem at absolute `path` (`read_only`, or the
/// disk is; `by_program`: a program's `mount(2)`): `EBUSY` if it is mounted already (or
/// detached lazily and still in use) or the path is taken, `EINVAL` (or `EUCLEAN`) if it
/// holds no filesystem this kernel mounts, `ENXIO` if no such disk.
pub(crate) fn mount_slot(
    slot: u32,
    read_only: bool,
    path: &[u8],
    by_program: bool,
) -> Result<(), Errno> {
    let (sectors, disk_ro) = {
        let d = DISKS.lock();
        let a = d.get(&slot).ok_or(ENXIO)?;
        if a.mounted.is_some() {
            return Err(EBUSY);
        }
        (a.sectors, a.read_only)
    };
    let ro = read_only || disk_ro;
    let dev = RingDev { slot, sectors };
    super::with_real_root(|fs| {
        // Under the VFS lock: two mounts of one disk cannot both get here.
        if DISKS.lock().get(&slot).is_none_or(|a| a.mounted.is_some()) {
            return Err(EBUSY);
        }
        let ext2 = Ext2::mount(dev, ro, now_secs)?;
        let read_only = ext2.read_only();
        let vol = Arc::new(Ext2Volume {
            fs: spin::Mutex::new(ext2),
        });
        if let Err(err) = fs.mount_volume(vol.clone(), VOLUME_BASE + slot, read_only, path) {
            let _ = vol.fs.lock().unmount();
            return Err(err);
        }
        // Its files show the block device's number and ext2's inode numbers, as on Linux.
        let dev = crate::linux::files::dev::Dev::Disk(slot as u8).number();
        fs.set_volume_dev(
            VOLUME_BASE + slot,
            crate::linux::files::dev::encode_dev(dev),
        );
        let mut path_v = Vec::new();
        path_v.try_reserve_exact(path.len()).map_err(|_| ENOMEM)?;
        path_v.extend_from_slice(path);
        if let Some(a) = DISKS.lock().get_mut(&slot) {
            a.mounted = Some(Mounted {
                vol,
                path: path_v,
                read_only,
                by_program,
                detached: false,
            });
        }
        crate::println!(
            "pvmux-kernel: disk {} mounted at {}{}",
            name(slot),
            alloc::string::String::from_utf8_lossy(path),
            if read_only { " (read-only)" } else { "" }
        );
        Ok(())
    })?;
    report(slot);
    Ok(())
}

/// Tells the host where disk `slot` is mounted now (`DiskMounted`): shown by `pvmux disk
/// ls`, nothing else depends on it.
pub(crate) fn report(slot: u32) {
    let m = DISKS
        .lock()
        .get(&slot)
        .and_then(|a| a.mounted.as_ref())
        .map(|m| (m.path.clone(), m.read_only, m.by_program, m.detached));
    let Some((path, ro, by_program, detached)) = m else {
        let _ = crate::hcall::disk_mounted(slot, 0, 0, 0);
        return;
    };
    let flags = if ro { mounted::READ_ONLY } else { 0 }
        | if by_program { mounted::BY_PROGRAM } else { 0 }
        | if detached { mounted::DETACHED } else { 0 };
    // A path the host does not take whole is sent as its length alone (shown as `?`).
    let Ok(mut buf) = heap(path.len().clamp(1, MOUNTED_PATH_MAX as usize)) else {
        return;
    };
    let n = path.len().min(buf.len());
    buf[..n].copy_from_slice(&path[..n]);
    let Some(gpa) = gpa_of(&buf) else { return };
    if crate::hcall::disk_mounted(slot, gpa, path.len() as u64, flags).is_err() {
        crate::println!(
            "pvmux-kernel: disk {}: the host does not show the mount path",
            name(slot)
        );
    }
}

/// The working directories of the live processes (a disk holding one is in use).
fn cwds() -> Vec<super::ramfs::Ino> {
    crate::linux::task::all_processes()
        .iter()
        .filter(|p| !p.zombie.load(Ordering::Acquire))
        .map(|p| p.fs.lock().cwd)
        .collect()
}

/// How [`unmount_slot`] unmounts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// `umount2` without `MNT_DETACH`, or a `disk move`: `EBUSY` while in use.
    Now,
    /// `MNT_DETACH`: lazily while in use.
    Lazy,
    /// `diskd` releasing a lazily unmounted disk: only once it is no longer in use.
    Release,
}

/// Unmounts disk `slot` if it is mounted: while a file or directory of it is open or
/// mapped, or a process works in it, `EBUSY` and nothing changed (`How::Now`, and a release
/// that must wait), or it is detached lazily (`How::Lazy`); otherwise everything is written
/// back and the filesystem marked clean. If the write-back fails the disk is mounted again
/// and the error returned. A lazily detached disk is `EAGAIN` for `How::Now` (a move).
fn unmount_slot(slot: u32, how: How) -> Result<(), Errno> {
    let Some(m) = DISKS.lock().get(&slot).and_then(|a| a.mounted.clone()) else {
        return Ok(());
    };
    if m.detached && how != How::Release {
        return Err(if how == How::Now { EAGAIN } else { EINVAL });
    }
    let id = VOLUME_BASE + slot;
    let cwds = cwds();
    let lazy = super::with_real_root(|fs| {
        if fs.volume_in_use(id, &cwds) {
            if how != How::Lazy {
                return Err(EBUSY);
            }
            fs.detach_volume(id)?;
            if let Some(m) = DISKS.lock().get_mut(&slot).and_then(|a| a.mounted.as_mut()) {
                m.detached = true;
            }
            return Ok(true);
        }
        let host = fs.unmount_volume(id)?;
        drop(host);
        if let Err(err) = m.vol.fs.lock().unmount() {
            crate::println!(
                "pvmux-kernel: disk {}: write-back failed: {err}",
                name(slot)
            );
            // A lazily unmounted disk is out of the tree already: it is released all the
            // same (its image as of the last write-back, as after a crash).
            if !m.detached {
                let _ = fs.mount_volume(m.vol.clone(), id, m.read_only, &m.path);
                return Err(err);
            }
        }
        if let Some(a) = DISKS.lock().get_mut(&slot) {
            a.mounted = None;
        }
        crate::println!(
            "pvmux-kernel: disk {} unmounted from {}",
            name(slot),
            alloc::string::String::from_utf8_lossy(&m.path)
        );
        Ok(false)
    })?;
    if lazy {
        crate::println!(
            "pvmux-kernel: disk {} detached from {} (released when no longer in use)",
            name(slot),
            alloc::string::String::from_utf8_lossy(&m.path)
        );
        DETACHED.store(true, Ordering::Release);
        WQ.wake_all();
    }
    report(slot);
    Ok(())
}

/// Releases every lazily unmounted disk that is no longer in use; whether one remains.
fn release_detached() -> bool {
    let slots: Vec<u32> = DISKS
        .lock()
        .iter()
        .filter(|(_, a)| a.mounted.as_ref().is_some_and(|m| m.detached))
        .map(|(&s, _)| s)
        .collect();
    let mut left = false;
    for slot in slots {
        match unmount_slot(slot, How::Release) {
            Ok(()) => {}
            Err(EBUSY) => left = true,
            Err(e) => {
                crate::println!("pvmux-kernel: disk {}: release failed: {e}", name(slot));
                left = true;
            }
        }
    }
    left
}

/// Gives back the disk of a `DETACH` event: `EBUSY` while `/dev/vdX` is open, or while a
/// file or directory of its filesystem is; otherwise unmounted (written back, marked clean)
/// and its node removed.
fn detach(e: &DiskEvent) -> Result<(), Errno> {
    if !DISKS.lock().contains_key(&e.slot) {
        return Err(EINVAL);
    }
    if RAW_OPEN[e.slot as usize % RAW_OPEN.len()].load(Ordering::Acquire) != 0 {
        return Err(EBUSY);
    }
    unmount_slot(e.slot, How::Now)?;
    DISKS.lock().remove(&e.slot);
    crate::linux::files::dev::remove_disk_node(e.slot);
    Ok(())
}

/// `umount2(2)` of absolute mount point `path`: `EINVAL` if no disk is mounted there;
/// while the disk is in use (files of it open, a process working in it) `EBUSY`, or with
/// `lazy` (`MNT_DETACH`) it is detached from the tree now and released when no longer in
/// use.
pub(crate) fn umount(path: &[u8], lazy: bool) -> Result<(), Errno> {
    let slot = DISKS
        .lock()
        .iter()
        .find(|(_, a)| {
            a.mounted
                .as_ref()
                .is_some_and(|m| m.path == path && !m.detached)
        })
        .map(|(&s, _)| s)
        .ok_or(EINVAL)?;
    unmount_slot(slot, if lazy { How::Lazy } else { How::Now })
}

/// The attached disks: (slot, sectors, read-only).
pub(crate) fn attached() -> Vec<(u32, u64, bool)> {
    DISKS
        .lock()
        .iter()
        .map(|(&s, a)| (s, a.sectors, a.read_only))
        .collect()
}

/// The mounted disks: (slot, mount point, read-only), for `/proc/mounts` (not those
/// detached lazily: they are out of the tree).
pub(crate) fn mounts() -> Vec<(u32, Vec<u8>, bool)> {
    DISKS
        .lock()
        .iter()
        .filter_map(|(&s, a)| {
            a.mounted
                .as_ref()
                .filter(|m| !m.detached)
                .map(|m| (s, m.path.clone(), m.read_only))
        })
        .collect()
}

/// Disk `slot`'s size in sectors and whether it is read-only (`ENXIO`: not attached).
pub(crate) fn geometry(slot: u32) -> Result<(u64, bool), Errno> {
    DISKS
        .lock()
        .get(&slot)
        .map(|a| (a.sectors, a.read_only))
        .ok_or(ENXIO)
}

/// A `/dev/vdX` description opened (`true`) or closed (`false`).
pub(crate) fn raw_opened(slot: u32, open: bool) {
    let c = &RAW_OPEN[slot as usize % RAW_OPEN.len()];
    if open {
        c.fetch_add(1, Ordering::AcqRel);
    } else {
        c.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes one raw read or write moves at most (a longer one is short).
const RAW_MAX: usize = 1 << 20;

/// Reads disk `slot` at byte offset `off` into `buf`: short at the end of the disk (0
/// beyond it) and at [`RAW_MAX`].
pub(crate) fn raw_read(slot: u32, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let (sectors, _) = geometry(slot)?;
    let size = sectors * SECTOR_SIZE;
    if off >= size || buf.is_empty() {
        return Ok(0);
    }
    let n = (buf.len() as u64).min(size - off).min(RAW_MAX as u64) as usize;
    let dev = RingDev { slot, sectors };
    if off.is_multiple_of(SECTOR_SIZE) && (n as u64).is_multiple_of(SECTOR_SIZE) {
        dev.transfer(false, off / SECTOR_SIZE, Data::Out(&mut buf[..n]))?;
        return Ok(n);
    }
    let first = off / SECTOR_SIZE;
    let last = (off + n as u64).div_ceil(SECTOR_SIZE);
    let mut tmp = heap(((last - first) * SECTOR_SIZE) as usize)?;
    dev.transfer(false, first, Data::Out(&mut tmp))?;
    let at = (off - first * SECTOR_SIZE) as usize;
    buf[..n].copy_from_slice(&tmp[at..at + n]);
    Ok(n)
}

/// Writes `data` to disk `slot` at byte offset `off` (partial sectors read, changed and
/// written back): `ENOSPC` at or beyond the end, `EROFS` for a read-only disk.
pub(crate) fn raw_write(slot: u32, off: u64, data: &[u8]) -> Result<usize, Errno> {
    let (sectors, ro) = geometry(slot)?;
    if ro {
        return Err(EROFS);
    }
    let size = sectors * SECTOR_SIZE;
    if data.is_empty() {
        return Ok(0);
    }
    if off >= size {
        return Err(ENOSPC);
    }
    let n = (data.len() as u64).min(size - off).min(RAW_MAX as u64) as usize;
    let dev = RingDev { slot, sectors };
    if off.is_multiple_of(SECTOR_SIZE) && (n as u64).is_multiple_of(SECTOR_SIZE) {
        dev.transfer(true, off / SECTOR_SIZE, Data::In(&data[..n]))?;
        return Ok(n);
    }
    let first = off / SECTOR_SIZE;
    let last = (off + n as u64).div_ceil(SECTOR_SIZE);
    let mut tmp = heap(((last - first) * SECTOR_SIZE) as usize)?;
    dev.transfer(false, first, Data::Out(&mut tmp))?;
    let at = (off - first * SECTOR_SIZE) as usize;
    tmp[at..at + n].copy_from_slice(&data[..n]);
    dev.transfer(true, first, Data::In(&tmp))?;
    Ok(n)
}

/// Flushes disk `slot`'s writes to the host's image (`fsync` of `/dev/vdX`).
pub(crate) fn raw_flush(slot: u32) -> Result<(), Errno> {
    let (sectors, ro) = geometry(slot)?;
    if ro {
        return Ok(());
    }
    let mut dev = RingDev { slot, sectors };
    dev.flush()
}

/// Takes and answers every waiting disk event: the attaches that failed, with why.
fn take_events() -> Vec<(DiskEvent, Errno)> {
    let mut failed = Vec::new();
    let Ok(mut buf) = heap(EVENT_LEN as usize) else {
        return failed;
    };
    let Some(gpa) = gpa_of(&buf) else {
        return failed;
    };
    loop {
        buf.fill(0);
        match crate::hcall::disk_take(gpa) {
            Ok(1) => {}
            _ => return failed,
        }
        let Ok(e) = DiskEvent::read_from_bytes(&buf) else {
            return failed;
        };
        let r = match e.kind {
            ev::ATTACH => attach(&e),
            ev::DETACH => detach(&e),
            _ => Err(EINVAL),
        };
        if let Err(err) = &r {
            crate::println!("pvmux-kernel: disk slot {} event {}: {err}", e.slot, e.kind);
            if e.kind == ev::ATTACH {
                failed.push((e, *err));
            }
        }
        let code = r.err().map_or(0, |e| e.code() as u64);
        let _ = crate::hcall::disk_report(e.slot, e.generation, code);
    }
}

/// Mounts the disks given at start (before init runs), then starts `diskd`. A disk that
/// cannot be mounted ends boot with a message on standard error and
/// [`super::volume::EXIT_VOLUME_UNUSABLE`], as a volume does: the program must not run
/// without the directory it was promised.
pub(crate) fn attach_at_boot() {
    let failed = take_events();
    if let Some((e, err)) = failed.first() {
        let msg = alloc::format!(
            "pvmux: disk vd{} cannot be mounted at {}: {}\n",
            char::from(b'a' + e.slot as u8),
            alloc::string::String::from_utf8_lossy(e.mount_path().unwrap_or(b"?")),
            match err {
                EINVAL => "not an ext2 filesystem the guest kernel can mount (EINVAL)",
                EUCLEAN => "the filesystem is corrupted (EUCLEAN); run e2fsck on the image",
                other => other.message(),
            }
        );
        crate::hcall::console_write_stream(
            pvmux_hypercalls::hypercall::stream::STDERR,
            msg.as_bytes(),
        );
        crate::hcall::shutdown(super::volume::EXIT_VOLUME_UNUSABLE)
    }
    start_daemon();
}

/// The `pending::DISK` event: wakes `diskd`. Safe in event context.
pub(crate) fn event() {
    SEQ.fetch_add(1, Ordering::AcqRel);
    WQ.wake_all();
}

/// Starts `diskd` (once), which answers disk events while the guest runs.
fn start_daemon() {
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let r = crate::sched::spawn("diskd", None, || loop {
        let seq = SEQ.load(Ordering::Acquire);
        take_events();
        DETACHED.store(false, Ordering::Release);
        let changed = || SEQ.load(Ordering::Acquire) != seq || DETACHED.load(Ordering::Acquire);
        if release_detached() {
            let deadline = crate::time::now_ns() + RELEASE_POLL_NS;
            WQ.wait_until_deadline(changed, deadline);
        } else {
            WQ.wait_until(changed);
        }
    });
    if r.is_err() {
        crate::println!("pvmux-kernel: cannot start diskd");
    }
}

/// At shutdown: writes every disk back and marks its filesystem clean (files still open
/// do not matter: no program runs any more).
pub(crate) fn unmount_all() {
    let vols: Vec<_> = DISKS
        .lock()
        .values()
        .filter_map(|a| a.mounted.as_ref().map(|m| m.vol.clone()))
        .collect();
    for v in vols {
        if let Err(e) = super::with(|_| v.fs.lock().unmount()) {
            crate::println!("pvmux-kernel: disk write-back at shutdown failed: {e}");
        }
    }
}

/// A kernel hand-over (record section 47, `pvmux upgrade`): every attached disk, with where
/// it is mounted, each mounted one's changes written back to its image first (the adopter
/// reads the image, not this kernel's cache); its mount path added with `blob`. Or what
/// cannot be carried and how many: a disk unmounted lazily whose files are still open, one
/// whose write-back failed. Called with the programs stopped.
pub(crate) fn carry(
    blob: &mut dyn FnMut(&[u8]) -> pvmux_hypercalls::handover::BlobRef,
) -> Result<Vec<pvmux_hypercalls::handover::DiskEntry>, (&'static [u8], u32)> {
    use pvmux_hypercalls::handover::{disk_flags, BlobRef, DiskEntry};
    let disks: Vec<(u32, u64, bool, Option<Mounted>)> = DISKS
        .lock()
        .iter()
        .map(|(&s, a)| (s, a.sectors, a.read_only, a.mounted.clone()))
        .collect();
    let lazy = disks
        .iter()
        .filter(|d| d.3.as_ref().is_some_and(|m| m.detached))
        .count() as u32;
    if lazy > 0 {
        return Err((
            b"disks unmounted lazily (umount -l) whose files are still open",
            lazy,
        ));
    }
    let mut failed = 0;
    let mut out = Vec::new();
    for (slot, sectors, read_only, m) in disks {
        let mut e = DiskEntry {
            slot,
            flags: if read_only { disk_flags::READ_ONLY } else { 0 },
            sectors,
            path: BlobRef::default(),
        };
        if let Some(m) = m {
            if let Err(err) = super::with(|_| m.vol.fs.lock().sync()) {
                crate::println!(
                    "pvmux-kernel: disk {}: write-back failed: {err}",
                    name(slot)
                );
                failed += 1;
            }
            e.flags |= disk_flags::MOUNTED
                | if m.read_only {
                    disk_flags::MOUNT_READ_ONLY
                } else {
                    0
                }
                | if m.by_program {
                    disk_flags::BY_PROGRAM
                } else {
                    0
                };
            e.path = blob(&m.path);
        }
        out.push(e);
    }
    if failed > 0 {
        return Err((b"disks whose changes could not be written back", failed));
    }
    Ok(out)
}

/// Adopts the disks of a hand-over record (section 47, checked): each attached again in its
/// slot and mounted where it was (shorter paths first: a disk mounted inside another one's
/// tree after it), by the kernel or as a program's mount; `path` resolves a mount path.
/// Call before the carried filesystem is adopted (its disk inodes need their volumes). A
/// disk that cannot be mounted is its slot and the error; the disks already attached stay
/// (the refusal's shutdown writes them back).
pub(crate) fn adopt(
    entries: &[pvmux_hypercalls::handover::DiskEntry],
    path: &dyn Fn(pvmux_hypercalls::handover::BlobRef) -> Option<Vec<u8>>,
) -> Result<(), (u32, Errno)> {
    use pvmux_hypercalls::handover::disk_flags;
    let mut mounts = Vec::new();
    for e in entries {
        {
            let mut d = DISKS.lock();
            if d.contains_key(&e.slot) {
                return Err((e.slot, EBUSY));
            }
            d.insert(
                e.slot,
                Attached {
                    sectors: e.sectors,
                    read_only: e.flags & disk_flags::READ_ONLY != 0,
                    mounted: None,
                },
            );
        }
        crate::linux::files::dev::add_disk_node(e.slot);
        if e.flags & disk_flags::MOUNTED != 0 {
            mounts.push((path(e.path).ok_or((e.slot, EINVAL))?, e));
        }
    }
    mounts.sort_by_key(|(p, _)| p.len());
    for (p, e) in mounts {
        let ro = e.flags & disk_flags::MOUNT_READ_ONLY != 0;
        mount_slot(e.slot, ro, &p, e.flags & disk_flags::BY_PROGRAM != 0)
            .map_err(|err| (e.slot, err))?;
    }
    Ok(())
}

/// After a carried filesystem replaced this kernel's tree: each attached disk's `/dev/vdX`
/// is the carried tree's node of that name again (made if the programs had removed it).
pub(crate) fn adopt_nodes() {
    let slots: Vec<u32> = DISKS.lock().keys().copied().collect();
    for slot in slots {
        crate::linux::files::dev::forget_disk_node(slot);
        crate::linux::files::dev::add_disk_node(slot);
    }
}

/// Writes every mounted disk's changes back (`sync`, `syncfs`).
pub(crate) fn sync_all() -> Result<(), Errno> {
    let vols: Vec<_> = DISKS
        .lock()
        .values()
        .filter_map(|a| a.mounted.as_ref().map(|m| m.vol.clone()))
        .collect();
    let mut first = Ok(());
    for v in vols {
        let r = super::with(|_| v.fs.lock().sync());
        if first.is_ok() {
            first = r;
        }
    }
    first
}
