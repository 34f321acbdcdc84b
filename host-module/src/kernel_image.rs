//! Parsing and validating a pvmux guest kernel image (an x86-64 ELF64 static-pie).
//!
//! [`KernelImage::parse`] does all validation up front: the image's memory footprint at link
//! address 0 (its loadable segments over the ELF file's bytes, bss zero), the per-page
//! permissions, the list of relative relocations to apply for a chosen base, and the symbol
//! table for crash reports. The footprint is never built whole: a boot assembles it chunk by
//! chunk, relocated, straight into guest memory, and an image built into the executable is
//! not copied at all (a 2 MiB copy was ~500 host page faults on every launch's path).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, SymbolKind};
use pvmux_hypercalls::layout::KERNEL_REGION_SIZE;
use pvmux_hypercalls::{KernelAbiHeader, ABI_MAGIC, ABI_VERSION, PAGE_SIZE};
use zerocopy::FromBytes;

use pvmux_hypercalls::sandbox::MAX_SHARED_IMAGE_RANGES;

use crate::image_file::ImageFile;
use crate::memory::SharedImage;
use crate::page_table::MapFlags;
use crate::ImageError;

/// `DT_RELRSZ` (not in `object` 0.36).
const DT_RELRSZ: u32 = 35;
/// `DT_RELR` (not in `object` 0.36).
const DT_RELR: u32 = 36;

/// Alignment of the randomised kernel base.
pub const KERNEL_ALIGN: u64 = 2 << 20;
/// Bytes of the image relocated and written at a time at boot.
const RELOCATION_CHUNK: usize = 64 * 1024;

/// Largest image footprint accepted.
pub const MAX_IMAGE_SPAN: u64 = KERNEL_REGION_SIZE - KERNEL_ALIGN;

/// One relocation to apply: `*(base + offset) = base + addend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Relocation {
    pub(crate) offset: u64,
    pub(crate) addend: u64,
}

/// A symbol of the kernel image (link-time address).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Symbol {
    addr: u64,
    size: u64,
    name: String,
}

/// One loadable segment: `filesz` bytes of the file at `off` go to link address `vaddr`
/// (the rest of its memory size is zero).
#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    off: u64,
    filesz: u64,
}

/// The image's memory footprint at link address 0, described over the ELF file's bytes.
#[derive(Debug)]
struct Footprint<'a> {
    /// The ELF file (borrowed when it is built into the executable).
    file: Cow<'a, [u8]>,
    /// Sorted by `vaddr`, not overlapping, each inside `file` and the span.
    segments: Vec<Segment>,
    /// Page-aligned size.
    span: u64,
}

impl Footprint<'_> {
    /// The file bytes at link address `vaddr..vaddr + len`, if they lie in the file-backed
    /// part of one segment.
    fn slice(&self, vaddr: u64, len: u64) -> Option<&[u8]> {
        let end = vaddr.checked_add(len)?;
        let s = self
            .segments
            .iter()
            .find(|s| s.vaddr <= vaddr && end <= s.vaddr + s.filesz)?;
        let at = (s.off + (vaddr - s.vaddr)) as usize;
        self.file.get(at..at + len as usize)
    }

    /// The byte at link address `vaddr` (0 outside the segments' file bytes).
    fn byte(&self, vaddr: u64) -> u8 {
        self.slice(vaddr, 1).map_or(0, |b| b[0])
    }

    /// Hands the footprint to `put` in chunks of `chunk` bytes (the last may be shorter),
    /// with each chunk's link address, through one buffer; a chunk wholly inside one of the
    /// `skip` runs is neither read nor handed over.
    fn chunks<E>(
        &self,
        chunk: usize,
        skip: &[SharedRun],
        mut put: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut buf = vec![0u8; chunk.min(self.span as usize)];
        let mut start = 0u64;
        while start < self.span {
            let end = (start + chunk as u64).min(self.span);
            if skip
                .iter()
                .any(|r| r.vaddr <= start && end <= r.vaddr + r.len)
            {
                start = end;
                continue;
            }
            let b = &mut buf[..(end - start) as usize];
            b.fill(0);
            for s in &self.segments {
                let (lo, hi) = (s.vaddr.max(start), (s.vaddr + s.filesz).min(end));
                if lo < hi {
                    let at = (s.off + (lo - s.vaddr)) as usize;
                    b[(lo - start) as usize..(hi - start) as usize]
                        .copy_from_slice(&self.file[at..at + (hi - lo) as usize]);
                }
            }
            put(start, b)?;
            start = end;
        }
        Ok(())
    }
}

