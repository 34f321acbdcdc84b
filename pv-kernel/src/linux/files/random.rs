//! The kernel's one random number generator, for everything random it hands out:
//! `getrandom`, `/dev/random`, `/dev/urandom`, `AT_RANDOM` (which seeds the C library's stack
//! protector and pointer guard). A ChaCha20 keystream with fast key erasure (each request
//! ends by replacing the key with fresh keystream), seeded from the host's entropy, the
//! CPU's `rdseed`/`rdrand` when it has them, and timing (see [`seed`]).

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

/// splitmix64 step: spreads the timing words over all bits before they join the key.
fn mix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A freshly seeded generator. The seed key is the host's entropy (`BootInfo.entropy`, from
/// the host's `getrandom`) XOR the CPU's entropy source (`rdseed`, else its DRBG `rdrand`)
/// XOR timing words (TSC, clocks: weak, but never harmful); one ChaCha20 block of it is the
/// first key, so no input is used raw.
fn seed() -> Rng {
    let bi = crate::boot::info();
    let mut key = [0u32; 8];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u32::from_le_bytes([
            bi.entropy[i * 4],
            bi.entropy[i * 4 + 1],
            bi.entropy[i * 4 + 2],
            bi.entropy[i * 4 + 3],
        ]);
    }
    let (seed_hw, rand_hw) = (crate::arch::has_rdseed(), crate::arch::has_rdrand());
    let mut x = crate::arch::rdtsc()
        ^ crate::time::now_ns().rotate_left(17)
        ^ bi.wall_clock_epoch_ns.rotate_left(41);
    for pair in key.chunks_mut(2) {
        let mut v = mix(&mut x) ^ crate::arch::rdtsc().rotate_left(23);
        let hw = if seed_hw { crate::arch::rdseed() } else { None };
        let hw = hw.or_else(|| if rand_hw { crate::arch::rdrand() } else { None });
        v ^= hw.unwrap_or(0);
        pair[0] ^= v as u32;
        pair[1] ^= (v >> 32) as u32;
    }
    let b = block(&key, crate::arch::rdtsc());
    for (i, k) in key.iter_mut().enumerate() {
        *k = u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
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

#[cfg(test)]
mod tests {
    use super::block;

    /// RFC 8439 appendix A.1, test vector #1: all-zero key and nonce, block counter 0.
    #[test]
    fn chacha20_block_matches_rfc_8439() {
        let expected: [u8; 64] = [
            0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86,
            0xbd, 0x28, 0xbd, 0xd2, 0x19, 0xb8, 0xa0, 0x8d, 0xed, 0x1a, 0xa8, 0x36, 0xef, 0xcc,
            0x8b, 0x77, 0x0d, 0xc7, 0xda, 0x41, 0x59, 0x7c, 0x51, 0x57, 0x48, 0x8d, 0x77, 0x24,
            0xe0, 0x3f, 0xb8, 0xd8, 0x4a, 0x37, 0x6a, 0x43, 0xb8, 0xf4, 0x15, 0x18, 0xa1, 0x1c,
            0xc3, 0x87, 0xb6, 0x69, 0xb2, 0xee, 0x65, 0x86,
        ];
        assert_eq!(block(&[0; 8], 0), expected);
        assert_ne!(block(&[0; 8], 1), expected);
    }
}
