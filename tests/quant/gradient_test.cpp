// Gradients of the trainable pieces against central finite differences, in fp64.
// The quantizer rounds with a straight-through estimator, so its finite differences are taken on the STE surrogate:
// the rounding offset round(w/s) - w/s, the zero point and which codes are clamped are frozen at the current point,
// exactly what the backward pass assumes (a code landing exactly on 0 or maxq is "inside", as clamp's backward has it).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <nlohmann/json.hpp>

#include "quant/trainable.h"
#include "saliq/quantize.h"
#include "saliq/safetensors.h"
#include "saliq/lwc.h"
#include "grad_check.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::numeric_grad;

QuantSpec spec2(int64_t g, bool sym = false) {
    QuantSpec s;
    s.bits = 2;
    s.group_size = g;
    s.symmetric = sym;
    return s;
}

TEST(Gradients, RoundSteIsIdentityBackward) {
    at::Tensor x = at::tensor({0.2, 1.7, -2.4, 3.5}, at::kDouble).requires_grad_(true);
    at::Tensor probe = at::tensor({1.0, -2.0, 0.5, 3.0}, at::kDouble);
    at::Tensor y = round_ste(x);
    EXPECT_TRUE(at::equal(y.detach(), at::round(x.detach())));
    (y * probe).sum().backward();
    EXPECT_TRUE(at::allclose(x.grad(), probe));
}

TEST(Gradients, LwcClippingFactorsMatchFiniteDifferences) {
    at::manual_seed(5);
    for (bool sym : {false, true}) {
        const QuantSpec spec = spec2(4, sym);
        at::Tensor w = at::randn({3, 10}, at::kDouble);  // 3 groups per row, the last one short
        LwcParams p = make_lwc_params(w, spec);
        p.up = p.up + 0.3 * at::randn_like(p.up);
        p.low = p.low + 0.3 * at::randn_like(p.low);
        p.up.requires_grad_(true);
        p.low.requires_grad_(true);
        const at::Tensor probe = at::randn({3, 10}, at::kDouble);

        at::Tensor scale0, zero0;
        lwc_scale_zero(w, p, spec, scale0, zero0);
        const at::Tensor g_idx = natural_group_index(10, spec);
        const at::Tensor x0 = w / expand_groups(scale0.detach(), g_idx);
        const at::Tensor offset = at::round(x0) - x0;  // frozen rounding offset
        const at::Tensor code = at::round(x0) + expand_groups(zero0, g_idx);
        const at::Tensor high = code > spec.maxq(), low = code < 0;
        auto surrogate = [&]() {
            at::Tensor scale, zero;
            lwc_scale_zero(w, p, spec, scale, zero);
            const at::Tensor s = expand_groups(scale, g_idx), z = expand_groups(zero0, g_idx);
            const at::Tensor inside = w / s + offset + z;
            const at::Tensor q = at::where(high, at::full_like(inside, static_cast<double>(spec.maxq())),
                                           at::where(low, at::zeros_like(inside), inside));
            return (q - z) * s;
        };
        EXPECT_TRUE(at::allclose(surrogate(), lwc_fake_quant(w, p, spec).detach(), 1e-9, 1e-9));

        (lwc_fake_quant(w, p, spec) * probe).sum().backward();
        const at::Tensor num_up = numeric_grad(surrogate, p.up.detach(), probe, 1e-6);
        const at::Tensor num_low = numeric_grad(surrogate, p.low.detach(), probe, 1e-6);
        EXPECT_TRUE(at::allclose(p.up.grad(), num_up, 1e-5, 1e-7)) << sym << "\n" << p.up.grad() << num_up;
        EXPECT_TRUE(at::allclose(p.low.grad(), num_low, 1e-5, 1e-7)) << sym << "\n" << p.low.grad() << num_low;
        EXPECT_GT(p.up.grad().abs().sum().item<double>(), 0.0);
    }
}

