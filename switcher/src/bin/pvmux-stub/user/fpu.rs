//! User FPU state between the signal frame and the slot: the image user code left is copied
//! from the frame's FP area into the slot's `fpstate` at every exit, and a requested image is
//! copied back (sanitised) or the state reset before user code runs again.

use pvmux_hypercalls::user::USER_FPSTATE_MAX;

use super::cpu::{AREA_TRAMP_FP, TRAMP_FP_SIZE, USER_AREAS_BASE};
use super::slot::Slot;
use crate::sigctx::FPSTATE;
use crate::state::{AREA_ALTSTACK, AREA_SIZE};

// The FP area of a signal frame (FXSAVE layout, then the XSAVE header and extended state).
const FX_FCW: usize = 0;
const FX_MXCSR: usize = 24;
const FX_MXCSR_MASK: usize = 28;
/// `struct _fpx_sw_bytes` (the kernel's software-reserved bytes): magic1, extended_size,
/// xfeatures (u64), xstate_size.
const FX_SW: usize = 464;
const FX_LEGACY: usize = 512;
const XSAVE_HDR_END: usize = 576;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;

/// The signal frame's FP area: `(address, size)`, where size is the XSAVE size the kernel
/// recorded (magic1 present) or 512 (FXSAVE only). `None` if absent or not inside this
/// thread's signal stack — or, for the patch entry (`super::patch`), its buffer in the area,
/// which carries the same software bytes.
fn frame_fp(g: &[u64; 32]) -> Option<(*mut u8, usize, bool)> {
    let fp = g[FPSTATE];
    let area = fp & !(AREA_SIZE - 1);
    let (lo, hi) = if fp == area + AREA_TRAMP_FP {
        (fp, fp + TRAMP_FP_SIZE)
    } else {
        (area + AREA_ALTSTACK, area + AREA_SIZE)
    };
    if fp < lo || fp + FX_LEGACY as u64 > hi || area < USER_AREAS_BASE {
        return None;
    }
    let p = fp as *mut u8;
    // SAFETY: 512 bytes at p lie in the signal stack (checked above).
    let (magic, size) = unsafe {
        (
            (p.add(FX_SW) as *const u32).read(),
            (p.add(FX_SW + 16) as *const u32).read() as usize,
        )
    };
    if magic == FP_XSTATE_MAGIC1 && size >= XSAVE_HDR_END && fp + size as u64 + 4 <= hi {
        Some((p, size, true))
    } else {
        Some((p, FX_LEGACY, false))
    }
}

/// Copies the frame's FP state into the slot; returns the bytes saved (0 if it does not fit).
pub(super) fn save_fpu(slot: Slot, g: &[u64; 32]) -> u32 {
    let Some((p, size, _)) = frame_fp(g) else {
        return 0;
    };
    if size > USER_FPSTATE_MAX {
        return 0;
    }
    // SAFETY: `size` bytes at p lie in the signal stack; the slot's fpstate holds
    // USER_FPSTATE_MAX >= size bytes. Raw copies: no reference to either is formed.
    unsafe {
        core::ptr::copy_nonoverlapping(p, slot.fpstate(), size);
    }
    size as u32
}

/// Loads `fpstate[..len]` from the slot into the frame (bounded by the frame's size), keeping
/// the kernel's software bytes and sanitising what the CPU would refuse (MXCSR reserved bits,
/// XSAVE header).
pub(super) fn load_fpu(slot: Slot, g: &[u64; 32], len: usize) {
    load_fpu_from(slot.fpstate(), g, len);
}

/// [`load_fpu`] from `len` bytes at `src`: the slot's fpstate, or the patch entry's buffer
/// (`super::patch`), both at least `len.min(USER_FPSTATE_MAX)` bytes.
pub(super) fn load_fpu_from(src: *const u8, g: &[u64; 32], len: usize) {
    let Some((p, size, xsave)) = frame_fp(g) else {
        return;
    };
    let n = len.min(size).min(USER_FPSTATE_MAX);
    // SAFETY: `n` bytes fit both the frame's FP area (in the signal stack or the entry's
    // buffer) and the source (caller contract); the software bytes at 464..512 and magic2
    // (at p + size) are not written. If both are the entry's buffer the copies are no-ops
    // in effect (`copy` allows the overlap).
    unsafe {
        let mask = mxcsr_mask(p);
        core::ptr::copy(src, p, n.min(FX_SW));
        if n > FX_LEGACY {
            core::ptr::copy(src.add(FX_LEGACY), p.add(FX_LEGACY), n - FX_LEGACY);
        }
        let mxcsr = p.add(FX_MXCSR) as *mut u32;
        mxcsr.write(mxcsr.read() & mask);
        if xsave && n >= XSAVE_HDR_END {
            let features = (p.add(FX_SW + 8) as *const u64).read();
            let bv = p.add(FX_LEGACY) as *mut u64;
            bv.write(bv.read() & features);
            core::ptr::write_bytes(p.add(FX_LEGACY + 8), 0, XSAVE_HDR_END - FX_LEGACY - 8);
        }
    }
}

