// quantize --grid end to end: folders of GGML blocks that evaluate as the in-memory model, resume, and export to
// GGUF bit for bit with the adapters as a GGUF LoRA adapter.
#include <gmock/gmock.h>

#include <cmath>

#include <ATen/ATen.h>

#include "model_fixture.h"
#include "quant/quant_fixture.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/ggml_activations.h"
#include "saliq/gguf.h"
#include "saliq/model.h"
#include "saliq/quantize.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

// 256-wide rows (k-quants' super-block) for q/k/v/gate/up, 512 for down; the stories260K vocabulary.
LlamaConfig grid_config() {
    LlamaConfig c = test::tiny_config();
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 64;
    c.vocab_size = 512;
    c.max_position_embeddings = 256;
    return c;
}

Checkpoint grid_checkpoint(const LlamaConfig& c) {
    Checkpoint ckpt = test::memory_checkpoint(c, test::random_weights(c, 7));
    ckpt.tokenizer_path = test::stories_tokenizer();
    return ckpt;
}

QuantizeOptions grid_options(const std::string& method, GgmlGrid grid) {
    QuantizeOptions o = test::small_options(method, ggml_grid_traits(grid).bits, ggml_grid_traits(grid).sub_block);
    o.spec.symmetric = !ggml_grid_traits(grid).has_min;
    o.spec.grid = grid;
    return o;
}

using test::quantize_to;

TEST(GgmlGridPipeline, FoldersOfBlocksScoreLikeTheInMemoryModel) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = grid_checkpoint(grid_config());
    test::TempDir dir;
    for (const auto& [method, grid] : std::vector<std::pair<std::string, GgmlGrid>>{
             {"rtn", GgmlGrid::kQ4_K}, {"gptq", GgmlGrid::kQ2_K}, {"gptq", GgmlGrid::kQ3_K}, {"rtn", GgmlGrid::kIQ4_NL}}) {
        const std::string out = dir.file(method + "-" + ggml_grid_traits(grid).name);
        auto fake = quantize_to(ckpt, *tok, grid_options(method, grid), out);
        const Checkpoint packed = load_checkpoint(out);
        EXPECT_EQ(packed.format, "saliq_ggml");
        EXPECT_EQ(packed.packed.grid, grid);
        const at::Tensor type = packed.tensors->get("model.layers.1.mlp.down_proj.ggml_type");
        EXPECT_EQ(type.item<int32_t>(), static_cast<int32_t>(ggml_grid_traits(grid).ggml_type));
        auto reloaded = LlamaModel::load(packed, {});
        const double a = test::heldout_ppl(*fake, *tok, 8), b = test::heldout_ppl(*reloaded, *tok, 8);
        EXPECT_NEAR(a, b, 1e-5 * a) << method << " " << ggml_grid_traits(grid).name;
    }
}

TEST(GgmlGridPipeline, GptqOnTheGridReconstructsBetterThanRoundToNearest) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = grid_checkpoint(grid_config());
    test::TempDir dir;
    for (GgmlGrid grid : {GgmlGrid::kQ2_K, GgmlGrid::kQ4_0}) {
        QuantizeResult rtn, gptq;
        QuantizeOptions r = grid_options("rtn", grid), g = grid_options("gptq", grid);
        r.error_windows = g.error_windows = 4;
        quantize_to(ckpt, *tok, r, dir.file(std::string("r") + ggml_grid_traits(grid).name), &rtn);
        quantize_to(ckpt, *tok, g, dir.file(std::string("g") + ggml_grid_traits(grid).name), &gptq);
        // --rtn-importance: the type's scale search weighted by the windows' input mean squares (llama-quantize's
        // imatrix route) beats its plain round-to-nearest too.
        QuantizeResult weighted;
        r.rtn_importance = true;
        quantize_to(ckpt, *tok, r, dir.file(std::string("i") + ggml_grid_traits(grid).name), &weighted);
        double rtn_err = 0, gptq_err = 0, weighted_err = 0;
        for (const auto& b : rtn.blocks) rtn_err += b.block_error;
        for (const auto& b : gptq.blocks) gptq_err += b.block_error;
        for (const auto& b : weighted.blocks) weighted_err += b.block_error;
        EXPECT_LT(gptq_err, rtn_err) << ggml_grid_traits(grid).name;
        EXPECT_LT(weighted_err, rtn_err) << ggml_grid_traits(grid).name;
    }
}

