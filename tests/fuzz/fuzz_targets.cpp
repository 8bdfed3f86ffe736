#include "fuzz_targets.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "model_fixture.h"
#include "temp_dir.h"
#include "quant/slim_bits.h"
#include "saliq/checkpoint.h"
#include "saliq/corpus.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/gguf.h"
#include "saliq/ggml_grid.h"
#include "saliq/gptq_pack.h"
#include "saliq/model.h"
#include "saliq/packed_matmul.h"
#include "saliq/quantize.h"
#include "saliq/quantizer.h"
#include "saliq/safetensors.h"
#include "saliq/saliency.h"
#include "saliq/split_regex.h"
#include "saliq/tokenizer.h"
#include "saliq/toml.h"
#include "saliq/unicode.h"
#include "saliq/zeroshot.h"

namespace saliq::fuzz {
namespace {

void write(const std::string& path, const uint8_t* data, size_t size) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

void write_text(const std::string& path, const std::string& text) {
    write(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

// The model every fixture is made of: one block, hidden 8, W2 g8 when packed, LoRA rank 2.
LlamaConfig tiny_config() {
    LlamaConfig c = test::tiny_config(/*tied=*/true);
    c.hidden_size = 8;
    c.intermediate_size = 16;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.head_dim = 4;
    c.vocab_size = 16;
    c.max_position_embeddings = 32;
    return c;
}

struct Fixture {
    std::string dir;
    LlamaConfig config = tiny_config();
    std::map<std::string, at::Tensor> weights;
    Checkpoint source;  // the FP model in memory (the resume targets' source)
    std::string dense_config, packed_config, mixed_config, adapter_config, ggml_config, ct_config;
    NamedTensors dense, packed, mixed, adapter, ggml, ct;
};

// A folder's tensors: every linear's weight replaced by the parts `pack` stores for it (named "<linear>" + suffix),
// the other tensors as they are.
using PackLinear = std::function<NamedTensors(const at::Tensor& weight)>;
NamedTensors packed_folder(const std::map<std::string, at::Tensor>& weights, const PackLinear& pack) {
    NamedTensors out;
    for (const auto& [name, w] : weights) {
        if (name.find("_proj.weight") == std::string::npos) {
            out.emplace_back(name, w);
            continue;
        }
        const std::string base = name.substr(0, name.size() - std::string(".weight").size());
        for (const auto& [suffix, t] : pack(w)) out.emplace_back(base + suffix, t);
    }
    return out;
}

// A saliq_ggml (quantize --grid q4_1) folder of the tiny model widened to 32/64 rows, so that every linear takes
// Q4_1's blocks of 32.
NamedTensors ggml_tensors(std::string& config_json) {
    LlamaConfig c = tiny_config();
    c.hidden_size = 32;
    c.head_dim = 16;
    c.intermediate_size = 64;
    QuantSpec spec;
    spec.grid = GgmlGrid::kQ4_1;
    nlohmann::json config = llama_config_to_json(c);
    config["quantization_config"] = {{"quant_method", "saliq_ggml"}, {"grid", "q4_1"}};
    config_json = config.dump(2);
    return packed_folder(test::random_weights(c, 7), [&spec](const at::Tensor& w) {
        return NamedTensors{{".qweight", quantize_rtn(w, spec).ggml_blocks},
                            {".ggml_type", at::full({1}, 3, at::kInt)}};
    });
}

NamedTensors packed_tensors(const Fixture& f) {
    return packed_folder(f.weights, [](const at::Tensor& w) {
        const GptqTensors t = gptq_pack(quantize_rtn(w, test::rtn_w2g8().spec), /*zeros_v2=*/true);
        return NamedTensors{{".qweight", t.qweight}, {".qzeros", t.qzeros}, {".scales", t.scales}, {".g_idx", t.g_idx}};
    });
}

// compressed-tensors' pack-quantized layout (llm-compressor's output) of the same W2 g8 linears.
NamedTensors ct_tensors(const Fixture& f) {
    return packed_folder(f.weights, [](const at::Tensor& w) {
        const CompressedTensorsLinear t = compressed_tensors_linear(quantize_rtn(w, test::rtn_w2g8().spec), "fuzz");
        return NamedTensors{{".weight_packed", t.weight_packed},
                            {".weight_scale", t.weight_scale},
                            {".weight_zero_point", t.weight_zero_point},
                            {".weight_shape", t.weight_shape}};
    });
}

nlohmann::json ct_quantization_config() {
    const nlohmann::json weights = {{"num_bits", 2},          {"type", "int"},     {"symmetric", false},
                                    {"strategy", "group"},    {"group_size", 8},   {"dynamic", false},
                                    {"actorder", "static"}};
    return {{"quant_method", "compressed-tensors"},
            {"format", "pack-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", nullptr},
                {"output_activations", nullptr}}}}},
            {"ignore", {"lm_head"}},
            {"kv_cache_scheme", nullptr},
            {"sparsity_config", nlohmann::json::object()}};
}