/// A validated pvmux kernel image.
#[derive(Debug)]
pub struct KernelImage {
    image: Footprint<'static>,
    page_flags: Vec<Option<MapFlags>>,
    relocations: Vec<Relocation>,
    entry: u64,
    symbols: Vec<Symbol>,
    /// The hand-over note (`.pvmux_handover`), if the image has a valid one.
    handover: Option<pvmux_hypercalls::handover::HandoverNote>,
    /// The runs of pages a kernel sandbox may map from the image's file ([`SharedRun`]).
    shared_runs: Vec<SharedRun>,
    /// The file of an image built into the executable, found at its first launch.
    file: OnceLock<Option<Arc<ImageFile>>>,
}

/// A run of the image's pages that are the same for every tenant and every base: mapped
/// read-only (not writable in any segment that covers them), touched by no relocation, and
/// wholly file bytes of one segment whose file offset is congruent to its address, so the
/// run can be mapped from the ELF file itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SharedRun {
    /// Link address (page aligned).
    pub(crate) vaddr: u64,
    /// Length in bytes (page aligned, not 0).
    pub(crate) len: u64,
    /// Offset of its first byte in the ELF file (page aligned).
    pub(crate) file_off: u64,
}

/// The runs of shareable pages of an image ([`SharedRun`]), the longest
/// [`MAX_SHARED_IMAGE_RANGES`] of them, by address.
fn shared_runs(
    segments: &[Segment],
    page_flags: &[Option<MapFlags>],
    relocations: &[Relocation],
) -> Vec<SharedRun> {
    let mut runs: Vec<SharedRun> = Vec::new();
    for s in segments {
        if s.vaddr % PAGE_SIZE != s.off % PAGE_SIZE {
            continue;
        }
        let (first, last) = (s.vaddr.next_multiple_of(PAGE_SIZE), s.vaddr + s.filesz);
        let mut page = first;
        while page + PAGE_SIZE <= last {
            let read_only = page_flags
                .get((page / PAGE_SIZE) as usize)
                .copied()
                .flatten()
                .is_some_and(|f| !f.write);
            // A relocation slot is 8 bytes: one that starts up to 7 bytes before the page
            // writes into it too.
            let i = relocations.partition_point(|r| r.offset + 8 <= page);
            let relocated = relocations
                .get(i)
                .is_some_and(|r| r.offset < page + PAGE_SIZE);
            if read_only && !relocated {
                let file_off = s.off + (page - s.vaddr);
                match runs.last_mut() {
                    Some(r) if r.vaddr + r.len == page && r.file_off + r.len == file_off => {
                        r.len += PAGE_SIZE;
                    }
                    _ => runs.push(SharedRun {
                        vaddr: page,
                        len: PAGE_SIZE,
                        file_off,
                    }),
                }
            }
            page += PAGE_SIZE;
        }
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.len));
    runs.truncate(MAX_SHARED_IMAGE_RANGES);
    runs.sort_by_key(|r| r.vaddr);
    runs
}

fn malformed(what: impl std::fmt::Display) -> ImageError {
    ImageError::Malformed(what.to_string())
}

impl KernelImage {
    /// Hands the image's memory footprint at link address 0 (unrelocated) to `put`, in
    /// order, in chunks of at most 64 KiB.
    pub fn footprint_chunks(&self, mut put: impl FnMut(&[u8])) {
        let _ = self.image.chunks::<()>(RELOCATION_CHUNK, &[], |_, b| {
            put(b);
            Ok(())
        });
    }

    /// Parses and validates a kernel image (the ELF file's bytes: a slice built into the
    /// executable is kept borrowed, never copied).
    pub fn parse(bytes: impl Into<Cow<'static, [u8]>>) -> Result<Self, ImageError> {
        Self::parse_file(bytes.into())
    }

