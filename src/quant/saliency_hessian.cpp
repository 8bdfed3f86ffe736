// SliM-LLM's Hessian salience (Huang et al. 2024; methods_formats_eval.md §1.3, as its code computes it): for each
// linear, H = 2 X^T X / N from its calibration inputs on the full-precision chain, 0.01 added to diag(H), GPTQ's 1%
// relative damping, U = upper-Cholesky(H^-1), and delta_ij = w_ij^2 / U_jj^2 (the OBS-style loss of removing w_ij).
// The chain runs block by block over all windows, reading one block (and holding its Hessians) at a time. The same
// walk sums x² per input column: llama.cpp's importance matrix (compute_input_square_sums).
#include <chrono>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "quant/method.h"
#include "saliq/error.h"
#include "saliq/saliency.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

at::Tensor hessian_salience(const at::Tensor& weight, at::Tensor H, const std::string& name) {
    H = H.to(at::kDouble);
    H.diagonal().add_(0.01);  // SliM-LLM's get_salience, before the relative damping
    H.diagonal().add_(0.01 * H.diagonal().mean().item<double>());
    auto [L, info] = at::linalg_cholesky_ex(H);
    if (info.item<int64_t>() != 0)
        throw NumericError("hessian salience: the Hessian of " + name + " is not positive definite");
    H.reset();
    const at::Tensor Hinv = at::cholesky_inverse(L);
    L.reset();
    auto [U, info2] = at::linalg_cholesky_ex(Hinv, /*upper=*/true);
    if (info2.item<int64_t>() != 0)
        throw NumericError("hessian salience: the inverse Hessian of " + name + " is not positive definite");
    const at::Tensor d = U.diagonal().to(at::kFloat).to(weight.device());
    return (weight.to(at::kFloat).pow(2) / d.pow(2).unsqueeze(0)).to(at::kCPU);
}

// The FP chain run block by block over the calibration windows (one block resident): every batch a linear sees goes
// to sink.see(linear, x [tokens, in] fp32), every finished block to sink.done(layer, block).
template <typename Sink>
void walk_fp_chain(const Checkpoint& ckpt, const Tokenizer& tokenizer, const FisherOptions& o, const char* stage,
                   const ProgressFn& progress, Sink& sink) {
    auto model = load_saliency_model(ckpt, o, /*stream_blocks=*/true);  // block-major: one block resident at a time
    const CalibSet calib = sample_calibration(o.calib, tokenizer);
    const int64_t N = o.calib.nsamples, T = o.calib.seqlen, batch = 8;
    const at::Tensor ids =
        at::tensor(std::vector<int64_t>(calib.tokens.begin(), calib.tokens.end()), at::kLong).view({N, T});
    c10::NoGradGuard no_grad;
    at::Tensor hidden = model->embed(ids);
    const auto start = std::chrono::steady_clock::now();
    for (int64_t layer = 0; layer < model->n_layers(); ++layer) {
        const DecoderBlock block = model->read_block(layer);
        sink.begin(block, model->options());
        DecoderBlock hooked = block;
        for (int i : kAllLinears)
            hooked.linears[i] = std::make_shared<CapturingLinear>(block.linears[i], [&sink, i](const at::Tensor& x) {
                sink.see(i, x.reshape({-1, x.size(-1)}).to(at::kFloat));
            });
        at::Tensor next = at::empty_like(hidden);
        for (int64_t b = 0; b < N; b += batch) {
            const int64_t m = std::min(batch, N - b);
            next.narrow(0, b, m).copy_(block_forward(hooked, model->config(), model->rope(), hidden.narrow(0, b, m)));
        }
        sink.done(layer, block);
        hidden = next;
        if (progress) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (!progress({"salience", layer + 1, model->n_layers(), elapsed, stage})) throw Cancelled{};
        }
    }
}

// H = 2 X^T X / N per linear, then the salience of its weight.
struct HessianSink {
    int64_t windows = 0;
    std::vector<at::Tensor> sums;
    std::map<std::string, at::Tensor> out;
    void begin(const DecoderBlock& block, const at::TensorOptions& options) {
        sums.assign(kNumLinears, at::Tensor());
        for (int i : kAllLinears) {
            const int64_t in = block.linears[i]->in_features();
            sums[i] = at::zeros({in, in}, options.dtype(at::kFloat));
        }
    }
    void see(int i, const at::Tensor& x) { sums[i].addmm_(x.t(), x); }
    void done(int64_t layer, const DecoderBlock& block) {
        for (int i : kAllLinears) {
            const std::string name = hf_names::linear_name(layer, i);
            at::Tensor H = std::move(sums[i]);
            H.mul_(2.0 / static_cast<double>(windows));  // GPTQ's N counts sequences
            out[name + ".weight"] = hessian_salience(block.linears[i]->weight(), std::move(H), name);
        }
    }
};

// Σ x² per input column and the tokens summed (llama.cpp's importance matrix).
struct SquareSumSink {
    std::vector<at::Tensor> sums;
    int64_t tokens = 0;
    std::map<std::string, at::Tensor> out;
    void begin(const DecoderBlock& block, const at::TensorOptions& options) {
        sums.assign(kNumLinears, at::Tensor());
        for (int i : kAllLinears) sums[i] = at::zeros({block.linears[i]->in_features()}, options.dtype(at::kDouble));
        tokens = 0;
    }
    void see(int i, const at::Tensor& x) {
        sums[i].add_(x.to(at::kDouble).pow(2).sum(0));
        if (i == kQProj) tokens += x.size(0);
    }
    void done(int64_t layer, const DecoderBlock&) {
        for (int i : kAllLinears)
            out[hf_names::linear_name(layer, i) + ".weight"] = sums[i].to(at::kFloat).to(at::kCPU);
    }
};

}  // namespace

std::map<std::string, at::Tensor> compute_hessian_salience(const Checkpoint& ckpt, const Tokenizer& tokenizer,
                                                           const FisherOptions& o, const ProgressFn& progress) {
    HessianSink sink;
    sink.windows = o.calib.nsamples;
    walk_fp_chain(ckpt, tokenizer, o, "hessian", progress, sink);
    return std::move(sink.out);
}

std::map<std::string, at::Tensor> compute_input_square_sums(const Checkpoint& ckpt, const Tokenizer& tokenizer,
                                                            const FisherOptions& o, int64_t& tokens,
                                                            const ProgressFn& progress) {
    SquareSumSink sink;
    walk_fp_chain(ckpt, tokenizer, o, "imatrix", progress, sink);
    tokens = sink.tokens;
    return std::move(sink.out);
}

}  // namespace saliq
