#include <algorithm>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/llama_config.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

// json[key] as an int64: an unsigned number past INT64_MAX would otherwise read as a negative one.
int64_t int_value(const nlohmann::json& json, const char* key, const std::string& source) {
    const nlohmann::json& v = json[key];
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())))
        throw FormatError(source, std::string("key '") + key + "' must be an integer, got " + v.dump());
    return v.get<int64_t>();
}

int64_t required_int(const nlohmann::json& json, const char* key, const std::string& source) {
    if (!json.contains(key)) throw FormatError(source, std::string("missing required key '") + key + "'");
    return int_value(json, key, source);
}

int64_t optional_int(const nlohmann::json& json, const char* key, int64_t fallback, const std::string& source) {
    if (!json.contains(key) || json[key].is_null()) return fallback;
    return int_value(json, key, source);
}

// eos_token_id may list several ids (LLaMA-3.1 Instruct stops at any of three); saliq keeps the first.
int64_t eos_token_id(const nlohmann::json& json, const std::string& source) {
    if (!json.contains("eos_token_id") || !json["eos_token_id"].is_array())
        return optional_int(json, "eos_token_id", 2, source);
    const nlohmann::json& ids = json["eos_token_id"];
    if (ids.empty()) throw FormatError(source, "key 'eos_token_id' is an empty list");
    for (size_t i = 0; i < ids.size(); ++i)
        if (!ids[i].is_number_integer())
            throw FormatError(source, "key 'eos_token_id' lists " + ids[i].dump() + ", which is not a token id");
    return ids[0].get<int64_t>();
}

double optional_number(const nlohmann::json& json, const char* key, double fallback, const std::string& source) {
    if (!json.contains(key) || json[key].is_null()) return fallback;
    if (!json[key].is_number())
        throw FormatError(source, std::string("key '") + key + "' must be a number, got " + json[key].dump());
    return json[key].get<double>();
}

// The keys each rope type saliq computes reads (transformers' modeling_rope_utils; freq_factors is saliq's own
// spelling of llama.cpp's rope_freqs); any other key changes math saliq would not apply, so it is refused rather
// than ignored. Null for a type saliq does not compute.
const std::vector<std::string>* rope_keys(const std::string& type) {
    static const std::vector<std::string> kDefault = {"rope_type", "type", "rope_theta", "partial_rotary_factor"};
    static const std::vector<std::string> kFactor = {"rope_type", "type", "rope_theta", "partial_rotary_factor",
                                                     "factor"};
    static const std::vector<std::string> kLlama3 = {"rope_type",       "type",           "rope_theta",
                                                     "partial_rotary_factor", "factor", "low_freq_factor",
                                                     "high_freq_factor", "original_max_position_embeddings"};
    static const std::vector<std::string> kYarn = {
        "rope_type", "type",     "rope_theta", "partial_rotary_factor", "factor",  "attention_factor",
        "beta_fast", "beta_slow", "mscale",    "mscale_all_dim",        "truncate", "original_max_position_embeddings"};
    static const std::vector<std::string> kFactors = {"rope_type", "type", "rope_theta", "partial_rotary_factor",
                                                      "freq_factors"};
    if (type == "default") return &kDefault;
    if (type == "linear" || type == "dynamic") return &kFactor;
    if (type == "llama3") return &kLlama3;
    if (type == "yarn") return &kYarn;
    if (type == "freq_factors") return &kFactors;
    return nullptr;
}

double rope_number(const nlohmann::json& rope, const char* key, double fallback, bool required,
                   const std::string& source) {
    if (!rope.contains(key) || rope[key].is_null()) {
        if (required) throw FormatError(source, std::string("rope_parameters needs '") + key + "' for this rope_type");
        return fallback;
    }
    if (!rope[key].is_number())
        throw FormatError(source, std::string("rope_parameters '") + key + "' must be a number, got " + rope[key].dump());
    return rope[key].get<double>();
}

