// ReQuant's Post-quantization Integral (Hu et al. 2025; methods_formats_eval.md §1.4): with F the mean next-token
// cross-entropy over the calibration windows, w the FP weights and w~ their quantized values (RTN with the run's
// spec), PQI_i = (w~_i - w_i) * ∫_0^1 dF/dw_i (w + t (w~ - w)) dt, so the PQI of all weights sum to F(w~) - F(w).
// The integral is the trapezoid rule on `pqi_points` + 1 points of t, every linear of every block moved at once; each
// point is one forward and backward pass per window. The salience written is |PQI|.
#include <chrono>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include "quant/pqi.h"
#include "saliq/error.h"
#include "saliq/saliency.h"
#include "saliq/strings.h"

namespace saliq {

PqiIntegral integrate_pqi(const LlamaModel& model, std::vector<at::Tensor>& weights,
                          const std::vector<at::Tensor>& start, const std::vector<at::Tensor>& delta,
                          const CalibSet& calib, int64_t T, int64_t K, const std::string& stage,
                          const ProgressFn& progress) {
    const int64_t N = static_cast<int64_t>(calib.tokens.size()) / T;
    const double inv_windows = 1.0 / static_cast<double>(N);
    std::vector<at::Tensor> integral;
    for (const auto& w : weights) integral.push_back(at::zeros(w.sizes(), w.options().dtype(at::kFloat)));
    PqiIntegral result;
    c10::AutoGradMode grad(true);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t k = 0; k <= K; ++k) {
        const double t = static_cast<double>(k) / static_cast<double>(K);
        const double weight = (k == 0 || k == K ? 0.5 : 1.0) / static_cast<double>(K);  // trapezoid
        {
            c10::NoGradGuard no_grad;
            for (size_t j = 0; j < weights.size(); ++j) weights[j].copy_(start[j] + t * delta[j]);
        }
        double loss_sum = 0.0;
        for (int64_t n = 0; n < N; ++n) {
            std::vector<int64_t> window(calib.tokens.begin() + n * T, calib.tokens.begin() + (n + 1) * T);
            const at::Tensor ids = at::tensor(window, at::kLong).unsqueeze(0).to(model.options().device());
            const at::Tensor logits = model.forward(ids);
            const at::Tensor loss =
                at::cross_entropy_loss(logits[0].narrow(0, 0, T - 1), ids[0].narrow(0, 1, T - 1)) * inv_windows;
            const double value = loss.item<double>();
            if (!std::isfinite(value))
                throw NumericError(strprintf("%s: non-finite loss at t = %.3f on window %lld", stage.c_str(), t,
                                             (long long)n));
            loss_sum += value;
            const auto grads = torch::autograd::grad({loss}, weights);
            for (size_t j = 0; j < grads.size(); ++j) integral[j].add_(grads[j].to(at::kFloat), weight);
        }
        result.losses.push_back(loss_sum);
        if (progress) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (!progress({stage, k + 1, K + 1, elapsed, strprintf("t %.3f loss %.4f", t, loss_sum)}))
                throw Cancelled{};
        }
    }
    for (size_t j = 0; j < weights.size(); ++j) result.pqi.push_back(integral[j].mul_(delta[j].to(at::kFloat)));
    return result;
}

PqiResult compute_pqi(const Checkpoint& ckpt, const Tokenizer& tokenizer, const FisherOptions& o,
                      const ProgressFn& progress) {
    if (o.pqi_points < 1) throw ConfigError("--pqi-points must be at least 1");
    o.spec.validate();
    auto model = load_saliency_model(ckpt, o, /*stream_blocks=*/false);
    const CalibSet calib = sample_calibration(o.calib, tokenizer);

    std::vector<std::string> names;
    std::vector<at::Tensor> weights, start, delta;
    for (int64_t layer = 0; layer < model->n_layers(); ++layer)
        for (int i = 0; i < kNumLinears; ++i) {
            at::Tensor w = model->block(layer).linears[i]->weight();
            names.push_back(hf_names::linear_name(layer, i) + ".weight");
            start.push_back(w.detach().clone());
            delta.push_back(quantize_rtn(w.detach(), o.spec).dequantize().to(w.options()) - start.back());
            w.requires_grad_(true);
            weights.push_back(w);
        }
    const PqiIntegral integral = integrate_pqi(*model, weights, start, delta, calib, o.calib.seqlen, o.pqi_points,
                                               "pqi", progress);
    PqiResult result;
    result.loss_fp = integral.losses.front();
    result.loss_quantized = integral.losses.back();
    for (size_t j = 0; j < weights.size(); ++j) {
        result.predicted_change += integral.pqi[j].sum().item<double>();
        result.salience[names[j]] = integral.pqi[j].abs().to(at::kCPU);
    }
    return result;
}

}  // namespace saliq
