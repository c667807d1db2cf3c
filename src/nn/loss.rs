//! Log-softmax, negative log-likelihood and cross-entropy on logits `[B, K]`.
//!
//! ```text
//! log_softmax(z)_k = z_k − log Σ_j e^{z_j}        (computed with the max subtracted)
//! CE(z, y) = Σ_b −log_softmax(z_b)_{y_b}           (sum over the batch; divide for the mean)
//! ∂CE/∂z_b = softmax(z_b) − onehot(y_b)
//! ```

use ndarray::{Array2, ArrayView2, Axis};

use crate::error::{Error, Result};
use crate::real::Real;

/// Row-wise log-softmax of `[B, K]` logits.
pub fn log_softmax<T: Real>(z: ArrayView2<T>) -> Array2<T> {
    let mut out = z.to_owned();
    for mut row in out.axis_iter_mut(Axis(0)) {
        let m = row.iter().copied().fold(T::neg_infinity(), T::max);
        let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<T>().ln();
        row.mapv_inplace(|v| v - lse);
    }
    out
}

/// Summed cross-entropy of `[B, K]` logits against labels, and its gradient `[B, K]`.
///
/// # Errors
/// [`Error::Shape`] if the label count differs from B; [`Error::Config`] for a label ≥ K;
/// [`Error::NonFinite`] for NaN or ±Inf logits (which would give a NaN loss).
pub fn cross_entropy<T: Real>(z: ArrayView2<T>, labels: &[usize]) -> Result<(T, Array2<T>)> {
    crate::nrpm::check_finite("logits", &z)?;
    let (b, k) = z.dim();
    if labels.len() != b {
        return Err(Error::shape(
            "nn::loss::cross_entropy",
            "labels",
            &[b],
            &[labels.len()],
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&y| y >= k) {
        return Err(Error::config(
            "label",
            bad,
            "must be below the number of classes",
        ));
    }
    let logp = log_softmax(z);
    let mut loss = T::zero();
    let mut grad = logp.mapv(|v| v.exp());
    for (i, &y) in labels.iter().enumerate() {
        loss -= logp[[i, y]];
        grad[[i, y]] -= T::one();
    }
    Ok((loss, grad))
}

/// Index of the largest logit per row (first on ties, as `argmax` in PyTorch).
pub fn argmax<T: Real>(z: ArrayView2<T>) -> Vec<usize> {
    z.axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let z = array![[0.5, -1.0, 2.0], [0.0, 0.1, -0.3]];
        let labels = [2, 0];
        let (_, g) = cross_entropy(z.view(), &labels).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                let h = 1e-6;
                let mut zp = z.clone();
                zp[[i, j]] += h;
                let mut zm = z.clone();
                zm[[i, j]] -= h;
                let fd = (cross_entropy(zp.view(), &labels).unwrap().0
                    - cross_entropy(zm.view(), &labels).unwrap().0)
                    / (2.0 * h);
                approx::assert_abs_diff_eq!(fd, g[[i, j]], epsilon = 1e-8);
            }
        }
    }

    #[test]
    fn bad_labels_are_errors() {
        let z = array![[0.5, -1.0]];
        assert!(cross_entropy(z.view(), &[2]).is_err());
        assert!(cross_entropy(z.view(), &[0, 1]).is_err());
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(
            argmax(array![[1.0, 3.0, 3.0], [-1.0, -2.0, -1.0]].view()),
            vec![1, 0]
        );
    }
}