    fn parse_file(data: Cow<'static, [u8]>) -> Result<Self, ImageError> {
        let bytes: &[u8] = &data;
        if bytes.len() < 16 || &bytes[..4] != b"\x7fELF" {
            return Err(ImageError::NotElf);
        }
        if bytes[4] != elf::ELFCLASS64 || bytes[5] != elf::ELFDATA2LSB {
            return Err(ImageError::WrongArch);
        }
        let file = ElfFile64::<Endianness>::parse(bytes).map_err(malformed)?;
        let e = file.endian();
        let hdr = file.elf_header();
        if hdr.e_machine(e) != elf::EM_X86_64 {
            return Err(ImageError::WrongArch);
        }
        if hdr.e_type(e) != elf::ET_DYN {
            return Err(ImageError::NotPie);
        }
        check_abi_header(&file)?;
        let handover = read_handover_note(&file);

        // Loadable segments.
        let mut segs = Vec::new();
        for ph in file.elf_program_headers() {
            if ph.p_type(e) != elf::PT_LOAD || ph.p_memsz(e) == 0 {
                continue;
            }
            let (vaddr, memsz, filesz, off) =
                (ph.p_vaddr(e), ph.p_memsz(e), ph.p_filesz(e), ph.p_offset(e));
            let end = vaddr
                .checked_add(memsz)
                .filter(|&end| end <= MAX_IMAGE_SPAN)
                .ok_or(ImageError::TooBig {
                    span: vaddr.saturating_add(memsz),
                    max: MAX_IMAGE_SPAN,
                })?;
            if filesz > memsz
                || off
                    .checked_add(filesz)
                    .is_none_or(|fe| fe > bytes.len() as u64)
            {
                return Err(malformed("segment file range out of bounds"));
            }
            let flags = ph.p_flags(e);
            segs.push((vaddr, end, off, filesz, flags));
        }
        if segs.is_empty() {
            return Err(ImageError::NoSegments);
        }
        segs.sort_by_key(|s| s.0);
        for w in segs.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(ImageError::OverlappingSegments(w[1].0));
            }
        }
        let span = segs
            .iter()
            .map(|s| s.1)
            .max()
            .unwrap_or(0)
            .next_multiple_of(PAGE_SIZE);
        if span > MAX_IMAGE_SPAN {
            return Err(ImageError::TooBig {
                span,
                max: MAX_IMAGE_SPAN,
            });
        }
        let mut page_flags: Vec<Option<MapFlags>> = vec![None; (span / PAGE_SIZE) as usize];
        for &(vaddr, end, _, _, flags) in &segs {
            for p in vaddr / PAGE_SIZE..end.div_ceil(PAGE_SIZE) {
                let slot = &mut page_flags[p as usize];
                let old = slot.unwrap_or(MapFlags::RO);
                *slot = Some(MapFlags {
                    write: old.write || flags & elf::PF_W != 0,
                    exec: old.exec || flags & elf::PF_X != 0,
                });
            }
        }
        let segments = segs
            .iter()
            .map(|&(vaddr, _, off, filesz, _)| Segment { vaddr, off, filesz })
            .collect();

        let entry = hdr.e_entry(e);
        let entry_ok =
            entry < span && page_flags[(entry / PAGE_SIZE) as usize].is_some_and(|f| f.exec);
        if !entry_ok {
            return Err(ImageError::BadEntry(entry));
        }

        // A real image relocates distinct pointer slots of its file-backed data, so it has
        // fewer relocations than the file has 8-byte words; the cap keeps a tiny hostile
        // table (e.g. RELR over zeroed bss) from producing billions of them.
        let max_relocations = bytes.len() / 8;
        let view = Footprint {
            file: Cow::Borrowed(bytes),
            segments,
            span,
        };
        let relocations = read_relocations(&file, &view, &page_flags, max_relocations)?;
        let symbols = read_symbols(&file);
        let shared_runs = shared_runs(&view.segments, &page_flags, &relocations);
        let segments = view.segments;
        tracing::debug!(
            span,
            entry,
            relocations = relocations.len(),
            symbols = symbols.len(),
            "parsed kernel image"
        );
        Ok(Self {
            image: Footprint {
                file: data,
                segments,
                span,
            },
            page_flags,
            relocations,
            entry,
            symbols,
            handover,
            shared_runs,
            file: OnceLock::new(),
        })
    }

    /// The runs of pages every tenant of this image may share ([`SharedRun`]).
    pub(crate) fn shared_runs(&self) -> &[SharedRun] {
        &self.shared_runs
    }

    /// The file a kernel sandbox maps this image's shared runs from: the executable's, for
    /// an image built into it (looked up once, [`crate::image_file::locate`]); `None` for an
    /// image read from a file (its bytes are written into guest memory) or without runs.
    pub(crate) fn file(&self) -> Option<&Arc<ImageFile>> {
        self.file
            .get_or_init(|| match &self.image.file {
                Cow::Borrowed(b) if !self.shared_runs.is_empty() => {
                    crate::image_file::locate(b).map(Arc::new)
                }
                _ => None,
            })
            .as_ref()
    }

    /// The shared pages of this image loaded at guest-physical `kernel_phys` (see
    /// [`KernelImage::file`]): exactly its [`KernelImage::shared_runs`], moved there; `None`
    /// if the image has no file to map them from.
    pub(crate) fn shared_image_at(&self, kernel_phys: u64) -> Option<SharedImage> {
        let file = self.file()?;
        let Cow::Borrowed(elf) = &self.image.file else {
            return None;
        };
        SharedImage::new(
            Arc::clone(file),
            elf,
            self.shared_runs
                .iter()
                .map(|r| (kernel_phys + r.vaddr, r.len, r.file_off))
                .collect(),
        )
    }

    /// The image's hand-over note (`pvmux upgrade`): the record versions it writes and
    /// adopts and its release; `None` if it has none (or a malformed one).
    pub fn handover_note(&self) -> Option<&pvmux_hypercalls::handover::HandoverNote> {
        self.handover.as_ref()
    }

    /// Size of the image's memory footprint (page aligned).
    pub fn span(&self) -> u64 {
        self.image.span
    }

    /// Link-time entry point (an offset from the base).
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Number of relocations applied at load time.
    pub fn nr_relocations(&self) -> usize {
        self.relocations.len()
    }

    /// The image's bytes at link address 0, relocated for `base`.
    #[cfg(test)]
    pub(crate) fn relocated(&self, base: u64) -> Vec<u8> {
        let mut img = Vec::with_capacity(self.image.span as usize);
        self.relocated_chunks::<()>(base, &[], |_, chunk| {
            img.extend_from_slice(chunk);
            Ok(())
        })
        .unwrap_or_default();
        img
    }

    /// Hands the image's bytes at link address 0, relocated for `base`, to `put` in chunks
    /// of [`RELOCATION_CHUNK`] bytes (with the chunk's offset), through one buffer: the
    /// image is never copied whole (a boot writes it straight into guest memory). Chunks
    /// wholly inside one of the `skip` runs (pages no relocation touches) are left out.
    pub(crate) fn relocated_chunks<E>(
        &self,
        base: u64,
        skip: &[SharedRun],
        mut put: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        // Relocations are sorted by offset (`read_relocations`): one pass over them.
        let mut next = 0;
        self.image.chunks(RELOCATION_CHUNK, skip, |start, chunk| {
            let end = start + chunk.len() as u64;
            // A slot that straddles two chunks is written in part into each.
            while let Some(r) = self.relocations.get(next) {
                if r.offset >= end {
                    break;
                }
                let value = base.wrapping_add(r.addend).to_le_bytes();
                for (k, b) in value.iter().enumerate() {
                    let at = r.offset + k as u64;
                    if (start..end).contains(&at) {
                        chunk[(at - start) as usize] = *b;
                    }
                }
                if r.offset + 8 > end {
                    break;
                }
                next += 1;
            }
            put(start, chunk)
        })
    }

    /// Mapping flags of each page (`None` = hole, not mapped).
    pub(crate) fn page_flags(&self) -> &[Option<MapFlags>] {
        &self.page_flags
    }

    /// Names the function containing link-time address `addr`: `(demangled name, offset)`.
    pub fn symbolize(&self, addr: u64) -> Option<(String, u64)> {
        let i = self
            .symbols
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        let s = &self.symbols[i];
        let off = addr - s.addr;
        if s.size != 0 && off >= s.size {
            return None;
        }
        Some((format!("{:#}", rustc_demangle::demangle(&s.name)), off))
    }
}

