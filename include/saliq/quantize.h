// Quantizing a model block by block: one driver for every method.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "saliq/calibration.h"
#include "saliq/checkpoint.h"
#include "saliq/model.h"
#include "saliq/progress.h"
#include "saliq/quantizer.h"

namespace saliq {

class Tokenizer;

struct GptqOptions {
    double damp = 0.01;           // fraction of mean(diag(H)) added to the diagonal
    int64_t block_size = 128;     // lazy-batch width (rounded to a multiple of the group size)
    bool act_order = false;       // desc_act: columns by descending diag(H)
    // GAR: groups by their largest diag(H), columns within each too; g_idx stays natural. Unset: the method's
    // default (validate_quantize_options resolves it: on for gptq, off for slim-llm and with act_order).
    std::optional<bool> group_order;
    bool true_sequential = true;  // [k,v,q] -> [o] -> [up,gate] -> [down], each seeing quantized predecessors
};

// Saliency-aware regularizer (Cao & Aref 2025): R = sum over the block's linears of F * (W_eff - W)^2.
struct SaliencyOptions {
    bool enabled = false;
    std::string fisher_path;           // safetensors of diagonal Fisher per linear weight (HF names)
    bool weighted = true;              // false: plain L2 (F = 1)
    // What a computed saliency file holds (FisherOptions): hessian (default), fisher or pqi. The defaults here
    // (hessian, fisher_norm mean, lambda 20) won scripts/bench_saliency.sh; the paper's are fisher, none, 0.1.
    std::string metric = "hessian";
    std::string reg_method = "before_lora";  // W_eff = Q(W) ("before_lora") or Q(W) + s B A ("after_lora")
    double lambda = -1.0;              // < 0: 20 with fisher_norm mean, 0.1 (the paper's) with none
    double lambda_multiplier = 1.0;    // block i uses lambda * multiplier^i
    // "none": R = sum F (W_eff - W)^2 with the raw Fisher (the paper). "mean": each linear's F divided by its sum, so
    // its term is the Fisher-weighted mean of (W_eff - W)^2: free of the Fisher's overall scale and of the layer's
    // size, so that a lambda tuned on one model means the same on another.
    std::string fisher_norm = "mean";
    // The saliency computed first when no fisher_path is given (prepare_saliency): its windows and PQI's intervals.
    std::string calib = "c4";
    int64_t nsamples = 100;
    int64_t seqlen = 512;
    int64_t pqi_points = 8;
};

// One training stage of the block objective: "opt" (MSE only), "wpt" (lambda R only), "mixed" (MSE + lambda R).
struct TrainStage {
    std::string name;
    int64_t epochs = 0;
};

// ApiQ (Liao et al. 2024) / OmniQuant LWC training settings.
struct ApiqOptions {
    int64_t lora_rank = 64;
    double lora_alpha = 16.0;
    // Learning rates < 0: the method's default for one window a step (clipping ApiQ 5e-3, OmniQuant 1e-2; LoRA
    // ApiQ's 5e-4), times the windows of a step (--train-batch x ranks); made concrete by validate_quantize_options.
    double lwc_lr = -1.0;
    // Where the clipping logits start: "minmax" (sigmoid(4) of each group's range, OmniQuant's and ApiQ's), "search"
    // (each group's factors searched on the block's inputs, lwc_search_params) or "auto": search at 2 bits on the
    // uniform grid, where it was measured to help (README, "Where the clipping starts"), min-max otherwise. Resolved
    // before the run; the manifest records which.
    std::string lwc_init = "auto";
    double lora_lr = -1.0;
    // Storage of the written adapters (adapter_model.safetensors): fp16 (PEFT's usual), fp32 or bf16. Training is
    // unchanged (fp32 masters); the folder's bits per weight count what is stored.
    std::string adapter_dtype = "fp16";
    double weight_decay = -1.0;        // < 0: the method's default (ApiQ 0.1, OmniQuant 0)
    std::vector<TrainStage> stages;    // empty: opt for `epochs` (plain), or mixed for `epochs` with saliency
    int64_t epochs = 20;
    int64_t train_batch = 1;           // windows per optimizer step (ApiQ: 1)
    bool aug_loss = true;              // also match the FP block applied to the quantized chain's input
    std::string train_dtype = "auto";  // fp32 on CPU, bf16 on CUDA; fp16 adds dynamic loss scaling
    uint64_t seed = 0;                 // LoRA initialisation: block i uses seed * 1000003 + i
    // The fake quantizer trained: "uniform" (the grid with learnable clipping), or the seed paper's QAT binarizers
    // "db-llm" (flexible dual binarization, 2 bits) and "binarymos" (signs with a mixture of scales, 1 bit).
    std::string quantizer = "uniform";
    int64_t mos_experts = kDefaultMosExperts;  // binarymos: scale experts mixed by the router
};

// SliM-LLM's Salience-Weighted Quantizer Calibration.
struct SlimOptions {
    double salience_lambda = 1.0;  // weight of the salient entries' error (1: the released code's plain range search)
};

// ReQuant's dense-and-sparse parts (methods_formats_eval.md §1.4), on top of any uniform-grid method.
struct SparseOptions {
    double outliers_pct = 0.0;     // --sparse-outliers: % of all linear weights kept as FP16 outliers
    double significant_pct = 0.0;  // --sparse-significant: % detached by PQI after quantization
    int64_t steps = 2;             // rounds of the detach (r_s / beta; the paper's 2)
    int64_t pqi_points = 8;        // trapezoid intervals of each round's integral

