#include "saliq/lwc.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

// fp64 stays fp64 (gradient checks), everything else computes in fp32.
at::Tensor float_or_double(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? t : t.to(at::kFloat); }

// Round half to even for |x| < 2^(mantissa bits - 1), as std::nearbyint in the default rounding mode, in plain
// arithmetic the compiler vectorizes (nearbyint is a library call without SSE4.1).
template <typename T> constexpr T kRoundMagic = T(12582912.0);  // 1.5 * 2^23
template <> constexpr double kRoundMagic<double> = 6755399441055744.0;  // 1.5 * 2^52

// round(u) + z, the code before clamping to [0, maxq]. |u| past 2^22 clamps to the same code either way; below it
// the magic-number rounding is exact.
template <typename T>
inline __attribute__((always_inline)) T unclamped_code(T u, T z) {
    const T limit = T(4194304.0);
    return ((std::min(std::max(u, -limit), limit) + kRoundMagic<T>) - kRoundMagic<T>) + z;
}

// The fake-quantized grid over rows [r0, r1), one pass: out = (clamp(round(w / s) + z, 0, maxq) - z) * s, s and z
// per (row, group of `group` columns). Bit for bit what the element-wise ATen ops compute (round_ste's
// x + (round(x) - x) is exact), so the division stays a division.
template <typename T>
inline __attribute__((always_inline)) void grid_forward_rows(const T* w, const T* scale, const T* zero, T* out,
                                                             int64_t r0, int64_t r1, int64_t cols, int64_t G,
                                                             int64_t group, T maxq) {
    for (int64_t r = r0; r < r1; ++r) {
        for (int64_t g = 0; g < G; ++g) {
            const T s = scale[r * G + g], z = zero[r * G + g];
            const int64_t c0 = g * group, c1 = std::min(cols, c0 + group);
            const T* wr = w + r * cols;
            T* o = out + r * cols;
            for (int64_t c = c0; c < c1; ++c)
                o[c] = (std::min(std::max(unclamped_code(wr[c] / s, z), T(0)), maxq) - z) * s;
        }
    }
}

// d out / d s summed over each group: (clamped code - z) minus w / s where the code was inside [0, maxq] (the clamp
// passes the straight-through gradient of round there, inclusive of the bounds as at::clamp's backward).
template <typename T>
inline __attribute__((always_inline)) void grid_backward_rows(const T* grad, const T* w, const T* scale,
                                                              const T* zero, T* grad_scale, int64_t r0, int64_t r1,
                                                              int64_t cols, int64_t G, int64_t group, T maxq) {
    for (int64_t r = r0; r < r1; ++r) {
        for (int64_t g = 0; g < G; ++g) {
            const T s = scale[r * G + g], z = zero[r * G + g];
            const int64_t c0 = g * group, c1 = std::min(cols, c0 + group);
            const T* wr = w + r * cols;
            const T* gr = grad + r * cols;
            T acc = 0;
            for (int64_t c = c0; c < c1; ++c) {
                const T u = wr[c] / s;
                const T v = unclamped_code(u, z);
                const T inside = (v >= T(0) && v <= maxq) ? u : T(0);
                acc += gr[c] * ((std::min(std::max(v, T(0)), maxq) - z) - inside);
            }
            grad_scale[r * G + g] = acc;
        }
    }
}

// Compiled for AVX-512, AVX2 and plain x86-64, picked at load time (the build targets no particular CPU).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SALIQ_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SALIQ_CPU_CLONES
#endif

SALIQ_CPU_CLONES void grid_forward_f32(const float* w, const float* s, const float* z, float* o, int64_t r0,
                                       int64_t r1, int64_t cols, int64_t G, int64_t group, float maxq) {
    grid_forward_rows<float>(w, s, z, o, r0, r1, cols, G, group, maxq);
}
SALIQ_CPU_CLONES void grid_backward_f32(const float* g, const float* w, const float* s, const float* z, float* gs,
                                        int64_t r0, int64_t r1, int64_t cols, int64_t G, int64_t group, float maxq) {
    grid_backward_rows<float>(g, w, s, z, gs, r0, r1, cols, G, group, maxq);
}
void grid_forward_f64(const double* w, const double* s, const double* z, double* o, int64_t r0, int64_t r1,
                      int64_t cols, int64_t G, int64_t group, double maxq) {
    grid_forward_rows<double>(w, s, z, o, r0, r1, cols, G, group, maxq);
}
void grid_backward_f64(const double* g, const double* w, const double* s, const double* z, double* gs, int64_t r0,
                       int64_t r1, int64_t cols, int64_t G, int64_t group, double maxq) {
    grid_backward_rows<double>(g, w, s, z, gs, r0, r1, cols, G, group, maxq);
}

