// GGML's block types as quantization grids (issue 29): what llama.cpp stores for Q4_0, Q4_1, Q5_0, Q8_0, IQ4_NL,
// Q2_K, Q3_K and Q4_K, so that a model calibrated on such a grid is written to GGUF bit for bit and llama.cpp
// computes what saliq calibrated. Layouts from ggml-quants.c and the GGUF spec (methods_formats_eval.md 2.4):
//
//   block-32 types, one fp16 scale d per 32 weights:  Q4_0 d·(q−8)   Q5_0 d·(q−16)   Q8_0 d·q (int8)
//                                                    Q4_1 d·q + m (fp16 m)            IQ4_NL d·levels[q]
//   k-quants, super-blocks of 256 with fp16 d (and dmin) and sub-block scales quantized against them:
//     Q2_K 16 × 16, 4-bit scale and min:  d·sc·q − dmin·m,  q 2-bit
//     Q3_K 16 × 16, 6-bit signed scale:   d·(sc−32)·(q−4),  q 3-bit (2 low bits + a high-bit mask)
//     Q4_K  8 × 32, 6-bit scale and min:  d·sc·q − dmin·m,  q 4-bit
//
// In saliq's terms every type is groups of `sub_block` weights with a scale s and an offset o per group,
// ŵ = s·code + o (s = d·sc, o = −dmin·m or −s·zero), exactly as ggml's dequantizers compute it in fp32; IQ4_NL maps
// codes through its 16 levels first. A tensor on a grid keeps its raw blocks beside the decoded codes, scales and
// offsets: the blocks are what a folder and a GGUF file store, the decoded form is what saliq computes with.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "saliq/ggml_types.h"

namespace saliq {

// IQ4_NL's levels (ggml's kvalues_iq4nl), as a [16] fp32 tensor.
at::Tensor iq4_nl_levels();

// A weight on a grid, decoded: ŵ[o, k] = scales[o, g]·v(codes[o, k]) + offsets[o, g], g = k / sub_block,
// v(c) = c (or levels[c] for IQ4_NL).
struct GgmlDecoded {
    at::Tensor codes;    // [out, in] uint8
    at::Tensor scales;   // [out, in / sub_block] fp32
    at::Tensor offsets;  // [out, in / sub_block] fp32
};

// Round-to-nearest on the grid: for every block, scales (and mins) from each sub-block's range (its max and min,
// or the clipped range `group_max` / `group_min` [out, in / sub_block] when given), sub-block scales quantized
// against the block's fp16 scale as ggml stores them, codes against the stored values. With `importance` [in]
// (non-negative weights of the columns: GPTQ's diag H, llama.cpp's importance matrix), each (sub-)block's scale
// (and min) is instead searched to minimise the importance-weighted squared error, as llama-quantize does with an
// imatrix; Q8_0 keeps its absmax scale. Returns the raw blocks, [out, in / block * block_bytes] uint8. ConfigError
// when `in` is not a multiple of the block.
at::Tensor ggml_quantize_rows(const at::Tensor& weight, GgmlGrid grid, const at::Tensor& group_max = {},
                              const at::Tensor& group_min = {}, const at::Tensor& importance = {});
// The blocks' codes replaced by codes computed elsewhere (GPTQ's, against the decoded scales and offsets): the
// scales stay as stored.
at::Tensor ggml_replace_codes(const at::Tensor& blocks, GgmlGrid grid, const at::Tensor& codes);
// Blocks of a block-32 type (Q4_0, Q4_1, Q5_0, Q8_0, IQ4_NL) from codes [out, in] in saliq's convention (0 ..
// 2^bits − 1; Q8_0's int8 + 128) and each block's d (and Q4_1's m) [out, in / 32], rounded to fp16 as stored.
at::Tensor ggml_encode_blocks(GgmlGrid grid, const at::Tensor& codes, const at::Tensor& d, const at::Tensor& m = {});
// Decodes raw blocks [out, row_bytes] of rows of `in` weights; FormatError(origin) when the sizes disagree.
GgmlDecoded ggml_decode(const at::Tensor& blocks, GgmlGrid grid, int64_t in, const std::string& origin);
// Nearest code of each weight w [rows, cols] against per-weight scale and offset (broadcastable): what GPTQ's
// column loop rounds with. Codes as uint8 in [0, 2^bits).
at::Tensor ggml_nearest_codes(const at::Tensor& w, const at::Tensor& scale, const at::Tensor& offset, GgmlGrid grid);
// ŵ from decoded codes (levels applied for IQ4_NL), scales and offsets expanded per weight.
at::Tensor ggml_code_values(const at::Tensor& codes, GgmlGrid grid);

}  // namespace saliq