// The fused CPU grid (one pass each way) is the element-wise ATen grid bit for bit forward, and its scale gradient
// agrees; including values far outside the grid, a short last group, symmetric grids and zero points at the bounds.
TEST(Gradients, FusedFakeQuantEqualsTheElementwiseGrid) {
    at::manual_seed(11);
    for (bool sym : {false, true})
        for (int bits : {2, 3, 4, 8}) {
            QuantSpec spec = spec2(16, sym);
            spec.bits = bits;
            at::Tensor w = at::randn({37, 70});  // 5 groups per row, the last one 6 wide
            w.index_put_({0, 0}, 1e9);           // far past every grid: clamps
            w.index_put_({1, 3}, -1e9);
            LwcParams p = make_lwc_params(w, spec);
            p.up = (p.up + 0.5 * at::randn_like(p.up)).requires_grad_(true);
            p.low = (p.low + 0.5 * at::randn_like(p.low)).requires_grad_(true);
            at::Tensor scale, zero;
            lwc_scale_zero(w, p, spec, scale, zero);
            const at::Tensor probe = at::randn_like(w);
            const at::Tensor fused = fake_quant_grid(w, scale, zero, spec);
            const at::Tensor reference = fake_quant_grid_reference(w, scale, zero, spec);
            EXPECT_TRUE(at::equal(fused, reference)) << "bits " << bits << " sym " << sym;
            const auto g_fused = torch::autograd::grad({(fused * probe).sum()}, {p.up, p.low}, {}, /*retain_graph=*/true);
            const auto g_ref = torch::autograd::grad({(reference * probe).sum()}, {p.up, p.low});
            for (size_t i = 0; i < 2; ++i)
                EXPECT_TRUE(at::allclose(g_fused[i], g_ref[i], 1e-4, 1e-5))
                    << "bits " << bits << " sym " << sym << " " << (g_fused[i] - g_ref[i]).abs().max();
        }
}

TEST(Gradients, LoraBranchMatchesFiniteDifferences) {
    at::manual_seed(6);
    LwcLinear layer(at::randn({5, 8}, at::kDouble), spec2(4), /*rank=*/3, /*alpha=*/6.0);
    auto params = layer.lora_parameters();
    ASSERT_EQ(params.size(), 2u);
    {
        c10::NoGradGuard no_grad;
        params[1].normal_();  // B starts at zero; move it so A gets a gradient too
    }
    const at::Tensor x = at::randn({4, 8}, at::kDouble);
    const at::Tensor probe = at::randn({4, 5}, at::kDouble);
    (layer.forward(x) * probe).sum().backward();
    for (auto& p : params) {
        const at::Tensor num = numeric_grad([&] { return layer.forward(x); }, p.detach(), probe, 1e-6);
        EXPECT_TRUE(at::allclose(p.grad(), num, 1e-6, 1e-8)) << p.grad() << num;
    }
    // PEFT's init: B = 0, A ~ U(-1/sqrt(in), 1/sqrt(in)); scale alpha / r.
    LwcLinear fresh(at::randn({5, 8}, at::kDouble), spec2(4), 3, 6.0);
    EXPECT_EQ(fresh.lora_parameters()[1].abs().sum().item<double>(), 0.0);
    EXPECT_LE(fresh.lora_parameters()[0].abs().max().item<double>(), 1.0 / std::sqrt(8.0));
    EXPECT_TRUE(at::allclose(fresh.weight(), fresh.effective_weight(false).detach()));
}

TEST(Gradients, RegularizerValueAndGradient) {
    at::manual_seed(7);
    LwcLinear layer(at::randn({4, 8}, at::kDouble), spec2(4), 2, 4.0);
    auto lora = layer.lora_parameters();
    {
        c10::NoGradGuard no_grad;
        lora[1].normal_();
    }
    const at::Tensor F = at::rand({4, 8}, at::kDouble);
    const std::vector<const TrainableLinear*> linears = {&layer};
    // Value: sum F (W_eff - W)^2 with W_eff = Q(W) (before LoRA) or Q(W) + s B A (after LoRA).
    const at::Tensor before = saliency_regularizer(linears, {F}, false);
    const at::Tensor expected = (F * (layer.effective_weight(false) - layer.frozen_weight()).pow(2)).sum();
    EXPECT_NEAR(before.item<double>(), expected.item<double>(), 1e-12);
    // before_lora does not reach the adapters; after_lora does, smoothly: compare with finite differences.
    before.backward();
    EXPECT_FALSE(lora[0].grad().defined() && lora[0].grad().abs().sum().item<double>() > 0);
    auto reg = [&] { return saliency_regularizer(linears, {F}, true); };
    reg().backward();
    const at::Tensor one = at::ones({}, at::kDouble);
    for (auto& p : lora) {
        const at::Tensor num = numeric_grad(reg, p.detach(), one, 1e-6);
        EXPECT_TRUE(at::allclose(p.grad(), num, 1e-6, 1e-8)) << p.grad() << num;
    }
    // Fisher weighting: doubling F doubles R.
    EXPECT_NEAR(saliency_regularizer(linears, {2 * F}, true).item<double>(), 2 * reg().item<double>(), 1e-10);
}

