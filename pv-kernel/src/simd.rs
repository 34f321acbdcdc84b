//! Vector code the kernel runs when the CPU has the instructions (detected once with CPUID
//! and XGETBV): eight SipHash-2-4 computations at once, in the eight 64-bit lanes of an
//! AVX-512 register or in two chains of four lanes of AVX2 registers, for the program image
//! cache's tags (`linux::imagecache`). The `unsafe` here is the call into the
//! `#[target_feature]` functions once the CPU is known to have the feature, their unaligned
//! loads of whole registers from byte slices, and the reading of registers as arrays of
//! integers; the callers get the same results with or without the vector units.

use core::sync::atomic::{AtomicU8, Ordering};

/// What the CPU (and the host's saved state, XCR0) allows, detected once; ordered by width
/// (a CPU with AVX-512 has AVX2 too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Vector {
    /// Neither: the callers' scalar code.
    None,
    /// AVX2 (256-bit registers, four 64-bit lanes).
    Avx2,
    /// AVX-512F (512-bit registers, eight 64-bit lanes, a rotate instruction).
    Avx512,
}

/// The widest vector unit the kernel may use.
pub(crate) fn vector() -> Vector {
    // 0 = not yet known, then 1 + the variant.
    static KNOWN: AtomicU8 = AtomicU8::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        1 => Vector::None,
        2 => Vector::Avx2,
        3 => Vector::Avx512,
        _ => {
            let v = detect();
            let code = match v {
                Vector::None => 1,
                Vector::Avx2 => 2,
                Vector::Avx512 => 3,
            };
            KNOWN.store(code, Ordering::Relaxed);
            v
        }
    }
}

