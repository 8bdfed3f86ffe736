// Writing a quantized model: a GPTQ-compatible Hugging Face folder (config.json with quantization_config,
// model.safetensors with qweight/qzeros/scales/g_idx, tokenizer.model), LoRA adapters in PEFT layout
// (adapter_config.json, adapter_model.safetensors), learned clipping factors (lwc.safetensors) and
// saliq_manifest.json.
//
// Finished blocks are kept in "<out>.partial/" as they finish, so a killed run can --resume; the final folder is
// assembled under a temporary name and renamed into place only when complete.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/finetune.h"
#include "saliq/quantize.h"

namespace saliq {

class GptqFolderWriter : public BlockStore {
public:
    // Refuses an `out_dir` that already holds files unless `force`. A leftover "<out>.partial" is continued with
    // `resume` (its settings must match), discarded with `force`, and refused otherwise; with both, continued where
    // its settings match and discarded where they do not.
    GptqFolderWriter(const std::string& out_dir, const Checkpoint& source, const QuantizeOptions& options, bool force,
                     bool resume = false);
    ~GptqFolderWriter() override;

    bool has(int64_t layer) const override;
    BlockResult load(int64_t layer) const override;
    void save(const BlockResult& block) override;
    bool has_significant() const override;
    std::map<std::string, SparsePart> load_significant() const override;
    nlohmann::json significant_stats() const override;
    void save_significant(const std::map<std::string, SparsePart>& parts, const nlohmann::json& stats) override;

    // Creates "<out>.partial/" with the run's settings (after the options are validated: a refused run creates
    // nothing). A resumed run keeps its folder.
    void prepare();
    // Removes "<out>.partial/" when no block finished there (a run that failed before its first block leaves
    // nothing behind). Never throws.
    void discard_if_unstarted() noexcept;
    int64_t finished_blocks() const;

    // Writes every file and the manifest, moves the folder into place, removes the partial state.
    void finish(const QuantizeResult& result, const nlohmann::json& extra);

    const std::string& partial_dir() const { return partial_; }

private:
    std::string block_path(int64_t layer) const;
    std::string significant_path() const { return partial_ + "/significant.safetensors"; }
    // Throws, naming why, unless "<out>.partial" is an interrupted run of these very settings.
    void check_resumable() const;
    double adapter_scale() const;              // lora_alpha / r of the run
    std::string final_absolute_path() const;   // the output folder, absolute
    const Checkpoint& source_;
    QuantizeOptions options_;
    std::string out_;
    std::string partial_;
    bool force_;
    bool resumed_ = false;
    nlohmann::json fingerprint_;
};

// --resume, for both writers: throws a ConfigError naming, one by one, the settings that differ between the interrupted
// run in `partial` (its fingerprint `saved`) and this one (`now`).
void check_same_settings(const std::string& partial, const nlohmann::json& saved, const nlohmann::json& now);

// --resume, for both writers: true when the interrupted run in `partial` can be continued (`check` returns). When it
// cannot (`check` throws), `force` beside it (what `saliq table` passes) removes `partial`, says so and returns false;
// without `force` the error stands.
bool continue_or_start_over(const std::string& partial, bool force, const std::function<void()>& check);

// `gptq_symmetric_zeros`: every zero point is 2^(bits-1), GPTQ's symmetric zero (its symmetric kernels assume it
// and ignore qzeros); only then does the config say sym true. OmniQuant's symmetric clipping uses 2^(bits-1) - 1.
nlohmann::json gptq_quantization_config(const QuantizeOptions& options, bool gptq_symmetric_zeros);
// The settings that decide a run's output: a resumed run must match them.
nlohmann::json run_fingerprint(const Checkpoint& source, const QuantizeOptions& options);

}  // namespace saliq

