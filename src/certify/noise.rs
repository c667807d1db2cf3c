//! The Gaussian noise of randomized smoothing: the standard normals that
//! `rand_distr::StandardNormal` draws from `rand::rngs::StdRng::seed_from_u64(seed)`, the same
//! numbers, from a faster generator of the same stream.
//!
//! `StdRng` (rand 0.10) is ChaCha12 (chacha20's `ChaCha12Rng`): the 32-byte key is the seed
//! (`seed_from_u64` expands the u64 by PCG32), the 64-bit block counter starts at 0, the
//! nonce is 0, and the generator hands out the keystream's 32-bit words in order, a u64 being
//! two consecutive words, the first one low. chacha20 computes four blocks per call with AVX2
//! (its AVX-512 backend does not serve the RNG), and that took about half the time of each
//! normal in a CERTIFY (docs/PERFORMANCE.md). [`ChaChaStream`] computes the same words sixteen
//! blocks at a time, one block per 32-bit lane of 512-bit registers, and serves them through
//! `rand::TryRng`, so rand_distr's own ziggurat turns them into the same normals by
//! construction. The tests compare the words with `StdRng`'s, word for word, and the normals,
//! bit for bit.
//!
//! ```text
//! block(key, n) = S + rounds¹²(S),  S = [c₀ c₁ c₂ c₃ | k₀ … k₇ | n mod 2³², n div 2³² | 0 0]
//! quarter round (a, b, c, d): a += b; d ^= a; d <<<= 16;  c += d; b ^= c; b <<<= 12;
//!                             a += b; d ^= a; d <<<= 8;   c += d; b ^= c; b <<<= 7
//! a double round: columns (0 4 8 12) (1 5 9 13) (2 6 10 14) (3 7 11 15),
//!                 then diagonals (0 5 10 15) (1 6 11 12) (2 7 8 13) (3 4 9 14)
//! ```

use std::convert::Infallible;

use rand::{SeedableRng, TryRng};

/// Blocks computed per refill, one per lane.
const LANES: usize = 16;
/// 32-bit words per ChaCha block.
const BLOCK_WORDS: usize = 16;
/// Words per refill.
const BUFFER: usize = LANES * BLOCK_WORDS;
/// "expand 32-byte k".
const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
/// ChaCha12: six double rounds.
const DOUBLE_ROUNDS: usize = 6;

/// One state word across the sixteen blocks.
type Lanes = [u32; LANES];

/// The ChaCha12 keystream of `StdRng::seed_from_u64(seed)`, word for word (see the module
/// docs), sixteen blocks per refill.
pub struct ChaChaStream {
    key: [u32; 8],
    /// Counter of the next block to compute.
    counter: u64,
    words: [u32; BUFFER],
    /// Next unread word of `words` (`BUFFER`: none left).
    pos: usize,
}

/// Captures the 32-byte seed that rand_core's `seed_from_u64` derives from a u64, so that the
/// key is StdRng's by construction.
struct SeedOf([u8; 32]);

impl SeedableRng for SeedOf {
    type Seed = [u8; 32];
    fn from_seed(seed: [u8; 32]) -> Self {
        Self(seed)
    }
}

impl ChaChaStream {
    /// The stream of `StdRng::seed_from_u64(seed)`.
    pub fn seed_from_u64(seed: u64) -> Self {
        let bytes = SeedOf::seed_from_u64(seed).0;
        let key = std::array::from_fn(|i| {
            u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        });
        Self {
            key,
            counter: 0,
            words: [0; BUFFER],
            pos: BUFFER,
        }
    }

    /// The next sixteen blocks into `words` (out of line, so that the readers inline).
    #[cold]
    #[inline(never)]
    fn refill(&mut self) {
        keystream(&initial_state(&self.key, self.counter), &mut self.words);
        self.counter = self.counter.wrapping_add(LANES as u64);
        self.pos = 0;
    }

    /// The next word.
    #[inline]
    pub fn next_word(&mut self) -> u32 {
        if self.pos == BUFFER {
            self.refill();
        }
        let w = self.words[self.pos];
        self.pos += 1;
        w
    }

    /// The next two words as a u64, the first one low (as `StdRng::next_u64`).
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        if self.pos + 2 <= BUFFER {
            let (lo, hi) = (self.words[self.pos], self.words[self.pos + 1]);
            self.pos += 2;
            return (u64::from(hi) << 32) | u64::from(lo);
        }
        let lo = self.next_word();
        (u64::from(self.next_word()) << 32) | u64::from(lo)
    }
}

