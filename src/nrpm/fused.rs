//! The fused NRPM operator: the production CPU path. It never materialises the `[B, O, D]`
//! terms: each output (b, o) streams its D terms `x[b, :]·W[o, :]` from the two rows, in
//! contiguous memory, through SIMD loops (`simd.rs`, `kernels.rs`); rayon spreads the outputs
//! over cores.
//!
//! Forward: `z⁰ = x·Wᵀ` by one batch-invariant GEMM per group (`matmul.rs`), then K passes
//! over the terms per output, each accumulating `(Σ w_d, Σ w_d·t_d)`; four outputs of one input row share each
//! pass (`Real::irls_sums_rows`), which loads `x_d` once for the four and reduces their sums
//! together (the per-output reductions cost as much as a quarter of the loop at D = 256).
//!
//! Backward (maths in `reference.rs`), per output and group, from the saved iterates alone:
//! 1. one sweep over d (all steps at once) computes the weight `w_dᵏ` and its slope
//!    `g_dᵏ = w'(r_dᵏ)·sign(u_dᵏ)`, stores `e_dᵏ = w_dᵏ + (t_d − zᵏ⁺¹/Dg)·g_dᵏ` in a per-thread
//!    `[K, Dg]` scratch, and sums `Sᵏ = Σ_d w_dᵏ` and `Qᵏ = Σ_d (t_d − zᵏ⁺¹/Dg)·g_dᵏ`;
//! 2. the scalar recursion `z̄ᴷ = (1 − λ)·ȳ`, `cᵏ = z̄ᵏ⁺¹·Dg/Sᵏ`, `z̄ᵏ = −cᵏ·Qᵏ/Dg`, and
//!    `z̄⁰ = λ·ȳ + z̄⁰_IRLS` (the plain sum feeds both the mix and the first step);
//! 3. a second sweep scatters `t̄_d = z̄⁰ + Σ_k cᵏ·e_dᵏ` into `x̄[b, :] += t̄ ⊙ W[o, :]` and
//!    `W̄[o, :] += t̄ ⊙ x[b, :]`.
//!
//! With K = 0 (or the Lpm norm) the backward is the two GEMMs `x̄ = ȳ·W`, `W̄ = ȳᵀ·x`. Work is
//! split into chunks fixed by the shape (not by the thread count) and partial sums are reduced
//! in a fixed order, so the result is the same bits on 1 or 64 threads.
//!
//! Batch invariance: row b of `y` and of `x̄` has the same bits whether `x` holds that one row
//! or many. The forward's runs of four outputs are placed by the output index alone
//! (`forward_tasks`), and `x̄[b]` is summed over the same blocks of outputs whichever gradient
//! the backward's tasks own (`irls_backward`). Attacks and sharded runs rely on it: an
//! image's figures do not depend on the batch size or the shard (tests/batch_invariance.rs).

