// Saliency metrics other than the Fisher: SliM-LLM's Hessian salience, checked against the formula computed here.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "saliq/calibration.h"
#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/gguf.h"
#include "saliq/model.h"
#include "saliq/saliency.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

// What block 0's q/k/v see on the calibration windows: rms_norm(embed(windows)), [tokens, hidden] fp64.
at::Tensor block0_input(const Checkpoint& ckpt, const Tokenizer& tok, const CalibOptions& calib_options) {
    c10::NoGradGuard no_grad;
    auto model = LlamaModel::load(ckpt, {});
    const CalibSet calib = sample_calibration(calib_options, tok);
    const at::Tensor ids = at::tensor(std::vector<int64_t>(calib.tokens.begin(), calib.tokens.end()), at::kLong)
                               .view({calib_options.nsamples, calib_options.seqlen});
    return rms_norm(model->embed(ids), model->block(0).input_norm, model->config().rms_norm_eps)
        .reshape({-1, model->config().hidden_size})
        .to(at::kDouble);
}

TEST(Saliency, HessianSalienceIsWSquaredOverTheInverseFactorsDiagonal) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    FisherOptions o;
    o.metric = "hessian";
    o.calib.source = "tinystories";
    o.calib.nsamples = 6;
    o.calib.seqlen = 64;
    const auto salience = compute_saliency(ckpt, *tok, o);
    EXPECT_EQ(salience.size(), 35u);  // 5 blocks x 7 linears
    for (const auto& [name, s] : salience) {
        EXPECT_TRUE(at::isfinite(s).all().item<bool>()) << name;
        EXPECT_GE(s.min().item<float>(), 0.0f) << name;
    }
    // Block 0's q_proj sees rms_norm(embed(windows)): its salience from the formula, independently.
    const at::Tensor x = block0_input(ckpt, *tok, o.calib);
    at::Tensor H = 2.0 * x.t().matmul(x) / static_cast<double>(o.calib.nsamples);
    H.diagonal().add_(0.01);
    H.diagonal().add_(0.01 * H.diagonal().mean());
    const at::Tensor U = at::linalg_cholesky(at::linalg_inv(H), /*upper=*/true);
    const at::Tensor w = LlamaModel::load(ckpt, {})->block(0).linears[kQProj]->weight().to(at::kDouble);
    const at::Tensor expected = (w.pow(2) / U.diagonal().pow(2).unsqueeze(0)).to(at::kFloat);
    const at::Tensor got = salience.at("model.layers.0.self_attn.q_proj.weight");
    EXPECT_TRUE(at::allclose(got, expected, 1e-3, 1e-6)) << (got - expected).abs().max();
    // The mass concentrates: salience is not uniform (the reason it can weight a regularizer).
    EXPECT_GT(got.max().item<double>(), 3.0 * got.mean().item<double>());

    o.metric = "pqi-typo";
    EXPECT_THROW(compute_saliency(ckpt, *tok, o), ConfigError);
}

