//! `nrpm::matmul::product` and `rowwise_product` (the fused path's GEMMs) against the f64
//! triple loop, in f32 and f64, for any shapes (0 and 1 included: empty batch, one row, one
//! column, empty depth) and any storage of either factor (standard, transposed, reversed,
//! strided over NaN padding), the layouts the fused path and conv's unfold hand it.

mod common;

use common::{assert_within, U32, U64};
use ndarray::{s, Array2, ArrayView2};
use nrpm::Real;
use proptest::prelude::*;

/// How a factor is stored in memory.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Row-major, contiguous.
    Standard,
    /// The transpose of a row-major array (`Wᵀ` in `x·Wᵀ`).
    Transposed,
    /// Both axes reversed (negative strides).
    Reversed,
    /// Every other column of a wider array whose other columns hold NaN: an element read
    /// outside the view poisons the result.
    Strided,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::Standard),
        Just(Layout::Transposed),
        Just(Layout::Reversed),
        Just(Layout::Strided),
    ]
}

/// A dimension: 0 and 1 often, then up to 70 (past gemm's register tiles and their tails).
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 2 => Just(1usize), 6 => 2..=70usize]
}

/// The memory holding `a` in `layout` (see [`view`]).
fn store<T: Real>(a: &Array2<f64>, layout: Layout) -> Array2<T> {
    let a = a.mapv(T::of);
    match layout {
        Layout::Standard => a,
        Layout::Transposed => a.t().as_standard_layout().into_owned(),
        Layout::Reversed => a.slice(s![..;-1, ..;-1]).to_owned(),
        Layout::Strided => {
            let (rows, cols) = a.dim();
            let mut wide = Array2::from_elem((rows, 2 * cols), T::of(f64::NAN));
            wide.slice_mut(s![.., ..;2]).assign(&a);
            wide
        }
    }
}

/// The view of `stored` that equals the original array.
fn view<T: Real>(stored: &Array2<T>, layout: Layout) -> ArrayView2<'_, T> {
    match layout {
        Layout::Standard => stored.view(),
        Layout::Transposed => stored.t(),
        Layout::Reversed => stored.slice(s![..;-1, ..;-1]),
        Layout::Strided => stored.slice(s![.., ..;2]),
    }
}

/// `A [M, K]`, `B [K, N]` with entries in (−1, 1) scaled by 10^e, e ∈ {−2, …, 2}, so that the
/// summation order matters.
fn factors() -> impl Strategy<Value = (Array2<f64>, Array2<f64>)> {
    (dim(), dim(), dim()).prop_flat_map(|(m, k, n)| {
        let entry = (-1.0..1.0f64, -2..=2i32).prop_map(|(v, e)| v * 10f64.powi(e));
        let matrix = move |r: usize, c: usize| {
            prop::collection::vec(entry.clone(), r * c)
                .prop_map(move |v| Array2::from_shape_vec((r, c), v).expect("r·c values"))
        };
        (matrix(m, k), matrix(k, n))
    })
}

/// Checks `product` and `rowwise_product` in `T` (unit roundoff `u`) against the f64 triple loop over the values
/// rounded to `T`. Bound: any order of a sum of K products, with or without FMA, errs by at
/// most `K·u·Σ_k |a_ik·b_kj|` (to first order); the f64 loop adds `K·U64·Σ`; safety 1.01.
fn check<T: Real>(
    a: &Array2<f64>,
    b: &Array2<f64>,
    (la, lb): (Layout, Layout),
    u: f64,
) -> Result<(), TestCaseError> {
    for (name, product) in [
        ("product", nrpm::matmul::product::<T> as Product<T>),
        ("rowwise_product", nrpm::matmul::rowwise_product::<T>),
    ] {
        check_one(name, product, a, b, (la, lb), u)?;
    }
    Ok(())
}

type Product<T> = fn(&ArrayView2<T>, &ArrayView2<T>) -> nrpm::Result<Array2<T>>;

/// [`check`] for one of the two products.
fn check_one<T: Real>(
    name: &str,
    product: Product<T>,
    a: &Array2<f64>,
    b: &Array2<f64>,
    (la, lb): (Layout, Layout),
    u: f64,
) -> Result<(), TestCaseError> {
    let (sa, sb) = (store::<T>(a, la), store::<T>(b, lb));
    let got = product(&view(&sa, la), &view(&sb, lb)).expect("matching shapes");
    prop_assert!(got.is_standard_layout());
    let (a, b) = (a.mapv(|v| T::of(v).f64()), b.mapv(|v| T::of(v).f64()));
    let k = a.ncols() as f64;
    let mut want = Array2::zeros((a.nrows(), b.ncols()));
    let mut scale = Array2::zeros(want.raw_dim());
    for ((i, j), w) in want.indexed_iter_mut() {
        for (p, q) in a.row(i).iter().zip(b.column(j)) {
            *w += p * q;
            scale[[i, j]] += (p * q).abs();
        }
    }
    let tol = scale * (k * (u + U64) * 1.01);
    let what = format!("{name} {} {la:?}·{lb:?} {:?}", T::DTYPE, got.dim());
    assert_within(&what, &got.mapv(Real::f64), &want, &tol)
}

proptest! {
    #![proptest_config(common::config(256, "proptest-regressions/prop_matmul.txt"))]

    /// `product(a, b)` and `rowwise_product(a, b)` equal the triple loop within the summation
    /// bound, f32 and f64, for every shape and storage; with K = 0 they are exactly zeros.
    #[test]
    fn product_matches_triple_loop((a, b) in factors(), la in layout(), lb in layout()) {
        check::<f32>(&a, &b, (la, lb), U32)?;
        check::<f64>(&a, &b, (la, lb), U64)?;
    }
}