// The grid as one autograd node: gradient to the scale only (the zero point is detached, the weight frozen).
struct FakeQuantGrid : public torch::autograd::Function<FakeQuantGrid> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& weight, const at::Tensor& scale,
                              const at::Tensor& zero, int64_t group, double maxq) {
        const at::Tensor w = weight.contiguous(), s = scale.contiguous(), z = zero.contiguous();
        ctx->save_for_backward({w, s, z});
        ctx->saved_data["group"] = group;
        ctx->saved_data["maxq"] = maxq;
        at::Tensor out = at::empty_like(w);
        const int64_t cols = w.size(1), G = s.size(1);
        at::parallel_for(0, w.size(0), 1, [&](int64_t r0, int64_t r1) {
            if (w.scalar_type() == at::kDouble)
                grid_forward_f64(w.data_ptr<double>(), s.data_ptr<double>(), z.data_ptr<double>(),
                                 out.data_ptr<double>(), r0, r1, cols, G, group, maxq);
            else
                grid_forward_f32(w.data_ptr<float>(), s.data_ptr<float>(), z.data_ptr<float>(), out.data_ptr<float>(),
                                 r0, r1, cols, G, group, static_cast<float>(maxq));
        });
        return out;
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &w = saved[0], &s = saved[1], &z = saved[2];
        const int64_t group = ctx->saved_data["group"].toInt();
        const double maxq = ctx->saved_data["maxq"].toDouble();
        const at::Tensor grad = grads[0].to(w.scalar_type()).contiguous();
        at::Tensor grad_scale = at::empty_like(s);
        const int64_t cols = w.size(1), G = s.size(1);
        at::parallel_for(0, w.size(0), 1, [&](int64_t r0, int64_t r1) {
            if (w.scalar_type() == at::kDouble)
                grid_backward_f64(grad.data_ptr<double>(), w.data_ptr<double>(), s.data_ptr<double>(),
                                  z.data_ptr<double>(), grad_scale.data_ptr<double>(), r0, r1, cols, G, group, maxq);
            else
                grid_backward_f32(grad.data_ptr<float>(), w.data_ptr<float>(), s.data_ptr<float>(),
                                  z.data_ptr<float>(), grad_scale.data_ptr<float>(), r0, r1, cols, G, group,
                                  static_cast<float>(maxq));
        });
        return {at::Tensor(), grad_scale, at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

// The same grid in element-wise ATen ops: devices without the fused kernel, and a weight that itself trains.
at::Tensor grid_composite(const at::Tensor& weight, const at::Tensor& scale, const at::Tensor& zero,
                          const QuantSpec& spec) {
    const at::Tensor g_idx = natural_group_index(weight.size(1), spec).to(weight.device());
    const at::Tensor s = expand_groups(scale, g_idx), z = expand_groups(zero, g_idx);
    const at::Tensor q = at::clamp(round_ste(float_or_double(weight) / s) + z, 0.0, static_cast<double>(spec.maxq()));
    return (q - z) * s;
}

}  // namespace

at::Tensor fake_quant_grid(const at::Tensor& weight, const at::Tensor& scale, const at::Tensor& zero,
                           const QuantSpec& spec) {
    const at::Tensor w = float_or_double(weight);
    if (!w.device().is_cpu() || w.requires_grad() || zero.requires_grad())
        return grid_composite(w, scale, zero, spec);  // (float_or_double: only fp32 and fp64 reach the kernel)
    return FakeQuantGrid::apply(w, scale.to(w.scalar_type()), zero.to(w.scalar_type()),
                                spec.effective_group(w.size(1)), static_cast<double>(spec.maxq()));
}

at::Tensor fake_quant_grid_reference(const at::Tensor& weight, const at::Tensor& scale, const at::Tensor& zero,
                                     const QuantSpec& spec) {
    return grid_composite(weight, scale, zero, spec);
}

LwcParams make_lwc_params(const at::Tensor& weight, const QuantSpec& spec) {
    const int64_t G = spec.n_groups(weight.size(1));
    const auto options = weight.options().dtype(weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
    return {at::full({weight.size(0), G}, kLwcInit, options), at::full({weight.size(0), G}, kLwcInit, options)};
}

LwcParams lwc_search_params(const at::Tensor& weight, const at::Tensor& gmax, const at::Tensor& gmin,
                            const QuantSpec& spec, const at::Tensor& importance) {
    c10::NoGradGuard no_grad;
    const at::Tensor w = float_or_double(weight.detach());
    const int64_t out = w.size(0), in = w.size(1), G = spec.n_groups(in);
    if (importance.defined() && (importance.dim() != 1 || importance.size(0) != in))
        throw Error(strprintf("internal: clipping search importance has %lld entries for %lld columns",
                              (long long)importance.numel(), (long long)in));
    const at::Tensor d = importance.defined() ? importance.to(w.options()).clamp_min(0.0).unsqueeze(0) : at::Tensor();
    const at::Tensor g_idx = natural_group_index(in, spec).to(w.device());
    std::vector<double> logits = {kLwcInit};  // the min-max start first: a tie keeps it
    for (int k = 1; k <= 10; ++k) {
        const double f = 1.0 - 0.05 * k;
        logits.push_back(std::log(f / (1.0 - f)));
    }
    const auto opts = w.options();
    at::Tensor best_err = at::full({out, G}, std::numeric_limits<double>::infinity(), opts);
    LwcParams best{at::full({out, G}, kLwcInit, opts), at::full({out, G}, kLwcInit, opts)};
    for (double up : logits) {
        for (double low : logits) {
            const LwcParams p{at::full({out, G}, up, opts), at::full({out, G}, low, opts)};
            const at::Tensor e = (w - lwc_fake_quant_of_range(w, gmax, gmin, p, spec)).square_();
            const at::Tensor err = at::zeros({out, G}, opts).index_add_(1, g_idx, d.defined() ? e.mul_(d) : e);
            const at::Tensor better = err < best_err;
            best_err = at::where(better, err, best_err);
            best.up = at::where(better, p.up, best.up);
            best.low = at::where(better, p.low, best.low);
        }
    }
    const auto logit_options = weight.options().dtype(weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
    return {best.up.to(logit_options), best.low.to(logit_options)};
}

at::Tensor round_ste(const at::Tensor& x) { return x + (at::round(x) - x).detach(); }

void lwc_scale_zero(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec, at::Tensor& scale,
                    at::Tensor& zero) {
    at::Tensor gmax, gmin;
    group_max_min(float_or_double(weight.detach()), spec, gmax, gmin);
    lwc_scale_zero_of_range(gmax, gmin, params, spec, scale, zero);
}

void lwc_scale_zero_of_range(const at::Tensor& gmax, const at::Tensor& gmin, const LwcParams& params,
                             const QuantSpec& spec, at::Tensor& scale, at::Tensor& zero) {
    const at::Tensor xmax = at::sigmoid(params.up) * gmax;
    const at::Tensor xmin = at::sigmoid(params.low) * gmin;
    const double maxq = static_cast<double>(spec.maxq());
    if (spec.symmetric) {
        const double half = static_cast<double>((int64_t{1} << (spec.bits - 1)) - 1);
        scale = at::clamp(at::maximum(xmax.abs(), xmin.abs()) / half, 1e-5, 1e4);
        zero = at::full_like(scale, half).detach();
    } else {
        scale = at::clamp((xmax - xmin) / maxq, 1e-5, 1e4);
        zero = at::clamp(at::round(-xmin / scale), 0.0, maxq).detach();
    }
}

at::Tensor lwc_fake_quant(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec) {
    at::Tensor scale, zero;
    lwc_scale_zero(weight, params, spec, scale, zero);
    return fake_quant_grid(weight, scale, zero, spec);
}

at::Tensor lwc_fake_quant_of_range(const at::Tensor& weight, const at::Tensor& gmax, const at::Tensor& gmin,
                                   const LwcParams& params, const QuantSpec& spec) {
    at::Tensor scale, zero;
    lwc_scale_zero_of_range(gmax, gmin, params, spec, scale, zero);
    return fake_quant_grid(weight, scale, zero, spec);
}

QuantizedTensor lwc_finalize(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec) {
    c10::NoGradGuard no_grad;
    at::Tensor scale, zero;
    lwc_scale_zero(weight, params, spec, scale, zero);
    scale = scale.to(at::kHalf).to(at::kFloat);
    if (!spec.symmetric) {
        // Recompute the zero point with the stored (fp16) scale so the packed grid is exactly the one we evaluate.
        at::Tensor gmax, gmin;
        group_max_min(weight.to(at::kFloat), spec, gmax, gmin);
        const at::Tensor xmin = at::sigmoid(params.low) * gmin;
        zero = at::clamp(at::round(-xmin / scale), 0.0, static_cast<double>(spec.maxq()));
    }
    return make_quantized(weight, scale, zero, natural_group_index(weight.size(1), spec), spec);
}

namespace {

// Per-group pieces of a mixed grid, [out, G] each: the clipped scale and zero of every group at its width, the
// 1-bit groups' binary scale and mean, and each group's maxq ([1, G]).
struct MixedGrid {
    at::Tensor scale, zero, binary_scale, mean, maxq;
};

MixedGrid mixed_grid(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec,
                     const at::Tensor& group_bits) {
    const at::Tensor w = float_or_double(weight.detach());
    const int64_t in = w.size(1), G = spec.n_groups(in);
    const at::Tensor g_idx = natural_group_index(in, spec).to(w.device());
    MixedGrid m;
    at::Tensor gmax, gmin;
    group_max_min(w, spec, gmax, gmin);
    m.maxq = (at::pow(2.0, group_bits.to(w.device()).to(w.scalar_type())) - 1.0).unsqueeze(0);
    const at::Tensor xmax = at::sigmoid(params.up) * gmax, xmin = at::sigmoid(params.low) * gmin;
    m.scale = at::clamp((xmax - xmin) / m.maxq, 1e-5, 1e4);
    m.zero = at::minimum(at::clamp_min(at::round(-xmin / m.scale), 0.0), m.maxq).detach();
    const at::Tensor count = at::bincount(g_idx, {}, G).to(w.scalar_type()).unsqueeze(0);
    m.mean = at::zeros({w.size(0), G}, w.options()).index_add_(1, g_idx, w) / count;
    const at::Tensor mean_abs = at::zeros({w.size(0), G}, w.options()).index_add_(1, g_idx, w.abs()) / count;
    m.binary_scale = at::clamp_min(mean_abs * (at::sigmoid(params.up) + 0.5), 1e-5);
    return m;
}

}  // namespace

LwcParams make_mixed_lwc_params(const at::Tensor& weight, const QuantSpec& spec, const at::Tensor& group_bits) {
    LwcParams p = make_lwc_params(weight, spec);
    const at::Tensor one = (group_bits == 1).to(p.up.device()).unsqueeze(0).expand_as(p.up);
    p.up = at::where(one, at::zeros_like(p.up), p.up);
    return p;
}

at::Tensor lwc_fake_quant_mixed(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec,
                                const at::Tensor& group_bits) {
    const MixedGrid m = mixed_grid(weight, params, spec, group_bits);
    const at::Tensor w = float_or_double(weight);
    const at::Tensor g_idx = natural_group_index(w.size(1), spec).to(w.device());
    const at::Tensor s = expand_groups(m.scale, g_idx), z = expand_groups(m.zero, g_idx);
    const at::Tensor maxq = m.maxq.index_select(1, g_idx);
    const at::Tensor uniform = (at::minimum(at::clamp_min(round_ste(w / s) + z, 0.0), maxq) - z) * s;
    const at::Tensor mean = expand_groups(m.mean, g_idx);
    const at::Tensor binary = at::sign(w - mean).detach() * expand_groups(m.binary_scale, g_idx) + mean;
    const at::Tensor one = (group_bits.to(w.device()) == 1).index_select(0, g_idx).unsqueeze(0);
    return at::where(one, binary, uniform);
}

QuantizedTensor lwc_finalize_mixed(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec,
                                   const at::Tensor& group_bits) {
    c10::NoGradGuard no_grad;
    const at::Tensor w = weight.to(at::kFloat);
    const MixedGrid m = mixed_grid(w, params, spec, group_bits);
    const at::Tensor one = (group_bits.to(w.device()) == 1).unsqueeze(0).expand_as(m.scale);
    at::Tensor scale = m.scale.to(at::kHalf).to(at::kFloat);
    at::Tensor gmax, gmin;
    group_max_min(w, spec, gmax, gmin);
    // The zero point recomputed with the stored (fp16) scale, as lwc_finalize does.
    at::Tensor zero = at::minimum(at::clamp_min(at::round(-(at::sigmoid(params.low) * gmin) / scale), 0.0), m.maxq);
    const at::Tensor binary_scale = (2.0 * m.binary_scale).to(at::kHalf).to(at::kFloat);
    const at::Tensor binary_zero = (0.5 - m.mean / binary_scale).to(at::kHalf).to(at::kFloat);
    scale = at::where(one, binary_scale, scale);
    zero = at::where(one, binary_zero, zero);
    QuantizedTensor q;
    q.spec = spec;
    q.scales = scale.contiguous();
    q.zeros = zero.contiguous();
    q.g_idx = natural_group_index(w.size(1), spec).to(w.device());
    q.group_bits = group_bits.to(at::kLong).to(w.device());
    const at::Tensor maxq = m.maxq.index_select(1, q.g_idx);
    q.codes = at::minimum(at::clamp_min(at::round(w / expand_groups(scale, q.g_idx) + expand_groups(zero, q.g_idx)),
                                        0.0),
                          maxq)
                  .to(at::kByte);
    return q;
}

}  // namespace saliq
