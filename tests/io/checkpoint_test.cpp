#include "saliq/checkpoint.h"

#include <limits>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "model_fixture.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/safetensors.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::TempDir;

using test::error_of;

void write_config(const std::string& dir, const nlohmann::json& json) {
    test::write_bytes(dir + "/config.json", json.dump());
}

TEST(Llama2c, ReadsStories260KHeader) {
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    EXPECT_EQ(ckpt.format, "llama2c");
    EXPECT_EQ(ckpt.config.hidden_size, 64);
    EXPECT_EQ(ckpt.config.intermediate_size, 172);
    EXPECT_EQ(ckpt.config.n_layers, 5);
    EXPECT_EQ(ckpt.config.n_heads, 8);
    EXPECT_EQ(ckpt.config.n_kv_heads, 4);
    EXPECT_EQ(ckpt.config.vocab_size, 512);
    EXPECT_EQ(ckpt.config.max_position_embeddings, 512);
    EXPECT_TRUE(ckpt.config.tie_word_embeddings);
    for (const auto& name : llama_tensor_names(ckpt.config)) EXPECT_TRUE(ckpt.tensors->has(name)) << name;
    EXPECT_EQ(ckpt.tensors->get("model.layers.4.mlp.down_proj.weight").sizes().vec(), (std::vector<int64_t>{64, 172}));
}

TEST(Llama2c, TruncatedFileIsRefused) {
    TempDir dir;
    const std::string bytes = test::read_bytes(test::stories_bin());
    test::write_bytes(dir.file("cut.bin"), bytes.substr(0, bytes.size() - 100));
    const std::string message = error_of([&] { read_llama2c(dir.file("cut.bin")); });
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
    test::write_bytes(dir.file("tiny.bin"), "abc");
    EXPECT_NE(error_of([&] { read_llama2c(dir.file("tiny.bin")); }).find("too short"), std::string::npos);
}

TEST(Llama2c, BadHeaderIsRefused) {
    TempDir dir;
    std::string bytes = test::read_bytes(test::stories_bin());
    int32_t heads = 7;  // does not divide dim 64
    std::memcpy(&bytes[12], &heads, 4);
    test::write_bytes(dir.file("bad.bin"), bytes);
    const std::string message = error_of([&] { read_llama2c(dir.file("bad.bin")); });
    EXPECT_NE(message.find("not divisible"), std::string::npos) << message;
}

TEST(Rotary, PermutationRoundTripsAndMovesPairsToHalves) {
    at::Tensor w = at::arange(4 * 8 * 3, at::kFloat).reshape({4 * 8, 3});  // 4 heads of 8 rows
    at::Tensor hf = permute_rotary_rows_to_hf(w, 4);
    EXPECT_TRUE(at::equal(permute_rotary_rows_to_meta(hf, 4), w));
    // Head 0: Meta rows (0,1) are a rotation pair; in HF order they become rows 0 and 4 (= 0 + d/2).
    EXPECT_TRUE(at::equal(hf[0], w[0]));
    EXPECT_TRUE(at::equal(hf[4], w[1]));
    EXPECT_TRUE(at::equal(hf[1], w[2]));
    EXPECT_TRUE(at::equal(hf[8], w[8]));
}

TEST(HfFolder, WriteThenLoadRoundTrips) {
    TempDir dir;
    const LlamaConfig c = test::tiny_config();
    auto weights = test::random_weights(c);
    auto source = make_memory_source(weights, "mem");
    write_hf_folder(dir.file("m"), c, *source, "", false);
    Checkpoint ckpt = load_checkpoint(dir.file("m"));
    EXPECT_EQ(ckpt.format, "hf");
    EXPECT_EQ(ckpt.config.n_kv_heads, 2);
    EXPECT_EQ(ckpt.config.head_dim, 8);
    for (const auto& [name, t] : weights) EXPECT_TRUE(at::equal(ckpt.tensors->get(name), t)) << name;
}

TEST(HfFolder, RefusesNonEmptyOutputWithoutForce) {
    TempDir dir;
    const LlamaConfig c = test::tiny_config();
    auto source = make_memory_source(test::random_weights(c), "mem");
    write_hf_folder(dir.file("m"), c, *source, "", false);
    EXPECT_THROW(write_hf_folder(dir.file("m"), c, *source, "", false), ConfigError);
    write_hf_folder(dir.file("m"), c, *source, "", true);
    EXPECT_TRUE(path_exists(dir.file("m/model.safetensors")));
}