// The saliq_mixed layout at an average of 2 bits, groups of 4: widths 1 and 3 (and 2 and 2) side by side.
NamedTensors mixed_tensors(const Fixture& f) {
    QuantSpec spec = test::rtn_w2g8().spec;
    spec.group_size = 4;
    return packed_folder(f.weights, [&spec](const at::Tensor& w) {
        QuantizedTensor q = quantize_rtn(w, spec);
        const int64_t G = spec.n_groups(w.size(1));
        q.group_bits = at::full({G}, 2, at::kLong);
        q.group_bits[0] = 1;
        q.group_bits[1] = 3;
        q.codes.narrow(1, 0, 4).clamp_max_(1);
        const MixedTensors m = mixed_pack(q);
        return NamedTensors{{".qweight", m.qweight}, {".scales", m.scales}, {".zeros", m.zeros},
                            {".group_bits", m.group_bits}};
    });
}

NamedTensors adapter_tensors(const Fixture& f) {
    NamedTensors out;
    for (int i = 0; i < 7; ++i) {
        const std::string name = hf_names::linear_name(0, i);
        const at::Tensor w = f.weights.at(name + ".weight");
        out.emplace_back(hf_names::lora_key(name, 'A'), 0.1 * at::randn({2, w.size(1)}));
        out.emplace_back(hf_names::lora_key(name, 'B'), 0.1 * at::randn({w.size(0), 2}));
    }
    return out;
}

void write_folder(const std::string& dir, const std::string& config, const NamedTensors& model,
                  const std::string& adapter_config = "", const NamedTensors& adapter = {}) {
    make_directories(dir);
    write_text(dir + "/config.json", config);
    write_safetensors(dir + "/model.safetensors", model);
    if (!adapter_config.empty()) write_text(dir + "/adapter_config.json", adapter_config);
    if (!adapter.empty()) write_safetensors(dir + "/adapter_model.safetensors", adapter);
}