use ndarray::{s, Array2, Array3, Array4, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use crate::error::Result;
use crate::nrpm::matmul;
use crate::nrpm::norm::WeightFn;
use crate::nrpm::{
    bias_and_lambda_grads, check_backward, check_forward, check_overflow, group_sum, Dims,
    Iterates, LinearGrads, Mix, NrpmConfig,
};
use crate::real::Real;

/// Outputs per parallel task in the forward pass.
const OUTPUTS_PER_TASK: usize = 64;
/// Outputs of one input row that share a pass over its terms. Their accumulators and
/// iterates stay in registers at 4; at 8 they spill (32 vector registers), and the pass is
/// no faster.
const ROWS_PER_PASS: usize = 4;
/// Upper bound on parallel tasks in the backward pass (each holds a partial gradient).
const MAX_BACKWARD_TASKS: usize = 8;

/// The LPM sums `z⁰_g = x_g·W_gᵀ` of every group, `[N, B, O]`, each row by itself
/// ([`matmul::rowwise_product`]: batch-invariant).
fn lpm_sums<T: Real>(x: &ArrayView2<T>, w: &ArrayView2<T>, dims: &Dims) -> Result<Array3<T>> {
    if dims.n == 1 {
        return Ok(matmul::rowwise_product(x, &w.t())?.insert_axis(Axis(0)));
    }
    let mut z0 = Array3::zeros((dims.n, dims.b, dims.o));
    for g in 0..dims.n {
        let cols = s![.., g * dims.dg..(g + 1) * dims.dg];
        let prod = matmul::rowwise_product(&x.slice(cols), &w.slice(cols).t())?;
        z0.index_axis_mut(Axis(0), g).assign(&prod);
    }
    Ok(z0)
}

/// Forward pass. Same contract as [`crate::nrpm::forward`].
///
/// Each parallel task computes the iterates of its outputs, then their mixed outputs `y`
/// (`Mix`, plus the bias) and whether all of them are finite, so no sequential pass over
/// `[B, O]` follows. Only when a task saw a value that is not finite does `check_overflow`
/// scan the arrays again, to name the first one as [`crate::nrpm::forward`] does.
///
/// # Errors
/// As [`crate::nrpm::forward`].
pub fn forward<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    let op = "nrpm::fused::forward";
    let dims = check_forward(op, &x, &weight, bias.as_ref(), cfg)?;
    let steps = cfg.steps();
    let z0 = lpm_sums(&x, &weight, &dims)?;
    let mut z = Array4::zeros((dims.b, dims.o, dims.n, steps + 1));
    let mut y = Array2::zeros((dims.b, dims.o));
    let per_output = dims.n * (steps + 1);
    let wf = cfg.norm().weight_fn::<T>(cfg.eps());
    let x_std = x.as_standard_layout();
    let w_std = weight.as_standard_layout();
    let pass = Pass {
        xs: x_std.as_slice().expect("standard"),
        ws: w_std.as_slice().expect("standard"),
        z0: &z0,
        dims,
        steps,
        wf: &wf,
        mix: Mix::new(cfg),
        bias,
    };
    let mut z_rest = z.as_slice_mut().expect("fresh array is contiguous");
    let mut y_rest = y.as_slice_mut().expect("fresh array is contiguous");
    let mut tasks = Vec::new();
    for range in forward_tasks(dims.b, dims.o) {
        let (chunk, z_next) = std::mem::take(&mut z_rest).split_at_mut(range.len() * per_output);
        let (ys, y_next) = std::mem::take(&mut y_rest).split_at_mut(range.len());
        tasks.push((range.start, chunk, ys));
        (z_rest, y_rest) = (z_next, y_next);
    }
    let finite = tasks
        .into_par_iter()
        .map(|(first, chunk, ys)| {
            pass.outputs(first, chunk);
            pass.mix(first, chunk, ys)
        })
        .reduce(|| true, |a, b| a & b);
    if !finite {
        check_overflow(op, &y)?;
        check_overflow(op, &z)?;
    }
    Ok((y, Iterates::new(z, *cfg, &x, &weight)))
}

/// The forward's parallel tasks: consecutive ranges of outputs (flat index b·O + o) that
/// cover `0..B·O`, each starting where a row starts or, in a row of more than
/// [`OUTPUTS_PER_TASK`] outputs, at a multiple of it. With O ≤ [`OUTPUTS_PER_TASK`] a task
/// holds `⌊OUTPUTS_PER_TASK/O⌋` whole rows (the last one fewer); otherwise a row is split into
/// blocks of [`OUTPUTS_PER_TASK`] outputs.
///
/// Tasks start at `o ≡ 0 (mod ROWS_PER_PASS)`, so [`Pass::outputs`] forms its runs of
/// [`ROWS_PER_PASS`] outputs at the same `o` in every row, whatever B and wherever the row lies
/// in the batch. The runs sum in another order than single outputs (on AVX-512), so an
/// output's bits then depend on its row and `W` alone: a batch of one image gives the same
/// bits as that image in any batch (tests/batch_invariance.rs).
fn forward_tasks(b: usize, o: usize) -> Vec<std::ops::Range<usize>> {
    if o <= OUTPUTS_PER_TASK {
        let rows = (OUTPUTS_PER_TASK / o.max(1)).max(1);
        return (0..b)
            .step_by(rows)
            .map(|r| r * o..(r + rows).min(b) * o)
            .collect();
    }
    (0..b)
        .flat_map(|r| {
            (0..o)
                .step_by(OUTPUTS_PER_TASK)
                .map(move |c| r * o + c..r * o + (c + OUTPUTS_PER_TASK).min(o))
        })
        .collect()
}

