#include "saliq/lwc.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace saliq {
namespace {

// fp64 stays fp64 (gradient checks), everything else computes in fp32.
at::Tensor float_or_double(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? t : t.to(at::kFloat); }

}  // namespace

LwcParams make_lwc_params(const at::Tensor& weight, const QuantSpec& spec) {
    const int64_t G = spec.n_groups(weight.size(1));
    const auto options = weight.options().dtype(weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
    return {at::full({weight.size(0), G}, kLwcInit, options), at::full({weight.size(0), G}, kLwcInit, options)};
}

at::Tensor round_ste(const at::Tensor& x) { return x + (at::round(x) - x).detach(); }

void lwc_scale_zero(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec, at::Tensor& scale,
                    at::Tensor& zero) {
    at::Tensor gmax, gmin;
    group_max_min(float_or_double(weight.detach()), spec, gmax, gmin);
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
    const at::Tensor g_idx = natural_group_index(weight.size(1), spec).to(weight.device());
    const at::Tensor s = expand_groups(scale, g_idx), z = expand_groups(zero, g_idx);
    const at::Tensor q = at::clamp(round_ste(float_or_double(weight) / s) + z, 0.0, static_cast<double>(spec.maxq()));
    return (q - z) * s;
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
