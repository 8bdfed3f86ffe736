#include <cmath>
#include <fstream>
#include <functional>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/gguf.h"
#include "saliq/safetensors.h"
#include "saliq/split_regex.h"
#include "saliq/strings.h"
#include "saliq/unicode.h"

namespace saliq {

namespace hf_names {
std::string layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }
std::string linear_name(int64_t layer, int index) { return layer_prefix(layer) + kLinearNames[index]; }
std::string lora_key(const std::string& linear, char which) {
    return "base_model.model." + linear + ".lora_" + which + ".weight";
}
const char* const kEmbed = "model.embed_tokens.weight";
const char* const kFinalNorm = "model.norm.weight";
const char* const kLmHead = "lm_head.weight";
const char* const kLinearNames[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                     "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
const char* const kInputNorm = "input_layernorm.weight";
const char* const kPostNorm = "post_attention_layernorm.weight";
}  // namespace hf_names

std::array<std::vector<int64_t>, 7> linear_shapes(const LlamaConfig& c) {
    const int64_t H = c.hidden_size, I = c.intermediate_size, qd = c.n_heads * c.head_dim,
                  kvd = c.n_kv_heads * c.head_dim;
    return {{{qd, H}, {kvd, H}, {kvd, H}, {H, qd}, {I, H}, {I, H}, {H, I}}};
}

std::vector<std::string> llama_tensor_names(const LlamaConfig& config) {
    std::vector<std::string> names = {hf_names::kEmbed};
    for (int64_t i = 0; i < config.n_layers; ++i) {
        const std::string p = hf_names::layer_prefix(i);
        names.push_back(p + hf_names::kInputNorm);
        for (const char* linear : hf_names::kLinearNames) names.push_back(p + linear + ".weight");
        names.push_back(p + hf_names::kPostNorm);
    }
    names.push_back(hf_names::kFinalNorm);
    if (!config.tie_word_embeddings) names.push_back(hf_names::kLmHead);
    return names;
}

at::Tensor permute_rotary_rows_to_hf(const at::Tensor& weight, int64_t n_heads) {
    const int64_t rows = weight.size(0);
    const int64_t cols = weight.size(1);
    const int64_t half = rows / n_heads / 2;
    return weight.reshape({n_heads, half, 2, cols}).transpose(1, 2).reshape({rows, cols}).contiguous();
}

at::Tensor permute_rotary_rows_to_meta(const at::Tensor& weight, int64_t n_heads) {
    const int64_t rows = weight.size(0);
    const int64_t cols = weight.size(1);
    const int64_t half = rows / n_heads / 2;
    return weight.reshape({n_heads, 2, half, cols}).transpose(1, 2).reshape({rows, cols}).contiguous();
}

std::vector<std::string> gptq_loader_rejected_linears(const LlamaConfig& c) {
    const auto shapes = linear_shapes(c);  // [out, in] of each linear
    std::vector<std::string> out;
    for (int i = 0; i < 7; ++i) {
        std::string why;
        if (shapes[i][1] % 32 != 0) why = "in " + std::to_string(shapes[i][1]);
        if (shapes[i][0] % 32 != 0) why += (why.empty() ? "out " : ", out ") + std::to_string(shapes[i][0]);
        if (!why.empty()) out.push_back(std::string(hf_names::kLinearNames[i]) + ": " + why);
    }
    return out;
}

namespace {

bool bool_field(const nlohmann::json& j, const char* key, bool fallback, const std::string& source) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) throw FormatError(source, std::string("'") + key + "' must be true or false");
    return j[key].get<bool>();
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& fallback,
                         const std::string& source) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_string()) throw FormatError(source, std::string("'") + key + "' must be a string");
    return j[key].get<std::string>();
}

