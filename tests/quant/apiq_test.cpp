// ApiQ / OmniQuant / saliency end to end on stories260K with tiny budgets.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <map>
#include <thread>

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/inspect.h"
#include "saliq/lwc.h"
#include "saliq/perplexity.h"
#include "saliq/quantize.h"
#include "saliq/safetensors.h"
#include "saliq/threads.h"
#include "saliq/tokenizer.h"
#include "quant/quant_fixture.h"
#include "quant/trainable.h"
#include "test_utils.h"

namespace saliq {
namespace {

QuantizeOptions tiny_apiq(const std::string& method) {
    QuantizeOptions o;
    o.method = method;
    o.spec.bits = 2;
    o.spec.group_size = 32;
    o.calib.source = "tinystories";
    o.calib.nsamples = 4;
    o.calib.seqlen = 64;
    o.calib.range = TokenRange::parse("0:0.5");
    o.error_windows = 2;
    o.apiq.epochs = 3;
    o.apiq.lora_rank = 8;
    return o;
}

struct QuantRun {
    QuantizeResult result;
    std::unique_ptr<LlamaModel> in_memory;
};

QuantRun quantize_into(const std::string& out, const QuantizeOptions& o) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    ckpt.tokenizer_path = test::stories_tokenizer();
    QuantRun run;
    run.in_memory = LlamaModel::load(ckpt, {});
    test::RecordingWriter writer(out, ckpt, o, *run.in_memory);
    run.result = quantize_model(ckpt, *tok, o, &writer);
    writer.finish(run.result, {});
    return run;
}

TEST(Apiq, BlockwiseTrainsAndExportsAdaptersThatReloadExactly) {
    test::TempDir dir;
    const std::string out = dir.file("q");
    QuantizeOptions o = tiny_apiq("apiq-bw");
    o.apiq.adapter_dtype = "fp32";  // exact reload (the default fp16 is checked below)
    QuantRun run = quantize_into(out, o);
    for (const auto& b : run.result.blocks) {
        const auto& stage = b.method_stats["stages"][0];
        EXPECT_EQ(stage["stage"], "opt");
        EXPECT_LT(stage["loss_end"].get<double>(), stage["loss_start"].get<double>()) << "block " << b.layer;
    }
    for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "lwc.safetensors", "model.safetensors"})
        EXPECT_TRUE(path_exists(out + "/" + f)) << f;
    EXPECT_FALSE(path_exists(out + ".partial"));
    const auto adapter = SafetensorsReader::open(out + "/adapter_model.safetensors");
    const auto* a = adapter->find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->shape, (std::vector<int64_t>{8, 64}));
    EXPECT_EQ(adapter->find("base_model.model.model.layers.4.mlp.down_proj.lora_B.weight")->shape,
              (std::vector<int64_t>{64, 8}));
    const auto config = nlohmann::json::parse(read_text_file(out + "/adapter_config.json"));
    EXPECT_EQ(config["r"], 8);
    EXPECT_EQ(config["peft_type"], "LORA");
    // B is stored pre-scaled and lora_alpha = r, so PEFT's W + (alpha/r) B A and GPTQModel's W + B A (as stored)
    // are the same, and both equal the trained delta alpha_trained / r * B A (alpha 16, r 8).
    EXPECT_EQ(config["lora_alpha"], 8);
    EXPECT_EQ(config["base_model_name_or_path"], canonical_path(out));
    {  // inspect counts the adapters' bytes on their own and with the linears (r 8 fp32 on 64-wide linears)
        const auto info = inspect_checkpoint(load_checkpoint(out));
        uint64_t bytes = 0;
        for (const auto& e : adapter->entries()) bytes += e.end - e.begin;
        EXPECT_EQ(info["bytes"]["adapters"].get<uint64_t>(), bytes);
        const double params = info["parameters"]["linear"].get<double>();
        EXPECT_NEAR(info["bits_per_weight"]["adapters"].get<double>(), 8.0 * bytes / params, 1e-9);
        EXPECT_NEAR(info["bits_per_weight"]["linear_with_adapters"].get<double>(),
                    info["bits_per_weight"]["linear"].get<double>() + 8.0 * bytes / params, 1e-9);
    }
    const auto manifest = nlohmann::json::parse(read_text_file(out + "/saliq_manifest.json"));
    EXPECT_EQ(manifest["adapters"]["lora_alpha"], 16.0);
    EXPECT_EQ(manifest["adapters"]["r"], 8);
    {
        const std::string base = "base_model.model.model.layers.2.mlp.up_proj.";
        const at::Tensor A = adapter->tensor(base + "lora_A.weight"), B = adapter->tensor(base + "lora_B.weight");
        const at::Tensor peft = (config["lora_alpha"].get<double>() / config["r"].get<double>()) * at::matmul(B, A);
        const at::Tensor gptqmodel = at::matmul(B, A);
        EXPECT_TRUE(at::equal(peft, gptqmodel));
        const auto* lr = dynamic_cast<const LoraLinear*>(run.in_memory->block(2).linears[kUpProj].get());
        ASSERT_NE(lr, nullptr);
        const at::Tensor trained = lr->scale() * at::matmul(lr->lora_b(), lr->lora_a());
        EXPECT_NEAR(lr->scale(), 2.0, 1e-12);
        EXPECT_TRUE(at::allclose(gptqmodel, trained, 1e-5, 1e-7));
        EXPECT_GT(trained.abs().max().item<double>(), 0.0);
    }

    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint packed = load_checkpoint(out);
    EXPECT_NEAR(packed.adapter_scale, 1.0, 1e-12);
    const double in_memory = test::heldout_ppl(*run.in_memory, *tok, 16);
    const double reloaded = test::heldout_ppl(*LlamaModel::load(packed, {}), *tok, 16);
    EXPECT_NEAR(in_memory, reloaded, 1e-5 * in_memory);
    ModelOptions no_adapter;
    no_adapter.use_adapter = false;
    EXPECT_GT(std::abs(test::heldout_ppl(*LlamaModel::load(packed, no_adapter), *tok, 16) - reloaded), 1e-3);

    // A folder from before the pre-scaling (B as trained, lora_alpha 16) still loads to the same model.
    NamedTensors old;
    for (const auto& e : adapter->entries()) {
        const at::Tensor t = adapter->tensor(e.name);
        old.emplace_back(e.name, e.name.find("lora_B") != std::string::npos ? t / 2.0 : t.clone());
    }
    write_safetensors(out + "/adapter_model.safetensors", old);
    nlohmann::json old_config = config;
    old_config["lora_alpha"] = 16;
    write_json_atomic(out + "/adapter_config.json", old_config);
    const Checkpoint legacy = load_checkpoint(out);
    EXPECT_NEAR(legacy.adapter_scale, 2.0, 1e-12);
    EXPECT_NEAR(test::heldout_ppl(*LlamaModel::load(legacy, {}), *tok, 16), reloaded, 1e-5 * reloaded);
}

