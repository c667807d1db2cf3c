//! The backward pass is the exact gradient of the unrolled K-step forward (property 8):
//! central finite differences in f64, every norm, K ∈ {0, 1, 3}, with respect to x, W, bias
//! and λ, for the linear operator and for conv2d, on both paths. Points whose difference
//! stencil straddles a kink (a residual crossing 0 or a clamp point) are skipped.
//! Proof: proofs/09-gradient-exactness.md

mod common;

use common::{
    check_fd, conv_case, kink_arguments, linear_case, norm_any, rounding_bounds, LinearCase, Spec,
    Values, U64,
};
use ndarray::{Array1, Array2, Array4};
use nrpm::conv;
use nrpm::{backward_with, forward_with, Exec};
use proptest::prelude::*;

/// Small shapes, K ∈ {0, 1, 3}, ε ∈ [0.02, 1] (so that the third derivatives, which grow like
/// ε⁻², keep the truncation error of h = 1e-5 steps far below the tolerance floor).
fn fd_case() -> BoxedStrategy<LinearCase> {
    linear_case(Spec {
        b: 1..=3,
        o: 1..=3,
        n: 1..=2,
        dg: 1..=5,
        k: vec![0, 1, 3],
        log_eps: (-1.7, 0.0),
        lambda: (-0.5, 1.5),
        values: Values::Continuous,
        norms: norm_any(),
    })
}

/// Packs `[x, W, bias, λ]` into one parameter vector.
fn pack(parts: &[&[f64]]) -> Vec<f64> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

proptest! {
    #![proptest_config(common::config(96, "proptest-regressions/prop_gradients.txt"))]

    /// Linear NRPM: `backward` (reference and fused) equals the central difference of
    /// `L = Σ gy ⊙ y` along every coordinate of x, W, bias and λ.
    /// Proof: proofs/09-gradient-exactness.md
    #[test]
    fn gradients_match_finite_differences_linear(c in fd_case()) {
        let (b, d) = c.x.dim();
        let o = c.w.nrows();
        let theta = pack(&[c.x.as_slice().unwrap(), c.w.as_slice().unwrap(), c.bias.as_slice().unwrap(), &[c.cfg.lambda()]]);
        let unpack = |th: &[f64]| {
            let x = Array2::from_shape_vec((b, d), th[..b * d].to_vec()).unwrap();
            let w = Array2::from_shape_vec((o, d), th[b * d..(b + o) * d].to_vec()).unwrap();
            let bias = Array1::from_vec(th[(b + o) * d..(b + o) * d + o].to_vec());
            let cfg = c.cfg.with_lambda(th[th.len() - 1]).unwrap();
            (x, w, bias, cfg)
        };
        let eval = |th: &[f64]| {
            let (x, w, bias, cfg) = unpack(th);
            let (y, it) = forward_with(Exec::Reference, x.view(), w.view(), Some(bias.view()), &cfg).unwrap();
            ((&y * &c.gy).sum(), kink_arguments(&x.view(), &w.view(), &it.z(), &cfg))
        };
        let bd = rounding_bounds(&c.x.view(), &c.w.view(), Some(&c.bias), &c.gy.view(), &c.cfg, U64);
        let f_err = 4.0 * (&bd.y * &c.gy.mapv(f64::abs)).sum() + 1e-300;
        for exec in [Exec::Reference, Exec::Fused] {
            let (_, it) = forward_with(exec, c.x.view(), c.w.view(), Some(c.bias.view()), &c.cfg).unwrap();
            let g = backward_with(exec, c.x.view(), c.w.view(), &it, c.gy.view()).unwrap();
            let analytic = pack(&[g.x.as_slice().unwrap(), g.weight.as_slice().unwrap(), g.bias.as_slice().unwrap(), &[g.lambda]]);
            let rep = check_fd(&format!("{exec:?} [x|W|b|λ]"), &theta, &analytic, f_err, &eval)?;
            prop_assert!(rep.checked > o, "{:?}: only {} coordinates checked", exec, rep.checked);
        }
    }

    /// conv2d NRPM (through unfold/fold): `conv::backward` (reference and fused) equals the
    /// central difference of `L = Σ gy ⊙ y` along every coordinate of x, W, bias and λ, for
    /// random stride, padding, dilation and groups.
    /// Proof: proofs/09-gradient-exactness.md, proofs/10-conv-unfold.md
    #[test]
    fn gradients_match_finite_differences_conv(c in conv_case(norm_any(), Values::Continuous, 2, (-1.7, 0.0))) {
        let xd = c.x.dim();
        let wd = c.w.dim();
        let (nx, nw, o) = (c.x.len(), c.w.len(), wd.0);
        let theta = pack(&[c.x.as_slice().unwrap(), c.w.as_slice().unwrap(), c.bias.as_slice().unwrap(), &[c.cfg.lambda()]]);
        let unpack = |th: &[f64]| {
            let x = Array4::from_shape_vec(xd, th[..nx].to_vec()).unwrap();
            let w = Array4::from_shape_vec(wd, th[nx..nx + nw].to_vec()).unwrap();
            let bias = Array1::from_vec(th[nx + nw..nx + nw + o].to_vec());
            let cfg = c.cfg.with_lambda(th[th.len() - 1]).unwrap();
            (x, w, bias, cfg)
        };
        let flat = |w: &Array4<f64>| w.clone().into_shape_with_order((wd.0, wd.1 * wd.2 * wd.3)).unwrap();
        let eval = |th: &[f64]| {
            let (x, w, bias, cfg) = unpack(th);
            let (y, it) = conv::forward_with(Exec::Reference, x.view(), w.view(), Some(bias.view()), &c.geom, &cfg).unwrap();
            let patches = conv::unfold(x.view(), wd.2, wd.3, &c.geom).unwrap();
            ((&y * &c.gy).sum(), kink_arguments(&patches.view(), &flat(&w).view(), &it.z(), &cfg))
        };
        let patches = conv::unfold(c.x.view(), wd.2, wd.3, &c.geom).unwrap();
        let (gb, go, ho, wo) = c.gy.dim();
        let gy_rows = Array2::from_shape_fn((gb * ho * wo, go), |(r, oi)| c.gy[[r / (ho * wo), oi, (r % (ho * wo)) / wo, r % wo]]);
        let bd = rounding_bounds(&patches.view(), &flat(&c.w).view(), Some(&c.bias), &gy_rows.view(), &c.cfg, U64);
        let f_err = 4.0 * (&bd.y * &gy_rows.mapv(f64::abs)).sum() + 1e-300;
        for exec in [Exec::Reference, Exec::Fused] {
            let (_, it) = conv::forward_with(exec, c.x.view(), c.w.view(), Some(c.bias.view()), &c.geom, &c.cfg).unwrap();
            let g = conv::backward_with(exec, c.x.view(), c.w.view(), &it, c.gy.view(), &c.geom).unwrap();
            let analytic = pack(&[g.x.as_slice().unwrap(), g.weight.as_slice().unwrap(), g.bias.as_slice().unwrap(), &[g.lambda]]);
            let rep = check_fd(&format!("conv {exec:?} [x|W|b|λ]"), &theta, &analytic, f_err, &eval)?;
            prop_assert!(rep.checked > o, "{:?}: only {} coordinates checked", exec, rep.checked);
        }
    }
}