// RoPE as transformers 5 writes it (`rope_parameters`: rope_theta, rope_type and the type's keys) or 4 does
// (top-level `rope_theta`, `rope_scaling` with `type` or `rope_type`); both spellings may be present if they agree.
void read_rope(const nlohmann::json& json, LlamaConfig& c, const std::string& source) {
    nlohmann::json rope = nlohmann::json::object();
    for (const char* key : {"rope_parameters", "rope_scaling"}) {
        if (!json.contains(key) || json[key].is_null()) continue;
        if (!json[key].is_object()) throw FormatError(source, std::string(key) + " must be an object, got " + json[key].dump());
        for (const auto& [k, v] : json[key].items()) {
            if (v.is_object())
                throw FormatError(source, std::string(key) + " holds per-layer-type parameters ('" + k +
                                              "'); LLaMA models have one rotary embedding for every layer");
            if (rope.contains(k) && rope[k] != v)
                throw FormatError(source, "rope_parameters and rope_scaling disagree on '" + k + "' (" +
                                              rope[k].dump() + " vs " + v.dump() + ")");
            rope[k] = v;
        }
    }
    for (const char* key : {"rope_theta", "partial_rotary_factor"}) {
        if (!json.contains(key) || json[key].is_null()) continue;
        if (rope.contains(key) && !rope[key].is_null() && rope[key] != json[key])
            throw FormatError(source, std::string("config.json's ") + key + " " + json[key].dump() +
                                          " disagrees with rope_parameters' " + rope[key].dump());
        rope[key] = json[key];
    }
    std::string type = "default";
    for (const char* key : {"rope_type", "type"}) {
        if (!rope.contains(key) || rope[key].is_null()) continue;
        if (!rope[key].is_string()) throw FormatError(source, std::string("rope ") + key + " must be a string");
        const std::string t = rope[key].get<std::string>();
        if (std::string(key) == "type" && rope.contains("rope_type") && rope["rope_type"].is_string() && t != type)
            throw FormatError(source, "rope_type '" + type + "' and type '" + t + "' disagree");
        type = t;
    }
    const std::vector<std::string>* allowed = rope_keys(type);
    if (allowed == nullptr)
        throw FormatError(source, "rope_type '" + type +
                                      "' is not supported (saliq applies default, linear, dynamic, llama3 and yarn)");
    for (const auto& [k, v] : rope.items())
        if (std::find(allowed->begin(), allowed->end(), k) == allowed->end() && !v.is_null())
            throw FormatError(source, "rope parameter '" + k + "' is not applied by saliq for rope_type '" + type +
                                          "'; refusing rather than computing a different model");
    c.rope_theta = rope_number(rope, "rope_theta", 10000.0, false, source);
    if (rope_number(rope, "partial_rotary_factor", 1.0, false, source) != 1.0)
        throw FormatError(source, "partial_rotary_factor " + rope["partial_rotary_factor"].dump() +
                                      ": partial rotary embeddings are not supported");
    RopeScaling& s = c.rope_scaling;
    s.type = type;
    if (type == "default") return;
    if (type == "freq_factors") {
        const nlohmann::json& f = rope.contains("freq_factors") ? rope["freq_factors"] : nlohmann::json();
        if (!f.is_array()) throw FormatError(source, "rope_parameters 'freq_factors' must be an array of numbers");
        for (const auto& v : f) {
            if (!v.is_number()) throw FormatError(source, "rope_parameters 'freq_factors' must be an array of numbers");
            s.freq_factors.push_back(v.get<double>());
        }
        return;
    }
    s.factor = rope_number(rope, "factor", 0.0, type != "yarn", source);
    // transformers gives a top-level original_max_position_embeddings priority, else the config's context.
    int64_t original = c.max_position_embeddings;
    if (json.contains("original_max_position_embeddings") && !json["original_max_position_embeddings"].is_null())
        original = int_value(json, "original_max_position_embeddings", source);
    else if (rope.contains("original_max_position_embeddings") && !rope["original_max_position_embeddings"].is_null()) {
        if (!rope["original_max_position_embeddings"].is_number_integer())
            throw FormatError(source, "rope_parameters 'original_max_position_embeddings' must be an integer");
        original = rope["original_max_position_embeddings"].get<int64_t>();
    }
    if (type == "llama3" || type == "yarn") s.original_max_position_embeddings = original;
    if (type == "llama3") {
        s.low_freq_factor = rope_number(rope, "low_freq_factor", 0.0, true, source);
        s.high_freq_factor = rope_number(rope, "high_freq_factor", 0.0, true, source);
    }
    if (type == "yarn") {
        if (s.factor == 0.0 && original > 0)  // DeepSeek-style: the context ratio
            s.factor = static_cast<double>(c.max_position_embeddings) / static_cast<double>(original);
        s.attention_factor = rope_number(rope, "attention_factor", 0.0, false, source);
        // transformers reads these with `or`: 0 and null both mean the default
        s.beta_fast = rope_number(rope, "beta_fast", 0.0, false, source);
        if (s.beta_fast == 0.0) s.beta_fast = 32.0;
        s.beta_slow = rope_number(rope, "beta_slow", 0.0, false, source);
        if (s.beta_slow == 0.0) s.beta_slow = 1.0;
        s.mscale = rope_number(rope, "mscale", 0.0, false, source);
        s.mscale_all_dim = rope_number(rope, "mscale_all_dim", 0.0, false, source);
        if (rope.contains("truncate") && !rope["truncate"].is_null()) {
            if (!rope["truncate"].is_boolean()) throw FormatError(source, "rope_parameters 'truncate' must be a boolean");
            s.truncate = rope["truncate"].get<bool>();
        }
    }
}

