//! The guest side of disks (`pvmux run --disk`, `pvmux disk move`; docs/ABI.md §disks): the
//! ring block device ([`RingDev`], the `DiskSubmit` doorbell), and the disk events — attach
//! (mount the ext2 filesystem at the path the host names) and detach (write everything
//! back, unmount, report) — taken at boot ([`attach_at_boot`]) and afterwards by the
//! `diskd` kernel thread, woken by `pending::DISK` ([`event`]).
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
    event as ev, flag, op, DiskDesc, DiskEvent, DESC_LEN, EVENT_LEN, IO_MAX, MAX_DISKS, RING_MAX,
    SECTOR_SIZE,
};
use zerocopy::{FromBytes, IntoBytes};

use super::errno::Errno::{self, *};
use super::ext2::cache::BlockDev;
use super::ext2::{Ext2, Ext2Volume};
use crate::irq::IrqLock;
use crate::sched::wait::WaitQueue;

/// Volume id of slot 0's disk (volume ids of `--volume` are below 64).
pub(crate) const VOLUME_BASE: u32 = 0x1000;

/// The mounted disks, by slot.
static DISKS: IrqLock<BTreeMap<u32, Arc<Ext2Volume<RingDev>>>> = IrqLock::new(BTreeMap::new());
/// Bumped by every `pending::DISK` event.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// `diskd` waits here.
static WQ: WaitQueue = WaitQueue::new();
/// `diskd` runs.
static STARTED: AtomicBool = AtomicBool::new(false);

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

/// Mounts the disk of an `ATTACH` event.
fn attach(e: &DiskEvent) -> Result<(), Errno> {
    let path = e.mount_path().ok_or(EINVAL)?;
    if e.slot >= MAX_DISKS || DISKS.lock().contains_key(&e.slot) {
        return Err(EBUSY);
    }
    let dev = RingDev {
        slot: e.slot,
        sectors: e.sectors,
    };
    let ro = e.flags & flag::READ_ONLY != 0;
    super::with(|fs| {
        let ext2 = Ext2::mount(dev, ro, now_secs)?;
        let read_only = ext2.read_only();
        let vol = Arc::new(Ext2Volume {
            fs: spin::Mutex::new(ext2),
        });
        if let Err(err) = fs.mount_volume(vol.clone(), VOLUME_BASE + e.slot, read_only, path) {
            let _ = vol.fs.lock().unmount();
            return Err(err);
        }
        DISKS.lock().insert(e.slot, vol);
        crate::println!(
            "pvmux-kernel: disk vd{} mounted at {}{}",
            char::from(b'a' + e.slot as u8),
            alloc::string::String::from_utf8_lossy(path),
            if read_only { " (read-only)" } else { "" }
        );
        Ok(())
    })
}

/// Gives back the disk of a `DETACH` event: unmounted (`EBUSY` while files are open on it),
/// then everything written back and the filesystem marked clean. If the write-back fails
/// the disk is mounted again and the error reported (the host keeps it here).
fn detach(e: &DiskEvent) -> Result<(), Errno> {
    let vol = DISKS.lock().get(&e.slot).cloned().ok_or(EINVAL)?;
    let id = VOLUME_BASE + e.slot;
    super::with(|fs| {
        let read_only = vol.fs.lock().read_only();
        let host = fs.unmount_volume(id)?;
        drop(host);
        if let Err(err) = vol.fs.lock().unmount() {
            crate::println!(
                "pvmux-kernel: disk slot {}: write-back failed: {err}",
                e.slot
            );
            if let Some(path) = e.mount_path() {
                let _ = fs.mount_volume(vol.clone(), id, read_only, path);
            }
            return Err(err);
        }
        DISKS.lock().remove(&e.slot);
        Ok(())
    })
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
        WQ.wait_until(|| SEQ.load(Ordering::Acquire) != seq);
    });
    if r.is_err() {
        crate::println!("pvmux-kernel: cannot start diskd");
    }
}

/// At shutdown: writes every disk back and marks its filesystem clean (files still open
/// do not matter: no program runs any more).
pub(crate) fn unmount_all() {
    let vols: Vec<_> = DISKS.lock().values().cloned().collect();
    for v in vols {
        if let Err(e) = super::with(|_| v.fs.lock().unmount()) {
            crate::println!("pvmux-kernel: disk write-back at shutdown failed: {e}");
        }
    }
}

/// Writes every mounted disk's changes back (`sync`, `syncfs`).
pub(crate) fn sync_all() -> Result<(), Errno> {
    let vols: Vec<_> = DISKS.lock().values().cloned().collect();
    let mut first = Ok(());
    for v in vols {
        let r = super::with(|_| v.fs.lock().sync());
        if first.is_ok() {
            first = r;
        }
    }
    first
}
