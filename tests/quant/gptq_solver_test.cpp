// GPTQ's solver on single matrices: the group-aware order (GAR) against the natural order on the permuted problem.
// The true-sequential Hessians of a block, kept stage to stage, against taking each group's from the block's input.
#include "quant/gptq_solver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/ggml_grid.h"
#include "model_fixture.h"
#include "saliq/model.h"
#include "saliq/quantizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

struct Problem {
    at::Tensor weight, inputs, hessian;
};

// Inputs whose channels differ in scale by two orders of magnitude (LLM activations' outlier channels), so that the
// order columns are quantized in matters.
Problem skewed_problem(int64_t rows, int64_t cols, uint64_t seed) {
    at::manual_seed(seed);
    Problem p;
    p.weight = at::randn({rows, cols});
    const at::Tensor channel_scale = at::exp(2.5 * at::randn({cols}));
    p.inputs = at::randn({512, cols}).matmul(at::eye(cols) + 0.3 * at::randn({cols, cols}) / std::sqrt(cols)) *
               channel_scale;
    p.hessian = 2.0 * p.inputs.t().matmul(p.inputs) / 512.0;
    return p;
}

QuantSpec w3g16() {
    QuantSpec s;
    s.bits = 3;
    s.group_size = 16;
    return s;
}

TEST(GptqSolver, GroupAwareOrderKeepsGroupsWholeByTheirLargestDiagonal) {
    const at::Tensor diag = at::tensor({1.0, 9.0, 2.0, 3.0, 5.0, 4.0, 0.5});  // groups of 3: {1,9,2} {3,5,4}, tail {0.5}
    const at::Tensor perm = group_aware_order(diag, 3);
    EXPECT_TRUE(at::equal(perm, at::tensor({1, 2, 0, 4, 5, 3, 6}, at::kLong))) << perm;
    const at::Tensor second = group_aware_order(at::tensor({1.0, 2.0, 0.0, 7.0, 3.0, 6.0}), 3);
    EXPECT_TRUE(at::equal(second, at::tensor({3, 5, 4, 1, 0, 2}, at::kLong))) << second;
}

// GAR is natural-order GPTQ on the problem whose columns are permuted group by group: the same codes (un-permuted)
// and the same grids (under their natural group index), with g_idx natural.
TEST(GptqSolver, GroupOrderIsNaturalOrderOnThePermutedProblem) {
    const Problem p = skewed_problem(24, 64, 1);
    const QuantSpec spec = w3g16();
    nlohmann::json stats;
    GptqOptions gar;
    gar.group_order = true;
    const QuantizedTensor a = gptq_quantize(p.weight, p.hessian.clone(), spec, gar, "a", stats);
    const at::Tensor perm = group_aware_order(p.hessian.diagonal(), spec.group_size);
    ASSERT_FALSE(at::equal(perm, at::arange(64, at::kLong)));
    const QuantizedTensor b = gptq_quantize(p.weight.index_select(1, perm),
                                            p.hessian.index_select(0, perm).index_select(1, perm), spec, GptqOptions{},
                                            "b", stats);
    EXPECT_TRUE(at::equal(a.codes, b.codes.index_select(1, at::argsort(perm))));
    EXPECT_TRUE(at::equal(a.g_idx, at::arange(64, at::kLong).div(16, "floor")));
    for (int64_t j = 0; j < 4; ++j) {
        const int64_t natural = perm[j * 16].item<int64_t>() / 16;
        EXPECT_TRUE(at::equal(a.scales.select(1, natural), b.scales.select(1, j))) << j;
        EXPECT_TRUE(at::equal(a.zeros.select(1, natural), b.zeros.select(1, j))) << j;
    }
    EXPECT_NEAR(stats["a"]["gptq_loss"].get<double>(), stats["b"]["gptq_loss"].get<double>(),
                1e-4 * stats["a"]["gptq_loss"].get<double>());
}

// On inputs with outlier channels, the group-aware order reproduces the layer's output better than the natural
// order (GPTQModel's reason to make it its default) on nearly every draw.
TEST(GptqSolver, GroupOrderReducesTheOutputErrorOnSkewedInputs) {
    int wins = 0;
    double ratio_sum = 0;
    for (uint64_t seed = 0; seed < 6; ++seed) {
        const Problem p = skewed_problem(32, 128, 100 + seed);
        nlohmann::json stats;
        GptqOptions gar;
        gar.group_order = true;
        auto output_error = [&](const GptqOptions& o) {
            const at::Tensor q = gptq_quantize(p.weight, p.hessian.clone(), w3g16(), o, "x", stats).dequantize();
            return (p.inputs.matmul((q - p.weight).t())).pow(2).sum().item<double>();
        };
        const double natural = output_error(GptqOptions{}), grouped = output_error(gar);
        ratio_sum += grouped / natural;
        wins += grouped < natural;
    }
    EXPECT_GE(wins, 5);
    EXPECT_LT(ratio_sum / 6, 0.995);  // 0.983 measured: the gain is small on synthetic inputs
}

// act_order, when asked for, is the order (the library's default group order does not stack on it).
TEST(GptqSolver, ActOrderWinsOverTheGroupOrder) {
    const Problem p = skewed_problem(8, 32, 2);
    GptqOptions act, both;
    act.act_order = both.act_order = true;
    both.group_order = true;
    nlohmann::json stats;
    const QuantizedTensor a = gptq_quantize(p.weight, p.hessian.clone(), w3g16(), act, "a", stats);
    const QuantizedTensor b = gptq_quantize(p.weight, p.hessian.clone(), w3g16(), both, "b", stats);
    EXPECT_TRUE(at::equal(a.codes, b.codes));
    EXPECT_TRUE(at::equal(a.g_idx, b.g_idx));
}