// The training methods learn clipping on the grid itself: the folder holds the type's blocks and scores like the
// in-memory model, ApiQ-bw's adapters ride along, and training reconstructs the blocks better than the grid's RTN.
TEST(GgmlGridPipeline, TrainingMethodsLearnOnTheGrid) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = grid_checkpoint(grid_config());
    test::TempDir dir;
    for (const auto& [method, grid] : std::vector<std::pair<std::string, GgmlGrid>>{
             {"apiq-bw", GgmlGrid::kQ2_K}, {"omniquant", GgmlGrid::kQ3_K}, {"omniquant", GgmlGrid::kQ4_0}}) {
        const std::string name = method + "-" + ggml_grid_traits(grid).name;
        QuantizeOptions o = grid_options(method, grid), r = grid_options("rtn", grid);
        o.apiq.epochs = 2;
        o.apiq.lora_rank = 4;
        QuantizeResult trained, rtn;
        auto fake = quantize_to(ckpt, *tok, o, dir.file(name), &trained);
        quantize_to(ckpt, *tok, r, dir.file(name + "-rtn"), &rtn);
        const Checkpoint packed = load_checkpoint(dir.file(name));
        EXPECT_EQ(packed.format, "saliq_ggml") << name;
        EXPECT_EQ(path_exists(dir.file(name) + "/adapter_model.safetensors"), method == "apiq-bw") << name;
        auto reloaded = LlamaModel::load(packed, {});
        const double a = test::heldout_ppl(*fake, *tok, 8), b = test::heldout_ppl(*reloaded, *tok, 8);
        EXPECT_NEAR(a, b, 1e-5 * a) << name;
        double trained_err = 0, rtn_err = 0;
        for (const auto& blk : trained.blocks) trained_err += blk.block_error;
        for (const auto& blk : rtn.blocks) rtn_err += blk.block_error;
        EXPECT_LT(trained_err, rtn_err) << name;
    }
}

TEST(GgmlGridPipeline, ResumedRunWritesTheSameBlocks) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = grid_checkpoint(grid_config());
    test::TempDir dir;
    const QuantizeOptions o = grid_options("rtn", GgmlGrid::kQ2_K);
    const std::string straight = dir.file("straight"), resumed = dir.file("resumed");
    quantize_to(ckpt, *tok, o, straight);
    try {
        GptqFolderWriter writer(resumed, ckpt, o, false);
        quantize_model(ckpt, *tok, o, &writer, [](const ProgressEvent& e) { return e.done < 1; });
        FAIL() << "expected cancellation";
    } catch (const Cancelled&) {
    }
    {
        GptqFolderWriter writer(resumed, ckpt, o, false, /*resume=*/true);
        writer.finish(quantize_model(ckpt, *tok, o, &writer), {});
    }
    const auto a = load_checkpoint(straight), b = load_checkpoint(resumed);
    for (const std::string name : {"model.layers.0.mlp.down_proj.qweight", "model.layers.1.self_attn.q_proj.qweight"})
        EXPECT_TRUE(at::equal(a.tensors->get(name), b.tensors->get(name))) << name;
}

