// RoPE settings in every spelling transformers writes (4: top-level rope_theta + rope_scaling; 5: rope_parameters),
// the scaled frequencies against the published formulas, and refusal of what saliq does not compute.
#include <cmath>
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model_fixture.h"
#include "saliq/error.h"
#include "saliq/llama_config.h"
#include "test_utils.h"

namespace saliq {
namespace {

// Verbatim from transformers 5.25: LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
// num_attention_heads=4, vocab_size=100, rope_theta=100000.0).to_json_string() (SmolLM2's theta: the setting a
// peer's folder carried when saliq read it as 10,000).
const char* kTransformers5Default = R"({
  "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "head_dim": 16,
  "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
  "max_position_embeddings": 2048, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 4,
  "num_hidden_layers": 2, "num_key_value_heads": 4, "pad_token_id": null, "pretraining_tp": 1, "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
  "tie_word_embeddings": false, "transformers_version": "5.25.0", "use_cache": true, "vocab_size": 100})";

// transformers 5.25, LLaMA-3.1's rope (rope_parameters with rope_type llama3), head_dim 16 here.
const char* kTransformers5Llama3 = R"({
  "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "head_dim": 16,
  "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 4,
  "num_hidden_layers": 2, "num_key_value_heads": 4, "pad_token_id": null, "pretraining_tp": 1, "rms_norm_eps": 1e-06,
  "rope_parameters": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_type": "llama3"},
  "tie_word_embeddings": false, "transformers_version": "5.25.0", "use_cache": true, "vocab_size": 100})";

// transformers 5.25 reading a transformers 4 config (rope_theta 20000, rope_scaling {"type": "linear", factor 2})
// writes it back with both spellings of the type.
const char* kTransformers5Linear = R"({
  "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128, "max_position_embeddings": 2048,
  "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 4,
  "rope_parameters": {"factor": 2.0, "rope_theta": 20000.0, "rope_type": "linear", "type": "linear"},
  "vocab_size": 100, "dtype": "bfloat16"})";

using test::error_of;

std::vector<double> plain_frequencies(double theta, int64_t d) {
    std::vector<double> f;
    for (int64_t i = 0; i < d / 2; ++i) f.push_back(std::pow(theta, -2.0 * i / d));
    return f;
}

TEST(RopeConfig, Transformers5RopeParametersAreRead) {
    const LlamaConfig c = llama_config_from_json(nlohmann::json::parse(kTransformers5Default), "config.json");
    EXPECT_EQ(c.rope_theta, 100000.0);
    EXPECT_TRUE(c.rope_scaling.is_default());
    const auto f = rope_inverse_frequencies(c), ref = plain_frequencies(100000.0, 16);
    for (size_t i = 0; i < f.size(); ++i) EXPECT_DOUBLE_EQ(f[i], ref[i]);

    const LlamaConfig lin = llama_config_from_json(nlohmann::json::parse(kTransformers5Linear), "config.json");
    EXPECT_EQ(lin.rope_theta, 20000.0);
    EXPECT_EQ(lin.rope_scaling.type, "linear");
    EXPECT_EQ(lin.torch_dtype, "bfloat16");  // transformers 5 says dtype, not torch_dtype
    const auto fl = rope_inverse_frequencies(lin), rl = plain_frequencies(20000.0, 16);
    for (size_t i = 0; i < fl.size(); ++i) EXPECT_DOUBLE_EQ(fl[i], rl[i] / 2.0);

    // transformers 4's spelling of the same settings reads the same.
    nlohmann::json v4 = nlohmann::json::parse(kTransformers5Linear);
    v4.erase("rope_parameters");
    v4["rope_theta"] = 20000.0;
    v4["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    const LlamaConfig lin4 = llama_config_from_json(v4, "config.json");
    EXPECT_EQ(lin4.rope_theta, 20000.0);
    EXPECT_EQ(rope_inverse_frequencies(lin4), fl);
}

// Meta's llama3 apply_scaling, written as the reference publishes it (wavelength bands).
TEST(RopeConfig, Llama3FrequenciesFollowMetasScaling) {
    const LlamaConfig c = llama_config_from_json(nlohmann::json::parse(kTransformers5Llama3), "config.json");
    ASSERT_EQ(c.rope_scaling.type, "llama3");
    EXPECT_EQ(c.rope_theta, 500000.0);
    EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
    const auto f = rope_inverse_frequencies(c), base = plain_frequencies(500000.0, 16);
    const double pi = 3.14159265358979323846, low_wavelen = 8192.0, high_wavelen = 8192.0 / 4.0;
    int kept = 0, divided = 0, blended = 0;
    for (size_t i = 0; i < f.size(); ++i) {
        const double wavelen = 2 * pi / base[i];
        double expected;
        if (wavelen < high_wavelen) {
            expected = base[i], ++kept;
        } else if (wavelen > low_wavelen) {
            expected = base[i] / 8.0, ++divided;
        } else {
            const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
            expected = (1 - smooth) * base[i] / 8.0 + smooth * base[i], ++blended;
        }
        EXPECT_NEAR(f[i], expected, 1e-15) << i;
    }
    EXPECT_GT(kept, 0);
    EXPECT_GT(divided, 0);
    EXPECT_GT(blended, 0);
    EXPECT_EQ(rope_attention_factor(c), 1.0);
}

// YaRN (transformers' _compute_yarn_parameters): the ramp between beta_fast and beta_slow rotations over the original
// context, and the attention factor 0.1 ln(s) + 1.
TEST(RopeConfig, YarnRampAndAttentionFactor) {
    nlohmann::json j = nlohmann::json::parse(kTransformers5Default);
    j["head_dim"] = 64;
    j["hidden_size"] = 256;
    j["max_position_embeddings"] = 16384;
    j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0},
                            {"original_max_position_embeddings", 4096}};
    const LlamaConfig c = llama_config_from_json(j, "config.json");
    EXPECT_NEAR(rope_attention_factor(c), 0.1 * std::log(4.0) + 1.0, 1e-15);
    const auto f = rope_inverse_frequencies(c), base = plain_frequencies(10000.0, 64);
    const double pi = 3.14159265358979323846;
    auto corr = [&](double rotations) { return 64.0 * std::log(4096.0 / (rotations * 2 * pi)) / (2 * std::log(10000.0)); };
    const double low = std::max(std::floor(corr(32.0)), 0.0), high = std::min(std::ceil(corr(1.0)), 63.0);
    for (size_t i = 0; i < f.size(); ++i) {
        const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);  // 0: original, 1: interpolated
        EXPECT_NEAR(f[i], base[i] * (1 - ramp) + base[i] / 4.0 * ramp, 1e-15) << i;
    }
    EXPECT_DOUBLE_EQ(f.front(), base.front());            // fastest rotation: extrapolated (kept)
    EXPECT_DOUBLE_EQ(f.back(), base.back() / 4.0);        // slowest: interpolated
    j["rope_parameters"]["mscale"] = 1.0;
    j["rope_parameters"]["mscale_all_dim"] = 1.0;
    EXPECT_DOUBLE_EQ(rope_attention_factor(llama_config_from_json(j, "config.json")), 1.0);
}