fn check_abi_header(file: &ElfFile64<'_, Endianness>) -> Result<(), ImageError> {
    let section = file
        .section_by_name(pvmux_hypercalls::image::ABI_SECTION)
        .ok_or(ImageError::NotPvmuxKernel)?;
    let data = section.data().map_err(|_| ImageError::BadAbiHeader)?;
    let (h, _) = KernelAbiHeader::read_from_prefix(data).map_err(|_| ImageError::BadAbiHeader)?;
    if h.magic != ABI_MAGIC {
        return Err(ImageError::BadAbiHeader);
    }
    if h.abi_version != ABI_VERSION {
        return Err(ImageError::AbiVersionMismatch {
            kernel: h.abi_version,
            host: ABI_VERSION,
        });
    }
    Ok(())
}

/// The `.pvmux_handover` note, if present and well formed (magic, versions in order).
fn read_handover_note(
    file: &ElfFile64<'_, Endianness>,
) -> Option<pvmux_hypercalls::handover::HandoverNote> {
    use pvmux_hypercalls::handover::{HandoverNote, NOTE_MAGIC, NOTE_SECTION};
    let data = file.section_by_name(NOTE_SECTION)?.data().ok()?;
    let (n, _) = HandoverNote::read_from_prefix(data).ok()?;
    (n.magic == NOTE_MAGIC && n.min_version <= n.max_version).then_some(n)
}

