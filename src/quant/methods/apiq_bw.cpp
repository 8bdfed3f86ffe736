// ApiQ-bw (Liao et al. 2024, apiq/calibrate.py) and OmniQuant's LWC (the same loop without LoRA): per block, learn
// the clipping factors (and LoRA adapters) so the quantized block fed with the quantized chain's input reproduces
// the FP block's outputs; optionally with the saliency-weighted regularizer of Cao & Aref (2025).
#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "quant/method.h"
#include "quant/slim_bits.h"
#include "quant/trainable.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

class ApiqBlockwise : public QuantMethod {
public:
    explicit ApiqBlockwise(bool lora) : lora_(lora) {}
    double extra_activation_buffers(const LlamaConfig&) const override { return 2.0; }  // the targets T1, T2
    uint64_t workspace_bytes(const LlamaConfig& c, const QuantizeOptions& o) const override {
        const uint64_t training = training_workspace_bytes(c, o.apiq.train_batch, o.calib.seqlen);
        return o.bit_map == "slim" ? std::max(training, slim_search_bytes(c, o.spec)) : training;  // search, then train
    }

    nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& ctx) override {
        const QuantizeOptions& o = *ctx.options;
        const int64_t layer = ctx.layer;
        const at::TensorOptions options = block.input_norm.options();
        const int64_t N = ctx.inputs->size(0);
        const int64_t batch = std::max<int64_t>(1, o.apiq.train_batch);
        // Training computes in --train-dtype (bf16 on the matrix units) beside the model's dtype: the block's norms,
        // rotary tables and input windows are cast to it; targets, master weights, optimizer and loss stay fp32.
        const at::ScalarType compute = training_compute_dtype(o, options);
        const bool fp16 = compute == at::kHalf;
        const Rope rope{ctx.rope->cos.to(compute), ctx.rope->sin.to(compute)};

        // Targets from the FP block: on the FP chain's input (T1) and on the quantized chain's input (T2).
        const DecoderBlock fp_block = block;
        const at::Tensor t1 = ctx.run(fp_block, *ctx.fp_inputs);
        if (ctx.fp_outputs != nullptr) *ctx.fp_outputs = t1;  // T1 is the FP chain's next input too
        // --lwc-init search: the importance of each linear's columns, taken in the same pass as T2.
        const bool search = o.apiq.lwc_init == "search";
        at::Tensor t2;
        std::vector<at::Tensor> importance;
        if (search) importance = input_second_moments(fp_block, ctx, o.apiq.aug_loss ? &t2 : nullptr);
        else if (o.apiq.aug_loss) t2 = ctx.run(fp_block, *ctx.inputs);

        nlohmann::json stats = nlohmann::json::object();
        // --bit-map slim (slim-llm-plus): SliM-LLM's widths per group, chosen on the FP block before training;
        // --bit-map FILE: those of an earlier run.
        const std::vector<at::Tensor> maps = o.bit_map.empty()    ? std::vector<at::Tensor>(kNumLinears)
                                             : o.bit_map == "slim" ? slim_bit_maps(fp_block, ctx, stats)
                                                                   : read_bit_maps(o.bit_map, layer, *ctx.config, o.spec);

        seed_block(o, layer);
        DecoderBlock train = block;
        train.input_norm = block.input_norm.to(compute);
        train.post_norm = block.post_norm.to(compute);
        std::vector<std::shared_ptr<TrainableLinear>> trainables;
        std::vector<const TrainableLinear*> raw;
        std::vector<std::string> names;
        std::vector<at::Tensor> lwc_params, lora_params;
        for (int i = 0; i < kNumLinears; ++i) {
            auto t = make_trainable_linear(block.linears[i]->weight(), o, lora_ ? o.apiq.lora_rank : 0, maps[i],
                                           ctx.outlier(i));
            for (auto& p : t->quantizer_parameters()) lwc_params.push_back(p);
            for (auto& p : t->lora_parameters()) lora_params.push_back(p);
            train.linears[i] = t;
            raw.push_back(t.get());
            names.push_back(hf_names::linear_name(layer, i));
            trainables.push_back(std::move(t));
        }
        if (search) {  // each group's clipping starts where its weighted error is least
            for (int i = 0; i < kNumLinears; ++i) {
                auto* lwc = dynamic_cast<LwcLinear*>(trainables[static_cast<size_t>(i)].get());
                if (lwc == nullptr) throw Error("internal: --lwc-init search reached a linear without LWC");
                lwc->start_from_search(importance[static_cast<size_t>(i)]);
            }
        }
        const auto stages = resolve_stages(o);
        std::vector<at::Tensor> fisher;
        double lambda = 0.0;
        if (stages_use_reg(stages)) {
            nlohmann::json fisher_stats = nlohmann::json::object();
            fisher = load_block_fisher(o, raw, names, fisher_stats);
            lambda = block_lambda(o, layer);
            stats["fisher"] = fisher_stats;
            stats["lambda"] = lambda;
        }
        Trainer trainer(lwc_params, lora_params, lwc_learning_rate(o, lora_), lora_learning_rate(o),
                        training_weight_decay(o, lora_), fp16);
        const bool after_lora = o.saliency.reg_method == "after_lora";

        const std::string where = strprintf("%s, block %lld", lora_ ? "apiq-bw" : "omniquant", (long long)layer);
        stats["stages"] = run_stages(stages, trainer, N, batch,
                                     [&](const std::string& stage, int64_t b, int64_t n) {
                                         for (const auto& t : trainables) t->begin_step();  // Q(W) once a step
                                         at::Tensor loss = at::zeros({}, options.dtype(at::kFloat));
                                         if (stage_uses_mse(stage)) {
                                             const at::Tensor out = block_forward(train, *ctx.config, rope,
                                                                                  compute_slice(*ctx.inputs, b, n, train))
                                                                        .to(at::kFloat);
                                             loss = loss + at::mse_loss(out, t1.narrow(0, b, n).to(at::kFloat));
                                             if (t2.defined())
                                                 loss = loss + at::mse_loss(out, t2.narrow(0, b, n).to(at::kFloat));
                                         }
                                         if (stage_uses_reg(stage))
                                             loss = loss + lambda * saliency_regularizer(raw, fisher, after_lora);
                                         return loss;
                                     },
                                     where);
        for (const auto& t : trainables) t->end_step();

        // Freeze the learned grids; the quantized chain moves on through the block with its adapters.
        finished_.clear();
        for (int i = 0; i < kNumLinears; ++i) {
            finished_.push_back(trainables[static_cast<size_t>(i)]->finalize(names[static_cast<size_t>(i)]));
            block.linears[i] = inference_linear(finished_.back(), options);
        }
        return stats;
    }

    std::vector<LinearResult> take_results() override { return std::move(finished_); }

private:
    bool lora_;
    std::vector<LinearResult> finished_;
};

}  // namespace

std::unique_ptr<QuantMethod> make_apiq_bw_method() { return std::make_unique<ApiqBlockwise>(true); }
std::unique_ptr<QuantMethod> make_omniquant_method() { return std::make_unique<ApiqBlockwise>(false); }
// SliM-LLM+: OmniQuant's LWC on SliM-LLM's bit map (validate_quantize_options sets --bit-map slim).
std::unique_ptr<QuantMethod> make_slim_llm_plus_method() { return std::make_unique<ApiqBlockwise>(false); }

}  // namespace saliq