/// How many outputs, from output `o` of a row of `outs`, [`Pass::outputs`] computes together
/// when `left` outputs remain in its task: [`ROWS_PER_PASS`] from an `o` that is a multiple of
/// it, when the run ends inside both the row and the task; else 1. In the tasks of
/// [`forward_tasks`] the task never cuts a run, so an output is in a run exactly when
/// `o < ROWS_PER_PASS·⌊O/ROWS_PER_PASS⌋`.
fn run_length(o: usize, outs: usize, left: usize) -> usize {
    let fits = o + ROWS_PER_PASS <= outs && ROWS_PER_PASS <= left;
    if fits && o.is_multiple_of(ROWS_PER_PASS) {
        ROWS_PER_PASS
    } else {
        1
    }
}

/// What the forward IRLS passes read: `x [B, D]` and `W [O, D]` row-major, the plain sums
/// `z⁰ [N, B, O]`; and how they mix the iterates into the output.
struct Pass<'a, T: Real> {
    xs: &'a [T],
    ws: &'a [T],
    z0: &'a Array3<T>,
    dims: Dims,
    steps: usize,
    wf: &'a WeightFn<T>,
    mix: Mix<T>,
    bias: Option<ArrayView1<'a, T>>,
}

impl<T: Real> Pass<'_, T> {
    /// The outputs `ys[i] = y[first + i]` (flat index b·O + o) from their iterates in `chunk`
    /// (`[N, K + 1]` each): the group sums of z⁰ and zᴷ mixed, plus the bias. Returns whether
    /// every output and iterate is finite.
    fn mix(&self, first: usize, chunk: &[T], ys: &mut [T]) -> bool {
        let n = self.dims.n;
        let mut finite = chunk.iter().fold(true, |ok, v| ok & v.is_finite());
        for (i, (y, zs)) in ys
            .iter_mut()
            .zip(chunk.chunks_exact(n * (self.steps + 1)))
            .enumerate()
        {
            let mut v = self
                .mix
                .of(group_sum(zs, n, 0), group_sum(zs, n, self.steps));
            if let Some(bias) = &self.bias {
                v += bias[(first + i) % self.dims.o];
            }
            finite &= v.is_finite();
            *y = v;
        }
        finite
    }

    /// The iterates of the outputs `first, first + 1, …` (flat index b·O + o), `[N, K + 1]`
    /// each, into `chunk`. Runs of [`ROWS_PER_PASS`] outputs of one input row go through the
    /// multi-output sums (each x_d loaded once for them); the rest one at a time.
    fn outputs(&self, first: usize, chunk: &mut [T]) {
        let per_output = self.dims.n * (self.steps + 1);
        let count = chunk.len() / per_output;
        let mut i = 0;
        while i < count {
            let (b, o) = ((first + i) / self.dims.o, (first + i) % self.dims.o);
            let lanes = run_length(o, self.dims.o, count - i);
            let outs = &mut chunk[i * per_output..(i + lanes) * per_output];
            for g in 0..self.dims.n {
                match lanes {
                    ROWS_PER_PASS => self.group_rows::<ROWS_PER_PASS>(b, o, g, outs),
                    _ => self.group1(b, o, g, &mut outs[g * (self.steps + 1)..][..self.steps + 1]),
                }
            }
            i += lanes;
        }
    }

    /// Row `b`'s group-`g` columns, and output `o`'s.
    #[inline]
    fn rows(&self, b: usize, o: usize, g: usize) -> (&[T], &[T]) {
        let Dims { d, dg, .. } = self.dims;
        (
            &self.xs[b * d + g * dg..][..dg],
            &self.ws[o * d + g * dg..][..dg],
        )
    }

    /// The iterates `zs [K + 1]` of output (b, o), group g.
    fn group1(&self, b: usize, o: usize, g: usize, zs: &mut [T]) {
        let dgt = T::of(self.dims.dg as f64);
        let (xg, wg) = self.rows(b, o, g);
        zs[0] = self.z0[[g, b, o]];
        for k in 0..self.steps {
            let (s0, s1) = T::irls_sums(xg, wg, zs[k] / dgt, self.wf);
            zs[k + 1] = dgt * s1 / s0;
        }
    }

    /// [`Pass::group1`] for outputs (b, o … o + M − 1), whose iterates lie in `outs` at
    /// `j·N·(K + 1) + g·(K + 1)`.
    fn group_rows<const M: usize>(&self, b: usize, o: usize, g: usize, outs: &mut [T]) {
        let dgt = T::of(self.dims.dg as f64);
        let per_output = self.dims.n * (self.steps + 1);
        let at = |j: usize, k: usize| j * per_output + g * (self.steps + 1) + k;
        let xg = self.rows(b, o, g).0;
        let wg: [&[T]; M] = std::array::from_fn(|j| self.rows(b, o + j, g).1);
        for j in 0..M {
            outs[at(j, 0)] = self.z0[[g, b, o + j]];
        }
        for k in 0..self.steps {
            let zd: [T; M] = std::array::from_fn(|j| outs[at(j, k)] / dgt);
            for (j, (s0, s1)) in T::irls_sums_rows(xg, wg, zd, self.wf)
                .into_iter()
                .enumerate()
            {
                outs[at(j, k + 1)] = dgt * s1 / s0;
            }
        }
    }
}

