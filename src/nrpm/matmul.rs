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
//!
//! `gemm` is not batch-invariant: it picks its path by shape (a dot-product kernel when
//! M·N ≤ 256, matrix-vector loops for M = 1, cache blocking from M, N and K), so row i of
//! `x·Wᵀ` can differ in its last bits between M = 1, 17 and 50 (tests/batch_invariance.rs saw
//! it at the MNIST MLP's shapes). Where a row stands for one image, [`rowwise_product`] is used
//! instead: matrixmultiply, whose blocking is fixed per CPU and never depends on the shape.
//! An image's logits and input gradient are then the same bits in a batch
//! of any size or shard. [`product`] stays where the batch is summed over (`W̄ = ȳᵀ·x`).

use std::any::TypeId;

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
    let Some(mut c) = output("nrpm::matmul::product", a, b)? else {
        return Ok(Array2::zeros((a.nrows(), b.ncols())));
    };
    let ((m, k), n) = (a.dim(), b.ncols());
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

/// The zeroed output `[M, N]` of `a [M, K]·b [K, N]`; `None` when M, N or K is 0 (the
/// product is then all zeros, with nothing to compute).
///
/// # Errors
/// [`Error::Shape`] (from `op`) if `b` has not K rows.
fn output<T: Real>(
    op: &'static str,
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
) -> Result<Option<Array2<T>>> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k2 != k {
        return Err(Error::shape(op, "b", &[k, n], &[k2, n]));
    }
    let empty = m == 0 || n == 0 || k == 0;
    Ok((!empty).then(|| Array2::zeros((m, n))))
}

/// The matrix product `a·b`, `a [M, K]`, `b [K, N]` → `[M, N]`, with each row of the result a
/// function of the same row of `a` and of `b` alone, bit for bit: row i does not change with M
/// or with what the other rows hold (batch invariance, module doc). Any strides; the same bits
/// on any number of threads. On a CPU without AVX-512 it is as fast as [`product`] within
/// noise; with AVX-512, `gemm` was 1.2–4.4× faster than this code (benches/gemm.rs,
/// docs/PERFORMANCE.md).
///
/// matrixmultiply splits the depth K into blocks of a constant of its kernel, which it picks
/// once per CPU; M and N are split into tiles whose edges run the same kernel into a buffer,
/// and its threads (ndarray's `matrixmultiply-threading`) share out tiles of M and N, never of
/// K; so an entry's sum over k runs in the same order wherever its row lies.
///
/// # Errors
/// [`Error::Shape`] if `b` has not `K = a.ncols()` rows.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::ndarray::{array, s};
/// let x = array![[1.0_f32, 2.0, 3.0], [4.0, 5.0, 6.0]]; // [B, D]
/// let w = array![[1.0_f32, 0.0, -1.0]];                // [O, D]
/// let z0 = nrpm::matmul::rowwise_product(&x.view(), &w.t())?;
/// let alone = nrpm::matmul::rowwise_product(&x.slice(s![1..2, ..]), &w.t())?;
/// assert_eq!(z0.row(1), alone.row(0));
/// # Ok(()) }
/// ```
pub fn rowwise_product<T: Real>(a: &ArrayView2<T>, b: &ArrayView2<T>) -> Result<Array2<T>> {
    let Some(mut c) = output("nrpm::matmul::rowwise_product", a, b)? else {
        return Ok(Array2::zeros((a.nrows(), b.ncols())));
    };
    let n = b.ncols();
    // SAFETY: `c` is a fresh, contiguous row-major m×n array (row stride n, column stride 1)
    // that nothing else aliases; `a` and `b` are live views whose elements are in bounds at
    // their own strides. With β = 0, matrixmultiply writes C = A·B without reading C.
    unsafe { matrixmultiply_gemm(a, b, c.as_mut_ptr(), n as isize) };
    Ok(c)
}

