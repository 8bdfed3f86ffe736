// The method traits table: a method is its own code plus one row, and what it supports is asked of the row.
#include "saliq/method_traits.h"

#include <gmock/gmock.h>

#include <ATen/ATen.h>

#include "model_fixture.h"
#include "quant/method.h"
#include "quant/quant_fixture.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/quantize.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

// A method written here, not in src/: round-to-nearest, counting the blocks it saw.
class CountingRtn : public QuantMethod {
public:
    nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& context) override {
        finished_.clear();
        for (auto& linear : block.linears) {
            LinearResult lr;
            lr.q = quantize_rtn(linear->weight(), context.options->spec);
            linear = std::make_shared<QuantizedLinear>(lr.q, block.input_norm.options());
            finished_.push_back(std::move(lr));
        }
        return {{"linears", finished_.size()}};
    }
    std::vector<LinearResult> take_results() override { return std::move(finished_); }

private:
    std::vector<LinearResult> finished_;
};

const char* const kName = "test-counting-rtn";

void register_once() {
    for (const auto& m : method_table())
        if (m.name == kName) return;
    MethodTraits t;
    t.name = kName;
    t.summary = "RTN, defined by a test";
    t.make = [] { return std::make_unique<CountingRtn>(); };
    t.needs_calibration = true;  // so that the pipeline runs windows through it
    register_method(t);
}

TEST(MethodTraits, AMethodRegisteredOutsideTheLibraryRunsEndToEnd) {
    register_once();
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    ckpt.tokenizer_path = test::stories_tokenizer();
    test::TempDir dir;
    QuantizeOptions o = test::small_options(kName, 4, 32);
    QuantizeResult result;
    test::quantize_to(ckpt, *tok, o, dir.file("q"), &result);
    ASSERT_EQ(result.blocks.size(), static_cast<size_t>(ckpt.config.n_layers));
    EXPECT_EQ(result.blocks[0].method_stats["linears"], kNumLinears);
    // The folder holds what the method computed: RTN of the FP weights.
    const auto fp = LlamaModel::load(ckpt, {});
    const Checkpoint folder = load_checkpoint(dir.file("q"));
    EXPECT_EQ(folder.packed.bits, 4);
    const auto reloaded = LlamaModel::load(folder, {});
    for (int i = 0; i < kNumLinears; ++i) {
        const at::Tensor want = quantize_rtn(fp->block(0).linears[static_cast<size_t>(i)]->weight(), o.spec).dequantize();
        EXPECT_TRUE(at::allclose(reloaded->block(0).linears[static_cast<size_t>(i)]->weight(), want, 1e-5, 1e-6)) << i;
    }
    const auto manifest = nlohmann::json::parse(test::read_bytes(dir.file("q/saliq_manifest.json")));
    EXPECT_EQ(manifest["method"], kName);
}

TEST(MethodTraits, WhatAMethodSupportsComesFromItsRow) {
    register_once();
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = read_llama2c(test::stories_bin());
    QuantizeOptions o = test::small_options(kName, 2, 32);
    o.saliency.enabled = true;  // the row says it does not train
    std::string error = test::error_of([&] { validate_quantize_options(ckpt, *tok, o); });
    EXPECT_THAT(error, ::testing::HasSubstr("--saliency"));
    EXPECT_THAT(error, ::testing::HasSubstr("apiq-bw"));
    EXPECT_THAT(error, ::testing::Not(::testing::HasSubstr(std::string(kName) + ",")));
    o = test::small_options(kName, 4, 32);
    o.spec.symmetric = true;
    o.spec.grid = GgmlGrid::kQ4_0;  // nor quantize onto GGML types
    EXPECT_THAT(test::error_of([&] { validate_quantize_options(ckpt, *tok, o); }),
                ::testing::HasSubstr("quantized by rtn, gptq, omniquant, apiq-bw or apiq-lw, not " + std::string(kName)));
    o = test::small_options(kName, 2, 32);
    o.bit_map = "slim";
    EXPECT_THAT(test::error_of([&] { validate_quantize_options(ckpt, *tok, o); }),
                ::testing::HasSubstr("--bit-map is trained by omniquant, slim-llm-plus or apiq-bw"));
    EXPECT_THAT(test::error_of([] { (void)method_traits("no-such-method"); }), ::testing::HasSubstr(kName));
    MethodTraits again;
    again.name = kName;
    again.make = [] { return std::make_unique<CountingRtn>(); };
    EXPECT_THROW(register_method(again), ConfigError);
}

// The table answers what the code used to compare names for.
TEST(MethodTraits, BuiltinRowsSayWhatEachMethodDoes) {
    EXPECT_FALSE(method_traits("rtn").needs_calibration);
    EXPECT_TRUE(method_traits("gptq").groups_ordered_by_default);
    EXPECT_FALSE(method_traits("slim-llm").groups_ordered_by_default);
    EXPECT_TRUE(method_traits("apiq-bw").trains_adapters);
    EXPECT_FALSE(method_traits("omniquant").trains_adapters);
    EXPECT_TRUE(method_traits("omniquant").learns_clipping);
    EXPECT_TRUE(method_traits("slim-llm-plus").allocates_bits);
    EXPECT_EQ(methods_where(&MethodTraits::supports_ggml_grid), "rtn, gptq, omniquant, apiq-bw or apiq-lw");
    EXPECT_EQ(methods_where(&MethodTraits::trains_adapters), "apiq-bw or apiq-lw");
}

}  // namespace
}  // namespace saliq