// quantization_config.<key> (present) as an integer in [lo, hi], compared in its stored width: get<int>() narrows
// 4294967300 to 4, and an unsigned 2^64 - 1 reads as -1 through get<int64_t>().
int64_t int_field(const nlohmann::json& q, const char* key, int64_t lo, int64_t hi, const std::string& source) {
    const nlohmann::json& v = q[key];
    const bool fits = v.is_number_integer() &&
                      !(v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) &&
                      v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    if (!fits)
        throw FormatError(source, strprintf("quantization_config.%s %s is not an integer from %lld to %lld", key,
                                            v.dump().c_str(), (long long)lo, (long long)hi));
    return v.get<int64_t>();
}

// Far above any real group (GPTQ's 32 to 1024), and small enough that group counts and offsets cannot overflow.
constexpr int64_t kMaxGroupSize = int64_t{1} << 20;

// -1 (one group per row, also when absent) or a positive size: 0 would divide the inputs into groups of nothing.
int64_t group_size_field(const nlohmann::json& q, const std::string& source) {
    if (!q.contains("group_size")) return -1;
    const int64_t g = int_field(q, "group_size", -1, kMaxGroupSize, source);
    if (g == 0)
        throw FormatError(source, "quantization_config.group_size 0 is neither -1 (one group per row) nor positive");
    return g;
}

// compressed-tensors (llm-compressor's output, vLLM's WNA16 route): saliq reads one weight-only integer scheme for
// every decoder linear, stored pack-quantized (open_compressed_tensors_view shows it as GPTQ v2). Anything that would
// make saliq's forward another model's (quantized activations or KV cache, sparsity, rotations, linears left out) is
// refused by name.
PackedInfo parse_compressed_tensors_config(const nlohmann::json& q, const std::string& source) {
    auto refuse = [&source](const std::string& why) { throw FormatError(source, "compressed-tensors: " + why); };
    auto present = [](const nlohmann::json& j, const char* key) {
        return j.contains(key) && !j[key].is_null() && !(j[key].is_object() && j[key].empty());
    };
    const std::string status = string_field(q, "quantization_status", "compressed", source);
    if (status != "compressed")
        refuse("quantization_status '" + status + "': saliq reads compressed folders (llm-compressor's "
                                                  "save_pretrained(save_compressed=True))");
    if (!q.contains("config_groups") || !q["config_groups"].is_object() || q["config_groups"].size() != 1)
        refuse("saliq reads exactly one of config_groups (one scheme for every linear)");
    const nlohmann::json& group = q["config_groups"].begin().value();
    if (!group.is_object()) refuse("config_groups entry is not an object");
    const std::string format = string_field(group, "format", string_field(q, "format", "", source), source);
    if (format != "pack-quantized")
        refuse("format '" + format + "' is not supported (saliq reads pack-quantized: integer codes packed in int32)");
    bool all_linears = false;
    if (group.contains("targets") && group["targets"].is_array())
        for (const auto& t : group["targets"]) all_linears = all_linears || t == "Linear";
    if (!all_linears) refuse("the scheme's targets do not include \"Linear\"; saliq reads folders where it covers "
                             "every linear");
    for (const char* key : {"input_activations", "output_activations"})
        if (present(group, key))
            refuse(std::string(key) + " are quantized; saliq runs weight-only quantized models");
    if (present(q, "kv_cache_scheme")) refuse("the KV cache is quantized (kv_cache_scheme); saliq does not emulate it");
    if (present(q, "sparsity_config")) refuse("sparsity_config is set; saliq reads dense quantized weights");
    if (present(q, "transform_config")) refuse("transform_config (rotations) is set; saliq does not apply them");
    if (q.contains("ignore") && !q["ignore"].is_null()) {
        if (!q["ignore"].is_array()) refuse("'ignore' is not a list");
        for (const auto& name : q["ignore"])
            if (!name.is_string() || !ends_with(name.get<std::string>(), "lm_head"))
                refuse("ignore lists " + name.dump() + "; saliq reads folders where every decoder linear is quantized "
                                                       "(only lm_head left out)");
    }
    if (!group.contains("weights") || !group["weights"].is_object())
        refuse("the scheme's 'weights' is missing or not an object");
    const nlohmann::json& w = group["weights"];
    const std::string type = string_field(w, "type", "int", source);
    if (type != "int") refuse("weights type '" + type + "' is not int");
    if (bool_field(w, "dynamic", false, source)) refuse("dynamic weight quantization is not a stored grid");
    if (!w.contains("num_bits")) refuse("weights.num_bits is missing");
    PackedInfo info;
    info.bits = static_cast<int>(int_field(w, "num_bits", 1, 8, source));
    if (info.bits != 2 && info.bits != 3 && info.bits != 4 && info.bits != 8)
        refuse("num_bits " + std::to_string(info.bits) + " is not 2, 3, 4 or 8");
    const std::string strategy = string_field(w, "strategy", "", source);
    if (strategy == "group") {
        if (!w.contains("group_size") || w["group_size"].is_null()) refuse("strategy group without a group_size");
        info.group_size = int_field(w, "group_size", 1, kMaxGroupSize, source);
    } else if (strategy == "channel") {
        info.group_size = -1;
    } else {
        refuse("weights strategy '" + strategy + "' is not supported (saliq reads group and channel)");
    }
    info.symmetric = bool_field(w, "symmetric", true, source);
    const std::string actorder = string_field(w, "actorder", "", source);
    if (actorder != "" && actorder != "static" && actorder != "weight" && actorder != "group")
        refuse("actorder '" + actorder + "' is not supported (saliq reads static, weight and group)");
    info.desc_act = actorder == "group";  // groups in activation order: weight_g_idx names each column's group
    info.zeros_v2 = true;
    info.compressed_tensors = true;
    return info;
}

}  // namespace