// Keys of a LLaMA config.json that change the model's math in ways saliq does not compute: refused unless they
// hold the value saliq computes.
void refuse_unapplied_math(const nlohmann::json& json, const std::string& source) {
    if (json.contains("hidden_act") && !json["hidden_act"].is_null() && json["hidden_act"] != "silu")
        throw FormatError(source, "hidden_act " + json["hidden_act"].dump() + " is not supported (saliq computes SiLU)");
    for (const char* key : {"attention_bias", "mlp_bias"}) {
        if (!json.contains(key) || json[key].is_null()) continue;
        if (!json[key].is_boolean()) throw FormatError(source, std::string(key) + " must be a boolean");
        if (json[key].get<bool>())
            throw FormatError(source, std::string(key) + " is true: LLaMA linears with biases are not supported");
    }
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
    if (!(rms_norm_eps > 0.0) || !std::isfinite(rms_norm_eps))
        throw FormatError(source, strprintf("rms_norm_eps must be positive and finite, got %g", rms_norm_eps));
    if (!(rope_theta > 0.0) || !std::isfinite(rope_theta)) throw FormatError(source, "rope_theta must be positive");
    if (sliding_window < 0) throw FormatError(source, "sliding_window must not be negative");
    const RopeScaling& s = rope_scaling;
    if (!s.is_default()) {
        if (!(s.factor > 0.0) || !std::isfinite(s.factor))
            throw FormatError(source, strprintf("rope scaling factor must be positive, got %g", s.factor));
        if ((s.type == "llama3" || s.type == "yarn") && s.original_max_position_embeddings <= 0)
            throw FormatError(source, "rope original_max_position_embeddings must be positive");
        if (s.type == "llama3" && !(s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0.0))
            throw FormatError(source, strprintf("llama3 rope needs 0 < low_freq_factor < high_freq_factor, got %g and %g",
                                                s.low_freq_factor, s.high_freq_factor));
        if (s.type == "yarn" && !(s.attention_factor >= 0.0 && std::isfinite(s.attention_factor) &&
                                  s.beta_fast > 0.0 && s.beta_slow > 0.0 && std::isfinite(s.beta_fast) &&
                                  std::isfinite(s.beta_slow) && std::isfinite(s.mscale) && std::isfinite(s.mscale_all_dim)))
            throw FormatError(source, "yarn rope parameters must be positive and finite");
        if (s.type == "freq_factors") {
            if (static_cast<int64_t>(s.freq_factors.size()) != head_dim / 2)
                throw FormatError(source, strprintf("rope_freqs holds %zu factors for head size %lld (needs %lld)",
                                                    s.freq_factors.size(), (long long)head_dim, (long long)(head_dim / 2)));
            for (double f : s.freq_factors)
                if (!(f > 0.0) || !std::isfinite(f)) throw FormatError(source, "rope_freqs holds a non-positive factor");
        }
    }
    if (bos_token_id < 0 || bos_token_id >= vocab_size || eos_token_id < 0 || eos_token_id >= vocab_size)
        throw FormatError(source, strprintf("bos/eos token id (%lld, %lld) outside the vocabulary of %lld",
                                            (long long)bos_token_id, (long long)eos_token_id, (long long)vocab_size));
}

