// Zero-shot scoring: harness v0.4 request encoding, the batched log-likelihood engine against a direct one-request
// computation, prefix sharing, and the metric math (argmax, length normalization, stderr) on hand-checked cases.
#include <cmath>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "model_fixture.h"
#include "saliq/error.h"
#include "saliq/model.h"
#include "saliq/tokenizer.h"
#include "saliq/zeroshot.h"
#include "test_utils.h"

namespace saliq {
namespace {

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// The harness's loop for one request, no batching: inp = (ctx + cont)[-(L + 1):][:-1], then the summed
// log-softmax of the continuation tokens at the last len(cont) positions.
LoglikelihoodResult reference_loglikelihood(const LlamaModel& model, const TokenizedRequest& r, int64_t max_length) {
    const std::vector<int32_t> full = concat(r.context, r.continuation);
    const size_t keep = std::min(full.size(), static_cast<size_t>(max_length + 1));
    const std::vector<int64_t> inp(full.end() - static_cast<std::ptrdiff_t>(keep), full.end() - 1);
    const at::Tensor logp = at::log_softmax(model.forward(at::tensor(inp).unsqueeze(0))[0], -1);  // [T, V]
    LoglikelihoodResult out;
    out.is_greedy = true;
    // Continuations longer than the window: their last n tokens (those the kept positions predict).
    const size_t n = inp.size(), c = std::min(r.continuation.size(), n), skip = r.continuation.size() - c;
    for (size_t j = 0; j < c; ++j) {
        const auto row = logp[static_cast<int64_t>(n - c + j)];
        const int32_t token = r.continuation[skip + j];
        out.logprob += row[token].item<double>();
        out.is_greedy = out.is_greedy && row.argmax().item<int64_t>() == token;
    }
    return out;
}

std::shared_ptr<Tokenizer> stories_tokenizer() { return Tokenizer::load(test::stories_tokenizer()); }

// ----- encoding -----

TEST(ZeroShotEncoding, JointEncodingAsHarnessV04) {
    auto tok = stories_tokenizer();
    const McRequest request{"Question: dresser\nAnswer:", " replace drawer with bobby pin "};
    const TokenizedRequest r = encode_request(*tok, request, /*add_bos=*/true);
    const auto ctx = tok->encode(request.context);
    const auto whole = tok->encode(request.context + request.continuation);
    ASSERT_EQ(r.context.size(), ctx.size() + 1);
    EXPECT_EQ(r.context[0], tok->bos_id());
    EXPECT_EQ(std::vector<int32_t>(r.context.begin() + 1, r.context.end()), ctx);
    EXPECT_EQ(r.continuation, std::vector<int32_t>(whole.begin() + static_cast<std::ptrdiff_t>(ctx.size()), whole.end()));
    EXPECT_EQ(concat(std::vector<int32_t>(r.context.begin() + 1, r.context.end()), r.continuation), whole);

    const TokenizedRequest no_bos = encode_request(*tok, request, false);
    EXPECT_EQ(no_bos.context, ctx);
    EXPECT_EQ(no_bos.continuation, r.continuation);
}

TEST(ZeroShotEncoding, TrailingContextSpaceMovesToTheContinuation) {
    auto tok = stories_tokenizer();
    const auto a = encode_request(*tok, {"Answer: ", "yes"}, true);
    const auto b = encode_request(*tok, {"Answer:", " yes"}, true);
    EXPECT_EQ(a.context, b.context);
    EXPECT_EQ(a.continuation, b.continuation);
    EXPECT_EQ(tok->decode(b.continuation), "yes");
    // An empty context becomes the prefix token.
    const auto empty = encode_request(*tok, {"", "Once upon a time"}, false);
    EXPECT_EQ(empty.context, std::vector<int32_t>{tok->bos_id()});
    EXPECT_EQ(empty.continuation, tok->encode("Once upon a time"));
}

TEST(ZeroShotEncoding, LlamaTokenizerScoresTheJointContinuation) {
    // With LLaMA's tokenizer " yes" on its own is [▁, ▁yes] (the dummy prefix plus the space); after "Answer:" the
    // joint encoding gives the single token ▁yes, which is what harness v0.4 scores. BOS = 1.
    auto tok = Tokenizer::load(test::data_path("tokenizers/llama/tokenizer.model"));
    const auto r = encode_request(*tok, {"Answer:", " yes"}, true);
    EXPECT_EQ(r.context, (std::vector<int32_t>{1, 673, 29901}));  // <s> ▁Answer :
    EXPECT_EQ(r.continuation, (std::vector<int32_t>{4874}));      // ▁yes
    EXPECT_EQ(tok->encode(" yes"), (std::vector<int32_t>{29871, 4874}));
    EXPECT_EQ(encode_request(*tok, {"Answer: ", "no"}, false).continuation, (std::vector<int32_t>{694}));  // ▁no
}

// ----- log-likelihood engine -----

std::vector<std::vector<TokenizedRequest>> tiny_groups() {
    // Token ids < 64 for the tiny model; groups of choices sharing a context, one continuation a prefix of another,
    // a single-request group, and a group whose inputs share nothing.
    return {
        {{{1, 5, 9, 33}, {2, 7}}, {{1, 5, 9, 33}, {2, 7, 7, 60}}, {{1, 5, 9, 33}, {12}}},
        {{{1, 44, 8}, {0, 19, 3, 3, 3}}},
        {{{4, 4}, {5}}, {{6, 4}, {5}}},
        {{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, {20, 21}},
         {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, {22, 23, 24}}},
        {{{1, 2}, {30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45}}, {{1, 2}, {30, 31}}},
    };
}

TEST(ZeroShotScoring, BatchedEngineMatchesTheOneRequestComputation) {
    const LlamaConfig c = test::tiny_config();
    auto model = LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c, 3)), {});
    const auto groups = tiny_groups();
    for (const int64_t max_length : {64, 12}) {  // 12 truncates two groups, one inside its 16-token continuation
        for (const bool share : {false, true})
            for (const int64_t batch : {1, 3, 100}) {
                LoglikelihoodOptions options;
                options.batch_size = batch;
                options.max_length = max_length;
                options.share_prefix = share;
                const auto got = compute_loglikelihoods(*model, groups, options);
                ASSERT_EQ(got.size(), groups.size());
                for (size_t g = 0; g < groups.size(); ++g)
                    for (size_t i = 0; i < groups[g].size(); ++i) {
                        const auto want = reference_loglikelihood(*model, groups[g][i], max_length);
                        EXPECT_NEAR(got[g][i].logprob, want.logprob, 1e-4)
                            << "group " << g << " request " << i << " share " << share << " batch " << batch
                            << " max_length " << max_length;
                        EXPECT_EQ(got[g][i].is_greedy, want.is_greedy);
                    }
            }
    }
}