const Fixture& fixture() {
    static const Fixture f = [] {
        Fixture x;
        // The folder goes when the process ends normally; a crash leaves it beside the input that caused it.
        static const test::TempDir folder("saliq-fuzz");
        x.dir = folder.path();
        x.weights = test::random_weights(x.config, 7);
        x.source = test::memory_checkpoint(x.config, x.weights);
        x.source.path = "<fuzz source model>";  // in the resume fingerprint: the same in every process
        x.dense = NamedTensors(x.weights.begin(), x.weights.end());
        x.packed = packed_tensors(x);
        x.mixed = mixed_tensors(x);
        x.ct = ct_tensors(x);
        x.adapter = adapter_tensors(x);
        x.ggml = ggml_tensors(x.ggml_config);
        nlohmann::json config = llama_config_to_json(x.config);
        x.dense_config = config.dump(2);
        config["quantization_config"] = gptq_quantization_config(test::rtn_w2g8(), false);
        x.packed_config = config.dump(2);
        config["quantization_config"] = {{"quant_method", "saliq_mixed"}, {"bits", 2}, {"group_size", 4},
                                         {"sym", false}, {"desc_act", false}};
        x.mixed_config = config.dump(2);
        config["quantization_config"] = ct_quantization_config();
        x.ct_config = config.dump(2);
        x.adapter_config = nlohmann::json({{"peft_type", "LORA"},
                                           {"r", 2},
                                           {"lora_alpha", 4},
                                           {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"}},
                                           {"bias", "none"},
                                           {"use_rslora", false}})
                               .dump(2);
        write_folder(x.dir + "/hf_config", x.dense_config, x.dense);
        write_folder(x.dir + "/shard_index", x.dense_config, {});
        write_safetensors(x.dir + "/shard_index/model-00001-of-00001.safetensors", x.dense);
        remove_tree(x.dir + "/shard_index/model.safetensors");
        write_folder(x.dir + "/packed_tensors", x.packed_config, x.packed);
        write_folder(x.dir + "/packed_config", x.packed_config, x.packed);
        write_folder(x.dir + "/mixed_tensors", x.mixed_config, x.mixed);
        write_folder(x.dir + "/ct_tensors", x.ct_config, x.ct);
        write_folder(x.dir + "/ct_config", x.ct_config, x.ct);
        write_folder(x.dir + "/ggml_tensors", x.ggml_config, x.ggml);
        write_folder(x.dir + "/adapter_config", x.dense_config, x.dense, x.adapter_config, x.adapter);
        write_folder(x.dir + "/adapter_tensors", x.dense_config, x.dense, x.adapter_config, x.adapter);
        for (const char* task : {"piqa", "arc", "hellaswag", "winogrande", "boolq"})
            make_directories(x.dir + "/tasks/tasks/" + task);
        make_directories(x.dir + "/files");
        return x;
    }();
    return f;
}

// Loads a model folder as `saliq eval` does and runs a forward pass over it.
void load_and_run(const std::string& folder) {
    const Checkpoint ckpt = load_checkpoint(folder);
    const auto model = LlamaModel::load(ckpt, ModelOptions{});
    (void)model->forward(at::arange(6, at::kLong).remainder(ckpt.config.vocab_size).view({1, 6})).sum().item<double>();
}

void touch_all(const Checkpoint& checkpoint) {
    for (const auto& name : checkpoint.tensors->names()) (void)checkpoint.tensors->get(name).sum().item<double>();
}

std::string file(const char* name) { return fixture().dir + "/files/" + name; }

void run_safetensors(const uint8_t* data, size_t size) {
    write(file("t.safetensors"), data, size);
    const auto reader = SafetensorsReader::open(file("t.safetensors"));
    for (const auto& e : reader->entries()) (void)reader->tensor(e.name).sum().item<double>();
}

void run_llama2c(const uint8_t* data, size_t size) {
    write(file("m.bin"), data, size);
    touch_all(read_llama2c(file("m.bin")));
}

// One file of a fixture folder replaced by the input, the folder loaded and run.
void run_folder_file(const char* folder, const char* file_name, const uint8_t* data, size_t size) {
    write(fixture().dir + "/" + folder + "/" + file_name, data, size);
    load_and_run(fixture().dir + "/" + folder);
}

void run_hf_config(const uint8_t* data, size_t size) {
    run_folder_file("hf_config", "config.json", data, size);
}
void run_shard_index(const uint8_t* data, size_t size) {
    run_folder_file("shard_index", "model.safetensors.index.json", data, size);
}
void run_packed_tensors(const uint8_t* data, size_t size) {
    run_folder_file("packed_tensors", "model.safetensors", data, size);
}
void run_packed_config(const uint8_t* data, size_t size) {
    run_folder_file("packed_config", "config.json", data, size);
}
void run_mixed_tensors(const uint8_t* data, size_t size) {
    run_folder_file("mixed_tensors", "model.safetensors", data, size);
}
void run_ct_tensors(const uint8_t* data, size_t size) {
    run_folder_file("ct_tensors", "model.safetensors", data, size);
}
void run_ct_config(const uint8_t* data, size_t size) {
    run_folder_file("ct_config", "config.json", data, size);
}
void run_ggml_tensors(const uint8_t* data, size_t size) {
    run_folder_file("ggml_tensors", "model.safetensors", data, size);
}

// GGML blocks of any type decoded and multiplied: the first byte picks the type, the rest are rows of two blocks.
void run_ggml_blocks(const uint8_t* data, size_t size) {
    const GgmlGrid grids[] = {GgmlGrid::kQ4_0, GgmlGrid::kQ4_1, GgmlGrid::kQ5_0, GgmlGrid::kQ8_0,
                              GgmlGrid::kIQ4_NL, GgmlGrid::kQ2_K, GgmlGrid::kQ3_K, GgmlGrid::kQ4_K};
    if (size < 1) return;
    const GgmlGrid grid = grids[data[0] % 8];
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    const int64_t row_bytes = 2 * t.block_bytes, rows = static_cast<int64_t>(size - 1) / row_bytes;
    if (rows == 0) return;
    const at::Tensor blocks =
        at::from_blob(const_cast<uint8_t*>(data + 1), {rows, row_bytes}, at::kByte).clone();
    const QuantizedTensor q = ggml_quantized(blocks, grid, rows, 2 * t.block, "<fuzz>");
    (void)q.dequantize().sum().item<double>();
    (void)packed_linear(at::ones({2, 2 * t.block}), pack_weight(q)).sum().item<double>();
    (void)ggml_replace_codes(blocks, grid, q.codes);
}

void run_bit_map(const uint8_t* data, size_t size) {  // --bit-map FILE, checked against the fixture's model
    write(file("bits.safetensors"), data, size);
    QuantSpec spec = test::rtn_w2g8().spec;
    spec.group_size = 4;
    (void)read_bit_maps(file("bits.safetensors"), 0, fixture().config, spec);
}

void run_adapter_config(const uint8_t* data, size_t size) {
    run_folder_file("adapter_config", "adapter_config.json", data, size);
}
void run_adapter_tensors(const uint8_t* data, size_t size) {
    run_folder_file("adapter_tensors", "adapter_model.safetensors", data, size);
}
void run_task(const char* task, const char* file_name, const uint8_t* data, size_t size) {
    const std::string root = fixture().dir + "/tasks";
    const std::string folder = root + "/tasks/" + (std::string(task).rfind("arc", 0) == 0 ? "arc" : task);
    write(folder + "/" + file_name, data, size);
    (void)load_task(task, root);
}

void run_piqa(const uint8_t* data, size_t size) {
    const std::string labels = fixture().dir + "/tasks/tasks/piqa/valid-labels.lst";
    write_text(labels, "0\n1\n");
    run_task("piqa", "valid.jsonl", data, size);
}
void run_arc(const uint8_t* data, size_t size) { run_task("arc_easy", "ARC-Easy_test.json", data, size); }
void run_hellaswag(const uint8_t* data, size_t size) { run_task("hellaswag", "hellaswag_val_full.txt", data, size); }
void run_winogrande(const uint8_t* data, size_t size) { run_task("winogrande", "dev.jsonl", data, size); }
void run_boolq(const uint8_t* data, size_t size) { run_task("boolq", "dev.jsonl", data, size); }

void run_gguf(const uint8_t* data, size_t size) {
    write(file("m.gguf"), data, size);
    const auto reader = GgufReader::open(file("m.gguf"));
    for (const auto& t : reader->tensors()) (void)reader->tensor(t.name).sum().item<double>();
    const GgufValue* vocab = reader->find_value("tokenizer.ggml.model");
    if (vocab != nullptr && vocab->value.is_string() && vocab->value.get<std::string>() == "gpt2") {
        const auto tokenizer = Tokenizer::load(file("m.gguf"));
        (void)tokenizer->decode(tokenizer->encode("Once upon a time, 12 \xe2\x82\xac."));
    }
    const GgufValue* arch = reader->find_value("general.architecture");
    if (arch != nullptr && arch->value == "llama") touch_all(read_gguf(file("m.gguf")));
}

void run_tokenizer_json(const uint8_t* data, size_t size) {
    write(file("tokenizer.json"), data, size);
    const auto tokenizer = Tokenizer::load(file("tokenizer.json"));
    (void)tokenizer->decode(tokenizer->encode("Once upon a time, 12 \xe2\x82\xac <|endoftext|>."));
}

void run_split_regex(const uint8_t* data, size_t size) {  // a pre-tokenizer regex (first line) on a text (the rest)
    const std::string all(reinterpret_cast<const char*>(data), size);
    const size_t cut = all.find('\n');
    const SplitRegex regex(all.substr(0, cut));
    const auto text = unicode::decode_utf8(cut == std::string::npos ? "" : all.substr(cut + 1));
    (void)regex.find_all(text.cps, 0, text.cps.size());
}

void run_sentencepiece(const uint8_t* data, size_t size) {
    write(file("tok.model"), data, size);
    const auto tokenizer = Tokenizer::load(file("tok.model"));
    (void)tokenizer->decode(tokenizer->encode("Once upon a time, 12 \xe2\x82\xac."));
}

void run_toml(const uint8_t* data, size_t size) {
    (void)parse_toml(std::string(reinterpret_cast<const char*>(data), size), "fuzz.toml");
}

void run_json(const uint8_t* data, size_t size) {  // the parser every JSON reader goes through
    (void)parse_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
}

void run_fisher(const uint8_t* data, size_t size) {
    write(file("fisher.safetensors"), data, size);
    check_fisher_file(file("fisher.safetensors"), fixture().config);
    const auto reader = SafetensorsReader::open(file("fisher.safetensors"));
    for (const auto& e : reader->entries()) (void)reader->tensor(e.name).sum().item<double>();
}

// An interrupted rtn W2 g8 run of the fixture's model: state.json and block 0 in <out>.partial (one run per
// target, so that the replay of one target's corpus leaves the other's files alone).
std::string resume_out(const char* target) { return fixture().dir + "/" + target + "/out"; }

void write_state(const std::string& partial) {
    make_directories(partial);
    write_json_atomic(partial + "/state.json", {{"fingerprint", run_fingerprint(fixture().source, test::rtn_w2g8())}});
}

BlockResult rtn_block() {
    BlockResult b;
    b.layer = 0;
    for (int i = 0; i < 7; ++i) {
        LinearResult lr;
        lr.name = hf_names::linear_name(0, i);
        lr.q = quantize_rtn(fixture().weights.at(lr.name + ".weight"), test::rtn_w2g8().spec);
        b.linears.push_back(lr);
    }
    return b;
}

void run_resume_block(const uint8_t* data, size_t size) {
    const std::string out = resume_out("resume_block"), partial = out + ".partial";
    if (!path_exists(partial + "/state.json")) write_state(partial);
    write(partial + "/block_0000.safetensors", data, size);
    GptqFolderWriter writer(out, fixture().source, test::rtn_w2g8(), /*force=*/false, /*resume=*/true);
    (void)writer.load(0);
}

void run_resume_state(const uint8_t* data, size_t size) {
    const std::string out = resume_out("resume_state"), partial = out + ".partial";
    if (!path_exists(partial + "/block_0000.safetensors")) {
        write_state(partial);
        GptqFolderWriter(out, fixture().source, test::rtn_w2g8(), false, true).save(rtn_block());
    }
    write(partial + "/state.json", data, size);
    GptqFolderWriter writer(out, fixture().source, test::rtn_w2g8(), /*force=*/false, /*resume=*/true);
    (void)writer.load(0);
}

const std::vector<Target> kTargets = {
    {"safetensors", "a safetensors file, every tensor read", run_safetensors},
    {"llama2c", "a llama2.c checkpoint", run_llama2c},
    {"hf_config", "config.json of a Hugging Face folder, the model loaded and run", run_hf_config},
    {"shard_index", "model.safetensors.index.json of a sharded folder, loaded and run", run_shard_index},
    {"packed_tensors", "model.safetensors of a GPTQ W2 g8 folder, loaded and run", run_packed_tensors},
    {"packed_config", "config.json (quantization_config) of a GPTQ folder, loaded and run", run_packed_config},
    {"mixed_tensors", "model.safetensors of a saliq_mixed (SliM-LLM) folder, loaded and run", run_mixed_tensors},
    {"ct_tensors", "model.safetensors of a compressed-tensors pack-quantized W2 g8 folder, loaded and run",
     run_ct_tensors},
    {"ct_config", "config.json (quantization_config) of a compressed-tensors folder, loaded and run", run_ct_config},
    {"ggml_tensors", "model.safetensors of a saliq_ggml (--grid q4_1) folder, loaded and run", run_ggml_tensors},
    {"ggml_blocks", "GGML blocks of any type saliq writes (the first byte picks it), decoded and multiplied",
     run_ggml_blocks},
    {"bit_map", "a --bit-map file of group widths, checked against the model", run_bit_map},
    {"adapter_config", "adapter_config.json beside valid adapters, loaded and run", run_adapter_config},
    {"adapter_tensors", "adapter_model.safetensors beside a valid config, loaded and run", run_adapter_tensors},
    {"piqa", "PIQA valid.jsonl", run_piqa},
    {"arc", "ARC-Easy_test.json", run_arc},
    {"hellaswag", "hellaswag_val_full.txt", run_hellaswag},
    {"winogrande", "WinoGrande dev.jsonl", run_winogrande},
    {"boolq", "BoolQ dev.jsonl", run_boolq},
    {"gguf", "a GGUF file: metadata, tensors, its BPE vocabulary, its LLaMA checkpoint", run_gguf},
    {"tokenizer_json", "a tokenizer.json (byte-level BPE)", run_tokenizer_json},
    {"split_regex", "a pre-tokenizer regex (first line) run on a text (the rest)", run_split_regex},
    {"sentencepiece", "a SentencePiece tokenizer.model", run_sentencepiece},
    {"toml", "a TOML config (quantize --config, table configs)", run_toml},
    {"json", "any JSON text (duplicate keys, nesting depth), through parse_json", run_json},
    {"fisher", "a Fisher / salience file checked against the model", run_fisher},
    {"resume_block", "a finished block of an interrupted run, resumed", run_resume_block},
    {"resume_state", "state.json of an interrupted run, resumed", run_resume_state},
};

}  // namespace

