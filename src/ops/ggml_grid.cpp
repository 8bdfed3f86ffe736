#include "saliq/ggml_grid.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

// ggml's kvalues_iq4nl.
constexpr float kIq4nlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

float fp16_round(float x) { return static_cast<float>(c10::Half(x)); }
uint16_t fp16_bits(float x) { return c10::Half(x).x; }
float fp16_value(const uint8_t* p) {
    uint16_t bits;
    std::memcpy(&bits, p, 2);
    return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}
void put_fp16(uint8_t* p, float x) {
    const uint16_t bits = fp16_bits(x);
    std::memcpy(p, &bits, 2);
}
int nearest(float x) { return static_cast<int>(std::nearbyint(x)); }
int clampi(int v, int lo, int hi) { return std::min(hi, std::max(lo, v)); }

// One block in saliq's terms: the stored scales and the codes (0 .. 2^bits − 1; Q8_0's int8 + 128, Q3_K's q + 4).
struct Block {
    float d = 0.0f, dmin = 0.0f;  // fp16 values; dmin is Q4_1's m
    int sc[16] = {}, mn[16] = {};  // k-quants' sub-block scales and mins as stored (Q3_K: signed scale + 32)
    uint8_t q[256] = {};
};

// Scale and offset of sub-block j, as ggml's dequantizers compute them in fp32.
void group_scale_offset(const Block& b, const GgmlGridTraits& t, int j, float& s, float& o) {
    switch (t.grid) {
        case GgmlGrid::kQ4_1: s = b.d; o = b.dmin; return;
        case GgmlGrid::kQ2_K:
        case GgmlGrid::kQ4_K: s = b.d * static_cast<float>(b.sc[j]); o = -(b.dmin * static_cast<float>(b.mn[j])); return;
        case GgmlGrid::kQ3_K: s = b.d * static_cast<float>(b.sc[j] - 32); o = -4.0f * s; return;
        default: s = b.d; o = -static_cast<float>(t.zero) * b.d; return;
    }
}

uint8_t nearest_code(float x, float s, float o, const GgmlGridTraits& t) {
    if (t.levels) {
        if (s == 0.0f) return 8;  // level 1 times a zero scale: 0
        const float v = x / s;
        int best = 0;
        for (int i = 1; i < 16; ++i)
            if (std::fabs(kIq4nlLevels[i] - v) < std::fabs(kIq4nlLevels[best] - v)) best = i;
        return static_cast<uint8_t>(best);
    }
    if (s == 0.0f) return static_cast<uint8_t>(t.zero);
    return static_cast<uint8_t>(clampi(nearest((x - o) / s), 0, (1 << t.bits) - 1));
}

void assign_codes(Block& b, const GgmlGridTraits& t, const float* x) {
    for (int j = 0; j < t.block / t.sub_block; ++j) {
        float s, o;
        group_scale_offset(b, t, j, s, o);
        for (int64_t k = j * t.sub_block; k < (j + 1) * t.sub_block; ++k) b.q[k] = nearest_code(x[k], s, o, t);
    }
}

// The value of largest magnitude of a (clipped) range: symmetric types map it to their most negative code.
float signed_extreme(float hi, float lo) { return std::fabs(hi) >= std::fabs(lo) ? hi : lo; }

