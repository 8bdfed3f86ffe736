// The CUDA side of packed_matmul (packed_matmul_cuda.cu), free of LibTorch so that nvcc compiles plain CUDA: raw device
// pointers in, kernels launched on the caller's stream. Only packed_matmul.cpp includes this, and only in builds
// with CUDA (SALIQ_WITH_CUDA).
#pragma once

#include <cstdint>

namespace saliq::cuda {

// One packed linear on the device, laid out as PackedWeight (packed_matmul.h) lays it out on the host.
struct PackedView {
    const uint8_t* data = nullptr;     // [out, row_bytes]: codes low bits first, 8 / field_bits to a byte
    const float* scales = nullptr;     // [out, groups]
    const float* offsets = nullptr;    // [out, groups]
    const int32_t* g_idx = nullptr;    // [in], or null: column k in group k / group_size
    const float* levels = nullptr;     // [2^bits] code values, or null: the code itself
    int64_t in = 0, out = 0, row_bytes = 0, groups = 0, group_size = 0;
    int field_bits = 2;
};

enum class Dtype { kFloat, kHalf, kBFloat16 };

// Rows [r0, r1) dequantized into out ([r1 - r0, in], row-major, `dtype`). Throws std::runtime_error on a launch
// error.
void dequantize_rows(const PackedView& w, int64_t r0, int64_t r1, void* out, Dtype dtype, void* stream);

// y[t, o] = Σ_k x[t, k] ŵ[o, k] for t < rows ≤ kGemvMaxRows, x and y row-major in `dtype`, fp32 accumulation:
// decoding's few tokens, each weight byte read once.
constexpr int64_t kGemvMaxRows = 8;
void gemv(const PackedView& w, const void* x, int64_t rows, void* y, Dtype dtype, void* stream);

}  // namespace saliq::cuda
