// compressed-tensors' pack-quantized export: the bit layout against words computed by hand (2, 3 and 4 bits, a value
// split across two words), and a whole stories260K folder read back by an independent decoder to the packed folder's
// own dequantized weights; folders the format cannot hold are refused. Reading such folders (llm-compressor's output)
// is tested at the end.
#include <cstdint>
#include <functional>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/inspect.h"
#include "saliq/model.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"
#include "test_utils.h"

namespace saliq {
namespace {

QuantizedTensor one_row(const std::vector<int64_t>& codes, int bits, int64_t group, double zero) {
    QuantizedTensor q;
    q.spec.bits = bits;
    q.spec.group_size = group;
    const auto n = static_cast<int64_t>(codes.size());
    q.codes = at::tensor(codes, at::kLong).to(at::kByte).view({1, n});
    q.scales = at::full({1, n / group}, 0.5f);
    q.zeros = at::full({1, n / group}, static_cast<float>(zero));
    q.g_idx = at::div(at::arange(n, at::kLong), group, "floor");
    return q;
}

uint32_t word(const at::Tensor& packed, int64_t row, int64_t col) {
    return static_cast<uint32_t>(packed[row][col].item<int32_t>());
}

TEST(CompressedTensors, CodesPackAsOneLsbFirstStreamPerRow) {
    // 2 bits: sixteen codes in a word, code k at bits 2k.
    std::vector<int64_t> c2 = {0, 1, 2, 3, 3, 2, 1, 0, 1, 1, 1, 1, 2, 2, 2, 2};
    uint32_t expected = 0;
    for (size_t k = 0; k < c2.size(); ++k) expected |= static_cast<uint32_t>(c2[k]) << (2 * k);
    auto t = compressed_tensors_linear(one_row(c2, 2, 16, 1), "t");
    ASSERT_EQ(t.weight_packed.sizes(), (at::IntArrayRef{1, 1}));
    EXPECT_EQ(word(t.weight_packed, 0, 0), expected);
    EXPECT_EQ(t.weight_packed.scalar_type(), at::kInt);
    EXPECT_EQ(t.weight_shape[0].item<int64_t>(), 1);
    EXPECT_EQ(t.weight_shape[1].item<int64_t>(), 16);
    EXPECT_EQ(t.weight_scale.scalar_type(), at::kHalf);
    // The zero point 1 at bits 0..1 of its own word (packed along the output dim).
    EXPECT_EQ(word(t.weight_zero_point, 0, 0), 1u);

    // 3 bits over 16 codes: 48 bits in two words, code 10 split (bits 30-31 of word 0, bit 0 of word 1).
    std::vector<int64_t> c3 = {7, 0, 5, 1, 2, 3, 4, 6, 1, 0, 6, 2, 3, 4, 5, 7};
    uint64_t stream = 0;
    for (size_t k = 0; k < c3.size(); ++k) stream |= static_cast<uint64_t>(c3[k]) << (3 * k);
    t = compressed_tensors_linear(one_row(c3, 3, 8, 4), "t");
    ASSERT_EQ(t.weight_packed.sizes(), (at::IntArrayRef{1, 2}));
    EXPECT_EQ(word(t.weight_packed, 0, 0), static_cast<uint32_t>(stream & 0xffffffffu));
    EXPECT_EQ(word(t.weight_packed, 0, 1), static_cast<uint32_t>(stream >> 32));
    EXPECT_EQ((word(t.weight_packed, 0, 0) >> 30) | ((word(t.weight_packed, 0, 1) & 1u) << 2), 6u);  // code 10
    EXPECT_EQ(t.weight_zero_point.sizes(), (at::IntArrayRef{1, 2}));  // [ceil(1 * 3 / 32), G]

    // 4 bits: eight codes a word.
    std::vector<int64_t> c4 = {15, 0, 1, 14, 7, 8, 3, 12};
    expected = 0;
    for (size_t k = 0; k < c4.size(); ++k) expected |= static_cast<uint32_t>(c4[k]) << (4 * k);
    EXPECT_EQ(word(compressed_tensors_linear(one_row(c4, 4, 8, 8), "t").weight_packed, 0, 0), expected);

    // What the format cannot hold.
    QuantizedTensor act_order = one_row(c2, 2, 8, 1);
    act_order.g_idx = at::tensor(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0});
    EXPECT_THROW(compressed_tensors_linear(act_order, "t"), ConfigError);
    EXPECT_THROW(compressed_tensors_linear(one_row(c2, 2, 16, 0.5), "t"), ConfigError);  // fractional zero
    QuantizedTensor off_middle = one_row(c2, 2, 16, 1);  // symmetric, but not the library's zero (2 at 2 bits)
    off_middle.spec.symmetric = true;
    EXPECT_THROW(compressed_tensors_linear(off_middle, "t"), ConfigError);
    off_middle.zeros.fill_(2);
    EXPECT_FALSE(compressed_tensors_linear(off_middle, "t").weight_zero_point.defined());
}

// The independent reader: bit stream per row (weights) and per column (zero points), value (u_q - u_zp) * s.
at::Tensor decode(const std::map<std::string, at::Tensor>& t, const std::string& base, int bits) {
    const at::Tensor packed = t.at(base + ".weight_packed"), zp = t.at(base + ".weight_zero_point");
    const at::Tensor scale = t.at(base + ".weight_scale").to(at::kFloat), shape = t.at(base + ".weight_shape");
    const int64_t out = shape[0].item<int64_t>(), in = shape[1].item<int64_t>(), G = scale.size(1), g = in / G;
    auto bits_at = [&](const at::Tensor& words, int64_t row, int64_t col_word, bool rows) {
        return static_cast<uint32_t>((rows ? words[row][col_word] : words[col_word][row]).item<int32_t>());
    };
    auto read = [&](const at::Tensor& words, int64_t line, int64_t k, bool rows) {
        uint64_t v = 0;
        const int64_t bit = k * bits, w = bit / 32, off = bit % 32;
        v = bits_at(words, line, w, rows) >> off;
        if (off + bits > 32) v |= static_cast<uint64_t>(bits_at(words, line, w + 1, rows)) << (32 - off);
        return static_cast<double>(v & ((1u << bits) - 1));
    };
    at::Tensor w = at::empty({out, in});
    for (int64_t r = 0; r < out; ++r)
        for (int64_t c = 0; c < in; ++c)
            w[r][c] = (read(packed, r, c, true) - read(zp, c / g, r, false)) * scale[r][c / g].item<double>();
    return w;
}

TEST(CompressedTensors, Stories260KFolderReadsBackToThePackedWeights) {
    test::TempDir dir;
    for (int bits : {2, 3}) {
        const std::string q = dir.file("q" + std::to_string(bits)), ct = dir.file("ct" + std::to_string(bits));
        auto r = test::run_saliq("quantize -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                                 " --method rtn --bits " + std::to_string(bits) + " --group-size 4 -q --out " + q);
        ASSERT_EQ(r.exit_code, 0) << r.output;
        r = test::run_saliq("export -m " + q + " --format compressed-tensors -q --out " + ct);
        ASSERT_EQ(r.exit_code, 0) << r.output;
        const auto config = nlohmann::json::parse(test::read_bytes(ct + "/config.json"));
        const auto& qc = config["quantization_config"];
        EXPECT_EQ(qc["quant_method"], "compressed-tensors");
        EXPECT_EQ(qc["format"], "pack-quantized");
        EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["num_bits"], bits);
        EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["group_size"], 4);
        EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["symmetric"], false);
        EXPECT_TRUE(path_exists(ct + "/tokenizer.model"));

