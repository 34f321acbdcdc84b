//! The vDSO and its vvar page (the image and the layout are the `pvmux-vdso` crate,
//! `pv-kernel/vdso/`, built by `pv-kernel/build.rs`).
//!
//! Both live in user-pool frames allocated once, on the first exec: the vvar page (the
//! guest clock's calibration and the wall-clock offset, [`pvmux_vdso::Vvar`], public
//! values a program may read) and the image's pages. Every exec maps them copy-on-write
//! into the new space, the vvar page read-only at [`VVAR_VA`] and the image read+execute
//! one page above it, and passes the image's address in `AT_SYSINFO_EHDR`. The kernel keeps
//! a reference to each frame for ever, so a program that makes the pages writable and
//! writes them gets its own copy, never the shared frame.

use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

use pvmux_hypercalls::user::prot;
use pvmux_hypercalls::PAGE_SIZE;
use pvmux_vdso::{vvar_offset, VVAR_VALID};

use super::space::Mm;
use super::{pool, Errno};
use crate::irq::IrqLock;
use crate::mm::pool_mem;

/// The vDSO image (an ELF shared object linked at 0).
pub(crate) static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));

/// Where the vvar page is mapped: 1 MiB above the stack's top, below the end of the user
/// window.
pub(crate) const VVAR_VA: u64 = super::exec::STACK_TOP + (1 << 20);
/// Where the vDSO image is mapped (`AT_SYSINFO_EHDR`): right above the vvar page (the image
/// finds it at its own address minus a page).
pub(crate) const VDSO_VA: u64 = VVAR_VA + PAGE_SIZE;

/// Pages of the image.
fn image_pages() -> u64 {
    (IMAGE.len() as u64).div_ceil(PAGE_SIZE)
}

/// The frames: the vvar page, then the image's pages.
struct Frames {
    vvar: u64,
    image: Vec<u64>,
}

static FRAMES: spin::Once<Option<Frames>> = spin::Once::new();

/// Allocates and fills the frames (`None` if the pool is too short: programs then run
/// without a vDSO, reading the clock with the system call).
fn setup() -> Option<Frames> {
    let vvar = pool::alloc_zeroed().ok()?;
    let mut image = Vec::new();
    for i in 0..image_pages() {
        let Ok(f) = pool::alloc_zeroed() else {
            pool::put(vvar);
            image.into_iter().for_each(pool::put);
            return None;
        };
        let lo = (i * PAGE_SIZE) as usize;
        let hi = (lo + PAGE_SIZE as usize).min(IMAGE.len());
        pool_mem::write(f, &IMAGE[lo..hi]);
        image.push(f);
    }
    let bi = crate::boot::info();
    publish(
        vvar,
        crate::time::tsc_base(),
        bi.clock_mult,
        bi.clock_shift,
        crate::time::wall_epoch_ns(),
    );
    Some(Frames { vvar, image })
}

/// Publishes the clock again after a snapshot resumed (`crate::suspend`): programs read the
/// new sandbox's TSC base and the new host's wall clock from then on — through this
/// kernel's vvar page and the adopted ones ([`adopt_vvar`]).
pub(crate) fn republish() {
    let own = FRAMES.get().and_then(|f| f.as_ref()).map(|f| f.vvar);
    let adopted = ADOPTED.lock().clone();
    let bi = crate::boot::info();
    for vvar in own.into_iter().chain(adopted) {
        publish(
            vvar,
            crate::time::tsc_base(),
            bi.clock_mult,
            bi.clock_shift,
            crate::time::wall_epoch_ns(),
        );
    }
}

/// The vvar frames of adopted processes this kernel publishes its clock into
/// ([`adopt_vvar`]), each kept with a reference of the kernel's for ever (as its own).
static ADOPTED: IrqLock<Vec<u64>> = IrqLock::new(Vec::new());

