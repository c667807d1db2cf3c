//! Properties of the operator itself: LPM ≡ matrix product (property 1), invariance under a
//! permutation of the terms (property 2), fused ≡ reference in f64 and f32 (property 7), and
//! conv2d ≡ a direct nested-loop convolution (property 9). Proofs: proofs/README.md.

mod common;

use common::{
    assert_same_f64, assert_within, check_fused_matches_reference, conv_case, linear_case,
    norm_any, out_len, rounding_bounds, run_case, to_f32, to_f64, ConvCase, LinearCase, Spec,
    Tolerance, ToleranceUse, Values, U32, U64,
};
use ndarray::{s, Array1, Array2, Array4, Axis};
use nrpm::conv::{self, Conv2dGeometry};
use nrpm::{backward_with, forward_with, Exec, LinearGrads, Norm, NrpmConfig};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

/// Fallback counts of the f64 comparisons of [`conv_fused_matches_reference_f64`] and
/// [`operator_output_ignores_term_order`] (printed by neither: their share is asserted in
/// [`fused_matches_reference_f64`], which counts its own).
static USE: ToleranceUse = ToleranceUse::new();

/// The f64 tolerance `max(1e-10·scale, min(8·bound, 1e-6·scale))` element-wise
/// ([`Tolerance::F64`], proofs/08-fused-equals-reference.md §4): the rounding bound is used
/// where a draw is ill-conditioned, but never above a millionth of the element's scale.
fn tol_f64<D: ndarray::Dimension>(
    bound: &ndarray::Array<f64, D>,
    scale: &ndarray::Array<f64, D>,
) -> ndarray::Array<f64, D> {
    Tolerance::F64.apply(bound, scale, &USE).0
}

/// Runs forward + backward on one path in f64.
fn run_f64(exec: Exec, c: &LinearCase) -> (Array2<f64>, LinearGrads<f64>) {
    run_case(exec, c).expect("valid case")
}

/// Cases with B ≥ O and with B < O: the fused backward owns rows of x̄ in the first and rows
/// of W̄ in the second (src/nrpm/fused.rs `irls_backward(by_rows)`); every draw has both.
fn both_partitionings() -> impl Strategy<Value = (LinearCase, LinearCase)> {
    partitionings(1..=3, 1..=9)
}

