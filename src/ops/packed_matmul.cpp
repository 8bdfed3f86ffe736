#include "saliq/packed_matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "saliq/error.h"
#include "saliq/strings.h"
#ifndef SALIQ_WITH_CUDA
#define SALIQ_WITH_CUDA 0
#endif
#if SALIQ_WITH_CUDA
#include <c10/cuda/CUDAStream.h>

#include "packed_matmul_cuda.h"
#endif

namespace saliq {
namespace {

// Rows per dequantized tile: about 1 MiB of fp32, so a tile stays in cache while the GEMM reuses it.
int64_t tile_rows(int64_t in) { return std::max<int64_t>(16, std::min<int64_t>(1024, (int64_t{1} << 18) / in)); }

// Batches of at most this many token rows take the fused dequantize-dot path (decode is bandwidth-bound).
constexpr int64_t kFusedMaxRows = 4;

// Each byte's codes as floats, looked up whole (a 256-entry table per storage width): unpacking a row is one
// small copy per byte instead of a shift and mask per code.
template <int FB>
std::vector<float> make_code_table() {
    constexpr int per = 8 / FB, mask = (1 << FB) - 1;
    std::vector<float> t(256 * per);
    for (int b = 0; b < 256; ++b)
        for (int j = 0; j < per; ++j) t[static_cast<size_t>(b * per + j)] = static_cast<float>((b >> (j * FB)) & mask);
    return t;
}

template <int FB>
const float* code_table() {
    static const std::vector<float> table = make_code_table<FB>();
    return table.data();
}

template <int FB>
void unpack_span(const uint8_t* row, int64_t k0, int64_t k1, float* out) {
    constexpr int per = 8 / FB, mask = (1 << FB) - 1;
    int64_t k = k0;
    if (k0 % per == 0) {
        const float* table = code_table<FB>();
        for (; k + per <= k1; k += per) std::memcpy(out + (k - k0), table + row[k / per] * per, sizeof(float) * per);
    }
    for (; k < k1; ++k) out[k - k0] = static_cast<float>((row[k / per] >> ((k % per) * FB)) & mask);
}

void unpack_codes(int field_bits, const uint8_t* row, int64_t k0, int64_t k1, float* out) {
    if (field_bits == 2) unpack_span<2>(row, k0, k1, out);
    else if (field_bits == 4) unpack_span<4>(row, k0, k1, out);
    else unpack_span<8>(row, k0, k1, out);
}

// The values of codes [k0, k1) of a row: the codes, or their levels for a non-uniform grid.
void unpack_values(const PackedWeight& w, const uint8_t* row, int64_t k0, int64_t k1, float* out) {
    unpack_codes(w.field_bits, row, k0, k1, out);
    if (!w.levels.defined() || w.levels.numel() == 0) return;
    const float* levels = w.levels.data_ptr<float>();
    for (int64_t k = 0; k < k1 - k0; ++k) out[k] = levels[static_cast<int>(out[k])];
}

// Σ a_k b_k over n: AVX2/FMA where the CPU has them (checked at run time: the binary stays baseline x86-64),
// else four independent scalar sums.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), acc1);
    }
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    float sum = _mm_cvtss_f32(lo);
    for (; k < n; ++k) sum += a[k] * b[k];
    return sum;
}
bool have_avx2() {
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}
#else
float dot_avx2(const float*, const float*, int64_t) { return 0.0f; }
bool have_avx2() { return false; }
#endif