PackedInfo parse_quantization_config(const nlohmann::json& q, const std::string& source) {
    if (!q.is_object()) throw FormatError(source, "quantization_config is not an object");
    const std::string method = string_field(q, "quant_method", "", source);
    if (method == "compressed-tensors") return parse_compressed_tensors_config(q, source);
    PackedInfo info;
    if (method == "saliq_binary") {
        info.binarizer = string_field(q, "binarizer", "", source);
        if (info.binarizer != "db-llm" && info.binarizer != "binarymos")
            throw FormatError(source, "quantization_config.binarizer '" + info.binarizer +
                                          "' is not db-llm or binarymos");
        info.bits = info.binarizer == "binarymos" ? 1 : 2;
        info.group_size = group_size_field(q, source);
        return info;
    }
    if (method == "saliq_ggml") {  // GGML blocks (ggml_grid.h): each linear names its own type
        const std::string grid = string_field(q, "grid", "", source);
        try {
            info.grid = parse_ggml_grid(grid);
        } catch (const ConfigError&) {
            throw FormatError(source, "quantization_config.grid '" + grid + "' is not a GGML type saliq reads");
        }
        if (info.grid == GgmlGrid::kNone) throw FormatError(source, "quantization_config.grid is missing");
        info.bits = ggml_grid_traits(info.grid).bits;
        info.group_size = ggml_grid_traits(info.grid).sub_block;
        info.symmetric = !ggml_grid_traits(info.grid).has_min;
        return info;
    }
    // AutoRound's own format: GPTQ's bit layout and no g_idx; its zero points are AutoGPTQ's (stored z - 1, as
    // checkpoint_format gptq) unless the config says gptq_v2. Measured on AutoRound 0.16.1's RTN output (iters 0) of
    // SmolLM2: the stored zeros are z - 1; read as raw zeros every weight moved by one step (perplexity ~7e9).
    const bool auto_round = method == "auto-round" || method == "intel/auto-round";
    if (auto_round) {
        const std::string packing = string_field(q, "packing_format", "auto_round:auto_gptq", source);
        if (packing != "auto_round:auto_gptq" && packing != "auto_round:gptqmodel")
            throw FormatError(source, "AutoRound packing_format '" + packing +
                                          "' is not supported (saliq reads auto_round:auto_gptq, GPTQ's bit layout)");
        const std::string data_type = string_field(q, "data_type", "int", source);
        if (data_type != "int")
            throw FormatError(source, "AutoRound data_type '" + data_type + "' is not supported (saliq reads int)");
        if (q.contains("extra_config") && !q["extra_config"].is_null() && !q["extra_config"].empty())
            throw FormatError(source, "AutoRound extra_config gives some layers their own settings; saliq reads "
                                      "one setting for every linear");
    }
    if (method != "gptq" && method != "saliq_mixed" && !auto_round)
        throw FormatError(source, "quantization_config.quant_method '" + method +
                                      "' is not supported (saliq reads GPTQ-packed folders, AutoRound's "
                                      "auto_round:auto_gptq, compressed-tensors' pack-quantized and its own "
                                      "saliq_binary and saliq_mixed)");
    info.mixed = method == "saliq_mixed";
    if (!q.contains("bits")) throw FormatError(source, "quantization_config.bits is missing");
    info.bits = static_cast<int>(int_field(q, "bits", 1, 8, source));
    if (info.mixed ? (info.bits < 2 || info.bits > 7)
                   : (info.bits != 2 && info.bits != 3 && info.bits != 4 && info.bits != 8))
        throw FormatError(source, "quantization_config.bits " + std::to_string(info.bits) +
                                      (info.mixed ? " is not an average saliq_mixed stores (2 to 7)" : " is not 2, 3, 4 or 8"));
    info.group_size = group_size_field(q, source);
    info.symmetric = bool_field(q, "sym", !info.mixed, source);
    if (info.mixed && info.symmetric) throw FormatError(source, "saliq_mixed folders are asymmetric (sym false)");
    info.desc_act = bool_field(q, "desc_act", false, source);
    if (info.mixed && info.desc_act) throw FormatError(source, "saliq_mixed keeps groups in column order (desc_act false)");
    const std::string format = string_field(q, "checkpoint_format", "gptq", source);
    if (format != "gptq" && format != "gptq_v2")
        throw FormatError(source, "quantization_config.checkpoint_format '" + format + "' is not gptq or gptq_v2");
    info.zeros_v2 = format == "gptq_v2";
    if (q.contains("saliq_sparse") && !q["saliq_sparse"].is_null()) {
        if (!q["saliq_sparse"].is_object()) throw FormatError(source, "quantization_config.saliq_sparse is not an object");
        info.sparse = true;
    }
    return info;
}