/// [`both_partitionings`] with the groups and group sizes drawn from the given ranges.
fn partitionings(
    n: std::ops::RangeInclusive<usize>,
    dg: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = (LinearCase, LinearCase)> {
    (1usize..=5, 1usize..=10).prop_flat_map(move |(lo, extra)| {
        let hi = lo + extra;
        let tall = Spec {
            b: hi..=hi,
            o: lo..=lo,
            n: n.clone(),
            dg: dg.clone(),
            ..Spec::default()
        };
        let wide = Spec {
            b: lo..=lo,
            o: hi..=hi,
            n: n.clone(),
            dg: dg.clone(),
            ..Spec::default()
        };
        (linear_case(tall), linear_case(wide))
    })
}

proptest! {
    #![proptest_config(common::config(128, "proptest-regressions/prop_operator.txt"))]

    /// With `Norm::Lpm` (any K, λ, N), or with λ = 1 (any norm), the output is `x·Wᵀ + b`, on
    /// both paths, in f64 and in f32 (against the f64 product). Tolerance: the summation bound
    /// `(D + 2)·u·(Σ_d |t_d| + |b|)` per computation.
    /// Proof: proofs/01-lpm-least-squares.md
    #[test]
    fn operator_lpm_or_lambda_one_equals_matmul(
        c in linear_case(Spec { norms: norm_any(), ..Spec::default() }),
        lambda_one in any::<bool>(),
    ) {
        let cfg = if lambda_one || c.cfg.norm().is_lpm() {
            c.cfg.with_lambda(1.0).unwrap()
        } else {
            NrpmConfig::builder().norm(Norm::Lpm).k(c.cfg.k()).eps(c.cfg.eps()).lambda(c.cfg.lambda()).build()
                .unwrap()
                .with_groups(c.cfg.groups())
                .unwrap()
        };
        let want = c.x.dot(&c.w.t()) + &c.bias;
        let d = c.x.ncols() as f64;
        let scale = c.x.mapv(f64::abs).dot(&c.w.mapv(f64::abs).t()) + &c.bias.mapv(f64::abs);
        for exec in [Exec::Reference, Exec::Fused] {
            let (y, it) = forward_with(exec, c.x.view(), c.w.view(), Some(c.bias.view()), &cfg).unwrap();
            assert_within(&format!("{exec:?} f64"), &y, &want, &(&scale * (2.0 * (d + 2.0) * U64)))?;
            // z⁰ of each group is that group's partial product.
            let dg = c.x.ncols() / cfg.groups();
            for g in 0..cfg.groups() {
                let cols = s![.., g * dg..(g + 1) * dg];
                let zg = c.x.slice(cols).dot(&c.w.slice(cols).t());
                let got = it.z().slice(s![.., .., g, 0]).to_owned();
                let sc = c.x.slice(cols).mapv(f64::abs).dot(&c.w.slice(cols).mapv(f64::abs).t());
                assert_within("z⁰_g", &got, &zg, &(&sc * (2.0 * (d + 2.0) * U64)))?;
            }
            let (x32, w32, b32) = (to_f32(&c.x), to_f32(&c.w), to_f32(&c.bias));
            let (y32, _) = forward_with(exec, x32.view(), w32.view(), Some(b32.view()), &cfg).unwrap();
            let want32 = to_f64(&x32).dot(&to_f64(&w32).t()) + &to_f64(&b32);
            assert_within(&format!("{exec:?} f32"), &to_f64(&y32), &want32, &(&scale * ((d + 3.0) * (U32 + U64) * 1.01) + 1e-30))?;
        }
    }

    /// Permuting the terms inside each group, and permuting the groups, leaves the output
    /// unchanged and permutes every gradient the same way; both paths, all norms, f64.
    /// Tolerance: as fused ≡ reference (the two orders round differently).
    /// Proof: proofs/07-permutation-invariance.md
    #[test]
    fn operator_output_ignores_term_order(
        c in linear_case(Spec::default()),
        seed in any::<u64>(),
    ) {
        let (d, n) = (c.x.ncols(), c.cfg.groups());
        let dg = d / n;
        // A permutation that keeps groups whole: shuffle the groups, then inside each.
        let mut rng = seed;
        let mut next = |m: usize| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((rng >> 33) as usize) % m
        };
        let mut groups: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() { groups.swap(i, next(i + 1)); }
        let mut perm = Vec::with_capacity(d);
        for &g in &groups {
            let mut inner: Vec<usize> = (g * dg..(g + 1) * dg).collect();
            for i in (1..dg).rev() { inner.swap(i, next(i + 1)); }
            perm.extend(inner);
        }
        let p = LinearCase {
            x: c.x.select(Axis(1), &perm),
            w: c.w.select(Axis(1), &perm),
            ..c.clone()
        };
        for exec in [Exec::Reference, Exec::Fused] {
            let a = run_f64(exec, &c);
            let (yp, gp) = run_f64(exec, &p);
            // Undo the permutation on the gradients of the permuted call.
            let mut inv = vec![0; d];
            for (i, &j) in perm.iter().enumerate() { inv[j] = i; }
            let gp = LinearGrads {
                x: gp.x.select(Axis(1), &inv),
                weight: gp.weight.select(Axis(1), &inv),
                ..gp
            };
            assert_same_f64(&format!("{exec:?} permuted"), &c, &a, &(yp, gp), Tolerance::F64, &USE)?;
        }
    }

    /// The f32 fused path (AVX-512 kernels where the CPU has them) against the f64 reference,
    /// forward and every gradient, all norms, groups, both partitionings, D up to 80 (the
    /// 32-term unrolled SIMD loop and the masked tails). Tolerance: 4× the
    /// first-order rounding bound with u = 2⁻²⁴ (proofs/08 §3, §5), which accounts for the
    /// conditioning of the IRLS map along the actual trajectory; ε ≥ 1e-3 keeps the weights'
    /// relative rounding ρ/ε ≤ 1e-3 so the first-order bound is valid.
    /// Proof: proofs/08-fused-equals-reference.md
    #[test]
    fn fused_f32_matches_reference_f64((tall, wide) in partitionings(1..=2, 1..=40)) {
        for c in [&tall, &wide] {
            let c = LinearCase {
                x: to_f64(&to_f32(&c.x)),
                w: to_f64(&to_f32(&c.w)),
                bias: to_f64(&to_f32(&c.bias)),
                gy: to_f64(&to_f32(&c.gy)),
                cfg: c.cfg,
            };
            let r = run_f64(Exec::Reference, &c);
            let (x, w, b, gy) = (to_f32(&c.x), to_f32(&c.w), to_f32(&c.bias), to_f32(&c.gy));
            let (y, it) = forward_with(Exec::Fused, x.view(), w.view(), Some(b.view()), &c.cfg).unwrap();
            let g = backward_with(Exec::Fused, x.view(), w.view(), &it, gy.view()).unwrap();
            let bd = rounding_bounds(&c.x.view(), &c.w.view(), Some(&c.bias), &c.gy.view(), &c.cfg, U32 + U64);
            let t = |b: &Array2<f64>| b * 4.0 + 1e-30;
            assert_within("f32 y", &to_f64(&y), &r.0, &t(&bd.y))?;
            assert_within("f32 ∂x", &to_f64(&g.x), &r.1.x, &t(&bd.gx))?;
            assert_within("f32 ∂W", &to_f64(&g.weight), &r.1.weight, &t(&bd.gw))?;
            assert_within("f32 ∂b", &to_f64(&g.bias), &r.1.bias, &(&bd.gb * 4.0 + 1e-30))?;
            prop_assert!((f64::from(g.lambda) - r.1.lambda).abs() <= 4.0 * bd.gl + 1e-30,
                "f32 ∂λ {} vs {} > {:e}", g.lambda, r.1.lambda, 4.0 * bd.gl);
        }
    }
}