TEST(HfFolder, ShardedIndexIsFollowed) {
    TempDir dir;
    const LlamaConfig c = test::tiny_config();
    auto weights = test::random_weights(c);
    NamedTensors first, second;
    nlohmann::json map = nlohmann::json::object();
    for (const auto& [name, t] : weights) {
        const bool a = name.find("layers.1.") == std::string::npos;
        (a ? first : second).emplace_back(name, t);
        map[name] = a ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    write_safetensors(dir.file("model-00001-of-00002.safetensors"), first);
    write_safetensors(dir.file("model-00002-of-00002.safetensors"), second);
    test::write_bytes(dir.file("model.safetensors.index.json"),
                      nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump());
    write_config(dir.path(), llama_config_to_json(c));
    Checkpoint ckpt = load_checkpoint(dir.path());
    for (const auto& [name, t] : weights) EXPECT_TRUE(at::equal(ckpt.tensors->get(name), t)) << name;
}

// Every tensor of a shard is where weight_map says: a copy in a second shard or one the map does not list was
// silently ignored; a shard name is one file of the folder.
TEST(HfFolder, ShardTensorsTheIndexDoesNotPlaceAreRefused) {
    TempDir dir;
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c);
    write_config(dir.path(), llama_config_to_json(c));
    auto message_for = [&](const NamedTensors& extra_in_second, const std::string& second_name) {
        NamedTensors first, second = extra_in_second;
        nlohmann::json map = nlohmann::json::object();
        for (const auto& [name, t] : weights) {
            const bool a = name.find("layers.1.") == std::string::npos;
            (a ? first : second).emplace_back(name, t);
            map[name] = a ? "model-00001-of-00002.safetensors" : second_name;
        }
        write_safetensors(dir.file("model-00001-of-00002.safetensors"), first);
        write_safetensors(dir.file("model-00002-of-00002.safetensors"), second);
        test::write_bytes(dir.file("model.safetensors.index.json"), nlohmann::json{{"weight_map", map}}.dump());
        return error_of([&] { load_checkpoint(dir.path()); });
    };
    const std::string second = "model-00002-of-00002.safetensors";
    EXPECT_EQ(message_for({}, second), "<no error>");
    std::string message = message_for({{"model.norm.weight", weights.at("model.norm.weight")}}, second);
    EXPECT_NE(message.find("'model.norm.weight' is in both model-00002-of-00002.safetensors and "
                           "model-00001-of-00002.safetensors"),
              std::string::npos)
        << message;
    message = message_for({{"model.extra.weight", at::zeros({2})}}, second);
    EXPECT_NE(message.find("holds 'model.extra.weight', which weight_map does not list"), std::string::npos) << message;
    for (const std::string& bad : {std::string(".."), std::string("sub\\model-00002-of-00002.safetensors")}) {
        message = message_for({}, bad);
        EXPECT_NE(message.find("shard name '" + bad + "' must be a file in the same folder"), std::string::npos)
            << message;
    }
}

TEST(HfFolder, IndexNamingAMissingShardIsRefused) {
    TempDir dir;
    write_config(dir.path(), llama_config_to_json(test::tiny_config()));
    test::write_bytes(dir.file("model.safetensors.index.json"),
                      R"({"weight_map": {"model.norm.weight": "model-00009.safetensors"}})");
    const std::string message = error_of([&] { load_checkpoint(dir.path()); });
    EXPECT_NE(message.find("model-00009.safetensors"), std::string::npos) << message;
}

