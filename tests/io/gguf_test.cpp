// GGUF: the container round-trips every value type, refuses truncated files and quantized tensors by name; the
// LLaMA export of the converted stories260K equals llama.cpp's own conversion tensor for tensor and piece for piece.
#include <cstring>

#include <gmock/gmock.h>

#include <ATen/ATen.h>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/gguf.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

TEST(Gguf, ContainerRoundTripsValuesAndTensors) {
    test::TempDir dir;
    const std::string path = dir.file("t.gguf");
    const std::vector<GgufValue> meta = {
        {"a.u32", GgufType::kUint32, GgufType::kString, 7},
        {"a.f32", GgufType::kFloat32, GgufType::kString, 0.5},
        {"a.str", GgufType::kString, GgufType::kString, "llama"},
        {"a.bool", GgufType::kBool, GgufType::kString, true},
        {"a.i64", GgufType::kInt64, GgufType::kString, -3},
        {"a.strs", GgufType::kArray, GgufType::kString, nlohmann::json::array({"x", "", "zz"})},
        {"a.i32s", GgufType::kArray, GgufType::kInt32, nlohmann::json::array({1, -2, 3})}};
    const at::Tensor w = at::randn({3, 5}), h = at::randn({7}).to(at::kHalf), b = at::randn({2, 2, 3}).to(at::kBFloat16);
    const std::vector<at::Tensor> ts = {w, h, b};
    write_gguf(path, meta, {{"w", at::kFloat, {3, 5}}, {"h", at::kHalf, {7}}, {"b", at::kBFloat16, {2, 2, 3}}},
               [&](size_t i) { return ts[i]; });
    const auto r = GgufReader::open(path);
    ASSERT_EQ(r->metadata().size(), meta.size());
    for (const auto& v : meta) {
        const GgufValue* got = r->find_value(v.key);
        ASSERT_NE(got, nullptr) << v.key;
        EXPECT_EQ(got->type, v.type) << v.key;
        EXPECT_EQ(got->value, v.value) << v.key;
    }
    EXPECT_EQ(r->find("w")->ne, (std::vector<int64_t>{5, 3}));  // ne[0] fastest
    EXPECT_TRUE(at::equal(r->tensor("w"), w));
    EXPECT_TRUE(at::equal(r->tensor("h"), h));
    EXPECT_TRUE(at::equal(r->tensor("b"), b));
    EXPECT_EQ(r->find("b")->offset % 32, 0u);

    const std::string bytes = test::read_bytes(path);
    write_file_atomic(dir.file("cut.gguf"), [&](std::ostream& o) { o << bytes.substr(0, bytes.size() - 16); });
    EXPECT_THROW(GgufReader::open(dir.file("cut.gguf")), FormatError);
    write_file_atomic(dir.file("bad.gguf"), [&](std::ostream& o) { o << "GGML" << bytes.substr(4); });
    EXPECT_THROW(GgufReader::open(dir.file("bad.gguf")), FormatError);
}

// Hostile containers: general.alignment stored wider than its UINT32 (2^32 narrowed to 0 was then a divisor: the
// process died on SIGFPE), a metadata key or a tensor name listed twice (one would silently win).
TEST(Gguf, WideAlignmentAndDuplicateNamesAreRefused) {
    test::TempDir dir;
    auto refused = [&](const std::vector<GgufValue>& meta, const std::vector<GgufTensorSpec>& tensors,
                       const std::string& words) {
        const std::string path = dir.file("h.gguf");
        write_gguf(path, meta, tensors, [&](size_t) { return at::zeros({4}); });
        try {
            GgufReader::open(path);
        } catch (const FormatError& e) {
            return std::string(e.what()).find(words) != std::string::npos;
        }
        return false;
    };
    const std::vector<GgufTensorSpec> one = {{"a", at::kFloat, {4}}};
    EXPECT_TRUE(refused({{"general.alignment", GgufType::kUint64, GgufType::kString, uint64_t{1} << 32}}, one,
                        "UINT32"));
    EXPECT_TRUE(refused({{"general.alignment", GgufType::kUint32, GgufType::kString, 48}}, one, "power of two"));
    EXPECT_TRUE(refused({{"x.k", GgufType::kUint32, GgufType::kString, 1}, {"x.k", GgufType::kUint32, GgufType::kString, 2}},
                        one, "appears twice"));
    EXPECT_TRUE(refused({}, {{"a", at::kFloat, {4}}, {"a", at::kFloat, {4}}}, "appears twice"));
    EXPECT_FALSE(refused({{"general.alignment", GgufType::kUint32, GgufType::kString, 32}}, one, ""));
}

