// cuda/nrpm_materialised.cu: a materialised NRPM forward on the GPU, for the benchmark only
// (benches/nrpm_cuda.rs): what the authors' PyTorch code does, with the [B, O, D] terms
// tensor in device memory, so that the fused kernels have a GPU baseline to beat.
//
// One group (N = 1), L1 weights (the bench's configuration), f32:
//   nrpm_mat_terms_f32    t[b, o, d] = x[b, d]·w[o, d]                 (writes B·O·D)
//   nrpm_mat_sum_f32      z⁰[b, o] = Σ_d t                             (reads B·O·D)
//   per step k:
//   nrpm_mat_weights_f32  wt[b, o, d] = 1/(|t − zᵏ/D| + ε)             (reads + writes B·O·D)
//   nrpm_mat_wsum_f32     zᵏ⁺¹ = D·Σ_d wt·t / Σ_d wt                   (reads 2·B·O·D)
// That is 4 passes over B·O·D per step; the authors' code makes about 6 (it also normalises
// the weights and forms their product with t as separate tensors), so this baseline is the
// kinder one. Reductions: one warp per output, fixed order, no atomics.

#ifndef NRPM_MATH_CUH
#include "nrpm_math.cuh"
#endif

extern "C" __global__ void nrpm_mat_terms_f32(const float* __restrict__ x,
                                              const float* __restrict__ w,
                                              float* __restrict__ t, const NrpmParams prm) {
    const size_t D = prm.terms, O = prm.outputs;
    const size_t total = (size_t)prm.batch * O * D;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const size_t d = idx % D;
        const size_t o = (idx / D) % O;
        const size_t b = idx / (D * O);
        t[idx] = x[b * D + d] * w[o * D + d];
    }
}

// Warp-per-output sum over d of f(t[b, o, :]) (lane-strided, then a fixed shuffle tree).
__device__ __forceinline__ float nrpm_warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

extern "C" __global__ void nrpm_mat_sum_f32(const float* __restrict__ t, float* __restrict__ z,
                                            const NrpmParams prm) {
    const size_t D = prm.terms;
    const size_t outs = (size_t)prm.batch * prm.outputs;
    const size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const unsigned int lane = threadIdx.x % 32;
    if (warp >= outs) return;
    const float* row = t + warp * D;
    float s = 0.0f;
    for (size_t d = lane; d < D; d += 32) s += row[d];
    s = nrpm_warp_sum(s);
    if (lane == 0) z[warp] = s;
}

extern "C" __global__ void nrpm_mat_weights_f32(const float* __restrict__ t,
                                                const float* __restrict__ z,
                                                float* __restrict__ wt, const NrpmParams prm) {
    const size_t D = prm.terms;
    const size_t total = (size_t)prm.batch * prm.outputs * D;
    const NrpmWeight<float> f = nrpm_weight_fn<float>(prm);
    const float dg = (float)prm.terms;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const float zd = z[idx / D] / dg;
        wt[idx] = nrpm_weight<NRPM_NORM_L1>(f, nrpm_abs(t[idx] - zd));
    }
}

extern "C" __global__ void nrpm_mat_wsum_f32(const float* __restrict__ t,
                                             const float* __restrict__ wt,
                                             float* __restrict__ z, const NrpmParams prm) {
    const size_t D = prm.terms;
    const size_t outs = (size_t)prm.batch * prm.outputs;
    const size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const unsigned int lane = threadIdx.x % 32;
    if (warp >= outs) return;
    const float* tr = t + warp * D;
    const float* wr = wt + warp * D;
    float s0 = 0.0f, s1 = 0.0f;
    for (size_t d = lane; d < D; d += 32) {
        s0 += wr[d];
        s1 += wr[d] * tr[d];
    }
    s0 = nrpm_warp_sum(s0);
    s1 = nrpm_warp_sum(s1);
    if (lane == 0) z[warp] = nrpm_step_finish(s0, s1, (float)prm.terms);
}
