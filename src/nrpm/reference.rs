//! The reference NRPM operator: the obvious computation on the materialised terms tensor
//! `t [B, O, D]`, written for clarity. It is the oracle the fused and CUDA paths are tested
//! against; it costs O(B·O·D·K) memory in the backward pass.
//!
//! Forward, per group g of `Dg = D/N` terms (module docs of `nrpm` for the maths):
//!
//! ```text
//! t[b,o,d] = x[b,d]·W[o,d]
//! z⁰ = Σ_d t ;  zᵏ⁺¹ = Dg·Σ_d w(|t − zᵏ/Dg|)·t / Σ_d w(|t − zᵏ/Dg|)
//! ```
//!
//! Backward, reverse mode through the K unrolled steps, with `u = t − zᵏ/Dg`, `S = Σ_d w`:
//!
//! ```text
//! ∂zᵏ⁺¹/∂t_d (w held)  = Dg·w_d/S
//! ∂zᵏ⁺¹/∂w_d           = Dg·(t_d − zᵏ⁺¹/Dg)/S
//! ∂w_d/∂t_d = w'(|u_d|)·sign(u_d),   ∂w_d/∂zᵏ = −w'(|u_d|)·sign(u_d)/Dg
//! ```

use ndarray::{s, Array1, Array2, Array3, ArrayView1, ArrayView2, Axis, Zip};

use crate::error::Result;
use crate::nrpm::kernels::sign;
use crate::nrpm::{
    bias_and_lambda_grads, check_backward, check_forward, mix_output, Iterates, LinearGrads,
    NrpmConfig,
};
use crate::real::Real;

/// The terms `t[b, o, d] = x[b, d]·W[o, d]` of group `g` (`[B, O, Dg]`).
fn terms<T: Real>(x: &ArrayView2<T>, w: &ArrayView2<T>, g: usize, dg: usize) -> Array3<T> {
    let xg = x.slice(s![.., g * dg..(g + 1) * dg]);
    let wg = w.slice(s![.., g * dg..(g + 1) * dg]);
    let (b, o) = (x.nrows(), w.nrows());
    Array3::from_shape_fn((b, o, dg), |(i, j, d)| xg[[i, d]] * wg[[j, d]])
}

/// One IRLS step on all outputs: `zᵏ [B, O]` → `zᵏ⁺¹ [B, O]`.
fn irls_step<T: Real>(t: &Array3<T>, z: &Array2<T>, cfg: &NrpmConfig) -> Array2<T> {
    let wf = cfg.norm().weight_fn::<T>(cfg.eps());
    let dg = T::of(t.dim().2 as f64);
    let mut w = t.clone();
    Zip::from(&mut w)
        .and(t)
        .and_broadcast(&z.view().insert_axis(Axis(2)))
        .for_each(|w, &t, &z| *w = wf.weight((t - z / dg).abs()));
    let s0 = w.sum_axis(Axis(2));
    let s1 = (&w * t).sum_axis(Axis(2));
    (s1 / s0) * dg
}

/// Forward pass, materialised. Same contract as [`crate::nrpm::forward`].
///
/// # Errors
/// As [`crate::nrpm::forward`].
pub fn forward<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    let dims = check_forward("nrpm::reference::forward", &x, &weight, bias.as_ref(), cfg)?;
    let steps = cfg.steps();
    let mut iterates = Iterates::new(
        ndarray::Array4::zeros((dims.b, dims.o, dims.n, steps + 1)),
        *cfg,
        &x,
        &weight,
    );
    for g in 0..dims.n {
        let t = terms(&x, &weight, g, dims.dg);
        let mut z = t.sum_axis(Axis(2));
        for k in 0..=steps {
            if k > 0 {
                z = irls_step(&t, &z, cfg);
            }
            iterates.z.slice_mut(s![.., .., g, k]).assign(&z);
        }
    }
    let y = mix_output("nrpm::reference::forward", &iterates, bias)?;
    Ok((y, iterates))
}

/// Backward pass, materialised. Same contract as [`crate::nrpm::backward`].
///
/// # Errors
/// As [`crate::nrpm::backward`].
pub fn backward<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    iterates.check_linear("nrpm::reference::backward", &x, &weight)?;
    backward_unchecked(x, weight, iterates, grad_output)
}

