#include "saliq/ggml_grid.h"

#include <cstring>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include "saliq/error.h"
#include "saliq/packed_matmul.h"
#include "saliq/quantizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

float half_at(const uint8_t* p) {
    uint16_t bits;
    std::memcpy(&bits, p, 2);
    return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}
void put_half(std::vector<uint8_t>& v, size_t at, float x) {
    const uint16_t bits = c10::Half(x).x;
    std::memcpy(v.data() + at, &bits, 2);
}

// ggml's dequantizers, transcribed from the layouts (gguf-py's quants.py / ggml-quants.c), written apart from
// saliq's codec so that the two are checked against each other.
std::vector<float> reference_dequantize(GgmlGrid grid, const uint8_t* b) {
    std::vector<float> y;
    switch (grid) {
        case GgmlGrid::kQ4_0:
            for (int j = 0; j < 32; ++j) y.push_back(half_at(b) * static_cast<float>(((b[2 + j % 16] >> (4 * (j / 16))) & 15) - 8));
            break;
        case GgmlGrid::kQ4_1:
            for (int j = 0; j < 32; ++j)
                y.push_back(half_at(b) * static_cast<float>((b[4 + j % 16] >> (4 * (j / 16))) & 15) + half_at(b + 2));
            break;
        case GgmlGrid::kQ5_0: {
            uint32_t qh;
            std::memcpy(&qh, b + 2, 4);
            for (int j = 0; j < 32; ++j) {
                const int q = ((b[6 + j % 16] >> (4 * (j / 16))) & 15) | (((qh >> j) & 1) << 4);
                y.push_back(half_at(b) * static_cast<float>(q - 16));
            }
            break;
        }
        case GgmlGrid::kQ8_0:
            for (int j = 0; j < 32; ++j) y.push_back(half_at(b) * static_cast<float>(static_cast<int8_t>(b[2 + j])));
            break;
        case GgmlGrid::kIQ4_NL: {
            const int levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
            for (int j = 0; j < 32; ++j) y.push_back(half_at(b) * static_cast<float>(levels[(b[2 + j % 16] >> (4 * (j / 16))) & 15]));
            break;
        }
        case GgmlGrid::kQ2_K: {  // scales[16] qs[64] d dmin
            const float d = half_at(b + 80), dmin = half_at(b + 82);
            int is = 0;
            for (int n = 0; n < 2; ++n) {  // two halves of 128, as dequantize_row_q2_K walks them
                const uint8_t* q = b + 16 + 32 * n;
                for (int shift = 0; shift < 8; shift += 2)
                    for (int half = 0; half < 2; ++half) {
                        const uint8_t sc = b[is++];
                        for (int l = 0; l < 16; ++l)
                            y.push_back(d * static_cast<float>(sc & 15) * static_cast<float>((q[l + 16 * half] >> shift) & 3) -
                                        dmin * static_cast<float>(sc >> 4));
                    }
            }
            break;
        }
        case GgmlGrid::kQ3_K: {  // hmask[32] qs[64] scales[12] d
            const float d = half_at(b + 108);
            int sc[16];
            for (int j = 0; j < 16; ++j)
                sc[j] = (((b[96 + j % 8] >> (4 * (j / 8))) & 15) | (((b[104 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            for (int e = 0; e < 256; ++e) {
                const int low = (b[32 + (e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
                const int high = (b[e % 32] >> (e / 32)) & 1;
                y.push_back(d * static_cast<float>(sc[e / 16]) * static_cast<float>(low - (high ? 0 : 4)));
            }
            break;
        }
        case GgmlGrid::kQ4_K: {  // d dmin scales[12] qs[128]
            const float d = half_at(b), dmin = half_at(b + 2);
            const uint8_t* s = b + 4;
            for (int j = 0; j < 8; ++j) {
                const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
                const int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
                for (int l = 0; l < 32; ++l) {
                    const int q = (b[16 + (j / 2) * 32 + l] >> (4 * (j % 2))) & 15;
                    y.push_back(d * static_cast<float>(sc) * static_cast<float>(q) - dmin * static_cast<float>(m));
                }
            }
            break;
        }
        case GgmlGrid::kNone: break;
    }
    return y;
}

const GgmlGrid kGrids[] = {GgmlGrid::kQ4_0, GgmlGrid::kQ4_1, GgmlGrid::kQ5_0, GgmlGrid::kQ8_0,
                           GgmlGrid::kIQ4_NL, GgmlGrid::kQ2_K, GgmlGrid::kQ3_K, GgmlGrid::kQ4_K};

TEST(GgmlGrid, HandWrittenBlocksDecodeToGgmlValues) {
    // Q4_0, d = 0.5: byte j holds weight j (low nibble) and weight j + 16 (high nibble); ŵ = d·(q − 8).
    std::vector<uint8_t> q4(18, 0);
    put_half(q4, 0, 0.5f);
    q4[2] = 0xF0;  // weight 0: 0 -> -4, weight 16: 15 -> 3.5
    q4[3] = 0x98;  // weight 1: 8 -> 0, weight 17: 9 -> 0.5
    const QuantizedTensor a = ggml_quantized(at::tensor(std::vector<int64_t>(q4.begin(), q4.end()), at::kByte).view({1, 18}),
                                             GgmlGrid::kQ4_0, 1, 32, "test");
    const at::Tensor w = a.dequantize();
    EXPECT_FLOAT_EQ(w[0][0].item<float>(), -4.0f);
    EXPECT_FLOAT_EQ(w[0][16].item<float>(), 3.5f);
    EXPECT_FLOAT_EQ(w[0][1].item<float>(), 0.0f);
    EXPECT_FLOAT_EQ(w[0][17].item<float>(), 0.5f);
    EXPECT_FLOAT_EQ(w[0][2].item<float>(), -4.0f);  // code 0

    // Q2_K with d = 1, dmin = 0.25: sub-block 0 scale 3 min 2 (byte 0x23), weight 0's code 3 in qs[0] bits 0-1,
    // weight 32 (shift 2) code 1, weight 128 (second half) code 2 in qs[32]: ŵ = 1·sc·q − 0.25·m.
    std::vector<uint8_t> q2(84, 0);
    q2[0] = 0x23;
    q2[2] = 0x41;  // sub-block 2 (weights 32..47): scale 1, min 4
    q2[8] = 0x05;  // sub-block 8 (weights 128..143): scale 5, min 0
    q2[16] = 0x03 | (0x01 << 2);
    q2[16 + 32] = 0x02;
    put_half(q2, 80, 1.0f);
    put_half(q2, 82, 0.25f);
    const at::Tensor w2 = ggml_quantized(at::tensor(std::vector<int64_t>(q2.begin(), q2.end()), at::kByte).view({1, 84}),
                                         GgmlGrid::kQ2_K, 1, 256, "test").dequantize();
    EXPECT_FLOAT_EQ(w2[0][0].item<float>(), 3.0f * 3.0f - 0.5f);
    EXPECT_FLOAT_EQ(w2[0][1].item<float>(), -0.5f);
    EXPECT_FLOAT_EQ(w2[0][32].item<float>(), 1.0f - 1.0f);
    EXPECT_FLOAT_EQ(w2[0][33].item<float>(), -1.0f);
    EXPECT_FLOAT_EQ(w2[0][128].item<float>(), 10.0f);
}

TEST(GgmlGrid, EncoderAgreesWithTheReferenceDequantizerOnEveryType) {
    at::manual_seed(3);
    at::Tensor w = at::randn({6, 512});
    w[0].zero_();                    // an all-zero row
    w[1].narrow(0, 0, 40).fill_(2);  // constant stretches
    w[2] *= 1000;                    // wide
    w[3].abs_();                     // one-signed rows: mins of zero and of the sub-block
    w[4].neg_().abs_().neg_();
    for (GgmlGrid grid : kGrids) {
        const GgmlGridTraits& t = ggml_grid_traits(grid);
        const at::Tensor blocks = ggml_quantize_rows(w, grid);
        ASSERT_EQ(blocks.size(1), 512 / t.block * t.block_bytes) << t.name;
        const QuantizedTensor q = ggml_quantized(blocks, grid, 6, 512, t.name);
        const at::Tensor mine = q.dequantize();
        const uint8_t* p = blocks.data_ptr<uint8_t>();
        for (int64_t r = 0; r < 6; ++r)
            for (int64_t k = 0; k < 512 / t.block; ++k) {
                const std::vector<float> ref = reference_dequantize(grid, p + (r * (512 / t.block) + k) * t.block_bytes);
                for (int64_t e = 0; e < t.block; ++e)
                    ASSERT_EQ(mine[r][k * t.block + e].item<float>(), ref[static_cast<size_t>(e)])
                        << t.name << " row " << r << " weight " << k * t.block + e;
            }
        EXPECT_TRUE(at::equal(mine[0], at::zeros({512}))) << t.name;
        // Rounding error: within a few grid steps of the weight (k-quants also round their sub-block scales).
        const at::Tensor rel = (mine - w).norm() / w.norm();
        const double bound = t.bits == 8 ? 0.01 : t.bits >= 4 ? 0.15 : t.bits == 3 ? 0.3 : 0.6;
        EXPECT_LT(rel.item<double>(), bound) << t.name;
        // Codes replaced by themselves leave the blocks as they were; a packed linear computes the same products.
        EXPECT_TRUE(at::equal(ggml_replace_codes(blocks, grid, q.codes), blocks)) << t.name;
        const at::Tensor x = at::randn({3, 512});
        const at::Tensor y = packed_linear(x, pack_weight(q));
        EXPECT_TRUE(at::allclose(y, at::mm(x, mine.t()), 1e-4, 1e-2)) << t.name;
        const at::Tensor y1 = packed_linear(x.narrow(0, 0, 1).repeat({6, 1}), pack_weight(q));  // tiled path
        EXPECT_TRUE(at::allclose(y1[0], y[0], 1e-4, 1e-2)) << t.name;
    }
}

TEST(GgmlGrid, ClippedRangesNarrowTheGrid) {
    at::manual_seed(4);
    const at::Tensor w = at::randn({2, 256});
    for (GgmlGrid grid : kGrids) {
        const GgmlGridTraits& t = ggml_grid_traits(grid);
        const at::Tensor g = w.view({2, 256 / t.sub_block, t.sub_block});
        const at::Tensor hi = std::get<0>(g.max(2)), lo = std::get<0>(g.min(2));
        const at::Tensor full = ggml_quantized(ggml_quantize_rows(w, grid, hi, lo), grid, 2, 256, "t").dequantize();
        const at::Tensor clip = ggml_quantized(ggml_quantize_rows(w, grid, hi * 0.5, lo * 0.5), grid, 2, 256, "t").dequantize();
        EXPECT_TRUE(at::equal(full, ggml_quantized(ggml_quantize_rows(w, grid), grid, 2, 256, "t").dequantize())) << t.name;
        EXPECT_LT(clip.abs().max().item<float>(), full.abs().max().item<float>()) << t.name;
    }
}

// Importance weights (an imatrix, GPTQ's diag H) make every type but Q8_0 search its scales: the importance-weighted
// error falls below the range fit's on heavy-tailed rows with a few important columns, the blocks still decode as
// ggml's reference does, and uniform importance is no worse than the range fit; bad weights are refused.
TEST(GgmlGrid, ImportanceWeightsSearchScalesThatLowerTheWeightedError) {
    at::manual_seed(5);
    const at::Tensor w = at::randn({16, 512}) * at::exp(0.5 * at::randn({16, 512}));  // heavy tails, as LLM rows
    const at::Tensor importance = at::exp(2.0 * at::randn({512}));                     // a few columns matter most
    for (GgmlGrid grid : kGrids) {
        const GgmlGridTraits& t = ggml_grid_traits(grid);
        auto weighted_error = [&](const at::Tensor& blocks, const at::Tensor& imp) {
            const at::Tensor d = ggml_quantized(blocks, grid, 16, 512, t.name).dequantize();
            return ((d - w).pow(2) * imp).sum().item<double>();
        };
        const at::Tensor plain = ggml_quantize_rows(w, grid);
        const at::Tensor searched = ggml_quantize_rows(w, grid, {}, {}, importance);
        const uint8_t* p = searched.data_ptr<uint8_t>();
        const at::Tensor mine = ggml_quantized(searched, grid, 16, 512, t.name).dequantize();
        for (int64_t k = 0; k < 512 / t.block; ++k) {  // row 0's blocks
            const std::vector<float> ref = reference_dequantize(grid, p + k * t.block_bytes);
            for (int64_t e = 0; e < t.block; ++e) ASSERT_EQ(mine[0][k * t.block + e].item<float>(), ref[e]) << t.name;
        }
        if (grid == GgmlGrid::kQ8_0) {
            EXPECT_TRUE(at::equal(searched, plain));
            continue;
        }
        EXPECT_LT(weighted_error(searched, importance), 0.97 * weighted_error(plain, importance)) << t.name;
        const at::Tensor ones = at::ones({512});
        EXPECT_LE(weighted_error(ggml_quantize_rows(w, grid, {}, {}, ones), ones), 1.001 * weighted_error(plain, ones))
            << t.name;
    }
    at::Tensor negative = importance.clone();
    negative[3] = -1.0;
    EXPECT_THROW(ggml_quantize_rows(w, GgmlGrid::kQ4_0, {}, {}, negative), NumericError);
    EXPECT_THROW(ggml_quantize_rows(w, GgmlGrid::kQ4_0, {}, {}, at::full({512}, NAN)), NumericError);
}

TEST(GgmlGrid, RowsOfOtherWidthsFallBackAsLlamaQuantizeDoes) {
    EXPECT_EQ(ggml_grid_for_row(GgmlGrid::kQ2_K, 512), GgmlGrid::kQ2_K);
    EXPECT_EQ(ggml_grid_for_row(GgmlGrid::kQ2_K, 576), GgmlGrid::kQ4_0);
    EXPECT_EQ(ggml_grid_for_row(GgmlGrid::kQ3_K, 576), GgmlGrid::kQ4_0);
    EXPECT_EQ(ggml_grid_for_row(GgmlGrid::kQ4_K, 1536 + 32), GgmlGrid::kQ5_0);
    EXPECT_EQ(ggml_grid_for_row(GgmlGrid::kQ4_0, 48), GgmlGrid::kNone);
    EXPECT_THROW(ggml_quantize_rows(at::randn({2, 96}), GgmlGrid::kQ4_K), ConfigError);
    EXPECT_EQ(parse_ggml_grid("q3_k"), GgmlGrid::kQ3_K);
    EXPECT_THROW(parse_ggml_grid("q2_K_S"), ConfigError);
    EXPECT_EQ(ggml_grid_of_type(12), GgmlGrid::kQ4_K);
}

TEST(GgmlGrid, MalformedBlocksAreRefused) {
    const at::Tensor blocks = ggml_quantize_rows(at::randn({2, 256}), GgmlGrid::kQ4_K);
    EXPECT_THROW(ggml_quantized(blocks.narrow(1, 0, 100), GgmlGrid::kQ4_K, 2, 256, "t"), FormatError);
    EXPECT_THROW(ggml_quantized(blocks, GgmlGrid::kQ4_K, 3, 256, "t"), FormatError);
    EXPECT_THROW(ggml_quantized(blocks.to(at::kInt), GgmlGrid::kQ4_K, 2, 256, "t"), FormatError);
    at::Tensor nan = blocks.clone();
    nan[0][0] = 0xFF;  // d = fp16 NaN
    nan[0][1] = 0x7F;
    EXPECT_THROW(ggml_quantized(nan, GgmlGrid::kQ4_K, 2, 256, "t"), FormatError);
}

}  // namespace
}  // namespace saliq
