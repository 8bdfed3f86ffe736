#include "saliq/model.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "model_fixture.h"
#include "saliq/error.h"
#include "saliq/generate.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

// llama2.c's documented greedy output of stories260K from BOS.
const char* kStoriesGreedy =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
    "a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the "
    "park.\"";

// An independent reference in llama2.c's conventions: weights in Meta row order, RoPE on adjacent pairs,
// per-head loops. Agreement with LlamaModel checks the HF permutation, RoPE, GQA and the causal mask together.
// `inv_freq` (default: theta^(-2i/d)) and `rotary_scale` (yarn's factor on cos and sin) stand in for scaled RoPE.
at::Tensor reference_logits(const LlamaConfig& c, const std::map<std::string, at::Tensor>& hf, const at::Tensor& ids,
                            std::vector<double> inv_freq = {}, double rotary_scale = 1.0) {
    const int64_t T = ids.size(0), d = c.head_dim, rep = c.n_heads / c.n_kv_heads;
    auto norm = [&](const at::Tensor& x, const at::Tensor& w) {
        return x / at::sqrt(x.pow(2).mean({-1}, true) + c.rms_norm_eps) * w;
    };
    if (inv_freq.empty())
        for (int64_t i = 0; i < d / 2; ++i) inv_freq.push_back(std::pow(c.rope_theta, -2.0 * i / d));
    auto rope_pairs = [&](const at::Tensor& x /*[T, heads, d]*/) {
        at::Tensor out = x.clone();
        for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < d / 2; ++i) {
                const double angle = t * inv_freq[i], cs = rotary_scale * std::cos(angle),
                             sn = rotary_scale * std::sin(angle);
                at::Tensor a = x.select(0, t).select(-1, 2 * i), b = x.select(0, t).select(-1, 2 * i + 1);
                out.select(0, t).select(-1, 2 * i).copy_(a * cs - b * sn);
                out.select(0, t).select(-1, 2 * i + 1).copy_(a * sn + b * cs);
            }
        return out;
    };
    at::Tensor h = hf.at(hf_names::kEmbed).index_select(0, ids);
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const std::string p = hf_names::layer_prefix(l);
        at::Tensor wq = permute_rotary_rows_to_meta(hf.at(p + "self_attn.q_proj.weight"), c.n_heads);
        at::Tensor wk = permute_rotary_rows_to_meta(hf.at(p + "self_attn.k_proj.weight"), c.n_kv_heads);
        at::Tensor x = norm(h, hf.at(p + hf_names::kInputNorm));
        at::Tensor q = rope_pairs(at::matmul(x, wq.t()).view({T, c.n_heads, d}));
        at::Tensor k = rope_pairs(at::matmul(x, wk.t()).view({T, c.n_kv_heads, d}));
        at::Tensor v = at::matmul(x, hf.at(p + "self_attn.v_proj.weight").t()).view({T, c.n_kv_heads, d});
        at::Tensor att = at::zeros({T, c.n_heads, d});
        for (int64_t head = 0; head < c.n_heads; ++head)
            for (int64_t t = 0; t < T; ++t) {
                at::Tensor keys = k.narrow(0, 0, t + 1).select(1, head / rep);  // [t+1, d]
                at::Tensor scores = at::matmul(keys, q[t][head]) / std::sqrt(static_cast<double>(d));
                at::Tensor w = at::softmax(scores, 0);
                att[t][head] = at::matmul(w, v.narrow(0, 0, t + 1).select(1, head / rep));
            }
        h = h + at::matmul(att.view({T, -1}), hf.at(p + "self_attn.o_proj.weight").t());
        at::Tensor y = norm(h, hf.at(p + hf_names::kPostNorm));
        at::Tensor g = at::matmul(y, hf.at(p + "mlp.gate_proj.weight").t());
        at::Tensor u = at::matmul(y, hf.at(p + "mlp.up_proj.weight").t());
        h = h + at::matmul(g * at::sigmoid(g) * u, hf.at(p + "mlp.down_proj.weight").t());
    }
    const at::Tensor& head = c.tie_word_embeddings ? hf.at(hf_names::kEmbed) : hf.at(hf_names::kLmHead);
    return at::matmul(norm(h, hf.at(hf_names::kFinalNorm)), head.t());
}

TEST(LlamaModel, MatchesIndependentReferenceWithGqa) {
    c10::InferenceMode guard;
    for (bool tied : {false, true}) {
        const LlamaConfig c = test::tiny_config(tied);
        const auto weights = test::random_weights(c, tied ? 1 : 2);
        auto model = LlamaModel::load(test::memory_checkpoint(c, weights), {});
        at::Tensor ids = at::randint(0, c.vocab_size, {12}, at::kLong);
        at::Tensor ours = model->forward(ids.unsqueeze(0))[0];
        at::Tensor ref = reference_logits(c, weights, ids);
        EXPECT_LT((ours - ref).abs().max().item<double>(), 1e-4) << "tied=" << tied;
    }
}