TEST(RopeConfig, ScaledSettingsRoundTripThroughConfigJson) {
    for (const char* text : {kTransformers5Default, kTransformers5Llama3, kTransformers5Linear}) {
        const LlamaConfig c = llama_config_from_json(nlohmann::json::parse(text), "config.json");
        const LlamaConfig back = llama_config_from_json(llama_config_to_json(c), "config.json");
        EXPECT_EQ(back.rope_theta, c.rope_theta);
        EXPECT_EQ(back.rope_scaling.type, c.rope_scaling.type);
        EXPECT_EQ(rope_inverse_frequencies(back), rope_inverse_frequencies(c));
    }
}

TEST(RopeConfig, SettingsSaliqDoesNotComputeAreRefused) {
    const nlohmann::json base = nlohmann::json::parse(kTransformers5Default);
    auto message_for = [&](const std::function<void(nlohmann::json&)>& edit) {
        nlohmann::json j = base;
        edit(j);
        return error_of([&] { llama_config_from_json(j, "config.json"); });
    };
    auto refused = [](const std::string& message, const std::string& word) {
        return message.find(word) != std::string::npos && message != "<no error>";
    };
    EXPECT_TRUE(refused(message_for([](auto& j) { j["rope_parameters"]["rope_type"] = "longrope"; }), "longrope"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["rope_parameters"]["mystery"] = 3; }), "mystery"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["rope_theta"] = 10000.0; }), "disagrees"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["rope_scaling"] = {{"rope_theta", 5.0}}; }), "disagree"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["rope_parameters"]["partial_rotary_factor"] = 0.5; }), "partial"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["partial_rotary_factor"] = 0.5; }), "partial"));
    EXPECT_TRUE(refused(message_for([](auto& j) {
                            j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}}};
                        }),
                        "per-layer"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["rope_parameters"]["rope_type"] = "linear"; }), "factor"));
    EXPECT_TRUE(refused(message_for([](auto& j) {
                            j["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0},
                                                    {"high_freq_factor", 1.0}};
                        }),
                        "low_freq_factor"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["rope_parameters"]["rope_theta"] = -1.0; }), "rope_theta"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["attention_bias"] = true; }), "attention_bias"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["mlp_bias"] = true; }), "mlp_bias"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["hidden_act"] = "gelu"; }), "gelu"));
    EXPECT_TRUE(refused(message_for([](auto& j) { j["rope_parameters"] = 7; }), "object"));
    EXPECT_EQ(message_for([](auto& j) { j["rope_scaling"] = nullptr; }), "<no error>");
    // dynamic NTK equals the default within max_position_embeddings, which is as far as saliq computes.
    const LlamaConfig dyn = llama_config_from_json(
        [&] {
            nlohmann::json j = base;
            j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}, {"rope_theta", 100000.0}};
            return j;
        }(),
        "config.json");
    const auto fd = rope_inverse_frequencies(dyn), rd = plain_frequencies(100000.0, 16);
    for (size_t i = 0; i < fd.size(); ++i) EXPECT_NEAR(fd[i], rd[i], 1e-14 * rd[i]) << i;
}

TEST(RopeConfig, SlidingWindowCapsTheUsableContext) {
    nlohmann::json j = nlohmann::json::parse(kTransformers5Default);
    j["model_type"] = "mistral";
    j["sliding_window"] = 512;
    const LlamaConfig c = llama_config_from_json(j, "config.json");
    EXPECT_EQ(usable_context(c), 512);
    EXPECT_EQ(llama_config_from_json(llama_config_to_json(c), "config.json").sliding_window, 512);
    j["sliding_window"] = nullptr;
    EXPECT_EQ(usable_context(llama_config_from_json(j, "config.json")), 2048);
}

}  // namespace
}  // namespace saliq