namespace {

// Which linears of `config` a PEFT adapter config targets, as PEFT matches them: a list names modules by suffix
// ("q_proj" matches "model.layers.0.self_attn.q_proj"), a string is a regular expression the whole name must
// match, "all-linear" is every linear; layers_to_transform (a layer or a list) narrows the layers.
std::set<std::string> adapter_targets(const nlohmann::json& a, const LlamaConfig& config, const std::string& source) {
    if (!a.contains("target_modules") || a["target_modules"].is_null())
        throw FormatError(source, "'target_modules' is missing: which linears do the adapters belong to?");
    const nlohmann::json& t = a["target_modules"];
    std::set<int64_t> layers;
    if (a.contains("layers_to_transform") && !a["layers_to_transform"].is_null()) {
        const nlohmann::json& l = a["layers_to_transform"];
        const nlohmann::json list = l.is_array() ? l : nlohmann::json::array({l});
        for (const auto& v : list) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= config.n_layers)
                throw FormatError(source, "layers_to_transform entry " + v.dump() + " is not a layer of this " +
                                              std::to_string(config.n_layers) + "-layer model");
            layers.insert(v.get<int64_t>());
        }
    } else {
        for (int64_t i = 0; i < config.n_layers; ++i) layers.insert(i);
    }
    std::function<bool(const std::string&)> matches;
    if (t.is_string() && t.get<std::string>() == "all-linear") {
        matches = [](const std::string&) { return true; };
    } else if (t.is_string()) {
        const std::string pattern = t.get<std::string>();
        if (pattern.size() > 1000) throw FormatError(source, "target_modules pattern longer than 1000 characters");
        // saliq's own matcher, not std::regex: its step budget refuses a pattern that backtracks exponentially
        // ((m|m|.)*(m|m|.)*z) where std::regex would run for hours.
        std::shared_ptr<const SplitRegex> re;
        try {
            re = std::make_shared<const SplitRegex>(pattern);
        } catch (const ConfigError& e) {
            throw FormatError(source, std::string("target_modules is not a pattern saliq reads: ") + e.what());
        }
        matches = [re, source](const std::string& name) {
            try {
                return re->full_match(unicode::decode_utf8(name).cps);
            } catch (const ConfigError& e) {
                throw FormatError(source,
                                  std::string("target_modules: ") + e.what() + "; list the module names instead");
            }
        };
    } else if (t.is_array()) {
        std::vector<std::string> keys;
        for (const auto& k : t) {
            if (!k.is_string() || k.get<std::string>().empty())
                throw FormatError(source, "target_modules entry " + k.dump() + " is not a module name");
            keys.push_back(k.get<std::string>());
        }
        matches = [keys](const std::string& name) {
            for (const auto& k : keys)
                if (name == k || ends_with(name, "." + k)) return true;
            return false;
        };
    } else {
        throw FormatError(source, "target_modules must be a list of module names or a pattern");
    }
    std::set<std::string> out;
    for (int64_t layer : layers)
        for (int i = 0; i < 7; ++i)
            if (matches(hf_names::linear_name(layer, i))) out.insert(hf_names::linear_name(layer, i));
    return out;
}