impl TryRng for ChaChaStream {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.next_word())
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    /// Little-endian bytes of whole words (the bytes of a last, partial word are dropped).
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(4) {
            let bytes = self.next_word().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// The blocks whose initial states are `init` into `out`, block after block: AVX-512 where
/// the CPU has it, else portable.
fn keystream(init: &[Lanes; BLOCK_WORDS], out: &mut [u32; BUFFER]) {
    #[cfg(target_arch = "x86_64")]
    if crate::nrpm::simd::avx512_active() {
        // SAFETY: the CPU supports AVX-512F (checked above).
        unsafe { blocks_avx512(init, out) };
        return;
    }
    blocks(init, out)
}

/// [`blocks`] on AVX-512F: each state word of the sixteen blocks is one 512-bit register, so
/// the state stays in 16 of the 32 registers and every step of a quarter round is one
/// instruction (rotations included).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocks_avx512(state: &[Lanes; BLOCK_WORDS], out: &mut [u32; BUFFER]) {
    use std::arch::x86_64::*;
    let mut init = [_mm512_setzero_si512(); BLOCK_WORDS];
    for (word, row) in init.iter_mut().zip(state) {
        // SAFETY: each row is 16 u32s, one 512-bit load.
        *word = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
    }
    let mut x = init;
    // No closure: it would not inherit the target feature.
    macro_rules! quarter {
        ($a:expr, $b:expr, $c:expr, $d:expr) => {
            x[$a] = _mm512_add_epi32(x[$a], x[$b]);
            x[$d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[$d], x[$a]));
            x[$c] = _mm512_add_epi32(x[$c], x[$d]);
            x[$b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[$b], x[$c]));
            x[$a] = _mm512_add_epi32(x[$a], x[$b]);
            x[$d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[$d], x[$a]));
            x[$c] = _mm512_add_epi32(x[$c], x[$d]);
            x[$b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[$b], x[$c]));
        };
    }
    for _ in 0..DOUBLE_ROUNDS {
        quarter!(0, 4, 8, 12);
        quarter!(1, 5, 9, 13);
        quarter!(2, 6, 10, 14);
        quarter!(3, 7, 11, 15);
        quarter!(0, 5, 10, 15);
        quarter!(1, 6, 11, 12);
        quarter!(2, 7, 8, 13);
        quarter!(3, 4, 9, 14);
    }
    let mut r = [_mm512_setzero_si512(); BLOCK_WORDS];
    for ((r, word), start) in r.iter_mut().zip(&x).zip(&init) {
        *r = _mm512_add_epi32(*word, *start);
    }
    // Register i holds word i of the sixteen blocks; transpose so that register b holds
    // block b: 32-bit, then 64-bit interleaves within 128-bit lanes, then two rounds of
    // 128-bit lane shuffles (64 shuffles).
    let mut t = r;
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    let mut u = t;
    for k in 0..4 {
        u[4 * k] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    let mut v = u;
    for k in 0..2 {
        for j in 0..4 {
            let (a, b) = (u[8 * k + j], u[8 * k + 4 + j]);
            v[8 * k + j] = _mm512_shuffle_i32x4::<0x88>(a, b);
            v[8 * k + 4 + j] = _mm512_shuffle_i32x4::<0xdd>(a, b);
        }
    }
    for j in 0..8 {
        let (a, b) = (v[j], v[8 + j]);
        let (lo, hi) = (
            _mm512_shuffle_i32x4::<0x88>(a, b),
            _mm512_shuffle_i32x4::<0xdd>(a, b),
        );
        // SAFETY: blocks j and 8 + j, 16 words each, inside the 256-word buffer.
        unsafe {
            _mm512_storeu_si512(out.as_mut_ptr().add(j * BLOCK_WORDS).cast(), lo);
            _mm512_storeu_si512(out.as_mut_ptr().add((8 + j) * BLOCK_WORDS).cast(), hi);
        }
    }
}

/// The initial states S of blocks `counter … counter + 15`, word i of block `counter + lane`
/// at `[i][lane]`: constants, key, the 64-bit block counter (low, high), a zero nonce.
fn initial_state(key: &[u32; 8], counter: u64) -> [Lanes; BLOCK_WORDS] {
    let mut state = [[0u32; LANES]; BLOCK_WORDS];
    for (word, &c) in state.iter_mut().zip(&CONSTANTS) {
        *word = [c; LANES];
    }
    for (word, &k) in state[4..12].iter_mut().zip(key) {
        *word = [k; LANES];
    }
    let block = |lane: usize| counter.wrapping_add(lane as u64);
    state[12] = std::array::from_fn(|lane| block(lane) as u32);
    state[13] = std::array::from_fn(|lane| (block(lane) >> 32) as u32);
    state
}