TEST(GgmlGridPipeline, GgufExportWritesTheBlocksAndTheAdapter) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const LlamaConfig c = grid_config();
    const Checkpoint ckpt = grid_checkpoint(c);
    test::TempDir dir;
    const std::string out = dir.file("q");
    quantize_to(ckpt, *tok, grid_options("rtn", GgmlGrid::kQ2_K), out);
    // A PEFT adapter on layer 0's q_proj and down_proj: r 4, lora_alpha 8 (scale 2).
    at::manual_seed(1);
    const at::Tensor qa = at::randn({4, 256}), qb = at::randn({256, 4}), da = at::randn({4, 512}), db = at::randn({256, 4});
    write_safetensors(out + "/adapter_model.safetensors",
                      {{hf_names::lora_key("model.layers.0.self_attn.q_proj", 'A'), qa},
                       {hf_names::lora_key("model.layers.0.self_attn.q_proj", 'B'), qb},
                       {hf_names::lora_key("model.layers.0.mlp.down_proj", 'A'), da},
                       {hf_names::lora_key("model.layers.0.mlp.down_proj", 'B'), db}},
                      {{"format", "pt"}});
    test::write_bytes(out + "/adapter_config.json",
                      R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "down_proj"],
                          "layers_to_transform": [0]})");
    const Checkpoint packed = load_checkpoint(out);
    DenseExportOptions e;
    e.format = "gguf";
    export_dense(packed, dir.file("q.gguf"), e);
    const auto gguf = GgufReader::open(dir.file("q.gguf"));
    EXPECT_EQ(gguf->find("blk.0.ffn_down.weight")->ggml_type, 10u);  // Q2_K
    EXPECT_EQ(gguf->find("blk.0.attn_v.weight")->ggml_type, 10u);
    EXPECT_EQ(gguf->find("token_embd.weight")->ggml_type, kGgmlF32);
    EXPECT_EQ(gguf->find_value("general.file_type")->value.get<int>(), 10);
    // The adapter: alpha = r x scale, A as stored, B's rows in llama.cpp's rotary order for q.
    const auto lora = GgufReader::open(dir.file("q.lora.gguf"));
    EXPECT_EQ(lora->find_value("general.type")->value.get<std::string>(), "adapter");
    EXPECT_EQ(lora->find_value("adapter.type")->value.get<std::string>(), "lora");
    EXPECT_FLOAT_EQ(lora->find_value("adapter.lora.alpha")->value.get<float>(), 8.0f);
    EXPECT_EQ(lora->tensors().size(), 4u);
    EXPECT_TRUE(at::equal(lora->tensor("blk.0.attn_q.weight.lora_a"), qa));
    EXPECT_TRUE(at::equal(lora->tensor("blk.0.attn_q.weight.lora_b"), permute_rotary_rows_to_meta(qb, c.n_heads)));
    EXPECT_TRUE(at::equal(lora->tensor("blk.0.ffn_down.weight.lora_b"), db));
    EXPECT_EQ(lora->find("blk.0.ffn_down.weight.lora_a")->ne, (std::vector<int64_t>{512, 4}));
    // The blocks are the folder's bit for bit, q's rows permuted as rows of bytes.
    EXPECT_TRUE(at::equal(gguf->raw("blk.1.attn_q.weight"),
                          permute_rotary_rows_to_meta(packed.tensors->get("model.layers.1.self_attn.q_proj.qweight"),
                                                      c.n_heads)));
    EXPECT_TRUE(at::equal(gguf->raw("blk.1.ffn_down.weight"), packed.tensors->get("model.layers.1.mlp.down_proj.qweight")));
    EXPECT_THAT(test::error_of([&] { gguf->tensor("blk.1.attn_q.weight"); }), ::testing::HasSubstr("Q2_K"));
    // --merge: the dense weights with the adapter merged, as before.
    e.merge = true;
    export_dense(packed, dir.file("merged.gguf"), e);
    EXPECT_EQ(GgufReader::open(dir.file("merged.gguf"))->find("blk.0.ffn_down.weight")->ggml_type, kGgmlF32);
    // An adapter file in the way is refused without --force.
    e.merge = false;
    EXPECT_THROW(export_dense(packed, dir.file("q.gguf"), e), ConfigError);
}

// A GPTQ folder of the default grid goes to GGUF in the GGML type that holds its codes: symmetric W4 as Q4_0 and W8
// as Q8_0 exactly, asymmetric W2 as Q4_1 (m rounded to fp16), groups of 16 dense.
TEST(GgmlGridPipeline, UniformFoldersExportInTheTypeThatHoldsTheirCodes) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = grid_checkpoint(grid_config());
    test::TempDir dir;
    struct Case {
        int bits;
        int64_t group;
        bool symmetric;
        uint32_t type;
    };
    for (const Case& k : {Case{4, 64, true, kGgmlQ4_0}, Case{3, 32, true, kGgmlQ4_0}, Case{8, 32, true, kGgmlQ8_0},
                          Case{2, 32, false, kGgmlQ4_1}, Case{4, 16, false, kGgmlF32}}) {
        QuantizeOptions o = test::small_options("rtn", k.bits, k.group);
        o.spec.symmetric = k.symmetric;
        const std::string name = strprintf("w%d-g%lld-%d", k.bits, (long long)k.group, k.symmetric);
        quantize_to(ckpt, *tok, o, dir.file(name));
        const Checkpoint packed = load_checkpoint(dir.file(name));
        DenseExportOptions e;
        e.format = "gguf";
        export_dense(packed, dir.file(name + ".gguf"), e);
        const auto gguf = GgufReader::open(dir.file(name + ".gguf"));
        EXPECT_EQ(gguf->find("blk.1.ffn_down.weight")->ggml_type, k.type) << name;
        if (k.type == kGgmlF32) continue;
        // Q4_0 / Q8_0 / Q4_1 are read back by saliq's own GGUF reader (dequantized), against the folder's values.
        const at::Tensor want = load_quantized_linear(*packed.tensors, packed.packed, "model.layers.1.mlp.down_proj",
                                                      256, 512).dequantize();
        const double diff = (gguf->tensor("blk.1.ffn_down.weight") - want).abs().max().item<double>();
        if (k.type == kGgmlQ4_1) {
            EXPECT_LT(diff, 1e-3 * want.abs().max().item<double>()) << name;
        } else {
            EXPECT_EQ(diff, 0.0) << name;
        }
    }
}