// A GGUF of one metadata array written by hand: `n` elements of `element` type claimed, `payload` after the count.
std::string gguf_with_array(uint32_t element, uint64_t n, const std::string& payload) {
    std::string bytes = "GGUF";
    auto put = [&bytes](const auto& v) { bytes.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(uint32_t{3});
    put(uint64_t{0});  // tensors
    put(uint64_t{1});  // metadata keys
    const std::string key = "x.flags";
    put(static_cast<uint64_t>(key.size()));
    bytes += key;
    put(static_cast<uint32_t>(GgufType::kArray));
    put(element);
    put(n);
    return bytes + payload;
}

// An array is bounded by the bytes left for its elements and by a count above any vocabulary's (a bool array as
// long as the file became 16 times the file's size as json); a tensor offset near 2^64 wrapped the bounds check.
TEST(Gguf, ArraysPastTheFileAndOffsetsThatWrapAreRefused) {
    test::TempDir dir;
    auto message_of = [&](const std::string& bytes) {
        test::write_bytes(dir.file("h.gguf"), bytes);
        return test::error_of([&] { GgufReader::open(dir.file("h.gguf")); });
    };
    const uint32_t u32 = static_cast<uint32_t>(GgufType::kUint32), flag = static_cast<uint32_t>(GgufType::kBool);
    EXPECT_EQ(message_of(gguf_with_array(u32, 4, std::string(16, '\0'))), "<no error>");
    std::string message = message_of(gguf_with_array(u32, 5, std::string(16, '\0')));
    EXPECT_NE(message.find("x.flags claims 5 elements, more than the 16 bytes left"), std::string::npos) << message;
    const uint64_t limit = uint64_t{1} << 24;
    message = message_of(gguf_with_array(flag, limit + 1, std::string(limit + 1, '\0')));
    EXPECT_NE(message.find("x.flags of 16777217 elements exceeds saliq's limit"), std::string::npos) << message;

    const std::string path = dir.file("t.gguf");
    write_gguf(path, {}, {{"a", at::kFloat, {4}}}, [](size_t) { return at::ones({4}); });
    std::string bytes = test::read_bytes(path);
    const size_t offset_at = 24 + 8 + 1 + 4 + 8 + 4;  // header, name "a", n_dims, ne[0], type
    const uint64_t wrapping = ~uint64_t{0} - 31;       // aligned, and data_start + offset wraps below the file's size
    std::memcpy(&bytes[offset_at], &wrapping, 8);
    message = message_of(bytes);
    EXPECT_NE(message.find("tensor a lies past the end of the file"), std::string::npos) << message;
}

// llama.cpp's rules for a BPE vocabulary: a string listed once, token types int32.
TEST(Gguf, BpeVocabulariesWithATokenTwiceOrTypesOutsideInt32AreRefused) {
    test::TempDir dir;
    auto message_of = [&](const nlohmann::json& tokens, const GgufValue& types) {
        const std::vector<GgufValue> meta = {
            {"tokenizer.ggml.model", GgufType::kString, GgufType::kString, "gpt2"},
            {"tokenizer.ggml.tokens", GgufType::kArray, GgufType::kString, tokens},
            {"tokenizer.ggml.merges", GgufType::kArray, GgufType::kString, nlohmann::json::array()},
            types};
        write_gguf(dir.file("v.gguf"), meta, {}, [](size_t) { return at::Tensor(); });
        return test::error_of([&] { gguf_tokenizer_json(*GgufReader::open(dir.file("v.gguf"))); });
    };
    const GgufValue normal = {"tokenizer.ggml.token_type", GgufType::kArray, GgufType::kInt32, {1, 1, 3}};
    EXPECT_EQ(message_of({"a", "b", "<s>"}, normal), "<no error>");
    std::string message = message_of({"a", "b", "a"}, normal);
    EXPECT_NE(message.find("lists 'a' twice (ids 0 and 2)"), std::string::npos) << message;
    message = message_of({"a", "b", "<s>"}, {"tokenizer.ggml.token_type", GgufType::kArray, GgufType::kFloat32,
                                              {3.9, 1.0, 3.0}});
    EXPECT_NE(message.find("token_type of token 0 is 3.9"), std::string::npos) << message;
    message = message_of({"a", "b", "<s>"}, {"tokenizer.ggml.token_type", GgufType::kArray, GgufType::kUint64,
                                              {1, 1, (uint64_t{1} << 32) + 3}});
    EXPECT_NE(message.find("token_type of token 2 is 4294967299"), std::string::npos) << message;
}

TEST(Gguf, ExportOfStories260KEqualsLlamaCppsConversion) {
    test::TempDir dir;
    Checkpoint bin = read_llama2c(test::stories_bin());
    write_hf_folder(dir.file("hf"), bin.config, *bin.tensors, test::stories_tokenizer(), false);
    const Checkpoint hf = load_checkpoint(dir.file("hf"));
    export_dense(hf, dir.file("s.gguf"), {"gguf", "fp32", true, false});
    const auto ours = GgufReader::open(dir.file("s.gguf"));
    const auto ref = GgufReader::open(test::data_path("models/stories260K/stories260K.gguf"));
    ASSERT_EQ(ours->tensors().size(), ref->tensors().size());
    for (const auto& t : ref->tensors()) {
        ASSERT_NE(ours->find(t.name), nullptr) << t.name;
        EXPECT_EQ(ours->find(t.name)->ne, t.ne) << t.name;
        EXPECT_TRUE(at::equal(ours->tensor(t.name), ref->tensor(t.name))) << t.name;
    }
    for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                            "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "llama.block_count",
                            "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
                            "llama.attention.head_count_kv", "llama.rope.dimension_count", "general.architecture"}) {
        ASSERT_NE(ours->find_value(key), nullptr) << key;
        EXPECT_EQ(ours->find_value(key)->value, ref->find_value(key)->value) << key;
    }
    // And it reads back as the same model.
    const Checkpoint g = load_checkpoint(dir.file("s.gguf"), test::stories_tokenizer());
    EXPECT_EQ(g.format, "gguf");
    EXPECT_EQ(g.config.n_kv_heads, hf.config.n_kv_heads);
    for (const auto& name : llama_tensor_names(hf.config))
        if (name != "lm_head.weight") EXPECT_TRUE(at::equal(g.tensors->get(name), hf.tensors->get(name))) << name;
    EXPECT_THROW(export_dense(hf, dir.file("s.gguf"), {"gguf", "fp32", true, false}), ConfigError);  // exists
    EXPECT_THROW(export_dense(hf, dir.file("x"), {"onnx", "fp32", true, false}), ConfigError);
}

