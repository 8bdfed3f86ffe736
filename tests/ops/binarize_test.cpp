// The seed paper's binarizers: DB-LLM's dual binarization and BinaryMoS's mixture of scales — their grids, their
// straight-through estimators and smooth gradients against central finite differences (fp64), and their packing.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "saliq/binarize.h"
#include "saliq/error.h"
#include "saliq/quantizer.h"
#include "grad_check.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::numeric_grad;

at::Tensor groups_of(int64_t in, int64_t g) {
    QuantSpec spec;
    spec.group_size = g;
    return natural_group_index(in, spec);
}

TEST(DualBinary, InitialGridIsMinusSZeroSTwoSAndCodesPickTheNearestLevel) {
    at::manual_seed(1);
    const at::Tensor w = at::randn({3, 20}, at::kDouble);  // groups of 8: the last one short
    const at::Tensor g_idx = groups_of(20, 8);
    const DualBinaryParams p = init_dual_binary(w, 8);
    ASSERT_EQ(p.alpha1.sizes().vec(), (std::vector<int64_t>{3, 3}));
    const at::Tensor absmax = std::get<0>(w.abs().narrow(1, 16, 4).max(1));
    EXPECT_TRUE(at::allclose(p.alpha1.select(1, 2), absmax));             // alpha1 = 2s, s = absmax / 2
    EXPECT_TRUE(at::allclose(p.alpha2.select(1, 2), -absmax / 2.0));      // alpha2 = -s
    const at::Tensor w_hat = dual_binary_fake_quant(w, p, g_idx);
    const at::Tensor s = (p.alpha1 / 2.0).index_select(1, g_idx);
    // Levels {a2, 0, a1 + a2, a1} = {-s, 0, s, 2s}; every weight lands on the nearest one.
    for (int64_t r = 0; r < 3; ++r)
        for (int64_t c = 0; c < 20; ++c) {
            const double x = w[r][c].item<double>(), sc = s[r][c].item<double>(), got = w_hat[r][c].item<double>();
            double best = 1e30, level = 0;
            for (double l : {-sc, 0.0, sc, 2 * sc})
                if (std::abs(x - l) < best) best = std::abs(x - l), level = l;
            EXPECT_NEAR(got, level, 1e-12) << r << "," << c << " w=" << x;
        }
    BinaryWeight stored{"db-llm", dual_binary_codes(w, p, g_idx), p.alpha1, p.alpha2, g_idx, {}, {}, {}};
    EXPECT_TRUE(at::allclose(stored.dequantize().to(at::kDouble), w_hat, 1e-6, 1e-7));
}

TEST(DualBinary, ScalesGradientMatchesFiniteDifferencesAndTheWeightPassesStraightThrough) {
    at::manual_seed(2);
    const at::Tensor w0 = at::randn({4, 12}, at::kDouble);
    const at::Tensor g_idx = groups_of(12, 4);
    DualBinaryParams p = init_dual_binary(w0, 4);
    p.alpha1 = (p.alpha1 * 0.9).requires_grad_(true);  // off the initial grid, so the levels are no longer uniform
    p.alpha2 = (p.alpha2 * 1.2).requires_grad_(true);
    at::Tensor w = w0.clone().requires_grad_(true);
    const at::Tensor probe = at::randn({4, 12}, at::kDouble);
    (dual_binary_fake_quant(w, p, g_idx) * probe).sum().backward();
    // The codes are piecewise constant in the scales: away from a threshold, the difference quotient is exact.
    auto f = [&] { return dual_binary_fake_quant(w0, p, g_idx); };
    const at::Tensor n1 = numeric_grad(f, p.alpha1.detach(), probe, 1e-7);
    const at::Tensor n2 = numeric_grad(f, p.alpha2.detach(), probe, 1e-7);
    EXPECT_TRUE(at::allclose(p.alpha1.grad(), n1, 1e-6, 1e-8)) << p.alpha1.grad() << n1;
    EXPECT_TRUE(at::allclose(p.alpha2.grad(), n2, 1e-6, 1e-8)) << p.alpha2.grad() << n2;
    EXPECT_GT(p.alpha2.grad().abs().sum().item<double>(), 0.0);
    EXPECT_TRUE(at::allclose(w.grad(), probe));  // identity STE
}

TEST(BinaryMos, SignSteForwardIsSignAndGradientPassesInsideTheUnitInterval) {
    at::Tensor w = at::tensor({-2.0, -0.5, 0.0, 0.3, 1.5}, at::kDouble).requires_grad_(true);
    const at::Tensor probe = at::tensor({1.0, 2.0, 3.0, 4.0, 5.0}, at::kDouble);
    const at::Tensor s = sign_ste(w);
    EXPECT_TRUE(at::equal(s.detach(), at::tensor({-1.0, -1.0, 1.0, 1.0, 1.0}, at::kDouble)));
    (s * probe).sum().backward();
    EXPECT_TRUE(at::equal(w.grad(), at::tensor({0.0, 2.0, 3.0, 4.0, 0.0}, at::kDouble)));
}