// A PEFT LoRA adapter beside the weights: adapter_config.json against adapter_model.safetensors. Every targeted
// linear has lora_A [r, in] and lora_B [out, r]; the file holds nothing else. Half an adapter (a config without
// tensors, tensors without a config) is an error, never skipped: evaluating without it would score another model.
void load_adapter(Checkpoint& ckpt, const std::string& dir) {
    const std::string config_path = dir + "/adapter_config.json";
    const std::string weights = dir + "/adapter_model.safetensors";
    const bool has_config = path_exists(config_path), has_weights = path_exists(weights);
    if (!has_config && !has_weights) {
        if (path_exists(dir + "/adapter_model.bin"))
            throw FormatError(dir + "/adapter_model.bin", "adapters as a PyTorch pickle are not read; save them as "
                                                          "adapter_model.safetensors (PEFT: safe_serialization=True)");
        return;
    }
    if (!has_config)
        throw FormatError(weights, "adapter tensors without adapter_config.json (r, lora_alpha and the target "
                                   "modules are unknown); add the config or remove the file");
    if (!has_weights) throw FormatError(dir, "adapter_config.json without adapter_model.safetensors");
    const nlohmann::json a = read_json_file(config_path);
    if (!a.is_object()) throw FormatError(config_path, "not a JSON object");
    if (!a.contains("peft_type") || a["peft_type"] != "LORA") throw FormatError(config_path, "peft_type must be LORA");
    if (!a.contains("r") || !a["r"].is_number_integer() || a["r"].get<int64_t>() <= 0 ||
        a["r"].get<int64_t>() > 65536)
        throw FormatError(config_path, "'r' must be an integer in [1, 65536], got " +
                                           (a.contains("r") ? a["r"].dump() : std::string("nothing")));
    if (!a.contains("lora_alpha") || !a["lora_alpha"].is_number() || !std::isfinite(a["lora_alpha"].get<double>()))
        throw FormatError(config_path, "'lora_alpha' must be a finite number");
    if (bool_field(a, "use_dora", false, config_path)) throw FormatError(config_path, "DoRA adapters are not supported");
    if (bool_field(a, "fan_in_fan_out", false, config_path))
        throw FormatError(config_path, "fan_in_fan_out adapters (Conv1D models) do not fit LLaMA's linears");
    if (a.contains("bias") && !a["bias"].is_null() && a["bias"] != "none")
        throw FormatError(config_path, "adapter biases (bias " + a["bias"].dump() + ") are not supported");
    if (a.contains("modules_to_save") && !a["modules_to_save"].is_null() && !a["modules_to_save"].empty())
        throw FormatError(config_path, "modules_to_save (whole modules stored with the adapter) is not supported");
    for (const char* key : {"rank_pattern", "alpha_pattern"})
        if (a.contains(key) && !a[key].is_null() && !a[key].empty())
            throw FormatError(config_path, std::string(key) + " is not supported: saliq applies one r and lora_alpha");
    const int64_t r = a["r"].get<int64_t>();
    const bool rslora = bool_field(a, "use_rslora", false, config_path);
    ckpt.adapter_scale = a["lora_alpha"].get<double>() / (rslora ? std::sqrt(static_cast<double>(r)) : r);

    const std::set<std::string> targets = adapter_targets(a, ckpt.config, config_path);
    if (targets.empty()) throw FormatError(config_path, "target_modules match no linear of this model");
    const auto source = open_safetensors_file(weights);
    const LlamaConfig& c = ckpt.config;
    const auto shapes = linear_shapes(c);  // [out, in] of each linear
    std::set<std::string> expected;
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
        for (int i = 0; i < 7; ++i) {
            const std::string name = hf_names::linear_name(layer, i);
            if (targets.count(name) == 0) continue;
            const std::vector<int64_t> want[2] = {{r, shapes[i][1]}, {shapes[i][0], r}};
            for (int ab = 0; ab < 2; ++ab) {
                const std::string key = hf_names::lora_key(name, ab == 0 ? 'A' : 'B');
                expected.insert(key);
                if (!source->has(key))
                    throw FormatError(weights, "tensor '" + key + "' is missing: adapter_config.json targets " + name);
                const auto [dtype, shape] = source->describe(key);
                if (shape != want[ab])
                    throw FormatError(weights, "tensor '" + key + "' has shape " + shape_to_string(shape) + ", r " +
                                                   std::to_string(r) + " and the model imply " +
                                                   shape_to_string(want[ab]));
                if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16)
                    throw FormatError(weights, "tensor '" + key + "' is not a float tensor");
            }
        }
    }
    for (const auto& name : source->names())
        if (expected.count(name) == 0)
            throw FormatError(weights, "unknown tensor '" + name + "' (adapter_config.json targets " +
                                           std::to_string(targets.size()) + " linears; this is not one of their "
                                           "lora_A / lora_B)");
    ckpt.adapter = source;
    ckpt.adapter_path = dir;
}

}  // namespace

