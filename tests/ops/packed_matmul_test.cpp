#include "saliq/packed_matmul.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "packed_fixture.h"
#include "saliq/error.h"

namespace saliq {
namespace {

TEST(PackedMatmul, EveryWidthGroupAndPathMatchesTheDenseReference) {
    int seed = 0;
    for (int bits : {2, 3, 4, 8})
        for (int64_t group : {int64_t{32}, int64_t{64}, int64_t{-1}, int64_t{48}})
            for (bool act_order : {false, true}) {
                // odd widths: a short last group, rows that do not fill their last byte
                const int64_t out = 37, in = group == 48 ? 101 : 130;
                const QuantizedTensor q = random_quantized(bits, out, in, group, act_order, seed++);
                const PackedWeight w = pack_weight(q);
                const at::Tensor dense = q.dequantize();
                // ŵ = s·q + m rounds differently from s·(q - z): an ulp of s·q (2e-6 for 8-bit codes) where they cancel
                ASSERT_TRUE(at::allclose(packed_dequantize_rows(w, 0, out), dense, 1e-5, 1e-5));
                ASSERT_TRUE(at::allclose(packed_dequantize_rows(w, 5, 9), dense.narrow(0, 5, 4), 1e-5, 1e-5));
                for (int64_t tokens : {int64_t{1}, int64_t{3}, int64_t{17}}) {  // fused rows, and tiles
                    const at::Tensor x = at::randn({1, tokens, in});
                    const at::Tensor y = packed_linear(x, w);
                    EXPECT_EQ(y.sizes(), (at::IntArrayRef{1, tokens, out}));
                    const at::Tensor ref = at::linear(x.to(at::kDouble), dense.to(at::kDouble)).to(at::kFloat);
                    EXPECT_TRUE(at::allclose(y, ref, 1e-4, 1e-4))
                        << bits << " bits, g" << group << (act_order ? " act-order" : "") << ", " << tokens
                        << " tokens: max diff " << (y - ref).abs().max().item<double>();
                }
                const at::Tensor xb = at::randn({5, in}).to(at::kBFloat16);  // the LibTorch-tile path
                const at::Tensor yb = packed_linear(xb, w);
                EXPECT_EQ(yb.scalar_type(), at::kBFloat16);
                const at::Tensor refb = at::linear(xb.to(at::kFloat), dense);
                EXPECT_LT((yb.to(at::kFloat) - refb).abs().max().item<double>(), 0.05 * refb.abs().max().item<double>());
            }
}

TEST(PackedMatmul, HoldsAFractionOfTheDenseBytes) {
    const PackedWeight w2 = pack_weight(random_quantized(2, 256, 1024, 64, false, 1));
    const PackedWeight w4 = pack_weight(random_quantized(4, 256, 1024, 128, false, 2));
    const double dense = 256.0 * 1024 * 4;
    EXPECT_LT(w2.bytes(), dense * 0.1);  // 2 bits + 2 fp32 per 64 weights: 0.375 B/weight
    EXPECT_LT(w4.bytes(), dense * 0.15);
    EXPECT_FALSE(w2.g_idx.defined() && w2.g_idx.numel() > 0);  // natural order keeps no g_idx
}

TEST(PackedMatmul, WrongInputWidthIsRefused) {
    const PackedWeight w = pack_weight(random_quantized(2, 8, 64, 32, false, 3));
    EXPECT_THROW(packed_linear(at::randn({2, 63}), w), ConfigError);
}

}  // namespace
}  // namespace saliq
