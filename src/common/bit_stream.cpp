// LSB-first bit streams of small integers in int32 words (bit_stream.h).
#include "saliq/bit_stream.h"

#include <ATen/ATen.h>

namespace saliq {

at::Tensor pack_bits(const at::Tensor& values, int bits) {
    const at::Tensor v = values.to(at::kCPU).to(at::kLong).contiguous();
    const int64_t rows = v.size(0), cols = v.size(1);
    const int64_t words = (rows * bits + 31) / 32;
    at::Tensor packed = at::zeros({words, cols}, at::kLong);
    const int64_t* src = v.data_ptr<int64_t>();
    int64_t* dst = packed.data_ptr<int64_t>();
    const uint64_t mask = (uint64_t{1} << bits) - 1;
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t bit = r * bits, word = bit / 32, shift = bit % 32;
        for (int64_t c = 0; c < cols; ++c) {
            const uint64_t value = static_cast<uint64_t>(src[r * cols + c]) & mask;
            dst[word * cols + c] |= static_cast<int64_t>((value << shift) & 0xffffffffull);
            if (shift + bits > 32) dst[(word + 1) * cols + c] |= static_cast<int64_t>(value >> (32 - shift));
        }
    }
    // Words are unsigned 32-bit patterns stored in int32 (the format's dtype).
    return packed.to(at::kInt);
}

at::Tensor unpack_bits(const at::Tensor& packed, int bits, int64_t rows) {
    const at::Tensor p = packed.to(at::kCPU).to(at::kInt).contiguous();
    const int64_t cols = p.size(1);
    at::Tensor out = at::empty({rows, cols}, at::kByte);
    const uint32_t* src = reinterpret_cast<const uint32_t*>(p.data_ptr<int32_t>());
    uint8_t* dst = out.data_ptr<uint8_t>();
    const uint64_t mask = (uint64_t{1} << bits) - 1;
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t bit = r * bits, word = bit / 32, shift = bit % 32;
        for (int64_t c = 0; c < cols; ++c) {
            uint64_t value = static_cast<uint64_t>(src[word * cols + c]) >> shift;
            if (shift + bits > 32) value |= static_cast<uint64_t>(src[(word + 1) * cols + c]) << (32 - shift);
            dst[r * cols + c] = static_cast<uint8_t>(value & mask);
        }
    }
    return out;
}

}  // namespace saliq
