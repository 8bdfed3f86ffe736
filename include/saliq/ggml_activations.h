// The activations llama.cpp's CPU backend actually multiplies with a GGML-typed weight (issue 29). ggml-cpu does
// not compute x·Ŵᵀ in float: it first quantizes each row of x to the weight type's `vec_dot_type` (ggml_types.h) and
// takes integer dot products, so its perplexity of a quantized GGUF differs from the float product's by a few tenths
// of a percent. Rounding x the same way and multiplying the rounded values in fp32 reproduces llama.cpp's numbers
// up to the order of float sums:
//
//   Q8_0 / Q8_1, blocks of 32: q = round(x · 127/amax) (to nearest, ties to even, as _mm256_round_ps), the scale
//               stored in fp16, x̃ = fp16(amax/127) · q. (Q8_1 also stores fp16(d·Σq) for the types with a min;
//               the rounded values reproduce that term to within that fp16 rounding.)
//   Q8_K,       blocks of 256: iscale = 127/amax in fp32, q = round(x · iscale), x̃ = (1/iscale) · q with the
//               scale kept in fp32 (quantize_row_q8_K_ref; its sign convention gives the same values).
//   an all-zero block stays zero.
#pragma once

#include <ATen/core/Tensor.h>

#include "saliq/ggml_types.h"

namespace saliq {

// x [..., in] (float; in a multiple of the activation type's block) rounded as llama.cpp rounds the input of a
// product with a weight of type `weight`, returned in fp32. kNone (an F32 weight) returns x unchanged. ConfigError
// when `in` is not a multiple of the block.
at::Tensor ggml_round_activations(const at::Tensor& x, GgmlGrid weight);
// The same for one activation type.
at::Tensor ggml_round_activations(const at::Tensor& x, GgmlActivation type);

}  // namespace saliq
