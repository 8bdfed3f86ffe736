// LWC on a GGML grid (lwc.h): ggml_grid.cpp's fit_block written in differentiable tensor ops, op for op in fp32, so
// the forward is bit for bit the dequantization of the blocks ggml_quantize_rows writes for the same ranges.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "saliq/error.h"
#include "saliq/ggml_grid.h"
#include "saliq/lwc.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

// Rounded to fp16 as the blocks store it; the gradient passes straight through.
at::Tensor fp16_ste(const at::Tensor& x) { return x + (x.to(at::kHalf).to(at::kFloat) - x).detach(); }

// The value of larger magnitude, hi on a tie (a symmetric type maps it to its most negative code).
at::Tensor signed_extreme(const at::Tensor& hi, const at::Tensor& lo) { return at::where(hi.abs() >= lo.abs(), hi, lo); }

// x / c as a true division on every device (CUDA turns division by a host scalar into a product with its
// reciprocal, which can round differently from the codec's division).
at::Tensor div(const at::Tensor& x, double c) { return x / at::full({}, c, x.options()); }

// x / d where d is not zero, else 0: a sub-block scale of a block whose scale is zero.
at::Tensor ratio_or_zero(const at::Tensor& x, const at::Tensor& d) {
    const at::Tensor nonzero = d != 0;
    return at::where(nonzero, x / at::where(nonzero, d, at::ones_like(d)), at::zeros_like(x));
}

// Per sub-block scale s and offset o [out, S] of the clipped ranges hi, lo [out, S], as fit_block and
// group_scale_offset compute them.
void fit_scales(const at::Tensor& hi, const at::Tensor& lo, const GgmlGridTraits& t, at::Tensor& s, at::Tensor& o) {
    const int64_t out = hi.size(0), S = hi.size(1), subs = t.block / t.sub_block;
    switch (t.grid) {
        case GgmlGrid::kQ4_0:
        case GgmlGrid::kQ5_0:
        case GgmlGrid::kQ8_0: {
            const at::Tensor d = t.grid == GgmlGrid::kQ8_0 ? fp16_ste(div(at::maximum(hi.abs(), lo.abs()), 127.0))
                                                           : fp16_ste(div(signed_extreme(hi, lo), -static_cast<double>(t.zero)));
            s = d;
            o = d * -static_cast<double>(t.zero);
            return;
        }
        case GgmlGrid::kQ4_1:
            o = fp16_ste(lo);
            s = fp16_ste(div(hi - lo, 15.0));
            return;
        case GgmlGrid::kQ2_K:
        case GgmlGrid::kQ4_K: {
            const double nmax = static_cast<double>((1 << t.bits) - 1);
            const double levels = t.grid == GgmlGrid::kQ2_K ? 15.0 : 63.0;
            const at::Tensor l = at::clamp_max(lo, 0.0);
            const at::Tensor h = at::maximum(hi, l);
            const at::Tensor scale = div(h - l, nmax).view({out, S / subs, subs});
            const at::Tensor mins = (-l).view({out, S / subs, subs});
            const at::Tensor d = fp16_ste(div(std::get<0>(scale.max(-1, true)), levels));
            const at::Tensor dmin = fp16_ste(div(std::get<0>(mins.max(-1, true)), levels));
            const at::Tensor sc = at::clamp(round_ste(ratio_or_zero(scale, d)), 0.0, levels);
            const at::Tensor mn = at::clamp(round_ste(ratio_or_zero(mins, dmin)), 0.0, levels);
            s = (d * sc).view({out, S});
            o = (-(dmin * mn)).view({out, S});
            return;
        }
        case GgmlGrid::kQ3_K: {
            const at::Tensor scale = div(signed_extreme(hi, lo), -4.0).view({out, S / subs, subs});
            // the first sub-block of the largest magnitude, as fit_block's strict comparison picks it
            const at::Tensor first = scale.abs().argmax(-1, true);
            const at::Tensor d = fp16_ste(div(scale.gather(-1, first), -32.0));
            const at::Tensor sc = at::clamp(round_ste(ratio_or_zero(scale, d)), -32.0, 31.0);
            s = (d * sc).view({out, S});
            o = s * -4.0;
            return;
        }
        case GgmlGrid::kIQ4_NL:
        case GgmlGrid::kNone: break;
    }
    throw ConfigError(std::string("--grid ") + t.name + " is not trained (its levels have no learnable range): use rtn "
                                                         "or gptq");
}

const GgmlGridTraits& checked_traits(const at::Tensor& weight, const at::Tensor& gmax, GgmlGrid grid) {
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    if (weight.dim() != 2 || weight.size(1) % t.block != 0 || gmax.dim() != 2 ||
        gmax.size(1) != weight.size(1) / t.sub_block)
        throw ConfigError(strprintf("internal: %s LWC on a [%lld, %lld] weight with [%lld, %lld] ranges", t.name,
                                    (long long)weight.size(0), (long long)weight.size(1), (long long)gmax.size(0),
                                    (long long)gmax.size(1)));
    return t;
}

}  // namespace

at::Tensor ggml_lwc_fake_quant(const at::Tensor& weight, const at::Tensor& gmax, const at::Tensor& gmin,
                               const LwcParams& params, GgmlGrid grid) {
    const GgmlGridTraits& t = checked_traits(weight, gmax, grid);
    const at::Tensor hi = at::sigmoid(params.up) * gmax.to(at::kFloat);
    const at::Tensor lo = at::sigmoid(params.low) * gmin.to(at::kFloat);
    at::Tensor s, o;
    fit_scales(hi, lo, t, s, o);
    const int64_t out = weight.size(0), S = s.size(1);
    const at::Tensor w = weight.to(at::kFloat).view({out, S, t.sub_block});
    const at::Tensor s3 = s.unsqueeze(-1), o3 = o.unsqueeze(-1);
    // A zero scale holds the type's zero code (nearest_code), which dequantizes to the offset.
    const at::Tensor zero_scale = s3 == 0;
    const at::Tensor code = at::where(zero_scale, at::full_like(w, static_cast<double>(t.zero)),
                                      at::clamp(round_ste((w - o3) / at::where(zero_scale, at::ones_like(s3), s3)), 0.0,
                                                static_cast<double>((1 << t.bits) - 1)));
    return (s3 * code + o3).view({out, weight.size(1)});
}

QuantizedTensor ggml_lwc_finalize(const at::Tensor& weight, const at::Tensor& gmax, const at::Tensor& gmin,
                                  const LwcParams& params, GgmlGrid grid) {
    checked_traits(weight, gmax, grid);
    c10::NoGradGuard no_grad;
    const at::Tensor hi = at::sigmoid(params.up.detach()) * gmax.to(at::kFloat);
    const at::Tensor lo = at::sigmoid(params.low.detach()) * gmin.to(at::kFloat);
    const at::Tensor w = weight.detach().to(at::kFloat);
    return ggml_quantized(ggml_quantize_rows(w, grid, hi, lo), grid, w.size(0), w.size(1), "ggml LWC");
}

}  // namespace saliq
