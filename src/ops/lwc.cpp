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

}  // namespace saliq
