// cuda/nrpm.cu: the fused NRPM linear kernels, forward and backward (no [B, O, D] buffer).
//
// Compiled at run time by NVRTC after cuda/nrpm_math.cuh (src/nrpm/cuda.rs), without
// fast-math and without FMA contraction. Layouts (row-major, PyTorch's):
//   x [B, D], w [O, D], bias [O], y [B, O], z (iterates) [B, O, N, K+1], gy [B, O],
//   sq (scratch) [B, O, N, K, 2], rec [B, O, N, K+1, 2], gx [B, D], gw [O, D].
//
// Forward, nrpm_linear_fwd_<tile>_<dtype>: a block owns a tile of (16·TM) × (16·TM) outputs
// (b, o) and 16×16 threads; thread (tx, ty) owns the TM×TM outputs b0 + ty + 16i, o0 + tx + 16j,
// so every output's sum over d runs in one thread, in order, with no reduction across threads
// and no atomics. Per group and per pass (z⁰, then K IRLS steps) the block streams the
// group's D range in chunks of 32 columns of x and w through shared memory: each x value is
// reused by 16·TM outputs, each w value by 16·TM outputs. Chunk partials are added to the
// totals per chunk (blocked summation: error ~ (32 + Dg/32)·u instead of Dg·u).
//
// Backward, three kernels (maths: src/nrpm/reference.rs and fused.rs):
// 1. nrpm_linear_bwd_coef_<tile>_<dtype>: the forward's tiling; K passes accumulate
//    Sᵏ = Σ_d w_dᵏ and Qᵏ = Σ_d (t_d − zᵏ⁺¹/Dg)·g_dᵏ into sq, then the scalar recursion writes
//    each output's record rec = [zd_0, c_0, …, zd_K, z̄⁰_total] (nrpm_adjoint_coefs).
// 2. nrpm_linear_bwd_x_<dtype>: one thread per (d, RB rows b); loops over o, recomputes the
//    term adjoint t̄(b, o, d) from rec (nrpm_term_adjoint) and accumulates t̄·w[o, d].
// 3. nrpm_linear_bwd_w_<dtype>: one thread per (d, RB rows o); loops over b, accumulates
//    t̄(b, o, d)·x[b, d].
// Each of the two reductions (over o for x̄, over b for w̄) runs in one thread in a fixed order:
// deterministic, no atomics, no partial buffers. The z̄⁰ part of t̄ is folded in.
// bias and λ gradients are O(B·O) and computed on the host from ȳ and the iterates.

#ifndef NRPM_MATH_CUH
#include "nrpm_math.cuh"
#endif

#define NRPM_TX 16        // threads per block along o (forward / coef kernels)
#define NRPM_TY 16        // threads per block along b
#define NRPM_CHUNK 32     // columns of x and w staged in shared memory per step
#define NRPM_RB 4         // rows (b or o) per thread in the gradient kernels
#define NRPM_BWD_CHUNK 32 // blocked summation over o (x̄) or b (w̄)

// Shared-memory staging of one chunk: xs[dd][r] = x[b0 + r, d0 + dd], same for w. Rows padded
// by one element so that the transposed stores are free of bank conflicts.
template <typename T, int TM>
struct NrpmTile {
    T xs[NRPM_CHUNK][NRPM_TY * TM + 1];
    T ws[NRPM_CHUNK][NRPM_TX * TM + 1];
};

// Loads columns [col0, col0 + n) of rows [row0, row0 + 16·TM) of a [rows, D] matrix into
// s[dd][r], zeros outside the matrix. Consecutive threads read consecutive columns.
template <typename T, int TM>
__device__ __forceinline__ void nrpm_stage(T (*s)[NRPM_TY * TM + 1], const T* __restrict__ a,
                                           unsigned int rows, unsigned int d, unsigned int row0,
                                           unsigned int col0, unsigned int n) {
    const unsigned int tid = threadIdx.y * NRPM_TX + threadIdx.x;
    for (unsigned int i = tid; i < NRPM_TY * TM * NRPM_CHUNK; i += NRPM_TX * NRPM_TY) {
        const unsigned int r = i / NRPM_CHUNK;
        const unsigned int dd = i % NRPM_CHUNK;
        const unsigned int row = row0 + r;
        T v = T(0);
        if (row < rows && dd < n) v = a[(size_t)row * d + col0 + dd];
        s[dd][r] = v;
    }
}

