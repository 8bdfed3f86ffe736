// llama.cpp's 8-bit activations (ggml_activations.h) against blocks worked by hand from ggml-cpu's quantizers.
#include "saliq/ggml_activations.h"

#include <gmock/gmock.h>

#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include "saliq/error.h"
#include "test_utils.h"

namespace saliq {
namespace {

at::Tensor row(std::vector<float> head, int64_t n) {
    head.resize(static_cast<size_t>(n), 0.0f);
    return at::tensor(head, at::kFloat);
}

TEST(GgmlActivations, Q8_0RoundsHalvesToEvenAgainstAnFp16Scale) {
    // amax 127: id = 1 and d = 1, so the codes show through; ties go to the even neighbour, as _mm256_round_ps does.
    const at::Tensor exact = ggml_round_activations(row({127.0f, -3.5f, 2.5f, 0.4f, -0.6f}, 32), GgmlActivation::kQ8_0);
    EXPECT_TRUE(at::equal(exact, row({127.0f, -4.0f, 2.0f, 0.0f, -1.0f}, 32)));
    // amax 1: q = round(127 x), the scale 1/127 stored in fp16.
    const float d = static_cast<float>(c10::Half(1.0f / 127.0f));
    const at::Tensor x = row({1.0f, 0.5f, -0.25f}, 32);
    EXPECT_TRUE(at::equal(ggml_round_activations(x, GgmlActivation::kQ8_0), row({127 * d, 64 * d, -32 * d}, 32)));
    // Q8_1's values are Q8_0's; the second block of 32 has its own scale.
    const at::Tensor two = at::cat({row({127.0f, 1.5f}, 32), row({1.0f, 0.5f, -0.25f}, 32)});
    EXPECT_TRUE(at::equal(ggml_round_activations(two, GgmlActivation::kQ8_1),
                          at::cat({row({127.0f, 2.0f}, 32), row({127 * d, 64 * d, -32 * d}, 32)})));
}

TEST(GgmlActivations, Q8_KKeepsAnFp32ScaleOverBlocksOf256) {
    // amax 2: iscale = 63.5, q = round(63.5 x), d = 1 / 63.5 in fp32 (not rounded to fp16).
    const float iscale = 127.0f / 2.0f, d = 1.0f / iscale;
    const at::Tensor x = row({2.0f, -1.0f, 0.01f, 0.007f}, 256);
    const at::Tensor want = row({127 * d, -64 * d, 1 * d, 0.0f}, 256);
    EXPECT_TRUE(at::equal(ggml_round_activations(x, GgmlActivation::kQ8_K), want));
    // The k-quants' products take Q8_K, the block-32 types' Q8_0; an F32 weight leaves x alone.
    EXPECT_TRUE(at::equal(ggml_round_activations(x, GgmlGrid::kQ4_K), want));
    EXPECT_TRUE(at::equal(ggml_round_activations(x, GgmlGrid::kQ2_K), want));
    EXPECT_FALSE(at::equal(ggml_round_activations(x, GgmlGrid::kQ4_0), want));
    EXPECT_TRUE(at::equal(ggml_round_activations(x, GgmlGrid::kNone), x));
}

TEST(GgmlActivations, ZeroBlocksStayZeroAndShapesAreKept) {
    const at::Tensor x = at::randn({2, 3, 512});
    x.select(1, 1).narrow(-1, 256, 256).zero_();
    for (GgmlActivation t : {GgmlActivation::kQ8_0, GgmlActivation::kQ8_K}) {
        const at::Tensor y = ggml_round_activations(x, t);
        EXPECT_EQ(y.sizes(), x.sizes());
        EXPECT_TRUE(at::isfinite(y).all().item<bool>());
        EXPECT_TRUE(at::equal(y.select(1, 1).narrow(-1, 256, 256), at::zeros({2, 256})));
        // Within half a step of each block's scale, amax / 254, plus 127 times the fp16 scale's rounding.
        EXPECT_LT((y - x).abs().max().item<float>(), x.abs().max().item<float>() / 220.0f);
    }
    EXPECT_THROW(ggml_round_activations(at::ones({2, 48}), GgmlActivation::kQ8_0), ConfigError);
    EXPECT_THROW(ggml_round_activations(at::ones({2, 288}), GgmlActivation::kQ8_K), ConfigError);
}

}  // namespace
}  // namespace saliq