/// The bytes of an FP image that hold `MXCSR` and `xmm0`-`xmm15`: the only FPU state the
/// stub's own code changes (it is built for SSE2 and never uses x87; legacy SSE instructions
/// leave the upper halves of the vector registers alone). The patch entry saves these alone
/// (`super::patch`).
pub(super) const SSE_PARTS: [(usize, usize); 2] = [(FX_MXCSR, 4), (FX_XMM, 256)];
const FX_XMM: usize = 160;
/// Offset of the XSAVE header's `xstate_bv`.
const XSTATE_BV: usize = FX_LEGACY;
/// `xstate_bv`'s SSE bit (the `xmm` registers).
const XFEATURE_SSE: u64 = 1 << 1;

/// Copies [`SSE_PARTS`] from the image at `src` into the one at `dst` (`xsave`: `dst` is in
/// XSAVE format, whose `xstate_bv` then marks the `xmm` registers as saved).
///
/// # Safety
/// `src` and `dst` are valid for 512 bytes (576 with `xsave`) and do not overlap.
pub(super) unsafe fn copy_sse(src: *const u8, dst: *mut u8, xsave: bool) {
    // SAFETY: within the 512 bytes the caller vouches for, at offsets below 512.
    unsafe {
        for (off, len) in SSE_PARTS {
            core::ptr::copy_nonoverlapping(src.add(off), dst.add(off), len);
        }
        if xsave {
            let bv = dst.add(XSTATE_BV) as *mut u64;
            bv.write(bv.read() | XFEATURE_SSE);
        }
    }
}

/// Loads [`SSE_PARTS`] from `src` (the patch entry's buffer) into the frame: the rest of the
/// frame's FP state is the thread's own already (the signal came while the entry kept it in
/// the registers). `MXCSR` is masked as in [`load_fpu_from`].
pub(super) fn load_sse_from(src: *const u8, g: &[u64; 32]) {
    let Some((p, _, xsave)) = frame_fp(g) else {
        return;
    };
    if core::ptr::eq(src, p) {
        return;
    }
    // SAFETY: the frame's FP area has at least 512 bytes (576 with XSAVE: `frame_fp`); the
    // caller passes the entry's buffer, which is not the frame (checked above).
    unsafe {
        let mask = mxcsr_mask(p);
        copy_sse(src, p, xsave);
        let mxcsr = p.add(FX_MXCSR) as *mut u32;
        mxcsr.write(mxcsr.read() & mask);
    }
}

/// The `MXCSR` bits the CPU accepts, from the host's image at `p` (its `MXCSR_MASK`; 0 means
/// the architectural default, `0xffbf`).
///
/// # Safety
/// `p` is valid for 512 bytes.
unsafe fn mxcsr_mask(p: *const u8) -> u32 {
    // SAFETY: within the 512 bytes the caller vouches for.
    match unsafe { (p.add(FX_MXCSR_MASK) as *const u32).read() } {
        0 => 0xffbf,
        m => m,
    }
}

/// Resets the frame's FP state to the initial configuration (FCW 0x37f, MXCSR 0x1f80, all
/// else zero, XSAVE header `xstate_bv` = 0).
pub(super) fn init_fpu(g: &[u64; 32]) {
    let Some((p, size, xsave)) = frame_fp(g) else {
        return;
    };
    // SAFETY: `size` bytes at p lie in the signal stack; the software bytes at 464..512 and
    // magic2 (at p + size) are not written.
    unsafe {
        let mask = (p.add(FX_MXCSR_MASK) as *const u32).read();
        core::ptr::write_bytes(p, 0, FX_SW);
        (p.add(FX_FCW) as *mut u16).write(0x37f);
        (p.add(FX_MXCSR) as *mut u32).write(0x1f80);
        (p.add(FX_MXCSR_MASK) as *mut u32).write(mask);
        if xsave {
            core::ptr::write_bytes(p.add(FX_LEGACY), 0, size - FX_LEGACY);
        }
    }
}
