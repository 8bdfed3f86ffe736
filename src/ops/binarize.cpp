// DB-LLM's flexible dual binarization and BinaryMoS's mixture of scales (apiq_saliency.md d.5).
#include "saliq/binarize.h"

#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "saliq/error.h"
#include "saliq/quantizer.h"

namespace saliq {
namespace {

at::Tensor float_or_double(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? t : t.to(at::kFloat); }

QuantSpec group_spec(int64_t group_size) {
    QuantSpec spec;
    spec.group_size = group_size;
    return spec;
}

}  // namespace

const QuantizerTraits& quantizer_traits(const std::string& kind) {
    // The binarizers' scale learning rates: the best of 1e-5 ... 1e-1 on stories260K (W2 g32, 32 x 512 windows,
    // 5 epochs, seed 0).
    static const QuantizerTraits rows[] = {
        {"uniform", QuantizerFamily::kUniform, false, 0, "", false, false, 0.0, {}},
        {"db-llm", QuantizerFamily::kDualBinary, true, 2, "stores two binary planes per weight", true, false, 1e-3,
         {".qweight", ".alpha1", ".alpha2", ".g_idx"}},
        {"binarymos", QuantizerFamily::kMixtureOfScales, true, 1, "stores one sign bit per weight", false, true, 1e-2,
         {".qweight", ".router", ".scale_in", ".scale_out"}},
    };
    for (const auto& r : rows)
        if (kind == r.name) return r;
    throw ConfigError("--quantizer must be uniform, db-llm or binarymos, not '" + kind + "'");
}

at::Tensor BinaryWeight::dequantize() const {
    switch (quantizer_traits(kind).family) {
        case QuantizerFamily::kDualBinary: {
            const at::Tensor c = codes.to(at::kLong);
            const at::Tensor b1 = at::floor_divide(c, 2).to(at::kFloat), b2 = at::remainder(c, 2).to(at::kFloat);
            return expand_groups(alpha1, g_idx) * b1 + expand_groups(alpha2, g_idx) * b2;
        }
        case QuantizerFamily::kMixtureOfScales: return codes.to(at::kFloat) * 2.0 - 1.0;
        case QuantizerFamily::kUniform: break;
    }
    throw Error("internal: dequantize of a weight that is not binarized");
}

DualBinaryParams init_dual_binary(const at::Tensor& weight, int64_t group_size) {
    c10::NoGradGuard no_grad;
    at::Tensor gmax, gmin;
    group_max_min(float_or_double(weight), group_spec(group_size), gmax, gmin);
    const at::Tensor s = at::maximum(gmax.abs(), gmin.abs()) / 2.0;
    return {(2.0 * s).contiguous(), (-s).contiguous()};
}

at::Tensor dual_binary_codes(const at::Tensor& weight, const DualBinaryParams& p, const at::Tensor& g_idx) {
    c10::NoGradGuard no_grad;
    const at::Tensor w = float_or_double(weight);
    const at::Tensor a1 = expand_groups(p.alpha1.detach(), g_idx), a2 = expand_groups(p.alpha2.detach(), g_idx);
    const at::Tensor b1 = (w - (a1 + a2) / 2.0 >= 0).to(w.scalar_type());
    const at::Tensor b2 = (w - a1 * b1 - a2 / 2.0 <= 0).to(w.scalar_type());
    return (b1 * 2.0 + b2).to(at::kByte);
}

at::Tensor dual_binary_fake_quant(const at::Tensor& weight, const DualBinaryParams& p, const at::Tensor& g_idx) {
    const at::Tensor w = float_or_double(weight);
    const at::Tensor c = dual_binary_codes(w, p, g_idx).to(at::kLong);
    const at::Tensor b1 = at::floor_divide(c, 2).to(w.scalar_type()), b2 = at::remainder(c, 2).to(w.scalar_type());
    const at::Tensor w_hat = expand_groups(p.alpha1, g_idx) * b1 + expand_groups(p.alpha2, g_idx) * b2;
    return w_hat + (w - w.detach());  // identity STE for the weight itself (only matters when W trains)
}

MosParams init_mos(const at::Tensor& weight, int64_t experts) {
    c10::NoGradGuard no_grad;
    if (experts < 1) throw ConfigError("BinaryMoS needs at least one expert");
    const at::Tensor a = float_or_double(weight).abs();
    const int64_t in = a.size(1);
    // Rank-1 SVD of the non-negative |W| by power iteration (its leading singular vectors are positive, and a full
    // SVD of an 11008 x 4096 matrix would cost minutes per linear).
    at::Tensor v = at::full({in}, 1.0 / std::sqrt(static_cast<double>(in)), a.options());
    at::Tensor u;
    double sigma = 0.0;
    for (int it = 0; it < 100; ++it) {  // |W| of a real layer has a wide gap below sigma_1: ~20 rounds suffice
        u = at::mv(a, v);
        u = u / u.norm().clamp_min(1e-30);
        at::Tensor next = at::mv(a.t(), u);
        sigma = next.norm().item<double>();
        next = next / std::max(sigma, 1e-30);
        const double moved = (next - v).norm().item<double>();
        v = next;
        if (moved <= 1e-9) break;
    }
    u = at::mv(a, v) / std::max(sigma, 1e-30);  // consistent with the final v: |W| v = sigma u
    const double root = std::sqrt(sigma);
    MosParams p;
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    p.router = at::empty({experts, in}, a.options()).uniform_(-bound, bound);
    p.scale_in = (root * v.abs()).unsqueeze(0).repeat({experts, 1}).contiguous();
    p.scale_out = (root * u.abs()).unsqueeze(0).repeat({experts, 1}).contiguous();
    return p;
}

at::Tensor sign_ste(const at::Tensor& w) {
    const at::Tensor signs = at::where(w >= 0, at::ones_like(w), -at::ones_like(w));
    const at::Tensor clipped = at::clamp(w, -1.0, 1.0);  // gradient 1 inside (-1, 1), 0 outside
    return clipped + (signs - clipped).detach();
}

at::Tensor mos_forward(const at::Tensor& x, const at::Tensor& signs, const MosParams& p) {
    const auto dtype = x.scalar_type();
    const auto softmax_dtype = dtype == at::kDouble ? at::kDouble : at::kFloat;  // bf16/fp16 logits: softmax in fp32
    const at::Tensor gates = at::softmax(at::linear(x, p.router.to(dtype)).to(softmax_dtype), -1).to(dtype);  // [..., E]
    const at::Tensor s_in = at::matmul(gates, p.scale_in.to(dtype));    // [..., in]
    const at::Tensor s_out = at::matmul(gates, p.scale_out.to(dtype));  // [..., out]
    return at::linear(x * s_in, signs.to(dtype)) * s_out;
}

at::Tensor mos_mean_weight(const at::Tensor& signs, const MosParams& p) {
    return p.scale_out.mean(0).unsqueeze(1) * signs * p.scale_in.mean(0).unsqueeze(0);
}

}  // namespace saliq