fn detect() -> Vector {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let leaf1 = __cpuid(1);
    let (osxsave, avx) = (leaf1.ecx & (1 << 27) != 0, leaf1.ecx & (1 << 28) != 0);
    if !osxsave || !avx || __cpuid(0).eax < 7 {
        return Vector::None;
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
    let ebx7 = __cpuid_count(7, 0).ebx;
    // XCR0: SSE and AVX state (bits 1, 2); opmask, upper ZMM0-15 and ZMM16-31 (5, 6, 7).
    if lo & 0b1110_0110 == 0b1110_0110 && ebx7 & (1 << 16) != 0 {
        Vector::Avx512
    } else if lo & 0b110 == 0b110 && ebx7 & (1 << 5) != 0 {
        Vector::Avx2
    } else {
        Vector::None
    }
}

/// SipHash-2-4 states `(v0, v1, v2, v3)` of the eight lanes of `rows` (whole 64-byte rows;
/// lane `j` absorbs the little-endian word at byte `8 * j` of each row, in row order), all
/// from the state `init`; `None` if the CPU has neither AVX-512 nor AVX2 (the caller
/// absorbs them itself) or `rows` is not whole rows.
pub(crate) fn siphash24_absorb_rows(init: [u64; 4], rows: &[u8]) -> Option<[[u64; 4]; 8]> {
    siphash24_absorb_rows_with(vector(), init, rows)
}

/// [`siphash24_absorb_rows`] with the vector unit `unit` (at most what the CPU has: tests
/// compare the paths).
pub(crate) fn siphash24_absorb_rows_with(
    unit: Vector,
    init: [u64; 4],
    rows: &[u8],
) -> Option<[[u64; 4]; 8]> {
    if !rows.len().is_multiple_of(64) {
        return None;
    }
    if unit == Vector::None || unit > vector() {
        return None;
    }
    // Events off while the state lives in vector registers: the event entry saves only the
    // FXSAVE state (x87 and the low 128 bits of each vector register, `trap.rs`), and an
    // event handler may switch to another kernel thread that runs this code too, whose
    // upper halves the interrupted one would then resume with (64 KiB take a few µs).
    let _events = crate::irq::IrqGuard::new();
    Some(match unit {
        // SAFETY: the CPU has AVX-512F (checked above), which is all the function needs.
        Vector::Avx512 => unsafe { absorb_rows_avx512(init, rows) },
        // SAFETY: the CPU has AVX2 (checked above), which is all the function needs.
        _ => unsafe { absorb_rows_avx2(init, rows) },
    })
}

/// [`siphash24_absorb_rows`] on AVX-512: lane `j` of each register is lane `j`'s state, and
/// one row is one load.
#[target_feature(enable = "avx512f")]
fn absorb_rows_avx512(init: [u64; 4], rows: &[u8]) -> [[u64; 4]; 8] {
    use core::arch::x86_64::{
        __m512i, _mm512_add_epi64, _mm512_loadu_si512, _mm512_rol_epi64, _mm512_set1_epi64,
        _mm512_xor_si512,
    };
    let [mut v0, mut v1, mut v2, mut v3] = init.map(|v| _mm512_set1_epi64(v as i64));
    for row in rows.chunks_exact(64) {
        // SAFETY: `row` is 64 readable bytes, the register's size; the load is unaligned.
        let m = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
        v3 = _mm512_xor_si512(v3, m);
        for _ in 0..2 {
            v0 = _mm512_add_epi64(v0, v1);
            v1 = _mm512_rol_epi64::<13>(v1);
            v1 = _mm512_xor_si512(v1, v0);
            v0 = _mm512_rol_epi64::<32>(v0);
            v2 = _mm512_add_epi64(v2, v3);
            v3 = _mm512_rol_epi64::<16>(v3);
            v3 = _mm512_xor_si512(v3, v2);
            v0 = _mm512_add_epi64(v0, v3);
            v3 = _mm512_rol_epi64::<21>(v3);
            v3 = _mm512_xor_si512(v3, v0);
            v2 = _mm512_add_epi64(v2, v1);
            v1 = _mm512_rol_epi64::<17>(v1);
            v1 = _mm512_xor_si512(v1, v2);
            v2 = _mm512_rol_epi64::<32>(v2);
        }
        v0 = _mm512_xor_si512(v0, m);
    }
    let lanes = |v: __m512i| -> [u64; 8] {
        // SAFETY: a 512-bit register and `[u64; 8]` have the same size, and every bit
        // pattern is a valid array of integers.
        unsafe { core::mem::transmute::<__m512i, [u64; 8]>(v) }
    };
    let (a, b, c, d) = (lanes(v0), lanes(v1), lanes(v2), lanes(v3));
    core::array::from_fn(|j| [a[j], b[j], c[j], d[j]])
}

/// [`siphash24_absorb_rows`] on AVX2: two independent chains of four lanes (the first and
/// second half of each row), which keep more of the CPU's vector units busy than one.
#[target_feature(enable = "avx2")]
fn absorb_rows_avx2(init: [u64; 4], rows: &[u8]) -> [[u64; 4]; 8] {
    use core::arch::x86_64::{
        __m256i, _mm256_add_epi64, _mm256_loadu_si256, _mm256_or_si256, _mm256_set1_epi64x,
        _mm256_shuffle_epi32, _mm256_slli_epi64, _mm256_srli_epi64, _mm256_xor_si256,
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
    fn round(v: &mut [__m256i; 4]) {
        let [v0, v1, v2, v3] = v;
        *v0 = _mm256_add_epi64(*v0, *v1);
        *v1 = rotl::<13, 51>(*v1);
        *v1 = _mm256_xor_si256(*v1, *v0);
        *v0 = rotl32(*v0);
        *v2 = _mm256_add_epi64(*v2, *v3);
        *v3 = rotl::<16, 48>(*v3);
        *v3 = _mm256_xor_si256(*v3, *v2);
        *v0 = _mm256_add_epi64(*v0, *v3);
        *v3 = rotl::<21, 43>(*v3);
        *v3 = _mm256_xor_si256(*v3, *v0);
        *v2 = _mm256_add_epi64(*v2, *v1);
        *v1 = rotl::<17, 47>(*v1);
        *v1 = _mm256_xor_si256(*v1, *v2);
        *v2 = rotl32(*v2);
    }
    let start = init.map(|v| _mm256_set1_epi64x(v as i64));
    let (mut lo, mut hi) = (start, start);
    for row in rows.chunks_exact(64) {
        let (a, b) = row.split_at(32);
        // SAFETY: `a` and `b` are 32 readable bytes each, the register's size; the loads
        // are unaligned.
        let (ma, mb) = unsafe {
            (
                _mm256_loadu_si256(a.as_ptr().cast()),
                _mm256_loadu_si256(b.as_ptr().cast()),
            )
        };
        lo[3] = _mm256_xor_si256(lo[3], ma);
        hi[3] = _mm256_xor_si256(hi[3], mb);
        round(&mut lo);
        round(&mut hi);
        round(&mut lo);
        round(&mut hi);
        lo[0] = _mm256_xor_si256(lo[0], ma);
        hi[0] = _mm256_xor_si256(hi[0], mb);
    }
    let lanes = |v: __m256i| -> [u64; 4] {
        // SAFETY: a 256-bit register and `[u64; 4]` have the same size, and every bit
        // pattern is a valid array of integers.
        unsafe { core::mem::transmute::<__m256i, [u64; 4]>(v) }
    };
    let (l, h) = (lo.map(lanes), hi.map(lanes));
    core::array::from_fn(|j| {
        let (s, k) = if j < 4 { (&l, j) } else { (&h, j - 4) };
        [s[0][k], s[1][k], s[2][k], s[3][k]]
    })
}
