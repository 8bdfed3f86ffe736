// LLaMA architecture hyper-parameters, as in a Hugging Face config.json (no LibTorch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace saliq {

// Rotary position scaling: how the inverse frequencies theta^(-2i/d) are changed for long contexts, as
// transformers' rope utilities compute it (config.json `rope_parameters` in transformers 5, `rope_scaling` in 4).
struct RopeScaling {
    std::string type = "default";          // default | linear | dynamic | llama3 | yarn | freq_factors
    double factor = 1.0;                    // linear, dynamic, llama3, yarn
    double low_freq_factor = 1.0;           // llama3
    double high_freq_factor = 4.0;          // llama3
    int64_t original_max_position_embeddings = 0;  // llama3, yarn: the pre-training context
    double attention_factor = 0.0;          // yarn: cos/sin scale; 0 = derived from factor and mscale
    double beta_fast = 32.0, beta_slow = 1.0;  // yarn
    double mscale = 0.0, mscale_all_dim = 0.0;  // yarn
    bool truncate = true;                   // yarn
    std::vector<double> freq_factors;       // freq_factors: GGUF rope_freqs.weight, inv_freq_i / freq_factors[i]

    bool is_default() const { return type == "default"; }
};

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
    RopeScaling rope_scaling;
    int64_t sliding_window = 0;           // Mistral's attention window; 0 = none (contexts beyond it are refused)
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

// RoPE's inverse frequencies (head_dim / 2 of them, fp64) with the config's scaling applied, and the factor yarn
// multiplies cos and sin by (1 for every other type). As transformers' rope utilities compute them.
std::vector<double> rope_inverse_frequencies(const LlamaConfig& config);
double rope_attention_factor(const LlamaConfig& config);
// The longest sequence saliq computes exactly: max_position_embeddings, capped by a sliding attention window
// (saliq attends over the whole sequence, so it refuses longer ones instead of silently attending past the window).
int64_t usable_context(const LlamaConfig& config);

// Linears whose widths GPTQ loaders may reject: GPTQ packers and most kernels need both dimensions to be multiples
// of 32 (GPTQModel 7.7's Torch kernel reads stories260K's 172-wide MLP, others do not). "mlp.down_proj: in 172" for
// each; saliq itself reads any width.
std::vector<std::string> gptq_loader_rejected_linears(const LlamaConfig& config);

}  // namespace saliq