// Scaled RoPE reaches the forward: linear (positions / factor) against the reference's angles, yarn's frequencies
// and its factor on cos and sin, and a sliding window that refuses longer sequences.
TEST(LlamaModel, ScaledRotaryEmbeddingsMatchTheReference) {
    c10::InferenceMode guard;
    LlamaConfig c = test::tiny_config();
    c.rope_theta = 100000.0;
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = 2.0;
    const auto weights = test::random_weights(c, 3);
    at::Tensor ids = at::randint(0, c.vocab_size, {12}, at::kLong);
    std::vector<double> halved;
    for (int64_t i = 0; i < c.head_dim / 2; ++i) halved.push_back(std::pow(100000.0, -2.0 * i / c.head_dim) / 2.0);
    at::Tensor ours = LlamaModel::load(test::memory_checkpoint(c, weights), {})->forward(ids.unsqueeze(0))[0];
    EXPECT_LT((ours - reference_logits(c, weights, ids, halved)).abs().max().item<double>(), 1e-4);
    LlamaConfig plain = c;
    plain.rope_scaling = RopeScaling{};
    at::Tensor unscaled = LlamaModel::load(test::memory_checkpoint(plain, weights), {})->forward(ids.unsqueeze(0))[0];
    EXPECT_GT((ours - unscaled).abs().max().item<double>(), 1e-3);  // the scaling is not a no-op here

    c.rope_scaling.type = "yarn";
    c.rope_scaling.factor = 4.0;
    c.rope_scaling.original_max_position_embeddings = 16;
    ours = LlamaModel::load(test::memory_checkpoint(c, weights), {})->forward(ids.unsqueeze(0))[0];
    const at::Tensor ref = reference_logits(c, weights, ids, rope_inverse_frequencies(c), rope_attention_factor(c));
    EXPECT_GT(rope_attention_factor(c), 1.1);
    EXPECT_LT((ours - ref).abs().max().item<double>(), 1e-4);

    plain.sliding_window = 8;
    auto windowed = LlamaModel::load(test::memory_checkpoint(plain, weights), {});
    EXPECT_NO_THROW(windowed->forward(ids.narrow(0, 0, 8).unsqueeze(0)));
    try {
        windowed->forward(ids.unsqueeze(0));
        ADD_FAILURE() << "a sequence past the sliding window was computed";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("sliding"), std::string::npos) << e.what();
    }
}

TEST(LlamaModel, BatchedWindowsEqualSingleWindows) {
    c10::InferenceMode guard;
    const LlamaConfig c = test::tiny_config();
    auto model = LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c)), {});
    at::Tensor ids = at::randint(0, c.vocab_size, {3, 10}, at::kLong);
    at::Tensor batched = model->forward(ids);
    for (int64_t b = 0; b < 3; ++b)
        EXPECT_LT((batched[b] - model->forward(ids.narrow(0, b, 1))[0]).abs().max().item<double>(), 1e-5);
}

// Incremental decoding: a prompt of 6, then 1, then 3 tokens against the key/value cache give the logits of one
// forward over all 10 (RoPE and the causal mask follow the cached positions).
TEST(LlamaModel, CachedStepsEqualTheWholeForward) {
    c10::InferenceMode guard;
    const LlamaConfig c = test::tiny_config();
    auto model = LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c)), {});
    at::Tensor ids = at::randint(0, c.vocab_size, {2, 10}, at::kLong);
    const at::Tensor whole = model->forward(ids);
    std::vector<LayerCache> cache;
    std::vector<at::Tensor> steps;
    for (auto [t0, n] : {std::pair<int64_t, int64_t>{0, 6}, {6, 1}, {7, 3}})
        steps.push_back(model->forward_cached(ids.narrow(1, t0, n), cache));
    EXPECT_EQ(cache[0].length(), 10);
    EXPECT_LT((at::cat(steps, 1) - whole).abs().max().item<double>(), 1e-5);
}