float dot(const float* a, const float* b, int64_t n) {
    if (have_avx2()) return dot_avx2(a, b, n);
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int64_t k = 0;
    for (; k + 4 <= n; k += 4)
        for (int j = 0; j < 4; ++j) acc[j] += a[k + j] * b[k + j];
    for (; k < n; ++k) acc[0] += a[k] * b[k];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

bool natural_order(const PackedWeight& w) { return !w.g_idx.defined() || w.g_idx.numel() == 0; }

// Row o dequantized into out[0, in).
void dequantize_row(const PackedWeight& w, int64_t o, float* out) {
    const int64_t G = w.scales.size(1);
    const uint8_t* row = w.data.data_ptr<uint8_t>() + o * w.data.size(1);
    const float* s = w.scales.data_ptr<float>() + o * G;
    const float* m = w.offsets.data_ptr<float>() + o * G;
    unpack_values(w, row, 0, w.in, out);
    if (natural_order(w)) {
        for (int64_t g = 0, k0 = 0; k0 < w.in; ++g, k0 += w.group_size) {
            const int64_t k1 = std::min(w.in, k0 + w.group_size);
            const float sg = s[g], mg = m[g];
            for (int64_t k = k0; k < k1; ++k) out[k] = sg * out[k] + mg;
        }
        return;
    }
    const int32_t* gi = w.g_idx.data_ptr<int32_t>();
    for (int64_t k = 0; k < w.in; ++k) out[k] = s[gi[k]] * out[k] + m[gi[k]];
}

// y[t, o] = Σ_g s_g Σ_{k∈g} x_k q_k + m_g Σ_{k∈g} x_k: each row's codes unpacked once for all T tokens.
void fused_rows(const float* x, int64_t T, const PackedWeight& w, float* y) {
    const int64_t in = w.in, out = w.out, G = w.scales.size(1), row_bytes = w.data.size(1);
    const bool natural = natural_order(w);
    const int32_t* gi = natural ? nullptr : w.g_idx.data_ptr<int32_t>();
    // Σ_{k∈g} x_k for every token and group.
    std::vector<float> xsum(static_cast<size_t>(T * G), 0.0f);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < in; ++k) xsum[t * G + (natural ? k / w.group_size : gi[k])] += x[t * in + k];
    const uint8_t* data = w.data.data_ptr<uint8_t>();
    const float* scales = w.scales.data_ptr<float>();
    const float* offsets = w.offsets.data_ptr<float>();
    at::parallel_for(0, out, 16, [&](int64_t o0, int64_t o1) {
        std::vector<float> codes(static_cast<size_t>(in)), dots(static_cast<size_t>(G));
        for (int64_t o = o0; o < o1; ++o) {
            unpack_values(w, data + o * row_bytes, 0, in, codes.data());
            const float* s = scales + o * G;
            const float* m = offsets + o * G;
            for (int64_t t = 0; t < T; ++t) {
                const float* xt = x + t * in;
                if (natural) {
                    for (int64_t g = 0, k0 = 0; k0 < in; ++g, k0 += w.group_size)
                        dots[static_cast<size_t>(g)] = dot(xt + k0, codes.data() + k0, std::min(in, k0 + w.group_size) - k0);
                } else {
                    std::fill(dots.begin(), dots.end(), 0.0f);
                    for (int64_t k = 0; k < in; ++k) dots[static_cast<size_t>(gi[k])] += xt[k] * codes[static_cast<size_t>(k)];
                }
                const float* xs = xsum.data() + t * G;
                float acc = 0.0f;
                for (int64_t g = 0; g < G; ++g) acc += s[g] * dots[static_cast<size_t>(g)] + m[g] * xs[g];
                y[t * out + o] = acc;
            }
        }
    });
}

#if SALIQ_WITH_CUDA
cuda::PackedView device_view(const PackedWeight& w) {
    cuda::PackedView v;
    v.data = w.data.data_ptr<uint8_t>();
    v.scales = w.scales.data_ptr<float>();
    v.offsets = w.offsets.data_ptr<float>();
    v.g_idx = natural_order(w) ? nullptr : w.g_idx.data_ptr<int32_t>();
    v.levels = w.levels.defined() && w.levels.numel() > 0 ? w.levels.data_ptr<float>() : nullptr;
    v.in = w.in;
    v.out = w.out;
    v.row_bytes = w.data.size(1);
    v.groups = w.scales.size(1);
    v.group_size = w.group_size;
    v.field_bits = w.field_bits;
    return v;
}

cuda::Dtype device_dtype(at::ScalarType t) {
    if (t == at::kFloat) return cuda::Dtype::kFloat;
    if (t == at::kHalf) return cuda::Dtype::kHalf;
    if (t == at::kBFloat16) return cuda::Dtype::kBFloat16;
    throw ConfigError(std::string("packed CUDA kernels compute in fp32, fp16 or bf16, not ") + at::toString(t));
}

void* current_stream(const at::Device& device) {
    return c10::cuda::getCurrentCUDAStream(device.index()).stream();
}

at::Tensor cuda_dequantize_rows(const PackedWeight& w, int64_t r0, int64_t r1, at::ScalarType dtype) {
    at::Tensor out = at::empty({r1 - r0, w.in}, w.data.options().dtype(dtype));
    cuda::dequantize_rows(device_view(w), r0, r1, out.data_ptr(), device_dtype(dtype), current_stream(out.device()));
    return out;
}

at::Tensor cuda_packed_linear(const at::Tensor& x2, const PackedWeight& w) {
    if (x2.device() != w.data.device())
        throw ConfigError("packed linear: input on " + x2.device().str() + ", weight on " + w.data.device().str());
    const int64_t T = x2.size(0);
    if (T <= cuda::kGemvMaxRows) {
        const at::Tensor xc = x2.contiguous();
        at::Tensor y = at::empty({T, w.out}, xc.options());
        if (T > 0)
            cuda::gemv(device_view(w), xc.data_ptr(), T, y.data_ptr(), device_dtype(xc.scalar_type()),
                       current_stream(xc.device()));
        return y;
    }
    // Tiles of at most 2^24 dequantized weights (32 MiB in fp16) feed cuBLAS; only the tile is ever dense.
    at::Tensor y = at::empty({T, w.out}, x2.options());
    const int64_t step = std::max<int64_t>(1, (int64_t{1} << 24) / w.in);
    for (int64_t r0 = 0; r0 < w.out; r0 += step) {
        const int64_t r1 = std::min(w.out, r0 + step);
        y.narrow(1, r0, r1 - r0).copy_(at::mm(x2, cuda_dequantize_rows(w, r0, r1, x2.scalar_type()).t()));
    }
    return y;
}
#endif

}  // namespace

