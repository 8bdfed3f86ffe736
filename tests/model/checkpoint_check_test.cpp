// Folders whose claims disagree with their tensors are refused on load, each with a message naming the file and the
// tensor: every test damages one thing in an otherwise valid packed folder, adapter, Fisher file or resume state.
#include <gtest/gtest.h>

#include <chrono>
#include <limits>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "model_fixture.h"
#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/gptq_pack.h"
#include "saliq/inspect.h"
#include "saliq/model.h"
#include "saliq/quantize.h"
#include "saliq/quantizer.h"
#include "saliq/safetensors.h"
#include "saliq/saliency.h"
#include "test_utils.h"

namespace saliq {
namespace {

using nlohmann::json;

// A valid folder of the tiny model: RTN W2 g8 packed (v2 zeros, or GPTQ's symmetric ones), optionally with LoRA
// adapters of rank 2 on every linear. Tests change one piece, write it and load it.
struct Folder {
    LlamaConfig config = test::tiny_config();
    std::map<std::string, at::Tensor> weights = test::random_weights(config, 3);
    json config_json = llama_config_to_json(config);
    std::map<std::string, at::Tensor> model, adapter;
    json adapter_config;

    explicit Folder(bool packed = true, bool symmetric = false) {
        for (const auto& [name, w] : weights) {
            if (!packed || name.find("_proj.weight") == std::string::npos) {
                model[name] = w;
                continue;
            }
            const std::string base = name.substr(0, name.size() - 7);
            const GptqTensors t = gptq_pack(quantize_rtn(w, test::rtn_w2g8(symmetric).spec), /*zeros_v2=*/!symmetric);
            model[base + ".qweight"] = t.qweight;
            model[base + ".qzeros"] = t.qzeros;
            model[base + ".scales"] = t.scales;
            model[base + ".g_idx"] = t.g_idx;
        }
        if (packed) config_json["quantization_config"] = gptq_quantization_config(test::rtn_w2g8(symmetric), symmetric);
    }
    void add_adapter() {
        for (int64_t layer = 0; layer < config.n_layers; ++layer)
            for (int i = 0; i < 7; ++i) {
                const std::string name = hf_names::linear_name(layer, i);
                const at::Tensor w = weights.at(name + ".weight");
                adapter[hf_names::lora_key(name, 'A')] = 0.1 * at::randn({2, w.size(1)});
                adapter[hf_names::lora_key(name, 'B')] = 0.1 * at::randn({w.size(0), 2});
            }
        adapter_config = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 2},
                          {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"}}};
    }
    std::string write(const test::TempDir& dir) const {
        const std::string path = dir.file("model");
        remove_tree(path);
        make_directories(path);
        write_json_atomic(path + "/config.json", config_json);
        write_safetensors(path + "/model.safetensors", NamedTensors(model.begin(), model.end()));
        if (!adapter_config.is_null()) write_json_atomic(path + "/adapter_config.json", adapter_config);
        if (!adapter.empty())
            write_safetensors(path + "/adapter_model.safetensors", NamedTensors(adapter.begin(), adapter.end()));
        return path;
    }
};

const std::string kQ = "model.layers.1.self_attn.q_proj";

// Loads the folder as `saliq eval` does; returns the error message, or "" when it loads and runs.
std::string load_error(const Folder& f) {
    test::TempDir dir;
    const std::string path = f.write(dir);
    try {
        const auto model = LlamaModel::load(load_checkpoint(path), ModelOptions{});
        (void)model->forward(at::arange(5, at::kLong).view({1, 5}));
        return "";
    } catch (const FormatError& e) {
        return e.what();
    }
}

#define EXPECT_REFUSED(folder, ...)                                              \
    do {                                                                         \
        const std::string message = load_error(folder);                          \
        ASSERT_FALSE(message.empty()) << "the damaged folder loaded";            \
        for (const std::string& part : std::vector<std::string>{__VA_ARGS__})     \
            EXPECT_NE(message.find(part), std::string::npos) << message;       \
    } while (0)

TEST(CheckpointCheck, ValidFoldersLoad) {
    EXPECT_EQ(load_error(Folder()), "");
    EXPECT_EQ(load_error(Folder(true, true)), "");
    Folder with_adapter;
    with_adapter.add_adapter();
    EXPECT_EQ(load_error(with_adapter), "");
    Folder dense(false);
    dense.add_adapter();
    EXPECT_EQ(load_error(dense), "");
}

TEST(CheckpointCheck, BitsThatDisagreeWithQweightAreRefused) {
    Folder f;
    f.config_json["quantization_config"]["bits"] = 4;
    EXPECT_REFUSED(f, "model.safetensors", ".qweight", "bits 4");
}

TEST(CheckpointCheck, GroupSizeThatDisagreesWithTheScalesIsRefused) {
    Folder f;
    f.config_json["quantization_config"]["group_size"] = 16;  // the tensors hold g8 groups
    EXPECT_REFUSED(f, ".qzeros", "group_size 16 implies");
}

// bits and group_size are compared in their stored width (4294967300 was narrowed to 4, an unsigned 2^64 - 1 read as
// -1); saliq_binary's group_size is checked like GPTQ's (0 divided by zero when the groups were counted).
TEST(CheckpointCheck, QuantizationConfigIntegersOutOfRangeAreRefused) {
    auto message_for = [](const json& q) { return test::error_of([&] { parse_quantization_config(q, "config.json"); }); };
    const json gptq = {{"quant_method", "gptq"}, {"bits", 2}, {"group_size", 8}};
    EXPECT_EQ(message_for(gptq), "<no error>");
    for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{
             {"bits", 4294967300ULL}, {"bits", 4.0}, {"group_size", 18446744073709551615ULL},
             {"group_size", std::numeric_limits<int64_t>::max()}, {"group_size", 8.0}, {"group_size", 0}}) {
        json q = gptq;
        q[key] = value;
        const std::string message = message_for(q);
        EXPECT_NE(message.find("quantization_config." + key + " " + value.dump()), std::string::npos) << message;
    }
    const json binary = {{"quant_method", "saliq_binary"}, {"binarizer", "db-llm"}, {"group_size", 8}};
    EXPECT_EQ(parse_quantization_config(binary, "config.json").group_size, 8);
    for (const json& bad : {json(0), json(-2), json(8.5), json("8")}) {
        json q = binary;
        q["group_size"] = bad;
        const std::string message = message_for(q);
        EXPECT_NE(message.find("quantization_config.group_size " + bad.dump()), std::string::npos) << message;
    }
}

TEST(CheckpointCheck, SymClaimedOverAsymmetricZerosIsRefused) {
    Folder f;
    f.config_json["quantization_config"]["sym"] = true;
    EXPECT_REFUSED(f, "model.layers.0.self_attn.q_proj", "sym is true");
}

TEST(CheckpointCheck, CheckpointFormatThatDisagreesWithSymmetricZerosIsRefused) {
    Folder f(true, true);  // v1 zeros (z - 1 stored)
    f.config_json["quantization_config"]["checkpoint_format"] = "gptq_v2";
    EXPECT_REFUSED(f, "sym is true");
}

TEST(CheckpointCheck, ReorderedGroupsWithoutDescActAreRefused) {
    Folder f;
    f.model[kQ + ".g_idx"] = f.model[kQ + ".g_idx"].flip(0).contiguous();
    EXPECT_REFUSED(f, kQ.c_str(), "desc_act is false");
    f.config_json["quantization_config"]["desc_act"] = true;  // a reordering with whole groups is what desc_act means
    EXPECT_EQ(load_error(f), "");
    f.model[kQ + ".g_idx"] = at::zeros_like(f.model[kQ + ".g_idx"]);
    EXPECT_REFUSED(f, kQ.c_str(), "every group");
}

TEST(CheckpointCheck, PackedTensorsOfTheWrongDtypeAreRefused) {
    Folder f;
    f.model[kQ + ".qweight"] = f.model[kQ + ".qweight"].to(at::kFloat);
    EXPECT_REFUSED(f, (kQ + ".qweight").c_str(), "Float", "Int");
}

TEST(CheckpointCheck, ALinearLeftDenseInAPackedFolderIsRefused) {
    Folder f;
    for (const char* s : {".qweight", ".qzeros", ".scales", ".g_idx"}) f.model.erase(kQ + s);
    f.model[kQ + ".weight"] = f.weights.at(kQ + ".weight");
    EXPECT_REFUSED(f, kQ.c_str(), "not packed");
    f.model.erase(kQ + ".weight");
    EXPECT_REFUSED(f, kQ.c_str(), "not packed");
}

TEST(CheckpointCheck, ALinearBothDenseAndPackedIsRefused) {
    Folder f;
    f.model[kQ + ".weight"] = f.weights.at(kQ + ".weight");
    EXPECT_REFUSED(f, kQ.c_str(), "both");
}

TEST(CheckpointCheck, StrayPackedTensorsAreRefused) {
    Folder f;
    f.model["model.layers.7.self_attn.q_proj.qweight"] = f.model[kQ + ".qweight"];
    EXPECT_REFUSED(f, "stray", "model.layers.7", "2-layer");
    Folder g;
    g.model[kQ + ".alpha1"] = g.model[kQ + ".scales"];  // a binarizer's tensor in a GPTQ folder
    EXPECT_REFUSED(g, "stray", ".alpha1");
}

TEST(CheckpointCheck, PackedTensorsWithoutQuantizationConfigAreRefused) {
    Folder f;
    f.config_json.erase("quantization_config");
    EXPECT_REFUSED(f, ".qweight", "no quantization_config");
}

TEST(CheckpointCheck, NonFiniteScalesAreRefused) {
    Folder f;
    at::Tensor s = f.model[kQ + ".scales"].clone();
    s.view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
    f.model[kQ + ".scales"] = s;
    EXPECT_REFUSED(f, kQ.c_str(), "NaN");
}

TEST(CheckpointCheck, MissingOrMisshapenDenseTensorsAreRefusedBeforeAnyBlockRuns) {
    Folder f(false);
    f.model.erase("model.layers.1.post_attention_layernorm.weight");
    EXPECT_REFUSED(f, "model.layers.1.post_attention_layernorm.weight", "missing");
    // Streaming evaluation reads blocks as it reaches them: the check runs at load all the same.
    test::TempDir dir;
    const std::string path = f.write(dir);
    ModelOptions streamed;
    streamed.stream_blocks = true;
    EXPECT_THROW(LlamaModel::load(load_checkpoint(path), streamed), FormatError);
}

TEST(CheckpointCheck, AdapterTensorsWithoutAConfigAreRefused) {
    Folder f;
    f.add_adapter();
    f.adapter_config = json();
    EXPECT_REFUSED(f, "adapter_model.safetensors", "without adapter_config.json");
}

TEST(CheckpointCheck, AnAdapterConfigWithoutTensorsIsRefused) {
    Folder f;
    f.add_adapter();
    f.adapter.clear();
    EXPECT_REFUSED(f, "adapter_config.json without adapter_model.safetensors");
}

TEST(CheckpointCheck, AdapterRankThatDisagreesWithTheTensorsIsRefused) {
    Folder f;
    f.add_adapter();
    f.adapter_config["r"] = 4;
    EXPECT_REFUSED(f, "adapter_model.safetensors", "lora_A", "r 4");
}

TEST(CheckpointCheck, ATargetedLinearWithoutItsBIsRefused) {
    Folder f;
    f.add_adapter();
    f.adapter.erase(hf_names::lora_key(kQ, 'B'));
    EXPECT_REFUSED(f, hf_names::lora_key(kQ, 'B').c_str(), "missing");
}

TEST(CheckpointCheck, AdapterTensorsOfUntargetedLinearsAreRefused) {
    Folder f;
    f.add_adapter();
    f.adapter_config["target_modules"] = {"q_proj", "v_proj"};
    EXPECT_REFUSED(f, "unknown tensor", "layers.0.mlp.down_proj");
    f.adapter_config["target_modules"] = "all-linear";
    f.adapter["base_model.model.lm_head.lora_A.weight"] = at::zeros({2, 32});
    EXPECT_REFUSED(f, "unknown tensor", "lm_head");
}

TEST(CheckpointCheck, AdapterTargetsNarrowedByPatternAndLayersAreHonoured) {
    Folder f;
    f.add_adapter();
    for (const auto& key : std::vector<std::string>(
             {hf_names::lora_key(hf_names::linear_name(0, 0), 'A'), hf_names::lora_key(hf_names::linear_name(0, 0), 'B')}))
        f.adapter.erase(key);
    f.adapter_config["layers_to_transform"] = {1};  // layer 0 has no q_proj adapter: only layer 1 is targeted
    EXPECT_REFUSED(f, "unknown tensor", "model.layers.0");
    f.adapter_config["layers_to_transform"] = nullptr;
    f.adapter_config["target_modules"] = ".*layers\\.1\\..*|.*layers\\.0\\.(?!self_attn\\.q_proj).*";
    EXPECT_EQ(load_error(f), "");
    f.adapter_config["layers_to_transform"] = {5};
    EXPECT_REFUSED(f, "layers_to_transform", "2-layer");
}

// A target_modules pattern is matched with saliq's budgeted matcher: one that backtracks exponentially (std::regex ran
// for hours on it) is refused at once, and syntax it lacks is named; the common patterns still select linears.
TEST(CheckpointCheck, AdapterPatternsAreMatchedWithinABudget) {
    Folder f;
    f.add_adapter();
    f.adapter_config["target_modules"] = ".*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)";
    EXPECT_EQ(load_error(f), "");
    f.adapter_config["target_modules"] = "model\\.layers\\.\\d+\\.self_attn\\.q_proj";
    EXPECT_REFUSED(f, "unknown tensor");  // only the q_proj adapters are targeted
    f.adapter_config["target_modules"] = "(m|m|.)*(m|m|.)*(m|m|.)*z";
    const auto start = std::chrono::steady_clock::now();
    EXPECT_REFUSED(f, "adapter_config.json", "target_modules", "backtracks too much");
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
    f.adapter_config["target_modules"] = "(?<=attn\\.)q_proj";
    EXPECT_REFUSED(f, "adapter_config.json", "target_modules", "lookbehind");
}

TEST(CheckpointCheck, AdapterFeaturesSaliqDoesNotApplyAreRefused) {
    Folder f;
    f.add_adapter();
    for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{
             {"rank_pattern", {{"q_proj", 4}}}, {"modules_to_save", {"lm_head"}}, {"bias", "all"}, {"use_dora", true}}) {
        Folder g = f;
        g.adapter_config[key] = value;
        EXPECT_REFUSED(g, "adapter_config.json");
    }
}