/// At an exact tie (a residual `t_d − zᵏ/D` that is exactly 0, where `|·|` has its kink) the
/// backward uses `sign(0) = 0`, as autograd does for `abs`; locally the loss is
/// `smooth + c·|u|`, so this is the mean of the two one-sided derivatives, which the central
/// difference measures. Terms (0, 3, −1, −2) have mean 0 = t₁, so `u₁⁰ = 0` exactly in f64 and
/// f32; the f32 fused path (AVX-512) is compared with the f64 reference at the same point.
/// Proof: proofs/09-gradient-exactness.md §3
#[test]
fn gradients_at_exact_ties_use_sign_zero() {
    let x = ndarray::array![[0.0_f64, 3.0, -1.0, -2.0]];
    let w = Array2::<f64>::ones((1, 4));
    let gy = ndarray::array![[1.0_f64]];
    for norm in [nrpm::Norm::L1, nrpm::Norm::Mcp { gamma: 4.0 }] {
        for k in [1, 2] {
            let cfg = nrpm::NrpmConfig::builder()
                .norm(norm)
                .k(k)
                .eps(0.05)
                .lambda(0.25)
                .build()
                .unwrap();
            let eval = |th: &[f64]| {
                let xs = Array2::from_shape_vec((1, 4), th.to_vec()).unwrap();
                let (y, _) =
                    forward_with(Exec::Reference, xs.view(), w.view(), None, &cfg).unwrap();
                (y[[0, 0]], Vec::new())
            };
            for exec in [Exec::Reference, Exec::Fused] {
                let (_, it) = forward_with(exec, x.view(), w.view(), None, &cfg).unwrap();
                let g = backward_with(exec, x.view(), w.view(), &it, gy.view()).unwrap();
                check_fd(
                    &format!("{norm:?} K={k} {exec:?} at a tie"),
                    x.as_slice().unwrap(),
                    g.x.as_slice().unwrap(),
                    1e-15,
                    &eval,
                )
                .unwrap();
            }
            let (_, it) = forward_with(Exec::Reference, x.view(), w.view(), None, &cfg).unwrap();
            let want = backward_with(Exec::Reference, x.view(), w.view(), &it, gy.view()).unwrap();
            let (x32, w32) = (x.mapv(|v| v as f32), w.mapv(|v| v as f32));
            let (_, it32) = forward_with(Exec::Fused, x32.view(), w32.view(), None, &cfg).unwrap();
            let g32 = backward_with(
                Exec::Fused,
                x32.view(),
                w32.view(),
                &it32,
                gy.mapv(|v| v as f32).view(),
            )
            .unwrap();
            for (a, b) in g32.x.iter().zip(&want.x) {
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{norm:?} K={k} f32 {a} vs f64 {b}"
                );
            }
        }
    }
}
