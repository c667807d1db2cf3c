// tests/kernel_math/harness.cpp: the NRPM kernels' arithmetic on the host.
//
// Compiles cuda/nrpm_math.cuh with the system C++ compiler (no CUDA) and runs, per output,
// the same decomposition and the same summation order as the kernels of cuda/nrpm.cu and
// cuda/nrpm_conv.cu: blocked sums over d in chunks of 32, the adjoint records, x̄ and w̄ by
// reductions over o and b in chunks of 32, unfold, and fold in gather form. With IEEE
// arithmetic and no FMA contraction on both sides (-ffp-contract=off here; NVRTC with
// --fmad=false there) its results are the kernels' results bit for bit; tests/kernel_math.rs
// compares them with src/nrpm/reference.rs, tests/cuda_linear.rs with the GPU.
//
// stdin:  "layout"
//      |  "linear <32|64> B D O N K norm eps p q lambda has_bias" x[B·D] w[O·D] bias[O] gy[B·O]
//      |  "conv <32|64> B C H W kh kw Ho Wo sh sw ph pw dh dw" x[B·C·H·W] cols[B·Ho·Wo·C·kh·kw]
// stdout: one line per result: a name, then its values.

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "nrpm_math.cuh"

static const unsigned int CHUNK = 32; // NRPM_CHUNK and NRPM_BWD_CHUNK of cuda/nrpm.cu

template <typename T>
static std::vector<T> read_values(std::size_t n) {
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        double d;
        if (!(std::cin >> d)) {
            std::fprintf(stderr, "harness: expected %zu values\n", n);
            std::exit(2);
        }
        v[i] = (T)d;
    }
    return v;
}

template <typename T>
static void print_values(const char* name, const std::vector<T>& v) {
    std::printf("%s", name);
    for (std::size_t i = 0; i < v.size(); ++i)
        std::printf(sizeof(T) == 4 ? " %.9g" : " %.17g", (double)v[i]);
    std::printf("\n");
}

