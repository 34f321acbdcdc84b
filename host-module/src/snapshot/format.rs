//! The snapshot directory: a versioned manifest, the tenant's state and its memory, each
//! section with its own checksum (docs/MULTIKERNEL.md, "Snapshot and restore").
//!
//! ```text
//! DIR/manifest.json   magic, format version, ABI version, kernel image digest, sections
//! DIR/state.json      the tenant: memory size, vCPUs, clock, layout, the caller's data
//! DIR/memory.img      guest memory as a sparse file of the memory's size: only the pages
//!                     that hold a non-zero byte are written (the rest are holes)
//! DIR/window-N.img    the bytes of host file window N (`crate::window`), one per window the
//!                     tenant had open (0, 1, ...): user pages name them as they name guest
//!                     memory, and a restore must not depend on the host's files
//! ```
//!
//! Every section's CRC-32 is in the manifest; memory's is over `(offset, page)` of every
//! non-zero page in offset order, so that how the file system stores holes does not matter.
//! A snapshot is guest-controlled data: `crate::Host::restore` checks everything before
//! anything starts.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SnapshotError;
use crate::GuestMemory;

/// The manifest's magic.
pub const MAGIC: &str = "pvmux-snapshot";
/// The directory format's version.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest file.
pub const MANIFEST: &str = "manifest.json";
/// The state section's file.
pub const STATE: &str = "state.json";
/// The memory section's file.
pub const MEMORY: &str = "memory.img";
/// Largest state section accepted (it is small: a layout and the caller's data).
const STATE_MAX: u64 = 1 << 20;
/// Memory is copied in chunks of this size.
const CHUNK: usize = 1 << 20;
const PAGE: usize = pvmux_hypercalls::PAGE_SIZE as usize;

/// One section of the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Section {
    /// Its name (`state`, `memory`).
    pub name: String,
    /// Its file in the directory.
    pub file: String,
    /// Its length in bytes (memory: the memory size; the file is sparse).
    pub bytes: u64,
    /// Bytes actually written (memory: the non-zero pages).
    pub data_bytes: u64,
    /// CRC-32 of its contents (see the module documentation).
    pub crc32: u32,
}

/// The manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// [`MAGIC`].
    pub magic: String,
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The guest ABI version the snapshot's kernel was built for.
    pub abi: u32,
    /// The kernel image's digest ([`super::kernel_digest`]).
    pub kernel: String,
    /// The sections.
    pub sections: Vec<Section>,
}

/// A memory region of the guest's memory map.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Region {
    /// Guest-physical start.
    pub base: u64,
    /// Length.
    pub len: u64,
    /// Raw `MemRegionKind`.
    pub kind: u32,
}

/// The tenant's state besides its memory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// The tenant's name when it was taken.
    pub name: String,
    /// Guest memory size (the memfd's).
    pub mem_size: u64,
    /// vCPUs.
    pub nr_vcpus: u32,
    /// vCPUs that parked (the guest's online count).
    pub parked_vcpus: u32,
    /// Guest time when it was taken (ns): a restored guest continues from it.
    pub guest_ns: u64,
    /// TSC frequency (kHz) the guest's clock used.
    pub tsc_khz: u64,
    /// TSC-to-ns multiplier.
    pub clock_mult: u64,
    /// TSC-to-ns shift.
    pub clock_shift: u32,
    /// Kernel placement and boot structures (as the domain builder made them).
    pub kernel_base: u64,
    /// Guest-physical address of the kernel.
    pub kernel_phys: u64,
    /// Kernel footprint.
    pub kernel_span: u64,
    /// Entry point (guest virtual).
    pub entry_rip: u64,
    /// Initial stack pointer.
    pub entry_rsp: u64,
    /// Boot information (guest virtual).
    pub entry_rdi: u64,
    /// Root page table (guest physical).
    pub page_table_root: u64,
    /// First byte after the boot structures.
    pub first_free_gpa: u64,
    /// The memory map.
    pub mem_map: Vec<Region>,
    /// Initial RAM disk.
    pub initrd_gpa: u64,
    /// Its length.
    pub initrd_len: u64,
    /// Start of the user pool.
    pub pool_base: u64,
    /// Pages in the guest's balloon (released when taken).
    pub balloon_pages: u64,
    /// The balloon's target when taken (pages the guest must not use).
    #[serde(default)]
    pub balloon_target: u64,
    /// The released pages as runs `[gpa, pages]` in address order (their memory is holes
    /// in `memory.img`): a restored host knows them as the guest kernel does.
    #[serde(default)]
    pub balloon_released: Vec<[u64; 2]>,
    /// The console size the host last set (`(rows << 16) | cols`, 0 never).
    pub console_winsize: u32,
    /// Wall clock when it was taken (ms since the epoch).
    pub taken_unix_ms: u64,
    /// The caller's own data (the CLI keeps `pvmux run`'s arguments here).
    pub extra: String,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |e| SnapshotError::Io {
        what,
        path: path.to_owned(),
        source: e,
    }
}