        const Checkpoint packed = load_checkpoint(q);
        const auto reader = SafetensorsReader::open(ct + "/model.safetensors");
        std::map<std::string, at::Tensor> tensors;
        for (const auto& entry : reader->entries()) tensors[entry.name] = reader->tensor(entry.name);
        for (int64_t layer : {int64_t{0}, packed.config.n_layers - 1})
            for (int i = 0; i < kNumLinears; ++i) {
                const std::string base = hf_names::linear_name(layer, i);
                ASSERT_EQ(tensors.count(base + ".weight"), 0u) << base;  // no dense copy beside the packed one
                const DecoderBlock block = load_block(*packed.tensors, packed.config, packed.packed, layer,
                                                      at::TensorOptions().dtype(at::kFloat));
                EXPECT_TRUE(at::equal(decode(tensors, base, bits), block.linears[i]->weight())) << base;
            }
        EXPECT_TRUE(at::equal(tensors.at("model.embed_tokens.weight"), packed.tensors->get("model.embed_tokens.weight")));
    }
    // A folder that is not packed, and an act-order one, are refused before anything is written.
    auto r = test::run_saliq("export -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                             " --format compressed-tensors --out " + dir.file("x"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("quantize it first"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("x")));
    const std::string ao = dir.file("ao");
    r = test::run_saliq("quantize -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                        " --method gptq --act-order --bits 2 --group-size 4 --calib tinystories --calib-range 0:0.5 "
                        "--nsamples 2 --seqlen 64 -q --out " + ao);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run_saliq("export -m " + ao + " --format compressed-tensors --out " + dir.file("y"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("g_idx"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("y")));
}

}  // namespace
}  // namespace saliq