// llama.cpp's importance matrix: Σ x² of each linear's input, the q_proj of block 0 against the formula, and the
// GGUF llama-quantize reads (in_sum2 and counts per linear, the imatrix keys), written by the CLI.
TEST(Saliency, ImportanceMatrixSumsTheInputsSquares) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    FisherOptions o;
    o.calib.source = "tinystories";
    o.calib.nsamples = 3;
    o.calib.seqlen = 64;
    int64_t tokens = 0;
    const auto sums = compute_input_square_sums(ckpt, *tok, o, tokens);
    EXPECT_EQ(tokens, 3 * 64);
    EXPECT_EQ(sums.size(), 35u);
    const at::Tensor q = sums.at("model.layers.0.self_attn.q_proj.weight");
    EXPECT_TRUE(at::equal(q, sums.at("model.layers.0.self_attn.v_proj.weight")));  // one input, one matrix
    const at::Tensor x = block0_input(ckpt, *tok, o.calib);
    EXPECT_TRUE(at::allclose(q.to(at::kDouble), x.pow(2).sum(0), 1e-5, 1e-6));
    EXPECT_EQ(sums.at("model.layers.2.mlp.down_proj.weight").numel(), ckpt.config.intermediate_size);

    test::TempDir dir;
    const auto r = test::run_saliq("saliency -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                                   " --metric imatrix --calib tinystories --nsamples 3 --seqlen 64 --out " +
                                   dir.file("m.gguf"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto gguf = GgufReader::open(dir.file("m.gguf"));
    EXPECT_EQ(gguf->find_value("general.type")->value.get<std::string>(), "imatrix");
    EXPECT_EQ(gguf->find_value("imatrix.chunk_count")->value.get<int64_t>(), 3);
    EXPECT_EQ(gguf->find_value("imatrix.chunk_size")->value.get<int64_t>(), 64);
    EXPECT_EQ(gguf->tensors().size(), 70u);
    EXPECT_FLOAT_EQ(gguf->tensor("blk.0.attn_q.weight.counts").item<float>(), 192.0f);
    EXPECT_TRUE(at::allclose(gguf->tensor("blk.0.attn_q.weight.in_sum2"), q, 1e-6, 0.0));
}

// End to end: `saliq saliency --metric hessian`, then the regularizer reading that file like a Fisher, and
// `quantize --saliency-metric hessian` computing it first.
TEST(Saliency, HessianSalienceDrivesTheRegularizerFromTheCli) {
    test::TempDir dir;
    const std::string model = " -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer();
    const std::string file = dir.file("hessian.safetensors");
    auto r = test::run_saliq("saliency" + model + " --metric hessian --calib tinystories --nsamples 4 --seqlen 64 " +
                             "--out " + file + " -q");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string train = " --method apiq-bw --bits 2 --group-size 32 --calib tinystories --calib-range 0:0.5 "
                              "--nsamples 4 --seqlen 64 --lora-rank 8 --stages mixed:2 --saliency --fisher-norm mean";
    r = test::run_saliq("quantize" + model + train + " --fisher " + file + " --out " + dir.file("q1") + " -q");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const std::string metric : {"hessian", "pqi"}) {
        r = test::run_saliq("quantize" + model + train + " --saliency-metric " + metric +
                            " --fisher-nsamples 2 --fisher-seqlen 64 --pqi-points 2 --out " + dir.file("q-" + metric) +
                            " -q");
        ASSERT_EQ(r.exit_code, 0) << metric << ": " << r.output;
    }
    r = test::run_saliq("quantize" + model + train + " --saliency-metric pqi-typo --out " + dir.file("q3"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--saliency-metric"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("q3")) || path_exists(dir.file("q3") + ".partial"));
}

}  // namespace
}  // namespace saliq

namespace saliq {
namespace {

// PQI: the signed shares sum, by the quadrature, to the actual loss change F(w~) - F(w); more points, closer.
TEST(Saliency, PqiSumsToTheLossChangeOfQuantization) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    FisherOptions o;
    o.metric = "pqi";
    o.calib.source = "tinystories";
    o.calib.nsamples = 2;
    o.calib.seqlen = 48;
    o.spec.bits = 3;
    o.spec.group_size = 32;
    double previous_error = 1e9;
    for (int64_t points : {1, 8}) {
        o.pqi_points = points;
        const PqiResult r = compute_pqi(ckpt, *tok, o);
        const double actual = r.loss_quantized - r.loss_fp;
        EXPECT_GT(actual, 0.0);  // quantizing a trained model costs loss
        const double error = std::abs(r.predicted_change - actual);
        if (points == 8) EXPECT_LT(error, 0.05 * actual) << r.predicted_change << " vs " << actual;
        EXPECT_LT(error, previous_error);
        previous_error = error;
        EXPECT_EQ(r.salience.size(), 35u);
        for (const auto& [name, s] : r.salience) EXPECT_GE(s.min().item<float>(), 0.0f) << name;
    }
    o.pqi_points = 0;
    EXPECT_THROW(compute_pqi(ckpt, *tok, o), ConfigError);
}

}  // namespace
}  // namespace saliq