// With importance weights (GPTQ's diag H, an importance matrix's Σx²): the scale of ŵ = s·l, integer l in
// [lo_code, hi_code], that minimises Σ w (x − s·l)² among the candidates that map the extreme weight near either end
// of the code range — each candidate's codes by rounding, its s by weighted least squares for those codes.
float search_symmetric(const float* x, const float* w, int n, int lo_code, int hi_code, float extreme) {
    if (extreme == 0.0f) return 0.0f;
    float best_s = extreme / static_cast<float>(lo_code), best_err = INFINITY;
    for (const int end : {lo_code, hi_code})
        for (int step = -10; step <= 10; ++step) {
            const float iscale = (static_cast<float>(end) + 0.1f * static_cast<float>(step)) / extreme;
            if (iscale == 0.0f) continue;
            double sxl = 0.0, sll = 0.0;
            for (int i = 0; i < n; ++i) {
                const float l = static_cast<float>(clampi(nearest(iscale * x[i]), lo_code, hi_code));
                sxl += static_cast<double>(w[i]) * x[i] * l;
                sll += static_cast<double>(w[i]) * l * l;
            }
            if (sll <= 0.0) continue;
            const float scale = static_cast<float>(sxl / sll);
            if (scale == 0.0f || !std::isfinite(scale)) continue;
            double err = 0.0;  // with the codes re-rounded against this scale, as they will be
            for (int i = 0; i < n; ++i) {
                const float e = x[i] - scale * static_cast<float>(clampi(nearest(x[i] / scale), lo_code, hi_code));
                err += static_cast<double>(w[i]) * e * e;
            }
            if (err < best_err) best_err = static_cast<float>(err), best_s = scale;
        }
    return best_s;
}

// The same for ŵ = s·l + o, l in [0, nmax], o free or (k-quants, whose mins are subtracted) at most 0: candidates
// spread the range over nmax ± 1 steps; s and o by weighted least squares for each candidate's codes.
void search_asymmetric(const float* x, const float* w, int n, int nmax, bool offset_nonpositive, float& s, float& o) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
    if (offset_nonpositive) lo = std::min(lo, 0.0f);
    s = (hi - lo) / static_cast<float>(nmax), o = lo;
    if (hi <= lo) return;
    auto error = [&](float sc, float off) {
        double err = 0.0;
        for (int i = 0; i < n; ++i) {
            const float e = x[i] - (sc * static_cast<float>(clampi(nearest((x[i] - off) / sc), 0, nmax)) + off);
            err += static_cast<double>(w[i]) * e * e;
        }
        return err;
    };
    double best = error(s, o);
    for (int step = -10; step <= 10; ++step) {
        const float iscale = (static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / (hi - lo);
        double sw = 0, sl = 0, sll = 0, sx = 0, slx = 0;
        for (int i = 0; i < n; ++i) {
            const double l = clampi(nearest(iscale * (x[i] - lo)), 0, nmax), wi = w[i];
            sw += wi, sl += wi * l, sll += wi * l * l, sx += wi * x[i], slx += wi * l * x[i];
        }
        const double det = sw * sll - sl * sl;
        if (det <= 0.0) continue;
        double sc = (sw * slx - sl * sx) / det, off = (sll * sx - sl * slx) / det;
        if (offset_nonpositive && off > 0.0) off = 0.0, sc = slx / sll;
        if (!(sc > 0.0)) continue;
        const double err = error(static_cast<float>(sc), static_cast<float>(off));
        if (err < best) best = err, s = static_cast<float>(sc), o = static_cast<float>(off);
    }
}