/// Backward pass. Same contract as [`crate::nrpm::backward`].
///
/// # Errors
/// As [`crate::nrpm::backward`].
pub fn backward<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    iterates.check_linear("nrpm::fused::backward", &x, &weight)?;
    backward_unchecked(x, weight, iterates, grad_output)
}

/// [`backward`] without the check of `x` and `weight` against the forward pass.
pub(crate) fn backward_unchecked<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    let cfg = iterates.cfg;
    let dims = check_backward("nrpm::fused::backward", &x, &weight, iterates, &grad_output)?;
    let x_std = x.as_standard_layout();
    let w_std = weight.as_standard_layout();
    let z_std = iterates.z.as_standard_layout();
    let gy_std = grad_output.as_standard_layout();
    let ctx = Ctx {
        x: x_std.as_slice().expect("standard layout"),
        w: w_std.as_slice().expect("standard layout"),
        z: z_std.as_slice().expect("standard layout"),
        gy: gy_std.as_slice().expect("standard layout"),
        dims,
        steps: cfg.steps(),
        lambda: T::of(cfg.lambda()),
        wf: cfg.norm().weight_fn::<T>(cfg.eps()),
    };
    let (gx, gw) = if ctx.steps == 0 {
        lpm_backward(&x_std.view(), &w_std.view(), &grad_output)?
    } else {
        ctx.irls_backward(dims.b >= dims.o)
    };
    let (gb, gl) = bias_and_lambda_grads(iterates, &grad_output);
    Ok(LinearGrads {
        x: gx,
        weight: gw,
        bias: gb,
        lambda: gl,
    })
}

/// The backward of the plain sums `z⁰_g = x_g·W_gᵀ`: `x̄ = ȳ·W` (row by row, batch-invariant)
/// and `W̄ = ȳᵀ·x` (a sum over the batch), two GEMMs.
fn lpm_backward<T: Real>(
    x: &ArrayView2<T>,
    w: &ArrayView2<T>,
    gy: &ArrayView2<T>,
) -> Result<(Array2<T>, Array2<T>)> {
    Ok((
        matmul::rowwise_product(gy, w)?,
        matmul::product(&gy.t(), x)?,
    ))
}