// The default fp16 adapters take half the bytes of fp32 (what the folder's bits per weight count) and the folder
// still scores as the trained model does, within fp16's rounding of A and B; an unknown dtype is refused.
TEST(Apiq, AdapterDtypeStoresNarrowAdaptersThatScoreAsTrained) {
    test::TempDir dir;
    const std::string out = dir.file("q");
    QuantRun run = quantize_into(out, tiny_apiq("apiq-bw"));
    const auto adapter = SafetensorsReader::open(out + "/adapter_model.safetensors");
    uint64_t bytes = 0, elements = 0;
    for (const auto& e : adapter->entries()) {
        EXPECT_EQ(adapter->tensor(e.name).scalar_type(), at::kHalf) << e.name;
        bytes += e.end - e.begin;
        elements += adapter->tensor(e.name).numel();
    }
    EXPECT_EQ(bytes, 2 * elements);
    EXPECT_EQ(inspect_checkpoint(load_checkpoint(out))["bytes"]["adapters"].get<uint64_t>(), bytes);
    EXPECT_EQ(nlohmann::json::parse(read_text_file(out + "/saliq_manifest.json"))["adapters"]["dtype"], "fp16");

    auto tok = Tokenizer::load(test::stories_tokenizer());
    const double in_memory = test::heldout_ppl(*run.in_memory, *tok, 16);
    const double reloaded = test::heldout_ppl(*LlamaModel::load(load_checkpoint(out), {}), *tok, 16);
    EXPECT_NEAR(reloaded, in_memory, 1e-3 * in_memory);

    Checkpoint ckpt = read_llama2c(test::stories_bin());
    QuantizeOptions bad = tiny_apiq("apiq-bw");
    bad.apiq.adapter_dtype = "fp8";
    try {
        validate_quantize_options(ckpt, *tok, bad);
        ADD_FAILURE() << "fp8 adapters were accepted";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), ::testing::HasSubstr("--adapter-dtype must be fp32, fp16 or bf16"));
    }
}

