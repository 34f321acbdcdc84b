//! The FPU state in a signal frame, as Linux keeps it: on the user stack above the
//! `rt_sigframe` (`uc_mcontext.fpstate` points at it), never in the kernel. A handler that
//! never returns (`siglongjmp` out of it) therefore leaves nothing behind in the kernel, and
//! `rt_sigreturn` takes the state back from the frame, validated like any user input.
//!
//! The image is the one the user stub saves (`UserState::fp`): the host's signal-frame FP
//! area — the 512-byte FXSAVE layout, whose bytes 464..512 hold the kernel's software bytes
//! (`struct _fpx_sw_bytes`: magic1, extended size, features, XSAVE size), then the XSAVE
//! header and the extended state — exactly what Linux writes for its own programs. Linux
//! puts `FP_XSTATE_MAGIC2` right after the image.
//!
//! ```text
//!  higher addresses   ┌──────────────────────────┐ top (below the red zone, or the
//!                     │ FP image, magic2         │      alternate stack's top)
//!                     ├──────────────────────────┤ fpstate: 64-byte aligned
//!                     │ rt_sigframe              │
//!                     └──────────────────────────┘ sp: sp + 8 16-byte aligned
//! ```

use alloc::vec::Vec;

use crate::fs::Errno;

/// `struct _fpx_sw_bytes.magic1`: the image is XSAVE, described by the software bytes.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// `FP_XSTATE_MAGIC2`, right after an XSAVE image.
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Its size.
pub(crate) const MAGIC2_SIZE: usize = 4;
/// Offsets in the FXSAVE area.
const FX_FCW: usize = 0;
const FX_MXCSR: usize = 24;
const FX_MXCSR_MASK: usize = 28;
/// The software bytes (`struct _fpx_sw_bytes`): magic1 (u32), extended_size (u32),
/// xfeatures (u64), xstate_size (u32).
const SW: usize = 464;
const SW_XFEATURES: usize = SW + 8;
const SW_XSTATE_SIZE: usize = SW + 16;
/// End of the legacy (FXSAVE) area, start of the XSAVE header.
const LEGACY: usize = 512;
/// End of the XSAVE header.
const XSAVE_HDR_END: usize = 576;
/// `xstate_bv` of an FXSAVE-only restore: x87 and SSE from the legacy area, every other
/// component in its initial state.
const XFEATURES_FP_SSE: u64 = 0b11;
/// MXCSR mask when the CPU reports none.
const DEFAULT_MXCSR_MASK: u32 = 0xffbf;
/// Alignment of the FP area (XSAVE needs 64 bytes).
const FP_ALIGN: u64 = 64;

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

/// True if `img` is an XSAVE image its software bytes describe (magic1, and the XSAVE size
/// is the image's length).
pub(crate) fn is_xsave(img: &[u8]) -> bool {
    img.len() >= XSAVE_HDR_END
        && u32_at(img, SW) == FP_XSTATE_MAGIC1
        && u32_at(img, SW_XSTATE_SIZE) as usize == img.len()
}

/// Where the FP image `len` bytes long goes below `top`: its 64-byte aligned address, which
/// is also the top the `rt_sigframe` is placed below (Linux's `fpu__alloc_mathframe`).
pub(crate) const fn area_below(top: u64, len: usize) -> u64 {
    top.wrapping_sub((len + MAGIC2_SIZE) as u64) & !(FP_ALIGN - 1)
}

/// The most bytes a signal frame with an FP image of `fp_len` bytes takes below the top of
/// its stack (`AT_MINSIGSTKSZ`): the `rt_sigframe`, the image and magic2, and the worst
/// alignment of both, rounded up to 16 bytes.
pub(crate) const fn max_frame_size(fp_len: usize) -> u64 {
    let n = super::frame::FRAME_SIZE + 16 + fp_len + MAGIC2_SIZE + FP_ALIGN as usize;
    ((n + 15) & !15) as u64
}

/// The bytes written at the FP area for image `img`: the image and, for an XSAVE image,
/// `FP_XSTATE_MAGIC2` after it. `ENOMEM` if the kernel heap cannot hold the copy.
pub(crate) fn frame_bytes(img: &[u8]) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    out.try_reserve_exact(img.len() + MAGIC2_SIZE)
        .map_err(|_| Errno::ENOMEM)?;
    out.extend_from_slice(img);
    if is_xsave(img) {
        out.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
    }
    Ok(out)
}