/// The blocks whose initial states are `init` ([`initial_state`]), block after block, into
/// `out`. The portable version of [`blocks_avx512`].
fn blocks(init: &[Lanes; BLOCK_WORDS], out: &mut [u32; BUFFER]) {
    let mut x = *init;
    for _ in 0..DOUBLE_ROUNDS {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    for (i, (word, start)) in x.iter().zip(init).enumerate() {
        for lane in 0..LANES {
            out[lane * BLOCK_WORDS + i] = word[lane].wrapping_add(start[lane]);
        }
    }
}

/// The quarter round on words (a, b, c, d) of every lane.
#[allow(clippy::needless_range_loop)] // four rows of `x`, one lane at a time
fn quarter(x: &mut [Lanes; BLOCK_WORDS], a: usize, b: usize, c: usize, d: usize) {
    for lane in 0..LANES {
        let (mut va, mut vb, mut vc, mut vd) = (x[a][lane], x[b][lane], x[c][lane], x[d][lane]);
        va = va.wrapping_add(vb);
        vd = (vd ^ va).rotate_left(16);
        vc = vc.wrapping_add(vd);
        vb = (vb ^ vc).rotate_left(12);
        va = va.wrapping_add(vb);
        vd = (vd ^ va).rotate_left(8);
        vc = vc.wrapping_add(vd);
        vb = (vb ^ vc).rotate_left(7);
        (x[a][lane], x[b][lane], x[c][lane], x[d][lane]) = (va, vb, vc, vd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// Word for word, StdRng's stream, across many refills, for seeds that differ in every
    /// part of the u64 (and from both block functions).
    #[test]
    fn words_are_stdrngs() {
        for seed in [0, 1, 0xdead_beef, u64::MAX, 1 << 63, 0x0123_4567_89ab_cdef] {
            let mut ours = ChaChaStream::seed_from_u64(seed);
            let mut theirs = StdRng::seed_from_u64(seed);
            for i in 0..5 * BUFFER + 7 {
                assert_eq!(ours.next_word(), theirs.next_u32(), "seed {seed}, word {i}");
            }
            // u64s straddling refills: an odd number of words was read above.
            for i in 0..3 * BUFFER {
                assert_eq!(ours.next_u64(), theirs.next_u64(), "seed {seed}, u64 {i}");
            }
        }
    }

    /// The portable block function and the AVX-512 one give the same words.
    #[test]
    fn both_block_functions_agree() {
        let key = [1, 2, 3, 0xffff_ffff, 5, 6, 7, 8];
        let mut portable = [0; BUFFER];
        // A counter that carries into its high word inside the sixteen blocks.
        let counter = u64::from(u32::MAX) - 3;
        let init = initial_state(&key, counter);
        blocks(&init, &mut portable);
        #[cfg(target_arch = "x86_64")]
        if crate::nrpm::simd::avx512_active() {
            let mut wide = [0; BUFFER];
            // SAFETY: AVX-512F checked.
            unsafe { blocks_avx512(&init, &mut wide) };
            assert_eq!(portable, wide);
        }
        // The first block alone, by the scalar definition in the module docs.
        let mut s = [0u32; 16];
        s[..4].copy_from_slice(&CONSTANTS);
        s[4..12].copy_from_slice(&key);
        s[12] = counter as u32;
        s[13] = (counter >> 32) as u32;
        let mut x = s.map(|w| [w; LANES]);
        for _ in 0..DOUBLE_ROUNDS {
            for q in [
                [0, 4, 8, 12],
                [1, 5, 9, 13],
                [2, 6, 10, 14],
                [3, 7, 11, 15],
                [0, 5, 10, 15],
                [1, 6, 11, 12],
                [2, 7, 8, 13],
                [3, 4, 9, 14],
            ] {
                quarter(&mut x, q[0], q[1], q[2], q[3]);
            }
        }
        for i in 0..16 {
            assert_eq!(portable[i], x[i][0].wrapping_add(s[i]), "word {i}");
        }
    }

    /// rand_distr's normals from our stream are StdRng's, bit for bit, over enough draws to
    /// take the ziggurat's slow paths (wedges and the tail) many times.
    #[test]
    fn normals_are_stdrngs() {
        for seed in [3, 77, 1 << 40] {
            let mut ours = ChaChaStream::seed_from_u64(seed);
            let mut theirs = StdRng::seed_from_u64(seed);
            let mut tail = 0;
            for i in 0..200_000 {
                let a: f64 = StandardNormal.sample(&mut ours);
                let b: f64 = StandardNormal.sample(&mut theirs);
                assert_eq!(a.to_bits(), b.to_bits(), "seed {seed}, normal {i}");
                // Beyond rand_distr's ZIG_NORM_R: drawn by the ziggurat's tail algorithm.
                tail += usize::from(a.abs() > 3.654_152_885_361_009);
            }
            assert!(tail > 10, "the tail was drawn {tail} times");
        }
    }
}
