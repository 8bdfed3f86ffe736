// LLaMA architecture hyper-parameters, as in a Hugging Face config.json (no LibTorch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace saliq {

struct LlamaConfig {
    int64_t hidden_size = 0;              // H
    int64_t intermediate_size = 0;        // I
    int64_t n_layers = 0;
    int64_t n_heads = 0;
    int64_t n_kv_heads = 0;               // grouped-query attention when < n_heads
    int64_t head_dim = 0;                 // hidden_size / n_heads unless the config says otherwise
    int64_t vocab_size = 0;               // V
    int64_t max_position_embeddings = 0;
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    bool tie_word_embeddings = false;     // no lm_head.weight: the head reuses embed_tokens
    int64_t bos_token_id = 1;
    int64_t eos_token_id = 2;
    std::string torch_dtype = "float32";  // dtype the checkpoint stores

    // Throws FormatError(`source`, ...) on inconsistent values (heads not dividing H, odd head_dim, ...).
    void validate(const std::string& source) const;
};

// Parses a config.json object; missing optional keys take the HF defaults. Throws FormatError naming `source`.
LlamaConfig llama_config_from_json(const nlohmann::json& json, const std::string& source);
nlohmann::json llama_config_to_json(const LlamaConfig& config);

// Linears whose widths GPTQ loaders may reject: GPTQ packers and most kernels need both dimensions to be multiples
// of 32 (GPTQModel 7.7's Torch kernel reads stories260K's 172-wide MLP, others do not). "mlp.down_proj: in 172" for
// each; saliq itself reads any width.
std::vector<std::string> gptq_loader_rejected_linears(const LlamaConfig& config);

}  // namespace saliq
