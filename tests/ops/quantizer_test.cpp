#include "saliq/quantizer.h"

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "test_utils.h"

namespace saliq {
namespace {

QuantSpec spec_of(int bits, int64_t g, bool sym) {
    QuantSpec s;
    s.bits = bits;
    s.group_size = g;
    s.symmetric = sym;
    return s;
}

TEST(Quantizer, RtnErrorIsWithinAStepAndCodesInRange) {
    at::manual_seed(0);
    at::Tensor w = at::randn({24, 100});
    for (int bits : {2, 3, 4, 8})
        for (bool sym : {false, true}) {
            const QuantizedTensor q = quantize_rtn(w, spec_of(bits, 32, sym));
            EXPECT_EQ(q.scales.sizes().vec(), (std::vector<int64_t>{24, 4}));  // 100 = 3 x 32 + 4
            EXPECT_LE(q.codes.max().item<int64_t>(), q.spec.maxq());
            const at::Tensor step = expand_groups(q.scales, q.g_idx);
            // Rounding costs at most half a step; the integer zero point can clip the extremes by another half.
            const at::Tensor err = (q.dequantize() - w).abs();
            EXPECT_TRUE((err <= step * 1.001 + 1e-6).all().item<bool>()) << bits << sym;
            EXPECT_LT((err / step).mean().item<double>(), 0.3) << bits << sym;
        }
}

TEST(Quantizer, ShortLastGroupUsesOnlyItsOwnColumns) {
    // 172 inputs (stories260K's down projection) in groups of 32: the last group has 12 columns.
    at::Tensor w = at::zeros({2, 172});
    w.narrow(1, 160, 12).fill_(1.0);
    w[0][171] = 3.0;
    const QuantizedTensor q = quantize_rtn(w, spec_of(2, 32, false));
    ASSERT_EQ(q.scales.size(1), 6);
    // Range of the last group of row 0 is [0, 3] (widened to include 0): scale 1, zero 0.
    EXPECT_FLOAT_EQ(q.scales[0][5].item<float>(), 1.0f);
    EXPECT_FLOAT_EQ(q.zeros[0][5].item<float>(), 0.0f);
    // Row 1's last group spans [0, 1]: scale 1/3 in fp16 precision.
    EXPECT_NEAR(q.scales[1][5].item<float>(), 1.0f / 3.0f, 1e-4);
    EXPECT_TRUE(at::allclose(q.dequantize(), w, 0.0, 1e-3));
}

TEST(Quantizer, MinMaxFollowsTheGptqConvention) {
    at::Tensor scale, zero;
    // All-positive rows: the range is widened to include zero; all-zero rows use [-1, 1].
    minmax_scale_zero(at::tensor({2.0f, 0.0f}), at::tensor({5.0f, 0.0f}), spec_of(2, -1, false), scale, zero);
    EXPECT_NEAR(scale[0].item<float>(), 5.0f / 3.0f, 1e-3);
    EXPECT_EQ(zero[0].item<float>(), 0.0f);
    EXPECT_NEAR(scale[1].item<float>(), 2.0f / 3.0f, 1e-3);
    minmax_scale_zero(at::tensor({-1.0f}), at::tensor({3.0f}), spec_of(2, -1, true), scale, zero);
    EXPECT_EQ(zero[0].item<float>(), 2.0f);  // (maxq + 1) / 2
    EXPECT_NEAR(scale[0].item<float>(), 2.0f, 1e-3);  // symmetric range [-3, 3] over 3 steps
    // Scales are representable in fp16, so the packed file stores them exactly.
    EXPECT_TRUE(at::equal(scale, scale.to(at::kHalf).to(at::kFloat)));
}

TEST(Quantizer, EightBitIsNearlyLossless) {
    at::manual_seed(3);
    at::Tensor w = at::randn({64, 128});
    const QuantizedTensor q = quantize_rtn(w, spec_of(8, 32, false));
    EXPECT_LT(((q.dequantize() - w).norm() / w.norm()).item<double>(), 0.01);
}

TEST(Quantizer, PerRowGroupSize) {
    const QuantizedTensor q = quantize_rtn(at::randn({5, 40}), spec_of(4, -1, false));
    EXPECT_EQ(q.scales.size(1), 1);
    EXPECT_TRUE(at::equal(q.g_idx, at::zeros({40}, at::kLong)));
}

TEST(Quantizer, BadSpecsAreRefused) {
    EXPECT_THROW(spec_of(5, 32, false).validate(), ConfigError);
    EXPECT_THROW(spec_of(1, 32, false).validate(), ConfigError);
    EXPECT_THROW(spec_of(2, 0, false).validate(), ConfigError);
    EXPECT_THROW(spec_of(2, -4, false).validate(), ConfigError);
    EXPECT_NO_THROW(spec_of(3, -1, true).validate());
}

}  // namespace
}  // namespace saliq
