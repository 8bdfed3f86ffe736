// What ApiQ and OmniQuant train: a frozen weight behind a trainable fake quantizer, optionally with a LoRA branch;
// plus the optimizer loop with stages, the saliency regularizer and loss scaling.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "saliq/lwc.h"
#include "saliq/model.h"
#include "saliq/quantize.h"

namespace saliq {

// A frozen weight behind a trainable quantizer, optionally with a LoRA branch: what ApiQ (and OmniQuant, without
// LoRA) train. The quantizer is the uniform grid with learnable clipping (LwcLinear) or one of the seed paper's
// binarizers (trainable_binary.cpp).
class TrainableLinear : public Linear {
public:
    // `weight` [out, in] is frozen (kept in fp32, or fp64 when given fp64); LoRA A is Kaiming-uniform, B zero (PEFT's
    // init), when rank > 0.
    TrainableLinear(const at::Tensor& weight, int64_t lora_rank, double lora_alpha);
    // ReQuant's outliers, taken out of `weight` before: added to the quantized weight in forward() and weight(),
    // never trained, outside the regularizer.
    void set_fixed_sparse(const SparsePart& part);

    at::Tensor forward(const at::Tensor& x) const override;     // x in the compute dtype
    at::Tensor weight() const override;                         // current effective weight, detached
    int64_t in_features() const override { return weight_.size(1); }
    int64_t out_features() const override { return weight_.size(0); }

    // Q(W) (+ scale B A when `with_lora`), fp32 and differentiable: the regularizer's W_eff.
    at::Tensor effective_weight(bool with_lora) const;
    const at::Tensor& frozen_weight() const { return weight_; }
    // What the quantizer learns (clipping logits, binarizer scales), trained at the --lwc-lr rate.
    virtual std::vector<at::Tensor> quantizer_parameters() const = 0;
    std::vector<at::Tensor> lora_parameters() const;
    bool has_lora() const { return lora_a_.defined(); }

    // The learned weight as stored (with the adapters and the quantizer's parameters).
    LinearResult finalize(const std::string& name) const;

    // One training step computes Q(W) once: begin_step() keeps it for forward() and the regularizer's
    // effective_weight() until end_step() (weight() and finalize() always compute it afresh).
    void begin_step() { step_weight_ = fake_quant(); }
    void end_step() { step_weight_ = at::Tensor(); }

protected:
    // Q(W) [out, in], differentiable in the quantizer's parameters.
    virtual at::Tensor fake_quant() const = 0;
    // The quantized linear on x (BinaryMoS's depends on x through its router).
    virtual at::Tensor quantized_forward(const at::Tensor& x) const;
    virtual void finalize_quantizer(LinearResult& result) const = 0;

    at::Tensor weight_;  // [out, in] fp32, frozen
    at::Tensor fixed_sparse_;  // [out, in], zero but at the outliers; undefined without them

private:
    at::Tensor quantized_weight() const;  // the step's Q(W) inside a step, else computed afresh