// The seed paper's binarizers inside ApiQ-bw: each trains (loss falls), writes its own packed layout (config says
// saliq_binary, so GPTQ loaders refuse it) and reloads to the model the run evaluated, adapters included.
TEST(Apiq, BinarizersTrainAndReloadExactly) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    for (const std::string kind : {"db-llm", "binarymos"}) {
        test::TempDir dir;
        const std::string out = dir.file("q");
        QuantizeOptions o = tiny_apiq("apiq-bw");
        o.apiq.quantizer = kind;
        o.spec.bits = kind == "binarymos" ? 1 : 2;
        o.apiq.mos_experts = 4;
        QuantRun run = quantize_into(out, o);
        for (const auto& b : run.result.blocks) {
            const auto& stage = b.method_stats["stages"][0];
            EXPECT_LT(stage["loss_end"].get<double>(), stage["loss_start"].get<double>()) << kind << " " << b.layer;
            EXPECT_TRUE(b.linears[0].binary.defined());
        }
        const auto config = nlohmann::json::parse(read_text_file(out + "/config.json"));
        EXPECT_EQ(config["quantization_config"]["quant_method"], "saliq_binary");
        EXPECT_EQ(config["quantization_config"]["binarizer"], kind);
        const auto model = SafetensorsReader::open(out + "/model.safetensors");
        const std::string q = "model.layers.1.mlp.down_proj";
        ASSERT_NE(model->find(q + ".qweight"), nullptr);
        EXPECT_EQ(model->find(q + ".qweight")->shape, (std::vector<int64_t>{kind == "binarymos" ? 6 : 11, 64}));
        if (kind == "binarymos") {
            EXPECT_EQ(model->find(q + ".router")->shape, (std::vector<int64_t>{4, 172}));
            EXPECT_EQ(model->find(q + ".scale_out")->shape, (std::vector<int64_t>{4, 64}));
        } else {
            EXPECT_EQ(model->find(q + ".alpha1")->shape, (std::vector<int64_t>{6, 64}));  // ceil(172 / 32) groups
        }
        EXPECT_EQ(model->find(q + ".qzeros"), nullptr);
        EXPECT_TRUE(path_exists(out + "/adapter_model.safetensors"));
        const Checkpoint packed = load_checkpoint(out);
        EXPECT_EQ(packed.packed.binarizer, kind);
        const double in_memory = test::heldout_ppl(*run.in_memory, *tok, 16);
        const double reloaded = test::heldout_ppl(*LlamaModel::load(packed, {}), *tok, 16);
        EXPECT_TRUE(std::isfinite(reloaded)) << kind;
        EXPECT_NEAR(in_memory, reloaded, 1e-5 * in_memory) << kind;
        // A packed binarized folder is not a starting point for another quantization.
        QuantizeOptions again = tiny_apiq("rtn");
        EXPECT_THROW(validate_quantize_options(packed, *tok, again), ConfigError);
    }
}

