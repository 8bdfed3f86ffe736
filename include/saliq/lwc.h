// Learnable weight clipping (OmniQuant's LWC, as used by ApiQ): per (row, group) sigmoid factors shrink the group's
// max and min, scale and zero point follow from the clipped range, rounding passes gradients straight through.
// Differentiable with respect to the clipping logits; the weight itself is frozen.
#pragma once

#include <ATen/core/Tensor.h>

#include "saliq/quantizer.h"

namespace saliq {

constexpr double kLwcInit = 4.0;  // sigmoid(4) ~ 0.982

struct LwcParams {
    at::Tensor up;   // [out, G] fp32 logits of the max factor (gamma = sigmoid(up))
    at::Tensor low;  // [out, G] fp32 logits of the min factor (beta = sigmoid(low))
};

// Logits initialised to kLwcInit, on weight's device.
LwcParams make_lwc_params(const at::Tensor& weight, const QuantSpec& spec);

// A searched start for the clipping logits (--lwc-init search): for each (row, group) the pair of factors
// (sigmoid(up), sigmoid(low)) from {sigmoid(kLwcInit), 0.95, 0.90, ..., 0.50}^2 whose grid gives the least
// importance-weighted squared error sum_j d_j (w_j - Q(w_j))^2 over the group, Q as lwc_fake_quant_of_range computes
// it (ties keep the wider range). `importance` [in]: d, the linear's input second moments E[x_j^2] (the diagonal of
// GPTQ's Hessian, what AWQ's and llama.cpp's clipping searches weigh by); undefined: d = 1. Logits fp32 on weight's
// device.
LwcParams lwc_search_params(const at::Tensor& weight, const at::Tensor& gmax, const at::Tensor& gmin,
                            const QuantSpec& spec, const at::Tensor& importance);

// round(x) forward, identity backward.
at::Tensor round_ste(const at::Tensor& x);

// Scale and zero point [out, G] of each group under the clipping factors.
//   asymmetric: s = clamp((g*max - b*min) / maxq, 1e-5, 1e4), z = clamp(round(-b*min / s), 0, maxq) (no gradient);
//   symmetric (ApiQ): s = clamp(max(|g*max|, |b*min|) / (2^(b-1) - 1), 1e-5, 1e4), z = 2^(b-1) - 1.
// The zero point is kept inside [0, maxq] (OmniQuant only bounds it by 1e4) so every grid can be stored in the GPTQ
// layout.
void lwc_scale_zero(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec, at::Tensor& scale,
                    at::Tensor& zero);

// The same from the weight's per-group max and min ([out, G], group_max_min), which a frozen weight computes once.
void lwc_scale_zero_of_range(const at::Tensor& gmax, const at::Tensor& gmin, const LwcParams& params,
                             const QuantSpec& spec, at::Tensor& scale, at::Tensor& zero);

// The fake-quantized weight [out, in], differentiable in params (STE through the rounding).
at::Tensor lwc_fake_quant(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec);
at::Tensor lwc_fake_quant_of_range(const at::Tensor& weight, const at::Tensor& gmax, const at::Tensor& gmin,
                                   const LwcParams& params, const QuantSpec& spec);

// (clamp(round(w / s) + z, 0, maxq) - z) * s with s, z [out, G] over natural groups: the gradient reaches `scale`
// only (rounding straight through; z detached; the weight frozen). On CPU one fused pass forward and one backward;
// elsewhere, or for a weight that requires a gradient, element-wise ATen ops (fake_quant_grid_reference, which the
// tests hold it to).
at::Tensor fake_quant_grid(const at::Tensor& weight, const at::Tensor& scale, const at::Tensor& zero,
                           const QuantSpec& spec);
at::Tensor fake_quant_grid_reference(const at::Tensor& weight, const at::Tensor& scale, const at::Tensor& zero,
                                     const QuantSpec& spec);

// The final grid (scales rounded to fp16 precision, as stored) and codes; no gradient.
QuantizedTensor lwc_finalize(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec);

// LWC on a GGML grid (--grid with a training method): each sub-block's range clipped to [sigmoid(low)·min,
// sigmoid(up)·max] (gmin, gmax [out, in / sub_block] of the frozen weight) and fitted as ggml_quantize_rows fits a
// given range: the fp16 block scales, the sub-block scales and mins quantized against them, the codes, every rounding
// straight through. So what training sees is what the folder and llama.cpp compute. IQ4_NL is refused (ConfigError).
at::Tensor ggml_lwc_fake_quant(const at::Tensor& weight, const at::Tensor& gmax, const at::Tensor& gmin,
                               const LwcParams& params, GgmlGrid grid);
// The stored form: ggml_quantize_rows on the learned ranges (its dequantization equals the fake quantizer's forward).
QuantizedTensor ggml_lwc_finalize(const at::Tensor& weight, const at::Tensor& gmax, const at::Tensor& gmin,
                                  const LwcParams& params, GgmlGrid grid);

// Mixed precision (SliM-LLM+): group k at group_bits[k] bits ([G] int64), asymmetric. Groups of 2+ bits are the
// clipped grid above with their own maxq; 1-bit groups binarize, sign(w - m) * mean|w| * (sigmoid(up) + 1/2) + m
// with m the row's group mean (`low` unused there; make_mixed_lwc_params starts their `up` at 0, factor 1).
LwcParams make_mixed_lwc_params(const at::Tensor& weight, const QuantSpec& spec, const at::Tensor& group_bits);
at::Tensor lwc_fake_quant_mixed(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec,
                                const at::Tensor& group_bits);
// The stored form: 1-bit groups as codes (w >= m) with scale 2a and zero 1/2 - m / 2a (fp16 exact).
QuantizedTensor lwc_finalize_mixed(const at::Tensor& weight, const LwcParams& params, const QuantSpec& spec,
                                   const at::Tensor& group_bits);

}  // namespace saliq
