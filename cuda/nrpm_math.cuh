// cuda/nrpm_math.cuh: the per-term maths of the NRPM kernels (weights, derivatives, one IRLS
// step, its adjoint), as __host__ __device__ inline functions.
//
// The same header is compiled three ways:
// - by NVRTC at run time, prepended to cuda/nrpm.cu and cuda/nrpm_conv.cu (src/nrpm/cuda.rs);
// - by NVRTC for compute_90 in the CI compile check (tests/cuda_compile.rs);
// - by the system C++ compiler in a host harness (tests/kernel_math.rs, tests/kernel_math/),
//   which runs the kernels' decomposition on the CPU and compares it with src/nrpm/reference.rs.
//
// Formulas (src/nrpm/norm.rs, `WeightFn`), r = |u| ≥ 0 the residual, u = t − zᵏ/Dg:
//   lpm    w = 1
//   l1     w = 1/(r+ε)
//   huber  w = min(p/(r+ε), 1)            p = δ
//   mcp    w = max(1/(r+ε) − p, ε)        p = 1/γ
//   hm     w = clamp(p/(r+ε) − q, ε, 1)   p = cγ, q = c, c = δ/(γ−δ)
// The derivative dw/dr is 0 where a clamp is active (autograd through the authors' masked
// assignments), and sign(0) = 0 (autograd's d|u|/du at 0).
//
// Every operation is written in the order of the CPU code (src/nrpm/kernels.rs, fused.rs), and
// the kernels are compiled without fast-math and without FMA contraction, so a term's value
// is the same bits as on the CPU; only the summation order over d differs.

#ifndef NRPM_MATH_CUH
#define NRPM_MATH_CUH

#ifndef __CUDACC__
#include <math.h> // fabsf, fabs (the GPU has them built in)
#define __host__
#define __device__
#define __forceinline__ inline
#endif

#define NRPM_HD __host__ __device__ __forceinline__

// Twin of `NrpmParams` in src/nrpm/cuda.rs: same fields, order and types; 64 bytes.
struct NrpmParams {
    unsigned int batch;       // B: rows of x (B·L for a convolution)
    unsigned int outputs;     // O: rows of weight
    unsigned int terms;       // D: columns of x and weight
    unsigned int groups;      // N: equal chunks of the D terms
    unsigned int group_terms; // Dg = D/N
    unsigned int steps;       // K actually run (0 when the output is the LPM sum)
    unsigned int norm;        // NRPM_NORM_*
    unsigned int has_bias;    // 1 when `bias` holds O values
    double eps;               // ε
    double p;                 // first constant of the weight (WeightFn::p)
    double q;                 // second constant of the weight (WeightFn::q)
    double lambda;            // λ
};

enum {
    NRPM_NORM_LPM = 0,
    NRPM_NORM_L1 = 1,
    NRPM_NORM_HUBER = 2,
    NRPM_NORM_MCP = 3,
    NRPM_NORM_HM = 4
};

// A weight's constants in precision T (rounded from the f64 parameters, as `T::of` does).
template <typename T>
struct NrpmWeight {
    T eps;
    T p;
    T q;
};

template <typename T>
NRPM_HD NrpmWeight<T> nrpm_weight_fn(const NrpmParams& prm) {
    NrpmWeight<T> f;
    f.eps = (T)prm.eps;
    f.p = (T)prm.p;
    f.q = (T)prm.q;
    return f;
}

// |u|, as Rust's abs (clears the sign bit; one instruction modifier on the GPU).
NRPM_HD float nrpm_abs(float u) {
    return fabsf(u);
}
NRPM_HD double nrpm_abs(double u) {
    return fabs(u);
}

// sign(u) with sign(0) = 0.
template <typename T>
NRPM_HD T nrpm_sign(T u) {
    return u > T(0) ? T(1) : (u < T(0) ? T(-1) : T(0));
}