// Dense exports of a packed ApiQ-bw folder (adapters merged): the hf folder and the GGUF file score what the packed
// folder scores; db-llm exports too, BinaryMoS (token-wise scales) is refused.
TEST(Apiq, DenseExportsReloadToThePackedFoldersPerplexity) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    test::TempDir dir;
    const std::string out = dir.file("q");
    QuantRun run = quantize_into(out, tiny_apiq("apiq-bw"));
    const Checkpoint packed = load_checkpoint(out);
    const double want = test::heldout_ppl(*LlamaModel::load(packed, {}), *tok, 16);
    export_dense(packed, dir.file("hf"), {"hf", "fp32", true, false});
    export_dense(packed, dir.file("m.gguf"), {"gguf", "fp32", true, false});
    const Checkpoint hf = load_checkpoint(dir.file("hf"));
    EXPECT_EQ(hf.format, "hf");
    EXPECT_EQ(hf.adapter, nullptr);  // merged
    EXPECT_NEAR(test::heldout_ppl(*LlamaModel::load(hf, {}), *tok, 16), want, 1e-5 * want);
    const Checkpoint gguf = load_checkpoint(dir.file("m.gguf"), test::stories_tokenizer());
    EXPECT_NEAR(test::heldout_ppl(*LlamaModel::load(gguf, {}), *tok, 16), want, 1e-5 * want);
    // Without the adapters it is another model.
    export_dense(packed, dir.file("bare"), {"hf", "fp32", false, false});
    EXPECT_GT(std::abs(test::heldout_ppl(*LlamaModel::load(load_checkpoint(dir.file("bare")), {}), *tok, 16) - want), 1e-3);

    for (const std::string kind : {"db-llm", "binarymos"}) {
        QuantizeOptions o = tiny_apiq("apiq-bw");
        o.apiq.quantizer = kind;
        o.spec.bits = kind == "binarymos" ? 1 : 2;
        o.apiq.epochs = 1;
        quantize_into(dir.file(kind), o);
        const Checkpoint b = load_checkpoint(dir.file(kind));
        if (kind == "binarymos") {
            EXPECT_THROW(export_dense(b, dir.file(kind + "-hf"), {"hf", "fp32", true, false}), ConfigError);
            continue;
        }
        export_dense(b, dir.file(kind + "-hf"), {"hf", "fp32", true, false});
        const double bw = test::heldout_ppl(*LlamaModel::load(b, {}), *tok, 16);
        EXPECT_NEAR(test::heldout_ppl(*LlamaModel::load(load_checkpoint(dir.file(kind + "-hf")), {}), *tok, 16), bw, 1e-5 * bw);
    }
}

TEST(Apiq, BinarizerOptionsAreChecked) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = read_llama2c(test::stories_bin());
    auto refused = [&](const std::string& method, const std::string& quantizer, int bits) {
        QuantizeOptions o = tiny_apiq(method);
        o.apiq.quantizer = quantizer;
        o.spec.bits = bits;
        try {
            validate_quantize_options(ckpt, *tok, o);
        } catch (const ConfigError&) {
            return true;
        }
        return false;
    };
    EXPECT_TRUE(refused("apiq-bw", "db-llm", 3));      // two binary planes are 2 bits
    EXPECT_TRUE(refused("apiq-bw", "binarymos", 2));   // one sign bit
    EXPECT_TRUE(refused("gptq", "db-llm", 2));         // nothing trains it
    EXPECT_TRUE(refused("apiq-bw", "ternary", 2));
    EXPECT_TRUE(refused("apiq-bw", "uniform", 1));     // the uniform grid needs 2 bits or more
    EXPECT_FALSE(refused("apiq-bw", "binarymos", 1));
    EXPECT_FALSE(refused("omniquant", "db-llm", 2));
}

TEST(Apiq, OmniquantAndLayerwiseRun) {
    test::TempDir dir;
    QuantRun omni = quantize_into(dir.file("omni"), tiny_apiq("omniquant"));
    EXPECT_FALSE(path_exists(dir.file("omni/adapter_model.safetensors")));  // LWC only
    EXPECT_TRUE(path_exists(dir.file("omni/lwc.safetensors")));
    QuantizeOptions lw = tiny_apiq("apiq-lw");
    lw.apiq.epochs = 2;
    QuantRun layerwise = quantize_into(dir.file("lw"), lw);
    EXPECT_TRUE(path_exists(dir.file("lw/adapter_model.safetensors")));
    const auto& stats = layerwise.result.blocks[0].method_stats["layers"]["model.layers.0.mlp.down_proj"];
    EXPECT_LT(stats["stages"][0]["loss_end"].get<double>(), stats["stages"][0]["loss_start"].get<double>());
}

