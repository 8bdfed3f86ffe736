// ReQuant: the sparse parts round-trip and are checked, the outlier plan stays within its budget and follows the
// weights, the detach takes the weights of largest |PQI| (recomputed each round), and a dense-and-sparse folder
// scores like the model the pipeline built, packed or dequantized.
#include <set>

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/gptq_pack.h"
#include "saliq/inspect.h"
#include "saliq/quantize.h"
#include "saliq/saliency.h"
#include "saliq/strings.h"
#include "saliq/tokenizer.h"
#include "model_fixture.h"
#include "quant/pqi.h"
#include "quant/quant_fixture.h"
#include "quant/requant.h"
#include "test_utils.h"

namespace saliq {
namespace {

std::set<int64_t> as_set(const at::Tensor& t) {
    std::set<int64_t> out;
    const at::Tensor c = t.to(at::kLong).contiguous();
    for (int64_t i = 0; i < c.numel(); ++i) out.insert(c[i].item<int64_t>());
    return out;
}

TEST(Requant, SparsePartsRoundTripAndBadOnesAreRefused) {
    const at::Tensor dense = at::randn({6, 10});
    const at::Tensor target = at::randn({6, 10});
    const at::Tensor index = at::tensor(std::vector<int64_t>{59, 3, 17, 0});
    const SparsePart part = make_sparse_part(index, target, dense);
    EXPECT_EQ(as_set(part.index), (std::set<int64_t>{0, 3, 17, 59}));
    at::Tensor w = dense.clone();
    add_sparse(w, part);
    for (int64_t p : {0, 3, 17, 59})  // the positions now hold the target (to fp16 precision of the difference)
        EXPECT_NEAR(w.view({-1})[p].item<double>(), target.view({-1})[p].item<double>(), 2e-3);
    EXPECT_TRUE(at::equal(w.view({-1})[1], dense.view({-1})[1]));

    const SparseTensors packed = sparse_pack(part);
    EXPECT_EQ(packed.idx.scalar_type(), at::kInt);
    EXPECT_EQ(packed.val.scalar_type(), at::kHalf);
    const SparsePart back = sparse_unpack(packed, 6, 10, "test");
    EXPECT_TRUE(at::equal(back.index, part.index));
    EXPECT_TRUE(at::equal(back.value, part.value));  // values were fp16-representable already

    const at::Tensor val = at::zeros({2}, at::kHalf);
    EXPECT_THROW(sparse_unpack({at::tensor(std::vector<int>{5, 5}), val}, 6, 10, "t"), FormatError);   // repeat
    EXPECT_THROW(sparse_unpack({at::tensor(std::vector<int>{7, 3}), val}, 6, 10, "t"), FormatError);   // order
    EXPECT_THROW(sparse_unpack({at::tensor(std::vector<int>{3, 60}), val}, 6, 10, "t"), FormatError);  // range
    EXPECT_THROW(sparse_unpack({at::tensor(std::vector<int>{3}), val}, 6, 10, "t"), FormatError);      // lengths
    EXPECT_THROW(sparse_unpack({at::tensor(std::vector<int>{1, 2}), at::full({2}, INFINITY)}, 6, 10, "t"), FormatError);
    EXPECT_THROW(make_sparse_part(index, at::full({6, 10}, 1e6), dense), NumericError);  // beyond fp16
}

TEST(Requant, OutlierPlanStaysWithinBudgetAndGivesMoreToTheLinearWithOutliers) {
    const LlamaConfig c = test::tiny_config();
    auto weights = test::random_weights(c, 3);
    // 2% of one linear's weights become large: re-quantizing it without them gains most.
    at::Tensor& w = weights["model.layers.1.mlp.up_proj.weight"];
    const at::Tensor pos = at::randperm(w.numel()).narrow(0, 0, w.numel() / 50);
    w.view({-1}).index_fill_(0, pos, 3.0);
    const Checkpoint ckpt = test::memory_checkpoint(c, weights);
    QuantizeOptions o = test::rtn_w2g8();
    o.sparse.outliers_pct = 0.5;
    nlohmann::json stats;
    const auto counts = plan_outliers(ckpt, o, stats);
    EXPECT_EQ(counts.size(), 14u);
    int64_t used = 0;
    for (const auto& [name, k] : counts) used += k;
    EXPECT_EQ(used, stats["used"].get<int64_t>());
    EXPECT_LE(used, stats["budget"].get<int64_t>());
    EXPECT_GE(used, stats["budget"].get<int64_t>() * 8 / 10);
    const int64_t up = counts.at("model.layers.1.mlp.up_proj");
    for (const auto& [name, k] : counts)
        if (name != "model.layers.1.mlp.up_proj") EXPECT_LT(k, up) << name;
    EXPECT_LE(stats["requant_error_adaptive"].get<double>(), stats["requant_error_uniform_ratio"].get<double>());

    const at::Tensor idx = largest_magnitude_index(w, 5);
    EXPECT_EQ(idx.numel(), 5);
    EXPECT_TRUE((w.view({-1}).index_select(0, idx).abs() >= 3.0 - 1e-6).all().item<bool>());
    EXPECT_TRUE((idx.narrow(0, 1, 4) > idx.narrow(0, 0, 4)).all().item<bool>());  // ascending positions
}

// Every block of stories260K at RTN W2 g16, as detach_significant reads them from the store.
std::vector<BlockResult> rtn_blocks(const Checkpoint& ckpt, const QuantSpec& spec) {
    std::vector<BlockResult> blocks;
    for (int64_t layer = 0; layer < ckpt.config.n_layers; ++layer) {
        BlockResult b;
        b.layer = layer;
        for (int i = 0; i < kNumLinears; ++i) {
            LinearResult lr;
            lr.name = hf_names::linear_name(layer, i);
            lr.q = quantize_rtn(ckpt.tensors->get(lr.name + ".weight").to(at::kFloat), spec);
            b.linears.push_back(lr);
        }
        blocks.push_back(b);
    }
    return blocks;
}

TEST(Requant, DetachRestoresTheWeightsOfLargestPqiAndRecomputesItEachRound) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = read_llama2c(test::stories_bin());
    QuantizeOptions o = test::small_options("rtn", 2, 16);
    o.calib.nsamples = 4;
    o.sparse.significant_pct = 0.1;
    o.sparse.steps = 1;
    o.sparse.pqi_points = 2;
    const std::vector<BlockResult> blocks = rtn_blocks(ckpt, o.spec);
    nlohmann::json stats;
    const auto one = detach_significant(ckpt, *tok, o, blocks, stats, nullptr);