// --fisher-norm mean: each linear's F is divided by its sum, so R is the Fisher-weighted mean of (W_eff - W)^2 and
// does not change when the whole Fisher is rescaled (a 7B model's raw Fisher is orders of magnitude smaller).
TEST(Gradients, MeanNormalizedFisherIsFreeOfTheFishersScale) {
    test::TempDir dir;
    at::manual_seed(3);
    LwcLinear a(at::randn({4, 8}, at::kFloat), spec2(4), 2, 4.0), b(at::randn({6, 8}, at::kFloat), spec2(4), 2, 4.0);
    const std::vector<const TrainableLinear*> linears = {&a, &b};
    const std::vector<std::string> names = {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"};
    const at::Tensor fa = at::rand({4, 8}), fb = at::rand({6, 8});
    auto fisher_file = [&](double scale) {
        const std::string path = dir.file("f" + std::to_string(scale) + ".safetensors");
        write_safetensors(path, {{names[0] + ".weight", fa * scale}, {names[1] + ".weight", fb * scale}});
        return path;
    };
    QuantizeOptions o;
    o.saliency.enabled = true;
    o.saliency.fisher_norm = "mean";
    nlohmann::json stats;
    o.saliency.fisher_path = fisher_file(1.0);
    const auto unit = load_block_fisher(o, linears, names, stats);
    o.saliency.fisher_path = fisher_file(1e-7);
    const auto tiny = load_block_fisher(o, linears, names, stats);
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_NEAR(unit[i].sum().item<double>(), 1.0, 1e-5);
        EXPECT_TRUE(at::allclose(unit[i], tiny[i], 1e-4, 1e-9));
    }
    EXPECT_TRUE(at::allclose(unit[0], fa / fa.sum()));
    // R is then the weighted mean: with F uniform, the plain mean square of W_eff - W.
    o.saliency.weighted = false;
    const auto uniform = load_block_fisher(o, linears, names, stats);
    const at::Tensor r = saliency_regularizer({&a}, {uniform[0]}, false);
    EXPECT_NEAR(r.item<double>(), (a.effective_weight(false) - a.frozen_weight()).pow(2).mean().item<double>(), 1e-6);
    // "none" keeps the raw Fisher (the paper).
    o.saliency.weighted = true;
    o.saliency.fisher_norm = "none";
    EXPECT_TRUE(at::allclose(load_block_fisher(o, linears, names, stats)[1], fb * 1e-7));
}

// fp16 training's dynamic loss scaling (CUDA only in practice; the policy itself is device-free): a step whose
// scaled gradients overflow is skipped and halves the scale; a finite one is unscaled exactly before AdamW.
TEST(Trainer, LossScalingSkipsOverflowingStepsAndUnscalesTheRest) {
    c10::AutoGradMode grad(true);
    auto make = [] { return at::full({3}, 0.5, at::kFloat).requires_grad_(true); };
    const at::Tensor scaled_p = make(), plain_p = make();
    Trainer scaled({scaled_p}, {}, 1e-2, 1e-3, 0.1, /*loss_scaling=*/true);
    Trainer plain({plain_p}, {}, 1e-2, 1e-3, 0.1, /*loss_scaling=*/false);

    // Gradient 1e34 per element: times the initial scale 65536 it exceeds fp32's range; times 32768 it does not.
    const at::Tensor before = scaled_p.detach().clone();
    EXPECT_FALSE(scaled.step((scaled_p * 1e34f).sum()));
    EXPECT_TRUE(at::equal(scaled_p.detach(), before)) << "a skipped step must not move the parameters";
    EXPECT_TRUE(scaled.step((scaled_p * 1e34f).sum()));
    EXPECT_TRUE(plain.step((plain_p * 1e34f).sum()));
    EXPECT_TRUE(at::equal(scaled_p.detach(), plain_p.detach()));
    // An ordinary loss: the same update as without scaling, to the bit (the scale is a power of two).
    for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(scaled.step((scaled_p.pow(2) * 3.0f).sum()));
        EXPECT_TRUE(plain.step((plain_p.pow(2) * 3.0f).sum()));
    }
    EXPECT_TRUE(at::equal(scaled_p.detach(), plain_p.detach())) << scaled_p << plain_p;
    EXPECT_FALSE(at::equal(scaled_p.detach(), before));
}

}  // namespace
}  // namespace saliq