// q and k are permuted from llama.cpp's RoPE row order as they are read: a q or k of another shape than the metadata
// implies is a FormatError naming it, not LibTorch's untyped error from the permutation (a fuzzer finding).
TEST(Gguf, RotaryTensorsOfAnotherShapeAreRefusedBeforeThePermutation) {
    test::TempDir dir;
    const auto ref = GgufReader::open(test::data_path("models/stories260K/stories260K.gguf"));
    for (const char* bad : {"blk.0.attn_q.weight", "blk.1.attn_k.weight"}) {
        std::vector<GgufTensorSpec> specs;
        for (const auto& t : ref->tensors()) {
            std::vector<int64_t> shape(t.ne.rbegin(), t.ne.rend());
            if (t.name == bad) shape = {shape[0] * shape[1]};  // flattened to one dimension
            specs.push_back({t.name, at::kFloat, shape});
        }
        const std::string path = dir.file(std::string(bad) + ".gguf");
        write_gguf(path, ref->metadata(), specs,
                   [&](size_t i) { return ref->tensor(specs[i].name).to(at::kFloat).reshape(specs[i].shape); });
        const Checkpoint g = load_checkpoint(path, test::stories_tokenizer());
        const std::string hf = std::string(bad).find("attn_q") != std::string::npos
                                   ? "model.layers.0.self_attn.q_proj.weight"
                                   : "model.layers.1.self_attn.k_proj.weight";
        EXPECT_THAT(test::error_of([&] { g.tensors->get(hf); }),
                    ::testing::AllOf(::testing::HasSubstr(bad), ::testing::HasSubstr("the metadata implies")));
    }
}

// Scaled RoPE in GGUF as llama.cpp spells it: llama3 as the rope_freqs tensor (divisors of the plain frequencies),
// linear as llama.rope.scaling.*; both read back to the same frequencies. yarn is refused (llama.cpp's parameters
// differ from transformers').
TEST(Gguf, ScaledRopeExportsAsLlamaCppSpellsItAndReadsBack) {
    test::TempDir dir;
    Checkpoint bin = read_llama2c(test::stories_bin());
    LlamaConfig c = bin.config;
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.low_freq_factor = 1.0;
    c.rope_scaling.high_freq_factor = 4.0;
    c.rope_scaling.original_max_position_embeddings = 64;
    write_hf_folder(dir.file("llama3"), c, *bin.tensors, test::stories_tokenizer(), false);
    const Checkpoint hf = load_checkpoint(dir.file("llama3"));
    ASSERT_EQ(hf.config.rope_scaling.type, "llama3");
    export_dense(hf, dir.file("l3.gguf"), {"gguf", "fp32", true, false});
    const auto reader = GgufReader::open(dir.file("l3.gguf"));
    ASSERT_NE(reader->find("rope_freqs.weight"), nullptr);
    const Checkpoint g = load_checkpoint(dir.file("l3.gguf"), test::stories_tokenizer());
    EXPECT_EQ(g.config.rope_scaling.type, "freq_factors");
    const auto ours = rope_inverse_frequencies(g.config), ref = rope_inverse_frequencies(hf.config);
    ASSERT_EQ(ours.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(ours[i], ref[i], 1e-7 * ref[i]) << i;  // factors are F32

    c.rope_scaling = RopeScaling{};
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = 4.0;
    write_hf_folder(dir.file("linear"), c, *bin.tensors, test::stories_tokenizer(), false);
    export_dense(load_checkpoint(dir.file("linear")), dir.file("lin.gguf"), {"gguf", "fp32", true, false});
    const Checkpoint gl = load_checkpoint(dir.file("lin.gguf"), test::stories_tokenizer());
    EXPECT_EQ(gl.config.rope_scaling.type, "linear");
    EXPECT_EQ(gl.config.rope_scaling.factor, 4.0);
    EXPECT_EQ(GgufReader::open(dir.file("lin.gguf"))->find("rope_freqs.weight"), nullptr);

    c.rope_scaling.type = "yarn";
    c.rope_scaling.original_max_position_embeddings = 64;
    write_hf_folder(dir.file("yarn"), c, *bin.tensors, test::stories_tokenizer(), false);
    EXPECT_THROW(export_dense(load_checkpoint(dir.file("yarn")), dir.file("y.gguf"), {"gguf", "fp32", true, false}),
                 ConfigError);
    EXPECT_FALSE(path_exists(dir.file("y.gguf")));
}

}  // namespace
}  // namespace saliq

