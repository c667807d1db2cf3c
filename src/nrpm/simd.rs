//! Explicit AVX-512 versions of the f32 inner loops (`kernels.rs` has the portable ones).
//!
//! The compiler keeps the IRLS loop nearly scalar (a data-dependent division and clamps per
//! term), so it reaches about 0.9·10⁹ term-iterations/s per core; the same loop on 16-lane
//! AVX-512 registers runs about 4× faster (../shared/RUST-NOTES.md, and
//! docs/PERFORMANCE.md). The choice is made at run time (`is_x86_feature_detected!`), never by
//! `target-cpu=native`; CPUs without AVX-512 (and non-x86 targets) use the portable loops.
//!
//! Each function computes exactly the formula of its portable twin; only the rounding differs:
//! the summation order (16 lanes × 2 accumulators, then a fixed tree reduction) and, in the
//! forward sums, two rewrites that save vector instructions in a loop bound by them:
//! - `1/(r + ε)` is a reciprocal estimate refined by one Newton step (within one ulp of the
//!   IEEE quotient; the forward pass runs about 1.1× faster than with `vdivps`);
//! - the residual `u_d = x_d·a_d − z/D` is one fused multiply-subtract (one rounding instead of
//!   two), and `Σ w_d·t_d` is accumulated as `Σ w_d·u_d + (z/D)·Σ w_d` (the same sum, since
//!   `t_d = u_d + z/D`), so `t_d` is never formed: 8 instructions per 16 terms instead of 9
//!   (about 1.07× faster single-threaded, docs/PERFORMANCE.md).
//!
//! Results agree with the portable loops to f32 rounding (checked in the tests below) and do
//! not depend on the number of threads.

use crate::nrpm::kernels;
use crate::nrpm::norm::WeightFn;

/// Whether the AVX-512 loops are used on this CPU.
#[inline]
pub fn avx512_active() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// f32 `irls_sums`: AVX-512 when available, else portable.
#[inline]
pub(crate) fn irls_sums_f32(x: &[f32], a: &[f32], zd: f32, wf: &WeightFn<f32>) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if avx512_active() {
        // SAFETY: the CPU supports AVX-512F (checked above); slices are read within bounds.
        return unsafe { x86::irls_sums(x, a, zd, wf) };
    }
    kernels::irls_sums(x, a, zd, wf)
}

/// f32 `irls_sums` of M outputs that share the input row `x` (weight rows `a[j]`, scaled
/// iterates `zd[j]`): one pass over d loads each `x_d` once for the M, and their sums are
/// reduced together, eight at a time. AVX-512 when available (M a multiple of 4), else M
/// portable calls.
#[inline]
pub(crate) fn irls_sums_rows_f32<const M: usize>(
    x: &[f32],
    a: [&[f32]; M],
    zd: [f32; M],
    wf: &WeightFn<f32>,
) -> [(f32, f32); M] {
    #[cfg(target_arch = "x86_64")]
    if M.is_multiple_of(4) && avx512_active() {
        // SAFETY: AVX-512F checked; slice lengths asserted inside.
        return unsafe { x86::irls_sums_rows(x, a, zd, wf) };
    }
    std::array::from_fn(|j| kernels::irls_sums(x, a[j], zd[j], wf))
}

/// f32 `irls_adjoint_sums`: AVX-512 when available, else portable.
#[inline]
pub(crate) fn irls_adjoint_sums_f32(
    x: &[f32],
    a: &[f32],
    zds: &[f32],
    wf: &WeightFn<f32>,
    e_out: &mut [f32],
    sums: &mut [(f32, f32)],
) {
    #[cfg(target_arch = "x86_64")]
    if avx512_active() {
        // SAFETY: AVX-512F checked; slice lengths asserted inside.
        return unsafe { x86::irls_adjoint_sums(x, a, zds, wf, e_out, sums) };
    }
    kernels::irls_adjoint_sums(x, a, zds, wf, e_out, sums)
}