TEST(CheckpointCheck, FisherFilesForAnotherModelAreRefused) {
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c);
    test::TempDir dir;
    auto write = [&](const std::map<std::string, at::Tensor>& f) {
        write_safetensors(dir.file("fisher.safetensors"), NamedTensors(f.begin(), f.end()));
        return dir.file("fisher.safetensors");
    };
    std::map<std::string, at::Tensor> fisher;
    for (const auto& [name, w] : weights)
        if (name.find("_proj.weight") != std::string::npos) fisher[name] = at::rand_like(w);
    EXPECT_NO_THROW(check_fisher_file(write(fisher), c));
    auto missing = fisher;
    missing.erase(kQ + ".weight");
    EXPECT_THROW(check_fisher_file(write(missing), c), FormatError);
    auto wider = fisher;
    wider[kQ + ".weight"] = at::rand({32, 64});
    try {
        check_fisher_file(write(wider), c);
        FAIL() << "a Fisher tensor of another shape was taken";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find(kQ), std::string::npos) << e.what();
    }
    auto deeper = fisher;
    deeper["model.layers.2.mlp.up_proj.weight"] = at::rand({40, 32});
    EXPECT_THROW(check_fisher_file(write(deeper), c), FormatError);
    auto ints = fisher;
    ints[kQ + ".weight"] = at::ones({32, 32}, at::kInt);
    EXPECT_THROW(check_fisher_file(write(ints), c), FormatError);
}