// A stand-in for a quantized or LoRA linear: anything behind the Linear interface.
class HalvedLinear : public Linear {
public:
    explicit HalvedLinear(std::shared_ptr<Linear> inner) : inner_(std::move(inner)) {}
    at::Tensor forward(const at::Tensor& x) const override { return 0.5 * inner_->forward(x); }
    at::Tensor weight() const override { return 0.5 * inner_->weight(); }
    int64_t in_features() const override { return inner_->in_features(); }
    int64_t out_features() const override { return inner_->out_features(); }

private:
    std::shared_ptr<Linear> inner_;
};

TEST(ZeroShotScoring, SwappedLinearsAreUsedByBothPaths) {
    const LlamaConfig c = test::tiny_config();
    auto model = LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c, 5)), {});
    for (const int index : {kQProj, kVProj, kUpProj}) {
        auto& linear = model->block(1).linears[static_cast<size_t>(index)];
        linear = std::make_shared<HalvedLinear>(linear);
    }
    const auto groups = tiny_groups();
    for (const bool share : {false, true}) {
        LoglikelihoodOptions options;
        options.share_prefix = share;
        const auto got = compute_loglikelihoods(*model, groups, options);
        for (size_t g = 0; g < groups.size(); ++g)
            for (size_t i = 0; i < groups[g].size(); ++i)
                EXPECT_NEAR(got[g][i].logprob, reference_loglikelihood(*model, groups[g][i], 64).logprob, 1e-4)
                    << "group " << g << " request " << i << " share " << share;
    }
}

TEST(ZeroShotScoring, UniformModelGivesMinusLogVPerToken) {
    // A zero head makes every distribution uniform: a continuation of n tokens scores exactly -n log V.
    const LlamaConfig c = test::tiny_config();
    auto weights = test::random_weights(c);
    weights[hf_names::kLmHead].zero_();
    auto model = LlamaModel::load(test::memory_checkpoint(c, weights), {});
    const auto got = compute_loglikelihoods(*model, tiny_groups(), {});
    const double tolerance = 1e-5;  // fp32 log-softmax
    EXPECT_NEAR(got[0][0].logprob, -2 * std::log(64.0), tolerance);
    EXPECT_NEAR(got[0][1].logprob, -4 * std::log(64.0), tolerance);
    EXPECT_NEAR(got[1][0].logprob, -5 * std::log(64.0), tolerance);
    EXPECT_NEAR(got[2][1].logprob, -1 * std::log(64.0), tolerance);
}