/// The receptive field of output pixel (i, j) of image b, gathered by direct loops in PyTorch
/// order `d = (c·kh + p)·kw + q`, zeros in the padding.
fn direct_patch(
    x: &Array4<f64>,
    bi: usize,
    i: usize,
    j: usize,
    kh: usize,
    kw: usize,
    g: &Conv2dGeometry,
) -> Vec<f64> {
    let (_, c, h, w) = x.dim();
    let mut patch = Vec::with_capacity(c * kh * kw);
    for ci in 0..c {
        for p in 0..kh {
            for q in 0..kw {
                let yy = (i * g.stride[0] + p * g.dilation[0]) as isize - g.padding[0] as isize;
                let xx = (j * g.stride[1] + q * g.dilation[1]) as isize - g.padding[1] as isize;
                let inside = yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w;
                patch.push(if inside {
                    x[[bi, ci, yy as usize, xx as usize]]
                } else {
                    0.0
                });
            }
        }
    }
    patch
}

/// Direct convolution `y[b, o, i, j] = Σ_{c,p,q} x[b, c, i·s + p·dil − pad, …]·W[o, c, p, q] + bias[o]`,
/// and the same sum of absolute values (the rounding scale).
fn direct_conv(c: &ConvCase) -> (Array4<f64>, Array4<f64>) {
    let (b, ch, h, w) = c.x.dim();
    let (o, _, kh, kw) = c.w.dim();
    let g = &c.geom;
    let ho = out_len(h, kh, g.stride[0], g.padding[0], g.dilation[0]);
    let wo = out_len(w, kw, g.stride[1], g.padding[1], g.dilation[1]);
    let mut y = Array4::zeros((b, o, ho, wo));
    let mut scale = Array4::zeros((b, o, ho, wo));
    for bi in 0..b {
        for oi in 0..o {
            for i in 0..ho {
                for j in 0..wo {
                    let (mut acc, mut abs) = (c.bias[oi], c.bias[oi].abs());
                    for ci in 0..ch {
                        for p in 0..kh {
                            for q in 0..kw {
                                let yy = (i * g.stride[0] + p * g.dilation[0]) as isize
                                    - g.padding[0] as isize;
                                let xx = (j * g.stride[1] + q * g.dilation[1]) as isize
                                    - g.padding[1] as isize;
                                if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                                    let t = c.x[[bi, ci, yy as usize, xx as usize]]
                                        * c.w[[oi, ci, p, q]];
                                    acc += t;
                                    abs += t.abs();
                                }
                            }
                        }
                    }
                    y[[bi, oi, i, j]] = acc;
                    scale[[bi, oi, i, j]] = abs;
                }
            }
        }
    }
    (y, scale)
}