/// Reads `len` bytes at link address `vaddr` of the image's footprint (borrowed from the
/// file when they lie in one segment's file bytes, as tables do).
fn image_slice<'a>(
    image: &'a Footprint<'_>,
    vaddr: u64,
    len: u64,
) -> Result<Cow<'a, [u8]>, ImageError> {
    let end = vaddr
        .checked_add(len)
        .filter(|&e| e <= image.span)
        .ok_or_else(|| malformed("dynamic table points outside the image"))?;
    Ok(match image.slice(vaddr, len) {
        Some(b) => Cow::Borrowed(b),
        None => Cow::Owned((vaddr..end).map(|a| image.byte(a)).collect()),
    })
}

fn read_relocations(
    file: &ElfFile64<'_, Endianness>,
    image: &Footprint<'_>,
    page_flags: &[Option<MapFlags>],
    max: usize,
) -> Result<Vec<Relocation>, ImageError> {
    let e = file.endian();
    let data = file.data();
    let mut dynamic = None;
    for ph in file.elf_program_headers() {
        if let Some(d) = ph.dynamic(e, data).map_err(malformed)? {
            dynamic = Some(d);
        }
    }
    let Some(dynamic) = dynamic else {
        return Ok(Vec::new());
    };
    let mut tag = std::collections::HashMap::new();
    for d in dynamic {
        let t = d.d_tag(e) as i64;
        if t == i64::from(elf::DT_NULL) {
            break;
        }
        tag.insert(t, d.d_val(e));
    }
    let get = |t: u32| tag.get(&i64::from(t)).copied();
    if get(elf::DT_RELSZ).unwrap_or(0) != 0 {
        return Err(ImageError::UnsupportedRelocationTable(
            "DT_REL (implicit addends)",
        ));
    }
    if get(elf::DT_JMPREL).is_some()
        && get(elf::DT_PLTREL).is_some_and(|p| p != u64::from(elf::DT_RELA))
    {
        return Err(ImageError::UnsupportedRelocationTable(
            "DT_JMPREL with DT_REL entries",
        ));
    }
    let target_ok = |off: u64| {
        off.checked_add(8).is_some_and(|end| end <= image.span)
            && page_flags[(off / PAGE_SIZE) as usize].is_some()
            && page_flags[((off + 7) / PAGE_SIZE) as usize].is_some()
    };
    let mut out = Vec::new();
    let rela_size = std::mem::size_of::<elf::Rela64<Endianness>>() as u64;
    if let Some(ent) = get(elf::DT_RELAENT) {
        if ent != rela_size {
            return Err(malformed("DT_RELAENT is not 24"));
        }
    }
    let tables = [
        (get(elf::DT_RELA), get(elf::DT_RELASZ)),
        (get(elf::DT_JMPREL), get(elf::DT_PLTRELSZ)),
    ];
    for (addr, size) in tables {
        let (Some(addr), Some(size)) = (addr, size) else {
            continue;
        };
        if size > data.len() as u64 {
            return Err(malformed("relocation table larger than the file"));
        }
        let bytes = image_slice(image, addr, size)?;
        for chunk in bytes.chunks_exact(rela_size as usize) {
            let word = |i: usize| {
                u64::from_le_bytes(chunk[i * 8..i * 8 + 8].try_into().unwrap_or_default())
            };
            let (r_offset, r_info, r_addend) = (word(0), word(1), word(2));
            match (r_info & 0xffff_ffff) as u32 {
                elf::R_X86_64_NONE => {}
                elf::R_X86_64_RELATIVE => {
                    let off = r_offset;
                    if !target_ok(off) {
                        return Err(ImageError::RelocationOutOfImage(off));
                    }
                    if out.len() >= max {
                        return Err(malformed("more relocations than the image has words"));
                    }
                    out.push(Relocation {
                        offset: off,
                        addend: r_addend,
                    });
                }
                other => return Err(ImageError::UnsupportedRelocation(other)),
            }
        }
    }
    if let (Some(addr), Some(size)) = (get(DT_RELR), get(DT_RELRSZ)) {
        if size > data.len() as u64 {
            return Err(malformed("relocation table larger than the file"));
        }
        let bytes = image_slice(image, addr, size)?;
        let mut next = 0u64;
        let mut push = |off: u64| -> Result<(), ImageError> {
            if !target_ok(off) {
                return Err(ImageError::RelocationOutOfImage(off));
            }
            if out.len() >= max {
                return Err(malformed("more relocations than the image has words"));
            }
            let addend = u64::from_le_bytes(core::array::from_fn(|k| image.byte(off + k as u64)));
            out.push(Relocation {
                offset: off,
                addend,
            });
            Ok(())
        };
        for w in bytes.chunks_exact(8) {
            let word = u64::from_le_bytes(w.try_into().unwrap_or_default());
            if word & 1 == 0 {
                push(word)?;
                next = word.wrapping_add(8);
            } else {
                for i in 0..63u64 {
                    if (word >> (i + 1)) & 1 != 0 {
                        push(next.wrapping_add(i * 8))?;
                    }
                }
                next = next.wrapping_add(63 * 8);
            }
        }
    }
    // Sorted (stably: of two at one offset the later still wins), so that a boot applies
    // them chunk by chunk in one pass
    // (`KernelImage::relocated_chunks`).
    out.sort_by_key(|r| r.offset);
    Ok(out)
}

