//! The matrix products (GEMM) of the fused path: the LPM sums `z⁰ = x·Wᵀ` and the LPM
//! backward `x̄ = ȳ·W`, `W̄ = ȳᵀ·x`.
//!
//! ```text
//! C [M, N] = A [M, K] · B [K, N],   C[i, j] = Σ_k A[i, k]·B[k, j]
//! ```
//!
//! Computed by the pure-Rust `gemm` crate (the kernel under faer; no system package): AVX-512,
//! AVX2+FMA or SSE kernels chosen at run time, parallel over rayon's current pool. In
//! benches/gemm.rs it ran 1.2–4.4× faster than ndarray's `dot` (matrixmultiply, what this path
//! used before) and faster than system OpenBLAS at every LPM product of the MNIST models and
//! LeNet, f32 and f64 (docs/PERFORMANCE.md).
//!
//! Same input → same bits, whatever the thread count: `gemm` splits the work over blocks of
//! C's rows and columns only, never over the depth K, and the depth blocking (`kc`) depends on
//! the shape and the CPU's cache sizes, not on the threads; so each entry's sum over k runs in
//! the same order on 1 or 64 threads (checked by `product_bits_do_not_depend_on_threads`).
//! The order differs from a plain left-to-right sum (blocks, SIMD lanes, fused multiply-adds);
//! proofs/08 bounds the rounding of a sum of D products in any order, which covers it.

use gemm::Parallelism;
use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result};
use crate::real::Real;

/// The matrix product `a·b` for 2-D views of any strides (transposed, sliced and reversed
/// views included): `a [M, K]`, `b [K, N]` → `[M, N]` in standard layout, on rayon's current
/// pool, the same bits whatever its size. NaN and ±Inf propagate as in any sum.
///
/// # Errors
/// [`Error::Shape`] if `b` has not `K = a.ncols()` rows.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::ndarray::array;
/// let x = array![[1.0_f32, 2.0, 3.0], [4.0, 5.0, 6.0]]; // [B, D]
/// let w = array![[1.0_f32, 0.0, -1.0]];                // [O, D]
/// let z0 = nrpm::matmul::product(&x.view(), &w.t())?;   // x·Wᵀ, [B, O]
/// assert_eq!(z0, array![[-2.0], [-2.0]]);
/// # Ok(()) }
/// ```
pub fn product<T: Real>(a: &ArrayView2<T>, b: &ArrayView2<T>) -> Result<Array2<T>> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k2 != k {
        return Err(Error::shape(
            "nrpm::matmul::product",
            "b",
            &[k, n],
            &[k2, n],
        ));
    }
    let mut c = Array2::zeros((m, n));
    if m == 0 || n == 0 || k == 0 {
        return Ok(c);
    }
    let ([a_rs, a_cs], [b_rs, b_cs]) = (stride2(a), stride2(b));
    // SAFETY: `c` is a fresh, contiguous row-major m×n array (row stride n, column stride 1)
    // that nothing else aliases; `a` and `b` are live views whose m×k and k×n elements are
    // all in bounds at the strides passed (ndarray's own strides, in elements). With
    // `read_dst = false`, gemm writes `c = beta·a·b` (alpha unused) and reads `c` not at all.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
    Ok(c)
}

/// `[row stride, column stride]` of a 2-D view, in elements.
fn stride2<T>(a: &ArrayView2<T>) -> [isize; 2] {
    let s = a.strides();
    [s[0], s[1]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    /// Seeded values in (−1, 1) with a spread of magnitudes, so that summation order matters.
    fn values(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        Array2::from_shape_simple_fn((rows, cols), || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (2.0 * unit - 1.0) * 10f32.powi((state % 5) as i32 - 2)
        })
    }

    /// Asserts `product(a, b)` is within the rounding bound of a sum of K products in any
    /// order, `|Σ rounded − Σ exact| ≤ K·u·Σ_k |a_ik·b_kj|` (u = 2⁻²⁴; here with a factor 2),
    /// of the exact products summed in f64 (the plain triple loop: the oracle).
    fn assert_product(a: &ArrayView2<f32>, b: &ArrayView2<f32>) {
        let got = product(a, b).unwrap();
        assert_eq!(got.dim(), (a.nrows(), b.ncols()));
        for ((i, j), g) in got.indexed_iter() {
            let terms = (0..a.ncols()).map(|k| f64::from(a[[i, k]]) * f64::from(b[[k, j]]));
            let (exact, abs) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
            let bound = a.ncols() as f64 * f64::from(f32::EPSILON) * abs;
            assert!(
                (f64::from(*g) - exact).abs() <= bound,
                "[{i}, {j}]: {g} vs {exact}"
            );
        }
    }

    #[test]
    fn product_matches_the_triple_loop_for_every_layout() {
        let x = values(37, 53, 1);
        let w = values(19, 53, 2);
        let gy = values(37, 19, 3);
        assert_product(&x.view(), &w.t()); // z⁰ = x·Wᵀ
        assert_product(&gy.view(), &w.view()); // x̄ = ȳ·W
        assert_product(&gy.t(), &x.view()); // W̄ = ȳᵀ·x
        assert_product(&x.slice(s![.., 10..40]), &w.slice(s![.., 10..40]).t()); // one group
                                                                                // Reversed axes (negative strides).
        assert_product(&x.slice(s![..;-1, ..;-1]), &w.slice(s![.., ..;-1]).t());
    }

    #[test]
    fn product_rejects_mismatched_inner_dimensions() {
        let (a, b) = (values(3, 4, 8), values(5, 2, 9));
        let err = product(&a.view(), &b.view()).unwrap_err();
        assert!(matches!(
            err,
            Error::Shape { arg: "b", ref expected, ref got, .. } if expected == &[4, 2] && got == &[5, 2]
        ));
    }

    #[test]
    fn product_with_an_empty_dimension_is_zeros() {
        let (a, b) = (values(3, 0, 4), values(0, 5, 5));
        assert_eq!(
            product(&a.view(), &b.view()).unwrap(),
            Array2::<f32>::zeros((3, 5))
        );
        let (a, b) = (values(0, 4, 4), values(4, 5, 5));
        assert_eq!(product(&a.view(), &b.view()).unwrap().dim(), (0, 5));
    }

    /// Same bits on 1, 2, 3 and 8 threads, at shapes large enough for gemm to split the work
    /// (and ragged, so that edge tiles occur): the determinism the module doc promises.
    #[test]
    fn product_bits_do_not_depend_on_threads() {
        for &(m, k, n) in &[
            (128, 784, 256),
            (333, 257, 65),
            (1000, 64, 10),
            (4608, 25, 10),
        ] {
            let a = values(m, k, m as u64);
            let b = values(n, k, n as u64);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("thread pool");
                pool.install(|| product(&a.view(), &b.t()).unwrap())
            };
            let one = run(1);
            for threads in [2, 3, 8] {
                let other = run(threads);
                let same = one
                    .iter()
                    .zip(&other)
                    .all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "({m}, {k}, {n}): 1 vs {threads} threads differ");
            }
        }
    }
}
