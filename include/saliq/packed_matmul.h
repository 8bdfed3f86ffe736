// y = x·Ŵᵀ straight from quantized codes, never holding the whole dense Ŵ: the inference form of a packed
// (GPTQ-layout) linear. Codes are kept bit-packed along each row (2-bit codes four to a byte; 3- and 4-bit in
// nibbles; 8-bit in bytes) beside per-group scales and offsets (ŵ = s·q + m, m = -s·z; a GGML grid's stored
// offsets, and IQ4_NL's levels in place of q). On CPU in fp32, batches of
// rows are multiplied against tiles of a few hundred dequantized rows (GEMM on each tile, the tile reused across the
// batch), and a single token (decode) runs a fused dequantize-dot per row. A weight moved to a CUDA device
// (packed_to) stays packed there: CUDA kernels dequantize tiles for cuBLAS, and up to 8 token rows run a fused GEMV.
// Other devices and dtypes dequantize tiles on the host and multiply them the same way.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "saliq/quantizer.h"

namespace saliq {

struct PackedWeight {
    at::Tensor data;     // [out, row_bytes] uint8: codes of row o, `per_byte` to a byte, low bits first
    at::Tensor scales;   // [out, G] fp32
    at::Tensor offsets;  // [out, G] fp32: -scale * zero
    at::Tensor g_idx;    // [in] int32 (CPU); empty in natural order (column k in group k / group_size)
    at::Tensor levels;   // [2^bits] fp32: the value of each code (IQ4_NL's table); empty: the code itself
    int bits = 2;        // the codes' width
    int field_bits = 2;  // their storage width: 2, 4 or 8
    int64_t in = 0, out = 0, group_size = 0;

    int per_byte() const { return 8 / field_bits; }
    int64_t bytes() const;  // resident size of the tensors above
};

PackedWeight pack_weight(const QuantizedTensor& q);
// Whether this build has the CUDA kernels (packed_matmul_cuda.cu) that compute from packed weights on the GPU.
bool packed_cuda_kernels();
// The weight's tensors on `device` (a CUDA device needs packed_cuda_kernels(); throws ConfigError otherwise).
PackedWeight packed_to(const PackedWeight& w, const at::Device& device);
// Rows [r0, r1) dequantized, fp32 [r1 - r0, in] (the reference the products are checked against).
at::Tensor packed_dequantize_rows(const PackedWeight& w, int64_t r0, int64_t r1);
// x [..., in] (fp32 CPU for the fast paths) -> [..., out] in x's dtype.
at::Tensor packed_linear(const at::Tensor& x, const PackedWeight& w);

}  // namespace saliq