fn bad(why: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(why.into())
}

/// Writes `mem`'s non-zero pages into `path` (created; sparse, the memory's size); returns
/// the bytes written and the CRC.
pub(crate) fn write_memory(mem: &GuestMemory, path: &Path) -> Result<(u64, u32), SnapshotError> {
    let f = File::create(path).map_err(io("creating", path))?;
    f.set_len(mem.size()).map_err(io("sizing", path))?;
    let mut crc = crc32fast::Hasher::new();
    let mut written = 0u64;
    let mut buf = vec![0u8; CHUNK];
    // The memfd's data, and the kernel image's pages its sandbox maps from the image's file
    // (holes in the memfd; `GuestMemory::read` gives their bytes): a snapshot holds all of
    // its memory, whatever kernel file restores it.
    let mut ranges = data_ranges(mem.fd(), mem.size());
    if let Some(shared) = mem.shared_image() {
        ranges.extend(shared.gpa_runs().map(|(gpa, len)| (gpa, gpa + len)));
    }
    for (start, end) in merged(ranges) {
        let mut off = start;
        while off < end {
            let n = ((end - off) as usize).min(CHUNK);
            let chunk = &mut buf[..n];
            mem.read(off, chunk)
                .map_err(|e| bad(format!("reading guest memory: {e}")))?;
            for (i, page) in chunk.chunks(PAGE).enumerate() {
                if page.iter().all(|&b| b == 0) {
                    continue;
                }
                let at = off + (i * PAGE) as u64;
                f.write_all_at(page, at).map_err(io("writing", path))?;
                crc.update(&at.to_le_bytes());
                crc.update(page);
                written += page.len() as u64;
            }
            off += n as u64;
        }
    }
    f.sync_all().map_err(io("syncing", path))?;
    Ok((written, crc.finalize()))
}

/// `ranges` sorted, with overlapping and adjacent ones joined.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The allocated ranges `(start, end)` of `fd` below `size` (SEEK_DATA / SEEK_HOLE), page
/// aligned; the whole range if the file system cannot tell.
fn data_ranges(fd: std::os::fd::BorrowedFd<'_>, size: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{seek, SeekFrom};
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let start = match seek(fd, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, size)],
        };
        let end = match seek(fd, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(_) => size,
        };
        let s = start & !(PAGE as u64 - 1);
        let e = end.div_ceil(PAGE as u64) * PAGE as u64;
        if s >= size || e <= s {
            break;
        }
        out.push((s, e.min(size)));
        off = e;
    }
    out
}