TEST(HfConfig, InconsistentConfigsAreRefused) {
    nlohmann::json base = llama_config_to_json(test::tiny_config());
    base.erase("head_dim");
    auto message_for = [&](const std::function<void(nlohmann::json&)>& edit) {
        nlohmann::json j = base;
        edit(j);
        return error_of([&] { llama_config_from_json(j, "cfg.json"); });
    };
    EXPECT_NE(message_for([](auto& j) { j["num_attention_heads"] = 5; }).find("not divisible"), std::string::npos);
    EXPECT_NE(message_for([](auto& j) { j["num_key_value_heads"] = 3; }).find("not a multiple"), std::string::npos);
    EXPECT_NE(message_for([](auto& j) { j.erase("hidden_size"); }).find("hidden_size"), std::string::npos);
    EXPECT_NE(message_for([](auto& j) { j["vocab_size"] = "many"; }).find("integer"), std::string::npos);
    EXPECT_NE(message_for([](auto& j) { j["model_type"] = "gpt2"; }).find("gpt2"), std::string::npos);
    EXPECT_NE(message_for([](auto& j) { j["num_hidden_layers"] = 0; }).find("positive"), std::string::npos);
    EXPECT_NE(message_for([](auto& j) { j["rope_scaling"] = {{"type", "linear"}}; }).find("factor"),
              std::string::npos);
    EXPECT_EQ(message_for([](auto&) {}), "<no error>");
}

// Values a lenient read would take as something else: a list where one id is meant, an id below zero, an infinite
// epsilon, two dtype spellings that disagree, a context length that is not an integer, an unsigned past INT64_MAX.
TEST(HfConfig, ValuesThatWouldBeMisreadAreRefused) {
    const nlohmann::json base = llama_config_to_json(test::tiny_config());
    auto message_for = [&](const std::function<void(nlohmann::json&)>& edit) {
        nlohmann::json j = base;
        edit(j);
        return error_of([&] { llama_config_from_json(j, "cfg.json"); });
    };
    auto refused = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& words) {
        const std::string message = message_for(edit);
        return message.find("cfg.json") != std::string::npos && message.find(words) != std::string::npos;
    };
    EXPECT_TRUE(refused([](auto& j) { j["num_key_value_heads"] = {2, 4}; }, "num_key_value_heads"));
    EXPECT_EQ(message_for([](auto& j) { j["eos_token_id"] = {2, 3}; }), "<no error>");  // LLaMA-3.1 lists several
    EXPECT_TRUE(refused([](auto& j) { j["eos_token_id"] = {"2"}; }, "eos_token_id"));
    EXPECT_TRUE(refused([](auto& j) { j["bos_token_id"] = -1; }, "bos/eos"));
    EXPECT_TRUE(refused([](auto& j) { j["eos_token_id"] = -5; }, "bos/eos"));
    EXPECT_TRUE(refused([](auto& j) { j["rms_norm_eps"] = std::numeric_limits<double>::infinity(); }, "rms_norm_eps"));
    EXPECT_TRUE(refused([](auto& j) { j["torch_dtype"] = "float16"; j["dtype"] = "bfloat16"; }, "disagree"));
    EXPECT_EQ(message_for([](auto& j) { j["torch_dtype"] = "bfloat16"; j["dtype"] = "bfloat16"; }), "<no error>");
    EXPECT_TRUE(refused([](auto& j) { j["vocab_size"] = 18446744073709551615ULL; }, "vocab_size"));
    auto llama3 = [](nlohmann::json& j) {
        j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
    };
    EXPECT_EQ(message_for(llama3), "<no error>");
    EXPECT_TRUE(refused([&](auto& j) { llama3(j); j["original_max_position_embeddings"] = 8192.5; },
                        "original_max_position_embeddings"));
    EXPECT_TRUE(refused([&](auto& j) { llama3(j); j["original_max_position_embeddings"] = "8192"; },
                        "original_max_position_embeddings"));
}

TEST(HfFolder, MissingPiecesAreNamed) {
    TempDir dir;
    EXPECT_NE(error_of([&] { load_checkpoint(dir.path()); }).find("config.json"), std::string::npos);
    write_config(dir.path(), llama_config_to_json(test::tiny_config()));
    EXPECT_NE(error_of([&] { load_checkpoint(dir.path()); }).find("no model.safetensors"), std::string::npos);
    test::write_bytes(dir.file("config.json"), "{ not json");
    EXPECT_NE(error_of([&] { load_checkpoint(dir.path()); }).find("not valid JSON"), std::string::npos);
    EXPECT_THROW(load_checkpoint(dir.file("nothing-here")), IoError);
}

}  // namespace
}  // namespace saliq
