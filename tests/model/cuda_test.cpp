// CUDA against the CPU reference; skipped where there is no GPU (CI).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#include "model_fixture.h"
#include "quant/method.h"
#include "saliq/model.h"
#include "saliq/quantize.h"
#include "saliq/tokenizer.h"
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

}  // namespace
}  // namespace saliq
