// CUDA against the CPU reference; skipped where there is no GPU (CI).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#include "model_fixture.h"
#include "quant/method.h"
#include "saliq/model.h"
#include "saliq/perplexity.h"
#include "saliq/quantize.h"
#include "saliq/tokenizer.h"
#include "saliq/zeroshot.h"
#include "test_utils.h"

namespace saliq {
namespace {

bool has_gpu() { return torch::cuda::device_count() > 0; }

TEST(Cuda, ForwardMatchesCpu) {
    if (!has_gpu()) GTEST_SKIP() << "no CUDA device";
    c10::InferenceMode guard;
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c);
    ModelOptions gpu;
    gpu.device = "cuda";
    gpu.dtype = "fp32";
    auto cpu_model = LlamaModel::load(test::memory_checkpoint(c, weights), {});
    auto gpu_model = LlamaModel::load(test::memory_checkpoint(c, weights), gpu);
    const at::Tensor ids = at::randint(0, c.vocab_size, {2, 16}, at::kLong);
    const at::Tensor a = cpu_model->forward(ids), b = gpu_model->forward(ids).cpu();
    EXPECT_LT((a - b).abs().max().item<double>(), 1e-3);
    gpu.dtype = "bf16";
    const at::Tensor c16 = LlamaModel::load(test::memory_checkpoint(c, weights), gpu)->forward(ids).cpu();
    EXPECT_LT(((a - c16).norm() / a.norm()).item<double>(), 0.05);
}

TEST(Cuda, RtnAndApiqRunOnTheGpu) {
    if (!has_gpu()) GTEST_SKIP() << "no CUDA device";
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = read_llama2c(test::stories_bin());
    QuantizeOptions o;
    o.method = "rtn";
    o.spec.bits = 4;
    o.spec.group_size = 32;
    o.calib.source = "tinystories";
    o.calib.nsamples = 4;
    o.calib.seqlen = 64;
    o.model.device = "cuda";
    o.model.dtype = "fp32";
    const auto gpu = quantize_model(ckpt, *tok, o);
    o.model.device = "cpu";
    const auto cpu = quantize_model(ckpt, *tok, o);
    for (size_t i = 0; i < cpu.blocks.size(); ++i)
        EXPECT_NEAR(gpu.blocks[i].block_error, cpu.blocks[i].block_error, 1e-3 + 0.05 * cpu.blocks[i].block_error);
    o.method = "apiq-bw";
    o.spec.bits = 2;
    o.model.device = "cuda";
    o.model.dtype = "bf16";
    o.apiq.epochs = 3;
    o.apiq.lora_rank = 8;
    const auto apiq = quantize_model(ckpt, *tok, o);
    for (const auto& b : apiq.blocks) {
        const auto& stage = b.method_stats["stages"][0];
        EXPECT_LT(stage["loss_end"].get<double>(), stage["loss_start"].get<double>());
    }
}

// A packed folder on CUDA: no PackedLinear (which would dequantize tiles on the host every forward), dense weights
// dequantized once on load, and the CPU's packed logits.
TEST(Cuda, PackedFoldersAreDequantizedOnceOnLoad) {
    if (!has_gpu()) GTEST_SKIP() << "no CUDA device";
    test::TempDir dir;
    const auto r = test::run_saliq("quantize -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                                   " --method rtn --bits 4 --group-size 32 -q --out " + dir.file("q"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Checkpoint packed = load_checkpoint(dir.file("q"));
    ModelOptions gpu_options;
    gpu_options.device = "cuda";
    gpu_options.dtype = "fp32";
    auto gpu = LlamaModel::load(packed, gpu_options);
    auto cpu = LlamaModel::load(packed, {});
    EXPECT_EQ(dynamic_cast<const PackedLinear*>(gpu->block(0).linears[0].get()), nullptr);
    EXPECT_NE(dynamic_cast<const PackedLinear*>(cpu->block(0).linears[0].get()), nullptr);
    c10::InferenceMode guard;
    const at::Tensor ids = at::randint(0, packed.config.vocab_size, {1, 32}, at::kLong);
    const at::Tensor a = gpu->forward(ids.to(at::kCUDA)).cpu(), b = cpu->forward(ids);
    EXPECT_LT((a - b).abs().max().item<double>(), 1e-3);
}

// The evaluator's two engines (perplexity windows, batched zero-shot scoring with shared prefixes) on the GPU.
TEST(Cuda, PerplexityAndZeroShotScoresMatchCpu) {
    if (!has_gpu()) GTEST_SKIP() << "no CUDA device";
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c, 5);
    ModelOptions gpu;
    gpu.device = "cuda";
    gpu.dtype = "fp32";
    auto cpu_model = LlamaModel::load(test::memory_checkpoint(c, weights), {});
    auto gpu_model = LlamaModel::load(test::memory_checkpoint(c, weights), gpu);

    std::vector<int32_t> tokens(200);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7 + i / 3) % c.vocab_size);
    PerplexityOptions p;
    p.seqlen = 32;
    p.batch_size = 3;
    EXPECT_NEAR(evaluate_perplexity(*gpu_model, tokens, p).ppl, evaluate_perplexity(*cpu_model, tokens, p).ppl,
                1e-3 * evaluate_perplexity(*cpu_model, tokens, p).ppl);

    const std::vector<std::vector<TokenizedRequest>> groups = {
        {{{1, 5, 9, 33}, {2, 7}}, {{1, 5, 9, 33}, {2, 7, 7, 60}}, {{1, 5, 9, 33}, {12}}},
        {{{4, 4}, {5}}, {{6, 4}, {5}}},
        {{{1, 2}, {30, 31, 32, 33, 34, 35, 36, 37, 38, 39}}, {{1, 2}, {30, 31}}},
    };
    LoglikelihoodOptions options;
    options.batch_size = 2;
    const auto want = compute_loglikelihoods(*cpu_model, groups, options);
    const auto got = compute_loglikelihoods(*gpu_model, groups, options);
    for (size_t g = 0; g < groups.size(); ++g)
        for (size_t i = 0; i < groups[g].size(); ++i) {
            EXPECT_NEAR(got[g][i].logprob, want[g][i].logprob, 1e-3) << "group " << g << " request " << i;
            EXPECT_EQ(got[g][i].is_greedy, want[g][i].is_greedy) << "group " << g << " request " << i;
        }
}

}  // namespace
}  // namespace saliq
