//! The kernel's random bytes (`/dev/urandom`, `/dev/random`): a ChaCha20 keystream with fast
//! key erasure (each request ends by replacing the key with fresh keystream), seeded from
//! `rdrand` when the CPU has it, the time-stamp counter and the clocks.

use crate::irq::IrqLock;

/// The generator: a ChaCha20 key and a block counter.
struct Rng {
    key: [u32; 8],
    counter: u64,
}

/// The generator, seeded on first use.
static RNG: IrqLock<Option<Rng>> = IrqLock::new(None);

/// Largest request served under one lock hold (the rest in later rounds).
const ROUND: usize = 4096;

fn quarter(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// One ChaCha20 block (RFC 8439 with a 64-bit counter and a zero nonce).
fn block(key: &[u32; 8], counter: u64) -> [u8; 64] {
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
    init[4..12].copy_from_slice(key);
    init[12] = counter as u32;
    init[13] = (counter >> 32) as u32;
    let mut s = init;
    for _ in 0..10 {
        quarter(&mut s, 0, 4, 8, 12);
        quarter(&mut s, 1, 5, 9, 13);
        quarter(&mut s, 2, 6, 10, 14);
        quarter(&mut s, 3, 7, 11, 15);
        quarter(&mut s, 0, 5, 10, 15);
        quarter(&mut s, 1, 6, 11, 12);
        quarter(&mut s, 2, 7, 8, 13);
        quarter(&mut s, 3, 4, 9, 14);
    }
    let mut out = [0u8; 64];
    for (i, w) in s.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.wrapping_add(init[i]).to_le_bytes());
    }
    out
}

/// True if the CPU implements `rdrand` (CPUID.1:ECX bit 30).
fn has_rdrand() -> bool {
    let ecx: u32;
    // SAFETY: `cpuid` only writes the named registers; rbx is saved and restored around it
    // because LLVM reserves it. CPUID is available on every x86-64 CPU and allowed in the
    // sandbox (the exec path reads it for AT_HWCAP).
    unsafe {
        core::arch::asm!(
            "mov {tmp}, rbx",
            "cpuid",
            "mov rbx, {tmp}",
            tmp = out(reg) _,
            inout("eax") 1u32 => _,
            inout("ecx") 0u32 => ecx,
            out("edx") _,
            options(nostack, preserves_flags),
        );
    }
    ecx & (1 << 30) != 0
}

/// One `rdrand` value, if the hardware delivered one within a few tries.
fn rdrand() -> Option<u64> {
    for _ in 0..10 {
        let v: u64;
        let ok: u8;
        // SAFETY: only called after CPUID reported `rdrand`; it writes the named registers
        // and the flags, touches no memory.
        unsafe {
            core::arch::asm!(
                "rdrand {v}",
                "setc {ok}",
                v = out(reg) v,
                ok = out(reg_byte) ok,
                options(nomem, nostack),
            );
        }
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

/// splitmix64 step: spreads weak seed material over all bits.
fn mix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A freshly seeded generator.
fn seed() -> Rng {
    let hw = has_rdrand();
    let mut x = crate::arch::rdtsc()
        ^ crate::time::now_ns().rotate_left(17)
        ^ crate::boot::info().wall_clock_epoch_ns.rotate_left(41);
    let mut key = [0u32; 8];
    for pair in key.chunks_mut(2) {
        let mut v = mix(&mut x) ^ crate::arch::rdtsc().rotate_left(23);
        if hw {
            v ^= rdrand().unwrap_or(0);
        }
        pair[0] = v as u32;
        pair[1] = (v >> 32) as u32;
    }
    Rng { key, counter: 0 }
}

/// Fills `buf` with random bytes.
pub(crate) fn fill(buf: &mut [u8]) {
    for round in buf.chunks_mut(ROUND) {
        let mut g = RNG.lock();
        let rng = g.get_or_insert_with(seed);
        for chunk in round.chunks_mut(64) {
            let b = block(&rng.key, rng.counter);
            rng.counter = rng.counter.wrapping_add(1);
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        // Fast key erasure: the bytes just handed out cannot be recomputed from the state.
        let b = block(&rng.key, rng.counter);
        rng.counter = 0;
        for (i, k) in rng.key.iter_mut().enumerate() {
            *k = u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        }
        // Keep a little timing jitter flowing in.
        rng.key[7] ^= crate::arch::rdtsc() as u32;
    }
}
