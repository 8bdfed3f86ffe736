#include <cmath>
#include <fstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/gguf.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"

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
    const int64_t H = c.hidden_size, I = c.intermediate_size, qd = c.n_heads * c.head_dim,
                  kvd = c.n_kv_heads * c.head_dim;
    const int64_t shapes[7][2] = {{qd, H}, {kvd, H}, {kvd, H}, {H, qd}, {I, H}, {I, H}, {H, I}};  // [out, in]
    std::vector<std::string> out;
    for (int i = 0; i < 7; ++i) {
        std::string why;
        if (shapes[i][1] % 32 != 0) why = "in " + std::to_string(shapes[i][1]);
        if (shapes[i][0] % 32 != 0) why += (why.empty() ? "out " : ", out ") + std::to_string(shapes[i][0]);
        if (!why.empty()) out.push_back(std::string(hf_names::kLinearNames[i]) + ": " + why);
    }
    return out;
}

PackedInfo parse_quantization_config(const nlohmann::json& q, const std::string& source) {
    if (!q.is_object()) throw FormatError(source, "quantization_config is not an object");
    const std::string method = q.value("quant_method", std::string());
    PackedInfo info;
    if (method == "saliq_binary") {
        info.binarizer = q.value("binarizer", std::string());
        if (info.binarizer != "db-llm" && info.binarizer != "binarymos")
            throw FormatError(source, "quantization_config.binarizer '" + info.binarizer +
                                          "' is not db-llm or binarymos");
        info.bits = info.binarizer == "binarymos" ? 1 : 2;
        if (q.contains("group_size") && q["group_size"].is_number_integer())
            info.group_size = q["group_size"].get<int64_t>();
        return info;
    }
    if (method != "gptq")
        throw FormatError(source, "quantization_config.quant_method '" + method +
                                      "' is not supported (saliq reads GPTQ-packed folders and its own saliq_binary)");
    if (!q.contains("bits") || !q["bits"].is_number_integer())
        throw FormatError(source, "quantization_config.bits is missing or not an integer");
    info.bits = q["bits"].get<int>();
    if (info.bits != 2 && info.bits != 3 && info.bits != 4 && info.bits != 8)
        throw FormatError(source, "quantization_config.bits " + std::to_string(info.bits) + " is not 2, 3, 4 or 8");
    if (q.contains("group_size")) {
        if (!q["group_size"].is_number_integer()) throw FormatError(source, "quantization_config.group_size is not an integer");
        info.group_size = q["group_size"].get<int64_t>();
    }
    info.symmetric = q.value("sym", true);
    info.desc_act = q.value("desc_act", false);
    const std::string format = q.value("checkpoint_format", std::string("gptq"));
    if (format != "gptq" && format != "gptq_v2")
        throw FormatError(source, "quantization_config.checkpoint_format '" + format + "' is not gptq or gptq_v2");
    info.zeros_v2 = format == "gptq_v2";
    return info;
}

namespace {

void load_adapter(Checkpoint& ckpt, const std::string& dir) {
    const std::string config_path = dir + "/adapter_config.json";
    const nlohmann::json a = read_json_file(config_path);
    if (a.value("peft_type", std::string()) != "LORA")
        throw FormatError(config_path, "peft_type must be LORA");
    if (!a.contains("r") || !a["r"].is_number_integer() || a["r"].get<int64_t>() <= 0)
        throw FormatError(config_path, "'r' must be a positive integer");
    if (!a.contains("lora_alpha") || !a["lora_alpha"].is_number())
        throw FormatError(config_path, "'lora_alpha' must be a number");
    if (a.value("use_dora", false)) throw FormatError(config_path, "DoRA adapters are not supported");
    const double r = static_cast<double>(a["r"].get<int64_t>());
    ckpt.adapter_scale = a["lora_alpha"].get<double>() / (a.value("use_rslora", false) ? std::sqrt(r) : r);
    const std::string weights = dir + "/adapter_model.safetensors";
    if (!path_exists(weights)) throw FormatError(dir, "adapter_config.json without adapter_model.safetensors");
    ckpt.adapter = open_safetensors_file(weights);
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
        if (json.contains("quantization_config") && !json["quantization_config"].is_null()) {
            ckpt.packed = parse_quantization_config(json["quantization_config"], config_path);
            ckpt.format = "gptq";
        }
        if (path_exists(path + "/tokenizer.model")) ckpt.tokenizer_path = path + "/tokenizer.model";
        else if (path_exists(path + "/tokenizer.json")) ckpt.tokenizer_path = path + "/tokenizer.json";
        if (path_exists(path + "/adapter_config.json")) load_adapter(ckpt, path);
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