// A finished block of an interrupted run, as GptqFolderWriter saved it.
BlockResult rtn_block(const std::map<std::string, at::Tensor>& weights, int64_t layer, const QuantSpec& spec) {
    BlockResult b;
    b.layer = layer;
    for (int i = 0; i < 7; ++i) {
        LinearResult lr;
        lr.name = hf_names::linear_name(layer, i);
        lr.q = quantize_rtn(weights.at(lr.name + ".weight"), spec);
        b.linears.push_back(lr);
    }
    return b;
}

TEST(CheckpointCheck, ResumedBlocksThatAreNotTheRunsAreRefused) {
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c);
    const Checkpoint source = test::memory_checkpoint(c, weights);
    const QuantizeOptions o = test::rtn_w2g8();
    test::TempDir dir;
    const std::string out = dir.file("out");
    {
        GptqFolderWriter writer(out, source, o, false);
        writer.prepare();
        writer.save(rtn_block(weights, 0, o.spec));
    }
    GptqFolderWriter resumed(out, source, o, false, /*resume=*/true);
    EXPECT_NO_THROW(resumed.load(0));
    // Block 0's file under block 1's name.
    copy_file(out + ".partial/block_0000.safetensors", out + ".partial/block_0001.safetensors");
    try {
        (void)resumed.load(1);
        FAIL() << "block 0 was resumed as block 1";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("block_0001"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("holds block 0"), std::string::npos) << e.what();
    }
    // A block of a wider model, saved under the run's name.
    LlamaConfig wide = c;
    wide.intermediate_size = 48;
    const auto wide_weights = test::random_weights(wide);
    {
        GptqFolderWriter other(dir.file("other"), test::memory_checkpoint(wide, wide_weights), o, false);
        other.prepare();
        other.save(rtn_block(wide_weights, 1, o.spec));
    }
    copy_file(dir.file("other.partial/block_0001.safetensors"), out + ".partial/block_0001.safetensors");
    try {
        (void)resumed.load(1);
        FAIL() << "a block of another model was resumed";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("gate_proj"), std::string::npos) << e.what();
    }
    // A block with adapters in a run whose method trains none.
    BlockResult with_lora = rtn_block(weights, 1, o.spec);
    for (auto& lr : with_lora.linears) {
        lr.lora_a = at::zeros({2, lr.q.in_features()});
        lr.lora_b = at::zeros({lr.q.out_features(), 2});
    }
    resumed.save(with_lora);
    EXPECT_THROW(resumed.load(1), FormatError);
}