namespace saliq {
namespace {

// AutoRound's own folder (quant_method auto-round, packing_format auto_round:auto_gptq): GPTQ's bit layout, no g_idx,
// AutoGPTQ's zero points (z - 1) unless checkpoint_format says gptq_v2. Made here from a saliq W2 asymmetric folder
// (gptq_v2: raw zero points) by relabelling it with gptq_v2 and dropping g_idx; it must score exactly like the
// original; without the key its zeros are read as z - 1; the layouts saliq does not read are refused.
TEST(AutoRoundFolder, ReadsAsGptqWithRawZerosAndNaturalGroups) {
    test::TempDir dir;
    const std::string q = dir.file("q"), ar = dir.file("ar");
    auto r = test::run_saliq("quantize -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                             " --method rtn --bits 2 --group-size 4 -q --out " + q);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    make_directories(ar);
    const auto reader = SafetensorsReader::open(q + "/model.safetensors");
    NamedTensors kept;
    for (const auto& e : reader->entries())
        if (e.name.size() < 6 || e.name.compare(e.name.size() - 6, 6, ".g_idx") != 0)
            kept.emplace_back(e.name, reader->tensor(e.name).clone());
    ASSERT_LT(kept.size(), reader->entries().size());
    write_safetensors(ar + "/model.safetensors", kept, {{"format", "pt"}});
    copy_file(q + "/tokenizer.model", ar + "/tokenizer.model");
    nlohmann::json config = nlohmann::json::parse(test::read_bytes(q + "/config.json"));
    config["quantization_config"] = {{"quant_method", "auto-round"}, {"bits", 2},   {"group_size", 4},
                                     {"sym", false},                 {"data_type", "int"},
                                     {"packing_format", "auto_round:auto_gptq"}, {"autoround_version", "0.16.0"}};
    test::write_bytes(ar + "/config.json", config.dump(2));
    EXPECT_FALSE(load_checkpoint(ar).packed.zeros_v2);  // AutoRound 0.16.1 writes AutoGPTQ's z - 1
    config["quantization_config"]["checkpoint_format"] = "gptq_v2";
    test::write_bytes(ar + "/config.json", config.dump(2));
    const std::string eval = " --dataset tinystories --seqlen 64 --max-windows 4 -q";
    const auto a = test::run_saliq("eval -m " + q + eval), b = test::run_saliq("eval -m " + ar + eval);
    ASSERT_EQ(a.exit_code, 0) << a.output;
    ASSERT_EQ(b.exit_code, 0) << b.output;
    auto ppl_line = [](const std::string& out) {  // "perplexity X"
        const size_t at = out.find("perplexity");
        return at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
    };
    EXPECT_NE(ppl_line(a.output).find("perplexity"), std::string::npos) << a.output;
    EXPECT_EQ(ppl_line(a.output), ppl_line(b.output));
    const Checkpoint ours = load_checkpoint(q), theirs = load_checkpoint(ar);
    EXPECT_EQ(theirs.format, "gptq");
    EXPECT_TRUE(theirs.packed.zeros_v2);
    for (int64_t layer = 0; layer < ours.config.n_layers; ++layer) {
        const auto opts = at::TensorOptions().dtype(at::kFloat);
        const DecoderBlock x = load_block(*ours.tensors, ours.config, ours.packed, layer, opts);
        const DecoderBlock y = load_block(*theirs.tensors, theirs.config, theirs.packed, layer, opts);
        for (int i = 0; i < kNumLinears; ++i) EXPECT_TRUE(at::equal(x.linears[i]->weight(), y.linears[i]->weight()));
    }
    for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
             {"packing_format", "auto_round:auto_awq"},
             {"data_type", "fp"},
             {"extra_config", {{"model.layers.0.mlp.down_proj", {{"bits", 4}}}}}}) {
        nlohmann::json bad = config;
        bad["quantization_config"][key] = value;
        test::write_bytes(ar + "/config.json", bad.dump(2));
        r = test::run_saliq("eval -m " + ar + eval);
        EXPECT_EQ(r.exit_code, 3) << key << ": " << r.output;
        EXPECT_NE(r.output.find(key), std::string::npos) << r.output;
    }
}

}  // namespace
}  // namespace saliq