// Scales of one block from each sub-block's range [lo_j, hi_j] (clipped or not), or with importance weights `wt`
// from the searches above; codes after.
Block fit_block(const GgmlGridTraits& t, const float* x, const float* hi, const float* lo, const float* wt) {
    Block b;
    const int subs = static_cast<int>(t.block / t.sub_block);
    const int sub = static_cast<int>(t.sub_block);
    switch (t.grid) {
        case GgmlGrid::kQ4_0:
        case GgmlGrid::kQ5_0:
            b.d = fp16_round(wt ? search_symmetric(x, wt, sub, -t.zero, (1 << t.bits) - 1 - t.zero,
                                                   signed_extreme(hi[0], lo[0]))
                                : signed_extreme(hi[0], lo[0]) / -static_cast<float>(t.zero));
            break;
        case GgmlGrid::kQ8_0:
            b.d = fp16_round(std::max(std::fabs(hi[0]), std::fabs(lo[0])) / 127.0f);
            break;
        case GgmlGrid::kQ4_1:
            if (wt) {
                float sc, off;
                search_asymmetric(x, wt, sub, 15, false, sc, off);
                b.d = fp16_round(sc), b.dmin = fp16_round(off);
                break;
            }
            b.dmin = fp16_round(lo[0]);
            b.d = fp16_round((hi[0] - lo[0]) / 15.0f);
            break;
        case GgmlGrid::kIQ4_NL: {
            // The block's extreme on the lowest level or on the highest: the better of the two for these weights.
            const float mx = signed_extreme(hi[0], lo[0]);
            float best_err = INFINITY;
            for (const float d : {fp16_round(mx / kIq4nlLevels[0]), fp16_round(mx / kIq4nlLevels[15])}) {
                Block c;
                c.d = d;
                assign_codes(c, t, x);
                float err = 0.0f;
                for (int64_t k = 0; k < t.block; ++k) {
                    const float e = x[k] - d * kIq4nlLevels[c.q[k]];
                    err += (wt ? wt[k] : 1.0f) * e * e;
                }
                if (err < best_err) best_err = err, b = c;
            }
            return b;
        }
        case GgmlGrid::kQ2_K:
        case GgmlGrid::kQ4_K: {
            // Per sub-block: ŵ = s·q − m over [min(lo, 0), hi]; s and m quantized to `levels` against the block's d, dmin.
            const float nmax = static_cast<float>((1 << t.bits) - 1);
            const int levels = t.grid == GgmlGrid::kQ2_K ? 15 : 63;
            float scale[16], mins[16], max_scale = 0.0f, max_min = 0.0f;
            for (int j = 0; j < subs; ++j) {
                if (wt) {
                    float o;
                    search_asymmetric(x + j * sub, wt + j * sub, sub, static_cast<int>(nmax), true, scale[j], o);
                    mins[j] = -o;
                } else {
                    const float l = std::min(lo[j], 0.0f), h = std::max(hi[j], l);
                    scale[j] = (h - l) / nmax;
                    mins[j] = -l;
                }
                max_scale = std::max(max_scale, scale[j]);
                max_min = std::max(max_min, mins[j]);
            }
            b.d = fp16_round(max_scale / static_cast<float>(levels));
            b.dmin = fp16_round(max_min / static_cast<float>(levels));
            for (int j = 0; j < subs; ++j) {
                b.sc[j] = b.d > 0.0f ? clampi(nearest(scale[j] / b.d), 0, levels) : 0;
                b.mn[j] = b.dmin > 0.0f ? clampi(nearest(mins[j] / b.dmin), 0, levels) : 0;
            }
            break;
        }
        case GgmlGrid::kQ3_K: {
            // Per sub-block a signed scale mapping its extreme to code −4; the scales as 6-bit signed integers of d.
            float scale[16], max_scale = 0.0f;
            for (int j = 0; j < subs; ++j) {
                scale[j] = wt ? search_symmetric(x + j * sub, wt + j * sub, sub, -4, 3, signed_extreme(hi[j], lo[j]))
                              : signed_extreme(hi[j], lo[j]) / -4.0f;
                if (std::fabs(scale[j]) > std::fabs(max_scale)) max_scale = scale[j];
            }
            b.d = fp16_round(max_scale / -32.0f);
            for (int j = 0; j < subs; ++j) b.sc[j] = (b.d != 0.0f ? clampi(nearest(scale[j] / b.d), -32, 31) : 0) + 32;
            break;
        }
        case GgmlGrid::kNone: throw Error("internal: fitting a block of no grid");
    }
    assign_codes(b, t, x);
    return b;
}

