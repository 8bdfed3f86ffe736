// The packed CUDA kernels (packed_matmul_cuda.cu) against the host reference. The Cuda.* tests skip where there is no GPU
// (CI) or where the build has no kernels; the PackedCuda.* tests run everywhere.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "packed_fixture.h"
#include "saliq/error.h"
#include "saliq/ggml_grid.h"
#include "saliq/model.h"
#include "saliq/packed_matmul.h"

namespace saliq {
namespace {

bool can_run() { return packed_cuda_kernels() && torch::cuda::device_count() > 0; }

// Every code width and group layout the folders hold: natural groups (a short last one, rows that end mid-byte),
// one group per row, act-order's g_idx, and IQ4_NL's levels in place of the codes.
struct Layout {
    int bits;
    int64_t group;
    bool act_order;
    bool levels;
};
std::vector<Layout> layouts() {
    std::vector<Layout> all;
    for (int bits : {2, 3, 4, 8})
        for (int64_t group : {int64_t{32}, int64_t{-1}, int64_t{48}})
            for (bool act_order : {false, true}) all.push_back({bits, group, act_order, false});
    all.push_back({4, 32, false, true});
    return all;
}

PackedWeight packed_of(const Layout& l, int64_t out, int64_t in, int seed) {
    PackedWeight w = pack_weight(random_quantized(l.bits, out, in, l.group, l.act_order, seed));
    if (l.levels) w.levels = iq4_nl_levels();
    return w;
}

std::string name_of(const Layout& l) {
    return std::to_string(l.bits) + " bits, g" + std::to_string(l.group) + (l.act_order ? " act-order" : "") +
           (l.levels ? " iq4_nl levels" : "");
}

TEST(PackedCuda, MovingAPackedWeightKeepsItsValues) {
    const PackedWeight w = packed_of({3, 32, true, false}, 9, 70, 1);
    const PackedWeight c = packed_to(w, at::Device(at::kCPU));
    EXPECT_TRUE(at::equal(packed_dequantize_rows(c, 0, 9), packed_dequantize_rows(w, 0, 9)));
    if (!packed_cuda_kernels()) {  // a build without the kernels says so instead of computing on the host
        EXPECT_THROW(packed_to(w, at::Device(at::kCUDA, 0)), ConfigError);
    }
}

TEST(PackedCuda, PackedCudaNeedsACudaDeviceAndPackedWeights) {
    ModelOptions o;
    o.packed_cuda = true;
    EXPECT_THROW(resolve_model_options(o), ConfigError);  // --device cpu
    o.device = "cuda";
    o.dequantize = true;
    EXPECT_THROW(resolve_model_options(o), ConfigError);  // no CUDA here, or both forms asked for
}

TEST(Cuda, PackedDequantizeMatchesTheHostBitForBit) {
    if (!can_run()) GTEST_SKIP() << "no CUDA device or no packed CUDA kernels";
    int seed = 0;
    for (const Layout& l : layouts()) {
        const int64_t out = 37, in = l.group == 48 ? 101 : 130;
        const PackedWeight w = packed_of(l, out, in, seed++);
        const PackedWeight g = packed_to(w, at::Device(at::kCUDA, 0));
        for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, out}, {5, 9}}) {
            const at::Tensor host = packed_dequantize_rows(w, r0, r1);
            const at::Tensor dev = packed_dequantize_rows(g, r0, r1);
            ASSERT_TRUE(dev.is_cuda());
            EXPECT_TRUE(at::equal(dev.cpu(), host)) << name_of(l) << " rows " << r0 << ":" << r1 << ", max diff "
                                                    << (dev.cpu() - host).abs().max().item<double>();
        }
    }
}

TEST(Cuda, PackedLinearMatchesTheHostForDecodeAndBatches) {
    if (!can_run()) GTEST_SKIP() << "no CUDA device or no packed CUDA kernels";
    int seed = 100;
    for (const Layout& l : layouts()) {
        const int64_t out = 37, in = l.group == 48 ? 101 : 130;
        const PackedWeight w = packed_of(l, out, in, seed++);
        const PackedWeight g = packed_to(w, at::Device(at::kCUDA, 0));
        const at::Tensor dense = packed_dequantize_rows(w, 0, out).to(at::kDouble);
        for (int64_t tokens : {int64_t{1}, int64_t{3}, int64_t{8}, int64_t{9}, int64_t{67}}) {  // GEMV, then tiles
            const at::Tensor x = at::randn({1, tokens, in});
            const at::Tensor ref = at::linear(x.to(at::kDouble), dense);
            const at::Tensor y = packed_linear(x.cuda(), g);
            ASSERT_TRUE(y.is_cuda());
            EXPECT_EQ(y.sizes(), (at::IntArrayRef{1, tokens, out}));
            EXPECT_TRUE(at::allclose(y.cpu().to(at::kDouble), ref, 1e-4, 1e-4))
                << name_of(l) << ", " << tokens << " tokens: max diff "
                << (y.cpu().to(at::kDouble) - ref).abs().max().item<double>();
            for (auto dtype : {at::kHalf, at::kBFloat16}) {
                const at::Tensor x16 = x.to(dtype);
                const at::Tensor ref16 = at::linear(x16.to(at::kDouble), dense);
                const at::Tensor y16 = packed_linear(x16.cuda(), g);
                EXPECT_EQ(y16.scalar_type(), dtype);
                EXPECT_LT((y16.cpu().to(at::kDouble) - ref16).abs().max().item<double>(),
                          0.02 * ref16.abs().max().item<double>() + 1e-3)
                    << name_of(l) << ", " << tokens << " tokens, " << at::toString(dtype);
            }
        }
    }
}

TEST(Cuda, PackedLinearRefusesAnInputOnAnotherDevice) {
    if (!can_run()) GTEST_SKIP() << "no CUDA device or no packed CUDA kernels";
    const PackedWeight g = packed_to(packed_of({2, 32, false, false}, 8, 64, 7), at::Device(at::kCUDA, 0));
    EXPECT_THROW(packed_linear(at::randn({2, 64}), g), ConfigError);
}

}  // namespace
}  // namespace saliq