// ---------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------

template <typename T, int TM, int KIND>
__device__ __forceinline__ void nrpm_linear_fwd_body(NrpmTile<T, TM>& sm, const T* __restrict__ x,
                                                     const T* __restrict__ w,
                                                     const T* __restrict__ bias,
                                                     T* __restrict__ y, T* __restrict__ z,
                                                     const NrpmParams& prm) {
    const unsigned int B = prm.batch, O = prm.outputs, D = prm.terms;
    const unsigned int N = prm.groups, Dg = prm.group_terms, K = prm.steps;
    const unsigned int b0 = blockIdx.x * (NRPM_TY * TM);
    const unsigned int o0 = blockIdx.y * (NRPM_TX * TM);
    const unsigned int tx = threadIdx.x, ty = threadIdx.y;
    const NrpmWeight<T> f = nrpm_weight_fn<T>(prm);
    const T dg = (T)Dg;

    for (unsigned int g = 0; g < N; ++g) {
        T zd[TM][TM];
        for (unsigned int k = 0; k <= K; ++k) {
            T s0[TM][TM], s1[TM][TM];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TM; ++j) {
                    s0[i][j] = T(0);
                    s1[i][j] = T(0);
                }
            for (unsigned int c0 = 0; c0 < Dg; c0 += NRPM_CHUNK) {
                const unsigned int n = min((unsigned int)NRPM_CHUNK, Dg - c0);
                __syncthreads(); // the previous chunk is consumed
                nrpm_stage<T, TM>(sm.xs, x, B, D, b0, g * Dg + c0, n);
                nrpm_stage<T, TM>(sm.ws, w, O, D, o0, g * Dg + c0, n);
                __syncthreads();
                T p0[TM][TM], p1[TM][TM];
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TM; ++j) {
                        p0[i][j] = T(0);
                        p1[i][j] = T(0);
                    }
                if (k == 0) {
                    #pragma unroll(TM == 4 ? 1 : 4)
                    for (int dd = 0; dd < (int)n; ++dd) {
                        T xv[TM], wv[TM];
#pragma unroll
                        for (int i = 0; i < TM; ++i) xv[i] = sm.xs[dd][ty + NRPM_TY * i];
#pragma unroll
                        for (int j = 0; j < TM; ++j) wv[j] = sm.ws[dd][tx + NRPM_TX * j];
#pragma unroll
                        for (int i = 0; i < TM; ++i)
#pragma unroll
                            for (int j = 0; j < TM; ++j) p0[i][j] += xv[i] * wv[j];
                    }
                } else {
                    #pragma unroll(TM == 4 ? 1 : 4)
                    for (int dd = 0; dd < (int)n; ++dd) {
                        T xv[TM], wv[TM];
#pragma unroll
                        for (int i = 0; i < TM; ++i) xv[i] = sm.xs[dd][ty + NRPM_TY * i];
#pragma unroll
                        for (int j = 0; j < TM; ++j) wv[j] = sm.ws[dd][tx + NRPM_TX * j];
#pragma unroll
                        for (int i = 0; i < TM; ++i)
#pragma unroll
                            for (int j = 0; j < TM; ++j)
                                nrpm_step_term<KIND>(f, xv[i] * wv[j], zd[i][j], p0[i][j],
                                                     p1[i][j]);
                    }
                }
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TM; ++j) {
                        s0[i][j] += p0[i][j];
                        s1[i][j] += p1[i][j];
                    }
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TM; ++j) {
                    const T zk = k == 0 ? s0[i][j] : nrpm_step_finish(s0[i][j], s1[i][j], dg);
                    zd[i][j] = zk / dg;
                    const unsigned int b = b0 + ty + NRPM_TY * i;
                    const unsigned int o = o0 + tx + NRPM_TX * j;
                    if (b < B && o < O) z[(((size_t)b * O + o) * N + g) * (K + 1) + k] = zk;
                }
        }
    }
    // y from this thread's own iterates (written above by this thread).
    const T lambda = (T)prm.lambda;
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TM; ++j) {
            const unsigned int b = b0 + ty + NRPM_TY * i;
            const unsigned int o = o0 + tx + NRPM_TX * j;
            if (b < B && o < O) {
                const T bo = prm.has_bias ? bias[o] : T(0);
                y[(size_t)b * O + o] =
                    nrpm_mix(z + ((size_t)b * O + o) * N * (K + 1), N, K, lambda, bo);
            }
        }
}

