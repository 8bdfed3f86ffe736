// GGUF: the container round-trips every value type, refuses truncated files and quantized tensors by name; the
// LLaMA export of the converted stories260K equals llama.cpp's own conversion tensor for tensor and piece for piece.
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

TEST(Gguf, ExportOfStories260KEqualsLlamaCppsConversion) {
    test::TempDir dir;
    Checkpoint bin = read_llama2c(test::stories_bin());
    write_hf_folder(dir.file("hf"), bin.config, *bin.tensors, test::stories_tokenizer(), false);
    const Checkpoint hf = load_checkpoint(dir.file("hf"));
    export_dense(hf, dir.file("s.gguf"), {"gguf", "f32", true, false});
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
    EXPECT_THROW(export_dense(hf, dir.file("s.gguf"), {"gguf", "f32", true, false}), ConfigError);  // exists
    EXPECT_THROW(export_dense(hf, dir.file("x"), {"onnx", "f32", true, false}), ConfigError);
}

}  // namespace
}  // namespace saliq