    // The same integral, computed here: the detached weights are the top |PQI| over every linear.
    FisherOptions fo;
    fo.calib = o.calib;
    auto model = load_saliency_model(ckpt, fo, false);
    std::vector<at::Tensor> weights, start, delta;
    std::vector<std::string> names;
    for (const auto& b : blocks)
        for (int i = 0; i < kNumLinears; ++i) {
            at::Tensor w = model->block(b.layer).linears[i]->weight();
            names.push_back(b.linears[static_cast<size_t>(i)].name);
            start.push_back(w.detach().clone());
            delta.push_back(b.linears[static_cast<size_t>(i)].q.dequantize() - start.back());
            w.requires_grad_(true);
            weights.push_back(w);
        }
    const PqiIntegral pqi = integrate_pqi(*model, weights, start, delta, sample_calibration(o.calib, *tok),
                                          o.calib.seqlen, 2, "pqi", nullptr);
    std::vector<at::Tensor> flat;
    for (const auto& p : pqi.pqi) flat.push_back(p.abs().reshape({-1}));
    const int64_t budget = stats["budget"].get<int64_t>();
    ASSERT_GT(budget, 10);
    const double kth = std::get<0>(at::topk(at::cat(flat), budget)).min().item<double>();
    int64_t detached = 0;
    for (size_t j = 0; j < names.size(); ++j) {
        const std::set<int64_t> expected = as_set(at::nonzero(flat[j] >= kth).reshape({-1}));
        const std::set<int64_t> got = one.count(names[j]) ? as_set(one.at(names[j]).index) : std::set<int64_t>{};
        EXPECT_EQ(got, expected) << names[j];
        detached += static_cast<int64_t>(got.size());
        if (!one.count(names[j])) continue;
        // Restored: the quantized weight plus the part is the FP weight (to fp16 precision of the difference).
        at::Tensor w = blocks[j / kNumLinears].linears[j % kNumLinears].q.dequantize();
        add_sparse(w, one.at(names[j]));
        const at::Tensor at_idx = one.at(names[j]).index;
        EXPECT_LT((w.view({-1}).index_select(0, at_idx) - start[j].reshape({-1}).index_select(0, at_idx)).abs().max().item<double>(), 1e-3);
    }
    EXPECT_EQ(detached, budget);
    EXPECT_LT(stats["loss_after"].get<double>(), stats["rounds"][0]["loss_quantized"].get<double>());

