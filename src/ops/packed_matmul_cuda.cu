// Packed (GPTQ-layout) linears on CUDA: a dequantize kernel that feeds cuBLAS for batches of tokens, and a fused
// dequantize-dot (GEMV) for decoding. ŵ[o, k] = s[o, g(k)] · v(code[o, k]) + m[o, g(k)], as on the host.
#include "packed_matmul_cuda.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace saliq::cuda {
namespace {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ int64_t group_of(const PackedView& w, int64_t k) {
    return w.g_idx != nullptr ? w.g_idx[k] : k / w.group_size;
}

// The value of code j (of per_byte) in byte b: the code itself, or its level on a non-uniform grid.
__device__ __forceinline__ float code_value(const PackedView& w, uint8_t b, int j) {
    const int code = (b >> (j * w.field_bits)) & ((1 << w.field_bits) - 1);
    return w.levels != nullptr ? w.levels[code] : static_cast<float>(code);
}

// One thread per weight byte of rows [r0, r1): its codes dequantized to `per` consecutive outputs.
template <typename T>
__global__ void dequantize_kernel(PackedView w, int64_t r0, int64_t r1, T* out) {
    const int per = 8 / w.field_bits;
    const int64_t bytes = (r1 - r0) * w.row_bytes;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < bytes;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t r = i / w.row_bytes, byte = i % w.row_bytes, o = r0 + r;
        const uint8_t b = w.data[o * w.row_bytes + byte];
        for (int j = 0; j < per; ++j) {
            const int64_t k = byte * per + j;
            if (k >= w.in) break;
            const int64_t g = group_of(w, k);
            // Rounded as the host rounds it (no fused multiply-add): the two dequantize bit for bit alike.
            const float v = __fadd_rn(__fmul_rn(w.scales[o * w.groups + g], code_value(w, b, j)),
                                      w.offsets[o * w.groups + g]);
            out[r * w.in + k] = from_float<T>(v);
        }
    }
}

// One warp per output row: its lanes stride over the row's bytes, dequantize, and dot with every token row of x;
// the partial sums meet by warp shuffles.
constexpr int kWarpsPerBlock = 8;

template <typename T>
__global__ void gemv_kernel(PackedView w, const T* x, int64_t rows, T* y) {
    const int lane = threadIdx.x % 32;
    const int64_t o = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
    if (o >= w.out) return;
    const int per = 8 / w.field_bits;
    float acc[kGemvMaxRows];
#pragma unroll
    for (int t = 0; t < kGemvMaxRows; ++t) acc[t] = 0.0f;
    const uint8_t* row = w.data + o * w.row_bytes;
    const float* s = w.scales + o * w.groups;
    const float* m = w.offsets + o * w.groups;
    for (int64_t byte = lane; byte < w.row_bytes; byte += 32) {
        const uint8_t b = row[byte];
        for (int j = 0; j < per; ++j) {
            const int64_t k = byte * per + j;
            if (k >= w.in) break;
            const int64_t g = group_of(w, k);
            const float wv = s[g] * code_value(w, b, j) + m[g];
#pragma unroll
            for (int t = 0; t < kGemvMaxRows; ++t)
                if (t < rows) acc[t] += wv * to_float(x[t * w.in + k]);
        }
    }
#pragma unroll
    for (int t = 0; t < kGemvMaxRows; ++t) {
        float v = acc[t];
        for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
        if (lane == 0 && t < rows) y[t * w.out + o] = from_float<T>(v);
    }
}

void check_launch(const char* what) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename F>
void by_dtype(Dtype dtype, F&& f) {
    switch (dtype) {
        case Dtype::kFloat: f(static_cast<float*>(nullptr)); break;
        case Dtype::kHalf: f(static_cast<__half*>(nullptr)); break;
        case Dtype::kBFloat16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
    }
}

}  // namespace

void dequantize_rows(const PackedView& w, int64_t r0, int64_t r1, void* out, Dtype dtype, void* stream) {
    const int64_t bytes = (r1 - r0) * w.row_bytes;
    if (bytes <= 0) return;
    constexpr int threads = 256;
    const int64_t blocks = std::min<int64_t>((bytes + threads - 1) / threads, int64_t{1} << 20);
    by_dtype(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        dequantize_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(
            w, r0, r1, static_cast<T*>(out));
    });
    check_launch("packed dequantize kernel");
}

void gemv(const PackedView& w, const void* x, int64_t rows, void* y, Dtype dtype, void* stream) {
    if (rows < 1 || rows > kGemvMaxRows) throw std::runtime_error("packed GEMV: 1 to 8 token rows");
    if (w.out <= 0) return;
    const int64_t blocks = (w.out + kWarpsPerBlock - 1) / kWarpsPerBlock;
    by_dtype(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        gemv_kernel<T><<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, static_cast<cudaStream_t>(stream)>>>(
            w, static_cast<const T*>(x), rows, static_cast<T*>(y));
    });
    check_launch("packed GEMV kernel");
}

}  // namespace saliq::cuda
