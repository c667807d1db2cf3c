//! Stage 6 of the demo: the influence (sensitivity) curve of one hidden neuron of the trained
//! model, LPM against NRPM.
//!
//! ```text
//! t_d(o)  = x_d · W[o, d]                      d = 1..D, x one test image, W the layer's [O, D]
//! o       = argmax_o |Σ_d t_d(o)|               the neuron the image drives hardest
//! j       = argmax_d |t_d(o)|                   its largest term
//! v       ∈ [−S, S],  S = 10·(max_d t_d − min_d t_d)
//! T(t^(j←v))                                    for T = LPM, NRPM (λ = 0), hybrid λ, LAD
//! ```
//!
//! The bias is left out (it shifts every curve alike). LPM moves one for one with the term
//! (slope 1, unbounded); LAD stops moving once v is beyond the other terms; NRPM with K steps
//! lies between, its slope damped far from the data (see [`nrpm::robust::influence`]).

use ndarray::ArrayView2;
use serde::Serialize;

use nrpm::error::{Error, Result};
use nrpm::robust::{
    gross_error_sensitivity, linear_grid, sensitivity_curve, Estimator, SensitivityPoint,
};
use nrpm::NrpmConfig;

/// Where the curve is taken: a layer's weight and one input row.
#[derive(Clone, Copy, Debug)]
pub struct Probe<'a> {
    /// Layer key (`fc1`).
    pub layer: &'a str,
    /// The layer's weight `[O, D]`.
    pub weight: ArrayView2<'a, f64>,
    /// Index of the test image.
    pub image: usize,
    /// Its label.
    pub label: usize,
    /// The image flattened, `[D]`.
    pub x: &'a [f64],
}

/// One estimator's curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EstimatorCurve {
    /// Legend text.
    pub name: String,
    /// The estimator (LPM, NRPM with its configuration, LAD).
    pub estimator: Estimator,
    /// `(v, T(t^(j←v)), T(t^(j←v)) − T(t))` per grid value.
    pub points: Vec<SensitivityPoint>,
    /// `max_v |SC(v)|` over the grid.
    pub gross_error_sensitivity: f64,
}

/// The influence curves of one neuron (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InfluenceCurve {
    /// Layer key.
    pub layer: String,
    /// Test image index and label.
    pub image: usize,
    /// The image's label.
    pub label: usize,
    /// The neuron o.
    pub neuron: usize,
    /// The moved term j (a pixel index).
    pub term: usize,
    /// D, the number of terms.
    pub terms: usize,
    /// `x_j`.
    pub pixel: f64,
    /// `W[o, j]`.
    pub weight: f64,
    /// `t_j = x_j·W[o, j]`, its value before it is moved.
    pub value: f64,
    /// How many of the D terms are exactly 0 (pixels that are 0, e.g. MNIST's background).
    pub zero_terms: usize,
    /// LPM, NRPM (λ = 0), the hybrid, LAD.
    pub curves: Vec<EstimatorCurve>,
}