/// An address space adopted from a hand-over record (`handover::adopt`) keeps the old
/// kernel's vvar and vDSO pages (copy-on-write page runs of the record, the old vDSO's
/// code reading the old kernel's vvar layout). If its vvar page is one of this kernel's
/// layout — the area this kernel would map, holding this tenant's clock (`valid`, the same
/// multiplier and shift) at this kernel's offsets — it gets this kernel's clock now (the
/// old kernel's wall-clock epoch may have moved since boot) and at every snapshot resume
/// ([`republish`]). A page of another layout is left as the old kernel wrote it.
pub(crate) fn adopt_vvar(mm: &Mm) {
    let bi = crate::boot::info();
    if let Some(vvar) = adopt_vvar_in(mm, bi.clock_mult, bi.clock_shift, &mut ADOPTED.lock()) {
        publish(
            vvar,
            crate::time::tsc_base(),
            bi.clock_mult,
            bi.clock_shift,
            crate::time::wall_epoch_ns(),
        );
    }
}

/// [`adopt_vvar`] with the clock's `mult` and `shift`, the frames kept in `adopted`: the
/// vvar frame of `mm` if it is of this layout and newly kept.
fn adopt_vvar_in(mm: &Mm, mult: u64, shift: u32, adopted: &mut Vec<u64>) -> Option<u64> {
    let area = mm.vma_at(VVAR_VA).is_some_and(|(s, v)| {
        s == VVAR_VA
            && v.end == VDSO_VA
            && v.prot == prot::READ
            && v.file.is_none()
            && v.shm.is_none()
    });
    let vvar = mm.frame_of(VVAR_VA).filter(|_| area)?;
    if adopted.contains(&vvar) {
        return None;
    }
    let ours = pool_mem::atomic_u32(vvar + vvar_offset::FLAGS).load(Ordering::Acquire)
        == VVAR_VALID
        && pool_mem::atomic_u64(vvar + vvar_offset::MULT).load(Ordering::Relaxed) == mult
        && pool_mem::atomic_u32(vvar + vvar_offset::SHIFT).load(Ordering::Relaxed) == shift.min(63);
    if !ours {
        return None;
    }
    pool::get(vvar);
    adopted.push(vvar);
    Some(vvar)
}