/// A function symbol, or an untyped one (an assembly label such as `_start`) defined in an
/// executable section.
fn is_code_symbol(
    file: &ElfFile64<'_, Endianness>,
    s: &object::read::elf::ElfSymbol64<'_, '_, Endianness>,
) -> bool {
    match s.kind() {
        SymbolKind::Text => true,
        SymbolKind::Unknown => s
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .is_some_and(|sec| sec.kind() == object::SectionKind::Text),
        _ => false,
    }
}

fn read_symbols(file: &ElfFile64<'_, Endianness>) -> Vec<Symbol> {
    let mut syms: Vec<Symbol> = file
        .symbols()
        .filter(|s| s.address() != 0 && is_code_symbol(file, s))
        .filter_map(|s| {
            Some(Symbol {
                addr: s.address(),
                size: s.size(),
                name: s.name().ok()?.to_owned(),
            })
        })
        .collect();
    syms.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)));
    syms.dedup_by_key(|s| s.addr);
    syms
}

#[cfg(test)]
mod tests {
    use super::{shared_runs, Relocation, Segment, SharedRun};
    use crate::page_table::MapFlags;

    fn run(vaddr: u64, len: u64, file_off: u64) -> SharedRun {
        SharedRun {
            vaddr,
            len,
            file_off,
        }
    }