/// The curves of [`Probe`]'s neuron o (the module doc says how o, j and the grid are chosen)
/// for LPM, NRPM with `robust` at λ = 0, the hybrid at `hybrid_lambda`, and LAD, on a grid of
/// `points` values.
///
/// # Errors
/// [`Error::Shape`] if `x` is not `[D]` for a weight `[O, D]`; [`Error::Config`] for no neuron,
/// fewer than 2 points, or an invalid λ; estimator errors.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::demo::{influence_curve, Probe};
/// let w = ndarray::array![[1.0, 1.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4]];
/// let x = [0.2, 0.4, 0.1, 0.9];
/// let probe = Probe { layer: "fc1", weight: w.view(), image: 0, label: 7, x: &x };
/// let robust = nrpm::NrpmConfig::builder().norm(nrpm::Norm::L1).k(1).eps(5e-5).lambda(0.0).build()?;
/// let c = influence_curve(&probe, robust, 0.5, 11)?;
/// assert_eq!((c.neuron, c.term, c.terms), (0, 3, 4));
/// assert!(c.curves[1].gross_error_sensitivity < c.curves[0].gross_error_sensitivity);
/// # Ok(()) }
/// ```
pub fn influence_curve(
    probe: &Probe<'_>,
    robust: NrpmConfig,
    hybrid_lambda: f64,
    points: usize,
) -> Result<InfluenceCurve> {
    let (o_count, d) = probe.weight.dim();
    if probe.x.len() != d {
        return Err(Error::shape(
            "demo influence",
            "image [D]",
            &[d],
            &[probe.x.len()],
        ));
    }
    let terms_of = |o: usize| -> Vec<f64> {
        probe
            .x
            .iter()
            .zip(probe.weight.row(o))
            .map(|(x, w)| x * w)
            .collect()
    };
    let neuron = argmax((0..o_count).map(|o| terms_of(o).iter().sum::<f64>().abs()))
        .ok_or_else(|| Error::config("neurons", 0, "the layer needs at least one output"))?;
    let terms = terms_of(neuron);
    let term = argmax(terms.iter().map(|t| t.abs())).expect("D ≥ 1 terms");
    let grid = grid(&terms, points)?;
    let estimators = [
        ("LPM".to_string(), Estimator::Lpm),
        (
            format!("NRPM λ=0, K={}", robust.k()),
            Estimator::Nrpm(robust.with_lambda(0.0)?),
        ),
        (
            format!("hybrid λ={hybrid_lambda:.3}"),
            Estimator::Nrpm(robust.with_lambda(hybrid_lambda)?),
        ),
        ("LAD (K→∞)".to_string(), Estimator::Lad),
    ];
    let curves = estimators
        .into_iter()
        .map(|(name, estimator)| {
            let points = sensitivity_curve(&estimator, &terms, term, &grid)?;
            let gross_error_sensitivity = gross_error_sensitivity(&points);
            Ok(EstimatorCurve {
                name,
                estimator,
                points,
                gross_error_sensitivity,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(InfluenceCurve {
        layer: probe.layer.to_string(),
        image: probe.image,
        label: probe.label,
        neuron,
        term,
        terms: d,
        pixel: probe.x[term],
        weight: probe.weight[[neuron, term]],
        value: terms[term],
        zero_terms: terms.iter().filter(|t| **t == 0.0).count(),
        curves,
    })
}

/// `points` values over `[−S, S]`, `S = 10·(max t − min t)` (1 when all terms are equal):
/// wide enough to show LPM's unbounded slope against NRPM's damped one.
fn grid(terms: &[f64], points: usize) -> Result<Vec<f64>> {
    if points < 2 {
        return Err(Error::config("influence points", points, "need at least 2"));
    }
    let (lo, hi) = terms
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
            (a.min(t), b.max(t))
        });
    let spread = hi - lo;
    let s = if spread > 0.0 { 10.0 * spread } else { 1.0 };
    linear_grid(-s, s, points)
}

/// Index of the largest value (the first one on ties), `None` for no values.
fn argmax(values: impl Iterator<Item = f64>) -> Option<usize> {
    values
        .enumerate()
        .fold(None, |best: Option<(usize, f64)>, (i, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nrpm::Norm;

    fn robust() -> NrpmConfig {
        NrpmConfig::builder()
            .norm(Norm::L1)
            .k(1)
            .eps(5e-5)
            .lambda(0.0)
            .build()
            .unwrap()
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax([1.0, 3.0, 3.0, 2.0].into_iter()), Some(1));
        assert_eq!(argmax(std::iter::empty()), None);
    }

    #[test]
    fn grid_is_symmetric_and_falls_back_for_equal_terms() {
        let g = grid(&[0.0, 1.0], 5).unwrap();
        assert_eq!(g, vec![-10.0, -5.0, 0.0, 5.0, 10.0]);
        assert_eq!(grid(&[2.0; 4], 3).unwrap(), vec![-1.0, 0.0, 1.0]);
        assert!(grid(&[1.0], 1).is_err());
    }

    #[test]
    fn lpm_is_the_unit_slope_line_and_the_hybrid_mixes() {
        let w = ndarray::array![[0.5, -1.0, 2.0, 0.25, 1.0]];
        let x = [0.3, 0.1, 0.8, 0.0, 0.4];
        let probe = Probe {
            layer: "fc1",
            weight: w.view(),
            image: 3,
            label: 1,
            x: &x,
        };
        let c = influence_curve(&probe, robust(), 0.25, 9).unwrap();
        assert_eq!((c.neuron, c.term, c.image, c.label), (0, 2, 3, 1));
        assert!((c.value - 1.6).abs() < 1e-12);
        assert_eq!(c.zero_terms, 1);
        let [lpm, nrpm, hybrid, _lad] = [0, 1, 2, 3].map(|i| &c.curves[i].points);
        for i in 0..9 {
            assert!((lpm[i].sc - (lpm[i].value - c.value)).abs() < 1e-12);
            let mix = 0.25 * lpm[i].output + 0.75 * nrpm[i].output;
            assert!((hybrid[i].output - mix).abs() < 1e-9, "{i}");
        }
    }

    #[test]
    fn a_mismatched_image_is_a_shape_error() {
        let w = ndarray::array![[1.0, 2.0]];
        let probe = Probe {
            layer: "fc1",
            weight: w.view(),
            image: 0,
            label: 0,
            x: &[1.0],
        };
        assert!(matches!(
            influence_curve(&probe, robust(), 0.5, 5),
            Err(Error::Shape { .. })
        ));
    }
}