/// [`backward`] without the check of `x` and `weight` against the forward pass.
pub(crate) fn backward_unchecked<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    let op = "nrpm::reference::backward";
    let dims = check_backward(op, &x, &weight, iterates, &grad_output)?;
    let cfg = &iterates.cfg;
    let wf = cfg.norm().weight_fn::<T>(cfg.eps());
    let lambda = T::of(cfg.lambda());
    let dg = T::of(dims.dg as f64);
    let steps = cfg.steps();
    let mut gx = Array2::zeros((dims.b, dims.d));
    let mut gw = Array2::zeros((dims.o, dims.d));
    for g in 0..dims.n {
        let t = terms(&x, &weight, g, dims.dg);
        let mut t_bar = Array3::<T>::zeros(t.raw_dim());
        // ∂L/∂zᴷ and ∂L/∂z⁰ from the mix y = λ z⁰ + (1 − λ) zᴷ.
        let (mut z_bar, z0_bar) = if steps == 0 {
            (Array2::zeros(grad_output.raw_dim()), grad_output.to_owned())
        } else {
            (
                grad_output.to_owned() * (T::one() - lambda),
                grad_output.to_owned() * lambda,
            )
        };
        for k in (0..steps).rev() {
            let zk = iterates.z.slice(s![.., .., g, k]);
            let zk1 = iterates.z.slice(s![.., .., g, k + 1]);
            let mut prev_bar = Array2::<T>::zeros(zk.raw_dim());
            for ((b, o), &zb) in z_bar.indexed_iter() {
                let tt = t.slice(s![b, o, ..]);
                let u: Array1<T> = tt.mapv(|t| t - zk[[b, o]] / dg);
                let wd: Vec<(T, T)> = u
                    .iter()
                    .map(|u| wf.weight_and_derivative(u.abs()))
                    .collect();
                let s_sum: T = wd.iter().map(|p| p.0).sum();
                for d in 0..dims.dg {
                    let (w, dw) = wd[d];
                    let dz_dt = dg * w / s_sum;
                    let dz_dw = dg * (tt[d] - zk1[[b, o]] / dg) / s_sum;
                    let w_bar = zb * dz_dw;
                    t_bar[[b, o, d]] += zb * dz_dt + w_bar * dw * sign(u[d]);
                    prev_bar[[b, o]] -= w_bar * dw * sign(u[d]) / dg;
                }
            }
            z_bar = prev_bar;
        }
        // z⁰ = Σ_d t_d feeds both the mix and the first step.
        let total0 = z0_bar + z_bar;
        t_bar += &total0.insert_axis(Axis(2));
        // t = x ⊗ W: scatter to both factors.
        let xg = x.slice(s![.., g * dims.dg..(g + 1) * dims.dg]);
        let wg = weight.slice(s![.., g * dims.dg..(g + 1) * dims.dg]);
        let mut gxg = gx.slice_mut(s![.., g * dims.dg..(g + 1) * dims.dg]);
        let mut gwg = gw.slice_mut(s![.., g * dims.dg..(g + 1) * dims.dg]);
        for ((b, o, d), &tb) in t_bar.indexed_iter() {
            gxg[[b, d]] += tb * wg[[o, d]];
            gwg[[o, d]] += tb * xg[[b, d]];
        }
    }
    let (gb, gl) = bias_and_lambda_grads(iterates, &grad_output);
    Ok(LinearGrads {
        x: gx,
        weight: gw,
        bias: gb,
        lambda: gl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nrpm::Norm;
    use ndarray::array;

    #[test]
    fn lpm_is_the_matrix_product_plus_bias() {
        let x = array![[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]];
        let w = array![[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]];
        let b = array![0.1, -0.2];
        let (y, it) = forward(x.view(), w.view(), Some(b.view()), &NrpmConfig::lpm()).unwrap();
        let want = x.dot(&w.t()) + &b;
        assert_eq!(y, want);
        assert_eq!(it.z.dim(), (2, 2, 1, 1));
    }

    #[test]
    fn one_term_is_its_own_median() {
        // D = 1: every step returns t itself.
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(3)
            .eps(1e-3)
            .lambda(0.0)
            .build()
            .unwrap();
        let (y, _) = forward(
            array![[3.0]].view(),
            array![[-2.0], [0.5]].view(),
            None,
            &cfg,
        )
        .unwrap();
        assert_eq!(y, array![[-6.0, 1.5]]);
    }

    #[test]
    fn all_zero_row_gives_zero_not_nan() {
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(3)
            .eps(1e-3)
            .lambda(0.3)
            .build()
            .unwrap();
        let x = Array2::<f64>::zeros((1, 5));
        let w = Array2::<f64>::ones((2, 5));
        let (y, it) = forward(x.view(), w.view(), None, &cfg).unwrap();
        assert_eq!(y, Array2::<f64>::zeros((1, 2)));
        let g = backward(x.view(), w.view(), &it, Array2::ones((1, 2)).view()).unwrap();
        assert!(g.x.iter().chain(g.weight.iter()).all(|v| v.is_finite()));
    }
}