TEST(ZeroShotScoring, BadRequestsAreRefused) {
    const LlamaConfig c = test::tiny_config();
    auto model = LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c)), {});
    auto single = [](std::vector<int32_t> context, std::vector<int32_t> continuation) {
        return std::vector<std::vector<TokenizedRequest>>{{TokenizedRequest{std::move(context), std::move(continuation)}}};
    };
    EXPECT_THROW(compute_loglikelihoods(*model, single({1, 2}, {}), {}), ConfigError);
    EXPECT_THROW(compute_loglikelihoods(*model, single({}, {3}), {}), ConfigError);
    LoglikelihoodOptions options;
    options.max_length = 65;  // beyond max_position_embeddings 64
    EXPECT_THROW(compute_loglikelihoods(*model, tiny_groups(), options), ConfigError);
}

// ----- metrics -----

TEST(ZeroShotMetrics, ArgmaxAndLengthNormalization) {
    // acc picks -10 over -12; acc_norm compares -10/5 = -2 with -12/20 = -0.6.
    auto p = predict_choice({-10.0, -12.0}, {"aaaaa", std::string(20, 'b')});
    EXPECT_EQ(p.pred, 0);
    EXPECT_EQ(p.pred_norm, 1);
    // Ties go to the first choice, as numpy.argmax.
    p = predict_choice({-3.0, -3.0, -4.0}, {"ab", "ab", "ab"});
    EXPECT_EQ(p.pred, 0);
    EXPECT_EQ(p.pred_norm, 0);
    // Length is in characters (Python len), not bytes: "\u00e9\u00e9\u00e9" is 3 characters in 6 bytes.
    // -3.3/3 = -1.1 < -4/4 = -1.0 -> choice 1; with byte lengths it would be -0.55 -> choice 0.
    EXPECT_EQ(utf8_length("\xc3\xa9\xc3\xa9\xc3\xa9"), 3);
    EXPECT_EQ(utf8_length(" bobby pin "), 11);
    p = predict_choice({-3.3, -4.0}, {"\xc3\xa9\xc3\xa9\xc3\xa9", "abcd"});
    EXPECT_EQ(p.pred, 0);
    EXPECT_EQ(p.pred_norm, 1);
    EXPECT_THROW(predict_choice({-1.0}, {"a", "b"}), ConfigError);
}

TEST(ZeroShotMetrics, StandardErrorIsTheHarnessMeanStderr) {
    // mean 0.75; sample variance (3 * 0.0625 + 0.5625) / 3 = 0.25; stderr 0.5 / sqrt(4) = 0.25.
    EXPECT_DOUBLE_EQ(mean_stderr({1, 0, 1, 1}), 0.25);
    // p = 0.5 over n = 100 alternating items: sqrt(25/99) / 10.
    std::vector<double> half;
    for (int i = 0; i < 100; ++i) half.push_back(i % 2);
    EXPECT_NEAR(mean_stderr(half), std::sqrt(25.0 / 99.0) / 10.0, 1e-15);
    EXPECT_TRUE(std::isnan(mean_stderr({1})));
    EXPECT_DOUBLE_EQ(mean_stderr({1, 1, 1}), 0.0);
}

// ----- whole evaluation -----

McTask handmade_task() {
    McTask task;
    task.name = "handmade";
    task.path = "<memory>";
    task.has_acc_norm = true;
    McDoc a;
    a.requests = {{"Question: what did the dog do?\nAnswer:", " it ran"}, {"Question: what did the dog do?\nAnswer:",
                                                                           " it ran and ran and ran away home"}};
    a.choices = {"it ran", "it ran and ran and ran away home"};
    a.gold = 1;
    a.line = 1;
    McDoc b = a;
    b.gold = 0;
    b.line = 2;
    task.docs = {a, b};
    return task;
}