// inspect sums a mixed folder's group widths into its histogram: a count or a width outside the layout is refused as
// loading refuses it, never counted.
TEST(CheckpointCheck, InspectRefusesGroupWidthsOutsideTheLayout) {
    Folder f(/*packed=*/false);
    const QuantSpec spec = test::rtn_w2g8().spec;
    for (int64_t layer = 0; layer < f.config.n_layers; ++layer)
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string name = hf_names::linear_name(layer, i);
            QuantizedTensor q = quantize_rtn(f.weights.at(name + ".weight"), spec);
            q.group_bits = at::full({q.scales.size(1)}, 2, at::kLong);
            const MixedTensors m = mixed_pack(q);
            f.model.erase(name + ".weight");
            f.model[name + ".qweight"] = m.qweight;
            f.model[name + ".scales"] = m.scales;
            f.model[name + ".zeros"] = m.zeros;
            f.model[name + ".group_bits"] = m.group_bits;
        }
    f.config_json["quantization_config"] = {
        {"quant_method", "saliq_mixed"}, {"bits", 2}, {"group_size", 8}, {"sym", false}, {"desc_act", false}};
    test::TempDir dir;
    EXPECT_DOUBLE_EQ(inspect_checkpoint(load_checkpoint(f.write(dir)))["quantization"]["code_bits_per_weight"], 2.0);
    const at::Tensor bits = f.model.at(kQ + ".group_bits");
    at::Tensor wide = bits.clone();
    wide[0] = 9;
    for (const at::Tensor& bad : {at::cat({bits, bits}), wide}) {
        Folder g = f;
        g.model[kQ + ".group_bits"] = bad;
        const std::string message = test::error_of([&] { inspect_checkpoint(load_checkpoint(g.write(dir))); });
        EXPECT_NE(message.find(kQ + ")"), std::string::npos) << message;
        EXPECT_NE(message.find("group_bits"), std::string::npos) << message;
    }
}

