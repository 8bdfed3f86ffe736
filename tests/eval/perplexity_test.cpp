#include "saliq/perplexity.h"

#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "model_fixture.h"
#include "saliq/corpus.h"
#include "saliq/error.h"
#include "saliq/model.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

TEST(Perplexity, UniformModelScoresVocabularySize) {
    // A zero head gives equal logits everywhere: every token costs log(V), so ppl is exactly V.
    const LlamaConfig c = test::tiny_config();
    auto weights = test::random_weights(c);
    weights[hf_names::kLmHead].zero_();
    auto model = LlamaModel::load(test::memory_checkpoint(c, weights), {});
    std::vector<int32_t> tokens(100);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7) % 64);
    PerplexityOptions options;
    options.seqlen = 16;
    const auto r = evaluate_perplexity(*model, tokens, options);
    EXPECT_EQ(r.n_windows, 6);            // 100 / 16, tail dropped
    EXPECT_EQ(r.tokens_scored, 6 * 15);
    EXPECT_NEAR(r.ppl, 64.0, 1e-3);
}

TEST(Perplexity, MatchesAHandComputedCrossEntropy) {
    const LlamaConfig c = test::tiny_config();
    auto model = LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c)), {});
    std::vector<int32_t> tokens = {1, 5, 9, 33, 2, 7, 7, 60, 12, 3, 44, 8, 0, 19};
    PerplexityOptions options;
    options.seqlen = 7;
    options.batch_size = 2;
    const auto r = evaluate_perplexity(*model, tokens, options);
    double nll = 0.0;
    ASSERT_EQ(r.window_nll.size(), 2u);
    for (int w = 0; w < 2; ++w) {
        std::vector<int64_t> window(tokens.begin() + 7 * w, tokens.begin() + 7 * (w + 1));
        at::Tensor logp = at::log_softmax(model->forward(at::tensor(window).unsqueeze(0))[0], -1);
        double window_nll = 0.0;
        for (int t = 0; t < 6; ++t) window_nll -= logp[t][window[static_cast<size_t>(t + 1)]].item<double>();
        EXPECT_NEAR(r.window_nll[static_cast<size_t>(w)], window_nll, 1e-5 * window_nll) << "window " << w;
        nll += window_nll;
    }
    EXPECT_NEAR(r.nll_sum, nll, 1e-6 * nll);
    EXPECT_NEAR(r.ppl, std::exp(nll / 12.0), 1e-6 * r.ppl);
}

TEST(Perplexity, MaxWindowsAndBadOptions) {
    const LlamaConfig c = test::tiny_config();
    auto model = LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c)), {});
    std::vector<int32_t> tokens(64, 5);
    PerplexityOptions options;
    options.seqlen = 8;
    options.max_windows = 3;
    EXPECT_EQ(evaluate_perplexity(*model, tokens, options).n_windows, 3);
    options.seqlen = 128;  // beyond max_position_embeddings 64
    EXPECT_THROW(evaluate_perplexity(*model, tokens, options), ConfigError);
    options.seqlen = 8;
    EXPECT_THROW(evaluate_perplexity(*model, std::vector<int32_t>(5, 1), options), ConfigError);
}

TEST(Stories260K, Llama2cAndHfPathsAgree) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const auto tokens = perplexity_tokens("tinystories", *tok, 256);
    EXPECT_EQ(tokens[0], 1);
    Checkpoint bin = read_llama2c(test::stories_bin());
    test::TempDir dir;
    write_hf_folder(dir.file("hf"), bin.config, *bin.tensors, "", false);
    PerplexityOptions options;
    options.seqlen = 256;
    options.max_windows = 8;
    const auto a = evaluate_perplexity(*LlamaModel::load(bin, {}), tokens, options);
    const auto b = evaluate_perplexity(*LlamaModel::load(load_checkpoint(dir.file("hf")), {}), tokens, options);
    EXPECT_NEAR(a.ppl, b.ppl, 1e-4 * a.ppl);
    // A trained model on its own domain: far below the uniform 512.
    EXPECT_GT(a.ppl, 2.0);
    EXPECT_LT(a.ppl, 8.0);
}

TEST(Stories260K, StreamedBlocksScoreLikeResidentBlocks) {
    // eval of perplexity alone keeps no block resident and runs block-major; the windows' scores must not change.
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const auto tokens = perplexity_tokens("tinystories", *tok, 128);
    test::TempDir dir;
    Checkpoint bin = read_llama2c(test::stories_bin());
    write_hf_folder(dir.file("hf"), bin.config, *bin.tensors, "", false);
    const Checkpoint hf = load_checkpoint(dir.file("hf"));
    ModelOptions streamed;
    streamed.stream_blocks = true;
    auto model = LlamaModel::load(hf, streamed);
    EXPECT_TRUE(model->streams_blocks());
    EXPECT_THROW(model->block(0), ConfigError);
    for (int64_t batch : {1, 3}) {
        PerplexityOptions options;
        options.seqlen = 128;
        options.max_windows = 10;
        options.batch_size = batch;
        const auto resident = evaluate_perplexity(*LlamaModel::load(hf, {}), tokens, options);
        const auto stream = evaluate_perplexity(*model, tokens, options);
        EXPECT_EQ(stream.n_windows, 10);
        EXPECT_NEAR(stream.nll_sum, resident.nll_sum, 1e-6 * resident.nll_sum) << "batch " << batch;
    }
    // Window-major calls still work on a streaming model (each block read when it runs).
    const at::Tensor ids = at::tensor(std::vector<int64_t>(tokens.begin(), tokens.begin() + 32), at::kLong).view({1, 32});
    c10::InferenceMode guard;
    EXPECT_LT((model->forward(ids) - LlamaModel::load(hf, {})->forward(ids)).abs().max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace saliq