TEST(ZeroShotEvaluate, UniformModelPrefersTheShortestContinuation) {
    // Uniform distributions over V = 512: a choice scores -n log 512 with n its continuation tokens. acc always
    // picks the shorter continuation; acc_norm divides by characters and picks the longer one here.
    LlamaConfig c = test::tiny_config();
    c.vocab_size = 512;
    auto weights = test::random_weights(c);
    weights[hf_names::kLmHead].zero_();
    auto model = LlamaModel::load(test::memory_checkpoint(c, weights), {});
    auto tok = stories_tokenizer();
    const McTask task = handmade_task();
    const auto result = evaluate_zeroshot(*model, *tok, {task}, {});
    ASSERT_EQ(result.tasks.size(), 1u);
    const TaskResult& t = result.tasks[0];
    const double log_v = std::log(512.0);
    for (size_t i = 0; i < 2; ++i) {
        const auto r = encode_request(*tok, task.docs[0].requests[i], true);
        EXPECT_NEAR(t.loglikelihoods[0][i], -static_cast<double>(r.continuation.size()) * log_v, 1e-5);
    }
    const double short_norm = t.loglikelihoods[0][0] / 6.0, long_norm = t.loglikelihoods[0][1] / 32.0;
    ASSERT_GT(long_norm, short_norm);  // holds for any tokenizer that needs < 5.3x the tokens for 5.3x the text
    EXPECT_EQ(t.predictions[0].pred, 0);
    EXPECT_EQ(t.predictions[0].pred_norm, 1);
    EXPECT_DOUBLE_EQ(t.metric("acc")->value, 0.5);   // doc a wrong, doc b right
    EXPECT_DOUBLE_EQ(t.metric("acc_norm")->value, 0.5);
    EXPECT_NEAR(t.metric("acc")->standard_error, std::sqrt(0.5) / std::sqrt(2.0), 1e-12);
    EXPECT_EQ(t.n_requests, 4);
    EXPECT_TRUE(std::isnan(result.paper_average_acc));  // not the five paper tasks
}

TEST(ZeroShotEvaluate, Stories260KMatchesTheReferenceLoopWithTruncation) {
    auto tok = stories_tokenizer();
    auto model = LlamaModel::load(read_llama2c(test::stories_bin()), {});
    std::vector<McTask> tasks = {load_task("hellaswag"), load_task("boolq"), load_task("winogrande")};
    ZeroShotOptions options;
    options.limit = 3;
    options.max_length = 96;  // BoolQ passages are longer: exercises left truncation
    options.batch_size = 4;
    const auto result = evaluate_zeroshot(*model, *tok, tasks, options);
    ASSERT_EQ(result.tasks.size(), 3u);
    EXPECT_EQ(result.max_length, 96);
    EXPECT_EQ(result.tasks[1].n_truncated, 6);
    for (size_t t = 0; t < tasks.size(); ++t) {
        EXPECT_EQ(result.tasks[t].n_docs, 3);
        for (size_t d = 0; d < 3; ++d)
            for (size_t i = 0; i < tasks[t].docs[d].requests.size(); ++i) {
                const auto r = encode_request(*tok, tasks[t].docs[d].requests[i], true);
                EXPECT_NEAR(result.tasks[t].loglikelihoods[d][i], reference_loglikelihood(*model, r, 96).logprob, 2e-3)
                    << tasks[t].name << " doc " << d << " choice " << i;
            }
    }
    const auto json = zeroshot_json(result);
    EXPECT_EQ(json["settings"]["bos"], true);
    EXPECT_EQ(json["settings"]["max_length"], 96);
    EXPECT_EQ(json["tasks"]["hellaswag"]["n"], 3);
    EXPECT_TRUE(json["tasks"]["hellaswag"].contains("acc_norm_stderr"));
    EXPECT_FALSE(json["tasks"]["boolq"].contains("acc_norm"));
    const std::string table = format_zeroshot_table(result);
    EXPECT_NE(table.find("|hellaswag    |acc     |"), std::string::npos) << table;
    EXPECT_NE(table.find("BOS on"), std::string::npos) << table;
}

TEST(ZeroShotEvaluate, PaperAverageNeedsAllFiveTasksAndBadOptionsAreRefused) {
    auto tok = stories_tokenizer();
    auto model = LlamaModel::load(read_llama2c(test::stories_bin()), {});
    std::vector<McTask> tasks;
    for (const auto& name : paper_average_tasks()) tasks.push_back(load_task(name));
    ZeroShotOptions options;
    options.limit = 2;
    const auto result = evaluate_zeroshot(*model, *tok, tasks, options);
    double sum = 0.0;
    for (const auto& t : result.tasks) sum += t.metric("acc")->value;
    EXPECT_NEAR(result.paper_average_acc, sum / 5.0, 1e-12);
    EXPECT_NE(format_zeroshot_table(result).find("average acc"), std::string::npos);

    options.limit = 0;
    EXPECT_THROW(evaluate_zeroshot(*model, *tok, tasks, options), ConfigError);
    options.limit = 2;
    options.batch_size = 0;
    EXPECT_THROW(evaluate_zeroshot(*model, *tok, tasks, options), ConfigError);
    options.batch_size = 8;
    options.max_length = 513;
    EXPECT_THROW(evaluate_zeroshot(*model, *tok, tasks, options), ConfigError);
}

}  // namespace
}  // namespace saliq