// --lwc-init search: with no epochs the stored clipping logits are the search's own (each a candidate, many
// clipped), the quantized blocks start closer to the FP ones than from min-max, the manifest says which start ran,
// and methods or grids the search cannot start are refused.
TEST(Apiq, SearchedClippingStartIsWhereTrainingStarts) {
    test::TempDir dir;
    std::map<std::string, double> error_sum;
    for (const char* init : {"minmax", "search"}) {
        QuantizeOptions o = tiny_apiq("omniquant");
        o.apiq.lwc_init = init;
        o.apiq.epochs = 0;
        QuantRun run = quantize_into(dir.file(init), o);
        for (const auto& b : run.result.blocks) error_sum[init] += b.block_error;
        auto reader = SafetensorsReader::open(dir.file(std::string(init) + "/lwc.safetensors"));
        int64_t clipped = 0, total = 0;
        for (const auto& e : reader->entries()) {
            const at::Tensor logits = reader->tensor(e.name).to(at::kDouble);
            at::Tensor candidate = at::isclose(logits, at::full_like(logits, kLwcInit), 0.0, 1e-6);
            for (int k = 1; k <= 10; ++k)
                candidate = at::logical_or(
                    candidate, at::isclose(logits, at::full_like(logits, std::log((1.0 - 0.05 * k) / (0.05 * k))), 0.0, 1e-6));
            EXPECT_TRUE(candidate.all().item<bool>()) << e.name;
            clipped += (logits < kLwcInit - 1e-6).sum().item<int64_t>();
            total += logits.numel();
        }
        if (std::string(init) == "minmax") EXPECT_EQ(clipped, 0);
        else EXPECT_GT(clipped, total / 10);
        const auto manifest = nlohmann::json::parse(test::read_bytes(dir.file(std::string(init) + "/saliq_manifest.json")));
        EXPECT_EQ(manifest["settings"]["apiq"].value("lwc_init", "minmax"), init);
    }
    EXPECT_LT(error_sum["search"], error_sum["minmax"]);

    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    auto refused = [&](const std::string& method, auto&& change) {
        QuantizeOptions o = tiny_apiq(method);
        o.apiq.lwc_init = "search";
        change(o);
        try {
            validate_quantize_options(ckpt, *tok, o);
        } catch (const ConfigError&) {
            return true;
        }
        return false;
    };
    const auto nothing = [](QuantizeOptions&) {};
    EXPECT_FALSE(refused("apiq-bw", nothing));
    EXPECT_TRUE(refused("gptq", nothing));
    EXPECT_TRUE(refused("apiq-lw", nothing));
    EXPECT_TRUE(refused("apiq-bw", [](QuantizeOptions& o) { o.apiq.quantizer = "db-llm"; }));
    EXPECT_TRUE(refused("apiq-bw", [](QuantizeOptions& o) { o.apiq.lwc_init = "percentile"; }));
}

// --lwc-init auto (the default): the searched start at 2 bits on the uniform grid of a method that searches; min-max
// at 3 bits, for binarizers, and for methods without a search; an explicit choice stands. The run records the
// resolved start.
TEST(Apiq, ClippingStartAutoSearchesAtTwoBitsOnly) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = read_llama2c(test::stories_bin());
    auto resolved = [&](const std::string& method, int bits, auto&& change) {
        QuantizeOptions o = tiny_apiq(method);
        EXPECT_EQ(o.apiq.lwc_init, "auto");
        o.spec.bits = bits;
        change(o);
        validate_quantize_options(ckpt, *tok, o);
        return o.apiq.lwc_init;
    };
    const auto nothing = [](QuantizeOptions&) {};
    EXPECT_EQ(resolved("apiq-bw", 2, nothing), "search");
    EXPECT_EQ(resolved("omniquant", 2, nothing), "search");
    EXPECT_EQ(resolved("apiq-bw", 3, nothing), "minmax");
    EXPECT_EQ(resolved("apiq-bw", 4, nothing), "minmax");
    EXPECT_EQ(resolved("apiq-lw", 2, nothing), "minmax");
    EXPECT_EQ(resolved("gptq", 2, nothing), "minmax");
    EXPECT_EQ(resolved("apiq-bw", 2, [](QuantizeOptions& o) { o.apiq.quantizer = "db-llm"; }), "minmax");
    EXPECT_EQ(resolved("apiq-bw", 2, [](QuantizeOptions& o) { o.apiq.lwc_init = "minmax"; }), "minmax");
    EXPECT_EQ(resolved("apiq-bw", 3, [](QuantizeOptions& o) { o.apiq.lwc_init = "search"; }), "search");

    test::TempDir dir;
    QuantizeOptions o = tiny_apiq("apiq-bw");
    o.apiq.epochs = 0;
    validate_quantize_options(ckpt, *tok, o);  // as the CLI does before it opens the folder
    quantize_into(dir.file("q"), o);
    const auto manifest = nlohmann::json::parse(test::read_bytes(dir.file("q/saliq_manifest.json")));
    EXPECT_EQ(manifest["settings"]["apiq"]["lwc_init"], "search");
}