proptest! {
    #![proptest_config(common::config(96, "proptest-regressions/prop_operator.txt"))]

    /// conv2d with `Norm::Lpm` through unfold equals the direct nested-loop convolution plus
    /// bias, for random shapes, stride, padding and dilation, on both paths. Tolerance: the
    /// summation bound `2·(D + 2)·u·Σ|terms|` (two summation orders).
    /// Proof: proofs/10-conv-unfold.md
    #[test]
    fn conv_lpm_matches_direct_loop(c in conv_case(Just(Norm::Lpm).boxed(), Values::WithTies, 4, (-2.0, 0.0))) {
        let (want, scale) = direct_conv(&c);
        let d = (c.w.dim().1 * c.w.dim().2 * c.w.dim().3) as f64;
        for exec in [Exec::Reference, Exec::Fused] {
            let (y, _) = conv::forward_with(exec, c.x.view(), c.w.view(), Some(c.bias.view()), &c.geom, &c.cfg).unwrap();
            assert_within(&format!("{exec:?}"), &y, &want, &(&scale * (2.0 * (d + 2.0) * U64)))?;
        }
    }

    /// For every norm and N ∈ {1, C, C·kh}, conv2d output pixel (b, o, i, j) is the linear NRPM
    /// output on the directly gathered receptive field in PyTorch order, bit for bit (unfold
    /// only copies), and the conv gradients equal the linear gradients folded back by direct
    /// loops. Proof: proofs/10-conv-unfold.md
    #[test]
    fn conv_nrpm_equals_linear_on_direct_patches(c in conv_case(norm_any(), Values::WithTies, 4, (-2.0, 0.0))) {
        let (b, ch, h, w) = c.x.dim();
        let (o, _, kh, kw) = c.w.dim();
        let (ho, wo) = (c.gy.dim().2, c.gy.dim().3);
        let d = ch * kh * kw;
        let mut patches = Array2::zeros((b * ho * wo, d));
        for bi in 0..b { for i in 0..ho { for j in 0..wo {
            let row = direct_patch(&c.x, bi, i, j, kh, kw, &c.geom);
            patches.row_mut((bi * ho + i) * wo + j).assign(&Array1::from_vec(row));
        }}}
        prop_assert_eq!(&conv::unfold(c.x.view(), kh, kw, &c.geom).unwrap(), &patches);
        let wflat = c.w.clone().into_shape_with_order((o, d)).unwrap();
        let gy_rows = Array2::from_shape_fn((b * ho * wo, o), |(r, oi)| {
            c.gy[[r / (ho * wo), oi, (r % (ho * wo)) / wo, r % wo]]
        });
        for exec in [Exec::Reference, Exec::Fused] {
            let (y, it) = conv::forward_with(exec, c.x.view(), c.w.view(), Some(c.bias.view()), &c.geom, &c.cfg).unwrap();
            let (yl, itl) = forward_with(exec, patches.view(), wflat.view(), Some(c.bias.view()), &c.cfg).unwrap();
            prop_assert_eq!(it.z(), itl.z());
            for bi in 0..b { for oi in 0..o { for i in 0..ho { for j in 0..wo {
                prop_assert_eq!(y[[bi, oi, i, j]], yl[[(bi * ho + i) * wo + j, oi]]);
            }}}}
            let g = conv::backward_with(exec, c.x.view(), c.w.view(), &it, c.gy.view(), &c.geom).unwrap();
            let gl = backward_with(exec, patches.view(), wflat.view(), &itl, gy_rows.view()).unwrap();
            prop_assert_eq!(&g.weight.clone().into_shape_with_order((o, d)).unwrap(), &gl.weight);
            prop_assert_eq!(&g.bias, &gl.bias);
            prop_assert_eq!(g.lambda, gl.lambda);
            // Fold by direct loops: every patch entry goes back to the pixel it came from.
            let mut gx = Array4::<f64>::zeros((b, ch, h, w));
            let mut gx_abs = Array4::<f64>::zeros((b, ch, h, w));
            for bi in 0..b { for i in 0..ho { for j in 0..wo {
                let r = (bi * ho + i) * wo + j;
                for ci in 0..ch { for p in 0..kh { for q in 0..kw {
                    let yy = (i * c.geom.stride[0] + p * c.geom.dilation[0]) as isize - c.geom.padding[0] as isize;
                    let xx = (j * c.geom.stride[1] + q * c.geom.dilation[1]) as isize - c.geom.padding[1] as isize;
                    if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                        let v = gl.x[[r, (ci * kh + p) * kw + q]];
                        gx[[bi, ci, yy as usize, xx as usize]] += v;
                        gx_abs[[bi, ci, yy as usize, xx as usize]] += v.abs();
                    }
                }}}
            }}}
            let taps = (kh * kw) as f64;
            assert_within("fold", &g.x, &gx, &(&gx_abs * (2.0 * taps * U64)))?;
        }
    }

    /// `fold` is the adjoint of `unfold`: ⟨unfold(x), c⟩ = ⟨x, fold(c)⟩ for random x, c and
    /// geometry (up to the rounding of the two inner products).
    /// Proof: proofs/10-conv-unfold.md
    #[test]
    fn conv_fold_is_adjoint_of_unfold(c in conv_case(Just(Norm::Lpm).boxed(), Values::Continuous, 4, (-2.0, 0.0)), seed in any::<u32>()) {
        let (b, ch, h, w) = c.x.dim();
        let (_, _, kh, kw) = c.w.dim();
        let cols = conv::unfold(c.x.view(), kh, kw, &c.geom).unwrap();
        let mut s = seed;
        let cot = cols.mapv(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f64 / (1u32 << 24) as f64 - 0.5
        });
        let lhs = (&cols * &cot).sum();
        let folded = conv::fold(cot.view(), [b, ch, h, w], kh, kw, &c.geom).unwrap();
        let rhs = (&c.x * &folded).sum();
        let scale = (&cols.mapv(f64::abs) * &cot.mapv(f64::abs)).sum();
        let n = cols.len() as f64;
        prop_assert!((lhs - rhs).abs() <= 2.0 * n * U64 * scale + 1e-300, "{} vs {}", lhs, rhs);
    }

    /// conv2d fused ≡ reference in f64, forward and every gradient, all norms and groups.
    /// Tolerance: as the linear test, with the patch-space bounds folded back (a sum of
    /// bounds bounds the sum). Proof: proofs/08-fused-equals-reference.md
    #[test]
    fn conv_fused_matches_reference_f64(c in conv_case(norm_any(), Values::WithTies, 4, (-2.0, 0.0))) {
        let (b, ch, h, w) = c.x.dim();
        let (o, _, kh, kw) = c.w.dim();
        let (ho, wo) = (c.gy.dim().2, c.gy.dim().3);
        let run = |exec| {
            let (y, it) = conv::forward_with(exec, c.x.view(), c.w.view(), Some(c.bias.view()), &c.geom, &c.cfg).unwrap();
            let g = conv::backward_with(exec, c.x.view(), c.w.view(), &it, c.gy.view(), &c.geom).unwrap();
            (y, g)
        };
        let (yr, gr) = run(Exec::Reference);
        let (yf, gf) = run(Exec::Fused);
        let patches = conv::unfold(c.x.view(), kh, kw, &c.geom).unwrap();
        let wflat = c.w.clone().into_shape_with_order((o, ch * kh * kw)).unwrap();
        let gy_rows = Array2::from_shape_fn((b * ho * wo, o), |(r, oi)| {
            c.gy[[r / (ho * wo), oi, (r % (ho * wo)) / wo, r % wo]]
        });
        let bd = rounding_bounds(&patches.view(), &wflat.view(), Some(&c.bias), &gy_rows.view(), &c.cfg, U64);
        let to4 = |a: Array2<f64>| a.into_shape_with_order((b, ho, wo, o)).unwrap().permuted_axes([0, 3, 1, 2]).to_owned();
        assert_within("conv y", &yf, &yr, &to4(tol_f64(&bd.y, &bd.y_scale)))?;
        let fold = |a: Array2<f64>| conv::fold(a.view(), [b, ch, h, w], kh, kw, &c.geom).unwrap();
        assert_within("conv ∂x", &gf.x, &gr.x, &fold(tol_f64(&bd.gx, &bd.gx_scale)))?;
        let tw = tol_f64(&bd.gw, &bd.gw_scale).into_shape_with_order((o, ch, kh, kw)).unwrap();
        assert_within("conv ∂W", &gf.weight, &gr.weight, &tw)?;
        assert_within("conv ∂b", &gf.bias, &gr.bias, &tol_f64(&bd.gb, &bd.gb_scale))?;
        let tl = tol_f64(&Array1::from_elem(1, bd.gl), &Array1::from_elem(1, bd.gl_scale))[0];
        prop_assert!((gf.lambda - gr.lambda).abs() <= tl, "conv ∂λ {} vs {}", gf.lambda, gr.lambda);
    }
}

