// LWC on GGML grids (lwc.h): the differentiable fit is the codec's fit, bit for bit, and gradients reach the clipping.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "saliq/error.h"
#include "saliq/ggml_grid.h"
#include "saliq/lwc.h"
#include "saliq/quantizer.h"

namespace saliq {
namespace {

const GgmlGrid kTrained[] = {GgmlGrid::kQ2_K, GgmlGrid::kQ3_K, GgmlGrid::kQ4_K, GgmlGrid::kQ4_0,
                             GgmlGrid::kQ4_1, GgmlGrid::kQ5_0, GgmlGrid::kQ8_0};

struct Case {
    at::Tensor weight, gmax, gmin;
    LwcParams params;
};

Case make_case(GgmlGrid grid, double logit_mean, int seed) {
    at::manual_seed(seed);
    Case c;
    c.weight = at::randn({6, 512}) * 0.05;
    c.weight.select(0, 2).zero_();  // a row of zeros: zero block scales
    c.weight.narrow(1, 0, 16).mul_(20.0);  // an outlying sub-block raises its super-block's scale
    QuantSpec sub;
    sub.group_size = ggml_grid_traits(grid).sub_block;
    group_max_min(c.weight, sub, c.gmax, c.gmin);
    c.params.up = (at::randn_like(c.gmax) + logit_mean).requires_grad_(true);
    c.params.low = (at::randn_like(c.gmax) + logit_mean).requires_grad_(true);
    return c;
}

TEST(GgmlLwc, TheForwardIsTheStoredBlocksBitForBit) {
    for (GgmlGrid grid : kTrained) {
        const Case c = make_case(grid, 2.0, 1);
        const at::Tensor fake = ggml_lwc_fake_quant(c.weight, c.gmax, c.gmin, c.params, grid).detach();
        const QuantizedTensor q = ggml_lwc_finalize(c.weight, c.gmax, c.gmin, c.params, grid);
        EXPECT_EQ(q.spec.grid, grid);
        EXPECT_TRUE(at::equal(fake, q.dequantize())) << ggml_grid_traits(grid).name << ": max diff "
                                                     << (fake - q.dequantize()).abs().max().item<double>();
    }
}

TEST(GgmlLwc, WithoutClippingItIsTheGridsRoundToNearest) {
    for (GgmlGrid grid : kTrained) {
        Case c = make_case(grid, 0.0, 2);
        c.params.up = at::full_like(c.gmax, 40.0);  // sigmoid(40) is 1.0f: the full range
        c.params.low = at::full_like(c.gmax, 40.0);
        QuantSpec spec;
        spec.grid = grid;
        spec.bits = ggml_grid_traits(grid).bits;
        spec.group_size = ggml_grid_traits(grid).sub_block;
        spec.symmetric = !ggml_grid_traits(grid).has_min;
        EXPECT_TRUE(at::equal(ggml_lwc_fake_quant(c.weight, c.gmax, c.gmin, c.params, grid),
                              quantize_rtn(c.weight, spec).dequantize()))
            << ggml_grid_traits(grid).name;
    }
}

TEST(GgmlLwc, GradientsReachTheClippingLogits) {
    for (GgmlGrid grid : kTrained) {
        const Case c = make_case(grid, 2.0, 3);
        const at::Tensor fake = ggml_lwc_fake_quant(c.weight, c.gmax, c.gmin, c.params, grid);
        (fake - c.weight).pow(2).sum().backward();
        for (const at::Tensor& g : {c.params.up.grad(), c.params.low.grad()}) {
            ASSERT_TRUE(g.defined()) << ggml_grid_traits(grid).name;
            EXPECT_TRUE(at::isfinite(g).all().item<bool>()) << ggml_grid_traits(grid).name;
        }
        EXPECT_GT(c.params.up.grad().abs().sum().item<double>(), 0.0) << ggml_grid_traits(grid).name;
    }
}

TEST(GgmlLwc, LevelsHaveNoRangeToLearn) {
    const Case c = make_case(GgmlGrid::kIQ4_NL, 2.0, 4);
    EXPECT_THROW(ggml_lwc_fake_quant(c.weight, c.gmax, c.gmin, c.params, GgmlGrid::kIQ4_NL), ConfigError);
}

}  // namespace
}  // namespace saliq
