//! The per-image losses of the strong attacks, as functions of the logits `z [K]` of one
//! image with true class y, and their gradients with respect to z (fra31/auto-attack
//! `autopgd_base.py`, `square.py`, `fab_pt.py`):
//!
//! ```text
//! ce(z, y)          = −log softmax(z)_y
//! dlr(z, y)         = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)
//! dlr_t(z, y, t)    = −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)     (APGD-T)
//! margin(z, y)      = z_y − max_{i≠y} z_i                                   (Square; < 0: fooled)
//! ```
//! `z_π1 ≥ z_π2 ≥ …` are the sorted logits. Each loss is unchanged when a constant is added to
//! every logit, so its gradient sums to 0 over the classes: any [`Classifier`] can take it
//! ([`Classifier::logits_input_grad`]). The attacks ascend ce, dlr and dlr_t.
//!
//! Losses are computed in f64 from the logits; gradients are cast back to the model's type.

use ndarray::{Array2, Array4, ArrayView1, ArrayView2, ArrayView4, Axis};

use crate::error::{Error, Result};
use crate::models::Classifier;
use crate::nn::loss;
use crate::real::Real;

/// The 1e-12 of the DLR denominators.
const DLR_FLOOR: f64 = 1e-12;

/// A loss an attack ascends, per image.
#[derive(Clone, Copy, Debug)]
pub(super) enum Loss<'a> {
    /// Cross-entropy of the true labels.
    Ce,
    /// The difference of logits ratio (untargeted).
    Dlr,
    /// The targeted DLR loss towards `targets [B]`.
    DlrTargeted(&'a [usize]),
}

/// What one pass of a loss through a classifier gives.
pub(super) struct LossAndGrad<T> {
    /// The loss of each image.
    pub loss: Vec<f64>,
    /// The gradient of each image's loss with respect to its image, `[B, C, H, W]`.
    pub grad: Array4<T>,
    /// The predicted class of each image (first maximum on ties).
    pub pred: Vec<usize>,
}

impl Loss<'_> {
    /// Per-image losses at `x [B, C, H, W]`, their input gradients and the predictions, with
    /// one forward and one backward pass.
    ///
    /// # Errors
    /// Model errors; [`Error::Config`] for labels or targets the model does not have.
    pub(super) fn at<T: Real, C: Classifier<T> + ?Sized>(
        self,
        model: &C,
        x: ArrayView4<T>,
        labels: &[usize],
    ) -> Result<LossAndGrad<T>> {
        let (logits, grad) = match self {
            Loss::Ce => {
                let (_, grad, logits) = model.loss_input_grad(x, labels)?;
                (logits, grad)
            }
            Loss::Dlr | Loss::DlrTargeted(_) => {
                model.logits_input_grad(x, &mut |z| self.logit_grads(z, labels))?
            }
        };
        let loss = self.values(logits.view(), labels)?;
        Ok(LossAndGrad {
            loss,
            grad,
            pred: loss::argmax(logits.view()),
        })
    }

    /// The loss of each image for logits `z [B, K]`.
    fn values(self, z: ArrayView2<impl Real>, labels: &[usize]) -> Result<Vec<f64>> {
        check_classes(z.ncols(), labels, self.min_classes())?;
        Ok(z.outer_iter()
            .enumerate()
            .map(|(b, row)| {
                let row: Vec<f64> = row.iter().map(|v| v.f64()).collect();
                match self {
                    Loss::Ce => cross_entropy(&row, labels[b]),
                    Loss::Dlr => dlr(&row, labels[b]).0,
                    Loss::DlrTargeted(t) => dlr_targeted(&row, labels[b], t[b]).0,
                }
            })
            .collect())
    }

    /// `∂loss/∂z [B, K]` of each image (DLR losses only; cross-entropy comes from the model).
    fn logit_grads<T: Real>(self, z: ArrayView2<T>, labels: &[usize]) -> Result<Array2<T>> {
        check_classes(z.ncols(), labels, self.min_classes())?;
        let mut out = Array2::zeros(z.raw_dim());
        for (b, (row, mut g)) in z.outer_iter().zip(out.outer_iter_mut()).enumerate() {
            let row: Vec<f64> = row.iter().map(|v| v.f64()).collect();
            let grad = match self {
                Loss::Ce => unreachable!("cross-entropy gradients come from loss_input_grad"),
                Loss::Dlr => dlr(&row, labels[b]).1,
                Loss::DlrTargeted(t) => dlr_targeted(&row, labels[b], t[b]).1,
            };
            g.iter_mut().zip(grad).for_each(|(g, v)| *g = T::of(v));
        }
        Ok(out)
    }

    /// The fewest classes the loss is defined for.
    pub(super) fn min_classes(self) -> usize {
        match self {
            Loss::Ce => 2,
            Loss::Dlr => 3,
            Loss::DlrTargeted(_) => 4,
        }
    }
}

/// Refuses labels ≥ K and fewer than `min` classes.
fn check_classes(k: usize, labels: &[usize], min: usize) -> Result<()> {
    if k < min {
        return Err(Error::config(
            "classes",
            k,
            "too few for this loss (DLR needs 3, targeted DLR 4, cross-entropy 2)",
        ));
    }
    match labels.iter().find(|&&y| y >= k) {
        Some(&y) => Err(Error::config(
            "label",
            y,
            "must be below the number of classes",
        )),
        None => Ok(()),
    }
}

/// `−log softmax(z)_y`, with the maximum subtracted.
pub(super) fn cross_entropy(z: &[f64], y: usize) -> f64 {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    lse - z[y]
}