Checkpoint load_checkpoint(const std::string& path, const std::string& tokenizer_path) {
    if (!path_exists(path)) throw IoError(path, "no such file or folder");
    Checkpoint ckpt;
    if (is_directory(path)) {
        const std::string config_path = path + "/config.json";
        if (!path_exists(config_path))
            throw FormatError(path, "not a Hugging Face model folder: config.json is missing");
        const nlohmann::json json = read_json_file(config_path);
        ckpt.path = path;
        ckpt.format = "hf";
        ckpt.config = llama_config_from_json(json, config_path);
        ckpt.tensors = open_safetensors_folder(path);
        // The quantization_config in config.json, or AutoGPTQ's older quantize_config.json beside it.
        nlohmann::json quant;
        std::string quant_source = config_path;
        if (json.contains("quantization_config") && !json["quantization_config"].is_null()) {
            quant = json["quantization_config"];
        } else if (path_exists(path + "/quantize_config.json")) {
            quant_source = path + "/quantize_config.json";
            quant = read_json_file(quant_source);
            if (quant.is_object() && !quant.contains("quant_method")) quant["quant_method"] = "gptq";
        }
        if (!quant.is_null()) {
            ckpt.packed = parse_quantization_config(quant, quant_source);
            ckpt.format = ckpt.packed.mixed                     ? "saliq_mixed"
                          : !ckpt.packed.binarizer.empty()      ? "saliq_binary"
                          : ckpt.packed.grid != GgmlGrid::kNone ? "saliq_ggml"
                          : ckpt.packed.compressed_tensors      ? "compressed-tensors"
                                                                : "gptq";
            if (ckpt.packed.compressed_tensors)
                ckpt.tensors = open_compressed_tensors_view(ckpt.tensors, ckpt.packed);
        }
        if (path_exists(path + "/tokenizer.model")) ckpt.tokenizer_path = path + "/tokenizer.model";
        else if (path_exists(path + "/tokenizer.json")) ckpt.tokenizer_path = path + "/tokenizer.json";
        load_adapter(ckpt, path);
    } else if (path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) {
        ckpt = read_gguf(path);
        const std::string beside = parent_directory(path) + "/tokenizer.model";
        if (path_exists(beside)) ckpt.tokenizer_path = beside;  // else read_gguf's: its own BPE vocabulary, if any
    } else {
        ckpt = read_llama2c(path);
    }
    if (!tokenizer_path.empty()) {
        if (!path_exists(tokenizer_path)) throw IoError(tokenizer_path, "tokenizer file does not exist");
        ckpt.tokenizer_path = tokenizer_path;
    }
    return ckpt;
}