// w(r), r ≥ 0. KIND is a compile-time NRPM_NORM_*.
template <int KIND, typename T>
NRPM_HD T nrpm_weight(const NrpmWeight<T>& f, T r) {
    const T one = T(1);
    const T inv = one / (r + f.eps);
    if (KIND == NRPM_NORM_LPM) {
        return one;
    } else if (KIND == NRPM_NORM_L1) {
        return inv;
    } else if (KIND == NRPM_NORM_HUBER) {
        const T v = f.p * inv;
        return v > one ? one : v;
    } else if (KIND == NRPM_NORM_MCP) {
        const T v = inv - f.p;
        return v < f.eps ? f.eps : v;
    } else {
        T v = f.p * inv - f.q;
        if (v > one) v = one;
        if (v < f.eps) v = f.eps;
        return v;
    }
}

// (w(r), dw/dr), r ≥ 0; dw/dr = 0 where a clamp is active.
template <int KIND, typename T>
NRPM_HD void nrpm_weight_and_derivative(const NrpmWeight<T>& f, T r, T& w, T& dw) {
    const T one = T(1);
    const T zero = T(0);
    const T inv = one / (r + f.eps);
    if (KIND == NRPM_NORM_LPM) {
        w = one;
        dw = zero;
    } else if (KIND == NRPM_NORM_L1) {
        w = inv;
        dw = -inv * inv;
    } else if (KIND == NRPM_NORM_HUBER) {
        const T v = f.p * inv;
        if (v > one) {
            w = one;
            dw = zero;
        } else {
            w = v;
            dw = -v * inv;
        }
    } else if (KIND == NRPM_NORM_MCP) {
        const T v = inv - f.p;
        if (v < f.eps) {
            w = f.eps;
            dw = zero;
        } else {
            w = v;
            dw = -inv * inv;
        }
    } else {
        T v = f.p * inv - f.q;
        T d = -f.p * inv * inv;
        if (v > one) {
            v = one;
            d = zero;
        }
        if (v < f.eps) {
            v = f.eps;
            d = zero;
        }
        w = v;
        dw = d;
    }
}

// One IRLS step, one term t = x·a, with zd = zᵏ/Dg: s0 += w, s1 += w·t.
template <int KIND, typename T>
NRPM_HD void nrpm_step_term(const NrpmWeight<T>& f, T t, T zd, T& s0, T& s1) {
    const T w = nrpm_weight<KIND>(f, nrpm_abs(t - zd));
    s0 += w;
    s1 += w * t;
}

// zᵏ⁺¹ = Dg·Σ w·t / Σ w.
template <typename T>
NRPM_HD T nrpm_step_finish(T s0, T s1, T dg) {
    return dg * s1 / s0;
}

// Adjoint sums of step k, one term: with u = t − zd_k, g = w'(|u|)·sign(u),
// s += w, q += (t − zd_{k+1})·g.
template <int KIND, typename T>
NRPM_HD void nrpm_adjoint_term(const NrpmWeight<T>& f, T t, T zd, T zd_next, T& s, T& q) {
    const T u = t - zd;
    T w, dw;
    nrpm_weight_and_derivative<KIND>(f, nrpm_abs(u), w, dw);
    const T g = dw * nrpm_sign(u);
    s += w;
    q += (t - zd_next) * g;
}

// The scalar adjoint recursion of one output and group, from the sums sq[2k] = Sᵏ = Σ_d w_dᵏ,
// sq[2k+1] = Qᵏ = Σ_d (t_d − zᵏ⁺¹/Dg)·g_dᵏ (k < K):
//   z̄ᴷ = (1 − λ)·ȳ;  cᵏ = z̄ᵏ⁺¹·Dg/Sᵏ;  z̄ᵏ = −cᵏ·Qᵏ/Dg;  z̄⁰_total = z̄⁰ + λ·ȳ
// (K = 0: the output is the LPM sum and z̄⁰_total = ȳ). Writes cᵏ to rec[2k+1] and z̄⁰_total
// to rec[2K+1]; rec[2j] (zʲ/Dg) is the caller's.
template <typename T>
NRPM_HD void nrpm_adjoint_coefs(unsigned int steps, const T* sq, T gy, T lambda, T dg, T* rec) {
    if (steps == 0) {
        rec[1] = gy;
        return;
    }
    T z_bar = (T(1) - lambda) * gy;
    for (unsigned int i = steps; i > 0; --i) {
        const unsigned int k = i - 1;
        const T c = z_bar * dg / sq[2 * k];
        rec[2 * k + 1] = c;
        z_bar = -c * sq[2 * k + 1] / dg;
    }
    rec[2 * steps + 1] = z_bar + lambda * gy;
}