// ---------------------------------------------------------------------------------------
// Backward 1: adjoint sums and per-output records
// ---------------------------------------------------------------------------------------

template <typename T, int TM, int KIND>
__device__ __forceinline__ void nrpm_linear_bwd_coef_body(
    NrpmTile<T, TM>& sm, const T* __restrict__ x, const T* __restrict__ w,
    const T* __restrict__ z, const T* __restrict__ gy, T* __restrict__ sq, T* __restrict__ rec,
    const NrpmParams& prm) {
    const unsigned int B = prm.batch, O = prm.outputs, D = prm.terms;
    const unsigned int N = prm.groups, Dg = prm.group_terms, K = prm.steps;
    const unsigned int b0 = blockIdx.x * (NRPM_TY * TM);
    const unsigned int o0 = blockIdx.y * (NRPM_TX * TM);
    const unsigned int tx = threadIdx.x, ty = threadIdx.y;
    const NrpmWeight<T> f = nrpm_weight_fn<T>(prm);
    const T dg = (T)Dg;
    const T lambda = (T)prm.lambda;

    for (unsigned int g = 0; g < N; ++g) {
        for (unsigned int k = 0; k < K; ++k) {
            T zd[TM][TM], zn[TM][TM], s[TM][TM], q[TM][TM];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TM; ++j) {
                    const unsigned int b = min(b0 + ty + NRPM_TY * i, B - 1);
                    const unsigned int o = min(o0 + tx + NRPM_TX * j, O - 1);
                    const T* zo = z + (((size_t)b * O + o) * N + g) * (K + 1);
                    zd[i][j] = zo[k] / dg;
                    zn[i][j] = zo[k + 1] / dg;
                    s[i][j] = T(0);
                    q[i][j] = T(0);
                }
            for (unsigned int c0 = 0; c0 < Dg; c0 += NRPM_CHUNK) {
                const unsigned int n = min((unsigned int)NRPM_CHUNK, Dg - c0);
                __syncthreads();
                nrpm_stage<T, TM>(sm.xs, x, B, D, b0, g * Dg + c0, n);
                nrpm_stage<T, TM>(sm.ws, w, O, D, o0, g * Dg + c0, n);
                __syncthreads();
                T ps[TM][TM], pq[TM][TM];
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TM; ++j) {
                        ps[i][j] = T(0);
                        pq[i][j] = T(0);
                    }
                #pragma unroll(TM == 4 ? 1 : 4)
                for (int dd = 0; dd < (int)n; ++dd) {
                    T xv[TM], wv[TM];
#pragma unroll
                    for (int i = 0; i < TM; ++i) xv[i] = sm.xs[dd][ty + NRPM_TY * i];
#pragma unroll
                    for (int j = 0; j < TM; ++j) wv[j] = sm.ws[dd][tx + NRPM_TX * j];
#pragma unroll
                    for (int i = 0; i < TM; ++i)
#pragma unroll
                        for (int j = 0; j < TM; ++j)
                            nrpm_adjoint_term<KIND>(f, xv[i] * wv[j], zd[i][j], zn[i][j],
                                                    ps[i][j], pq[i][j]);
                }
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TM; ++j) {
                        s[i][j] += ps[i][j];
                        q[i][j] += pq[i][j];
                    }
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TM; ++j) {
                    const unsigned int b = b0 + ty + NRPM_TY * i;
                    const unsigned int o = o0 + tx + NRPM_TX * j;
                    if (b < B && o < O) {
                        T* so = sq + (((size_t)b * O + o) * N + g) * (2 * (size_t)K);
                        so[2 * k] = s[i][j];
                        so[2 * k + 1] = q[i][j];
                    }
                }
        }
        // Records of this group's outputs, from this thread's own sums.
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TM; ++j) {
                const unsigned int b = b0 + ty + NRPM_TY * i;
                const unsigned int o = o0 + tx + NRPM_TX * j;
                if (b < B && o < O) {
                    const size_t out = ((size_t)b * O + o) * N + g;
                    const T* zo = z + out * (K + 1);
                    T* ro = rec + out * (2 * (size_t)(K + 1));
                    for (unsigned int k = 0; k <= K; ++k) ro[2 * k] = zo[k] / dg;
                    nrpm_adjoint_coefs(K, sq + out * (2 * (size_t)K), gy[(size_t)b * O + o],
                                       lambda, dg, ro);
                }
            }
    }
}

