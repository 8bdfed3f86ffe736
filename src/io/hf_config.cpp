#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/llama_config.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

int64_t required_int(const nlohmann::json& json, const char* key, const std::string& source) {
    if (!json.contains(key)) throw FormatError(source, std::string("missing required key '") + key + "'");
    if (!json[key].is_number_integer())
        throw FormatError(source, std::string("key '") + key + "' must be an integer, got " + json[key].dump());
    return json[key].get<int64_t>();
}

int64_t optional_int(const nlohmann::json& json, const char* key, int64_t fallback, const std::string& source) {
    if (!json.contains(key) || json[key].is_null()) return fallback;
    if (json[key].is_array() && !json[key].empty() && json[key][0].is_number_integer())
        return json[key][0].get<int64_t>();  // some configs list several eos ids
    if (!json[key].is_number_integer())
        throw FormatError(source, std::string("key '") + key + "' must be an integer, got " + json[key].dump());
    return json[key].get<int64_t>();
}

double optional_number(const nlohmann::json& json, const char* key, double fallback, const std::string& source) {
    if (!json.contains(key) || json[key].is_null()) return fallback;
    if (!json[key].is_number())
        throw FormatError(source, std::string("key '") + key + "' must be a number, got " + json[key].dump());
    return json[key].get<double>();
}

}  // namespace

void LlamaConfig::validate(const std::string& source) const {
    auto positive = [&](int64_t v, const char* name) {
        if (v <= 0) throw FormatError(source, strprintf("%s must be positive, got %lld", name, (long long)v));
    };
    positive(hidden_size, "hidden_size");
    positive(intermediate_size, "intermediate_size");
    positive(n_layers, "num_hidden_layers");
    positive(n_heads, "num_attention_heads");
    positive(n_kv_heads, "num_key_value_heads");
    positive(head_dim, "head_dim");
    positive(vocab_size, "vocab_size");
    positive(max_position_embeddings, "max_position_embeddings");
    // Refused before anything is sized from them (rotary tables, caches, random models): far above any LLaMA
    // (405B: hidden 16384, intermediate 53248, 126 layers, vocabularies to 256k, contexts to 1M).
    auto at_most = [&](int64_t v, int64_t limit, const char* name) {
        if (v > limit)
            throw FormatError(source, strprintf("%s %lld exceeds saliq's limit of %lld", name, (long long)v,
                                                (long long)limit));
    };
    at_most(hidden_size, int64_t{1} << 17, "hidden_size");
    at_most(intermediate_size, int64_t{1} << 19, "intermediate_size");
    at_most(n_layers, 1024, "num_hidden_layers");
    at_most(n_heads, 1024, "num_attention_heads");
    at_most(head_dim, 2048, "head_dim");
    at_most(vocab_size, int64_t{1} << 22, "vocab_size");
    at_most(max_position_embeddings, int64_t{1} << 22, "max_position_embeddings");
    at_most(n_heads * head_dim, int64_t{1} << 18, "num_attention_heads x head_dim");
    // The rotary table is built for the whole context: 2^27 entries is a 1M context at head_dim 128.
    at_most(max_position_embeddings * head_dim, int64_t{1} << 27, "max_position_embeddings x head_dim");
    if (n_heads % n_kv_heads != 0)
        throw FormatError(source, strprintf("num_attention_heads (%lld) is not a multiple of num_key_value_heads (%lld)",
                                            (long long)n_heads, (long long)n_kv_heads));
    if (head_dim % 2 != 0)
        throw FormatError(source, strprintf("head_dim %lld is odd: rotary embeddings need an even head size",
                                            (long long)head_dim));
    if (!(rms_norm_eps > 0.0)) throw FormatError(source, "rms_norm_eps must be positive");
    if (!(rope_theta > 0.0)) throw FormatError(source, "rope_theta must be positive");
    if (bos_token_id >= vocab_size || eos_token_id >= vocab_size)
        throw FormatError(source, "bos/eos token id outside the vocabulary");
}

LlamaConfig llama_config_from_json(const nlohmann::json& json, const std::string& source) {
    if (!json.is_object()) throw FormatError(source, "config is not a JSON object");
    if (json.contains("model_type") && json["model_type"].is_string() && json["model_type"] != "llama" &&
        json["model_type"] != "mistral")
        throw FormatError(source, "model_type '" + json["model_type"].get<std::string>() +
                                      "' is not a LLaMA-family model (saliq reads model_type \"llama\")");
    if (json.contains("rope_scaling") && !json["rope_scaling"].is_null())
        throw FormatError(source, "rope_scaling is not supported (this model needs scaled rotary embeddings)");
    LlamaConfig c;
    c.hidden_size = required_int(json, "hidden_size", source);
    c.intermediate_size = required_int(json, "intermediate_size", source);
    c.n_layers = required_int(json, "num_hidden_layers", source);
    c.n_heads = required_int(json, "num_attention_heads", source);
    c.n_kv_heads = optional_int(json, "num_key_value_heads", c.n_heads, source);
    c.vocab_size = required_int(json, "vocab_size", source);
    if (c.n_heads > 0 && c.hidden_size % c.n_heads != 0 && !json.contains("head_dim"))
        throw FormatError(source, strprintf("hidden_size (%lld) is not divisible by num_attention_heads (%lld)",
                                            (long long)c.hidden_size, (long long)c.n_heads));
    c.head_dim = optional_int(json, "head_dim", c.n_heads > 0 ? c.hidden_size / c.n_heads : 0, source);
    c.max_position_embeddings = optional_int(json, "max_position_embeddings", 2048, source);
    c.rms_norm_eps = optional_number(json, "rms_norm_eps", 1e-6, source);
    c.rope_theta = optional_number(json, "rope_theta", 10000.0, source);
    if (json.contains("tie_word_embeddings") && !json["tie_word_embeddings"].is_null()) {
        if (!json["tie_word_embeddings"].is_boolean()) throw FormatError(source, "tie_word_embeddings must be a boolean");
        c.tie_word_embeddings = json["tie_word_embeddings"].get<bool>();
    }
    c.bos_token_id = optional_int(json, "bos_token_id", 1, source);
    c.eos_token_id = optional_int(json, "eos_token_id", 2, source);
    if (json.contains("torch_dtype") && json["torch_dtype"].is_string()) c.torch_dtype = json["torch_dtype"];
    c.validate(source);
    return c;
}

nlohmann::json llama_config_to_json(const LlamaConfig& c) {
    return {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.n_layers},
            {"num_attention_heads", c.n_heads},
            {"num_key_value_heads", c.n_kv_heads},
            {"head_dim", c.head_dim},
            {"vocab_size", c.vocab_size},
            {"max_position_embeddings", c.max_position_embeddings},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope_theta},
            {"rope_scaling", nullptr},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"bos_token_id", c.bos_token_id},
            {"eos_token_id", c.eos_token_id},
            {"hidden_act", "silu"},
            {"torch_dtype", c.torch_dtype}};
}

}  // namespace saliq
