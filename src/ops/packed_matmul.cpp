#include "saliq/packed_matmul.h"

#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

// Rows per dequantized tile: about 1 MiB of fp32, so a tile stays in cache while the GEMM reuses it.
int64_t tile_rows(int64_t in) { return std::max<int64_t>(16, std::min<int64_t>(1024, (int64_t{1} << 18) / in)); }

// Batches of at most this many token rows take the fused dequantize-dot path (decode is bandwidth-bound).
constexpr int64_t kFusedMaxRows = 4;

inline float code_at(const uint8_t* row, int64_t k, int field_bits, int per_byte, int mask) {
    return static_cast<float>((row[k / per_byte] >> ((k % per_byte) * field_bits)) & mask);
}

// Row o dequantized into out[0, in).
void dequantize_row(const PackedWeight& w, int64_t o, float* out) {
    const int64_t row_bytes = w.data.size(1), G = w.scales.size(1);
    const uint8_t* row = w.data.data_ptr<uint8_t>() + o * row_bytes;
    const float* s = w.scales.data_ptr<float>() + o * G;
    const float* m = w.offsets.data_ptr<float>() + o * G;
    const int fb = w.field_bits, per = w.per_byte(), mask = (1 << fb) - 1;
    if (!w.g_idx.defined() || w.g_idx.numel() == 0) {
        for (int64_t g = 0, k0 = 0; k0 < w.in; ++g, k0 += w.group_size) {
            const int64_t k1 = std::min(w.in, k0 + w.group_size);
            const float sg = s[g], mg = m[g];
            if (fb == 2 && k0 % 4 == 0) {
                int64_t k = k0;
                for (; k + 4 <= k1; k += 4) {
                    const uint8_t b = row[k / 4];
                    out[k] = sg * static_cast<float>(b & 3) + mg;
                    out[k + 1] = sg * static_cast<float>((b >> 2) & 3) + mg;
                    out[k + 2] = sg * static_cast<float>((b >> 4) & 3) + mg;
                    out[k + 3] = sg * static_cast<float>(b >> 6) + mg;
                }
                for (; k < k1; ++k) out[k] = sg * code_at(row, k, fb, per, mask) + mg;
            } else {
                for (int64_t k = k0; k < k1; ++k) out[k] = sg * code_at(row, k, fb, per, mask) + mg;
            }
        }
        return;
    }
    const int32_t* gi = w.g_idx.data_ptr<int32_t>();
    for (int64_t k = 0; k < w.in; ++k) out[k] = s[gi[k]] * code_at(row, k, fb, per, mask) + m[gi[k]];
}

// y[t, o] = Σ_g s_g Σ_{k∈g} x_k q_k + m_g Σ_{k∈g} x_k, per row, codes read once per row.
void fused_rows(const float* x, int64_t T, const PackedWeight& w, float* y) {
    const int64_t in = w.in, out = w.out, G = w.scales.size(1), row_bytes = w.data.size(1);
    const bool natural = !w.g_idx.defined() || w.g_idx.numel() == 0;
    // Σ_{k∈g} x_k for every token and group.
    std::vector<float> xsum(static_cast<size_t>(T * G), 0.0f);
    const int32_t* gi = natural ? nullptr : w.g_idx.data_ptr<int32_t>();
    for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < in; ++k) xsum[t * G + (natural ? k / w.group_size : gi[k])] += x[t * in + k];
    const uint8_t* data = w.data.data_ptr<uint8_t>();
    const float* scales = w.scales.data_ptr<float>();
    const float* offsets = w.offsets.data_ptr<float>();
    const int fb = w.field_bits, per = w.per_byte(), mask = (1 << fb) - 1;
    at::parallel_for(0, out, 16, [&](int64_t o0, int64_t o1) {
        std::vector<float> dots(static_cast<size_t>(G));
        for (int64_t o = o0; o < o1; ++o) {
            const uint8_t* row = data + o * row_bytes;
            for (int64_t t = 0; t < T; ++t) {
                const float* xt = x + t * in;
                std::fill(dots.begin(), dots.end(), 0.0f);
                if (natural) {
                    for (int64_t g = 0, k0 = 0; k0 < in; ++g, k0 += w.group_size) {
                        const int64_t k1 = std::min(in, k0 + w.group_size);
                        float acc = 0.0f;
                        int64_t k = k0;
                        if (fb == 2 && k0 % 4 == 0) {
                            for (; k + 4 <= k1; k += 4) {
                                const uint8_t b = row[k / 4];
                                acc += xt[k] * static_cast<float>(b & 3) + xt[k + 1] * static_cast<float>((b >> 2) & 3) +
                                       xt[k + 2] * static_cast<float>((b >> 4) & 3) + xt[k + 3] * static_cast<float>(b >> 6);
                            }
                        }
                        for (; k < k1; ++k) acc += xt[k] * code_at(row, k, fb, per, mask);
                        dots[static_cast<size_t>(g)] = acc;
                    }
                } else {
                    for (int64_t k = 0; k < in; ++k) dots[static_cast<size_t>(gi[k])] += xt[k] * code_at(row, k, fb, per, mask);
                }
                const float* s = scales + o * G;
                const float* m = offsets + o * G;
                const float* xs = xsum.data() + t * G;
                float acc = 0.0f;
                for (int64_t g = 0; g < G; ++g) acc += s[g] * dots[static_cast<size_t>(g)] + m[g] * xs[g];
                y[t * out + o] = acc;
            }
        }
    });
}

}  // namespace

int64_t PackedWeight::bytes() const {
    int64_t n = 0;
    for (const at::Tensor* t : {&data, &scales, &offsets, &g_idx})
        if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
    return n;
}

PackedWeight pack_weight(const QuantizedTensor& q) {
    PackedWeight w;
    w.bits = q.spec.bits;
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
    w.offsets = (-(w.scales * q.zeros.to(at::kCPU).to(at::kFloat))).contiguous();
    const at::Tensor natural = natural_group_index(w.in, q.spec);
    if (q.g_idx.defined() && !at::equal(q.g_idx.to(at::kCPU).to(at::kLong), natural))
        w.g_idx = q.g_idx.to(at::kCPU).to(at::kInt).contiguous();
    return w;
}

at::Tensor packed_dequantize_rows(const PackedWeight& w, int64_t r0, int64_t r1) {
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