// With a diagonal Hessian nothing is fed forward, so GPTQ on a GGML grid is the grid's round-to-nearest (scales searched
// under diag H), in either column order: the group-aware order permutes columns inside a k-quant's super-block, whose
// sub-blocks must still be fitted on their own natural runs.
TEST(GptqSolver, GridWithADiagonalHessianIsTheGridsRoundToNearestInEitherOrder) {
    at::manual_seed(5);
    const at::Tensor w = at::randn({6, 512});
    const at::Tensor h = at::diag(at::exp(2.0 * at::randn({512})));
    for (GgmlGrid grid : {GgmlGrid::kQ4_K, GgmlGrid::kQ2_K, GgmlGrid::kQ3_K, GgmlGrid::kIQ4_NL}) {
        QuantSpec spec;
        spec.grid = grid;
        // With diag H as the importance: the scales GPTQ searches are those round-to-nearest searches.
        const at::Tensor rtn_blocks = ggml_quantize_rows(w, grid, {}, {}, h.diagonal());
        for (bool group_order : {false, true}) {
            GptqOptions o;
            o.group_order = group_order;
            o.damp = 0.0;
            nlohmann::json stats;
            const QuantizedTensor q = gptq_quantize(w, h.clone(), spec, o, "w", stats);
            EXPECT_TRUE(at::equal(q.ggml_blocks, rtn_blocks)) << ggml_grid_traits(grid).name << group_order;
        }
    }
}

// A tiny block, its calibration inputs and the context a method sees.
struct BlockCase {
    LlamaConfig config = test::tiny_config();
    Rope rope;
    DecoderBlock block;
    at::Tensor inputs;
    QuantizeOptions options;
    BlockContext context;

    explicit BlockCase(at::ScalarType storage = at::kFloat) {
        const Checkpoint ckpt = test::memory_checkpoint(config, test::random_weights(config, 3));
        block = load_block(*ckpt.tensors, config, PackedInfo{}, 0, at::TensorOptions().dtype(at::kFloat));
        rope = make_rope(config, 16, at::TensorOptions().dtype(at::kFloat));
        at::manual_seed(4);
        inputs = at::randn({5, 16, config.hidden_size}).to(storage);
        options.batch_size = 2;  // three batches, the last one short
        options.spec.bits = 2;
        options.spec.group_size = 8;
        context.config = &config;
        context.rope = &rope;
        context.inputs = &inputs;
        context.options = &options;
    }
    void quantize(DecoderBlock& b, int index) const {
        b.linears[index] = std::make_shared<QuantizedLinear>(quantize_rtn(b.linears[index]->weight(), options.spec),
                                                             b.input_norm.options());
    }
};

// Each group's Hessians and the block's outputs, group after group quantized: kept stages, or every pass from the
// block's input (capture_hessians and BlockContext::run, what the pipeline did before stages were kept).
void expect_kept_stages_change_nothing(BlockCase& c) {
    DecoderBlock kept = c.block, fresh = c.block;
    SequentialHessians capture(kept, c.context);
    for (const auto& group : gptq_linear_order(true)) {
        const std::vector<at::Tensor> a = capture.next(group);
        const std::vector<at::Tensor> b = capture_hessians(fresh, c.context, group);
        for (int index : group) {
            ASSERT_TRUE(a[index].defined() && b[index].defined()) << index;
            EXPECT_TRUE(at::equal(a[index], b[index])) << hf_names::kLinearNames[index];
            c.quantize(kept, index);
            c.quantize(fresh, index);
        }
    }
    const at::Tensor outputs = capture.outputs();
    const at::Tensor expected = c.context.run(fresh, c.inputs);
    EXPECT_EQ(outputs.scalar_type(), c.inputs.scalar_type());
    EXPECT_TRUE(at::equal(outputs, expected));
    EXPECT_GT((expected - c.context.run(c.block, c.inputs)).abs().max().item<double>(), 0.0);  // the linears changed
}

TEST(SequentialHessians, KeptStagesGiveEveryGroupsHessianAndTheOutputsBitForBit) {
    BlockCase c;
    expect_kept_stages_change_nothing(c);
}

TEST(SequentialHessians, NarrowerActivationBuffersStartEveryPassFromTheInput) {
    BlockCase c(at::kBFloat16);  // stored bf16, computed fp32: a kept fp32 stage would not fit the buffer
    expect_kept_stages_change_nothing(c);
}

TEST(SequentialHessians, AKeptStageWhoseLinearsChangedIsComputedAgain) {
    BlockCase c;
    DecoderBlock block = c.block;
    SequentialHessians capture(block, c.context);
    (void)capture.next({kOProj});  // keeps the attention output
    c.quantize(block, kQProj);      // out of order: o's input is not what was kept
    EXPECT_TRUE(at::equal(capture.next({kOProj})[kOProj], capture_hessians(block, c.context, {kOProj})[kOProj]));
    (void)capture.next({kGateProj, kUpProj});  // keeps the residual after attention
    c.quantize(block, kOProj);
    EXPECT_TRUE(at::equal(capture.next({kDownProj})[kDownProj],
                          capture_hessians(block, c.context, {kDownProj})[kDownProj]));
    EXPECT_TRUE(at::equal(capture.outputs(), c.context.run(block, c.inputs)));
}

}  // namespace
}  // namespace saliq