template <typename T, int KIND>
static void linear(const NrpmParams& prm) {
    const unsigned int B = prm.batch, D = prm.terms, O = prm.outputs;
    const unsigned int N = prm.groups, Dg = prm.group_terms, K = prm.steps;
    const std::vector<T> x = read_values<T>((std::size_t)B * D);
    const std::vector<T> w = read_values<T>((std::size_t)O * D);
    const std::vector<T> bias = read_values<T>(O);
    const std::vector<T> gy = read_values<T>((std::size_t)B * O);
    const NrpmWeight<T> f = nrpm_weight_fn<T>(prm);
    const T dg = (T)Dg;
    const T lambda = (T)prm.lambda;

    // Forward (nrpm_linear_fwd_body): per output and group, z⁰ then K steps.
    std::vector<T> z((std::size_t)B * O * N * (K + 1));
    std::vector<T> y((std::size_t)B * O);
    for (unsigned int b = 0; b < B; ++b)
        for (unsigned int o = 0; o < O; ++o) {
            const T* xr = &x[(std::size_t)b * D];
            const T* wr = &w[(std::size_t)o * D];
            T* zo = &z[((std::size_t)b * O + o) * N * (K + 1)];
            for (unsigned int g = 0; g < N; ++g) {
                T zd = T(0);
                for (unsigned int k = 0; k <= K; ++k) {
                    T s0 = T(0), s1 = T(0);
                    for (unsigned int c0 = 0; c0 < Dg; c0 += CHUNK) {
                        const unsigned int n = Dg - c0 < CHUNK ? Dg - c0 : CHUNK;
                        T p0 = T(0), p1 = T(0);
                        for (unsigned int dd = 0; dd < n; ++dd) {
                            const unsigned int d = g * Dg + c0 + dd;
                            if (k == 0)
                                p0 += xr[d] * wr[d];
                            else
                                nrpm_step_term<KIND>(f, xr[d] * wr[d], zd, p0, p1);
                        }
                        s0 += p0;
                        s1 += p1;
                    }
                    const T zk = k == 0 ? s0 : nrpm_step_finish(s0, s1, dg);
                    zd = zk / dg;
                    zo[g * (K + 1) + k] = zk;
                }
            }
            y[(std::size_t)b * O + o] =
                nrpm_mix(zo, N, K, lambda, prm.has_bias ? bias[o] : T(0));
        }

    // Backward 1 (nrpm_linear_bwd_coef_body): sums Sᵏ, Qᵏ, then the records.
    const std::size_t rstride = 2 * (std::size_t)(K + 1);
    std::vector<T> rec((std::size_t)B * O * N * rstride);
    std::vector<T> sq(2 * (std::size_t)K + 1);
    for (unsigned int b = 0; b < B; ++b)
        for (unsigned int o = 0; o < O; ++o)
            for (unsigned int g = 0; g < N; ++g) {
                const std::size_t out = ((std::size_t)b * O + o) * N + g;
                const T* zo = &z[out * (K + 1)];
                for (unsigned int k = 0; k < K; ++k) {
                    const T zd = zo[k] / dg;
                    const T zn = zo[k + 1] / dg;
                    T s = T(0), q = T(0);
                    for (unsigned int c0 = 0; c0 < Dg; c0 += CHUNK) {
                        const unsigned int n = Dg - c0 < CHUNK ? Dg - c0 : CHUNK;
                        T ps = T(0), pq = T(0);
                        for (unsigned int dd = 0; dd < n; ++dd) {
                            const unsigned int d = g * Dg + c0 + dd;
                            const T t = x[(std::size_t)b * D + d] * w[(std::size_t)o * D + d];
                            nrpm_adjoint_term<KIND>(f, t, zd, zn, ps, pq);
                        }
                        s += ps;
                        q += pq;
                    }
                    sq[2 * k] = s;
                    sq[2 * k + 1] = q;
                }
                T* ro = &rec[out * rstride];
                for (unsigned int k = 0; k <= K; ++k) ro[2 * k] = zo[k] / dg;
                nrpm_adjoint_coefs(K, sq.data(), gy[(std::size_t)b * O + o], lambda, dg, ro);
            }

    // Backward 2 (nrpm_linear_bwd_x_body): x̄[b, d] = Σ_o t̄·w[o, d].
    std::vector<T> gx((std::size_t)B * D);
    for (unsigned int b = 0; b < B; ++b)
        for (unsigned int d = 0; d < D; ++d) {
            const unsigned int g = d / Dg;
            const T xv = x[(std::size_t)b * D + d];
            T acc = T(0);
            for (unsigned int c0 = 0; c0 < O; c0 += CHUNK) {
                const unsigned int n = O - c0 < CHUNK ? O - c0 : CHUNK;
                T part = T(0);
                for (unsigned int oo = 0; oo < n; ++oo) {
                    const unsigned int o = c0 + oo;
                    const T wv = w[(std::size_t)o * D + d];
                    const T* ro = &rec[(((std::size_t)b * O + o) * N + g) * rstride];
                    part += nrpm_term_adjoint<KIND>(f, xv * wv, ro, K) * wv;
                }
                acc += part;
            }
            gx[(std::size_t)b * D + d] = acc;
        }

    // Backward 3 (nrpm_linear_bwd_w_body): w̄[o, d] = Σ_b t̄·x[b, d].
    std::vector<T> gw((std::size_t)O * D);
    for (unsigned int o = 0; o < O; ++o)
        for (unsigned int d = 0; d < D; ++d) {
            const unsigned int g = d / Dg;
            const T wv = w[(std::size_t)o * D + d];
            T acc = T(0);
            for (unsigned int c0 = 0; c0 < B; c0 += CHUNK) {
                const unsigned int n = B - c0 < CHUNK ? B - c0 : CHUNK;
                T part = T(0);
                for (unsigned int bb = 0; bb < n; ++bb) {
                    const unsigned int b = c0 + bb;
                    const T xv = x[(std::size_t)b * D + d];
                    const T* ro = &rec[(((std::size_t)b * O + o) * N + g) * rstride];
                    part += nrpm_term_adjoint<KIND>(f, xv * wv, ro, K) * xv;
                }
                acc += part;
            }
            gw[(std::size_t)o * D + d] = acc;
        }

    print_values("y", y);
    print_values("z", z);
    print_values("gx", gx);
    print_values("gw", gw);
}

