// GGUF files carry a BPE vocabulary as arrays (tokens, token types, merges) plus llama.cpp's name for the
// pre-tokenizer; this spells them as the tokenizer.json the model's Hugging Face release has (the same pre-tokenizer
// steps llama.cpp's llama-vocab.cpp maps each name to).
#include <cstdint>

#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/gguf.h"

namespace saliq {
namespace {

using nlohmann::json;

const char* const kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

json byte_level(bool use_regex) {
    return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

enum class Pre { kGpt2, kDigitsGpt2, kLlama3 };

// llama.cpp's names, grouped by the regexes it gives them.
bool pre_of(const std::string& name, Pre& out) {
    if (name == "default" || name == "gpt2" || name == "mpt" || name == "olmo" || name == "jais") {
        out = Pre::kGpt2;
        return true;
    }
    if (name == "smollm" || name == "starcoder" || name == "refact" || name == "command-r" || name == "codeshell" ||
        name == "exaone" || name == "minerva-7b") {
        out = Pre::kDigitsGpt2;  // each digit alone, then GPT-2's regex
        return true;
    }
    if (name == "llama3" || name == "llama-v3" || name == "llama-bpe" || name == "falcon3" || name == "smaug-bpe" ||
        name == "dbrx" || name == "pixtral") {
        out = Pre::kLlama3;
        return true;
    }
    return false;
}

json pre_tokenizer(Pre pre) {
    switch (pre) {
        case Pre::kGpt2: return byte_level(true);
        case Pre::kDigitsGpt2:
            return {{"type", "Sequence"},
                    {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)})}};
        case Pre::kLlama3:
            return {{"type", "Sequence"},
                    {"pretokenizers",
                     json::array({{{"type", "Split"},
                                   {"pattern", {{"Regex", kLlama3Regex}}},
                                   {"behavior", "Isolated"},
                                   {"invert", false}},
                                  byte_level(false)})}};
    }
    return json();
}

const json& array_value(const GgufReader& r, const std::string& key, bool required) {
    static const json empty = json::array();
    const GgufValue* v = r.find_value(key);
    if (v == nullptr) {
        if (required) throw FormatError(r.path(), "GGUF metadata '" + key + "' is missing");
        return empty;
    }
    if (!v->value.is_array()) throw FormatError(r.path(), "GGUF metadata '" + key + "' is not an array");
    return v->value;
}

std::string string_value(const GgufReader& r, const std::string& key) {
    const GgufValue* v = r.find_value(key);
    return v != nullptr && v->value.is_string() ? v->value.get<std::string>() : std::string();
}

// llama.cpp reads token types as int32: a float (3.9) or a wider integer (2^32 + 3) would be narrowed to another type.
int token_type(const GgufReader& r, const json& type, size_t id) {
    const bool fits =
        type.is_number_integer() &&
        (type.is_number_unsigned() ? type.get<uint64_t>() <= INT32_MAX
                                   : type.get<int64_t>() >= INT32_MIN && type.get<int64_t>() <= INT32_MAX);
    if (!fits)
        throw FormatError(r.path(), "tokenizer.ggml.token_type of token " + std::to_string(id) + " is " + type.dump() +
                                        ", not an int32 token type");
    return type.get<int>();
}

int64_t id_value(const GgufReader& r, const std::string& key) {
    const GgufValue* v = r.find_value(key);
    return v != nullptr && v->value.is_number_integer() ? v->value.get<int64_t>() : -1;
}

}  // namespace

json gguf_tokenizer_json_checked(const GgufReader& r);
json gguf_tokenizer_config_checked(const GgufReader& r);

// Arrays of the wrong element type (json's type_error) are a malformed file, not a crash.
json gguf_tokenizer_json(const GgufReader& r) {
    try {
        return gguf_tokenizer_json_checked(r);
    } catch (const json::exception& e) {
        throw FormatError(r.path(), std::string("malformed tokenizer metadata: ") + e.what());
    }
}

json gguf_tokenizer_config(const GgufReader& r) {
    try {
        return gguf_tokenizer_config_checked(r);
    } catch (const json::exception& e) {
        throw FormatError(r.path(), std::string("malformed tokenizer metadata: ") + e.what());
    }
}