    bool enabled() const { return outliers_pct > 0 || significant_pct > 0; }
};

struct QuantizeOptions {
    std::string method = "apiq-bw";
    QuantSpec spec;
    CalibOptions calib;
    ModelOptions model;
    int64_t batch_size = 8;       // windows per forward pass inside the pipeline
    // Calibration windows used to measure each layer's reconstruction error: -1 = the method's default (0 for RTN,
    // which then needs no calibration at all; kDefaultErrorWindows for the others), 0 = no error measurement.
    int64_t error_windows = -1;
    // Storage dtype of the calibration activation buffers ([N, T, hidden] each): "auto" (the compute dtype), "fp32",
    // "bf16" or "fp16". Narrower buffers halve the memory; every batch is still computed in the compute dtype.
    std::string act_dtype = "auto";
    bool check_memory = true;     // refuse a run whose estimated memory exceeds what the machine has available
    // rtn: fit each group's range (on --grid, each block's scales) to the least error weighted by its columns' input
    // mean squares on the calibration windows (llama.cpp's importance matrix), instead of plain min-max.
    bool rtn_importance = false;
    GptqOptions gptq;
    SlimOptions slim;
    // Mixed precision for the LWC methods (omniquant, apiq-bw): "slim" = SliM-LLM's bit allocation per block;
    // "" = one width. slim-llm-plus is omniquant with "slim".
    std::string bit_map;
    ApiqOptions apiq;
    SaliencyOptions saliency;
    SparseOptions sparse;
};

// One quantized linear of a finished block.
struct LinearResult {
    std::string name;             // model.layers.3.mlp.up_proj
    QuantizedTensor q;            // the uniform grid (undefined when `binary` holds the weight)
    BinaryWeight binary;          // a binarizer's weight (--quantizer db-llm / binarymos)
    at::Tensor lora_a;            // [r, in] fp32, undefined without LoRA
    at::Tensor lora_b;            // [out, r] fp32
    double lora_scale = 0.0;      // alpha / r
    at::Tensor lwc_up;            // [out, G] learned clipping logits, undefined without LWC
    at::Tensor lwc_low;           // [out, G]
    double rel_error = 0.0;       // ||X (W - Q)^T||^2 / ||X W^T||^2 on calibration inputs
};

struct BlockResult {
    int64_t layer = 0;
    std::vector<LinearResult> linears;
    double block_error = 0.0;     // relative error of the block's output vs the FP block, same inputs
    double seconds = 0.0;
    nlohmann::json method_stats = nlohmann::json::object();
};

struct QuantizeResult {
    CalibSet calib;
    std::vector<BlockResult> blocks;
    double calib_seconds = 0.0;
    double seconds = 0.0;  // this process's wall time
    // A resumed run: the blocks an interrupted run had finished, and the seconds that run spent on them (each block's
    // own figure, kept with it), so the time the whole quantization took can be told.
    int64_t restored_blocks = 0;
    double restored_block_seconds = 0.0;
    nlohmann::json sparse_stats = nlohmann::json::object();  // ReQuant: the outlier plan, the detach's rounds
    // A distributed run: its ranks, and for a training method the windows behind each optimizer step (ranks x
    // --train-batch). Empty in one process.
    nlohmann::json distributed = nlohmann::json::object();
};

// Keeps finished blocks (the export layer writes them to disk as they finish), and hands back the ones an
// interrupted run already finished so the pipeline can resume after them.
class BlockStore {
public:
    virtual ~BlockStore() = default;
    virtual bool has(int64_t layer) const = 0;
    virtual BlockResult load(int64_t layer) const = 0;
    virtual void save(const BlockResult& block) = 0;
    // ReQuant's significant-weight detach, run after the last block: its sparse parts (linear name -> part) and
    // figures, kept like a block's.
    virtual bool has_significant() const = 0;
    virtual std::map<std::string, SparsePart> load_significant() const = 0;
    virtual nlohmann::json significant_stats() const = 0;
    virtual void save_significant(const std::map<std::string, SparsePart>& parts, const nlohmann::json& stats) = 0;
};

inline constexpr int64_t kDefaultErrorWindows = 4;

// The resident memory of a saliq process before it reads a model (LibTorch, OpenBLAS, tokenizer; 160 MiB measured
// for `saliq inspect`), with room for the allocator's slack.
inline constexpr uint64_t kRuntimeBytes = uint64_t{256} << 20;

// What a run will hold in memory, estimated before it starts (bytes).
struct MemoryEstimate {
    double activation_buffers = 0;   // how many [N, T, hidden] buffers
    uint64_t activations = 0;        // their bytes in the storage dtype
    uint64_t block_weights = 0;      // one block's FP weights + its quantized form, compute dtype
    uint64_t embedding = 0;          // the embedding table while the windows are embedded
    uint64_t workspace = 0;          // one forward batch and the method's own (Hessians, training state)
    uint64_t runtime = 0;            // the process before any model: libraries, allocator
    // ReQuant's significant detach, after the blocks: the whole model in fp32 five times over plus one window's
    // forward and backward (its peak replaces the blocks' when larger).
    uint64_t detach = 0;
    uint64_t total = 0;
    std::string describe() const;
};

// Checks every option against the model and resolves the automatic ones (seqlen 0 -> min(2048, context),
// error_windows -1 -> the method's default) in `options`. Throws ConfigError. Runs before any file is created.
void validate_quantize_options(const Checkpoint& checkpoint, const Tokenizer& tokenizer, QuantizeOptions& options);
// --saliency with the weighted regularizer and no fisher_path: computes the saliency first (options.saliency's
// metric and windows, drawn with the run's seed) and writes it to `path`, unless `path` exists already and `reuse`
// (a resumed run's); options.saliency.fisher_path then names it. Every rank of a distributed run takes part and
// writes its own `path`. Returns what the manifest records of the pass (empty when nothing was computed).
nlohmann::json prepare_saliency(const Checkpoint& checkpoint, const Tokenizer& tokenizer, QuantizeOptions& options,
                                const std::string& path, bool reuse, const ProgressFn& progress = {});
// Whether the method needs calibration windows at all with these (validated) options.
bool quantize_needs_calibration(const QuantizeOptions& options);
MemoryEstimate estimate_quantize_memory(const Checkpoint& checkpoint, const QuantizeOptions& options);


// Runs the pipeline: calibration windows -> embedding -> for each block: load its FP weights from the checkpoint,
// quantize with the method, propagate the quantized block's outputs. Only one block's weights are resident.
// Blocks the store already has are not quantized again: their saved weights are installed and the activations
// move on through them, so a resumed run ends exactly where an uninterrupted one would.
QuantizeResult quantize_model(const Checkpoint& checkpoint, const Tokenizer& tokenizer, const QuantizeOptions& options,
                              BlockStore* store = nullptr, const ProgressFn& progress = nullptr);

// A finished linear's inference form: QuantizedLinear (or the binarizer's linear), wrapped in LoraLinear when it has
// adapters.
std::shared_ptr<Linear> inference_linear(const LinearResult& result, const at::TensorOptions& options);

}  // namespace saliq