// A saved block's tensors and its saliq_block metadata, to damage and write back.
struct BlockFile {
    NamedTensors tensors;
    json meta;
    explicit BlockFile(const std::string& path) {
        const auto reader = SafetensorsReader::open(path);
        for (const auto& e : reader->entries()) tensors.emplace_back(e.name, reader->tensor(e.name).clone());
        meta = json::parse(reader->metadata().at("saliq_block"));
    }
    void write(const std::string& path) const { write_safetensors(path, tensors, {{"saliq_block", meta.dump()}}); }
};

// A mixed-precision block stores its linears' in and out, which size the unpacking: "in" 0 divided by zero with one
// group per row, 4e9 allocated 32 GB. They must be the model's shape before anything is unpacked.
TEST(CheckpointCheck, ResumedBlockShapesThatAreNotTheModelsAreRefusedBeforeUnpacking) {
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c);
    const Checkpoint source = test::memory_checkpoint(c, weights);
    QuantizeOptions o = test::rtn_w2g8();
    o.spec.group_size = -1;
    test::TempDir dir;
    const std::string out = dir.file("out"), path = out + ".partial/block_0000.safetensors";
    {
        GptqFolderWriter writer(out, source, o, false);
        writer.prepare();
        BlockResult b = rtn_block(weights, 0, o.spec);
        for (auto& lr : b.linears) lr.q.group_bits = at::full({1}, 2, at::kLong);
        writer.save(b);
    }
    GptqFolderWriter resumed(out, source, o, false, /*resume=*/true);
    EXPECT_NO_THROW(resumed.load(0));
    const BlockFile saved(path);
    for (const json& in : {json(0), json(-1), json(4000000000LL), json("32")}) {
        BlockFile damaged = saved;
        damaged.meta["linears"][0]["in"] = in;
        damaged.write(path);
        const std::string message = test::error_of([&] { (void)resumed.load(0); });
        EXPECT_NE(message.find("block_0000.safetensors"), std::string::npos) << message;
        EXPECT_NE(message.find(hf_names::linear_name(0, 0) + ": the block says out 32, in " + in.dump()),
                  std::string::npos)
            << message;
    }
}