void encode_block(const Block& b, const GgmlGridTraits& t, uint8_t* out) {
    std::memset(out, 0, static_cast<size_t>(t.block_bytes));
    switch (t.grid) {
        case GgmlGrid::kQ4_0:
        case GgmlGrid::kIQ4_NL:
            put_fp16(out, b.d);
            for (int j = 0; j < 16; ++j) out[2 + j] = static_cast<uint8_t>(b.q[j] | (b.q[j + 16] << 4));
            return;
        case GgmlGrid::kQ4_1:
            put_fp16(out, b.d);
            put_fp16(out + 2, b.dmin);
            for (int j = 0; j < 16; ++j) out[4 + j] = static_cast<uint8_t>(b.q[j] | (b.q[j + 16] << 4));
            return;
        case GgmlGrid::kQ5_0: {
            put_fp16(out, b.d);
            uint32_t qh = 0;
            for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((b.q[j] >> 4) & 1) << j;
            std::memcpy(out + 2, &qh, 4);
            for (int j = 0; j < 16; ++j) out[6 + j] = static_cast<uint8_t>((b.q[j] & 15) | ((b.q[j + 16] & 15) << 4));
            return;
        }
        case GgmlGrid::kQ8_0:
            put_fp16(out, b.d);
            for (int j = 0; j < 32; ++j) out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(b.q[j] - 128));
            return;
        case GgmlGrid::kQ2_K: {
            for (int j = 0; j < 16; ++j) out[j] = static_cast<uint8_t>(b.sc[j] | (b.mn[j] << 4));
            uint8_t* qs = out + 16;  // weight h·128 + s·32 + l in bits 2s of qs[h·32 + l]
            for (int e = 0; e < 256; ++e) qs[(e / 128) * 32 + e % 32] |= static_cast<uint8_t>(b.q[e] << (2 * ((e / 32) % 4)));
            put_fp16(out + 80, b.d);
            put_fp16(out + 82, b.dmin);
            return;
        }
        case GgmlGrid::kQ3_K: {
            uint8_t* hmask = out;   // weight i·32 + l: its high bit in bit i of hmask[l]
            uint8_t* qs = out + 32; // low two bits as Q2_K's
            uint8_t* sc = out + 96; // 6-bit scales: low nibble in byte j % 8 (shift 4·(j / 8)), top two in 8 + j % 4
            for (int e = 0; e < 256; ++e) {
                qs[(e / 128) * 32 + e % 32] |= static_cast<uint8_t>((b.q[e] & 3) << (2 * ((e / 32) % 4)));
                hmask[e % 32] |= static_cast<uint8_t>(((b.q[e] >> 2) & 1) << (e / 32));
            }
            for (int j = 0; j < 16; ++j) {
                sc[j % 8] |= static_cast<uint8_t>((b.sc[j] & 15) << (4 * (j / 8)));
                sc[8 + j % 4] |= static_cast<uint8_t>(((b.sc[j] >> 4) & 3) << (2 * (j / 4)));
            }
            put_fp16(out + 108, b.d);
            return;
        }
        case GgmlGrid::kQ4_K: {
            put_fp16(out, b.d);
            put_fp16(out + 2, b.dmin);
            uint8_t* sc = out + 4;  // 6-bit scales and mins of 8 sub-blocks in 12 bytes
            for (int j = 0; j < 4; ++j) {
                sc[j] = static_cast<uint8_t>(b.sc[j] | ((b.sc[j + 4] >> 4) << 6));
                sc[j + 4] = static_cast<uint8_t>(b.mn[j] | ((b.mn[j + 4] >> 4) << 6));
                sc[j + 8] = static_cast<uint8_t>((b.sc[j + 4] & 15) | ((b.mn[j + 4] & 15) << 4));
            }
            uint8_t* qs = out + 16;  // weight c·64 + h·32 + l in nibble h of qs[c·32 + l]
            for (int e = 0; e < 256; ++e) qs[(e / 64) * 32 + e % 32] |= static_cast<uint8_t>(b.q[e] << (4 * ((e / 32) % 2)));
            return;
        }
        case GgmlGrid::kNone: break;
    }
    throw Error("internal: encoding a block of no grid");
}

