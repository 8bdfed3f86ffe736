// The searched clipping start (lwc_search_params, --lwc-init search): each group gets the candidate pair with the
// least weighted error, found independently here by trying every pair on every group one at a time.
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "saliq/lwc.h"
#include "saliq/quantizer.h"

namespace saliq {
namespace {

QuantSpec spec(int bits, int64_t group, bool sym = false) {
    QuantSpec s;
    s.bits = bits;
    s.group_size = group;
    s.symmetric = sym;
    return s;
}

std::vector<double> candidate_logits() {
    std::vector<double> l = {kLwcInit};
    for (int k = 1; k <= 10; ++k) l.push_back(std::log((1.0 - 0.05 * k) / (0.05 * k)));
    return l;
}

// Weighted squared error of each (row, group) under `params`: [out, G].
at::Tensor group_error(const at::Tensor& w, const LwcParams& params, const QuantSpec& s, const at::Tensor& d) {
    const at::Tensor q = lwc_fake_quant(w, params, s);
    const at::Tensor e = (w - q).square() * d.unsqueeze(0);
    return e.view({w.size(0), s.n_groups(w.size(1)), s.group_size}).sum(-1);
}

at::Tensor outlying_weight(int seed) {
    at::manual_seed(seed);
    at::Tensor w = at::randn({5, 64}, at::kDouble) * 0.02;
    w.index_put_({1, 3}, 0.4);     // large weights, where clipping and keeping trade places with the importance
    w.index_put_({3, 40}, -0.3);
    return w;
}

TEST(LwcSearch, EveryGroupGetsTheBestCandidatePair) {
    for (bool sym : {false, true}) {
        const QuantSpec s = spec(2, 16, sym);
        const at::Tensor w = outlying_weight(1);
        at::manual_seed(7);
        const at::Tensor d = at::rand({64}, at::kDouble) + 0.1;
        at::Tensor gmax, gmin;
        group_max_min(w, s, gmax, gmin);
        const LwcParams found = lwc_search_params(w, gmax, gmin, s, d);
        const at::Tensor found_err = group_error(w, found, s, d);
        // Exhaustive, pair by pair over whole tensors of one value.
        at::Tensor best = at::full_like(found_err, INFINITY);
        for (double up : candidate_logits())
            for (double low : candidate_logits()) {
                const LwcParams p{at::full_like(gmax, up), at::full_like(gmax, low)};
                best = at::minimum(best, group_error(w, p, s, d));
            }
        EXPECT_TRUE(at::allclose(found_err, best, 1e-12, 1e-15)) << "sym " << sym;
        // The searched logits are candidates, and never worse than the min-max start.
        const LwcParams start{at::full_like(gmax, kLwcInit), at::full_like(gmax, kLwcInit)};
        EXPECT_TRUE((found_err <= group_error(w, start, s, d) + 1e-15).all().item<bool>());
    }
}

TEST(LwcSearch, ClipsGaussianGroupsAtTwoBitsAndKeepsTheMinMaxStartOnATie) {
    // Four levels over a Gaussian group's whole range waste most of them on the tails: clipping pays in most groups.
    const QuantSpec s = spec(2, 64);
    at::manual_seed(2);
    const at::Tensor w = at::randn({8, 128}, at::kDouble) * 0.02;
    at::Tensor gmax, gmin;
    group_max_min(w, s, gmax, gmin);
    const LwcParams found = lwc_search_params(w, gmax, gmin, s, at::Tensor());
    const at::Tensor clipped = at::logical_or(found.up < kLwcInit, found.low < kLwcInit);
    EXPECT_GT(clipped.sum().item<int64_t>(), clipped.numel() / 2);
    const LwcParams start{at::full_like(gmax, kLwcInit), at::full_like(gmax, kLwcInit)};
    const at::Tensor ones = at::ones({128}, at::kDouble);
    EXPECT_LT(group_error(w, found, s, ones).sum().item<double>(), 0.9 * group_error(w, start, s, ones).sum().item<double>());
    EXPECT_EQ(found.up.scalar_type(), at::kDouble);  // fp64 weights keep fp64 logits (gradient checks)

    // A group whose every candidate ties (all zeros) keeps the min-max start.
    at::Tensor zeros = at::zeros({2, 32});
    group_max_min(zeros, s, gmax, gmin);
    const LwcParams flat = lwc_search_params(zeros, gmax, gmin, s, at::Tensor());
    EXPECT_TRUE((flat.up == kLwcInit).all().item<bool>());
    EXPECT_TRUE((flat.low == kLwcInit).all().item<bool>());
    EXPECT_EQ(flat.up.scalar_type(), at::kFloat);
}

TEST(LwcSearch, TheImportanceDecidesWhichWeightsTheGridServes) {
    // One group, 3 bits: a large weight among small ones. Weighted only on the large weight, the grid keeps it
    // (no clipping from above); weighted only on the small ones, it clips the large one away.
    const QuantSpec s = spec(3, 16);
    at::manual_seed(3);
    at::Tensor w = at::rand({1, 16}, at::kDouble) * 0.1;
    w.index_put_({0, 5}, 1.0);
    at::Tensor gmax, gmin;
    group_max_min(w, s, gmax, gmin);
    at::Tensor on_large = at::full({16}, 1e-6, at::kDouble);
    on_large.index_put_({5}, 1.0);
    const at::Tensor on_small = 1.0 - on_large + 1e-6;
    EXPECT_DOUBLE_EQ(lwc_search_params(w, gmax, gmin, s, on_large).up.item<double>(), kLwcInit);
    EXPECT_NEAR(lwc_search_params(w, gmax, gmin, s, on_small).up.item<double>(), 0.0, 1e-12);  // factor 0.5
}

}  // namespace
}  // namespace saliq