namespace saliq {
namespace {

// Q8_0 / Q4_0 / Q4_1 blocks written by hand (ggml's layouts) read back as ggml's dequantizers compute them.
TEST(Gguf, BlockQuantizedTensorsAreDequantizedOnRead) {
    test::TempDir dir;
    auto half_bytes = [](float v) {
        const uint16_t h = at::Half(v).x;
        return std::string(reinterpret_cast<const char*>(&h), 2);
    };
    std::string q8 = half_bytes(0.5f), q40 = half_bytes(0.25f), q41 = half_bytes(0.125f) + half_bytes(-1.0f);
    std::vector<float> e8, e40(32), e41(32);
    for (int j = 0; j < 32; ++j) {
        const int8_t v = static_cast<int8_t>(j * 7 - 100);
        q8.push_back(static_cast<char>(v));
        e8.push_back(0.5f * v);
    }
    for (int j = 0; j < 16; ++j) {
        const int lo = j, hi = 15 - j;
        q40.push_back(static_cast<char>(lo | (hi << 4)));
        q41.push_back(static_cast<char>(lo | (hi << 4)));
        e40[j] = 0.25f * (lo - 8), e40[j + 16] = 0.25f * (hi - 8);
        e41[j] = 0.125f * lo - 1.0f, e41[j + 16] = 0.125f * hi - 1.0f;
    }
    // A GGUF with three F32 placeholders, whose type ids and bytes are then patched to the block types.
    const std::string path = dir.file("q.gguf");
    write_gguf(path, {}, {{"a", at::kFloat, {8}}, {"b", at::kFloat, {8}}, {"c", at::kFloat, {8}}},
               [](size_t) { return at::zeros({8}); });
    std::string bytes = test::read_bytes(path);
    const auto r0 = GgufReader::open(path);
    // Rewrite: tensor infos keep their names; set ne = 32, types 8 / 2 / 3 and the offsets of the new data.
    std::string head = bytes.substr(0, bytes.size() - 3 * 32);
    auto patch_u64 = [&](size_t at, uint64_t v) { std::memcpy(&head[at], &v, 8); };
    auto patch_u32 = [&](size_t at, uint32_t v) { std::memcpy(&head[at], &v, 4); };
    size_t pos = 24;  // after magic, version, counts
    const uint32_t types[3] = {8, 2, 3};
    const std::string data[3] = {q8, q40, q41};
    uint64_t offset = 0;
    for (int i = 0; i < 3; ++i) {
        pos += 8 + 1;  // name length + one-character name
        pos += 4;      // n_dims
        patch_u64(pos, 32);
        pos += 8;
        patch_u32(pos, types[i]);
        pos += 4;
        patch_u64(pos, offset);
        pos += 8;
        offset += (data[i].size() + 31) / 32 * 32;
    }
    std::string body;
    for (const auto& d : data) body += d + std::string((32 - d.size() % 32) % 32, '\0');
    write_file_atomic(path, [&](std::ostream& o) { o << head << body; });
    const auto r = GgufReader::open(path);
    EXPECT_TRUE(at::equal(r->tensor("a"), at::tensor(e8)));
    EXPECT_TRUE(at::equal(r->tensor("b"), at::tensor(e40)));
    EXPECT_TRUE(at::equal(r->tensor("c"), at::tensor(e41)));
    (void)r0;
}

}  // namespace
}  // namespace saliq