// --train-dtype: auto made concrete (bf16 where the CPU multiplies bf16 in hardware, fp64 for fp64 models), fp16 and
// unknown names refused on CPU; bf16 training learns (the loss falls) and lands near fp32 training's result, and the
// manifest records what ran.
TEST(Apiq, TrainDtypeResolvesAndBf16TrainingTracksFp32) {
    const at::TensorOptions cpu32 = at::TensorOptions().dtype(at::kFloat);
    EXPECT_EQ(resolve_train_dtype("auto", cpu32), cpu_has_bf16_matrix_units() ? "bf16" : "fp32");
    EXPECT_EQ(resolve_train_dtype("auto", cpu32.dtype(at::kDouble)), "fp64");
    EXPECT_EQ(resolve_train_dtype("fp32", cpu32), "fp32");
    EXPECT_THROW(resolve_train_dtype("fp16", cpu32), ConfigError);
    EXPECT_THROW(resolve_train_dtype("int8", cpu32), ConfigError);

    test::TempDir dir;
    std::map<std::string, double> end_loss;
    for (const char* dtype : {"fp32", "bf16"}) {
        QuantizeOptions o = tiny_apiq("apiq-bw");
        o.apiq.train_dtype = dtype;
        QuantRun run = quantize_into(dir.file(dtype), o);
        const auto& stage = run.result.blocks[0].method_stats["stages"][0];
        EXPECT_LT(stage["loss_end"].get<double>(), stage["loss_start"].get<double>()) << dtype;
        end_loss[dtype] = stage["loss_end"].get<double>();
        const auto manifest = nlohmann::json::parse(test::read_bytes(dir.file(std::string(dtype) + "/saliq_manifest.json")));
        EXPECT_EQ(manifest["settings"]["apiq"]["train_dtype"], dtype) << manifest["settings"].dump();
    }
    EXPECT_NEAR(end_loss["bf16"], end_loss["fp32"], 0.1 * end_loss["fp32"]);
}

// A library caller gets the CLI's refusal: saliency on a method that does not train would run without the
// regularizer it asked for.
TEST(Apiq, SaliencyOnAMethodThatDoesNotTrainIsRefusedByTheLibrary) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    for (const char* method : {"gptq", "rtn", "slim-llm"}) {
        QuantizeOptions o = tiny_apiq(method);
        o.saliency.enabled = true;
        EXPECT_THROW(validate_quantize_options(ckpt, *tok, o), ConfigError) << method;
    }
    QuantizeOptions ok = tiny_apiq("apiq-bw");
    ok.saliency.enabled = true;
    ok.saliency.weighted = false;
    EXPECT_NO_THROW(validate_quantize_options(ckpt, *tok, ok));
}