TEST(GgmlGridPipeline, EmulatingLlamacppRoundsTheInputOfEveryProductAsGgmlCpuDoes) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = grid_checkpoint(grid_config());
    test::TempDir dir;
    const std::string out = dir.file("q4_k");
    quantize_to(ckpt, *tok, grid_options("rtn", GgmlGrid::kQ4_K), out);
    const Checkpoint packed = load_checkpoint(out);
    ModelOptions emulate;
    emulate.emulate_llamacpp = "fp16";
    auto plain = LlamaModel::load(packed, {});
    auto llama = LlamaModel::load(packed, emulate);
    // Each linear multiplies the Q8_K-rounded input with the same weight.
    const at::Tensor x = at::randn({2, 5, 256}, at::TensorOptions().dtype(at::kFloat));
    const Linear& q = *llama->block(0).linears[kQProj];
    const at::Tensor want = at::linear(ggml_round_activations(x, GgmlGrid::kQ4_K), q.weight());
    EXPECT_LT((q.forward(x) - want).abs().max().item<float>(), 1e-5f);
    EXPECT_TRUE(at::equal(q.weight(), plain->block(0).linears[kQProj]->weight()));
    EXPECT_GT((q.forward(x) - plain->block(0).linears[kQProj]->forward(x)).abs().max().item<float>(), 1e-4f);
    // The head computes in fp16 values: its input and weight rounded to the export's dtype.
    const at::Tensor h = at::randn({1, 3, 256});
    const at::Tensor head_in =
        rms_norm(h, packed.tensors->get(hf_names::kFinalNorm).to(at::kFloat), packed.config.rms_norm_eps);
    const at::Tensor head_w =
        packed.tensors->get(packed.config.tie_word_embeddings ? hf_names::kEmbed : hf_names::kLmHead).to(at::kFloat);
    const at::Tensor head_want = at::linear(head_in.to(at::kHalf).to(at::kFloat), head_w.to(at::kHalf).to(at::kFloat));
    EXPECT_LT((llama->head(h) - head_want).abs().max().item<float>(), 1e-4f);
    // Near the float product's perplexity but not equal (this random model's is ~1e10: compared in nats).
    const double a = test::heldout_ppl(*plain, *tok, 8), b = test::heldout_ppl(*llama, *tok, 8);
    EXPECT_NE(a, b);
    EXPECT_NEAR(std::log(a), std::log(b), 0.1);
    // Only a --grid folder has GGML products to reproduce; the dtype is the export's.
    EXPECT_THAT(test::error_of([&] { LlamaModel::load(ckpt, emulate); }), ::testing::HasSubstr("--grid"));
    emulate.emulate_llamacpp = "fp8";
    EXPECT_THAT(test::error_of([&] { LlamaModel::load(packed, emulate); }), ::testing::HasSubstr("--emulate-llamacpp"));
}

TEST(GgmlGridPipeline, RequestsTheGridCannotHoldAreRefused) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = grid_checkpoint(grid_config());
    auto refusal = [&](QuantizeOptions o) { return test::error_of([&] { validate_quantize_options(ckpt, *tok, o); }); };
    EXPECT_THAT(refusal(grid_options("slim-llm", GgmlGrid::kQ2_K)),
                ::testing::HasSubstr("quantized by rtn, gptq, omniquant, apiq-bw or apiq-lw, not slim-llm"));
    EXPECT_THAT(refusal(grid_options("apiq-bw", GgmlGrid::kIQ4_NL)), ::testing::HasSubstr("fixed levels"));
    QuantizeOptions act = grid_options("gptq", GgmlGrid::kQ4_K);
    act.gptq.act_order = true;
    EXPECT_THAT(refusal(act), ::testing::HasSubstr("act-order"));
    QuantizeOptions bits = grid_options("rtn", GgmlGrid::kQ4_K);
    bits.spec.bits = 3;
    EXPECT_THAT(refusal(bits), ::testing::HasSubstr("q4_k stores 4-bit codes"));
    // stories-like rows of 40 inputs fit no GGML type.
    const Checkpoint narrow = test::memory_checkpoint(test::tiny_config(), test::random_weights(test::tiny_config()));
    QuantizeOptions o = grid_options("rtn", GgmlGrid::kQ4_0);
    EXPECT_THAT(test::error_of([&] { validate_quantize_options(narrow, *tok, o); }), ::testing::HasSubstr("fit no GGML"));
}

}  // namespace
}  // namespace saliq