/// Writes the clock data into the vvar frame under its sequence counter.
fn publish(vvar: u64, tsc_base: u64, mult: u64, shift: u32, wall_epoch_ns: u64) {
    let seq = pool_mem::atomic_u32(vvar + vvar_offset::SEQ);
    let s = seq.load(Ordering::Relaxed);
    seq.store(s.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    let w64 = |off, v| pool_mem::atomic_u64(vvar + off).store(v, Ordering::Relaxed);
    w64(vvar_offset::TSC_BASE, tsc_base);
    w64(vvar_offset::MULT, mult);
    w64(vvar_offset::WALL_EPOCH_NS, wall_epoch_ns);
    pool_mem::atomic_u32(vvar + vvar_offset::SHIFT).store(shift.min(63), Ordering::Relaxed);
    pool_mem::atomic_u32(vvar + vvar_offset::FLAGS).store(VVAR_VALID, Ordering::Relaxed);
    seq.store(s.wrapping_add(2), Ordering::Release);
}

/// Maps the vvar page and the vDSO into `mm` (a fresh space), returning the image's address
/// for `AT_SYSINFO_EHDR`, or 0 (no vDSO) if its frames could not be allocated.
pub(crate) fn map(mm: &mut Mm) -> Result<u64, Errno> {
    let Some(frames) = FRAMES.call_once(setup) else {
        return Ok(0);
    };
    if !mm.is_free(VVAR_VA, VDSO_VA + image_pages() * PAGE_SIZE) {
        return Ok(0);
    }
    mm.add_vma(VVAR_VA, VDSO_VA, prot::READ, None);
    pool::get(frames.vvar);
    mm.install_cow(VVAR_VA, frames.vvar);
    mm.add_vma(
        VDSO_VA,
        VDSO_VA + image_pages() * PAGE_SIZE,
        prot::READ | prot::EXEC,
        None,
    );
    for (i, &f) in frames.image.iter().enumerate() {
        pool::get(f);
        mm.install_cow(VDSO_VA + i as u64 * PAGE_SIZE, f);
    }
    Ok(VDSO_VA)
}

#[cfg(test)]
mod tests {
    use object::elf;
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    use object::{Endianness, Object, ObjectSection, ObjectSymbol};

    use super::*;

    #[test]
    fn an_adopted_vvar_page_of_this_layout_is_kept_and_published_into() {
        pool::init_for_tests();
        let (mult, shift) = (0x1234_5678, 24);
        let vvar = pool::alloc_zeroed().expect("frame");
        publish(vvar, 7, mult, shift, 9);
        let mut mm = Mm::new();
        assert!(mm.adopt_region(VVAR_VA, VDSO_VA, prot::READ, None, None, Default::default()));
        assert!(mm.adopt_pages(VVAR_VA, vvar, 1, true));
        let mut adopted = Vec::new();
        // Another clock (or layout): left alone.
        assert_eq!(adopt_vvar_in(&mm, mult + 1, shift, &mut adopted), None);
        assert_eq!(adopt_vvar_in(&mm, mult, shift + 1, &mut adopted), None);
        assert_eq!(pool::refs(vvar), 1);
        // This kernel's: kept once, with a reference of its own.
        assert_eq!(adopt_vvar_in(&mm, mult, shift, &mut adopted), Some(vvar));
        assert_eq!(adopt_vvar_in(&mm, mult, shift, &mut adopted), None);
        assert_eq!((adopted.as_slice(), pool::refs(vvar)), (&[vvar][..], 2));
        // Not the vvar area (another address, or writable): none.
        let mut other = Mm::new();
        assert!(other.adopt_region(
            VVAR_VA,
            VDSO_VA,
            prot::READ | prot::WRITE,
            None,
            None,
            Default::default()
        ));
        assert!(other.adopt_pages(VVAR_VA, vvar, 1, true));
        assert_eq!(adopt_vvar_in(&other, mult, shift, &mut Vec::new()), None);
        mm.take_frames();
        other.take_frames();
        pool::put(vvar);
        pool::put(vvar);
    }

    #[test]
    fn the_image_is_a_shared_object_with_the_linux_symbols() {
        // (A heap copy: the ELF reader wants the headers aligned.)
        let image = IMAGE.to_vec();
        let file = ElfFile64::<Endianness>::parse(&image[..]).expect("an ELF file");
        let hdr = file.elf_header();
        let e = file.endian();
        assert_eq!(hdr.e_type(e), elf::ET_DYN);
        assert_eq!(hdr.e_machine(e), elf::EM_X86_64);
        // One loadable segment, read+execute, linked at 0, that holds the whole file.
        let loads: Vec<_> = file
            .elf_program_headers()
            .iter()
            .filter(|p| p.p_type(e) == elf::PT_LOAD)
            .collect();
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].p_vaddr(e), 0);
        assert_eq!(loads[0].p_flags(e), elf::PF_R | elf::PF_X);
        assert_eq!(loads[0].p_filesz(e), loads[0].p_memsz(e), "no .bss");
        assert!(file
            .elf_program_headers()
            .iter()
            .any(|p| p.p_type(e) == elf::PT_DYNAMIC));
        // Nothing to relocate (nobody relocates a vDSO).
        for s in file.sections() {
            let name = s.name().unwrap_or("");
            assert!(!name.starts_with(".rela"), "relocations: {name}");
            assert!(s.relocations().next().is_none(), "relocations in {name}");
        }
        // The names the C libraries look up, with version LINUX_2.6.
        let names: Vec<&str> = file
            .dynamic_symbols()
            .filter(|s| s.is_definition())
            .filter_map(|s| s.name().ok())
            .collect();
        for f in [
            "clock_gettime",
            "gettimeofday",
            "time",
            "getcpu",
            "clock_getres",
        ] {
            assert!(names.contains(&f), "{f} missing from {names:?}");
            let vdso_name = alloc::format!("__vdso_{f}");
            assert!(names.contains(&vdso_name.as_str()), "{vdso_name} missing");
        }
        let versions = file
            .section_by_name(".gnu.version_d")
            .expect("version definitions");
        assert!(versions.size() > 0);
        let dynstr = file.section_by_name(".dynstr").expect(".dynstr");
        let strs = dynstr.data().expect("dynstr data");
        assert!(strs.windows(10).any(|w| w == b"LINUX_2.6\0"));
        assert!(strs.windows(16).any(|w| w == b"linux-vdso.so.1\0"));
    }
}