/// Fills `mem` (fresh, zero) from `path` and checks it against `section`: its length, the
/// bytes written and the CRC. Nothing of it has run yet if this fails.
pub(crate) fn read_memory(
    mem: &GuestMemory,
    path: &Path,
    section: &Section,
) -> Result<(), SnapshotError> {
    let f = File::open(path).map_err(io("opening", path))?;
    let len = f.metadata().map_err(io("reading", path))?.len();
    if len != mem.size() || section.bytes != mem.size() {
        return Err(bad(format!(
            "memory.img is {len} bytes, the snapshot says {} and its memory is {} (truncated?)",
            section.bytes,
            mem.size()
        )));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut data = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for (start, end) in data_ranges(f.as_fd(), len) {
        let mut off = start;
        while off < end {
            let n = ((end - off) as usize).min(CHUNK);
            let chunk = &mut buf[..n];
            f.read_exact_at(chunk, off).map_err(io("reading", path))?;
            for (i, page) in chunk.chunks(PAGE).enumerate() {
                if page.iter().all(|&b| b == 0) {
                    continue;
                }
                let at = off + (i * PAGE) as u64;
                mem.write(at, page)
                    .map_err(|e| bad(format!("writing guest memory: {e}")))?;
                crc.update(&at.to_le_bytes());
                crc.update(page);
                data += page.len() as u64;
            }
            off += n as u64;
        }
    }
    let crc = crc.finalize();
    if data != section.data_bytes || crc != section.crc32 {
        return Err(bad(format!(
            "memory.img is corrupted: {data} bytes of data with CRC-32 {crc:08x}, the manifest \
             says {} bytes with {:08x}",
            section.data_bytes, section.crc32
        )));
    }
    Ok(())
}

/// Writes a small section file; returns its manifest entry.
pub(crate) fn write_small(
    dir: &Path,
    name: &str,
    file: &str,
    bytes: &[u8],
) -> Result<Section, SnapshotError> {
    let path = dir.join(file);
    let mut f = File::create(&path).map_err(io("creating", &path))?;
    f.write_all(bytes).map_err(io("writing", &path))?;
    f.sync_all().map_err(io("syncing", &path))?;
    Ok(Section {
        name: name.into(),
        file: file.into(),
        bytes: bytes.len() as u64,
        data_bytes: bytes.len() as u64,
        crc32: crc32fast::hash(bytes),
    })
}

/// Reads and checks the manifest: magic, format and ABI version, the kernel digest
/// `kernel` (the image the restore would run), and the two sections it must have.
pub(crate) fn read_manifest(dir: &Path, kernel: &str) -> Result<Manifest, SnapshotError> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("{MANIFEST} is not a snapshot manifest: {e}")))?;
    if m.magic != MAGIC {
        return Err(bad(format!(
            "{MANIFEST} has magic {:?}, not {MAGIC:?}",
            m.magic
        )));
    }
    if m.format != FORMAT_VERSION {
        return Err(SnapshotError::Foreign(format!(
            "snapshot format version {} (this pvmux reads version {FORMAT_VERSION})",
            m.format
        )));
    }
    if m.abi != pvmux_hypercalls::ABI_VERSION {
        return Err(SnapshotError::Foreign(format!(
            "guest ABI version {} (this pvmux has version {})",
            m.abi,
            pvmux_hypercalls::ABI_VERSION
        )));
    }
    if m.kernel != kernel {
        return Err(SnapshotError::Foreign(format!(
            "it was taken with kernel image {}, the restore would run {kernel}",
            m.kernel
        )));
    }
    for name in ["state", "memory"] {
        if m.sections.iter().filter(|s| s.name == name).count() != 1 {
            return Err(bad(format!("{MANIFEST} must list one {name:?} section")));
        }
    }
    for (i, s) in m
        .sections
        .iter()
        .filter(|s| s.name.starts_with("window-"))
        .enumerate()
    {
        if s.name != window_name(i as u32) || s.file != window_file(i as u32) {
            return Err(bad(format!(
                "{MANIFEST}'s window sections must be window-0, window-1, ... in order"
            )));
        }
        if i >= pvmux_hypercalls::window::MAX_WINDOWS as usize
            || s.bytes == 0
            || s.bytes >= pvmux_hypercalls::window::WINDOW_SPAN
        {
            return Err(bad(format!("{MANIFEST}'s {} is out of bounds", s.name)));
        }
    }
    for s in &m.sections {
        if ![STATE, MEMORY].contains(&s.file.as_str()) && !s.name.starts_with("window-") {
            return Err(bad(format!(
                "{MANIFEST} names an unknown file {:?}",
                s.file
            )));
        }
    }
    Ok(m)
}