    at::Tensor step_weight_;  // Q(W) of the current step, with its graph; undefined outside a step
    at::Tensor lora_a_;  // [r, in]
    at::Tensor lora_b_;  // [out, r]
    double lora_scale_ = 0.0;
};

// The uniform grid with OmniQuant's learnable weight clipping.
// With `group_bits` ([G] int64), each group at its own width (SliM-LLM+, lwc.h's mixed grid).
class LwcLinear : public TrainableLinear {
public:
    LwcLinear(const at::Tensor& weight, const QuantSpec& spec, int64_t lora_rank, double lora_alpha,
              const at::Tensor& group_bits = at::Tensor());
    std::vector<at::Tensor> quantizer_parameters() const override { return {lwc_.up, lwc_.low}; }
    // --lwc-init search: the clipping logits restart from lwc_search_params with `importance` [in] (the input's
    // second moments; undefined: unweighted). Before training; the uniform grid only (not mixed).
    void start_from_search(const at::Tensor& importance);

protected:
    at::Tensor fake_quant() const override;
    void finalize_quantizer(LinearResult& result) const override;

private:
    QuantSpec spec_;
    at::Tensor group_bits_;  // undefined: spec_.bits everywhere
    LwcParams lwc_;  // [out, G] each
    at::Tensor group_max_, group_min_;  // [out, G] of the frozen weight, computed once
};

// DB-LLM's flexible dual binarization (alpha1, alpha2 per group of --group-size) and BinaryMoS (--mos-experts
// scale experts); trainable_binary.cpp.
std::shared_ptr<TrainableLinear> make_dual_binary_linear(const at::Tensor& weight, int64_t group_size,
                                                         int64_t lora_rank, double lora_alpha);
std::shared_ptr<TrainableLinear> make_mos_linear(const at::Tensor& weight, int64_t experts, int64_t lora_rank,
                                                 double lora_alpha);

// The trainable linear of --quantizer (uniform, db-llm, binarymos) for `weight`; `group_bits` (the uniform grid
// only): a mixed-precision bit map.
// `outliers`: ReQuant's S_outlier of this linear (BlockContext::outlier), or null.
std::shared_ptr<TrainableLinear> make_trainable_linear(const at::Tensor& weight, const QuantizeOptions& options,
                                                       int64_t lora_rank, const at::Tensor& group_bits = at::Tensor(),
                                                       const SparsePart* outliers = nullptr);

// Stages after the defaults are applied: plain ApiQ trains "opt" for `epochs`; with saliency, "mixed" for `epochs`.
std::vector<TrainStage> resolve_stages(const QuantizeOptions& options);
bool stage_uses_mse(const std::string& stage);
bool stage_uses_reg(const std::string& stage);
bool stages_use_reg(const std::vector<TrainStage>& stages);  // any stage with epochs that needs the regularizer

// Per-block settings shared by ApiQ-bw, OmniQuant (with_lora false) and ApiQ-lw.
double block_lambda(const QuantizeOptions& options, int64_t layer);            // lambda * multiplier^layer
// The dtype the training forward and backward compute in (--train-dtype, resolved by validate_quantize_options):
// matmuls in it; master parameters, optimizer state and loss in fp32. fp64 models (gradient checks) train in fp64.
at::ScalarType training_compute_dtype(const QuantizeOptions& options, const at::TensorOptions& model);
// "auto" made concrete for a model computing in `model`: bf16 on CUDA and on CPUs with bf16 matrix units (when the
// model computes in fp32 or bf16), else the model's dtype. ConfigError for an unknown name or fp16 on CPU.
std::string resolve_train_dtype(const std::string& requested, const at::TensorOptions& model);
// Windows an optimizer step averages: --train-batch x the ranks.
int64_t step_windows(const QuantizeOptions& options);
// The learning rates a run trains with: the given one, else the default for one window a step times step_windows
// (clipping logits ApiQ 5e-3, OmniQuant 1e-2; db-llm 1e-3, binarymos 1e-2 for the binarizers' scales; LoRA 5e-4).
double lwc_learning_rate(const QuantizeOptions& options, bool with_lora);
double lora_learning_rate(const QuantizeOptions& options);
double default_lora_learning_rate(int64_t windows);  // 5e-4 x windows
// Makes the defaults concrete for the manifest (the LoRA rate always, the clipping rate when a step has more than one
// window) and logs the scaled rates. Given rates are kept.
void resolve_learning_rates(QuantizeOptions& options, bool with_lora);
double training_weight_decay(const QuantizeOptions& options, bool with_lora);  // default ApiQ 0.1, OmniQuant 0
// Seeds LibTorch's generator from the run's seed and the block alone, so a resumed run draws the same LoRA init.
void seed_block(const QuantizeOptions& options, int64_t layer);

// Loads (and checks) the Fisher tensors of one block's linears; F = 1 when the regularizer is unweighted;
// with --fisher-norm mean each is divided by its sum.
// Statistics (sum, max, mean) of each go into `stats`.
std::vector<at::Tensor> load_block_fisher(const QuantizeOptions& options,
                                          const std::vector<const TrainableLinear*>& linears,
                                          const std::vector<std::string>& names, nlohmann::json& stats);

// R = sum_l sum F_l * (W_eff_l - W_l)^2.
at::Tensor saliency_regularizer(const std::vector<const TrainableLinear*>& linears,
                                const std::vector<at::Tensor>& fisher, bool after_lora);

// AdamW over two groups (clipping logits, LoRA), with fp16 dynamic loss scaling when asked.
class Trainer {
public:
    Trainer(const std::vector<at::Tensor>& lwc_params, const std::vector<at::Tensor>& lora_params, double lwc_lr,
            double lora_lr, double weight_decay, bool loss_scaling);
    ~Trainer();
    // Backpropagates `loss` and steps. Returns false when a step was skipped (fp16 overflow).
    bool step(const at::Tensor& loss);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Runs the stages in order: every epoch visits windows [0, n_windows) in batches of `batch`, in fixed order;
// `loss(stage, first, count)` builds the loss of one step. Returns the per-stage log (loss at the first and last
// epoch, every epoch's mean). A non-finite loss throws NumericError naming `where`, the stage, epoch and step.
using StepLoss = std::function<at::Tensor(const std::string& stage, int64_t first, int64_t count)>;
// Seconds this process has spent in run_stages' steps (forward, backward, optimizer): what a benchmark divides by
// the steps, apart from a block's one-off work. Kept out of the stats, which must be identical between runs.
double training_seconds();
nlohmann::json run_stages(const std::vector<TrainStage>& stages, Trainer& trainer, int64_t n_windows, int64_t batch,
                          const StepLoss& loss, const std::string& where);

}  // namespace saliq