Block decode_block(const uint8_t* in, const GgmlGridTraits& t) {
    Block b;
    switch (t.grid) {
        case GgmlGrid::kQ4_0:
        case GgmlGrid::kIQ4_NL:
            b.d = fp16_value(in);
            for (int j = 0; j < 16; ++j) b.q[j] = in[2 + j] & 15, b.q[j + 16] = in[2 + j] >> 4;
            return b;
        case GgmlGrid::kQ4_1:
            b.d = fp16_value(in);
            b.dmin = fp16_value(in + 2);
            for (int j = 0; j < 16; ++j) b.q[j] = in[4 + j] & 15, b.q[j + 16] = in[4 + j] >> 4;
            return b;
        case GgmlGrid::kQ5_0: {
            b.d = fp16_value(in);
            uint32_t qh;
            std::memcpy(&qh, in + 2, 4);
            for (int j = 0; j < 16; ++j) b.q[j] = in[6 + j] & 15, b.q[j + 16] = in[6 + j] >> 4;
            for (int j = 0; j < 32; ++j) b.q[j] = static_cast<uint8_t>(b.q[j] | (((qh >> j) & 1) << 4));
            return b;
        }
        case GgmlGrid::kQ8_0:
            b.d = fp16_value(in);
            for (int j = 0; j < 32; ++j) b.q[j] = static_cast<uint8_t>(static_cast<int8_t>(in[2 + j]) + 128);
            return b;
        case GgmlGrid::kQ2_K:
            for (int j = 0; j < 16; ++j) b.sc[j] = in[j] & 15, b.mn[j] = in[j] >> 4;
            for (int e = 0; e < 256; ++e) b.q[e] = (in[16 + (e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            b.d = fp16_value(in + 80);
            b.dmin = fp16_value(in + 82);
            return b;
        case GgmlGrid::kQ3_K:
            for (int e = 0; e < 256; ++e) {
                const int low = (in[32 + (e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
                const int high = (in[e % 32] >> (e / 32)) & 1;
                b.q[e] = static_cast<uint8_t>(low | (high << 2));
            }
            for (int j = 0; j < 16; ++j)
                b.sc[j] = ((in[96 + j % 8] >> (4 * (j / 8))) & 15) | (((in[104 + j % 4] >> (2 * (j / 4))) & 3) << 4);
            b.d = fp16_value(in + 108);
            return b;
        case GgmlGrid::kQ4_K:
            b.d = fp16_value(in);
            b.dmin = fp16_value(in + 2);
            for (int j = 0; j < 4; ++j) {
                b.sc[j] = in[4 + j] & 63;
                b.mn[j] = in[8 + j] & 63;
                b.sc[j + 4] = (in[12 + j] & 15) | ((in[4 + j] >> 6) << 4);
                b.mn[j + 4] = (in[12 + j] >> 4) | ((in[8 + j] >> 6) << 4);
            }
            for (int e = 0; e < 256; ++e) b.q[e] = (in[16 + (e / 64) * 32 + e % 32] >> (4 * ((e / 32) % 2))) & 15;
            return b;
        case GgmlGrid::kNone: break;
    }
    throw Error("internal: decoding a block of no grid");
}

void check_row_width(const GgmlGridTraits& t, int64_t in) {
    if (t.grid == GgmlGrid::kNone) throw Error("internal: no GGML grid");
    if (in <= 0 || in % t.block != 0)
        throw ConfigError(strprintf("%s stores rows in blocks of %lld weights; a row of %lld does not fit", t.name,
                                    (long long)t.block, (long long)in));
}

}  // namespace

at::Tensor iq4_nl_levels() { return at::tensor(std::vector<float>(kIq4nlLevels, kIq4nlLevels + 16), at::kFloat); }

at::Tensor ggml_quantize_rows(const at::Tensor& weight, GgmlGrid grid, const at::Tensor& group_max,
                              const at::Tensor& group_min, const at::Tensor& importance) {
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    const int64_t out = weight.size(0), in = weight.size(1);
    check_row_width(t, in);
    const int64_t blocks = in / t.block, groups = in / t.sub_block;
    const at::Tensor w = weight.detach().to(at::kCPU).to(at::kFloat).contiguous();
    at::Tensor hi, lo;
    if (group_max.defined()) {
        hi = group_max.detach().to(at::kCPU).to(at::kFloat).contiguous();
        lo = group_min.detach().to(at::kCPU).to(at::kFloat).contiguous();
        if (hi.sizes() != at::IntArrayRef({out, groups}) || lo.sizes() != hi.sizes())
            throw Error("internal: clipped ranges of the wrong shape for " + std::string(t.name));
    } else {
        const at::Tensor g = w.view({out, groups, t.sub_block});
        hi = std::get<0>(g.max(2)).contiguous();
        lo = std::get<0>(g.min(2)).contiguous();
    }
    at::Tensor imp;
    if (importance.defined()) {
        imp = importance.detach().to(at::kCPU).to(at::kFloat).contiguous();
        if (imp.dim() != 1 || imp.size(0) != in) throw Error("internal: importance of the wrong shape for " + std::string(t.name));
        if (!at::isfinite(imp).all().item<bool>() || (imp < 0).any().item<bool>())
            throw NumericError(std::string("importance weights for ") + t.name + " must be finite and non-negative");
    }
    const float* ip = imp.defined() ? imp.data_ptr<float>() : nullptr;
    at::Tensor bytes = at::empty({out, blocks * t.block_bytes}, at::kByte);
    const float* wp = w.data_ptr<float>();
    const float* hp = hi.data_ptr<float>();
    const float* lp = lo.data_ptr<float>();
    uint8_t* bp = bytes.data_ptr<uint8_t>();
    const int64_t subs = t.block / t.sub_block;
    at::parallel_for(0, out, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int64_t k = 0; k < blocks; ++k) {
                const Block b = fit_block(t, wp + r * in + k * t.block, hp + r * groups + k * subs,
                                          lp + r * groups + k * subs, ip ? ip + k * t.block : nullptr);
                encode_block(b, t, bp + (r * blocks + k) * t.block_bytes);
            }
    });
    return bytes;
}

at::Tensor ggml_replace_codes(const at::Tensor& blocks, GgmlGrid grid, const at::Tensor& codes) {
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    const int64_t out = codes.size(0), in = codes.size(1);
    check_row_width(t, in);
    const at::Tensor c = codes.to(at::kCPU).to(at::kByte).contiguous();
    at::Tensor bytes = blocks.to(at::kCPU).contiguous().clone();
    const int64_t n = in / t.block;
    if (bytes.dim() != 2 || bytes.size(0) != out || bytes.size(1) != n * t.block_bytes)
        throw Error("internal: blocks of the wrong shape for " + std::string(t.name));
    const int maxq = (1 << t.bits) - 1;
    if (c.numel() > 0 && c.max().item<int64_t>() > maxq) throw Error("internal: codes past the grid's width");
    uint8_t* bp = bytes.data_ptr<uint8_t>();
    const uint8_t* cp = c.data_ptr<uint8_t>();
    for (int64_t r = 0; r < out; ++r)
        for (int64_t k = 0; k < n; ++k) {
            uint8_t* p = bp + (r * n + k) * t.block_bytes;
            Block b = decode_block(p, t);
            std::memcpy(b.q, cp + r * in + k * t.block, static_cast<size_t>(t.block));
            encode_block(b, t, p);
        }
    return bytes;
}

at::Tensor ggml_encode_blocks(GgmlGrid grid, const at::Tensor& codes, const at::Tensor& d, const at::Tensor& m) {
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    const int64_t out = codes.size(0), in = codes.size(1);
    check_row_width(t, in);
    if (t.block != 32) throw Error(std::string("internal: ") + t.name + " is not a block-32 type");
    const int64_t n = in / 32;
    const at::Tensor c = codes.to(at::kCPU).to(at::kByte).contiguous();
    const at::Tensor dd = d.to(at::kCPU).to(at::kFloat).contiguous();
    const at::Tensor mm = m.defined() ? m.to(at::kCPU).to(at::kFloat).contiguous() : at::zeros_like(dd);
    if (dd.sizes() != at::IntArrayRef({out, n}) || mm.sizes() != dd.sizes())
        throw Error("internal: block scales of the wrong shape");
    if (c.numel() > 0 && c.max().item<int64_t>() > (1 << t.bits) - 1) throw Error("internal: codes past the grid's width");
    at::Tensor bytes = at::empty({out, n * t.block_bytes}, at::kByte);
    const uint8_t* cp = c.data_ptr<uint8_t>();
    const float* dp = dd.data_ptr<float>();
    const float* mp = mm.data_ptr<float>();
    uint8_t* bp = bytes.data_ptr<uint8_t>();
    for (int64_t r = 0; r < out; ++r)
        for (int64_t k = 0; k < n; ++k) {
            Block b;
            b.d = fp16_round(dp[r * n + k]);
            b.dmin = fp16_round(mp[r * n + k]);
            std::memcpy(b.q, cp + r * in + k * 32, 32);
            encode_block(b, t, bp + (r * n + k) * t.block_bytes);
        }
    return bytes;
}

GgmlDecoded ggml_decode(const at::Tensor& blocks, GgmlGrid grid, int64_t in, const std::string& origin) {
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    if (t.grid == GgmlGrid::kNone) throw FormatError(origin, "no GGML grid");
    if (in <= 0 || in % t.block != 0)
        throw FormatError(origin, strprintf("rows of %lld weights cannot be %s (blocks of %lld)", (long long)in, t.name,
                                            (long long)t.block));
    const int64_t n = in / t.block, row_bytes = n * t.block_bytes;
    if (blocks.dim() != 2 || blocks.scalar_type() != at::kByte || blocks.size(1) != row_bytes)
        throw FormatError(origin, strprintf("%s blocks must be uint8 [out, %lld] for rows of %lld weights, not %s %s",
                                            t.name, (long long)row_bytes, (long long)in,
                                            std::string(c10::toString(blocks.scalar_type())).c_str(),
                                            shape_to_string(blocks.sizes().vec()).c_str()));
    const int64_t out = blocks.size(0), groups = in / t.sub_block, subs = t.block / t.sub_block;
    const at::Tensor bytes = blocks.to(at::kCPU).contiguous();
    GgmlDecoded d;
    d.codes = at::empty({out, in}, at::kByte);
    d.scales = at::empty({out, groups}, at::kFloat);
    d.offsets = at::empty({out, groups}, at::kFloat);
    const uint8_t* bp = bytes.data_ptr<uint8_t>();
    uint8_t* cp = d.codes.data_ptr<uint8_t>();
    float* sp = d.scales.data_ptr<float>();
    float* op = d.offsets.data_ptr<float>();
    bool finite = true;
    for (int64_t r = 0; r < out; ++r)
        for (int64_t k = 0; k < n; ++k) {
            const Block b = decode_block(bp + (r * n + k) * t.block_bytes, t);
            finite = finite && std::isfinite(b.d) && std::isfinite(b.dmin);
            std::memcpy(cp + r * in + k * t.block, b.q, static_cast<size_t>(t.block));
            for (int j = 0; j < subs; ++j)
                group_scale_offset(b, t, j, sp[r * groups + k * subs + j], op[r * groups + k * subs + j]);
        }
    if (!finite) throw FormatError(origin, std::string(t.name) + " blocks hold a scale that is not finite");
    return d;
}

at::Tensor ggml_nearest_codes(const at::Tensor& w, const at::Tensor& scale, const at::Tensor& offset, GgmlGrid grid) {
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    if (!t.levels) {
        const at::Tensor safe = at::where(scale == 0, at::ones_like(scale), scale);
        at::Tensor q = at::clamp(at::round((w - offset) / safe), 0, (1 << t.bits) - 1);
        q = at::where(scale == 0, at::full_like(q, static_cast<double>(t.zero)), q);
        return q.to(at::kByte);
    }
    const at::Tensor levels = iq4_nl_levels().to(w.device());
    const at::Tensor safe = at::where(scale == 0, at::ones_like(scale), scale);
    const at::Tensor v = (w / safe).unsqueeze(-1);
    at::Tensor q = (v - levels).abs().argmin(-1);
    q = at::where(scale == 0, at::full_like(q, 8), q);
    return q.to(at::kByte);
}

at::Tensor ggml_code_values(const at::Tensor& codes, GgmlGrid grid) {
    if (!ggml_grid_traits(grid).levels) return codes.to(at::kFloat);
    return iq4_nl_levels().to(codes.device()).index_select(0, codes.flatten().to(at::kLong)).view(codes.sizes());
}

}  // namespace saliq
