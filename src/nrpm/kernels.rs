//! Portable inner loops of the fused operator over the D terms of one output (b, o).
//!
//! These are the scalar definitions; `simd.rs` has the f32 AVX-512/AVX2 versions, which must
//! compute the same sums (checked in its tests). Sums use `LANES` interleaved accumulators, in a
//! fixed order, so results do not depend on threads.

use crate::nrpm::norm::WeightFn;
use crate::real::Real;

/// Interleaved accumulators (the summation order the SIMD versions also use per lane).
const LANES: usize = 8;

/// `sign(u)` with `sign(0) = 0`, as autograd differentiates `|u|`.
#[inline(always)]
pub(crate) fn sign<T: Real>(u: T) -> T {
    if u > T::zero() {
        T::one()
    } else if u < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// `(Σ_d w_d, Σ_d w_d·t_d)` with `t_d = x_d·a_d`, `w_d = w(|t_d − zd|)`.
pub(crate) fn irls_sums<T: Real>(x: &[T], a: &[T], zd: T, wf: &WeightFn<T>) -> (T, T) {
    debug_assert_eq!(x.len(), a.len());
    let mut s0 = [T::zero(); LANES];
    let mut s1 = [T::zero(); LANES];
    let n = x.len() / LANES * LANES;
    for (xc, ac) in x[..n].chunks_exact(LANES).zip(a[..n].chunks_exact(LANES)) {
        for l in 0..LANES {
            let t = xc[l] * ac[l];
            let w = wf.weight((t - zd).abs());
            s0[l] += w;
            s1[l] += w * t;
        }
    }
    for d in n..x.len() {
        let t = x[d] * a[d];
        let w = wf.weight((t - zd).abs());
        s0[d - n] += w;
        s1[d - n] += w * t;
    }
    (s0.iter().copied().sum(), s1.iter().copied().sum())
}

/// Adjoint sweeps of all steps; see [`Real::irls_adjoint_sums`].
pub(crate) fn irls_adjoint_sums<T: Real>(
    x: &[T],
    a: &[T],
    zds: &[T],
    wf: &WeightFn<T>,
    e_out: &mut [T],
    sums: &mut [(T, T)],
) {
    let n = x.len();
    for (k, sum) in sums.iter_mut().enumerate() {
        let (zd, zd_next) = (zds[k], zds[k + 1]);
        let e = &mut e_out[k * n..(k + 1) * n];
        let mut s0 = [T::zero(); LANES];
        let mut q = [T::zero(); LANES];
        for d in 0..n {
            let t = x[d] * a[d];
            let u = t - zd;
            let (w, dw) = wf.weight_and_derivative(u.abs());
            let g = dw * sign(u);
            let v = (t - zd_next) * g;
            e[d] = w + v;
            s0[d % LANES] += w;
            q[d % LANES] += v;
        }
        *sum = (s0.iter().copied().sum(), q.iter().copied().sum());
    }
}

/// Term-adjoint scatter; see [`Real::irls_adjoint_scatter`].
pub(crate) fn irls_adjoint_scatter<T: Real>(
    x: &[T],
    a: &[T],
    t0: T,
    coefs: &[T],
    e_sc: &[T],
    x_bar: &mut [T],
    a_bar: &mut [T],
) {
    let dn = x.len();
    for d in 0..dn {
        let mut tb = t0;
        for (k, &c) in coefs.iter().enumerate() {
            tb += c * e_sc[k * dn + d];
        }
        x_bar[d] += tb * a[d];
        a_bar[d] += tb * x[d];
    }
}