namespace {

// What transformers needs to read tokenizer.model as LLaMA's SentencePiece tokenizer (without it, recent versions
// guess another tokenizer class); BOS before every text, as LLaMA's tokenizer adds it.
nlohmann::json llama_tokenizer_config(const LlamaConfig& config) {
    return {{"tokenizer_class", "LlamaTokenizer"},
            {"bos_token", "<s>"},
            {"eos_token", "</s>"},
            {"unk_token", "<unk>"},
            {"add_bos_token", true},
            {"add_eos_token", false},
            {"legacy", true},
            {"clean_up_tokenization_spaces", false},
            {"model_max_length", config.max_position_embeddings}};
}

}  // namespace

std::vector<std::string> write_tokenizer_files(const std::string& tokenizer_path, const LlamaConfig& config,
                                               const std::string& dir) {
    if (tokenizer_path.empty()) return {};
    const std::string json_out = dir + "/tokenizer.json", config_out = dir + "/tokenizer_config.json";
    if (ends_with(tokenizer_path, ".gguf")) {
        const auto reader = GgufReader::open(tokenizer_path);
        write_json_atomic(json_out, gguf_tokenizer_json(*reader));
        nlohmann::json tc = gguf_tokenizer_config(*reader);
        tc["model_max_length"] = config.max_position_embeddings;
        write_json_atomic(config_out, tc);
        return {"tokenizer.json", "tokenizer_config.json"};
    }
    if (ends_with(tokenizer_path, ".json")) {
        copy_file(tokenizer_path, json_out);
        const std::string beside = parent_directory(tokenizer_path) + "/tokenizer_config.json";
        if (path_exists(beside)) copy_file(beside, config_out);
        else write_json_atomic(config_out, {{"tokenizer_class", "PreTrainedTokenizerFast"},
                                            {"model_max_length", config.max_position_embeddings}});
        return {"tokenizer.json", "tokenizer_config.json"};
    }
    copy_file(tokenizer_path, dir + "/tokenizer.model");
    write_json_atomic(config_out, llama_tokenizer_config(config));
    return {"tokenizer.model", "tokenizer_config.json"};
}

std::pair<at::ScalarType, std::vector<int64_t>> TensorSource::describe(const std::string& name) const {
    const at::Tensor t = get(name);
    return {t.scalar_type(), t.sizes().vec()};
}

void write_hf_folder(const std::string& out_dir, const LlamaConfig& config, const TensorSource& tensors,
                     const std::string& tokenizer_path, bool force) {
    StagingDir staging(out_dir, force);
    // One tensor at a time, its source pages released once written: converting never holds the whole model.
    const std::vector<std::string> names = llama_tensor_names(config);
    std::vector<TensorSpec> specs;
    for (const auto& name : names) {
        const auto [dtype, shape] = tensors.describe(name);
        specs.push_back({name, dtype, shape});
    }
    write_safetensors_streamed(staging.file("model.safetensors"), specs,
                               [&](size_t i) { return tensors.get(names[i]); }, {{"format", "pt"}},
                               [&](size_t i) { tensors.release(names[i]); });
    write_json_atomic(staging.file("config.json"), llama_config_to_json(config));
    write_tokenizer_files(tokenizer_path, config, staging.path());
    staging.commit();
}

}  // namespace saliq
