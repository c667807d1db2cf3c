//! Property tests of the downstream layer, through nrpm's public API: bounded influence of
//! every input, and the backward pass against central differences, on random shapes and values.

use nrpm::ndarray::{Array2, ArrayD};
use nrpm::nn::{Ctx, Module, ParamGrads};
use nrpm_downstream::ClippedLinear;
use proptest::prelude::*;

/// A layer and an input `x [B, D]` drawn together.
fn case() -> impl Strategy<Value = (ClippedLinear, Array2<f32>)> {
    (1usize..4, 1usize..12, 1usize..5, 0u64..1000, 0.01f32..1.0).prop_flat_map(
        |(b, d, o, seed, clip)| {
            let layer = ClippedLinear::new(d, o, clip, seed).unwrap();
            proptest::collection::vec(-3.0f32..3.0, b * d)
                .prop_map(move |v| (layer.clone(), Array2::from_shape_vec((b, d), v).unwrap()))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Moving one input arbitrarily far moves every output by at most 2c.
    #[test]
    fn one_input_moves_each_output_by_at_most_twice_the_clip(
        (layer, x) in case(), far in -1e6f32..1e6, pick in 0usize..1000,
    ) {
        let d = x.ncols();
        let mut moved = x.clone();
        moved[[0, pick % d]] = far;
        let (y, y2) = (layer.apply(&x).unwrap(), layer.apply(&moved).unwrap());
        for (a, b) in y.iter().zip(y2.iter()) {
            prop_assert!((a - b).abs() <= 2.0 * layer.clip() * (1.0 + 1e-5), "{a} vs {b}");
        }
    }

    /// The input gradient of L = Σ y equals the central difference wherever no term sits
    /// within h of a clip edge (where the difference quotient straddles the kink).
    #[test]
    fn input_gradient_matches_central_differences((layer, x) in case()) {
        let (_, cache) = layer.forward(x.clone().into_dyn(), &mut Ctx::eval()).unwrap();
        let ones = ArrayD::ones(nrpm::ndarray::IxDyn(&[x.nrows(), layer.apply(&x).unwrap().ncols()]));
        let gx = layer.backward("l", &cache, ones, &mut ParamGrads::default()).unwrap();
        let loss = |x: &Array2<f32>| f64::from(layer.apply(x).unwrap().sum());
        let h = 1e-2f32;
        for ((b, k), g) in gx.into_dimensionality::<nrpm::ndarray::Ix2>().unwrap().indexed_iter() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[[b, k]] += h;
            down[[b, k]] -= h;
            // Skip coordinates whose terms cross ±c within ±h (the derivative jumps there):
            // a crossing by δ (in term units) shows as a second difference of δ and moves the
            // quotient by δ/(2h) = 50·δ, so every δ above the f32 noise of the second
            // difference (a few ulps of |y| ≤ D·c ≤ 12, under 1e-5) is skipped; 1e-4 missed a
            // crossing by 1e-4 (FD off by 3e-3).
            let near_kink = (0..layer.apply(&x).unwrap().ncols()).any(|_| {
                let yl = layer.apply(&down).unwrap();
                let yu = layer.apply(&up).unwrap();
                let ym = layer.apply(&x).unwrap();
                yl.iter().zip(yu.iter()).zip(ym.iter()).any(|((l, u), m)| ((u - m) - (m - l)).abs() > 1e-5)
            });
            if near_kink {
                continue;
            }
            let fd = (loss(&up) - loss(&down)) / (2.0 * f64::from(h));
            prop_assert!((fd - f64::from(*g)).abs() <= 2e-3 * (1.0 + fd.abs()), "[{b}, {k}]: fd {fd}, analytic {g}");
        }
    }
}