/// Everything one backward pass reads (row-major slices).
struct Ctx<'a, T: Real> {
    /// `[B, D]`.
    x: &'a [T],
    /// `[O, D]`.
    w: &'a [T],
    /// Iterates `[B, O, N, K + 1]`.
    z: &'a [T],
    /// `[B, O]`.
    gy: &'a [T],
    dims: Dims,
    steps: usize,
    lambda: T,
    wf: WeightFn<T>,
}

/// Per-thread scratch of the backward sweeps.
struct Scratch<T> {
    /// `e_dᵏ`, `[K, Dg]`.
    e: Vec<T>,
    /// `(Sᵏ, Qᵏ)`.
    sums: Vec<(T, T)>,
    /// `cᵏ`.
    coefs: Vec<T>,
    /// `zᵏ/Dg`, `k = 0..=K`.
    zds: Vec<T>,
}

impl<T: Real> Scratch<T> {
    fn new(steps: usize, dg: usize) -> Self {
        Self {
            e: vec![T::zero(); steps * dg],
            sums: vec![(T::zero(), T::zero()); steps],
            coefs: vec![T::zero(); steps],
            zds: vec![T::zero(); steps + 1],
        }
    }
}

impl<T: Real> Ctx<'_, T> {
    /// Backward of output (b, o), group g: scatters the term adjoints
    /// `t̄_d = z̄⁰ + Σ_k cᵏ·e_dᵏ` (with `z̄⁰ = λ·ȳ + z̄⁰_IRLS`) into `x_bar` (row b, group
    /// columns) and `w_bar` (row o, group columns).
    fn output(
        &self,
        b: usize,
        o: usize,
        g: usize,
        sc: &mut Scratch<T>,
        x_bar: &mut [T],
        w_bar: &mut [T],
    ) {
        let Dims {
            d, o: outs, n, dg, ..
        } = self.dims;
        let dgt = T::of(dg as f64);
        let xr = &self.x[b * d + g * dg..][..dg];
        let wr = &self.w[o * d + g * dg..][..dg];
        let zs = &self.z[((b * outs + o) * n + g) * (self.steps + 1)..][..self.steps + 1];
        for (zd, &z) in sc.zds.iter_mut().zip(zs) {
            *zd = z / dgt;
        }
        T::irls_adjoint_sums(xr, wr, &sc.zds, &self.wf, &mut sc.e, &mut sc.sums);
        let gy = self.gy[b * outs + o];
        let mut z_bar = (T::one() - self.lambda) * gy;
        for k in (0..self.steps).rev() {
            let (s0, q) = sc.sums[k];
            let c = z_bar * dgt / s0;
            sc.coefs[k] = c;
            z_bar = -c * q / dgt;
        }
        let z0_bar = z_bar + self.lambda * gy;
        T::irls_adjoint_scatter(xr, wr, z0_bar, &sc.coefs, &sc.e, x_bar, w_bar);
    }

    /// Backward of output (b, o) in every group: [`Ctx::output`] on the group columns of
    /// `x_bar` (row b of x̄, or a part of it) and `w_bar` (row o of W̄, or a part of it).
    fn output_groups(
        &self,
        b: usize,
        o: usize,
        sc: &mut Scratch<T>,
        x_bar: &mut [T],
        w_bar: &mut [T],
    ) {
        let dg = self.dims.dg;
        for g in 0..self.dims.n {
            let cols = g * dg..(g + 1) * dg;
            self.output(b, o, g, sc, &mut x_bar[cols.clone()], &mut w_bar[cols]);
        }
    }

    /// The backward for every output. Parallel tasks own a chunk of rows of one gradient (x̄
    /// when `by_rows`, else W̄) and accumulate a private partial of the other, reduced
    /// afterwards in task order. Returns `(x̄, W̄)`.
    ///
    /// Either way `x̄[b]` is the same bits: the sum, in order, of its partial sums over the
    /// blocks of `⌈O/MAX_BACKWARD_TASKS⌉` outputs (the tasks' blocks when they own W̄, summed
    /// block by block when they own x̄). Which gradient the tasks own depends on B (B ≥ O), so
    /// without this an image's input gradient would change with the batch size.
    fn irls_backward(&self, by_rows: bool) -> (Array2<T>, Array2<T>) {
        let Dims { b, d, o, .. } = self.dims;
        let (owned_len, other_len) = if by_rows { (b, o) } else { (o, b) };
        // At least one row per task: with B = O = 0 a chunk size of 0 would panic.
        let per_task = owned_len.div_ceil(MAX_BACKWARD_TASKS).max(1);
        let o_block = o.div_ceil(MAX_BACKWARD_TASKS).max(1);
        let mut owned = Array2::zeros((owned_len, d));
        let parts: Vec<Array2<T>> = owned
            .axis_chunks_iter_mut(Axis(0), per_task)
            .into_par_iter()
            .enumerate()
            .map(|(task, mut rows)| {
                let mut sc = Scratch::new(self.steps, self.dims.dg);
                let mut partial = Array2::zeros((other_len, d));
                let mut block = vec![T::zero(); if by_rows { d } else { 0 }];
                for (i, mut row) in rows.outer_iter_mut().enumerate() {
                    let mine = task * per_task + i;
                    let row = row.as_slice_mut().expect("fresh row");
                    if !by_rows {
                        for (j, mut prow) in partial.outer_iter_mut().enumerate() {
                            let prow = prow.as_slice_mut().expect("fresh row");
                            self.output_groups(j, mine, &mut sc, prow, row);
                        }
                        continue;
                    }
                    for first in (0..o).step_by(o_block) {
                        block.fill(T::zero());
                        for j in first..(first + o_block).min(o) {
                            let mut prow = partial.row_mut(j);
                            let prow = prow.as_slice_mut().expect("fresh row");
                            self.output_groups(mine, j, &mut sc, &mut block, prow);
                        }
                        for (r, v) in row.iter_mut().zip(&block) {
                            *r += *v;
                        }
                    }
                }
                partial
            })
            .collect();
        let mut reduced = Array2::zeros((other_len, d));
        for part in parts {
            reduced += &part;
        }
        if by_rows {
            (owned, reduced)
        } else {
            (reduced, owned)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nrpm::{reference, Norm};
    use crate::Error;
    use ndarray::Array1;
    use rand::{RngExt, SeedableRng};

    fn config(norm: Norm, k: usize, lambda: f64, groups: usize) -> NrpmConfig {
        NrpmConfig::builder()
            .norm(norm)
            .k(k)
            .eps(1e-3)
            .lambda(lambda)
            .groups(groups)
            .build()
            .unwrap()
    }

    /// The outputs mixed inside the parallel tasks are, bit for bit, the shared mix of the
    /// iterates plus the bias ([`mix_output`], which the reference uses), for runs of four
    /// outputs and leftovers (O = 13), with and without bias, for every kind of output.
    #[test]
    fn outputs_mixed_in_the_tasks_equal_the_shared_mix() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (b, d, o) = (5, 12, 13);
        let x = Array2::from_shape_fn((b, d), |_| rng.random_range(-1.0_f32..1.0));
        let w = Array2::from_shape_fn((o, d), |_| rng.random_range(-1.0_f32..1.0));
        let bias = Array1::from_shape_fn(o, |_| rng.random_range(-1.0_f32..1.0));
        for cfg in [
            config(Norm::L1, 1, 0.6, 1),
            config(Norm::Huber { delta: 0.1 }, 3, 0.2, 2),
            config(Norm::L1, 0, 0.5, 1),
            NrpmConfig::lpm(),
        ] {
            for bias in [None, Some(bias.view())] {
                let (y, iterates) = forward(x.view(), w.view(), bias, &cfg).unwrap();
                let want = crate::nrpm::mix_output("test", &iterates, bias).unwrap();
                assert_eq!(y, want, "{cfg:?}, bias {}", bias.is_some());
            }
        }
    }

    /// Runs of four outputs stay inside one input row: for O not a multiple of four the last
    /// O mod 4 outputs of each row are computed one at a time (B = 10, O = 7: tasks of nine
    /// rows, 63 outputs), and every output matches the reference.
    #[test]
    fn runs_of_four_outputs_stay_in_one_row_and_one_task() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for (b, o) in [(3, 5), (2, 6), (4, 7), (3, 9), (10, 7)] {
            let d = 6;
            let x = Array2::from_shape_fn((b, d), |_| rng.random_range(-1.0_f64..1.0));
            let w = Array2::from_shape_fn((o, d), |_| rng.random_range(-1.0..1.0));
            let cfg = config(Norm::L1, 2, 0.3, 1);
            let (y, _) = forward(x.view(), w.view(), None, &cfg).unwrap();
            let (want, _) = reference::forward(x.view(), w.view(), None, &cfg).unwrap();
            for (got, want) in y.iter().zip(want.iter()) {
                assert!(
                    (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                    "B {b} O {o}"
                );
            }
        }
    }

    /// The forward's tasks cover the outputs in order, and each output's run (which sets its
    /// summation order) depends on its index `o` and O alone, not on B or on where its row
    /// lies among the tasks: runs of four start at multiples of four and are cut by neither a
    /// row end nor a task end.
    #[test]
    fn runs_depend_on_the_output_index_only() {
        for o_total in (1..=20).chain([63, 64, 65, 100, 128, 130, 256]) {
            let grouped = ROWS_PER_PASS * (o_total / ROWS_PER_PASS);
            for b in [1, 2, 3, 7, 10, 17, 50, 65] {
                let tasks = forward_tasks(b, o_total);
                let mut next = 0;
                for task in tasks {
                    assert_eq!(task.start, next, "B {b} O {o_total}: tasks not consecutive");
                    assert!(!task.is_empty(), "B {b} O {o_total}: empty task");
                    let mut i = task.start;
                    while i < task.end {
                        let o = i % o_total;
                        let lanes = run_length(o, o_total, task.end - i);
                        let want = if o < grouped { ROWS_PER_PASS } else { 1 };
                        assert_eq!(lanes, want, "B {b} O {o_total}: output {i}");
                        i += lanes;
                    }
                    next = task.end;
                }
                assert_eq!(next, b * o_total, "B {b} O {o_total}: outputs left out");
            }
        }
        assert!(forward_tasks(0, 5).is_empty() && forward_tasks(3, 0).iter().all(|t| t.is_empty()));
    }

    /// An overflow inside the tasks, in the iterates or only in the output, is reported at
    /// the same first index as the reference reports it.
    #[test]
    fn overflow_is_named_at_the_first_output() {
        let mut x = Array2::from_elem((3, 2), 0.5_f32);
        x.row_mut(2).fill(1e30);
        let w = Array2::from_elem((6, 2), 1e30_f32);
        let cfg = config(Norm::L1, 1, 0.5, 1);
        let index = |r: Result<(Array2<f32>, Iterates<f32>)>| match r {
            Err(Error::Overflow { index, .. }) => index,
            other => panic!("expected an overflow, got {:?}", other.map(|v| v.0)),
        };
        let fused = index(forward(x.view(), w.view(), None, &cfg));
        assert_eq!(fused, vec![2, 0]);
        assert_eq!(
            fused,
            index(reference::forward(x.view(), w.view(), None, &cfg))
        );
        // Finite iterates (2e38; ε = 1 keeps Σ w·t finite) whose output overflows only
        // once the bias is added.
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(1)
            .eps(1.0)
            .lambda(0.5)
            .build()
            .unwrap();
        let (x, w) = (Array2::from_elem((1, 1), 2e38_f32), Array2::ones((2, 1)));
        let bias = Array1::from_vec(vec![0.0, 2e38_f32]);
        let fused = index(forward(x.view(), w.view(), Some(bias.view()), &cfg));
        assert_eq!(fused, vec![0, 1]);
        let reference = reference::forward(x.view(), w.view(), Some(bias.view()), &cfg);
        assert_eq!(fused, index(reference));
    }
}