// The saliency pass is the library's too: a caller without a file is refused before any work, prepare_saliency
// computes one (kept for a resumed run, recomputed when not to be reused), and the run then uses it.
TEST(Apiq, TheLibraryComputesTheSaliencyFirstWhenNoFileIsGiven) {
    test::TempDir dir;
    auto tok = Tokenizer::load(test::stories_tokenizer());
    Checkpoint ckpt = read_llama2c(test::stories_bin());
    ckpt.tokenizer_path = test::stories_tokenizer();
    QuantizeOptions o = tiny_apiq("apiq-bw");
    o.apiq.epochs = 1;
    o.saliency.enabled = true;
    o.saliency.calib = "tinystories";
    o.saliency.nsamples = 2;
    o.saliency.seqlen = 64;
    EXPECT_THAT(test::error_of([&] { quantize_model(ckpt, *tok, o); }), ::testing::HasSubstr("prepare_saliency"));
    QuantizeOptions bad = o;
    bad.saliency.metric = "magnitude";
    EXPECT_THAT(test::error_of([&] { validate_quantize_options(ckpt, *tok, bad); }),
                ::testing::HasSubstr("--saliency-metric"));
    const std::string path = dir.file("saliency.safetensors");
    const nlohmann::json stats = prepare_saliency(ckpt, *tok, o, path, /*reuse=*/true);
    EXPECT_EQ(o.saliency.fisher_path, path);
    EXPECT_EQ(stats["metric"], "hessian");
    EXPECT_EQ(stats["nsamples"], 2);
    EXPECT_EQ(SafetensorsReader::open(path)->entries().size(), 35u);
    QuantizeOptions again = o;
    again.saliency.fisher_path.clear();
    EXPECT_TRUE(prepare_saliency(ckpt, *tok, again, path, /*reuse=*/true).empty());  // reused, not recomputed
    EXPECT_EQ(again.saliency.fisher_path, path);
    const QuantRun run = quantize_into(dir.file("q"), o);
    EXPECT_GT(run.result.blocks[0].method_stats["fisher"]["model.layers.0.self_attn.q_proj"]["sum"].get<double>(),
              0.0);
}

