// Tiny random LLaMA checkpoints for tests.
#pragma once

#include <map>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/llama_config.h"
#include "saliq/quantize.h"

namespace saliq::test {

inline LlamaConfig tiny_config(bool tied = false) {
    LlamaConfig c;
    c.hidden_size = 32;
    c.intermediate_size = 40;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 8;
    c.vocab_size = 64;
    c.max_position_embeddings = 64;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.tie_word_embeddings = tied;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    return c;
}

inline std::map<std::string, at::Tensor> random_weights(const LlamaConfig& c, uint64_t seed = 0) {
    at::manual_seed(seed);
    std::map<std::string, at::Tensor> w;
    const int64_t H = c.hidden_size, I = c.intermediate_size, qd = c.n_heads * c.head_dim,
                  kvd = c.n_kv_heads * c.head_dim;
    const double s = 0.2;
    w[hf_names::kEmbed] = at::randn({c.vocab_size, H});
    for (int64_t i = 0; i < c.n_layers; ++i) {
        const std::string p = hf_names::layer_prefix(i);
        w[p + hf_names::kInputNorm] = 1.0 + 0.1 * at::randn({H});
        w[p + hf_names::kPostNorm] = 1.0 + 0.1 * at::randn({H});
        w[p + "self_attn.q_proj.weight"] = s * at::randn({qd, H});
        w[p + "self_attn.k_proj.weight"] = s * at::randn({kvd, H});
        w[p + "self_attn.v_proj.weight"] = s * at::randn({kvd, H});
        w[p + "self_attn.o_proj.weight"] = s * at::randn({H, qd});
        w[p + "mlp.gate_proj.weight"] = s * at::randn({I, H});
        w[p + "mlp.up_proj.weight"] = s * at::randn({I, H});
        w[p + "mlp.down_proj.weight"] = s * at::randn({H, I});
    }
    w[hf_names::kFinalNorm] = 1.0 + 0.1 * at::randn({H});
    if (!c.tie_word_embeddings) w[hf_names::kLmHead] = 0.5 * at::randn({c.vocab_size, H});
    return w;
}

// RTN at W2 g8, no calibration text read: the packed folders and interrupted runs the load checks start from.
inline QuantizeOptions rtn_w2g8(bool symmetric = false) {
    QuantizeOptions o;
    o.method = "rtn";
    o.spec.bits = 2;
    o.spec.group_size = 8;
    o.spec.symmetric = symmetric;
    o.error_windows = 0;
    return o;
}

inline Checkpoint memory_checkpoint(const LlamaConfig& c, std::map<std::string, at::Tensor> weights) {
    Checkpoint ckpt;
    ckpt.path = "<memory>";
    ckpt.format = "hf";
    ckpt.config = c;
    ckpt.tensors = make_memory_source(std::move(weights), "<memory>");
    return ckpt;
}

}  // namespace saliq::test