    // Two rounds: disjoint picks that add up to the budget, the second from a recomputed integral.
    o.sparse.steps = 2;
    nlohmann::json stats2;
    const auto two = detach_significant(ckpt, *tok, o, blocks, stats2, nullptr);
    ASSERT_EQ(stats2["rounds"].size(), 2u);
    EXPECT_LT(stats2["rounds"][1]["loss_quantized"].get<double>(), stats2["rounds"][0]["loss_quantized"].get<double>());
    int64_t total = 0;
    for (const auto& [name, part] : two) {
        total += part.nnz();
        EXPECT_EQ(as_set(part.index).size(), static_cast<size_t>(part.nnz())) << name;  // no weight taken twice
    }
    EXPECT_EQ(total, stats2["detached"].get<int64_t>());
    EXPECT_LE(total, budget);
    EXPECT_GE(total, budget - 2);
}

TEST(Requant, DenseAndSparseFolderScoresLikeThePipelinesModelPackedOrDense) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    ckpt.tokenizer_path = test::stories_tokenizer();
    test::TempDir dir;
    QuantizeOptions o = test::small_options("gptq", 2, 16);
    o.sparse.outliers_pct = 0.5;
    auto fake = LlamaModel::load(ckpt, {});
    double plain_ppl = 0;
    {
        QuantizeOptions plain = test::small_options("gptq", 2, 16);
        auto m = LlamaModel::load(ckpt, {});
        test::RecordingWriter writer(dir.file("plain"), ckpt, plain, *m);
        writer.finish(quantize_model(ckpt, *tok, plain, &writer), {});
        plain_ppl = test::heldout_ppl(*m, *tok, 16);
    }
    test::RecordingWriter writer(dir.file("q"), ckpt, o, *fake);
    const QuantizeResult result = quantize_model(ckpt, *tok, o, &writer);
    writer.finish(result, {});
    const double ppl = test::heldout_ppl(*fake, *tok, 16);
    EXPECT_LT(ppl, plain_ppl);  // the outliers kept exact help GPTQ

    const Checkpoint packed = load_checkpoint(dir.file("q"));
    EXPECT_TRUE(packed.packed.sparse);
    EXPECT_TRUE(packed.tensors->has("model.layers.0.mlp.down_proj.outlier_idx"));
    auto reloaded = LlamaModel::load(packed, {});
    EXPECT_NEAR(test::heldout_ppl(*reloaded, *tok, 16), ppl, 1e-4 * ppl);
    ModelOptions dense;
    dense.dequantize = true;
    auto dequantized = LlamaModel::load(packed, dense);
    EXPECT_NEAR(test::heldout_ppl(*dequantized, *tok, 16), ppl, 1e-4 * ppl);

