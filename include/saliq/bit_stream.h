// Small integers as one continuous LSB-first bit stream per column, in int32 words: value r of a column takes bits
// [r*bits, (r+1)*bits) of the stream, a value may straddle two words, the last word is zero-padded. GPTQ's qweight
// and qzeros (gptq_pack.h) and compressed-tensors' pack-quantized parts are this stream along different dims; the
// readers of both formats (io) and the packers (ops) share it.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace saliq {

// Packs values [rows, cols] (integers in [0, 2^bits)) along dim 0 into int32 words: [ceil(rows*bits/32), cols].
at::Tensor pack_bits(const at::Tensor& values, int bits);
// Inverse of pack_bits for `rows` values per column: returns [rows, cols] uint8.
at::Tensor unpack_bits(const at::Tensor& packed, int bits, int64_t rows);

}  // namespace saliq