/// `c = a·b` by matrixmultiply (`sgemm` or `dgemm` for T), `c` row-major with row stride
/// `c_rs`.
///
/// # Safety
/// `c` must point to `a.nrows() × b.ncols()` writable elements at row stride `c_rs` and column
/// stride 1, aliased by nothing else.
unsafe fn matrixmultiply_gemm<T: Real>(
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    c: *mut T,
    c_rs: isize,
) {
    let ((m, k), n) = (a.dim(), b.ncols());
    let ([a_rs, a_cs], [b_rs, b_cs]) = (stride2(a), stride2(b));
    // T is f32 or f64 (`Real` is sealed); the casts below only rename the type.
    macro_rules! call {
        ($gemm:path) => {
            $gemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr().cast(),
                a_rs,
                a_cs,
                b.as_ptr().cast(),
                b_rs,
                b_cs,
                0.0,
                c.cast(),
                c_rs,
                1,
            )
        };
    }
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            call!(matrixmultiply::sgemm);
        } else {
            debug_assert_eq!(TypeId::of::<T>(), TypeId::of::<f64>());
            call!(matrixmultiply::dgemm);
        }
    }
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
        assert_close(&product(a, b).unwrap(), a, b);
        assert_close(&rowwise_product(a, b).unwrap(), a, b);
    }

    /// The check of [`assert_product`] on one result.
    fn assert_close(got: &Array2<f32>, a: &ArrayView2<f32>, b: &ArrayView2<f32>) {
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

    type ProductFn = fn(&ArrayView2<f32>, &ArrayView2<f32>) -> Result<Array2<f32>>;

    /// Both products, by name.
    const PRODUCTS: [(&str, ProductFn); 2] = [
        ("product", product::<f32>),
        ("rowwise_product", rowwise_product::<f32>),
    ];

    #[test]
    fn product_rejects_mismatched_inner_dimensions() {
        let (a, b) = (values(3, 4, 8), values(5, 2, 9));
        for (name, f) in PRODUCTS {
            let err = f(&a.view(), &b.view()).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Shape { op, arg: "b", ref expected, ref got }
                        if op.ends_with(name) && expected == &[4, 2] && got == &[5, 2]
                ),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn product_with_an_empty_dimension_is_zeros() {
        for (name, f) in PRODUCTS {
            let (a, b) = (values(3, 0, 4), values(0, 5, 5));
            assert_eq!(
                f(&a.view(), &b.view()).unwrap(),
                Array2::<f32>::zeros((3, 5)),
                "{name}"
            );
            let (a, b) = (values(0, 4, 4), values(4, 5, 5));
            assert_eq!(f(&a.view(), &b.view()).unwrap().dim(), (0, 5), "{name}");
            let (a, b) = (values(3, 4, 4), values(4, 0, 5));
            assert_eq!(f(&a.view(), &b.view()).unwrap().dim(), (3, 0), "{name}");
        }
    }

    /// Row i of `rowwise_product` has the same bits for every M and every position of the row
    /// (inside a tile of the kernel and across tiles), at the shapes where `gemm` changes path
    /// with M (M·N ≤ 256, M = 1) and where it does not; f32 and f64.
    #[test]
    fn rowwise_product_rows_do_not_depend_on_the_other_rows() {
        for &(k, n) in &[(784, 256), (64, 10), (25, 6), (10, 64), (3, 1)] {
            let a = values(150, k, k as u64);
            let b = values(n, k, n as u64 + 1);
            let full = rowwise_product(&a.view(), &b.t()).unwrap();
            let a64 = a.mapv(f64::from);
            let b64 = b.mapv(f64::from);
            let full64 = rowwise_product(&a64.view(), &b64.t()).unwrap();
            for (first, m) in [
                (0, 1),
                (7, 1),
                (149, 1),
                (0, 2),
                (5, 17),
                (60, 10),
                (3, 130),
            ] {
                let rows = s![first..first + m, ..];
                let part = rowwise_product(&a.slice(rows), &b.t()).unwrap();
                let same = part
                    .iter()
                    .zip(full.slice(rows).iter())
                    .all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same,
                    "f32, K {k}, N {n}: rows {first}..{} differ",
                    first + m
                );
                let part = rowwise_product(&a64.slice(rows), &b64.t()).unwrap();
                let same = part
                    .iter()
                    .zip(full64.slice(rows).iter())
                    .all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same,
                    "f64, K {k}, N {n}: rows {first}..{} differ",
                    first + m
                );
            }
        }
    }

    /// Same bits on 1, 2, 3 and 8 threads, for both products, at shapes large enough for gemm to
    /// split the work (and ragged, so that edge tiles occur): the determinism the module doc
    /// promises.
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
                let both = |f: ProductFn| f(&a.view(), &b.t()).unwrap();
                pool.install(|| PRODUCTS.map(|(_, f)| both(f)))
            };
            let one = run(1);
            for threads in [2, 3, 8] {
                for (i, other) in run(threads).iter().enumerate() {
                    let same = one[i]
                        .iter()
                        .zip(other)
                        .all(|(p, q)| p.to_bits() == q.to_bits());
                    let name = PRODUCTS[i].0;
                    assert!(
                        same,
                        "{name} ({m}, {k}, {n}): 1 vs {threads} threads differ"
                    );
                }
            }
        }
    }
}