/// The section name of window `slot`.
pub(crate) fn window_name(slot: u32) -> String {
    format!("window-{slot}")
}

/// The file of window `slot`'s section.
pub(crate) fn window_file(slot: u32) -> String {
    format!("window-{slot}.img")
}

/// Writes window `slot`'s file (`fd`, `size` bytes) as its section.
pub(crate) fn write_window(
    dir: &Path,
    slot: u32,
    fd: std::os::fd::BorrowedFd<'_>,
    size: u64,
) -> Result<Section, SnapshotError> {
    let path = dir.join(window_file(slot));
    let mut out = File::create(&path).map_err(io("creating", &path))?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < size {
        let want = ((size - off) as usize).min(CHUNK);
        let n = rustix::io::pread(fd, &mut buf[..want], off)
            .map_err(|e| io("reading a window of", &path)(e.into()))?;
        if n == 0 {
            return Err(bad(format!("window {slot}'s file is shorter than it was")));
        }
        crc.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io("writing", &path))?;
        off += n as u64;
    }
    out.sync_all().map_err(io("syncing", &path))?;
    Ok(Section {
        name: window_name(slot),
        file: window_file(slot),
        bytes: size,
        data_bytes: size,
        crc32: crc.finalize(),
    })
}

/// Reads and checks the window sections of `m` (in slot order): each as a sealed memfd
/// holding its bytes, opened read-only.
pub(crate) fn read_windows(
    dir: &Path,
    m: &Manifest,
) -> Result<Vec<std::os::fd::OwnedFd>, SnapshotError> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let mut out = Vec::new();
    for s in m.sections.iter().filter(|s| s.name.starts_with("window-")) {
        let path = dir.join(&s.file);
        let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
        if bytes.len() as u64 != s.bytes || crc32fast::hash(&bytes) != s.crc32 {
            return Err(bad(format!(
                "{} is corrupted (length or CRC-32 mismatch)",
                s.file
            )));
        }
        let fd = rustix::fs::memfd_create(
            "pvmux-window",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| io("creating a window for", &path)(e.into()))?;
        let mut done = 0;
        while done < bytes.len() {
            done += rustix::io::write(&fd, &bytes[done..])
                .map_err(|e| io("filling a window for", &path)(e.into()))?;
        }
        rustix::fs::fcntl_add_seals(
            &fd,
            SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )
        .map_err(|e| io("sealing a window for", &path)(e.into()))?;
        let ro = rustix::fs::open(
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| io("opening a window for", &path)(e.into()))?;
        out.push(ro);
    }
    Ok(out)
}

/// The manifest's section `name` (checked present by [`read_manifest`]).
pub(crate) fn section<'a>(m: &'a Manifest, name: &str) -> &'a Section {
    m.sections
        .iter()
        .find(|s| s.name == name)
        .expect("checked by read_manifest")
}