TEST(BinaryMos, InitIsTheRankOneSvdOfAbsWForEveryExpert) {
    at::manual_seed(3);
    const at::Tensor w = at::randn({6, 10}, at::kDouble);
    const MosParams p = init_mos(w, 3);
    ASSERT_EQ(p.router.sizes().vec(), (std::vector<int64_t>{3, 10}));
    ASSERT_EQ(p.scale_out.sizes().vec(), (std::vector<int64_t>{3, 6}));
    const auto svd = at::linalg_svd(w.abs(), false);
    const at::Tensor u = std::get<0>(svd).select(1, 0), sigma = std::get<1>(svd)[0], v = std::get<2>(svd).select(0, 0);
    const at::Tensor rank1 = sigma * at::outer(u, v).abs();
    for (int64_t e = 0; e < 3; ++e)
        EXPECT_TRUE(at::allclose(at::outer(p.scale_out[e], p.scale_in[e]), rank1, 1e-5, 1e-7)) << e;
    EXPECT_LE(p.router.abs().max().item<double>(), 1.0 / std::sqrt(10.0));
    // Identical experts: the router's mixture is that one expert, whatever the gates.
    const at::Tensor signs = sign_ste(w).detach(), x = at::randn({5, 10}, at::kDouble);
    const at::Tensor expected = at::linear(x * p.scale_in[0], signs) * p.scale_out[0];
    EXPECT_TRUE(at::allclose(mos_forward(x, signs, p), expected, 1e-10, 1e-12));
    EXPECT_TRUE(at::allclose(mos_mean_weight(signs, p), p.scale_out[0].unsqueeze(1) * signs * p.scale_in[0]));
}

TEST(BinaryMos, RouterAndScaleGradientsMatchFiniteDifferences) {
    at::manual_seed(4);
    const at::Tensor w = at::randn({5, 7}, at::kDouble);
    MosParams p = init_mos(w, 3);
    p.scale_in = (p.scale_in + 0.1 * at::randn_like(p.scale_in)).requires_grad_(true);  // experts differ
    p.scale_out = (p.scale_out + 0.1 * at::randn_like(p.scale_out)).requires_grad_(true);
    p.router = (p.router * 3.0).requires_grad_(true);
    const at::Tensor signs = sign_ste(w).detach(), x = at::randn({2, 4, 7}, at::kDouble);
    const at::Tensor probe = at::randn({2, 4, 5}, at::kDouble);
    (mos_forward(x, signs, p) * probe).sum().backward();
    auto f = [&] { return mos_forward(x, signs, p); };
    for (at::Tensor* t : {&p.router, &p.scale_in, &p.scale_out}) {
        const at::Tensor num = numeric_grad(f, t->detach(), probe, 1e-6);
        EXPECT_TRUE(at::allclose(t->grad(), num, 1e-6, 1e-9)) << t->grad() << num;
        EXPECT_GT(t->grad().abs().sum().item<double>(), 0.0);
    }
}

TEST(BinaryPack, BothLayoutsRoundTripAndBadShapesAreRefused) {
    at::manual_seed(5);
    const at::Tensor w = at::randn({9, 37});  // 37 inputs: neither layout fills its last word
    const at::Tensor g_idx = groups_of(37, 16);
    const DualBinaryParams p = init_dual_binary(w, 16);
    BinaryWeight db{"db-llm", dual_binary_codes(w, p, g_idx), p.alpha1.to(at::kHalf).to(at::kFloat),
                    p.alpha2.to(at::kHalf).to(at::kFloat), g_idx, {}, {}, {}};
    const MosParams m = init_mos(w, 2);
    BinaryWeight mos{"binarymos", (w >= 0).to(at::kByte), {}, {}, {}, m.router.to(at::kHalf).to(at::kFloat),
                     m.scale_in.to(at::kHalf).to(at::kFloat), m.scale_out.to(at::kHalf).to(at::kFloat)};
    for (const BinaryWeight* b : {&db, &mos}) {
        const auto parts = binary_pack(*b);
        EXPECT_EQ(parts[0].second.sizes().vec(), (std::vector<int64_t>{(37 * b->bits() + 31) / 32, 9}));
        const BinaryWeight back = binary_unpack_parts(b->kind, 37, 9, parts, "test");
        EXPECT_TRUE(at::equal(back.codes, b->codes)) << b->kind;
        EXPECT_TRUE(at::equal(back.dequantize(), b->dequantize())) << b->kind;
        if (b->kind == "binarymos") EXPECT_TRUE(at::equal(back.scale_out, b->scale_out));
        EXPECT_THROW(binary_unpack_parts(b->kind, 38, 9, parts, "test"), FormatError);  // wrong in
        EXPECT_THROW(binary_unpack_parts(b->kind, 37, 8, parts, "test"), FormatError);  // wrong out
        auto missing = parts;
        missing.pop_back();
        EXPECT_THROW(binary_unpack_parts(b->kind, 37, 9, missing, "test"), FormatError);
    }
    auto bad = binary_pack(db);
    bad[3].second = at::full({37}, 5, at::kInt);  // g_idx past the 3 groups
    EXPECT_THROW(binary_unpack_parts("db-llm", 37, 9, bad, "test"), FormatError);
    EXPECT_THROW(check_quantizer_name("ternary"), ConfigError);
}

}  // namespace
}  // namespace saliq
