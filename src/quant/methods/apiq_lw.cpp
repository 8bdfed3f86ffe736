// ApiQ-lw (Liao et al. 2024, section 3): layer by layer in forward order, minimise
//   || X W^T - X_q (Q(W) + s B A)^T ||^2
// where X is the layer's input in the FP model and X_q its input in the partly quantized model (earlier layers of
// the block already quantized, with their adapters). No official code exists; our choices (README, "ApiQ-lw"):
//  - layers sharing an input train on the same X / X_q: [q, k, v] -> [o] -> [gate, up] -> [down]; X_q of a group is
//    recomputed through the already-finished groups of the block;
//  - each layer has its own AdamW (same learning rates, epochs and stages as ApiQ-bw), batches of whole windows;
//  - the saliency regularizer, when on, is that layer's own term F * (W_eff - W)^2.

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "quant/method.h"
#include "quant/trainable.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

// Inputs [N, T, in] seen by the linears `indices` when `block` runs on `x`; the block's output goes to `output`
// when given.
std::vector<at::Tensor> capture_inputs(const DecoderBlock& block, const BlockContext& ctx, const at::Tensor& x,
                                       const std::vector<int>& indices, at::Tensor* output = nullptr) {
    std::vector<std::vector<at::Tensor>> seen(kNumLinears);
    at::Tensor out_x = ctx.run(capturing_block(block, indices, seen), x);
    if (output != nullptr) *output = out_x;
    std::vector<at::Tensor> out(kNumLinears);
    for (int i : indices) out[i] = at::cat(seen[i], 0);
    return out;
}

class ApiqLayerwise : public QuantMethod {
public:
    double extra_activation_buffers(const LlamaConfig& c) const override {
        // FP inputs of all seven linears (six hidden-wide, one intermediate-wide) and one group's quantized inputs.
        return 6.0 + 3.0 + static_cast<double>(c.intermediate_size) / static_cast<double>(c.hidden_size);
    }
    uint64_t workspace_bytes(const LlamaConfig& c, const QuantizeOptions& o) const override {
        return training_workspace_bytes(c, o.apiq.train_batch, o.calib.seqlen);
    }

    nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& ctx) override {
        const QuantizeOptions& o = *ctx.options;
        const int64_t layer = ctx.layer;
        const at::TensorOptions options = block.input_norm.options();
        const int64_t N = ctx.inputs->size(0);
        const int64_t batch = std::max<int64_t>(1, o.apiq.train_batch);
        const std::vector<std::vector<int>> groups = {{kQProj, kKProj, kVProj}, {kOProj}, {kGateProj, kUpProj},
                                                      {kDownProj}};
        const std::vector<at::Tensor> fp_inputs = capture_inputs(block, ctx, *ctx.fp_inputs, kAllLinears, ctx.fp_outputs);
        const auto stages = resolve_stages(o);
        const double lwc_lr = lwc_learning_rate(o, true), wd = training_weight_decay(o, true);
        const double lambda = block_lambda(o, layer);
        const bool after_lora = o.saliency.reg_method == "after_lora";
        const at::ScalarType compute = training_compute_dtype(o, options);

        seed_block(o, layer);
        nlohmann::json stats = {{"layers", nlohmann::json::object()}};
        finished_.assign(kNumLinears, LinearResult{});
        for (const auto& group : groups) {
            const std::vector<at::Tensor> q_inputs = capture_inputs(block, ctx, *ctx.inputs, group);
            for (int index : group) {
                const std::string name = hf_names::linear_name(layer, index);
                // What the method quantizes (the dense part, without ReQuant's outliers), and the FP linear the
                // target comes from: the whole weight, outliers included, as the prediction includes them too.
                const at::Tensor W = block.linears[index]->weight();
                const std::shared_ptr<Linear> fp_linear = block.linears[index];
                const std::shared_ptr<TrainableLinear> trainable = make_trainable_linear(W, o, o.apiq.lora_rank, at::Tensor(), ctx.outlier(index));
                const TrainableLinear& t = *trainable;
                std::vector<const TrainableLinear*> raw = {&t};
                nlohmann::json layer_stats = nlohmann::json::object();
                std::vector<at::Tensor> fisher;
                if (stages_use_reg(stages)) {
                    nlohmann::json fisher_stats = nlohmann::json::object();
                    fisher = load_block_fisher(o, raw, {name}, fisher_stats);
                    layer_stats["fisher"] = fisher_stats[name];
                }
                Trainer trainer(t.quantizer_parameters(), t.lora_parameters(), lwc_lr, lora_learning_rate(o), wd,
                                compute == at::kHalf);
                layer_stats["stages"] = run_stages(
                    stages, trainer, N, batch,
                    [&](const std::string& stage, int64_t b, int64_t n) {
                        at::Tensor loss = at::zeros({}, options.dtype(at::kFloat));
                        if (stage_uses_mse(stage)) {
                            at::Tensor target;
                            {
                                c10::NoGradGuard no_grad;
                                target = fp_linear->forward(fp_inputs[index].narrow(0, b, n)).to(at::kFloat);
                            }
                            const at::Tensor pred =
                                t.forward(q_inputs[index].narrow(0, b, n).to(compute)).to(at::kFloat);
                            loss = loss + at::mse_loss(pred, target);
                        }
                        if (stage_uses_reg(stage)) loss = loss + lambda * saliency_regularizer(raw, fisher, after_lora);
                        return loss;
                    },
                    "apiq-lw, " + name);
                stats["layers"][name] = layer_stats;
                finished_[static_cast<size_t>(index)] = t.finalize(name);
            }
            // The next groups' quantized inputs run through this group as the folder will hold it: outliers included
            // (the pipeline attaches them to the results themselves after the block).
            for (int index : group) {
                LinearResult shown = finished_[static_cast<size_t>(index)];
                if (ctx.outlier(index) != nullptr) attach_outlier(shown, *ctx.outlier(index));
                block.linears[index] = inference_linear(shown, options);
            }
        }
        if (lambda > 0 && o.saliency.enabled) stats["lambda"] = lambda;
        return stats;
    }

    std::vector<LinearResult> take_results() override { return std::move(finished_); }

private:
    std::vector<LinearResult> finished_;
};

}  // namespace

std::unique_ptr<QuantMethod> make_apiq_lw_method() { return std::make_unique<ApiqLayerwise>(); }

}  // namespace saliq