/// Class indices sorted by decreasing logit (stable: the lower index first on ties).
fn by_decreasing_logit(z: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&i, &j| z[j].total_cmp(&z[i]));
    order
}

/// `z_y − max_{i≠y} z_i` and the maximising class i (the lowest index on ties).
pub(super) fn margin(z: ArrayView1<impl Real>, y: usize) -> (f64, usize) {
    let mut best = (f64::NEG_INFINITY, usize::MAX);
    for (i, v) in z.iter().enumerate() {
        if i != y && v.f64() > best.0 {
            best = (v.f64(), i);
        }
    }
    (z[y].f64() - best.0, best.1)
}

/// The DLR loss and its gradient `[K]` (K ≥ 3).
fn dlr(z: &[f64], y: usize) -> (f64, Vec<f64>) {
    let order = by_decreasing_logit(z);
    let other = if order[0] == y { order[1] } else { order[0] };
    let den = z[order[0]] - z[order[2]] + DLR_FLOOR;
    let num = z[y] - z[other];
    let mut g = vec![0.0; z.len()];
    g[y] -= 1.0 / den;
    g[other] += 1.0 / den;
    g[order[0]] += num / (den * den);
    g[order[2]] -= num / (den * den);
    (-num / den, g)
}

/// The targeted DLR loss towards `t` and its gradient `[K]` (K ≥ 4).
fn dlr_targeted(z: &[f64], y: usize, t: usize) -> (f64, Vec<f64>) {
    let order = by_decreasing_logit(z);
    let den = z[order[0]] - 0.5 * (z[order[2]] + z[order[3]]) + DLR_FLOOR;
    let num = z[y] - z[t];
    let mut g = vec![0.0; z.len()];
    g[y] -= 1.0 / den;
    g[t] += 1.0 / den;
    let c = num / (den * den);
    g[order[0]] += c;
    g[order[2]] -= 0.5 * c;
    g[order[3]] -= 0.5 * c;
    (-num / den, g)
}

/// The `rank`-th largest logit's class of each row of `z [B, K]` (rank 1 = the top class),
/// the targets of APGD-T and FAB-T.
pub(super) fn ranked_class(z: ArrayView2<impl Real>, rank: usize) -> Vec<usize> {
    z.axis_iter(Axis(0))
        .map(|row| {
            let row: Vec<f64> = row.iter().map(|v| v.f64()).collect();
            by_decreasing_logit(&row)[rank - 1]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    /// Central differences of `f` at `z`.
    fn numeric_grad(f: impl Fn(&[f64]) -> f64, z: &[f64]) -> Vec<f64> {
        let h = 1e-6;
        (0..z.len())
            .map(|k| {
                let (mut up, mut down) = (z.to_vec(), z.to_vec());
                up[k] += h;
                down[k] -= h;
                (f(&up) - f(&down)) / (2.0 * h)
            })
            .collect()
    }

    const Z: [f64; 5] = [0.3, 2.0, -1.0, 1.1, 0.7];

    #[test]
    fn dlr_gradients_match_finite_differences_and_sum_to_zero() {
        for y in [1, 3, 0] {
            let (_, g) = dlr(&Z, y);
            let n = numeric_grad(|z| dlr(z, y).0, &Z);
            for (a, b) in g.iter().zip(&n) {
                assert_relative_eq!(a, b, epsilon = 1e-6);
            }
            assert!(g.iter().sum::<f64>().abs() < 1e-12);
        }
        for (y, t) in [(1, 3), (3, 4), (2, 0)] {
            let (_, g) = dlr_targeted(&Z, y, t);
            let n = numeric_grad(|z| dlr_targeted(z, y, t).0, &Z);
            for (a, b) in g.iter().zip(&n) {
                assert_relative_eq!(a, b, epsilon = 1e-6);
            }
            assert!(g.iter().sum::<f64>().abs() < 1e-12);
        }
    }

    #[test]
    fn dlr_values_follow_the_reference_formula() {
        // Each denominator carries the reference's 1e-12 (DLR_FLOOR).
        // y = 1 is the top class: −(2.0 − 1.1)/(2.0 − 0.7).
        assert_relative_eq!(dlr(&Z, 1).0, -(0.9 / (1.3 + DLR_FLOOR)), epsilon = 1e-12);
        // y = 2 is not: −(−1.0 − 2.0)/(2.0 − 0.7).
        assert_relative_eq!(dlr(&Z, 2).0, 3.0 / (1.3 + DLR_FLOOR), epsilon = 1e-12);
        // Targeted: −(z_1 − z_4)/(z_π1 − (z_π3 + z_π4)/2) = −1.3/(2.0 − 0.5).
        assert_relative_eq!(
            dlr_targeted(&Z, 1, 4).0,
            -1.3 / (2.0 - 0.5 + DLR_FLOOR),
            epsilon = 1e-12
        );
    }

    #[test]
    fn margin_ranks_and_cross_entropy() {
        let z = ndarray::arr1(&[0.3_f32, 2.0, -1.0, 1.1]);
        let (m, i) = margin(z.view(), 1);
        assert_relative_eq!(m, 0.9, epsilon = 1e-6);
        assert_eq!(i, 3);
        let zz = ndarray::arr2(&[[0.3_f32, 2.0, -1.0, 1.1]]);
        assert_eq!(ranked_class(zz.view(), 1), [1]);
        assert_eq!(ranked_class(zz.view(), 2), [3]);
        assert_eq!(ranked_class(zz.view(), 4), [2]);
        let ce = cross_entropy(&[0.0, 0.0], 0);
        assert_relative_eq!(ce, 2f64.ln(), epsilon = 1e-12);
    }
}