// ---------------------------------------------------------------------------------------
// Backward 2 and 3: x̄ = Σ_o t̄·w and w̄ = Σ_b t̄·x
// ---------------------------------------------------------------------------------------

// x̄[b, d] for d = blockIdx.y·blockDim.x + threadIdx.x and b = blockIdx.x·RB + r.
template <typename T, int KIND>
__device__ __forceinline__ void nrpm_linear_bwd_x_body(const T* __restrict__ x,
                                                       const T* __restrict__ w,
                                                       const T* __restrict__ rec,
                                                       T* __restrict__ gx,
                                                       const NrpmParams& prm) {
    const unsigned int B = prm.batch, O = prm.outputs, D = prm.terms;
    const unsigned int N = prm.groups, Dg = prm.group_terms, K = prm.steps;
    const unsigned int d = blockIdx.y * blockDim.x + threadIdx.x;
    const unsigned int b0 = blockIdx.x * NRPM_RB;
    if (d >= D) return; // no shared memory, no barrier below
    const unsigned int g = d / Dg;
    const NrpmWeight<T> f = nrpm_weight_fn<T>(prm);
    const size_t rstride = 2 * (size_t)(K + 1);
    T xv[NRPM_RB], acc[NRPM_RB];
    unsigned int rows[NRPM_RB];
#pragma unroll
    for (int r = 0; r < NRPM_RB; ++r) {
        rows[r] = min(b0 + r, B - 1); // rows past B compute a copy of row B−1, never stored
        xv[r] = x[(size_t)rows[r] * D + d];
        acc[r] = T(0);
    }
    for (unsigned int c0 = 0; c0 < O; c0 += NRPM_BWD_CHUNK) {
        const unsigned int n = min((unsigned int)NRPM_BWD_CHUNK, O - c0);
        T part[NRPM_RB];
#pragma unroll
        for (int r = 0; r < NRPM_RB; ++r) part[r] = T(0);
        for (unsigned int oo = 0; oo < n; ++oo) {
            const unsigned int o = c0 + oo;
            const T wv = w[(size_t)o * D + d];
#pragma unroll
            for (int r = 0; r < NRPM_RB; ++r) {
                const T* ro = rec + (((size_t)rows[r] * O + o) * N + g) * rstride;
                part[r] += nrpm_term_adjoint<KIND>(f, xv[r] * wv, ro, K) * wv;
            }
        }
#pragma unroll
        for (int r = 0; r < NRPM_RB; ++r) acc[r] += part[r];
    }
#pragma unroll
    for (int r = 0; r < NRPM_RB; ++r)
        if (b0 + r < B) gx[(size_t)(b0 + r) * D + d] = acc[r];
}

// w̄[o, d] for d = blockIdx.y·blockDim.x + threadIdx.x and o = blockIdx.x·RB + r.
template <typename T, int KIND>
__device__ __forceinline__ void nrpm_linear_bwd_w_body(const T* __restrict__ x,
                                                       const T* __restrict__ w,
                                                       const T* __restrict__ rec,
                                                       T* __restrict__ gw,
                                                       const NrpmParams& prm) {
    const unsigned int B = prm.batch, O = prm.outputs, D = prm.terms;
    const unsigned int N = prm.groups, Dg = prm.group_terms, K = prm.steps;
    const unsigned int d = blockIdx.y * blockDim.x + threadIdx.x;
    const unsigned int o0 = blockIdx.x * NRPM_RB;
    if (d >= D) return;
    const unsigned int g = d / Dg;
    const NrpmWeight<T> f = nrpm_weight_fn<T>(prm);
    const size_t rstride = 2 * (size_t)(K + 1);
    T wv[NRPM_RB], acc[NRPM_RB];
    unsigned int outs[NRPM_RB];
#pragma unroll
    for (int r = 0; r < NRPM_RB; ++r) {
        outs[r] = min(o0 + r, O - 1);
        wv[r] = w[(size_t)outs[r] * D + d];
        acc[r] = T(0);
    }
    for (unsigned int c0 = 0; c0 < B; c0 += NRPM_BWD_CHUNK) {
        const unsigned int n = min((unsigned int)NRPM_BWD_CHUNK, B - c0);
        T part[NRPM_RB];
#pragma unroll
        for (int r = 0; r < NRPM_RB; ++r) part[r] = T(0);
        for (unsigned int bb = 0; bb < n; ++bb) {
            const unsigned int b = c0 + bb;
            const T xv = x[(size_t)b * D + d];
#pragma unroll
            for (int r = 0; r < NRPM_RB; ++r) {
                const T* ro = rec + (((size_t)b * O + outs[r]) * N + g) * rstride;
                part[r] += nrpm_term_adjoint<KIND>(f, xv * wv[r], ro, K) * xv;
            }
        }
#pragma unroll
        for (int r = 0; r < NRPM_RB; ++r) acc[r] += part[r];
    }
#pragma unroll
    for (int r = 0; r < NRPM_RB; ++r)
        if (o0 + r < O) gw[(size_t)(o0 + r) * D + d] = acc[r];
}