    // Each entry costs 48 bits: the folder's bits per weight rise by that, over the plain GPTQ folder's.
    const auto info = inspect_checkpoint(packed), plain_info = inspect_checkpoint(load_checkpoint(dir.file("plain")));
    const int64_t used = result.sparse_stats["outliers"]["used"].get<int64_t>();
    const double params = info["parameters"]["linear"].get<double>();
    EXPECT_NEAR(info["bits_per_weight"]["linear"].get<double>() - plain_info["bits_per_weight"]["linear"].get<double>(),
                48.0 * static_cast<double>(used) / params, 1e-9);
}

// Every training method with ReQuant's outliers: its prediction carries the outliers (kept exact), so its target
// must be the whole FP weight's output. Then a linear's first loss (adapters still zero) is the grid's error on the
// dense part alone, below the plain run's; a target without the outliers (apiq-lw's old defect) starts far above it
// and trains the adapters to cancel them.
TEST(Requant, TrainingMethodsMatchTheWholeFpWeightWithOutliersKept) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    ckpt.tokenizer_path = test::stories_tokenizer();
    for (const std::string method : {"apiq-lw", "apiq-bw", "omniquant"}) {
        std::map<bool, double> first_loss;
        for (bool sparse : {false, true}) {
            QuantizeOptions o = test::small_options(method, 2, 16);
            o.apiq.epochs = 1;
            o.apiq.lora_rank = 4;
            o.error_windows = 0;
            if (sparse) o.sparse.outliers_pct = 1.0;
            test::TempDir dir;
            auto m = LlamaModel::load(ckpt, {});
            test::RecordingWriter writer(dir.file("q"), ckpt, o, *m);
            const QuantizeResult result = quantize_model(ckpt, *tok, o, &writer);
            const auto& stats = result.blocks[0].method_stats;
            first_loss[sparse] = method == "apiq-lw"
                                     ? stats["layers"]["model.layers.0.mlp.down_proj"]["stages"][0]["epoch_losses"][0]
                                           .get<double>()
                                     : stats["stages"][0]["epoch_losses"][0].get<double>();
        }
        EXPECT_LT(first_loss[true], first_loss[false]) << method;
    }
}

TEST(Requant, SparseTensorsNeedTheConfigToSaySoAndTheOptionsAreChecked) {
    test::TempDir dir;
    const LlamaConfig c = test::tiny_config();
    const Checkpoint ckpt = test::memory_checkpoint(c, test::random_weights(c));
    QuantizeOptions o = test::rtn_w2g8();
    o.sparse.outliers_pct = 1.0;
    {
        auto tok = Tokenizer::load(test::stories_tokenizer());  // RTN without error windows reads no text
        GptqFolderWriter writer(dir.file("q"), ckpt, o, false);
        writer.finish(quantize_model(ckpt, *tok, o, &writer), {});
    }
    EXPECT_NO_THROW(LlamaModel::load(load_checkpoint(dir.file("q")), {}));
    // The same tensors under a config without saliq_sparse: refused, not silently dropped.
    nlohmann::json config = read_json_file(dir.file("q") + "/config.json");
    config["quantization_config"].erase("saliq_sparse");
    write_json_atomic(dir.file("q") + "/config.json", config);
    EXPECT_THROW(LlamaModel::load(load_checkpoint(dir.file("q")), {}), FormatError);

    QuantizeOptions bad = test::rtn_w2g8();
    bad.sparse.outliers_pct = -1;
    EXPECT_THROW(validate_sparse_options(bad), ConfigError);
    bad.sparse.outliers_pct = 0.5;
    bad.apiq.quantizer = "binarymos";
    EXPECT_THROW(validate_sparse_options(bad), ConfigError);
    bad.apiq.quantizer = "uniform";
    bad.sparse.steps = 0;
    EXPECT_THROW(validate_sparse_options(bad), ConfigError);
}

}  // namespace
}  // namespace saliq
