// End-to-end distillation of a quantized folder against its FP model (SiLQ-style, methods_formats_eval.md §1.6):
// the whole quantized model, its codes fixed, trained so its next-token distributions match the FP teacher's
// (forward KL), updating each group's scale, the LoRA adapters when the folder has them and, optionally, the blocks'
// RMSNorm weights. Backpropagation recomputes one block at a time (activation checkpointing at block granularity):
// the forward keeps only each block's input, so memory is one block's activations plus L hidden states, not the whole
// graph.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "saliq/calibration.h"
#include "saliq/checkpoint.h"
#include "saliq/model.h"
#include "saliq/progress.h"
#include "saliq/safetensors.h"
#include "saliq/tokenizer.h"

namespace saliq {

struct FinetuneOptions {
    CalibOptions calib;
    ModelOptions model;
    int64_t epochs = 1;
    int64_t batch = 1;          // windows per optimizer step
    // Adam learning rates. Scales are trained in log space (s = s0 exp(theta)): the step is relative and a scale
    // stays positive; 1e-3 moves a scale by about 0.1 % per step.
    double scale_lr = 1e-3;
    double lora_lr = 1e-4;
    double norm_lr = 1e-4;
    bool train_scales = true;
    bool train_lora = true;     // when the folder has adapters
    bool train_norms = false;   // the blocks' input and post-attention RMSNorm weights
    double temperature = 1.0;   // of both distributions in the KL (the loss is scaled by T^2, Hinton's convention)
    void validate() const;      // throws ConfigError
};

// The student (a packed folder, trainable) beside its teacher (the FP model), with the optimizer's state.
class Finetuner {
public:
    Finetuner(const Checkpoint& student, const Checkpoint& teacher, const FinetuneOptions& options);
    ~Finetuner();

    // Mean KL(teacher || student) over the tokens of `ids` [B, T]; with `backward`, its gradients are accumulated
    // into the parameters by block-wise recomputation.
    double loss(const at::Tensor& ids, bool backward);
    void step();  // AdamW on every parameter (no weight decay), then the gradients are cleared
    int64_t steps() const;

    // Every trained tensor by name ("<linear>.log_scales", "<linear>.lora_A", "<linear>.lora_B",
    // "<layer>.input_layernorm.weight", ...), and the optimizer's moments as "<name>.adam_m" / ".adam_v".
    NamedTensors state() const;
    // Throws FormatError on a missing or misshapen tensor, a non-finite value or a negative second moment.
    void load_state(const NamedTensors& state, int64_t steps);
    std::vector<std::pair<std::string, at::Tensor>> parameters() const;

    // What the folder stores after training: each linear's scales [out, G] (fp16-rounded), its adapters, the norms.
    at::Tensor scales(const std::string& linear) const;
    bool has_lora(const std::string& linear) const;
    at::Tensor lora_a(const std::string& linear) const;
    at::Tensor lora_b(const std::string& linear) const;
    at::Tensor norm(const std::string& name) const;  // undefined unless norms are trained
    const LlamaModel& student() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Where a finetune run keeps its state between epochs (the export layer's folder writer).
class FinetuneStore {
public:
    virtual ~FinetuneStore() = default;
    virtual bool has_state() const = 0;
    virtual NamedTensors load_state(nlohmann::json& meta) const = 0;
    virtual void save_state(const NamedTensors& state, const nlohmann::json& meta) = 0;
};

struct FinetuneResult {
    double kl_before = 0.0;               // mean KL over the calibration windows, before and after
    double kl_after = 0.0;
    std::vector<double> epoch_kl;         // mean training KL of each epoch (resumed epochs included, from the state)
    int64_t steps = 0;
    double seconds = 0.0;         // the whole training's wall time, an interrupted run's epochs included
    int64_t resumed_epochs = 0;   // epochs an interrupted run had finished (0: not resumed)
    CalibSet calib;
};

// Trains `finetuner` for options.epochs over the calibration windows, saving the state to `store` after each epoch
// and continuing from the last saved epoch when the store has one.
FinetuneResult run_finetune(Finetuner& finetuner, const Tokenizer& tokenizer, const FinetuneOptions& options,
                            FinetuneStore* store, const ProgressFn& progress);

}  // namespace saliq