const std::vector<Target>& targets() { return kTargets; }

const Target* find_target(const std::string& name) {
    for (const auto& t : kTargets)
        if (name == t.name) return &t;
    return nullptr;
}

bool run_input(const Target& target, const uint8_t* data, size_t size) {
    static const bool verbose = std::getenv("SALIQ_FUZZ_VERBOSE") != nullptr;  // say what each input did
    try {
        target.run(data, size);
        if (verbose) std::fprintf(stderr, "%s: accepted\n", target.name);
    } catch (const Error& e) {
        // a clear, typed rejection: what we want
        if (verbose) std::fprintf(stderr, "%s: refused: %s\n", target.name, e.what());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: untyped exception escaped the reader: %s\n", target.name, e.what());
        return false;
    }
    return true;
}

void write_synthetic_seeds(const std::string& root) {
    const Fixture& f = fixture();
    auto seed = [&](const std::string& target, const std::string& name, const std::string& from) {
        make_directories(root + "/" + target);
        copy_file(from, root + "/" + target + "/" + name);
    };
    auto seed_text = [&](const std::string& target, const std::string& name, const std::string& text) {
        make_directories(root + "/" + target);
        write_text(root + "/" + target + "/" + name, text);
    };
    const std::string tmp = f.dir + "/seeds";
    make_directories(tmp);
    write_safetensors(tmp + "/dense.safetensors", f.dense, {{"format", "pt"}});
    write_safetensors(tmp + "/packed.safetensors", f.packed, {{"format", "pt"}});
    write_safetensors(tmp + "/adapter.safetensors", f.adapter);
    seed("safetensors", "dense", tmp + "/dense.safetensors");
    seed("safetensors", "packed", tmp + "/packed.safetensors");
    seed("packed_tensors", "rtn_w2g8", tmp + "/packed.safetensors");
    write_safetensors(tmp + "/mixed.safetensors", f.mixed, {{"format", "pt"}});
    seed("mixed_tensors", "w2g4_widths_1_2_3", tmp + "/mixed.safetensors");
    write_safetensors(tmp + "/ct.safetensors", f.ct, {{"format", "pt"}});
    seed("ct_tensors", "w2g8", tmp + "/ct.safetensors");
    seed_text("ct_config", "w2g8", f.ct_config);
    {  // the symmetric spelling (no zero points: refused beside these tensors) and group-wise act-order
        nlohmann::json config = nlohmann::json::parse(f.ct_config);
        config["quantization_config"]["config_groups"]["group_0"]["weights"]["symmetric"] = true;
        seed_text("ct_config", "w2g8_symmetric", config.dump(2));
        config["quantization_config"]["config_groups"]["group_0"]["weights"]["actorder"] = "group";
        seed_text("ct_config", "w2g8_actorder_group", config.dump(2));
    }
    write_safetensors(tmp + "/ggml.safetensors", f.ggml, {{"format", "pt"}});
    seed("ggml_tensors", "q4_1", tmp + "/ggml.safetensors");
    {
        const GgmlGrid grids[] = {GgmlGrid::kQ4_0, GgmlGrid::kQ4_1, GgmlGrid::kQ5_0, GgmlGrid::kQ8_0,
                                  GgmlGrid::kIQ4_NL, GgmlGrid::kQ2_K, GgmlGrid::kQ3_K, GgmlGrid::kQ4_K};
        for (int i = 0; i < 8; ++i) {  // one valid pair of rows of each type
            const GgmlGridTraits& t = ggml_grid_traits(grids[i]);
            const at::Tensor b = ggml_quantize_rows(at::randn({2, 2 * t.block}), grids[i]).contiguous();
            std::string bytes(1, static_cast<char>(i));
            bytes.append(reinterpret_cast<const char*>(b.data_ptr<uint8_t>()), static_cast<size_t>(b.numel()));
            seed_text("ggml_blocks", t.name, bytes);
        }
    }
    seed_text("packed_config", "mixed_w2g4", f.mixed_config);
    seed("bit_map", "w2g4_widths_1_2_3", tmp + "/mixed.safetensors");
    seed("adapter_tensors", "rank2", tmp + "/adapter.safetensors");
    seed_text("hf_config", "tiny", f.dense_config);
    // RoPE in transformers 5's spelling, one seed per scaling type saliq computes.
    for (const auto& [name, rope] : std::vector<std::pair<std::string, nlohmann::json>>{
             {"rope_default_t5", {{"rope_type", "default"}, {"rope_theta", 100000.0}}},
             {"rope_linear_t5", {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 10000.0}}},
             {"rope_llama3_t5",
              {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
               {"original_max_position_embeddings", 8}, {"rope_theta", 500000.0}}},
             {"rope_yarn_t5",
              {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 8}, {"rope_theta", 10000.0}}}}) {
        nlohmann::json config = nlohmann::json::parse(f.dense_config);
        config.erase("rope_theta");
        config.erase("rope_scaling");
        config["rope_parameters"] = rope;
        seed_text("hf_config", name, config.dump(2));
    }
    seed_text("packed_config", "rtn_w2g8", f.packed_config);
    {  // AutoRound's own spelling of the same folder: its quant_method, packing format, raw zeros
        nlohmann::json config = nlohmann::json::parse(f.packed_config);
        config["quantization_config"]["quant_method"] = "auto-round";
        config["quantization_config"]["packing_format"] = "auto_round:auto_gptq";
        seed_text("packed_config", "auto_round", config.dump(2));
    }
    // Hand-made cases of each class of defect the third round of hostile inputs found (each refused cleanly now):
    // a name listed twice, a value in another type than expected, nesting deeper than any reader accepts.
    auto dup_key = [](const std::string& json_text, const std::string& key) {  // the first key written twice
        const std::string needle = "\"" + key + "\":";
        const size_t at = json_text.find(needle);
        const size_t end = json_text.find_first_of(",}", at);
        return json_text.substr(0, end) + ", " + json_text.substr(at, end - at) + json_text.substr(end);
    };
    const std::string dense_compact = nlohmann::json::parse(f.dense_config).dump();
    seed_text("hf_config", "class_duplicate_key", dup_key(dense_compact, "hidden_size"));
    {
        nlohmann::json config = nlohmann::json::parse(f.dense_config);
        config["rope_theta"] = "10000";
        seed_text("hf_config", "class_type_string_theta", config.dump());
        config = nlohmann::json::parse(f.dense_config);
        config["num_attention_heads"] = 2.5;
        seed_text("hf_config", "class_type_fractional_heads", config.dump());
        config["num_attention_heads"] = 4294967298LL;
        seed_text("hf_config", "class_type_wide_heads", config.dump());
    }
    seed_text("packed_config", "class_duplicate_key",
              dup_key(nlohmann::json::parse(f.packed_config).dump(), "bits"));
    seed_text("json", "class_duplicate_key", "{\"a\": 1, \"b\": [1, 2], \"a\": 2}");
    seed_text("json", "class_deep_nesting", std::string(200, '[') + std::string(200, ']'));
    seed_text("json", "class_deep_objects", [] {
        std::string t;
        for (int i = 0; i < 100; ++i) t += "{\"k\":";
        return t + "0" + std::string(100, '}');
    }());
    seed_text("json", "plain", f.dense_config);
    seed_text("tokenizer_json", "class_deep_nesting", "{\"model\": " + std::string(5000, '[') + std::string(5000, ']') + "}");
    seed_text("toml", "class_path_name", "[[row]]\nname = \"../escape\"\nmethod = \"rtn\"\n");
    // A pattern whose cost per position is bounded and whose cost over a long text is not.
    seed_text("split_regex", "class_long_text_budget", "a*b\n" + std::string(20000, 'a'));
    seed_text("adapter_config", "rank2", f.adapter_config);
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    for (const auto& [name, w] : f.dense) index["weight_map"][name] = "model-00001-of-00001.safetensors";
    seed_text("shard_index", "one_shard", index.dump(2));

    std::map<std::string, at::Tensor> fisher;
    for (const auto& [name, w] : f.weights)
        if (name.find("_proj.weight") != std::string::npos) fisher[name] = at::rand_like(w);
    write_fisher(tmp + "/fisher.safetensors", fisher, FisherOptions{});
    seed("fisher", "rand", tmp + "/fisher.safetensors");

    const std::string partial = resume_out("seeds") + ".partial";
    remove_tree(partial);
    write_state(partial);
    GptqFolderWriter(resume_out("seeds"), f.source, test::rtn_w2g8(), false, true).save(rtn_block());
    seed("resume_block", "rtn_w2g8", partial + "/block_0000.safetensors");
    seed("resume_state", "rtn_w2g8", partial + "/state.json");
    remove_tree(partial);

    // A LLaMA GGUF of the fixture's model (F32, llama.cpp's names, no vocabulary).
    const LlamaConfig& c = f.config;
    std::vector<GgufValue> meta = {
        {"general.architecture", GgufType::kString, GgufType::kString, "llama"},
        {"llama.embedding_length", GgufType::kUint32, GgufType::kString, c.hidden_size},
        {"llama.feed_forward_length", GgufType::kUint32, GgufType::kString, c.intermediate_size},
        {"llama.block_count", GgufType::kUint32, GgufType::kString, c.n_layers},
        {"llama.attention.head_count", GgufType::kUint32, GgufType::kString, c.n_heads},
        {"llama.attention.head_count_kv", GgufType::kUint32, GgufType::kString, c.n_kv_heads},
        {"llama.context_length", GgufType::kUint32, GgufType::kString, c.max_position_embeddings},
        {"llama.vocab_size", GgufType::kUint32, GgufType::kString, c.vocab_size},
        {"llama.attention.layer_norm_rms_epsilon", GgufType::kFloat32, GgufType::kString, 1e-5}};
    std::vector<GgufTensorSpec> specs;
    std::vector<at::Tensor> values;
    for (const auto& [name, w] : f.dense) {
        specs.push_back({gguf_tensor_name(name), at::kFloat, w.sizes().vec()});
        values.push_back(w);
    }
    write_gguf(tmp + "/tiny.gguf", meta, specs, [&](size_t i) { return values[i]; });
    seed("gguf", "tiny_llama", tmp + "/tiny.gguf");
    {  // the same file with one metadata value in another type or listed twice
        auto with = [&](const std::string& name, const GgufValue& extra) {
            std::vector<GgufValue> m = meta;
            auto same = std::find_if(m.begin(), m.end(), [&](const GgufValue& v) { return v.key == extra.key; });
            if (same == m.end() || &extra == &meta[1]) m.push_back(extra);
            else *same = extra;
            write_gguf(tmp + "/class.gguf", m, specs, [&](size_t i) { return values[i]; });
            seed("gguf", name, tmp + "/class.gguf");
        };
        with("class_alignment_as_string", {"general.alignment", GgufType::kString, GgufType::kString, "32"});
        with("class_alignment_uint64", {"general.alignment", GgufType::kUint64, GgufType::kString, 32});
        with("class_alignment_zero", {"general.alignment", GgufType::kUint32, GgufType::kString, 0});
        with("class_heads_as_float", {"llama.attention.head_count", GgufType::kFloat32, GgufType::kString, 2.0});
        with("class_duplicate_key", meta[1]);
    }
    // The same with a byte-level BPE vocabulary: the 256 byte characters of GPT-2's alphabet and two merges.
    nlohmann::json tokens = nlohmann::json::array();
    for (int b = 0, extra = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + extra++);
        std::string spelled;
        if (cp < 0x80) spelled += static_cast<char>(cp);
        else spelled += {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
        tokens.push_back(spelled);
    }
    tokens.push_back("lo");
    tokens.push_back("low");
    meta.push_back({"tokenizer.ggml.model", GgufType::kString, GgufType::kString, "gpt2"});
    meta.push_back({"tokenizer.ggml.pre", GgufType::kString, GgufType::kString, "gpt2"});
    meta.push_back({"tokenizer.ggml.tokens", GgufType::kArray, GgufType::kString, tokens});
    meta.push_back({"tokenizer.ggml.merges", GgufType::kArray, GgufType::kString, {"l o", "lo w"}});
    meta.push_back({"tokenizer.ggml.bos_token_id", GgufType::kUint32, GgufType::kString, 1});
    write_gguf(tmp + "/bpe.gguf", meta, specs, [&](size_t i) { return values[i]; });
    seed("gguf", "tiny_llama_bpe", tmp + "/bpe.gguf");

    // A llama2.c checkpoint of the same shapes (header, then every part in file order; values do not matter).
    {
        const int32_t header[7] = {static_cast<int32_t>(c.hidden_size), static_cast<int32_t>(c.intermediate_size),
                                   static_cast<int32_t>(c.n_layers),   static_cast<int32_t>(c.n_heads),
                                   static_cast<int32_t>(c.n_kv_heads), static_cast<int32_t>(c.vocab_size),
                                   static_cast<int32_t>(c.max_position_embeddings)};
        const int64_t D = c.hidden_size, F = c.intermediate_size, L = c.n_layers, kv = c.n_kv_heads * c.head_dim;
        const int64_t floats = c.vocab_size * D + L * D + L * D * D + 2 * L * kv * D + L * D * D + L * D +
                               3 * L * F * D + D + c.max_position_embeddings * c.head_dim;
        const at::Tensor values = 0.1 * at::randn({floats});
        std::ofstream out(tmp + "/tiny.bin", std::ios::binary);
        out.write(reinterpret_cast<const char*>(header), sizeof(header));
        out.write(static_cast<const char*>(values.data_ptr()), static_cast<std::streamsize>(floats * 4));
    }
    seed("llama2c", "tiny", tmp + "/tiny.bin");
    seed_text("tokenizer_json", "bpe_from_gguf", gguf_tokenizer_json(*GgufReader::open(tmp + "/bpe.gguf")).dump());
    remove_tree(tmp);

    // From the shared reference data, read where it lives (never copied into the repository): stories260K's
    // tokenizer and the first records of each task file.
    const std::string data = data_dir();
    if (path_exists(data + "/models/stories260K/tok512.model"))
        seed("sentencepiece", "tok512.model", data + "/models/stories260K/tok512.model");
    auto head = [&](const std::string& target, const std::string& file, size_t lines) {
        if (!path_exists(data + "/" + file)) return;
        const std::string text = read_text_file(data + "/" + file);
        size_t end = 0;
        for (size_t i = 0; i < lines && end != std::string::npos; ++i) end = text.find('\n', end == 0 ? 0 : end + 1);
        seed_text(target, "data_head", text.substr(0, end == std::string::npos ? text.size() : end + 1));
    };
    head("piqa", "tasks/piqa/valid.jsonl", 2);
    head("winogrande", "tasks/winogrande/dev.jsonl", 3);
    head("boolq", "tasks/boolq/dev.jsonl", 2);
    head("hellaswag", "tasks/hellaswag/hellaswag_val_full.txt", 12);
    head("arc", "tasks/arc/ARC-Easy_test.json", 1);
}

}  // namespace saliq::fuzz
