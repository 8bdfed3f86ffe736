// Writing a quantized model: a GPTQ-compatible Hugging Face folder (config.json with quantization_config,
// model.safetensors with qweight/qzeros/scales/g_idx, tokenizer.model) plus saliq_manifest.json, built in a
// staging folder and renamed into place only when complete.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/quantize.h"
#include "saliq/safetensors.h"

namespace saliq {

class StagingDir;

class GptqFolderWriter {
public:
    // Refuses an `out_dir` that already holds files unless `force`.
    GptqFolderWriter(const std::string& out_dir, const Checkpoint& source, const QuantizeOptions& options, bool force);
    ~GptqFolderWriter();

    // Packs one finished block (called by the pipeline as each block ends).
    void add_block(const BlockResult& block);
    // Writes every file and the manifest, then moves the folder into place. `extra` is merged into the manifest.
    void finish(const QuantizeResult& result, const nlohmann::json& extra);

private:
    const Checkpoint& source_;
    QuantizeOptions options_;
    std::unique_ptr<StagingDir> staging_;
    std::map<std::string, at::Tensor> packed_;  // tensor name -> packed tensor
};

// "W2 g64 asym" quantization_config for config.json.
nlohmann::json gptq_quantization_config(const QuantizeOptions& options);

}  // namespace saliq