LlamaConfig llama_config_from_json(const nlohmann::json& json, const std::string& source) {
    if (!json.is_object()) throw FormatError(source, "config is not a JSON object");
    if (json.contains("model_type") && json["model_type"].is_string() && json["model_type"] != "llama" &&
        json["model_type"] != "mistral")
        throw FormatError(source, "model_type '" + json["model_type"].get<std::string>() +
                                      "' is not a LLaMA-family model (saliq reads model_type \"llama\")");
    refuse_unapplied_math(json, source);
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
    read_rope(json, c, source);
    c.sliding_window = optional_int(json, "sliding_window", 0, source);
    if (json.contains("tie_word_embeddings") && !json["tie_word_embeddings"].is_null()) {
        if (!json["tie_word_embeddings"].is_boolean()) throw FormatError(source, "tie_word_embeddings must be a boolean");
        c.tie_word_embeddings = json["tie_word_embeddings"].get<bool>();
    }
    c.bos_token_id = optional_int(json, "bos_token_id", 1, source);
    c.eos_token_id = eos_token_id(json, source);
    // transformers 5 writes `dtype`, 4 `torch_dtype`; a config with both must mean one dtype
    for (const char* key : {"torch_dtype", "dtype"})
        if (json.contains(key) && json[key].is_string()) c.torch_dtype = json[key];
    if (json.contains("torch_dtype") && json.contains("dtype") && json["torch_dtype"].is_string() &&
        json["dtype"].is_string() && json["torch_dtype"] != json["dtype"])
        throw FormatError(source, "torch_dtype " + json["torch_dtype"].dump() + " and dtype " + json["dtype"].dump() +
                                      " disagree; keep the one the weights are stored in");
    c.validate(source);
    return c;
}

// transformers 4's spelling (top-level rope_theta beside rope_scaling), which transformers 5 reads too.
nlohmann::json rope_scaling_to_json(const RopeScaling& s) {
    if (s.is_default()) return nullptr;
    // llama.cpp's rope_freqs has no transformers spelling (its llama3 parameters are not in the GGUF): saliq's own,
    // which saliq reads back and transformers refuses rather than misreads.
    if (s.type == "freq_factors") return {{"rope_type", "freq_factors"}, {"freq_factors", s.freq_factors}};
    nlohmann::json j = {{"rope_type", s.type}, {"factor", s.factor}};
    if (s.type == "llama3" || s.type == "yarn") j["original_max_position_embeddings"] = s.original_max_position_embeddings;
    if (s.type == "llama3") {
        j["low_freq_factor"] = s.low_freq_factor;
        j["high_freq_factor"] = s.high_freq_factor;
    }
    if (s.type == "yarn") {
        j["beta_fast"] = s.beta_fast;
        j["beta_slow"] = s.beta_slow;
        j["truncate"] = s.truncate;
        if (s.attention_factor > 0.0) j["attention_factor"] = s.attention_factor;
        if (s.mscale > 0.0) j["mscale"] = s.mscale;
        if (s.mscale_all_dim > 0.0) j["mscale_all_dim"] = s.mscale_all_dim;
    }
    return j;
}

nlohmann::json llama_config_to_json(const LlamaConfig& c) {
    nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
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
            {"rope_scaling", rope_scaling_to_json(c.rope_scaling)},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"bos_token_id", c.bos_token_id},
            {"eos_token_id", c.eos_token_id},
            {"hidden_act", "silu"},
            {"torch_dtype", c.torch_dtype}};
    if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
    return j;
}

}  // namespace saliq