TEST(LlamaModel, AttentionInPiecesEqualsAttentionAtOnce) {
    LlamaConfig c = test::tiny_config();  // GQA: more query heads than KV heads
    const int64_t B = 3, T = 9, d = c.head_dim;
    const at::Tensor q0 = at::randn({B, c.n_heads, T, d});
    at::Tensor k = at::randn({B, c.n_kv_heads, T, d}), v = at::randn({B, c.n_kv_heads, T, d});
    const at::Tensor causal = at::ones({T, T}, at::kBool).triu(1);
    // A per-sample mask as loglikelihood passes: sample 1 also hides its first key.
    at::Tensor per_sample = causal.view({1, 1, 1, T, T}).repeat({B, 1, 1, 1, 1});
    per_sample[1].select(-1, 0).narrow(-1, 1, T - 1).fill_(true);
    // Output and the gradient it sends back to the queries (training methods run attention under autograd).
    auto run = [&](const at::Tensor& mask, int64_t budget) {
        at::Tensor q = q0.clone().requires_grad_(true);
        at::Tensor out = grouped_query_attention(c, q, k, v, mask, budget);
        out.pow(2).sum().backward();
        return std::make_pair(out.detach(), q.grad());
    };
    for (const at::Tensor& mask : {causal, per_sample}) {
        const auto [whole, grad_whole] = run(mask, kMaxScoreElements);
        // Budgets that force one sample at a time, then a few query rows at a time.
        for (int64_t budget : {c.n_heads * T * T, c.n_heads * T * 2, int64_t{1}}) {
            const auto [pieces, grad] = run(mask, budget);
            EXPECT_LT((pieces - whole).abs().max().item<double>(), 1e-6) << "budget " << budget;
            EXPECT_LT((grad - grad_whole).abs().max().item<double>(), 1e-5) << "budget " << budget;
        }
    }
}

TEST(LlamaModel, Bf16StaysCloseToFp32) {
    c10::InferenceMode guard;
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c);
    ModelOptions bf16;
    bf16.dtype = "bf16";
    auto m32 = LlamaModel::load(test::memory_checkpoint(c, weights), {});
    auto m16 = LlamaModel::load(test::memory_checkpoint(c, weights), bf16);
    at::Tensor ids = at::randint(0, c.vocab_size, {1, 16}, at::kLong);
    at::Tensor a = m32->forward(ids), b = m16->forward(ids);
    EXPECT_EQ(b.scalar_type(), at::kFloat);  // logits always come back as fp32
    const double rel = ((a - b).norm() / a.norm()).item<double>();
    EXPECT_LT(rel, 0.05);
    EXPECT_GT(rel, 0.0);  // it really computed in bf16
}

TEST(LlamaModel, Fp16OnCpuIsRefusedWithAHint) {
    const LlamaConfig c = test::tiny_config();
    ModelOptions fp16;
    fp16.dtype = "fp16";
    try {
        LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c)), fp16);
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos);
    }
    ModelOptions bad;
    bad.device = "tpu";
    EXPECT_THROW(LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c)), bad), ConfigError);
}

TEST(LlamaModel, WrongShapeAndNonFiniteWeightsAreNamed) {
    const LlamaConfig c = test::tiny_config();
    auto weights = test::random_weights(c);
    weights["model.layers.1.mlp.up_proj.weight"] = at::zeros({3, 3});
    try {
        LlamaModel::load(test::memory_checkpoint(c, weights), {});
        FAIL();
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj.weight"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("[40, 32]"), std::string::npos);
    }
    weights = test::random_weights(c);
    weights["model.norm.weight"][3] = NAN;
    EXPECT_THROW(LlamaModel::load(test::memory_checkpoint(c, weights), {}), FormatError);
    weights = test::random_weights(c);
    weights.erase("lm_head.weight");
    EXPECT_THROW(LlamaModel::load(test::memory_checkpoint(c, weights), {}), FormatError);
}

TEST(LlamaModel, OutOfVocabularyIdsAreRefused) {
    const LlamaConfig c = test::tiny_config();
    auto model = LlamaModel::load(test::memory_checkpoint(c, test::random_weights(c)), {});
    EXPECT_THROW(model->forward(at::full({1, 4}, c.vocab_size, at::kLong)), ConfigError);
}

TEST(Stories260K, GreedyDecodingReproducesLlama2cThroughBothLoaders) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint bin = read_llama2c(test::stories_bin());
    auto model = LlamaModel::load(bin, {});
    const std::string text = generate_text(*model, *tok, "", 120);
    EXPECT_EQ(text.rfind(kStoriesGreedy, 0), 0u) << text;

    test::TempDir dir;
    write_hf_folder(dir.file("hf"), bin.config, *bin.tensors, test::stories_tokenizer(), false);
    Checkpoint hf = load_checkpoint(dir.file("hf"));
    EXPECT_EQ(hf.tokenizer_path, dir.file("hf") + "/tokenizer.model");
    auto hf_model = LlamaModel::load(hf, {});
    EXPECT_EQ(generate_text(*hf_model, *tok, "", 120), text);
}

}  // namespace
}  // namespace saliq