/// f32 `irls_adjoint_scatter`: AVX-512 when available, else portable.
#[inline]
pub(crate) fn irls_adjoint_scatter_f32(
    x: &[f32],
    a: &[f32],
    t0: f32,
    coefs: &[f32],
    e_sc: &[f32],
    x_bar: &mut [f32],
    a_bar: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx512_active() {
        // SAFETY: AVX-512F checked; lengths asserted inside.
        return unsafe { x86::irls_adjoint_scatter(x, a, t0, coefs, e_sc, x_bar, a_bar) };
    }
    kernels::irls_adjoint_scatter(x, a, t0, coefs, e_sc, x_bar, a_bar)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::nrpm::norm::{WeightFn, WeightKind};

    /// The weight constants broadcast to 16 lanes.
    #[derive(Clone, Copy)]
    struct Consts {
        eps: __m512,
        p: __m512,
        q: __m512,
        one: __m512,
    }

    #[target_feature(enable = "avx512f")]
    fn consts(wf: &WeightFn<f32>) -> Consts {
        Consts {
            eps: _mm512_set1_ps(wf.eps),
            p: _mm512_set1_ps(wf.p),
            q: _mm512_set1_ps(wf.q),
            one: _mm512_set1_ps(1.0),
        }
    }

    /// `1/v` on 16 lanes for finite `v ≥ ε > 0`: the 14-bit estimate `r₀ = rcp14(v)` refined
    /// by one Newton step, `r₁ = r₀ + r₀·(1 − v·r₀)`. Its relative error is
    /// `(v·r₀ − 1)² < 2⁻²⁸` before rounding, so `r₁` is `1/v` correctly rounded or one ulp
    /// from it (the same order as the f32 rounding of every other operation here), at a
    /// fraction of `vdivps`'s cost. An infinite `v` (an overflowed term) gives NaN where
    /// division gives 0; the output is NaN either way, since that term's `w·t` is `0·∞`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn recip(v: __m512, c: Consts) -> __m512 {
        let r0 = _mm512_rcp14_ps(v);
        let e = _mm512_fnmadd_ps(v, r0, c.one);
        _mm512_fmadd_ps(r0, e, r0)
    }

    /// `w(r)` on 16 lanes; `KIND` is a [`WeightKind`] as u8 so each norm gets its own loop.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn weight<const KIND: u8>(r: __m512, c: Consts) -> __m512 {
        let inv = recip(_mm512_add_ps(r, c.eps), c);
        match KIND {
            L1 => inv,
            HUBER => _mm512_min_ps(_mm512_mul_ps(c.p, inv), c.one),
            MCP => _mm512_max_ps(_mm512_sub_ps(inv, c.p), c.eps),
            HM => _mm512_max_ps(
                _mm512_min_ps(_mm512_sub_ps(_mm512_mul_ps(c.p, inv), c.q), c.one),
                c.eps,
            ),
            _ => c.one,
        }
    }

    /// `(w(r), dw/dr)` on 16 lanes, derivative 0 where a clamp is active. IEEE division here:
    /// the backward's `e_d` must equal the portable loop's bit for bit (tested below).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn weight_and_derivative<const KIND: u8>(r: __m512, c: Consts) -> (__m512, __m512) {
        let inv = _mm512_div_ps(c.one, _mm512_add_ps(r, c.eps));
        let inv2 = _mm512_mul_ps(inv, inv);
        let zero = _mm512_setzero_ps();
        match KIND {
            L1 => (inv, _mm512_sub_ps(zero, inv2)),
            HUBER => {
                let v = _mm512_mul_ps(c.p, inv);
                let clamped = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, c.one);
                let dw = _mm512_sub_ps(zero, _mm512_mul_ps(v, inv));
                (
                    _mm512_mask_blend_ps(clamped, v, c.one),
                    _mm512_mask_blend_ps(clamped, dw, zero),
                )
            }
            MCP => {
                let v = _mm512_sub_ps(inv, c.p);
                let clamped = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, c.eps);
                (
                    _mm512_mask_blend_ps(clamped, v, c.eps),
                    _mm512_mask_blend_ps(clamped, _mm512_sub_ps(zero, inv2), zero),
                )
            }
            HM => {
                let v = _mm512_sub_ps(_mm512_mul_ps(c.p, inv), c.q);
                let high = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, c.one);
                let w = _mm512_mask_blend_ps(high, v, c.one);
                let low = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(w, c.eps);
                let w = _mm512_mask_blend_ps(low, w, c.eps);
                let dw = _mm512_sub_ps(zero, _mm512_mul_ps(_mm512_mul_ps(c.p, inv), inv));
                (w, _mm512_mask_blend_ps(high | low, dw, zero))
            }
            _ => (c.one, zero),
        }
    }

    const L1: u8 = 1;
    const HUBER: u8 = 2;
    const MCP: u8 = 3;
    const HM: u8 = 4;

    fn kind_code(kind: WeightKind) -> u8 {
        match kind {
            WeightKind::Lpm => 0,
            WeightKind::L1 => L1,
            WeightKind::Huber => HUBER,
            WeightKind::Mcp => MCP,
            WeightKind::Hm => HM,
        }
    }

    /// Mask of the first `n < 16` lanes.
    #[inline(always)]
    fn tail_mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// Loads 16 lanes from `s[i..]`, zero past `i + n` (n ≤ 16).
    ///
    /// # Safety
    /// `i + n ≤ s.len()`, and the CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load(s: &[f32], i: usize, n: usize) -> __m512 {
        debug_assert!(i + n <= s.len());
        if n == 16 {
            _mm512_loadu_ps(s.as_ptr().add(i))
        } else {
            _mm512_maskz_loadu_ps(tail_mask(n), s.as_ptr().add(i))
        }
    }

    /// Stores the first `n ≤ 16` lanes of `v` at `s[i..]`.
    ///
    /// # Safety
    /// `i + n ≤ s.len()`, and the CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store(s: &mut [f32], i: usize, n: usize, v: __m512) {
        debug_assert!(i + n <= s.len());
        if n == 16 {
            _mm512_storeu_ps(s.as_mut_ptr().add(i), v)
        } else {
            _mm512_mask_storeu_ps(s.as_mut_ptr().add(i), tail_mask(n), v)
        }
    }

    /// # Safety
    /// AVX-512F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn irls_sums(
        x: &[f32],
        a: &[f32],
        zd: f32,
        wf: &WeightFn<f32>,
    ) -> (f32, f32) {
        match kind_code(wf.kind) {
            L1 => sums::<L1>(x, a, zd, wf),
            HUBER => sums::<HUBER>(x, a, zd, wf),
            MCP => sums::<MCP>(x, a, zd, wf),
            HM => sums::<HM>(x, a, zd, wf),
            _ => sums::<0>(x, a, zd, wf),
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn sums<const KIND: u8>(
        x: &[f32],
        a: &[f32],
        zd: f32,
        wf: &WeightFn<f32>,
    ) -> (f32, f32) {
        assert_eq!(x.len(), a.len());
        let n = x.len();
        let c = consts(wf);
        let vz = _mm512_set1_ps(zd);
        let zero = _mm512_setzero_ps();
        let (mut s0a, mut s0b, mut s1a, mut s1b) = (zero, zero, zero, zero);
        let mut i = 0;
        while i + 32 <= n {
            let u0 = _mm512_fmsub_ps(load(x, i, 16), load(a, i, 16), vz);
            let u1 = _mm512_fmsub_ps(load(x, i + 16, 16), load(a, i + 16, 16), vz);
            let w0 = weight::<KIND>(_mm512_abs_ps(u0), c);
            let w1 = weight::<KIND>(_mm512_abs_ps(u1), c);
            s0a = _mm512_add_ps(s0a, w0);
            s0b = _mm512_add_ps(s0b, w1);
            s1a = _mm512_fmadd_ps(w0, u0, s1a);
            s1b = _mm512_fmadd_ps(w1, u1, s1b);
            i += 32;
        }
        while i < n {
            let m = (n - i).min(16);
            let u = _mm512_fmsub_ps(load(x, i, m), load(a, i, m), vz);
            let w = weight::<KIND>(_mm512_abs_ps(u), c);
            let w = _mm512_maskz_mov_ps(if m == 16 { !0 } else { tail_mask(m) }, w);
            s0a = _mm512_add_ps(s0a, w);
            s1a = _mm512_fmadd_ps(w, u, s1a);
            i += m;
        }
        let s0 = _mm512_reduce_add_ps(_mm512_add_ps(s0a, s0b));
        let s1 = _mm512_reduce_add_ps(_mm512_add_ps(s1a, s1b));
        // Σ w·t = Σ w·(u + z/D) = Σ w·u + (z/D)·Σ w.
        (s0, zd.mul_add(s0, s1))
    }

    /// # Safety
    /// AVX-512F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn irls_sums_rows<const M: usize>(
        x: &[f32],
        a: [&[f32]; M],
        zd: [f32; M],
        wf: &WeightFn<f32>,
    ) -> [(f32, f32); M] {
        match kind_code(wf.kind) {
            L1 => sums_rows::<L1, M>(x, a, zd, wf),
            HUBER => sums_rows::<HUBER, M>(x, a, zd, wf),
            MCP => sums_rows::<MCP, M>(x, a, zd, wf),
            HM => sums_rows::<HM, M>(x, a, zd, wf),
            _ => sums_rows::<0, M>(x, a, zd, wf),
        }
    }

    /// [`sums`] for M weight rows at once (M a multiple of 4): one accumulator pair per
    /// output (the M outputs are the independent chains that the unrolling gives the single
    /// version), reduced by [`reduce8`] four outputs at a time.
    #[target_feature(enable = "avx512f")]
    unsafe fn sums_rows<const KIND: u8, const M: usize>(
        x: &[f32],
        a: [&[f32]; M],
        zd: [f32; M],
        wf: &WeightFn<f32>,
    ) -> [(f32, f32); M] {
        let n = x.len();
        assert!(M.is_multiple_of(4) && a.iter().all(|a| a.len() == n));
        let c = consts(wf);
        // No closures here: they would not inherit the target feature and be called, not
        // inlined.
        let mut vz = [_mm512_setzero_ps(); M];
        for j in 0..M {
            vz[j] = _mm512_set1_ps(zd[j]);
        }
        let zero = _mm512_setzero_ps();
        let (mut s0, mut s1) = ([zero; M], [zero; M]);
        let mut i = 0;
        while i < n {
            let m = (n - i).min(16);
            let mask = if m == 16 { !0 } else { tail_mask(m) };
            let xv = load(x, i, m);
            for j in 0..M {
                let u = _mm512_fmsub_ps(xv, load(a[j], i, m), vz[j]);
                let w = _mm512_maskz_mov_ps(mask, weight::<KIND>(_mm512_abs_ps(u), c));
                s0[j] = _mm512_add_ps(s0[j], w);
                s1[j] = _mm512_fmadd_ps(w, u, s1[j]);
            }
            i += m;
        }
        let mut out = [(0.0, 0.0); M];
        for q in 0..M / 4 {
            let j = 4 * q;
            let r = reduce8([
                s0[j],
                s1[j],
                s0[j + 1],
                s1[j + 1],
                s0[j + 2],
                s1[j + 2],
                s0[j + 3],
                s1[j + 3],
            ]);
            // Σ w·t = Σ w·u + (z/D)·Σ w, as in `sums`.
            for l in 0..4 {
                out[j + l] = (r[2 * l], zd[j + l].mul_add(r[2 * l], r[2 * l + 1]));
            }
        }
        out
    }

    /// Quarters `[a0 + a2, a1 + a3, b0 + b2, b1 + b3]` (128-bit quarters) of vectors a, b.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn pair(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xEE>(a, b),
        )
    }

    /// From two [`pair`] results: quarter k is the 4-lane partial sum of the k-th of the four
    /// vectors behind them.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn quad(p: __m512, q: __m512) -> __m512 {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(p, q),
            _mm512_shuffle_f32x4::<0xDD>(p, q),
        )
    }

    /// Every lane of each quarter: the sum of the quarter's four lanes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn quarter_sums(r: __m512) -> __m512 {
        let r = _mm512_add_ps(r, _mm512_permute_ps::<0x4E>(r));
        _mm512_add_ps(r, _mm512_permute_ps::<0xB1>(r))
    }

    /// The lane sums of eight vectors, by a transposing tree: 128-bit quarters are paired
    /// across vectors first (two shuffles and one add per pair), so the eight sums cost 26
    /// vector instructions instead of about 70 for eight separate reductions.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn reduce8(v: [__m512; 8]) -> [f32; 8] {
        let lo = quarter_sums(quad(pair(v[0], v[1]), pair(v[2], v[3])));
        let hi = quarter_sums(quad(pair(v[4], v[5]), pair(v[6], v[7])));
        let (mut l, mut h) = ([0f32; 16], [0f32; 16]);
        // SAFETY: 16 floats each, unaligned stores.
        unsafe {
            _mm512_storeu_ps(l.as_mut_ptr(), lo);
            _mm512_storeu_ps(h.as_mut_ptr(), hi);
        }
        [l[0], l[4], l[8], l[12], h[0], h[4], h[8], h[12]]
    }

    /// Steps handled per pass over d (their accumulators stay in registers).
    const STEPS_PER_PASS: usize = 4;

    /// # Safety
    /// AVX-512F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn irls_adjoint_sums(
        x: &[f32],
        a: &[f32],
        zds: &[f32],
        wf: &WeightFn<f32>,
        e_out: &mut [f32],
        sums: &mut [(f32, f32)],
    ) {
        let (n, k) = (x.len(), sums.len());
        assert!(a.len() == n && zds.len() == k + 1 && e_out.len() >= k * n);
        let mut k0 = 0;
        while k0 < k {
            let steps = (k - k0).min(STEPS_PER_PASS);
            let (zds, e_out, sums) = (&zds[k0..], &mut e_out[k0 * n..], &mut sums[k0..]);
            match kind_code(wf.kind) {
                L1 => adjoint_sums_by_steps::<L1>(steps, x, a, zds, wf, e_out, sums),
                HUBER => adjoint_sums_by_steps::<HUBER>(steps, x, a, zds, wf, e_out, sums),
                MCP => adjoint_sums_by_steps::<MCP>(steps, x, a, zds, wf, e_out, sums),
                HM => adjoint_sums_by_steps::<HM>(steps, x, a, zds, wf, e_out, sums),
                _ => adjoint_sums_by_steps::<0>(steps, x, a, zds, wf, e_out, sums),
            }
            k0 += steps;
        }
    }

    /// Picks the `S = steps` instance of [`adjoint_sums`] (1 ≤ steps ≤ 4).
    #[target_feature(enable = "avx512f")]
    unsafe fn adjoint_sums_by_steps<const KIND: u8>(
        steps: usize,
        x: &[f32],
        a: &[f32],
        zds: &[f32],
        wf: &WeightFn<f32>,
        e_out: &mut [f32],
        sums: &mut [(f32, f32)],
    ) {
        match steps {
            1 => adjoint_sums::<KIND, 1>(x, a, zds, wf, e_out, sums),
            2 => adjoint_sums::<KIND, 2>(x, a, zds, wf, e_out, sums),
            3 => adjoint_sums::<KIND, 3>(x, a, zds, wf, e_out, sums),
            _ => adjoint_sums::<KIND, STEPS_PER_PASS>(x, a, zds, wf, e_out, sums),
        }
    }

    /// `(w, v = (t − zd_next)·w'(|u|)·sign(u))` on 16 lanes, `u = t − zd`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn adjoint_terms<const KIND: u8>(
        t: __m512,
        vz: __m512,
        vzn: __m512,
        c: Consts,
    ) -> (__m512, __m512) {
        let u = _mm512_sub_ps(t, vz);
        let (w, dw) = weight_and_derivative::<KIND>(_mm512_abs_ps(u), c);
        // g = dw·sign(u) with sign(0) = 0: flip dw's sign bit by u's, zero where u = 0.
        let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(u, _mm512_setzero_ps());
        let sign_u = _mm512_and_si512(_mm512_castps_si512(u), _mm512_set1_epi32(i32::MIN));
        let g = _mm512_castsi512_ps(_mm512_maskz_xor_epi32(
            nonzero,
            _mm512_castps_si512(dw),
            sign_u,
        ));
        (w, _mm512_mul_ps(_mm512_sub_ps(t, vzn), g))
    }

    /// `S` steps of the adjoint sweep in one pass over d (`zds[..=S]`, `e_out[..S·n]`).
    #[target_feature(enable = "avx512f")]
    unsafe fn adjoint_sums<const KIND: u8, const S: usize>(
        x: &[f32],
        a: &[f32],
        zds: &[f32],
        wf: &WeightFn<f32>,
        e_out: &mut [f32],
        sums: &mut [(f32, f32)],
    ) {
        let n = x.len();
        let c = consts(wf);
        let vz: [__m512; S] = std::array::from_fn(|k| _mm512_set1_ps(zds[k]));
        let vzn: [__m512; S] = std::array::from_fn(|k| _mm512_set1_ps(zds[k + 1]));
        let zero = _mm512_setzero_ps();
        let (mut s0, mut q) = ([zero; S], [zero; S]);
        let mut i = 0;
        while i < n {
            let m = (n - i).min(16);
            let live = if m == 16 { !0 } else { tail_mask(m) };
            let t = _mm512_mul_ps(load(x, i, m), load(a, i, m));
            for k in 0..S {
                let (w, v) = adjoint_terms::<KIND>(t, vz[k], vzn[k], c);
                s0[k] = _mm512_mask_add_ps(s0[k], live, s0[k], w);
                q[k] = _mm512_mask_add_ps(q[k], live, q[k], v);
                store(e_out, k * n + i, m, _mm512_add_ps(w, v));
            }
            i += m;
        }
        for k in 0..S {
            sums[k] = (_mm512_reduce_add_ps(s0[k]), _mm512_reduce_add_ps(q[k]));
        }
    }

    /// # Safety
    /// AVX-512F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn irls_adjoint_scatter(
        x: &[f32],
        a: &[f32],
        t0: f32,
        coefs: &[f32],
        e_sc: &[f32],
        x_bar: &mut [f32],
        a_bar: &mut [f32],
    ) {
        let n = x.len();
        let k = coefs.len();
        assert!(a.len() == n && x_bar.len() >= n && a_bar.len() >= n);
        assert!(e_sc.len() >= k * n);
        let mut i = 0;
        while i < n {
            let m = (n - i).min(16);
            let (xv, av) = (load(x, i, m), load(a, i, m));
            let mut tb = _mm512_set1_ps(t0);
            for (s, &coef) in coefs.iter().enumerate() {
                tb = _mm512_fmadd_ps(_mm512_set1_ps(coef), load(e_sc, s * n + i, m), tb);
            }
            store(x_bar, i, m, _mm512_fmadd_ps(tb, av, load(x_bar, i, m)));
            store(a_bar, i, m, _mm512_fmadd_ps(tb, xv, load(a_bar, i, m)));
            i += m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nrpm::norm::{Norm, WeightKind};

    fn data(n: usize, seed: u32) -> (Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let x = (0..n).map(|_| next()).collect();
        let a = (0..n).map(|_| next() * 3.0).collect();
        (x, a)
    }

    fn norms() -> [Norm; 5] {
        [
            Norm::Lpm,
            Norm::L1,
            Norm::Huber { delta: 0.1 },
            Norm::Mcp { gamma: 4.0 },
            Norm::Hm {
                gamma: 0.4,
                delta: 0.1,
            },
        ]
    }

    /// Bounds on `|AVX-512 − portable|` of the forward sums `(Σ w, Σ w·t)`, from f32 rounding
    /// (u = 2⁻²⁴): the summation order, 4·n·u·Σ|summand|; the residual `u_d` formed with one
    /// rounding where the portable loop rounds twice, `|Δu_d| ≤ u·(3|t_d| + 2|zd|)`, moved
    /// through the weight's Lipschitz constant `c/(r + ε)²` (c = max(1, |p|): L1 and MCP
    /// 1/(r + ε)², Huber and HM p/(r + ε)²); and the rounding of `(z/D)·Σ w`. Evaluated in
    /// f64; the factor 2 covers the second-order terms (`|Δu| ≪ ε` here).
    fn sums_bounds(x: &[f32], a: &[f32], zd: f32, wf: &WeightFn<f32>) -> (f32, f32) {
        let u = f64::from(f32::EPSILON) / 2.0;
        let n = x.len() as f64;
        let lip = match wf.kind {
            WeightKind::Lpm => 0.0,
            _ => f64::from(wf.p.abs()).max(1.0),
        };
        let z = f64::from(zd);
        let (mut w_sum, mut wt_sum, mut sens0, mut sens1) = (0.0, 0.0, 0.0, 0.0);
        for (&xd, &ad) in x.iter().zip(a) {
            let t = f64::from(xd) * f64::from(ad);
            let w = f64::from(wf.weight((xd * ad - zd).abs()));
            let du = u * (3.0 * t.abs() + 2.0 * z.abs());
            let dw = lip / ((t - z).abs() + f64::from(wf.eps)).powi(2) * du;
            w_sum += w;
            wt_sum += w * (t.abs() + z.abs());
            sens0 += dw;
            sens1 += dw * t.abs() + w * du;
        }
        let b0 = 4.0 * n * u * w_sum + 2.0 * sens0;
        let b1 = 4.0 * n * u * (wt_sum + z.abs() * w_sum) + 2.0 * sens1;
        (b0 as f32 + 1e-30, b1 as f32 + 1e-30)
    }

    /// Asserts that the AVX-512 forward sums of `(x, a, zd)` are within [`sums_bounds`] of the
    /// portable loop's.
    fn assert_sums_close(got: (f32, f32), x: &[f32], a: &[f32], zd: f32, wf: &WeightFn<f32>) {
        let want = kernels::irls_sums(x, a, zd, wf);
        let (b0, b1) = sums_bounds(x, a, zd, wf);
        let what = format!("{:?} n={} zd={zd}: {got:?} vs {want:?}", wf.kind, x.len());
        assert!((got.0 - want.0).abs() <= b0, "Σw {what}, bound {b0}");
        assert!((got.1 - want.1).abs() <= b1, "Σw·t {what}, bound {b1}");
    }

    /// The AVX-512 loops equal the portable ones up to f32 rounding: the forward sums within
    /// [`sums_bounds`] (one and four outputs at a time), the adjoint sums within the summation
    /// bound 4·n·u·Σ|summand| with u = 2⁻²⁴ (a loose form of the standard bound), `e_d`
    /// exactly.
    #[test]
    fn simd_matches_portable_loops() {
        if !avx512_active() {
            eprintln!("skipped: this CPU has no AVX-512; the portable loops are the only path");
            return;
        }
        for &n in &[1usize, 7, 16, 17, 33, 100, 784] {
            let (x, a) = data(n, n as u32);
            let bound = |sum_abs: f32| 4.0 * n as f32 * f32::EPSILON * sum_abs + 1e-30;
            for norm in norms() {
                let wf = norm.weight_fn::<f32>(1e-2);
                let zd = 0.013;
                assert_sums_close(irls_sums_f32(&x, &a, zd, &wf), &x, &a, zd, &wf);

                // Four outputs sharing x: each equals its single portable call.
                let rows: Vec<Vec<f32>> = (0..4).map(|j| data(n, 7 * n as u32 + j).1).collect();
                let zds = [zd, -0.02, 0.0, 0.3];
                let four = irls_sums_rows_f32(&x, std::array::from_fn(|j| &rows[j][..]), zds, &wf);
                for (j, &got) in four.iter().enumerate() {
                    assert_sums_close(got, &x, &rows[j], zds[j], &wf);
                }

                for steps in [1usize, 3, 6] {
                    let zds: Vec<f32> = (0..=steps).map(|k| zd + 0.004 * k as f32).collect();
                    let (mut e1, mut e2) = (vec![0.0; steps * n], vec![0.0; steps * n]);
                    let (mut r1, mut r2) = (vec![(0.0, 0.0); steps], vec![(0.0, 0.0); steps]);
                    irls_adjoint_sums_f32(&x, &a, &zds, &wf, &mut e1, &mut r1);
                    kernels::irls_adjoint_sums(&x, &a, &zds, &wf, &mut e2, &mut r2);
                    assert_eq!(e1, e2, "{norm:?} n={n}: e_d is elementwise, must be equal");
                    for (k, (r1, r2)) in r1.iter().zip(&r2).enumerate() {
                        assert!((r1.0 - r2.0).abs() <= bound(r2.0.abs()), "{norm:?} k={k}");
                        let e2k = &e2[k * n..(k + 1) * n];
                        let absq: f32 = e2k.iter().map(|e| e.abs()).sum::<f32>() + r2.0;
                        assert!(
                            (r1.1 - r2.1).abs() <= bound(absq),
                            "{norm:?}: {r1:?} vs {r2:?}"
                        );
                    }
                }
                let mut e1 = vec![0.0; n];
                let mut r1 = [(0.0, 0.0)];
                irls_adjoint_sums_f32(&x, &a, &[zd, 0.02], &wf, &mut e1, &mut r1);

                let coefs = [0.7f32, -0.3];
                let e_sc: Vec<f32> = e1.iter().chain(e1.iter().rev()).copied().collect();
                let (mut xb1, mut ab1) = (vec![0.1; n], vec![0.2; n]);
                let (mut xb2, mut ab2) = (vec![0.1; n], vec![0.2; n]);
                irls_adjoint_scatter_f32(&x, &a, 0.25, &coefs, &e_sc, &mut xb1, &mut ab1);
                kernels::irls_adjoint_scatter(&x, &a, 0.25, &coefs, &e_sc, &mut xb2, &mut ab2);
                for d in 0..n {
                    let scale = 1.0 + (e_sc[d].abs() + e_sc[n + d].abs()) * 4.0;
                    assert!((xb1[d] - xb2[d]).abs() <= 8.0 * f32::EPSILON * scale);
                    assert!((ab1[d] - ab2[d]).abs() <= 8.0 * f32::EPSILON * scale);
                }
            }
        }
    }
}