// ---------------------------------------------------------------------------------------
// Entry points, for one weight formula and one dtype per compilation (NVRTC options set by
// src/nrpm/cuda/mod.rs): -DNRPM_NORM=<NRPM_NORM_*> and -DNRPM_F64 for double (else float).
// One module per (dtype, norm), built on first use: a switch over the five formulas inside
// each kernel made the register count that of the worst formula (243 instead of 127 for
// the f32 forward with 4×4 outputs per thread) and the driver's JIT take about a minute.
// Tiles: t1 = 16×16 outputs per block (1 per thread), t2 = 32×32, t4 = 64×64 (float only:
// the double version spills).
// ---------------------------------------------------------------------------------------

#ifndef NRPM_NORM
#define NRPM_NORM NRPM_NORM_L1
#endif

#define NRPM_TILED_ENTRIES(SUFFIX, TYPE, TM)                                                    \
    extern "C" __global__ void __launch_bounds__(NRPM_TX * NRPM_TY)                             \
        nrpm_linear_fwd_##SUFFIX(const TYPE* x, const TYPE* w, const TYPE* bias, TYPE* y,       \
                                 TYPE* z, const NrpmParams prm) {                               \
        __shared__ NrpmTile<TYPE, TM> sm;                                                       \
        nrpm_linear_fwd_body<TYPE, TM, NRPM_NORM>(sm, x, w, bias, y, z, prm);                   \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(NRPM_TX * NRPM_TY)                             \
        nrpm_linear_bwd_coef_##SUFFIX(const TYPE* x, const TYPE* w, const TYPE* z,              \
                                      const TYPE* gy, TYPE* sq, TYPE* rec,                      \
                                      const NrpmParams prm) {                                   \
        __shared__ NrpmTile<TYPE, TM> sm;                                                       \
        nrpm_linear_bwd_coef_body<TYPE, TM, NRPM_NORM>(sm, x, w, z, gy, sq, rec, prm);          \
    }

#define NRPM_GRAD_ENTRIES(SUFFIX, TYPE)                                                         \
    extern "C" __global__ void __launch_bounds__(128)                                           \
        nrpm_linear_bwd_x_##SUFFIX(const TYPE* x, const TYPE* w, const TYPE* rec, TYPE* gx,     \
                                   const NrpmParams prm) {                                      \
        nrpm_linear_bwd_x_body<TYPE, NRPM_NORM>(x, w, rec, gx, prm);                            \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(128)                                           \
        nrpm_linear_bwd_w_##SUFFIX(const TYPE* x, const TYPE* w, const TYPE* rec, TYPE* gw,     \
                                   const NrpmParams prm) {                                      \
        nrpm_linear_bwd_w_body<TYPE, NRPM_NORM>(x, w, rec, gw, prm);                            \
    }

#ifdef NRPM_F64
NRPM_TILED_ENTRIES(t1_f64, double, 1)
NRPM_TILED_ENTRIES(t2_f64, double, 2)
NRPM_GRAD_ENTRIES(f64, double)
#else
NRPM_TILED_ENTRIES(t1_f32, float, 1)
NRPM_TILED_ENTRIES(t2_f32, float, 2)
NRPM_TILED_ENTRIES(t4_f32, float, 4)
NRPM_GRAD_ENTRIES(f32, float)
#endif