/// Reads and checks the state section.
pub(crate) fn read_state(dir: &Path, s: &Section) -> Result<State, SnapshotError> {
    let path = dir.join(&s.file);
    let meta = std::fs::metadata(&path).map_err(io("reading", &path))?;
    if meta.len() > STATE_MAX || meta.len() != s.bytes {
        return Err(bad(format!(
            "{} is {} bytes, the manifest says {} (truncated?)",
            s.file,
            meta.len(),
            s.bytes
        )));
    }
    let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
    if crc32fast::hash(&bytes) != s.crc32 {
        return Err(bad(format!("{} is corrupted (CRC-32 mismatch)", s.file)));
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("{} is malformed: {e}", s.file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_merged_in_order() {
        assert_eq!(
            merged(vec![
                (0x5000, 0x6000),
                (0, 0x2000),
                (0x1000, 0x3000),
                (0x3000, 0x4000)
            ]),
            [(0, 0x4000), (0x5000, 0x6000)]
        );
        assert_eq!(merged(Vec::new()), []);
    }

    #[test]
    fn memory_round_trip_is_sparse_and_checked() {
        let dir = std::env::temp_dir().join(format!("pvmux-snap-fmt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let size = 16 << 20;
        let mem = GuestMemory::new(size).unwrap();
        mem.write(0x3000, b"hello").unwrap();
        mem.write(size - 4096, &[7u8; 4096]).unwrap();
        // A touched but zero page is not written.
        mem.write(0x8000, &[0u8; 4096]).unwrap();
        let path = dir.join(MEMORY);
        let (data, crc) = write_memory(&mem, &path).unwrap();
        assert_eq!(data, 2 * 4096);
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(blocks < 1 << 20, "{blocks} bytes on disk");
        let sec = Section {
            name: "memory".into(),
            file: MEMORY.into(),
            bytes: size,
            data_bytes: data,
            crc32: crc,
        };
        let back = GuestMemory::new(size).unwrap();
        read_memory(&back, &path, &sec).unwrap();
        assert_eq!(back.read_vec(0x3000, 5).unwrap(), b"hello");
        assert_eq!(back.read_vec(size - 4096, 4096).unwrap(), vec![7u8; 4096]);
        // One flipped byte is refused.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"J", 0x3000).unwrap();
        let e = read_memory(&GuestMemory::new(size).unwrap(), &path, &sec).unwrap_err();
        assert!(e.to_string().contains("corrupted"), "{e}");
        // Truncated.
        f.set_len(size / 2).unwrap();
        let e = read_memory(&GuestMemory::new(size).unwrap(), &path, &sec).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifests_are_checked() {
        let dir = std::env::temp_dir().join(format!("pvmux-snap-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = Manifest {
            magic: MAGIC.into(),
            format: FORMAT_VERSION,
            abi: pvmux_hypercalls::ABI_VERSION,
            kernel: "k1".into(),
            sections: vec![
                Section {
                    name: "state".into(),
                    file: STATE.into(),
                    bytes: 1,
                    data_bytes: 1,
                    crc32: 0,
                },
                Section {
                    name: "memory".into(),
                    file: MEMORY.into(),
                    bytes: 1,
                    data_bytes: 1,
                    crc32: 0,
                },
            ],
        };
        let put = |m: &Manifest| {
            std::fs::write(dir.join(MANIFEST), serde_json::to_vec(m).unwrap()).unwrap()
        };
        put(&good);
        assert!(read_manifest(&dir, "k1").is_ok());
        assert!(matches!(
            read_manifest(&dir, "k2"),
            Err(SnapshotError::Foreign(_))
        ));
        let mut m = good.clone();
        m.format += 1;
        put(&m);
        assert!(matches!(
            read_manifest(&dir, "k1"),
            Err(SnapshotError::Foreign(_))
        ));
        let mut m = good.clone();
        m.abi += 1;
        put(&m);
        assert!(matches!(
            read_manifest(&dir, "k1"),
            Err(SnapshotError::Foreign(_))
        ));
        let mut m = good.clone();
        m.magic = "x".into();
        put(&m);
        assert!(matches!(
            read_manifest(&dir, "k1"),
            Err(SnapshotError::Invalid(_))
        ));
        let mut m = good.clone();
        m.sections[1].file = "../../etc/passwd".into();
        put(&m);
        assert!(matches!(
            read_manifest(&dir, "k1"),
            Err(SnapshotError::Invalid(_))
        ));
        std::fs::write(dir.join(MANIFEST), b"{garbage").unwrap();
        assert!(matches!(
            read_manifest(&dir, "k1"),
            Err(SnapshotError::Invalid(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
