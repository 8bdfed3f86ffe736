// Times ApiQ-bw on one decoder block of a given shape with random weights and random calibration activations
// (default: LLaMA-2-7B, hidden 4096 / intermediate 11008 / 32 heads, 128 x 2048 tokens, 20 epochs), and prints
// seconds per block, and the calibration's GEMM throughput beside this machine's GEMM ceiling measured in the same run
// (the best of a few [4 x seqlen, hidden] x [hidden, intermediate] matmuls in the same dtype and threads).
// Peak GPU memory is measured from outside (scripts/bench_apiq_block.sh polls nvidia-smi).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <CLI/CLI.hpp>

#include <torch/csrc/autograd/profiler_legacy.h>

#include "quant/method.h"
#include "quant/trainable.h"
#include "saliq/error.h"
#include "saliq/threads.h"

using namespace saliq;

namespace {

// Best FLOP/s of [m, k] x [k, n] over a few repetitions after a warm-up: what this machine's GEMM gives this shape.
double gemm_ceiling(int64_t m, int64_t k, int64_t n, const at::TensorOptions& options) {
    const at::Tensor a = at::randn({m, k}, options), w = at::randn({n, k}, options);
    double best = 0;
    for (int rep = 0; rep < 6; ++rep) {
        const auto start = std::chrono::steady_clock::now();
        at::linear(a, w).sum().item<float>();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (rep > 0) best = std::max(best, 2.0 * static_cast<double>(m * k * n) / s);
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ApiQ-bw block timing on random weights"};
    LlamaConfig c;
    c.hidden_size = 4096;
    c.intermediate_size = 11008;
    c.n_heads = 32;
    c.n_kv_heads = 32;
    c.n_layers = 1;
    c.vocab_size = 32000;
    c.rms_norm_eps = 1e-5;
    int64_t nsamples = 128, seqlen = 2048, epochs = 20;
    std::string device = "cuda", dtype = "auto", method = "apiq-bw", train_dtype = "auto", profile;
    app.add_option("--hidden", c.hidden_size)->capture_default_str();
    app.add_option("--intermediate", c.intermediate_size)->capture_default_str();
    app.add_option("--heads", c.n_heads)->capture_default_str();
    app.add_option("--nsamples", nsamples)->capture_default_str();
    app.add_option("--seqlen", seqlen)->capture_default_str();
    app.add_option("--epochs", epochs)->capture_default_str();
    app.add_option("--device", device)->capture_default_str();
    app.add_option("--dtype", dtype)->capture_default_str();
    app.add_option("--method", method, "apiq-bw or omniquant")->capture_default_str();
    app.add_option("--train-dtype", train_dtype, "training matmul dtype: fp32, bf16, fp16 or auto")->capture_default_str();
    app.add_option("--profile", profile,
                   "write LibTorch's op-level trace of the block's training (chrome trace JSON) to this file; "
                   "scripts/profile_summary.py sums it per op")
        ->capture_default_str();
    int threads = 0;
    app.add_option("--threads", threads, "CPU threads (0: all cores)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    try {
        set_compute_threads(threads);
        c.n_kv_heads = c.n_heads;
        c.head_dim = c.hidden_size / c.n_heads;
        c.max_position_embeddings = seqlen;
        QuantizeOptions o;
        o.method = method;
        o.spec.bits = 2;
        o.spec.group_size = 64;
        o.model.device = device;
        o.model.dtype = dtype;
        o.apiq.epochs = epochs;
        o.apiq.train_dtype = train_dtype;
        o.batch_size = 4;
        const at::TensorOptions options = resolve_model_options(o.model);
        at::manual_seed(0);
        const int64_t H = c.hidden_size, I = c.intermediate_size;
        auto rnd = [&](int64_t out, int64_t in) {
            return std::make_shared<DenseLinear>((at::randn({out, in}) / std::sqrt(static_cast<double>(in))).to(options));
        };
        DecoderBlock block;
        block.input_norm = at::ones({H}, options);
        block.post_norm = at::ones({H}, options);
        block.linears = {rnd(H, H), rnd(H, H), rnd(H, H), rnd(H, H), rnd(I, H), rnd(I, H), rnd(H, I)};
        const at::Tensor x = at::randn({nsamples, seqlen, H}, options);
        const at::Tensor x_fp = x + 0.01 * at::randn_like(x);
        const Rope rope = make_rope(c, seqlen, options);
        BlockContext ctx;
        ctx.config = &c;
        ctx.rope = &rope;
        ctx.inputs = &x;
        ctx.fp_inputs = &x_fp;
        ctx.options = &o;
        auto m = method == "omniquant" ? make_omniquant_method() : make_apiq_bw_method();
        c10::NoGradGuard no_grad;
        if (options.device().is_cuda()) at::empty({1}, options).item<float>();  // create the context first
        const auto start = std::chrono::steady_clock::now();
        nlohmann::json stats;
        const double train_seconds_before = training_seconds();
        {
            std::unique_ptr<torch::autograd::profiler::RecordProfile> trace;
            if (!profile.empty()) trace = std::make_unique<torch::autograd::profiler::RecordProfile>(profile);
            stats = m->quantize_block(block, ctx);
        }
        const at::Tensor y = ctx.run(block, x);  // the chain moves on, as in the pipeline
        y.sum().item<float>();                   // synchronize
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const auto& stage = stats["stages"][0];
        // The training loop alone (forward, backward, optimizer of every step), without the block's one-off work
        // (FP targets, grids, finalizing, the chain's forward), which short runs would otherwise spread over few steps.
        const double train_seconds = training_seconds() - train_seconds_before;
        const double steps = static_cast<double>(stage["steps"].get<int64_t>());
        // Matmul work of the run: per token, a block forward F = 2 (4 H^2 + 3 H I) + 4 T H (projections, then scores
        // and values over all T keys), three of them per epoch (forward, backward to inputs, backward to weights),
        // plus the FP target's forward and the chain's forward.
        const double Hd = static_cast<double>(H), Id = static_cast<double>(I), Td = static_cast<double>(seqlen);
        const double F = 2.0 * (4.0 * Hd * Hd + 3.0 * Hd * Id) + 4.0 * Td * Hd;
        const double flops = static_cast<double>(nsamples) * Td * F * (3.0 * static_cast<double>(epochs) + 2.0);
        const double step_flops = static_cast<double>(nsamples) * Td * F * 3.0 * static_cast<double>(epochs) / steps;
        const at::TensorOptions train_options = options.dtype(training_compute_dtype(o, options));
        const double ceiling = gemm_ceiling(o.batch_size * seqlen, H, I, train_options);
        std::printf("%s block %lldx%lld (heads %lld), %lld x %lld tokens, %lld epochs, %s %s, training in %s, %d "
                    "threads: %.1f s per block "
                    "(%.1f ms per step), loss %.4e -> %.4e\n",
                    method.c_str(), (long long)H, (long long)I, (long long)c.n_heads, (long long)nsamples,
                    (long long)seqlen, (long long)epochs, options.device().str().c_str(),
                    c10::toString(options.dtype().toScalarType()),
                    c10::toString(training_compute_dtype(o, options)), compute_threads(), seconds,
                    1000.0 * seconds / static_cast<double>(epochs * nsamples), stage["loss_start"].get<double>(),
                    stage["loss_end"].get<double>());
        std::printf("%s calibration: %.0f GFLOP/s of matmul work; GEMM ceiling (%lldx%lldx%lld %s): %.0f GFLOP/s; "
                    "%.0f%% of it\n",
                    method.c_str(), flops / seconds / 1e9, (long long)(o.batch_size * seqlen), (long long)H,
                    (long long)I, c10::toString(train_options.dtype().toScalarType()), ceiling / 1e9,
                    100.0 * flops / seconds / ceiling);
        const double step_ms = 1000.0 * train_seconds / steps;
        std::printf("%s training step: %.1f ms (forward, backward, optimizer; %.0f GFLOP/s of matmul work, %.0f%% of "
                    "the ceiling); the block's one-off work %.1f s\n",
                    method.c_str(), step_ms, step_flops / (step_ms / 1000.0) / 1e9,
                    100.0 * step_flops / (step_ms / 1000.0) / ceiling, seconds - train_seconds);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