namespace saliq {

// `saliq export`: a model (dense, GPTQ-packed or binarized db-llm folder, with its adapters merged) written dense,
// for tools without a GPTQ backend: "hf" (a Hugging Face folder plain transformers loads) or "gguf" (a GGUF v3
// file llama.cpp runs: llama.* metadata, the SentencePiece vocabulary with scores and token types, llama.cpp's
// tensor names, q/k rows in its rotary order; norms stay F32). dtype: "fp32", "fp16" or "bf16".
// A packed folder goes to GGUF quantized where GGML types hold its linears: a saliq_ggml folder (quantize --grid) as it
// is stored, bit for bit; a GPTQ folder's own codes as Q4_0 (symmetric, up to 4 bits) / Q8_0 (symmetric 8-bit)
// exactly, or Q4_1 (asymmetric, up to 4 bits; m = −s·z rounded to fp16), when every linear has groups of a multiple
// of 32 in natural order (else dense, saying why). The rest in `dtype`; the LoRA adapters as a GGUF LoRA adapter
// (llama.cpp's --lora) at `adapter_out` (default: the output's name with .lora.gguf). `merge` writes dense weights
// with the adapters merged instead.
struct DenseExportOptions {
    std::string format = "hf";
    std::string dtype = "fp32";  // fp32, fp16 or bf16 (f32 and f16 still read, with a deprecation line)
    bool use_adapter = true;
    bool force = false;
    bool merge = false;
    std::string adapter_out;
};
// Returns what it wrote, for the CLI's summary ("fp16, adapters merged"; "Q2_K/Q4_0 blocks, LoRA adapter X").
std::string export_dense(const Checkpoint& checkpoint, const std::string& out, const DenseExportOptions& options);

// `saliq export --format compressed-tensors`: a GPTQ-packed folder as compressed-tensors' pack-quantized W{2,3,4,8}A16
// checkpoint (group-wise, asymmetric zero points; src/export/compressed_tensors_export.cpp has the layout), code for
// code: the library's (q - zp) * s is the folder's s (c - z). The folder's PEFT adapters are copied beside it.
// ConfigError for folders the format cannot hold (act-order, saliq_mixed, saliq_binary, ReQuant's sparse parts,
// widths that are not a multiple of the group size).
void export_compressed_tensors(const Checkpoint& checkpoint, const std::string& out, bool force);

// llama.cpp's importance-matrix GGUF, as llama-imatrix writes it and llama-quantize --imatrix reads it: per linear
// <gguf name>.in_sum2 [in] (Σ x², compute_input_square_sums) and .counts [1] (the tokens summed), F32;
// general.type "imatrix", imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size (windows and their length).
void write_imatrix_gguf(const std::string& path, const std::map<std::string, at::Tensor>& square_sums, int64_t tokens,
                        const std::string& dataset, int64_t windows, int64_t seqlen);

// One linear's compressed-tensors tensors (weight_packed, weight_scale, weight_zero_point, weight_shape); a symmetric
// linear has no weight_zero_point (undefined).
struct CompressedTensorsLinear {
    at::Tensor weight_packed, weight_scale, weight_zero_point, weight_shape;
};
CompressedTensorsLinear compressed_tensors_linear(const QuantizedTensor& q, const std::string& origin);

// `saliq finetune`'s output: the student folder with the trained scales (and adapters, norms) in the same layout,
// its state kept in "<out>.partial/state.safetensors" after every epoch for --resume.
class FinetuneFolderWriter : public FinetuneStore {
public:
    // Refuses an `out_dir` holding files unless `force`; a leftover partial state is continued with `resume` (its
    // fingerprint must match), replaced with `force`, refused otherwise; with both, continued where it matches and
    // replaced where it does not.
    FinetuneFolderWriter(const std::string& out_dir, const Checkpoint& student, const nlohmann::json& fingerprint,
                         bool force, bool resume);
    bool has_state() const override;
    NamedTensors load_state(nlohmann::json& meta) const override;
    void save_state(const NamedTensors& state, const nlohmann::json& meta) override;
    // Writes the folder under a temporary name, renames it into place and removes the partial state.
    void finish(const Finetuner& finetuner, const FinetuneResult& result, const nlohmann::json& extra);

private:
    std::string state_path() const { return partial_ + "/state.safetensors"; }
    const Checkpoint& student_;
    std::string out_, partial_;
    nlohmann::json fingerprint_;
    bool force_;
};

}  // namespace saliq