bool packed_cuda_kernels() { return SALIQ_WITH_CUDA != 0; }

PackedWeight packed_to(const PackedWeight& w, const at::Device& device) {
    PackedWeight d = w;
    if (device.is_cuda() && !packed_cuda_kernels())
        throw ConfigError("this saliq was built without CUDA kernels for packed weights: dequantize them instead");
    for (at::Tensor* t : {&d.data, &d.scales, &d.offsets, &d.g_idx, &d.levels})
        if (t->defined() && t->numel() > 0) *t = t->to(device);
    return d;
}

int64_t PackedWeight::bytes() const {
    int64_t n = 0;
    for (const at::Tensor* t : {&data, &scales, &offsets, &g_idx})
        if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
    return n;
}

PackedWeight pack_weight(const QuantizedTensor& q) {
    PackedWeight w;
    w.bits = q.max_bits();
    if (w.bits < 1 || w.bits > 8) throw ConfigError(strprintf("packed inference: %d-bit codes", w.bits));
    w.field_bits = w.bits <= 2 ? 2 : w.bits <= 4 ? 4 : 8;
    w.out = q.out_features();
    w.in = q.in_features();
    w.group_size = q.spec.effective_group(w.in);
    const int per = w.per_byte();
    const int64_t row_bytes = (w.in + per - 1) / per;
    const at::Tensor codes = q.codes.to(at::kCPU).to(at::kByte).contiguous();
    const at::Tensor padded = at::constant_pad_nd(codes, {0, row_bytes * per - w.in}, 0).view({w.out, row_bytes, per});
    at::Tensor data = at::zeros({w.out, row_bytes}, at::kByte);
    for (int j = 0; j < per; ++j)
        data.bitwise_or_(padded.select(2, j).bitwise_left_shift(j * w.field_bits).to(at::kByte));
    w.data = data;
    w.scales = q.scales.to(at::kCPU).to(at::kFloat).contiguous();
    // A GGML grid stores its offsets: ŵ = s·q + m there exactly as ggml computes it.
    w.offsets = q.offsets.defined() ? q.offsets.to(at::kCPU).to(at::kFloat).contiguous()
                                    : (-(w.scales * q.zeros.to(at::kCPU).to(at::kFloat))).contiguous();
    if (ggml_grid_traits(q.spec.grid).levels) w.levels = iq4_nl_levels();
    const at::Tensor natural = natural_group_index(w.in, q.spec);
    if (q.g_idx.defined() && !at::equal(q.g_idx.to(at::kCPU).to(at::kLong), natural))
        w.g_idx = q.g_idx.to(at::kCPU).to(at::kInt).contiguous();
    return w;
}

at::Tensor packed_dequantize_rows(const PackedWeight& w, int64_t r0, int64_t r1) {
#if SALIQ_WITH_CUDA
    if (w.data.is_cuda()) return cuda_dequantize_rows(w, r0, r1, at::kFloat);
#endif
    at::Tensor out = at::empty({r1 - r0, w.in}, at::kFloat);
    float* p = out.data_ptr<float>();
    at::parallel_for(r0, r1, 8, [&](int64_t a, int64_t b) {
        for (int64_t o = a; o < b; ++o) dequantize_row(w, o, p + (o - r0) * w.in);
    });
    return out;
}

at::Tensor packed_linear(const at::Tensor& x, const PackedWeight& w) {
    if (x.size(-1) != w.in)
        throw ConfigError(strprintf("packed linear: input has %lld features, the weight %lld", (long long)x.size(-1),
                                    (long long)w.in));
    std::vector<int64_t> out_shape = x.sizes().vec();
    out_shape.back() = w.out;
    const at::Tensor x2 = x.reshape({-1, w.in});
    const int64_t T = x2.size(0);
#if SALIQ_WITH_CUDA
    if (w.data.is_cuda()) return cuda_packed_linear(x2, w).view(out_shape);
#endif
    const bool cpu_fp32 = x.device().is_cpu() && x.scalar_type() == at::kFloat;
    if (cpu_fp32 && T <= kFusedMaxRows) {
        const at::Tensor xc = x2.contiguous();
        at::Tensor y = at::empty({T, w.out}, at::kFloat);
        fused_rows(xc.data_ptr<float>(), T, w, y.data_ptr<float>());
        return y.view(out_shape);
    }
    at::Tensor y = at::empty({T, w.out}, x.options());
    const int64_t step = tile_rows(w.in);
    for (int64_t r0 = 0; r0 < w.out; r0 += step) {
        const int64_t r1 = std::min(w.out, r0 + step);
        const at::Tensor tile = packed_dequantize_rows(w, r0, r1).to(x.device()).to(x.scalar_type());
        y.narrow(1, r0, r1 - r0).copy_(at::mm(x2, tile.t()));
    }
    return y.view(out_shape);
}

}  // namespace saliq