namespace saliq {
namespace {

// compressed-tensors folders read back (llm-compressor's output; saliq's own export): the export of a stories260K
// folder loads as the same model weight for weight, asymmetric (zero points packed along out) and symmetric (none
// stored); the schemes saliq does not run, and parts that do not fit, are refused by name.
std::string quantize_rtn(const test::TempDir& dir, const std::string& name, int bits, const std::string& extra = "") {
    const std::string q = dir.file(name);
    const auto r = test::run_saliq("quantize -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                                   " --method rtn --bits " + std::to_string(bits) + " --group-size 4 -q " + extra +
                                   " --out " + q);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return q;
}

std::string export_ct(const std::string& q, const std::string& ct) {
    const auto r = test::run_saliq("export -m " + q + " --format compressed-tensors -q --out " + ct);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return ct;
}

void expect_same_linears(const Checkpoint& a, const Checkpoint& b) {
    const auto opts = at::TensorOptions().dtype(at::kFloat);
    for (int64_t layer = 0; layer < a.config.n_layers; ++layer) {
        const DecoderBlock x = load_block(*a.tensors, a.config, a.packed, layer, opts);
        const DecoderBlock y = load_block(*b.tensors, b.config, b.packed, layer, opts);
        for (int i = 0; i < kNumLinears; ++i)
            EXPECT_TRUE(at::equal(x.linears[i]->weight(), y.linears[i]->weight())) << layer << " " << i;
    }
}

// The folder's tensors with `drop` (a suffix) left out and `change` applied to the rest; its config as `config`.
void rewrite(const std::string& from, const std::string& to, const std::string& drop, const nlohmann::json& config,
             const std::function<void(const std::string&, at::Tensor&)>& change = nullptr) {
    make_directories(to);
    const auto reader = SafetensorsReader::open(from + "/model.safetensors");
    NamedTensors kept;
    for (const auto& e : reader->entries()) {
        if (!drop.empty() && ends_with(e.name, drop)) continue;
        at::Tensor t = reader->tensor(e.name).clone();
        if (change) change(e.name, t);
        kept.emplace_back(e.name, t);
    }
    write_safetensors(to + "/model.safetensors", kept, {{"format", "pt"}});
    copy_file(from + "/tokenizer.model", to + "/tokenizer.model");
    test::write_bytes(to + "/config.json", config.dump(2));
}

TEST(CompressedTensorsFolder, ReadsBackAsTheFolderItWasExportedFrom) {
    test::TempDir dir;
    const std::string eval = " --dataset tinystories --seqlen 64 --max-windows 4";
    for (int bits : {2, 3}) {
        const std::string q = quantize_rtn(dir, "q" + std::to_string(bits), bits);
        const std::string ct = export_ct(q, dir.file("ct" + std::to_string(bits)));
        const Checkpoint ours = load_checkpoint(q), theirs = load_checkpoint(ct);
        EXPECT_EQ(theirs.format, "compressed-tensors");
        EXPECT_EQ(theirs.packed.bits, bits);
        EXPECT_EQ(theirs.packed.group_size, 4);
        EXPECT_FALSE(theirs.packed.symmetric);
        EXPECT_FALSE(theirs.packed.desc_act);
        EXPECT_FALSE(theirs.tensors->has("model.layers.0.self_attn.q_proj.weight_packed"));  // seen as GPTQ's
        expect_same_linears(ours, theirs);
        EXPECT_EQ(inspect_checkpoint(theirs)["quantization"]["checkpoint_format"], "compressed-tensors");
        if (bits == 3) {  // and the whole model scores the same through the CLI
            const auto a = test::run_saliq("eval -m " + q + eval), b = test::run_saliq("eval -m " + ct + eval);
            ASSERT_EQ(a.exit_code, 0) << a.output;
            ASSERT_EQ(b.exit_code, 0) << b.output;
            const auto ppl = [](const std::string& out) { return out.substr(out.find("perplexity"), 20); };
            EXPECT_EQ(ppl(a.output), ppl(b.output));
        }
    }
}

TEST(CompressedTensorsFolder, SymmetricSchemeStoresNoZeroPoints) {
    test::TempDir dir;
    // A symmetric folder exports as llm-compressor's W4A16 is stored: symmetric true, no zero points.
    const std::string q = quantize_rtn(dir, "q", 3, "--sym"), sym = export_ct(q, dir.file("sym"));
    nlohmann::json config = nlohmann::json::parse(test::read_bytes(sym + "/config.json"));
    EXPECT_EQ(config["quantization_config"]["config_groups"]["group_0"]["weights"]["symmetric"], true);
    EXPECT_FALSE(
        SafetensorsReader::open(sym + "/model.safetensors")->has("model.layers.0.mlp.up_proj.weight_zero_point"));
    const Checkpoint ours = load_checkpoint(q), theirs = load_checkpoint(sym);
    EXPECT_TRUE(theirs.packed.symmetric);
    expect_same_linears(ours, theirs);
    // The zero points the view makes up take no bytes: inspect counts what the file holds.
    const auto reader = SafetensorsReader::open(sym + "/model.safetensors");
    uint64_t on_disk = 0;
    for (const auto& e : reader->entries())
        if (!ends_with(e.name, ".weight_shape")) on_disk += reader->tensor(e.name).nbytes();
    EXPECT_EQ(inspect_checkpoint(theirs)["bytes"]["tensors"].get<uint64_t>(), on_disk);
    // Zero points beside a symmetric scheme, or none beside an asymmetric one: which is the model?
    const std::string ct = export_ct(quantize_rtn(dir, "asym", 3), dir.file("ct"));
    rewrite(ct, dir.file("sym_with_zeros"), "", config);
    EXPECT_THROW(load_checkpoint(dir.file("sym_with_zeros")), FormatError);
    config["quantization_config"]["config_groups"]["group_0"]["weights"]["symmetric"] = false;
    rewrite(sym, dir.file("asym_without"), "", config);
    try {
        load_checkpoint(dir.file("asym_without"));
        ADD_FAILURE() << "an asymmetric folder without zero points loaded";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("weight_zero_point"), std::string::npos) << e.what();
    }
}

TEST(CompressedTensorsFolder, RefusesSchemesSaliqDoesNotRunAndPartsThatDoNotFit) {
    test::TempDir dir;
    const std::string ct = export_ct(quantize_rtn(dir, "q", 2), dir.file("ct"));
    const nlohmann::json config = nlohmann::json::parse(test::read_bytes(ct + "/config.json"));
    const nlohmann::json good = config["quantization_config"];
    EXPECT_NO_THROW(parse_quantization_config(good, "c"));
    const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> cases = {
        {[](nlohmann::json& q) { q["format"] = "dense"; q["config_groups"]["group_0"]["format"] = "dense"; },
         "format 'dense'"},
        {[](nlohmann::json& q) { q["quantization_status"] = "frozen"; }, "quantization_status"},
        {[](nlohmann::json& q) { q["config_groups"]["group_1"] = q["config_groups"]["group_0"]; },
         "one of config_groups"},
        {[](nlohmann::json& q) { q["config_groups"]["group_0"]["targets"] = {"re:.*q_proj"}; }, "targets"},
        {[](nlohmann::json& q) {
             q["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}, {"type", "int"}};
         },
         "input_activations"},
        {[](nlohmann::json& q) { q["kv_cache_scheme"] = {{"num_bits", 8}}; }, "kv_cache_scheme"},
        {[](nlohmann::json& q) { q["ignore"] = {"lm_head", "model.layers.0.mlp.down_proj"}; }, "ignore lists"},
        {[](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["strategy"] = "tensor"; }, "strategy"},
        {[](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["type"] = "float"; }, "type 'float'"},
        {[](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["num_bits"] = 5; }, "num_bits 5"},
        {[](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["actorder"] = "dynamic"; }, "actorder"},
    };
    for (const auto& [mutate, expected] : cases) {
        nlohmann::json bad = good;
        mutate(bad);
        try {
            parse_quantization_config(bad, "c");
            ADD_FAILURE() << "accepted: " << expected;
        } catch (const FormatError& e) {
            EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
        }
    }
    // A GPTQ part stored beside the compressed-tensors part it would be read as.
    rewrite(ct, dir.file("both"), "", config);
    {
        const auto reader = SafetensorsReader::open(ct + "/model.safetensors");
        NamedTensors all;
        for (const auto& e : reader->entries()) all.emplace_back(e.name, reader->tensor(e.name).clone());
        all.emplace_back("model.layers.0.self_attn.q_proj.scales",
                         reader->tensor("model.layers.0.self_attn.q_proj.weight_scale").t().contiguous());
        write_safetensors(dir.file("both") + "/model.safetensors", all, {{"format", "pt"}});
    }
    try {
        load_checkpoint(dir.file("both"));
        ADD_FAILURE() << "a folder with both scales and weight_scale loaded";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("both stand for"), std::string::npos) << e.what();
    }
    // weight_shape that does not match the packed codes: refused as the linear loads (the CLI: exit 3).
    rewrite(ct, dir.file("shape"), "", config, [](const std::string& name, at::Tensor& t) {
        if (name == "model.layers.0.self_attn.q_proj.weight_shape") t[1] = t[1].item<int64_t>() + 16;
    });
    const auto r =
        test::run_saliq("eval -m " + dir.file("shape") + " --dataset tinystories --seqlen 64 --max-windows 1");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("weight_shape"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace saliq
