//! Vector code the kernel runs when the CPU has the instructions (detected once with CPUID
//! and XGETBV): four SipHash-2-4 computations in the four 64-bit lanes of AVX2 registers,
//! for the program image cache's tags (`linux::imagecache`). The only `unsafe` is the
//! call into the `#[target_feature]` function once AVX2 is known to be there; the callers
//! get the same results with or without it.

use core::sync::atomic::{AtomicU8, Ordering};

/// Whether the CPU and the host's saved state allow AVX2: CPUID.1:ECX.OSXSAVE and AVX,
/// XCR0's SSE and AVX state bits, CPUID.(7,0):EBX.AVX2. Detected once.
pub(crate) fn has_avx2() -> bool {
    // 0 = not yet known, 1 = no, 2 = yes.
    static KNOWN: AtomicU8 = AtomicU8::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let yes = detect_avx2();
            KNOWN.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}

fn detect_avx2() -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let leaf1 = __cpuid(1);
    let (osxsave, avx) = (leaf1.ecx & (1 << 27) != 0, leaf1.ecx & (1 << 28) != 0);
    if !osxsave || !avx || __cpuid(0).eax < 7 {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: `xgetbv` with ECX = 0 reads XCR0; CPUID said the OS enabled it (OSXSAVE).
    // It touches no memory.
    unsafe {
        core::arch::asm!(
            "xgetbv",
            in("ecx") 0u32,
            out("eax") lo,
            out("edx") _hi,
            options(nomem, nostack, preserves_flags)
        )
    };
    lo & 0b110 == 0b110 && __cpuid_count(7, 0).ebx & (1 << 5) != 0
}

/// SipHash-2-4 states `(v0, v1, v2, v3)` of four messages after absorbing their first
/// `words` little-endian 8-byte words, from the initial state `init`; `None` if the CPU
/// has no AVX2 (the caller absorbs them itself) or a message is shorter than `words`.
pub(crate) fn siphash24_absorb4(
    init: [u64; 4],
    msgs: [&[u8]; 4],
    words: usize,
) -> Option<[[u64; 4]; 4]> {
    if !has_avx2() || msgs.iter().any(|m| m.len() / 8 < words) {
        return None;
    }
    // Events off while the state lives in YMM registers: the event entry saves only the
    // FXSAVE state (x87 and the low 128 bits of each vector register, `trap.rs`), and an
    // event handler may switch to another kernel thread that runs this code too, whose
    // upper halves the interrupted one would then resume with (64 KiB take ~10 µs).
    let _events = crate::irq::IrqGuard::new();
    // SAFETY: the CPU has AVX2 (checked above), which is all the function needs.
    Some(unsafe { absorb4_avx2(init, msgs, words) })
}

/// [`siphash24_absorb4`] on AVX2: lane `i` of each register is message `i`'s state.
#[target_feature(enable = "avx2")]
fn absorb4_avx2(init: [u64; 4], msgs: [&[u8]; 4], words: usize) -> [[u64; 4]; 4] {
    use core::arch::x86_64::{
        __m256i, _mm256_add_epi64, _mm256_extract_epi64, _mm256_or_si256, _mm256_set1_epi64x,
        _mm256_set_epi64x, _mm256_shuffle_epi32, _mm256_slli_epi64, _mm256_srli_epi64,
        _mm256_xor_si256,
    };
    #[target_feature(enable = "avx2")]
    #[inline]
    fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi64::<L>(x), _mm256_srli_epi64::<R>(x))
    }
    // Swapping the 32-bit halves of each lane is a rotation by 32.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn rotl32(x: __m256i) -> __m256i {
        _mm256_shuffle_epi32::<0b10_11_00_01>(x)
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn lanes(v: __m256i) -> [u64; 4] {
        [
            _mm256_extract_epi64::<0>(v) as u64,
            _mm256_extract_epi64::<1>(v) as u64,
            _mm256_extract_epi64::<2>(v) as u64,
            _mm256_extract_epi64::<3>(v) as u64,
        ]
    }
    let word = |m: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&m[i * 8..i * 8 + 8]);
        i64::from_le_bytes(w)
    };
    let [mut v0, mut v1, mut v2, mut v3] = init.map(|v| _mm256_set1_epi64x(v as i64));
    for i in 0..words {
        let m = _mm256_set_epi64x(
            word(msgs[3], i),
            word(msgs[2], i),
            word(msgs[1], i),
            word(msgs[0], i),
        );
        v3 = _mm256_xor_si256(v3, m);
        for _ in 0..2 {
            v0 = _mm256_add_epi64(v0, v1);
            v1 = rotl::<13, 51>(v1);
            v1 = _mm256_xor_si256(v1, v0);
            v0 = rotl32(v0);
            v2 = _mm256_add_epi64(v2, v3);
            v3 = rotl::<16, 48>(v3);
            v3 = _mm256_xor_si256(v3, v2);
            v0 = _mm256_add_epi64(v0, v3);
            v3 = rotl::<21, 43>(v3);
            v3 = _mm256_xor_si256(v3, v0);
            v2 = _mm256_add_epi64(v2, v1);
            v1 = rotl::<17, 47>(v1);
            v1 = _mm256_xor_si256(v1, v2);
            v2 = rotl32(v2);
        }
        v0 = _mm256_xor_si256(v0, m);
    }
    let (a, b, c, d) = (lanes(v0), lanes(v1), lanes(v2), lanes(v3));
    [0, 1, 2, 3].map(|i| [a[i], b[i], c[i], d[i]])
}