// Each block file holds its own layer's tensors: one of another layer silently replaced that layer's when the folder
// was assembled.
TEST(CheckpointCheck, ABlockFileHoldingAnotherLayersTensorIsRefused) {
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c);
    const Checkpoint source = test::memory_checkpoint(c, weights);
    const QuantizeOptions o = test::rtn_w2g8();
    test::TempDir dir;
    const std::string out = dir.file("out"), path = out + ".partial/block_0001.safetensors";
    GptqFolderWriter writer(out, source, o, false);
    writer.prepare();
    writer.save(rtn_block(weights, 0, o.spec));
    writer.save(rtn_block(weights, 1, o.spec));
    BlockFile damaged(path);
    const std::string stolen = hf_names::linear_name(0, 0) + ".qweight";
    damaged.tensors.emplace_back(stolen, damaged.tensors.front().second);
    damaged.write(path);
    const std::string message = test::error_of([&] { writer.finish(QuantizeResult{}, {}); });
    EXPECT_NE(message.find("block_0001.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find("holds '" + stolen + "', which is not a tensor of block 1"), std::string::npos) << message;
}

TEST(CheckpointCheck, AbsurdConfigDimensionsAreRefusedWithTheLimit) {
    json config = llama_config_to_json(test::tiny_config());
    config["max_position_embeddings"] = 1LL << 40;
    try {
        (void)llama_config_from_json(config, "config.json");
        FAIL() << "a 2^40-position context was accepted";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("1099511627776"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("limit"), std::string::npos) << e.what();
    }
    config = llama_config_to_json(test::tiny_config());
    config["vocab_size"] = 1LL << 33;
    EXPECT_THROW(llama_config_from_json(config, "config.json"), FormatError);
}

TEST(CheckpointCheck, SafetensorsShapesWhoseByteSizeOverflowAreRefused) {
    test::TempDir dir;
    const std::string header = R"({"t": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})";
    std::string bytes(8, '\0');
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    test::write_bytes(dir.file("t.safetensors"), bytes + header);
    EXPECT_THROW(SafetensorsReader::open(dir.file("t.safetensors")), FormatError);
}

}  // namespace
}  // namespace saliq

namespace saliq {
namespace {

TEST(CheckpointCheck, AutoGptqQuantizeConfigBesideTheFolderIsRead) {
    Folder f;
    const json q = f.config_json["quantization_config"];
    f.config_json.erase("quantization_config");
    test::TempDir dir;
    const std::string path = f.write(dir);
    json older = q;
    older.erase("quant_method");  // AutoGPTQ's quantize_config.json has none
    write_json_atomic(path + "/quantize_config.json", older);
    const Checkpoint ckpt = load_checkpoint(path);
    EXPECT_EQ(ckpt.format, "gptq");
    EXPECT_EQ(ckpt.packed.bits, 2);
    EXPECT_NO_THROW(LlamaModel::load(ckpt, ModelOptions{}));
}

}  // namespace
}  // namespace saliq
