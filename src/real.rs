//! [`Real`]: the floating-point types nrpm computes in (f32 and f64), and the per-output inner
//! loops of the fused operator, which f32 overrides with explicit SIMD (see `nrpm::simd`).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use crate::nrpm::kernels;
use crate::nrpm::norm::WeightFn;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A real scalar type nrpm computes in: `f32` or `f64` (sealed).
///
/// Besides arithmetic it carries the three inner loops of the fused NRPM operator over the D
/// terms of one output (hidden from the docs: they are an implementation detail of
/// `nrpm::fused`). `f64` uses the portable loops; `f32` dispatches at run time to AVX-512 or
/// AVX2 when the CPU has them.
pub trait Real:
    sealed::Sealed
    + num_traits::Float
    + num_traits::FromPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + serde::Serialize
    + 'static
{
    /// `"f32"` or `"f64"`.
    const DTYPE: &'static str;

    /// Converts from f64 (rounding to nearest for f32).
    fn of(v: f64) -> Self;

    /// Converts to f64 (exact).
    fn f64(self) -> f64;

    /// One IRLS step's sums over the terms `t_d = x_d·a_d`:
    /// `(Σ_d w(|t_d − zd|), Σ_d w(|t_d − zd|)·t_d)` with `zd = zᵏ/D`.
    #[doc(hidden)]
    #[inline]
    fn irls_sums(x: &[Self], a: &[Self], zd: Self, wf: &WeightFn<Self>) -> (Self, Self) {
        kernels::irls_sums(x, a, zd, wf)
    }

    /// [`Real::irls_sums`] of M outputs sharing the input row `x`: weight rows `a[j]`,
    /// scaled iterates `zd[j]`.
    #[doc(hidden)]
    #[inline]
    fn irls_sums_rows<const M: usize>(
        x: &[Self],
        a: [&[Self]; M],
        zd: [Self; M],
        wf: &WeightFn<Self>,
    ) -> [(Self, Self); M] {
        std::array::from_fn(|j| Self::irls_sums(x, a[j], zd[j], wf))
    }

    /// Adjoint sweeps of all K IRLS steps, from the scaled iterates `zds[k] = zᵏ/D`
    /// (`k = 0..=K`): with `w_dᵏ` the weight and `g_dᵏ = w'(r_dᵏ)·sign(t_d − zds[k])`, writes
    /// `e_dᵏ = w_dᵏ + (t_d − zds[k+1])·g_dᵏ` to `e_out[k·D + d]` and
    /// `(Σ_d w_dᵏ, Σ_d (t_d − zds[k+1])·g_dᵏ)` to `sums[k]`.
    #[doc(hidden)]
    #[inline]
    fn irls_adjoint_sums(
        x: &[Self],
        a: &[Self],
        zds: &[Self],
        wf: &WeightFn<Self>,
        e_out: &mut [Self],
        sums: &mut [(Self, Self)],
    ) {
        kernels::irls_adjoint_sums(x, a, zds, wf, e_out, sums)
    }

    /// Scatter of the term adjoints: with `t̄_d = t0 + Σ_k c_k·e_dᵏ` (`e_sc` laid out `[K][D]`;
    /// `t0 = z̄⁰`, the adjoint of the plain sum, is the same for every d), adds `t̄_d·a_d` to
    /// `x_bar[d]` and `t̄_d·x_d` to `a_bar[d]`.
    #[doc(hidden)]
    #[inline]
    fn irls_adjoint_scatter(
        x: &[Self],
        a: &[Self],
        t0: Self,
        coefs: &[Self],
        e_sc: &[Self],
        x_bar: &mut [Self],
        a_bar: &mut [Self],
    ) {
        kernels::irls_adjoint_scatter(x, a, t0, coefs, e_sc, x_bar, a_bar)
    }
}

impl Real for f64 {
    const DTYPE: &'static str = "f64";
    #[inline(always)]
    fn of(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
}

impl Real for f32 {
    const DTYPE: &'static str = "f32";
    #[inline(always)]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn irls_sums(x: &[f32], a: &[f32], zd: f32, wf: &WeightFn<f32>) -> (f32, f32) {
        crate::nrpm::simd::irls_sums_f32(x, a, zd, wf)
    }
    #[inline]
    fn irls_sums_rows<const M: usize>(
        x: &[f32],
        a: [&[f32]; M],
        zd: [f32; M],
        wf: &WeightFn<f32>,
    ) -> [(f32, f32); M] {
        crate::nrpm::simd::irls_sums_rows_f32(x, a, zd, wf)
    }
    #[inline]
    fn irls_adjoint_sums(
        x: &[f32],
        a: &[f32],
        zds: &[f32],
        wf: &WeightFn<f32>,
        e_out: &mut [f32],
        sums: &mut [(f32, f32)],
    ) {
        crate::nrpm::simd::irls_adjoint_sums_f32(x, a, zds, wf, e_out, sums)
    }
    #[inline]
    fn irls_adjoint_scatter(
        x: &[f32],
        a: &[f32],
        t0: f32,
        coefs: &[f32],
        e_sc: &[f32],
        x_bar: &mut [f32],
        a_bar: &mut [f32],
    ) {
        crate::nrpm::simd::irls_adjoint_scatter_f32(x, a, t0, coefs, e_sc, x_bar, a_bar)
    }
}