// The adjoint t̄ of one term t = x·a of one output, from its record
// rec = [zd_0, c_0, zd_1, c_1, …, zd_K, z̄⁰_total] (zd_k = zᵏ/Dg):
//   t̄ = Σ_k cᵏ·(w_k + (t − zd_{k+1})·w'_k·sign(t − zd_k)) + z̄⁰_total.
template <int KIND, typename T>
NRPM_HD T nrpm_term_adjoint(const NrpmWeight<T>& f, T t, const T* rec, unsigned int steps) {
    T tb = T(0);
    for (unsigned int k = 0; k < steps; ++k) {
        const T u = t - rec[2 * k];
        T w, dw;
        nrpm_weight_and_derivative<KIND>(f, nrpm_abs(u), w, dw);
        const T g = dw * nrpm_sign(u);
        const T v = (t - rec[2 * k + 2]) * g;
        tb += rec[2 * k + 1] * (w + v);
    }
    return tb + rec[2 * steps + 1];
}

// y = λ·Σ_g z⁰_g + (1 − λ)·Σ_g zᴷ_g + bias for one output, from its iterates
// z[g·(K+1) + k] (K = 0: y = Σ_g z⁰_g + bias), in the order of `mix_output` (src/nrpm/mod.rs).
template <typename T>
NRPM_HD T nrpm_mix(const T* z, unsigned int groups, unsigned int steps, T lambda, T bias) {
    T lpm = T(0);
    T last = T(0);
    for (unsigned int g = 0; g < groups; ++g) {
        lpm += z[g * (steps + 1)];
        last += z[g * (steps + 1) + steps];
    }
    const T y = steps == 0 ? lpm : lpm * lambda + last * (T(1) - lambda);
    return y + bias;
}

// Convolution geometry (src/nrpm/conv.rs, `Conv2dGeometry`); twin of `ConvParams` in
// src/nrpm/cuda.rs; 64 bytes.
struct ConvParams {
    unsigned int batch;    // B
    unsigned int channels; // C
    unsigned int height;   // H
    unsigned int width;    // W
    unsigned int kh;       // kernel height
    unsigned int kw;       // kernel width
    unsigned int out_h;    // Ho
    unsigned int out_w;    // Wo
    unsigned int stride_h;
    unsigned int stride_w;
    unsigned int pad_h;
    unsigned int pad_w;
    unsigned int dil_h;
    unsigned int dil_w;
    unsigned int reserved0;
    unsigned int reserved1;
};

// Input coordinate of tap i at output position p along one axis, or −1 in the padding.
NRPM_HD int nrpm_conv_source(unsigned int p, unsigned int i, unsigned int stride,
                             unsigned int dil, unsigned int pad, unsigned int size) {
    const long long pos = (long long)p * stride + (long long)i * dil - (long long)pad;
    return (pos >= 0 && pos < (long long)size) ? (int)pos : -1;
}

// The output position p whose tap i reads input coordinate s along one axis, or −1 if none
// (the inverse of nrpm_conv_source, for the gather form of fold).
NRPM_HD int nrpm_conv_target(unsigned int s, unsigned int i, unsigned int stride,
                             unsigned int dil, unsigned int pad, unsigned int out) {
    const long long num = (long long)s + (long long)pad - (long long)i * dil;
    if (num < 0 || num % stride != 0) return -1;
    const long long p = num / stride;
    return p < (long long)out ? (int)p : -1;
}

#endif // NRPM_MATH_CUH