/// fused ≡ reference in f64, forward and every gradient (x, W, bias, λ), all norms,
/// N ≥ 1 groups, K ≤ 3, for a B ≥ O and a B < O shape (the two partitionings of the fused
/// backward), compared element-wise. Tolerance: [`Tolerance::F64`], 1e-10 of each element's
/// scale, or 8× its first-order rounding bound where the draw is ill-conditioned, capped at
/// 1e-6 of the scale (proofs/08 §4). The draws and elements that fell back to the bound are
/// counted and printed; at most a quarter of the draws may fall back (a larger share would
/// mean the 1e-10 criterion no longer describes the test).
/// Proof: proofs/08-fused-equals-reference.md, proofs/09-gradient-exactness.md
#[test]
fn fused_matches_reference_f64() {
    let counts = ToleranceUse::new();
    let mut runner = TestRunner::new(common::config(
        128,
        "proptest-regressions/prop_operator.txt",
    ));
    let run = runner.run(&both_partitionings(), |(tall, wide)| {
        prop_assert!(tall.x.nrows() >= tall.w.nrows() && wide.x.nrows() < wide.w.nrows());
        for c in [&tall, &wide] {
            check_fused_matches_reference(c, &counts)?;
        }
        Ok(())
    });
    if let Err(e) = run {
        panic!("{e}");
    }
    let (draws, draws_fell, elements, fell, capped) = counts.counts();
    eprintln!(
        "fused_matches_reference_f64: {draws_fell} of {draws} draws and {fell} of {elements} \
         elements fell back to the rounding bound, {capped} elements capped at 1e-6·scale"
    );
    assert!(
        4 * draws_fell <= draws,
        "{draws_fell} of {draws} draws fell back to the rounding bound"
    );
}