TEST(Apiq, SaliencyStagesUseTheFisher) {
    test::TempDir dir;
    // Fisher from the CLI, then a wpt + opt run using it.
    const std::string fisher = dir.file("fisher.safetensors");
    auto r = test::run_saliq("saliency -m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                             " --metric fisher --calib c4 --nsamples 3 --seqlen 64 --out " + fisher + " -q");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto reader = SafetensorsReader::open(fisher);
    EXPECT_EQ(reader->entries().size(), 35u);
    const at::Tensor f = reader->tensor("model.layers.2.mlp.gate_proj.weight");
    EXPECT_EQ(f.sizes().vec(), (std::vector<int64_t>{172, 64}));
    EXPECT_GE(f.min().item<float>(), 0.0f);
    EXPECT_GT(f.sum().item<float>(), 0.0f);

    QuantizeOptions o = tiny_apiq("apiq-bw");
    o.saliency.enabled = true;
    o.saliency.fisher_path = fisher;
    o.saliency.lambda = 10.0;
    o.apiq.stages = {{"wpt", 2}, {"mixed", 1}, {"opt", 1}};
    QuantRun run = quantize_into(dir.file("q"), o);
    const auto& stats = run.result.blocks[1].method_stats;
    EXPECT_EQ(stats["stages"].size(), 3u);
    EXPECT_EQ(stats["stages"][0]["stage"], "wpt");
    EXPECT_GT(stats["fisher"]["model.layers.1.self_attn.q_proj"]["sum"].get<double>(), 0.0);
    EXPECT_DOUBLE_EQ(stats["lambda"].get<double>(), 10.0);
    // The regularizer alone (wpt) moves the clipping towards the FP weights: its loss falls.
    EXPECT_LE(stats["stages"][0]["loss_end"].get<double>(), stats["stages"][0]["loss_start"].get<double>());

    o.apiq.stages = {{"wpt", 1}};
    o.saliency.enabled = false;
    EXPECT_THROW(quantize_into(dir.file("bad"), o), ConfigError);

    // Defaults: opt for every epoch; with saliency, mixed (MSE + lambda R) for every epoch (scripts/bench_saliency.sh).
    o.apiq.stages.clear();
    o.apiq.epochs = 20;
    std::vector<TrainStage> stages = resolve_stages(o);
    ASSERT_EQ(stages.size(), 1u);
    EXPECT_EQ(stages[0].name, "opt");
    EXPECT_EQ(stages[0].epochs, 20);
    o.saliency.enabled = true;
    stages = resolve_stages(o);
    ASSERT_EQ(stages.size(), 1u);
    EXPECT_EQ(stages[0].name, "mixed");
    EXPECT_EQ(stages[0].epochs, 20);
    // lambda follows the normalization: 20 with the default --fisher-norm mean, the paper's 0.1 with none.
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const Checkpoint ckpt = read_llama2c(test::stories_bin());
    QuantizeOptions d = tiny_apiq("apiq-bw");
    d.saliency.enabled = true;
    EXPECT_EQ(d.saliency.metric, "hessian");
    validate_quantize_options(ckpt, *tok, d);
    EXPECT_DOUBLE_EQ(d.saliency.lambda, 20.0);
    d = tiny_apiq("apiq-bw");
    d.saliency.enabled = true;
    d.saliency.fisher_norm = "none";
    validate_quantize_options(ckpt, *tok, d);
    EXPECT_DOUBLE_EQ(d.saliency.lambda, 0.1);
}

// Starts `command` in the background and returns its pid.
pid_t spawn(const std::string& command) {
    const pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", ("exec " + command + " >/dev/null 2>&1").c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    return pid;
}

TEST(Apiq, KilledRunResumesToIdenticalOutput) {
    test::TempDir dir;
    const std::string args = std::string(SALIQ_BINARY) + " quantize -m " + test::stories_bin() + " --tokenizer " +
                             test::stories_tokenizer() +
                             " --method apiq-bw --bits 2 --group-size 32 --calib tinystories --calib-range 0:0.5 "
                             "--nsamples 6 --seqlen 64 --epochs 6 --lora-rank 4 --threads 1 -q --out ";
    auto r = test::run_saliq(args.substr(std::string(SALIQ_BINARY).size()) + dir.file("full"));
    ASSERT_EQ(r.exit_code, 0) << r.output;

    const std::string out = dir.file("resumed");
    const pid_t pid = spawn(args + out);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!path_exists(out + ".partial/block_0001.safetensors") && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
    EXPECT_FALSE(path_exists(out));
    EXPECT_FALSE(path_exists(out + ".partial/block_0004.safetensors"));

    r = test::run_saliq(args.substr(std::string(SALIQ_BINARY).size()) + out);
    EXPECT_EQ(r.exit_code, 2) << r.output;  // refuses without --resume
    EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
    r = test::run_saliq(args.substr(std::string(SALIQ_BINARY).size()) + out + " --resume");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* f : {"model.safetensors", "adapter_model.safetensors", "lwc.safetensors", "config.json",
                          "tokenizer.model", "tokenizer_config.json"})
        EXPECT_EQ(test::read_bytes(dir.file("full/") + f), test::read_bytes(out + "/" + f)) << f;
    // adapter_config.json names its own folder as the base model; all else is identical.
    auto ca = nlohmann::json::parse(test::read_bytes(dir.file("full/adapter_config.json")));
    auto cb = nlohmann::json::parse(test::read_bytes(out + "/adapter_config.json"));
    EXPECT_EQ(cb["base_model_name_or_path"], canonical_path(out));
    ca.erase("base_model_name_or_path");
    cb.erase("base_model_name_or_path");
    EXPECT_EQ(ca, cb);
    auto a = nlohmann::json::parse(test::read_bytes(dir.file("full/saliq_manifest.json")));
    auto b = nlohmann::json::parse(test::read_bytes(out + "/saliq_manifest.json"));
    EXPECT_EQ(a["layers"], b["layers"]);
    a["files"].erase("adapter_config.json");
    b["files"].erase("adapter_config.json");
    EXPECT_EQ(a["files"], b["files"]);
    EXPECT_EQ(a["calibration"], b["calibration"]);
    for (size_t i = 0; i < a["blocks"].size(); ++i)
        EXPECT_EQ(a["blocks"][i]["method_stats"], b["blocks"][i]["method_stats"]) << i;
}

}  // namespace
}  // namespace saliq
