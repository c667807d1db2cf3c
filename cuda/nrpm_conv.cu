// cuda/nrpm_conv.cu: unfold and fold on the device, so that an NRPM conv2d uploads the image
// [B, C, H, W] rather than its patches [B·L, D] (kh·kw times larger). The patches then go
// through the linear kernels of cuda/nrpm.cu (src/nrpm/conv.rs has the maths and the order
// d = (c·kh + i)·kw + j, PyTorch's F.unfold order).
//
// nrpm_unfold_<dtype>: one thread per patch entry (row = b·L + l, d), zeros in the padding.
// nrpm_fold_<dtype>: the adjoint of unfold in gather form, one thread per image element
// (b, c, h, w), summing the patch entries that read it in the fixed order (i, j): no atomics.

#ifndef NRPM_MATH_CUH
#include "nrpm_math.cuh"
#endif

template <typename T>
__device__ __forceinline__ void nrpm_unfold(const T* __restrict__ x, T* __restrict__ cols,
                                            const ConvParams& cp) {
    const unsigned int kk = cp.kh * cp.kw;
    const unsigned int d_len = cp.channels * kk;
    const unsigned int l_len = cp.out_h * cp.out_w;
    const size_t total = (size_t)cp.batch * l_len * d_len;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const unsigned int d = (unsigned int)(idx % d_len);
        const size_t row = idx / d_len;
        const unsigned int l = (unsigned int)(row % l_len);
        const unsigned int b = (unsigned int)(row / l_len);
        const unsigned int c = d / kk;
        const unsigned int i = (d % kk) / cp.kw;
        const unsigned int j = d % cp.kw;
        const int sy = nrpm_conv_source(l / cp.out_w, i, cp.stride_h, cp.dil_h, cp.pad_h, cp.height);
        const int sx = nrpm_conv_source(l % cp.out_w, j, cp.stride_w, cp.dil_w, cp.pad_w, cp.width);
        T v = T(0);
        if (sy >= 0 && sx >= 0)
            v = x[(((size_t)b * cp.channels + c) * cp.height + sy) * cp.width + sx];
        cols[idx] = v;
    }
}

template <typename T>
__device__ __forceinline__ void nrpm_fold(const T* __restrict__ cols, T* __restrict__ x,
                                          const ConvParams& cp) {
    const unsigned int kk = cp.kh * cp.kw;
    const unsigned int d_len = cp.channels * kk;
    const unsigned int l_len = cp.out_h * cp.out_w;
    const size_t total = (size_t)cp.batch * cp.channels * cp.height * cp.width;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const unsigned int w = (unsigned int)(idx % cp.width);
        const unsigned int h = (unsigned int)((idx / cp.width) % cp.height);
        const unsigned int c = (unsigned int)((idx / ((size_t)cp.width * cp.height)) % cp.channels);
        const size_t b = idx / ((size_t)cp.width * cp.height * cp.channels);
        T acc = T(0);
        for (unsigned int i = 0; i < cp.kh; ++i) {
            const int py = nrpm_conv_target(h, i, cp.stride_h, cp.dil_h, cp.pad_h, cp.out_h);
            if (py < 0) continue;
            for (unsigned int j = 0; j < cp.kw; ++j) {
                const int px = nrpm_conv_target(w, j, cp.stride_w, cp.dil_w, cp.pad_w, cp.out_w);
                if (px < 0) continue;
                const size_t row = b * l_len + (size_t)py * cp.out_w + px;
                acc += cols[row * d_len + (c * cp.kh + i) * cp.kw + j];
            }
        }
        x[idx] = acc;
    }
}

extern "C" __global__ void nrpm_unfold_f32(const float* x, float* cols, const ConvParams cp) {
    nrpm_unfold<float>(x, cols, cp);
}
extern "C" __global__ void nrpm_unfold_f64(const double* x, double* cols, const ConvParams cp) {
    nrpm_unfold<double>(x, cols, cp);
}
extern "C" __global__ void nrpm_fold_f32(const float* cols, float* x, const ConvParams cp) {
    nrpm_fold<float>(cols, x, cp);
}
extern "C" __global__ void nrpm_fold_f64(const double* cols, double* x, const ConvParams cp) {
    nrpm_fold<double>(cols, x, cp);
}