    /// Shared runs: whole read-only pages of one segment's file bytes, no relocation in them
    /// (one straddling a page boundary excludes both pages), file offsets congruent to the
    /// address; writable pages, partial pages, bss and incongruent segments are not.
    #[test]
    fn shared_runs_are_whole_read_only_relocation_free_file_pages() {
        const P: u64 = 0x1000;
        let segments = [
            // R: pages 0-2 whole, page 3 partial.
            Segment {
                vaddr: 0,
                off: 0,
                filesz: 0x3800,
            },
            // RX at 0x4800 (file 0x3800, congruent): pages 5-8 whole, 9 partial.
            Segment {
                vaddr: 0x4800,
                off: 0x3800,
                filesz: 0x5000,
            },
            // RW: pages 0xa-0xb.
            Segment {
                vaddr: 0xa000,
                off: 0x9000,
                filesz: 0x2000,
            },
            // R, incongruent file offset: pages 0xd-0xe.
            Segment {
                vaddr: 0xd000,
                off: 0xb800,
                filesz: 0x2000,
            },
        ];
        let mut flags = vec![Some(MapFlags::RO); 0xf];
        flags[4] = None;
        for f in &mut flags[5..10] {
            *f = Some(MapFlags {
                write: false,
                exec: true,
            });
        }
        flags[0xa] = Some(MapFlags::RW);
        flags[0xb] = Some(MapFlags::RW);
        flags[0xc] = None;
        // One relocation straddling pages 6 and 7, one inside the RW segment.
        let relocations = [
            Relocation {
                offset: 0x6ffc,
                addend: 0,
            },
            Relocation {
                offset: 0xa010,
                addend: 0,
            },
        ];
        assert_eq!(
            shared_runs(&segments, &flags, &relocations),
            [
                run(0, 3 * P, 0),
                run(5 * P, P, 0x4000),
                run(8 * P, P, 0x7000)
            ]
        );
        // Without relocations pages 5-8 are one run.
        assert_eq!(
            shared_runs(&segments, &flags, &[]),
            [run(0, 3 * P, 0), run(5 * P, 4 * P, 0x4000)]
        );
    }

    /// More runs than a header holds: the longest are kept, by address.
    #[test]
    fn only_the_longest_shared_runs_are_kept() {
        const P: u64 = 0x1000;
        let segments = [Segment {
            vaddr: 0,
            off: 0,
            filesz: 0x20 * P,
        }];
        let flags = vec![Some(MapFlags::RO); 0x20];
        // Relocations cut the pages into runs of 1, 2, 3, 4, 5 and 6 pages, and the 5 left.
        let mut relocations = Vec::new();
        let mut at = 0;
        for len in 1..=6u64 {
            at += len * P;
            relocations.push(Relocation {
                offset: at,
                addend: 0,
            });
            at += P;
        }
        let runs = shared_runs(&segments, &flags, &relocations);
        let lens: Vec<u64> = runs.iter().map(|r| r.len / P).collect();
        assert_eq!(lens, [4, 5, 6, 5]);
        assert!(runs.windows(2).all(|w| w[0].vaddr < w[1].vaddr));
    }
    use super::*;
    use crate::test_elf::TestElf;