/// The MXCSR mask of image `cur` (the bits a program may set).
fn mxcsr_mask(cur: &[u8]) -> u32 {
    match u32_at(cur, FX_MXCSR_MASK) {
        0 => DEFAULT_MXCSR_MASK,
        m => m,
    }
}

/// The FPU state `rt_sigreturn` restores, from `user` — the bytes at the frame's
/// `fpstate`, `cur.len() + MAGIC2_SIZE` of them — over `cur`, the thread's state now (the
/// image the user stub saved, whose software bytes and MXCSR mask are the host's). Like
/// Linux's `fpu__restore_sig`: an image whose software bytes and magic2 describe a full
/// XSAVE image of the thread's size restores every component; any other is taken as an
/// FXSAVE image (x87 and SSE, every other component back to its initial state). Nothing of
/// the program's choosing survives that the CPU would refuse or that is not the program's:
/// the software bytes stay the host's, MXCSR's reserved bits are cleared, the XSAVE header
/// keeps only features the host saves (`xcomp_bv` and the reserved words zero).
pub(crate) fn restored(user: &[u8], cur: &[u8]) -> Vec<u8> {
    let mut out = cur.to_vec();
    if out.len() < LEGACY || user.len() < LEGACY {
        return out;
    }
    let len = out.len();
    let full = is_xsave(&out)
        && user.len() >= len + MAGIC2_SIZE
        && u32_at(user, SW) == FP_XSTATE_MAGIC1
        && u32_at(user, SW_XSTATE_SIZE) as usize == len
        && u32_at(user, len) == FP_XSTATE_MAGIC2;
    out[..SW].copy_from_slice(&user[..SW]);
    let mask = mxcsr_mask(cur);
    let mxcsr = u32_at(&out, FX_MXCSR) & mask;
    out[FX_MXCSR..FX_MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
    out[FX_MXCSR_MASK..FX_MXCSR_MASK + 4].copy_from_slice(&cur[FX_MXCSR_MASK..FX_MXCSR_MASK + 4]);
    if len >= XSAVE_HDR_END {
        let features = u64_at(cur, SW_XFEATURES);
        let bv = if full {
            out[LEGACY..len].copy_from_slice(&user[LEGACY..len]);
            u64_at(&out, LEGACY) & features
        } else {
            out[XSAVE_HDR_END..len].fill(0);
            XFEATURES_FP_SSE & features
        };
        out[LEGACY..XSAVE_HDR_END].fill(0);
        out[LEGACY..LEGACY + 8].copy_from_slice(&bv.to_le_bytes());
    }
    out
}

/// The initial FPU state in the format of `cur` (`rt_sigreturn` of a frame without FP
/// state, as Linux's `fpu__clear_user_states`): FCW 0x37f, MXCSR 0x1f80, everything else
/// zero and every XSAVE component initial; the software bytes and MXCSR mask stay.
pub(crate) fn initial(cur: &[u8]) -> Vec<u8> {
    let mut out = cur.to_vec();
    if out.len() < LEGACY {
        return out;
    }
    out[..SW].fill(0);
    out[FX_FCW..FX_FCW + 2].copy_from_slice(&0x37fu16.to_le_bytes());
    out[FX_MXCSR..FX_MXCSR + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
    out[FX_MXCSR_MASK..FX_MXCSR_MASK + 4].copy_from_slice(&cur[FX_MXCSR_MASK..FX_MXCSR_MASK + 4]);
    let len = out.len();
    out[LEGACY..len].fill(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 1024;

    /// An XSAVE image as the host saves it: software bytes, MXCSR mask, features 0b111.
    fn host_image(fill: u8) -> Vec<u8> {
        let mut b = alloc::vec![fill; SIZE];
        b[SW..LEGACY].fill(0);
        b[SW..SW + 4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        b[SW + 4..SW + 8].copy_from_slice(&((SIZE + 4) as u32).to_le_bytes());
        b[SW_XFEATURES..SW_XFEATURES + 8].copy_from_slice(&0b111u64.to_le_bytes());
        b[SW_XSTATE_SIZE..SW_XSTATE_SIZE + 4].copy_from_slice(&(SIZE as u32).to_le_bytes());
        b[FX_MXCSR_MASK..FX_MXCSR_MASK + 4].copy_from_slice(&0xffffu32.to_le_bytes());
        b[FX_MXCSR..FX_MXCSR + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
        b[LEGACY..XSAVE_HDR_END].fill(0);
        b[LEGACY..LEGACY + 8].copy_from_slice(&0b111u64.to_le_bytes());
        b
    }

    #[test]
    fn the_area_is_aligned_and_holds_image_and_magic2() {
        let top = 0x7fff_1234_5678;
        let a = area_below(top, SIZE);
        assert_eq!(a % 64, 0);
        assert!(a + (SIZE + MAGIC2_SIZE) as u64 <= top);
        assert!(top - a < (SIZE + MAGIC2_SIZE) as u64 + 64);
        let img = host_image(0x11);
        assert!(is_xsave(&img));
        let bytes = frame_bytes(&img).unwrap();
        assert_eq!(&bytes[..SIZE], &img[..]);
        assert_eq!(u32_at(&bytes, SIZE), FP_XSTATE_MAGIC2);
        // An FXSAVE-only image gets no magic2.
        assert_eq!(frame_bytes(&img[..LEGACY]).unwrap().len(), LEGACY);
    }

    #[test]
    fn the_largest_frame_fits_every_placement() {
        // Every top alignment: the frame and the image fit in `max_frame_size` bytes.
        for top in (0x7fff_0000u64..0x7fff_0000 + 128).step_by(8) {
            let fp = area_below(top, SIZE);
            let sp = (fp.wrapping_sub(super::super::frame::FRAME_SIZE as u64) & !15) - 8;
            assert!(top - sp <= max_frame_size(SIZE), "top {top:#x}");
        }
        assert_eq!(max_frame_size(SIZE) % 16, 0);
    }

    #[test]
    fn sigreturn_takes_back_what_delivery_wrote() {
        let saved = host_image(0x22);
        let frame = frame_bytes(&saved).unwrap();
        // The handler ran with other state meanwhile.
        let now = host_image(0x33);
        assert_eq!(restored(&frame, &now), saved);
    }

    #[test]
    fn an_edited_image_is_sanitised() {
        let now = host_image(0x33);
        let mut frame = frame_bytes(&host_image(0x22)).unwrap();
        // MXCSR reserved bits, foreign software bytes, header garbage and features the host
        // does not save.
        frame[FX_MXCSR..FX_MXCSR + 4].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        frame[FX_MXCSR_MASK..FX_MXCSR_MASK + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        frame[SW + 4..SW + 8].copy_from_slice(&7u32.to_le_bytes());
        frame[LEGACY..LEGACY + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        frame[LEGACY + 8..XSAVE_HDR_END].fill(0xee);
        let r = restored(&frame, &now);
        assert_eq!(u32_at(&r, FX_MXCSR), 0xffff, "only the mask's bits");
        assert_eq!(u32_at(&r, FX_MXCSR_MASK), 0xffff, "the host's mask");
        assert_eq!(
            &r[SW..LEGACY],
            &now[SW..LEGACY],
            "the host's software bytes"
        );
        assert_eq!(
            u64_at(&r, LEGACY),
            0b111,
            "xstate_bv within the host's features"
        );
        assert!(r[LEGACY + 8..XSAVE_HDR_END].iter().all(|&b| b == 0));
        assert_eq!(r[XSAVE_HDR_END], 0x22, "the extended state is the frame's");
        assert_eq!(r.len(), now.len());
    }

    #[test]
    fn a_frame_without_magic2_restores_x87_and_sse_only() {
        let now = host_image(0x33);
        let mut frame = frame_bytes(&host_image(0x22)).unwrap();
        frame[SIZE..].fill(0);
        let r = restored(&frame, &now);
        assert_eq!(r[0x40], 0x22, "the legacy area is the frame's");
        assert_eq!(u64_at(&r, LEGACY), XFEATURES_FP_SSE);
        assert!(
            r[XSAVE_HDR_END..].iter().all(|&b| b == 0),
            "other components initial"
        );
        // A short (FXSAVE-only) frame read back.
        let r = restored(&frame[..LEGACY], &now);
        assert_eq!(r.len(), SIZE);
        assert_eq!(u64_at(&r, LEGACY), XFEATURES_FP_SSE);
        // Nothing to restore over: the state stays.
        assert_eq!(restored(&frame, &[]), Vec::<u8>::new());
    }

    #[test]
    fn no_fp_state_means_the_initial_state() {
        let now = host_image(0x33);
        let r = initial(&now);
        assert_eq!(r.len(), now.len());
        assert_eq!(u32_at(&r, FX_FCW) & 0xffff, 0x37f);
        assert_eq!(u32_at(&r, FX_MXCSR), 0x1f80);
        assert_eq!(&r[SW..LEGACY], &now[SW..LEGACY]);
        assert!(r[LEGACY..].iter().all(|&b| b == 0));
    }
}
