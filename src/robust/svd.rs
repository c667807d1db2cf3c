//! The exact spectral norm through LAPACK (`ndarray-linalg`, feature `linalg`).

use ndarray::ArrayView2;
use ndarray_linalg::SVD;

use crate::error::{Error, Result};

/// `σ_max(W)`: the largest of the singular values LAPACK's `gesvd` returns (no U or Vᵀ is
/// computed). `w` is non-empty and finite (checked by the caller).
///
/// # Errors
/// [`Error::Config`] naming the matrix shape if LAPACK reports a failure.
pub(crate) fn largest_singular_value(w: ArrayView2<f64>) -> Result<f64> {
    let (_, sigma, _) = w.to_owned().svd(false, false).map_err(|_| {
        Error::config(
            "weight matrix",
            format!("{}x{}", w.nrows(), w.ncols()),
            "LAPACK's SVD did not converge",
        )
    })?;
    Ok(sigma.iter().copied().fold(0.0, f64::max))
}
