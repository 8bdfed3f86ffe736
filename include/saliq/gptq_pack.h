// The GPTQ / AutoGPTQ packed layout (methods_formats_eval.md section 2.3), for 2/3/4/8 bits.
//   qweight [ceil(in*bits/32), out] int32: codes of each output column packed along the input dim, LSB first;
//   qzeros  [G, ceil(out*bits/32)] int32: zero points packed along the output dim;
//   scales  [G, out] fp16;  g_idx [in] int32.
// Values form one continuous LSB-first bit stream per column (per row for qzeros), which is GPTQ's layout for
// 2/4/8 bits and its 3-bit layout (ten and two-thirds values per word). When in*bits (or out*bits) is not a multiple
// of 32 the last word is zero-padded; no GPTQ kernel accepts such shapes, but saliq reads them back.
// Zero points: "gptq" (v1) stores z - 1, "gptq_v2" stores z as-is (saliq writes v2 for asymmetric weights).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

#include "saliq/bit_stream.h"
#include "saliq/quantizer.h"

namespace saliq {

struct GptqTensors {
    at::Tensor qweight;  // [ceil(in*bits/32), out] int32
    at::Tensor qzeros;   // [G, ceil(out*bits/32)] int32
    at::Tensor scales;   // [G, out] fp16
    at::Tensor g_idx;    // [in] int32
};

GptqTensors gptq_pack(const QuantizedTensor& q, bool zeros_v2);
// Rebuilds the quantized tensor; throws FormatError(origin) on inconsistent shapes or out-of-range zero points.
QuantizedTensor gptq_unpack(const GptqTensors& packed, const QuantSpec& spec, int64_t in, int64_t out,
                            bool zeros_v2, const std::string& origin);

// saliq's mixed-precision layout (quant_method "saliq_mixed": SliM-LLM's group-wise widths; GPTQ loaders cannot
// read any mixed layout, SliM-LLM's own AutoGPTQ fork included):
//   qweight    [ceil(sum over groups of columns_k * bits_k / 32), out] int32: each output column's codes as one
//              LSB-first bit stream along the input dim, group k's columns at bits_k each;
//   scales     [G, out] fp16;  zeros [G, out] fp16 (the zero points as stored, fractional for 1-bit groups);
//   group_bits [G] int32, each in 1..8. Groups in natural order (column k in group k / group_size).
struct MixedTensors {
    at::Tensor qweight;
    at::Tensor scales;
    at::Tensor zeros;
    at::Tensor group_bits;
};
MixedTensors mixed_pack(const QuantizedTensor& q);
// group_bits as int64 after checking it is [groups] widths in 1..8; throws FormatError(origin) otherwise.
at::Tensor checked_group_bits(const at::Tensor& group_bits, int64_t groups, const std::string& origin);
// Throws FormatError(origin) on shapes that disagree with the group widths or with [out, in].
QuantizedTensor mixed_unpack(const MixedTensors& packed, const QuantSpec& spec, int64_t in, int64_t out,
                             const std::string& origin);

// What a folder's quantization_config says about every packed linear.
struct GptqClaims {
    int64_t group_size = -1;  // -1: one group per row
    bool desc_act = false;    // false: g_idx is k / group_size; true: any order, group_size columns per group
    bool symmetric = false;   // true: every zero point is 2^(bits-1), as GPTQ's symmetric kernels assume
};

// ReQuant's sparse parts in a folder, beside a linear's packed tensors: <linear>.outlier_idx / .outlier_val and
// <linear>.significant_idx / .significant_val; idx int32 [nnz], flat positions row * in + col, strictly ascending;
// val fp16 [nnz], added to the dequantized weight. 48 bits per entry.
inline const char* const kSparseSuffixes[] = {".outlier_idx", ".outlier_val", ".significant_idx", ".significant_val"};
struct SparseTensors {
    at::Tensor idx;  // int32 [nnz]
    at::Tensor val;  // fp16 [nnz]
};
SparseTensors sparse_pack(const SparsePart& part);
// Checks (1-D, same length, integer positions strictly ascending within out * in, finite values) and converts.
SparsePart sparse_unpack(const SparseTensors& packed, int64_t out, int64_t in, const std::string& origin);

// Checks an unpacked linear against those claims (groups, g_idx, zero points) and its scales for finite values;
// throws FormatError(origin) naming the first disagreement. A folder that fails would score a wrong number.
void check_gptq_claims(const QuantizedTensor& q, const GptqClaims& claims, const std::string& origin);

}  // namespace saliq