    #[test]
    fn relocations_are_applied_across_chunk_boundaries() {
        let span = 2 * RELOCATION_CHUNK + 100;
        let image: Vec<u8> = (0..span).map(|i| (i % 251) as u8).collect();
        // Sorted offsets: one in the first chunk, one straddling each boundary, the last
        // ending the image.
        let offsets = [
            8,
            RELOCATION_CHUNK as u64 - 3,
            2 * RELOCATION_CHUNK as u64 - 5,
            span as u64 - 8,
        ];
        let img = KernelImage {
            image: Footprint {
                file: Cow::Owned(image.clone()),
                segments: vec![Segment {
                    vaddr: 0,
                    off: 0,
                    filesz: span as u64,
                }],
                span: span as u64,
            },
            page_flags: vec![Some(MapFlags::RW); span.div_ceil(PAGE_SIZE as usize)],
            relocations: offsets
                .iter()
                .enumerate()
                .map(|(i, &offset)| Relocation {
                    offset,
                    addend: 0x1000 * (i as u64 + 1),
                })
                .collect(),
            entry: 0,
            symbols: Vec::new(),
            handover: None,
            shared_runs: Vec::new(),
            file: OnceLock::new(),
        };
        let base: u64 = 0x1234_5678_9abc_0000;
        let mut want = image;
        for r in &img.relocations {
            let o = r.offset as usize;
            want[o..o + 8].copy_from_slice(&base.wrapping_add(r.addend).to_le_bytes());
        }
        let mut got = Vec::new();
        let mut offsets_seen = Vec::new();
        img.relocated_chunks::<()>(base, &[], |off, chunk| {
            offsets_seen.push(off);
            got.extend_from_slice(chunk);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, want);
        assert_eq!(
            offsets_seen,
            [0, RELOCATION_CHUNK as u64, 2 * RELOCATION_CHUNK as u64]
        );
    }

    #[test]
    fn an_embedded_slice_parses_like_an_owned_copy() {
        let bytes = TestElf::default().build();
        let owned = KernelImage::parse(bytes.clone()).unwrap();
        let borrowed = KernelImage::parse(&*bytes.clone().leak()).unwrap();
        assert_eq!(
            crate::snapshot::kernel_digest(&owned),
            crate::snapshot::kernel_digest(&borrowed)
        );
        assert_eq!(owned.relocated(1 << 40), borrowed.relocated(1 << 40));
        // The footprint is the segments' file bytes at their link addresses, zeros between
        // and after them (as a copy of each segment into a zeroed image, which the snapshot
        // digest was taken over before).
        let file = ElfFile64::<Endianness>::parse(&bytes[..]).unwrap();
        let e = file.endian();
        let mut want = vec![0u8; owned.span() as usize];
        for ph in file.elf_program_headers() {
            if ph.p_type(e) == elf::PT_LOAD {
                let (v, o, n) = (
                    ph.p_vaddr(e) as usize,
                    ph.p_offset(e) as usize,
                    ph.p_filesz(e) as usize,
                );
                want[v..v + n].copy_from_slice(&bytes[o..o + n]);
            }
        }
        let mut got = Vec::new();
        owned.footprint_chunks(|b| got.extend_from_slice(b));
        assert_eq!(got, want);
        assert_eq!(
            crate::snapshot::kernel_digest(&owned),
            format!("crc32:{:08x}:len:{}", crc32fast::hash(&want), want.len())
        );
    }

    #[test]
    fn parses_valid_image() {
        let img = KernelImage::parse(TestElf::default().build()).unwrap();
        assert_eq!(img.entry(), 0x1000);
        assert_eq!(img.span(), 0x6000);
        assert_eq!(img.nr_relocations(), 1);
        let r = img.relocated(0x1_0000_0000);
        assert_eq!(
            u64::from_le_bytes(r[0x20c0..0x20c8].try_into().unwrap()),
            0x1_0000_1008
        );
        assert_eq!(
            img.page_flags()[1],
            Some(MapFlags {
                write: false,
                exec: true
            })
        );
        assert_eq!(img.page_flags()[2], Some(MapFlags::RW));
        assert_eq!(img.page_flags()[0], None);
        assert_eq!(img.symbolize(0x1004), Some(("_start".to_owned(), 4)));
        assert_eq!(img.symbolize(0x1010), None);
        assert_eq!(img.symbolize(0x10), None);
        assert_eq!(
            img.symbolize(0x1008),
            Some(("pvmux_kernel::main".to_owned(), 0))
        );
    }

    #[test]
    fn rejects_bad_images() {
        let err = |e: TestElf| KernelImage::parse(e.build()).unwrap_err().to_string();
        assert_eq!(
            KernelImage::parse(b"#!/bin/sh\n").unwrap_err().to_string(),
            "not an ELF file"
        );
        assert!(KernelImage::parse(Vec::new()).is_err());
        assert_eq!(
            err(TestElf {
                abi_version: 7,
                ..Default::default()
            }),
            format!("kernel built for ABI v7, host speaks v{ABI_VERSION}")
        );
        assert!(err(TestElf {
            abi_section: false,
            ..Default::default()
        })
        .contains("not a pvmux kernel"));
        assert!(err(TestElf {
            e_type: elf::ET_EXEC,
            ..Default::default()
        })
        .contains("ET_DYN"));
        assert!(err(TestElf {
            machine: elf::EM_AARCH64,
            ..Default::default()
        })
        .contains("x86-64"));
        assert!(err(TestElf {
            reloc_type: elf::R_X86_64_64,
            ..Default::default()
        })
        .contains("unsupported relocation type 1"));
        assert!(err(TestElf {
            reloc_offset: 0x9000,
            ..Default::default()
        })
        .contains("outside"));
        assert!(err(TestElf {
            data_vaddr: 0x1008,
            ..Default::default()
        })
        .contains("overlap"));
        assert!(err(TestElf {
            entry: 0x2000,
            ..Default::default()
        })
        .contains("entry point"));
        assert!(err(TestElf {
            bss: 1 << 40,
            ..Default::default()
        })
        .contains("spans"));
        // Truncations anywhere must give an error, never a panic.
        let good = TestElf::default().build();
        for n in 0..good.len() {
            let _ = KernelImage::parse(good[..n].to_vec());
        }
        // Byte flips must never panic.
        for i in 0..0x100 {
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = KernelImage::parse(b);
        }
    }
}
