// Saliency as the diagonal empirical Fisher of the full-precision model (SqueezeLLM-style, as the seed paper uses):
// F = sum over calibration sequences of the squared per-sequence gradient of the mean next-token cross-entropy
// with respect to each linear weight of every block. One backward pass per sequence; a sum, not a mean.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "saliq/calibration.h"
#include "saliq/checkpoint.h"
#include "saliq/model.h"
#include "saliq/progress.h"

namespace saliq {

class Tokenizer;

struct FisherOptions {
    CalibOptions calib;  // default below: C4, 100 x 512 (SqueezeLLM-gradients' defaults)
    ModelOptions model;
    // "hessian" (SliM-LLM's w^2 / U_jj^2; the default of saliq saliency and of quantize --saliency alike),
    // "fisher" (diagonal empirical Fisher, the paper's) or "pqi" (ReQuant's post-quantization integral, |PQI|)
    std::string metric = "hessian";
    QuantSpec spec;                 // pqi: the quantizer whose RTN values w~ end the path
    int64_t pqi_points = 8;         // pqi: intervals of the trapezoid rule on [0, 1]
    FisherOptions() {
        calib.source = "c4";
        calib.nsamples = 100;
        calib.seqlen = 512;
    }
};

// The full-precision model every saliency pass runs on (adapters not applied), after refusing a packed checkpoint
// and windows longer than the model's context. Throws ConfigError.
std::unique_ptr<LlamaModel> load_saliency_model(const Checkpoint& checkpoint, const FisherOptions& options,
                                                bool stream_blocks);

// Returns HF weight name (model.layers.i.self_attn.q_proj.weight) -> Fisher [out, in] fp32 on CPU.
std::map<std::string, at::Tensor> compute_fisher(const Checkpoint& checkpoint, const Tokenizer& tokenizer,
                                                 const FisherOptions& options, const ProgressFn& progress = nullptr);

// SliM-LLM's Hessian salience w_ij^2 / U_jj^2 (U = upper-Cholesky of the damped H^-1 of each linear's calibration
// inputs on the FP chain), same names and shapes as the Fisher; the regularizer reads either file alike.
std::map<std::string, at::Tensor> compute_hessian_salience(const Checkpoint& checkpoint, const Tokenizer& tokenizer,
                                                           const FisherOptions& options,
                                                           const ProgressFn& progress = nullptr);

struct PqiResult {
    std::map<std::string, at::Tensor> salience;  // |PQI| per weight, names and shapes as the Fisher
    double loss_fp = 0.0;           // F(w), mean cross-entropy over the windows
    double loss_quantized = 0.0;    // F(w~)
    double predicted_change = 0.0;  // sum of the signed PQI: the quadrature's F(w~) - F(w)
};

// ReQuant's post-quantization integral along w -> w~ = RTN(w) under options.spec (all layers at once).
PqiResult compute_pqi(const Checkpoint& checkpoint, const Tokenizer& tokenizer, const FisherOptions& options,
                      const ProgressFn& progress = nullptr);

// llama.cpp's importance matrix: Σ x² per input column of each linear over every calibration token of the FP chain
// (block-major, one block resident), keyed by HF weight name, [in] fp32 on CPU; `tokens` receives the tokens summed.
std::map<std::string, at::Tensor> compute_input_square_sums(const Checkpoint& checkpoint, const Tokenizer& tokenizer,
                                                            const FisherOptions& options, int64_t& tokens,
                                                            const ProgressFn& progress = nullptr);

// The metric options.metric names. Throws ConfigError for an unknown one.
std::map<std::string, at::Tensor> compute_saliency(const Checkpoint& checkpoint, const Tokenizer& tokenizer,
                                                   const FisherOptions& options, const ProgressFn& progress = nullptr);

// Writes the Fisher tensors (atomically) with the settings in the safetensors metadata.
void write_fisher(const std::string& path, const std::map<std::string, at::Tensor>& fisher,
                  const FisherOptions& options);

// A Fisher (or salience) file against the model it will weight, from its header: one float tensor per linear of
// every layer with that linear's shape, nothing else. Throws FormatError naming the file and the tensor (values are
// checked, finite and non-negative, when each block reads them).
void check_fisher_file(const std::string& path, const LlamaConfig& config);

// Per-tensor summary (sum, max, mean, fraction of mass in the top 1% of entries).
nlohmann::json fisher_summary(const std::map<std::string, at::Tensor>& fisher);

}  // namespace saliq