template <typename T>
static void conv(const ConvParams& cp) {
    const unsigned int kk = cp.kh * cp.kw;
    const std::size_t d_len = (std::size_t)cp.channels * kk;
    const std::size_t l_len = (std::size_t)cp.out_h * cp.out_w;
    const std::size_t img = (std::size_t)cp.batch * cp.channels * cp.height * cp.width;
    const std::vector<T> x = read_values<T>(img);
    const std::vector<T> cols_in = read_values<T>(cp.batch * l_len * d_len);

    // nrpm_unfold: one value per (row, d).
    std::vector<T> cols(cp.batch * l_len * d_len);
    for (std::size_t idx = 0; idx < cols.size(); ++idx) {
        const unsigned int d = (unsigned int)(idx % d_len);
        const std::size_t row = idx / d_len;
        const unsigned int l = (unsigned int)(row % l_len);
        const unsigned int b = (unsigned int)(row / l_len);
        const unsigned int c = d / kk, i = (d % kk) / cp.kw, j = d % cp.kw;
        const int sy = nrpm_conv_source(l / cp.out_w, i, cp.stride_h, cp.dil_h, cp.pad_h, cp.height);
        const int sx = nrpm_conv_source(l % cp.out_w, j, cp.stride_w, cp.dil_w, cp.pad_w, cp.width);
        cols[idx] = (sy >= 0 && sx >= 0)
                        ? x[(((std::size_t)b * cp.channels + c) * cp.height + sy) * cp.width + sx]
                        : T(0);
    }
    // nrpm_fold: gather per image element.
    std::vector<T> xf(img);
    for (std::size_t idx = 0; idx < img; ++idx) {
        const unsigned int w = (unsigned int)(idx % cp.width);
        const unsigned int h = (unsigned int)((idx / cp.width) % cp.height);
        const unsigned int c = (unsigned int)((idx / ((std::size_t)cp.width * cp.height)) % cp.channels);
        const std::size_t b = idx / ((std::size_t)cp.width * cp.height * cp.channels);
        T acc = T(0);
        for (unsigned int i = 0; i < cp.kh; ++i) {
            const int py = nrpm_conv_target(h, i, cp.stride_h, cp.dil_h, cp.pad_h, cp.out_h);
            if (py < 0) continue;
            for (unsigned int j = 0; j < cp.kw; ++j) {
                const int px = nrpm_conv_target(w, j, cp.stride_w, cp.dil_w, cp.pad_w, cp.out_w);
                if (px < 0) continue;
                const std::size_t row = b * l_len + (std::size_t)py * cp.out_w + px;
                acc += cols_in[row * d_len + (c * cp.kh + i) * cp.kw + j];
            }
        }
        xf[idx] = acc;
    }
    print_values("cols", cols);
    print_values("x", xf);
}

template <typename T>
static void linear_dispatch(const NrpmParams& prm) {
    switch (prm.norm) {
    case NRPM_NORM_LPM: linear<T, NRPM_NORM_LPM>(prm); break;
    case NRPM_NORM_L1: linear<T, NRPM_NORM_L1>(prm); break;
    case NRPM_NORM_HUBER: linear<T, NRPM_NORM_HUBER>(prm); break;
    case NRPM_NORM_MCP: linear<T, NRPM_NORM_MCP>(prm); break;
    default: linear<T, NRPM_NORM_HM>(prm); break;
    }
}

int main() {
    std::string mode;
    std::cin >> mode;
    if (mode == "layout") {
        std::printf("NrpmParams %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n",
                    sizeof(NrpmParams), offsetof(NrpmParams, batch), offsetof(NrpmParams, outputs),
                    offsetof(NrpmParams, terms), offsetof(NrpmParams, groups),
                    offsetof(NrpmParams, group_terms), offsetof(NrpmParams, steps),
                    offsetof(NrpmParams, norm), offsetof(NrpmParams, has_bias),
                    offsetof(NrpmParams, eps), offsetof(NrpmParams, p), offsetof(NrpmParams, q),
                    offsetof(NrpmParams, lambda));
        std::printf("ConvParams %zu %zu %zu\n", sizeof(ConvParams), offsetof(ConvParams, out_h),
                    offsetof(ConvParams, dil_w));
        return 0;
    }
    unsigned int prec = 0;
    std::cin >> prec;
    if (mode == "linear") {
        NrpmParams prm;
        std::cin >> prm.batch >> prm.terms >> prm.outputs >> prm.groups >> prm.steps >> prm.norm >>
            prm.eps >> prm.p >> prm.q >> prm.lambda >> prm.has_bias;
        prm.group_terms = prm.terms / prm.groups;
        if (prec == 32)
            linear_dispatch<float>(prm);
        else
            linear_dispatch<double>(prm);
    } else if (mode == "conv") {
        ConvParams cp = {};
        std::cin >> cp.batch >> cp.channels >> cp.height >> cp.width >> cp.kh >> cp.kw >>
            cp.out_h >> cp.out_w >> cp.stride_h >> cp.stride_w >> cp.pad_h >> cp.pad_w >>
            cp.dil_h >> cp.dil_w;
        if (prec == 32)
            conv<float>(cp);
        else
            conv<double>(cp);
    } else {
        std::fprintf(stderr, "harness: unknown mode '%s'\n", mode.c_str());
        return 2;
    }
    return 0;
}