json gguf_tokenizer_json_checked(const GgufReader& r) {
    const std::string model = string_value(r, "tokenizer.ggml.model");
    if (model != "gpt2")
        throw ConfigError(r.path() + ": its vocabulary is tokenizer.ggml.model '" + model +
                          "'; saliq reads GGUF byte-level BPE vocabularies ('gpt2'); for a SentencePiece one pass "
                          "--tokenizer with the model's tokenizer.model");
    std::string pre_name = string_value(r, "tokenizer.ggml.pre");
    if (pre_name.empty()) pre_name = "default";
    Pre pre;
    if (!pre_of(pre_name, pre))
        throw ConfigError(r.path() + ": tokenizer.ggml.pre '" + pre_name +
                          "' is not a pre-tokenizer saliq knows (gpt2, smollm and its group, llama-bpe and its group); "
                          "convert the model's tokenizer.json instead");
    const json& tokens = array_value(r, "tokenizer.ggml.tokens", true);
    const json& types = array_value(r, "tokenizer.ggml.token_type", false);
    const json& merges = array_value(r, "tokenizer.ggml.merges", true);
    if (!types.empty() && types.size() != tokens.size())
        throw FormatError(r.path(), "tokenizer.ggml.token_type and tokenizer.ggml.tokens differ in length");
    json vocab = json::object(), added = json::array();
    for (size_t id = 0; id < tokens.size(); ++id) {
        if (!tokens[id].is_string()) throw FormatError(r.path(), "tokenizer.ggml.tokens holds a non-string");
        const std::string text = tokens[id].get<std::string>();
        // One id a string, as llama.cpp requires (it stops on a vocabulary with a string listed twice).
        if (vocab.contains(text))
            throw FormatError(r.path(), "tokenizer.ggml.tokens lists '" + text + "' twice (ids " +
                                            vocab[text].dump() + " and " + std::to_string(id) + ")");
        vocab[text] = id;
        const int type = types.empty() ? 1 : token_type(r, types[id], id);
        if (type == 3 || type == 4)  // control, user defined: matched whole in the text, as llama.cpp does
            added.push_back({{"id", id}, {"content", text}, {"single_word", false}, {"lstrip", false},
                             {"rstrip", false}, {"normalized", type == 4}, {"special", type == 3}});
    }
    return {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer", pre_tokenizer(pre)},
            {"post_processor", nullptr},
            {"decoder", byte_level(true)},
            {"model",
             {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
              {"ignore_merges", pre == Pre::kLlama3}, {"vocab", vocab}, {"merges", merges}}}};
}

json gguf_tokenizer_config_checked(const GgufReader& r) {
    const json& tokens = array_value(r, "tokenizer.ggml.tokens", true);
    auto token = [&](const std::string& key) -> json {
        const int64_t id = id_value(r, key);
        if (id < 0 || id >= static_cast<int64_t>(tokens.size())) return nullptr;
        return tokens[static_cast<size_t>(id)];
    };
    Pre pre = Pre::kGpt2;
    pre_of(string_value(r, "tokenizer.ggml.pre"), pre);
    const GgufValue* add_bos = r.find_value("tokenizer.ggml.add_bos_token");
    // llama.cpp's default where the file is silent: BOS for the LLaMA-3 family only.
    const bool bos = add_bos != nullptr && add_bos->value.is_boolean() ? add_bos->value.get<bool>() : pre == Pre::kLlama3;
    json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                   {"bos_token", token("tokenizer.ggml.bos_token_id")},
                   {"eos_token", token("tokenizer.ggml.eos_token_id")},
                   {"unk_token", token("tokenizer.ggml.unknown_token_id")},
                   {"pad_token", token("tokenizer.ggml.padding_token_id")},
                   {"add_bos_token", bos},
                   {"add_eos_token", false},
                   {"clean_up_tokenization_spaces", false}};
    const std::string chat = string_value(r, "tokenizer.chat_template");
    if (!chat.empty()) config["chat_template"] = chat;
    return config;
}

std::string gguf_pre_name(const json& pre) {
    if (pre == pre_tokenizer(Pre::kGpt2)) return "gpt2";
    if (pre == pre_tokenizer(Pre::kDigitsGpt2)) return "smollm";
    // LLaMA-3's own tokenizer.json spells the same steps; compare what decides the splits.
    if (pre.is_object() && pre.value("type", std::string()) == "Sequence" && pre.contains("pretokenizers") &&
        pre["pretokenizers"].is_array() && pre["pretokenizers"].size() == 2) {
        const json& split = pre["pretokenizers"][0];
        const json& bytes = pre["pretokenizers"][1];
        if (split.value("type", std::string()) == "Split" && split.contains("pattern") &&
            split["pattern"].is_object() && split["pattern"].value("Regex", std::string()) == kLlama3Regex &&
            bytes.value("type", std::string()) == "ByteLevel" && !bytes.value("use_regex", true))
            return "llama-bpe";
        if (split.value("type", std::string()) == "Digits" && split.value("individual_digits", false) &&
            bytes.value("type", std::string()) == "ByteLevel" && bytes.value("use_regex", true))
            return "smollm";
    }
    if (pre.is_object() && pre.value("type", std::string()) == "ByteLevel" && pre.value("use_regex", true)) return "gpt2";
    return "";
}

}  // namespace saliq
