// End-to-end checks of the saliq binary: exit codes and messages a user sees.
#include <nlohmann/json.hpp>

#include "saliq/file.h"
#include "saliq/strings.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::convert_stories;
using test::poison_tensor;
using test::run_saliq;
using test::TempDir;

std::string stories_args() { return "-m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer(); }

// llama.cpp's own stories260K.gguf converts to the same HF folder as the llama2.c checkpoint (q/k rows back to HF's
// rotary order), and exactly one source must be given.
TEST(Cli, ConvertFromGgufMatchesTheLlama2cConversion) {
    TempDir dir;
    const std::string hf = convert_stories(dir);
    const std::string gguf = test::data_path("models/stories260K/stories260K.gguf");
    auto r = run_saliq("convert --from-gguf " + gguf + " --tokenizer " + test::stories_tokenizer() + " --out " +
                       dir.file("g"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string ev = " --dataset tinystories --seqlen 128 --max-windows 4 -q --json ";
    ASSERT_EQ(run_saliq("eval -m " + hf + ev + dir.file("a.json")).exit_code, 0);
    ASSERT_EQ(run_saliq("eval -m " + dir.file("g") + ev + dir.file("b.json")).exit_code, 0);
    const auto a = nlohmann::json::parse(test::read_bytes(dir.file("a.json")));
    const auto b = nlohmann::json::parse(test::read_bytes(dir.file("b.json")));
    EXPECT_EQ(a["ppl"], b["ppl"]);
    r = run_saliq("convert --from-gguf " + gguf + " --from-llama2c " + test::stories_bin() + " --out " + dir.file("x"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("one of --from-llama2c and --from-gguf"), std::string::npos) << r.output;
}

TEST(Cli, ConvertRefusesToOverwriteWithoutForce) {
    TempDir dir;
    const std::string out = convert_stories(dir);
    auto r = run_saliq("convert --from-llama2c " + test::stories_bin() + " --out " + out);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
    r = run_saliq("convert --from-llama2c " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer() +
                  " --out " + out + " --force");
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Cli, EvalWritesJsonThatMatchesStdout) {
    TempDir dir;
    const std::string hf = convert_stories(dir);
    const auto r = run_saliq("eval -m " + hf + " --dataset tinystories --seqlen 128 --max-windows 4 --json " +
                             dir.file("r.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto json = nlohmann::json::parse(test::read_bytes(dir.file("r.json")));
    EXPECT_EQ(json["windows"], 4);
    EXPECT_EQ(json["tokens_scored"], 4 * 127);
    EXPECT_EQ(json["seqlen"], 128);
    EXPECT_EQ(json["dataset"], "tinystories");
    EXPECT_GT(json["ppl"].get<double>(), 1.0);
    EXPECT_NE(r.output.find("perplexity"), std::string::npos);
}

TEST(Cli, MissingModelExitsWithIoError) {
    const auto r = run_saliq("eval -m /nonexistent/model --tokenizer " + test::stories_tokenizer());
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("/nonexistent/model"), std::string::npos) << r.output;
}

TEST(Cli, TruncatedWeightsExitWithFormatErrorNamingTheFile) {
    TempDir dir;
    const std::string hf = convert_stories(dir);
    const std::string weights = hf + "/model.safetensors";
    const std::string bytes = test::read_bytes(weights);
    test::write_bytes(weights, bytes.substr(0, bytes.size() / 2));
    const auto r = run_saliq("eval -m " + hf + " --dataset tinystories --seqlen 64 --max-windows 1");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("model.safetensors"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
}

TEST(Cli, InconsistentConfigExitsWithFormatError) {
    TempDir dir;
    const std::string hf = convert_stories(dir);
    auto config = nlohmann::json::parse(test::read_bytes(hf + "/config.json"));
    config.erase("head_dim");
    config["num_attention_heads"] = 7;
    test::write_bytes(hf + "/config.json", config.dump());
    const auto r = run_saliq("eval -m " + hf);
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("not divisible"), std::string::npos) << r.output;
}

TEST(Cli, BadOptionsExitWithConfigError) {
    auto r = run_saliq("eval " + stories_args() + " --seqlen 4096");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("max_position_embeddings"), std::string::npos) << r.output;
    r = run_saliq("eval " + stories_args() + " --dataset wikitext9");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = run_saliq("eval " + stories_args() + " --dtype fp16");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = run_saliq("frobnicate");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = run_saliq("eval " + stories_args() + " --packed-cuda");  // the GPU kernels' flag, on the CPU
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--packed-cuda is for --device cuda"), std::string::npos) << r.output;
    r = run_saliq("eval -m " + test::stories_bin());  // no tokenizer anywhere
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--tokenizer"), std::string::npos) << r.output;
}

TEST(Cli, TokenizerOfAnotherModelIsRefused) {
    const auto r = run_saliq("eval -m " + test::stories_bin() + " --tokenizer " +
                             test::data_path("tokenizers/llama/tokenizer.model"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("32000"), std::string::npos) << r.output;
}

TEST(Cli, GenerateFollowsThePrompt) {
    const auto r = run_saliq("generate " + stories_args() + " --prompt \"Once upon a time\" -n 20 -q");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("Once upon a time", 0), 0u) << r.output;
}

// The fallback way of loading the tokenizer shim (own namespace, RTLD_DEEPBIND) decodes the same text.
TEST(Cli, TokenizerShimLoadsWithDeepbindToo) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "AddressSanitizer does not support RTLD_DEEPBIND";
#endif
    const std::string args = "generate " + stories_args() + " --prompt \"Once upon a time\" -n 20 -q";
    const auto plain = run_saliq(args);
    const auto deepbind = run_saliq(args + " --log-level debug", "SALIQ_SPM_LOAD=deepbind");
    EXPECT_EQ(deepbind.exit_code, 0) << deepbind.output;
    EXPECT_NE(deepbind.output.find("with RTLD_DEEPBIND"), std::string::npos) << deepbind.output;
    EXPECT_NE(deepbind.output.find(plain.output), std::string::npos) << deepbind.output << "\n---\n" << plain.output;
}

}  // namespace
}  // namespace saliq

namespace saliq {
namespace {

std::string quantize_args(const std::string& out) {
    return "quantize " + stories_args() +
           " --method rtn --calib tinystories --calib-range 0:0.5 --nsamples 4 --seqlen 64 --out " + out;
}

TEST(CliQuantize, WritesAFolderThatInspectAndEvalRead) {
    TempDir dir;
    const std::string out = dir.file("q");
    auto r = run_saliq(quantize_args(out) + " --method gptq --bits 2 --group-size 32");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("bits/weight"), std::string::npos) << r.output;
    // stories260K's 172-wide MLP is not something GPTQ loaders read: said at quantize time and by inspect.
    EXPECT_NE(r.output.find("GPTQ loaders may reject mlp.down_proj: in 172"),
              std::string::npos) << r.output;
    const auto manifest = nlohmann::json::parse(test::read_bytes(out + "/saliq_manifest.json"));
    EXPECT_EQ(manifest["method"], "gptq");
    EXPECT_EQ(manifest["settings"]["gptq"]["group_order"], true);  // GPTQ's default order, recorded
    EXPECT_EQ(manifest["calibration"]["window_starts"].size(), 4u);
    EXPECT_EQ(manifest["layers"].size(), 35u);
    EXPECT_EQ(manifest["files"]["model.safetensors"]["sha256"].get<std::string>().size(), 64u);
    r = run_saliq("inspect " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("2-bit, group 32"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("gptq loaders  may reject mlp.gate_proj: out 172"), std::string::npos) << r.output;
    EXPECT_TRUE(path_exists(out + "/tokenizer_config.json"));
    r = run_saliq("eval -m " + out + " --dataset tinystories --seqlen 128 --max-windows 2 --eval-range 0.5:1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

// `saliq windows` hands another tool the very windows quantize calibrates on: same draw, same ids.
TEST(CliQuantize, WindowsAreTheOnesQuantizeDraws) {
    TempDir dir;
    const std::string out = dir.file("q");
    auto r = run_saliq("quantize " + stories_args() + " --method gptq --bits 4 --group-size 32 --calib tinystories "
                       "--calib-range 0:0.5 --nsamples 4 --seqlen 64 --seed 3 --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_saliq("windows --tokenizer " + test::stories_tokenizer() + " --calib tinystories --calib-range 0:0.5 "
                  "--nsamples 4 --seqlen 64 --seed 3 -o " + dir.file("w.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto manifest = nlohmann::json::parse(test::read_bytes(out + "/saliq_manifest.json"));
    const auto w = nlohmann::json::parse(test::read_bytes(dir.file("w.json")));
    EXPECT_EQ(w["starts"], manifest["calibration"]["window_starts"]);
    ASSERT_EQ(w["windows"].size(), 4u);
    for (const auto& window : w["windows"]) {
        ASSERT_EQ(window.size(), 64u);
        for (const auto& id : window) EXPECT_TRUE(id.get<int>() >= 0 && id.get<int>() < 512) << id;
    }
    EXPECT_NE(w["windows"][0], w["windows"][1]);
    r = run_saliq("windows --tokenizer " + test::stories_tokenizer() + " --calib tinystories --nsamples 4 "
                  "--seqlen 64 --calib-range 0.5:0.2 -o " + dir.file("bad.json"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(path_exists(dir.file("bad.json")));
}

// Computed from the packed codes (the default) or from the dequantized dense weights (--dequantize): the same
// perplexity, for plain GPTQ folders and for ApiQ's with adapters, and the same greedy text.
TEST(CliQuantize, PackedAndDequantizedEvalAgree) {
    TempDir dir;
    for (const std::string method : {"gptq --bits 2 --group-size 32 --act-order", "apiq-bw --bits 3 --group-size 64 --epochs 1"}) {
        const std::string out = dir.file("q" + std::to_string(method.size()));
        auto r = run_saliq(quantize_args(out) + " --method " + method);
        ASSERT_EQ(r.exit_code, 0) << r.output;
        double ppl[2];
        for (int dense = 0; dense < 2; ++dense) {
            const std::string json = out + (dense ? "/dense.json" : "/packed.json");
            r = run_saliq("eval -m " + out + " --dataset tinystories --seqlen 256 --max-windows 4 --eval-range 0.5:1" +
                          (dense ? " --dequantize" : "") + " --json " + json);
            ASSERT_EQ(r.exit_code, 0) << r.output;
            ppl[dense] = nlohmann::json::parse(test::read_bytes(json))["ppl"].get<double>();
        }
        EXPECT_NEAR(ppl[0], ppl[1], 1e-4 * ppl[1]) << method;
        const auto a = run_saliq("generate -m " + out + " --prompt \"Once upon\" -n 24 -q");
        const auto b = run_saliq("generate -m " + out + " --prompt \"Once upon\" -n 24 --dequantize -q");
        EXPECT_EQ(a.output, b.output) << method;
    }
}

TEST(CliQuantize, RefusesBadRequestsWithClearMessages) {
    TempDir dir;
    auto r = run_saliq(quantize_args(dir.file("a")) + " --bits 5");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("unsupported bit width 5"), std::string::npos) << r.output;
    r = run_saliq(quantize_args(dir.file("b")) + " --group-size 256");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("larger than the rows"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("b")));
    test::write_bytes(dir.file("keep.txt"), "x");
    make_directories(dir.file("full"));
    test::write_bytes(dir.file("full/notes.txt"), "mine");
    r = run_saliq(quantize_args(dir.file("full")) + " --bits 4");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
    EXPECT_EQ(test::read_bytes(dir.file("full/notes.txt")), "mine");
    r = run_saliq(quantize_args(dir.file("full")) + " --bits 4 --force -q");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_FALSE(path_exists(dir.file("full/notes.txt")));
    r = run_saliq(quantize_args(dir.file("c")) + " --method gptq --calib " + dir.file("keep.txt"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("calibration set too small"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("c")));
    EXPECT_FALSE(path_exists(dir.file("c.partial")));
}

TEST(CliQuantize, NonFiniteWeightsExitWithFormatError) {
    TempDir dir;
    const std::string hf = convert_stories(dir);
    poison_tensor(hf, "model.layers.2.mlp.up_proj.weight");
    const auto r = run_saliq("quantize -m " + hf +
                             " --method rtn --calib tinystories --nsamples 2 --seqlen 64 --bits 2 --group-size 32 --out " +
                             dir.file("q"));
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("model.layers.2.mlp.up_proj.weight"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("NaN"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("q")));
}

// Options the method does not use are named in a warning (and the run goes on); the saliency regularizer on a
// method that does not train is refused, by the library as by the CLI.
TEST(CliQuantize, OptionsThatDoNotApplyAreNamedOrRefused) {
    TempDir dir;
    auto r = run_saliq("quantize " + stories_args() + " --method rtn --bits 2 --group-size 32 --act-order --lora-rank 8 "
                       "--epochs 3 --out " + dir.file("q"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* option : {"--act-order", "--lora-rank", "--epochs"})
        EXPECT_NE(r.output.find(std::string(option)), std::string::npos) << option << "\n" << r.output;
    EXPECT_NE(r.output.find("does not apply to --method rtn"), std::string::npos) << r.output;
    // GPTQ's group-aware order is switched off by --no-group-order (nothing recorded), and refused beside --act-order.
    r = run_saliq("quantize " + stories_args() + " --method gptq --bits 2 --group-size 32 --no-group-order "
                  "--calib tinystories --nsamples 2 --seqlen 64 --out " + dir.file("n"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_FALSE(nlohmann::json::parse(test::read_bytes(dir.file("n/saliq_manifest.json")))["settings"]["gptq"]
                     .contains("group_order"));
    r = run_saliq("quantize " + stories_args() + " --method gptq --bits 2 --group-size 32 --group-order --act-order "
                  "--calib tinystories --nsamples 2 --seqlen 64 --out " + dir.file("b"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("pick one"), std::string::npos) << r.output;
    r = run_saliq("quantize " + stories_args() + " --method gptq --bits 2 --saliency --calib tinystories "
                  "--nsamples 2 --seqlen 64 --out " + dir.file("g"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--saliency"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("g")));
}

// One vocabulary across commands: export --dtype takes fp32/fp16/bf16 like every --dtype, and its old f32/f16 still
// work with a deprecation line; finetune's optimizer batch is --train-batch as in quantize (--batch deprecated).
TEST(Cli, OptionsAreNamedOneWayWithDeprecatedSpellingsStillRead) {
    TempDir dir;
    auto r = run_saliq("export " + stories_args() + " --format hf --dtype fp16 --out " + dir.file("a"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("deprecated"), std::string::npos) << r.output;
    r = run_saliq("export " + stories_args() + " --format hf --dtype f16 --out " + dir.file("b"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("--dtype f16 is deprecated"), std::string::npos) << r.output;
    EXPECT_EQ(test::read_bytes(dir.file("a/model.safetensors")), test::read_bytes(dir.file("b/model.safetensors")));
    r = run_saliq("export " + stories_args() + " --format hf --dtype f8 --out " + dir.file("c"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = run_saliq("finetune --help");
    EXPECT_NE(r.output.find("--train-batch"), std::string::npos) << r.output;
}

TEST(CliQuantize, RtnNeedsNoOtherOptionAndReadsNoText) {
    TempDir dir;
    const std::string hf = convert_stories(dir);
    const std::string out = dir.file("q");
    // The default --seqlen (2048) exceeds this model's context of 512: RTN must not care.
    auto r = run_saliq("quantize -m " + hf + " --method rtn --bits 4 --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("calibration:"), std::string::npos) << r.output;
    // No option was given, so none is named as ignored (validation runs twice; a resolved default is not a request).
    EXPECT_EQ(r.output.find("does not apply"), std::string::npos) << r.output;
    const auto manifest = nlohmann::json::parse(test::read_bytes(out + "/saliq_manifest.json"));
    EXPECT_TRUE(manifest["calibration"]["window_starts"].empty());
    EXPECT_EQ(manifest["settings"]["error_windows"], 0);
    EXPECT_FALSE(path_exists(out + ".partial"));
    // Error reporting is there when asked for: a few windows, no more.
    r = run_saliq("quantize -m " + hf + " --method rtn --bits 4 --error-windows 2 --calib tinystories --out " +
                  dir.file("q2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto m2 = nlohmann::json::parse(test::read_bytes(dir.file("q2") + "/saliq_manifest.json"));
    EXPECT_EQ(m2["calibration"]["window_starts"].size(), 2u);
    EXPECT_EQ(m2["calibration"]["seqlen"], 512);  // min(2048, context)
    EXPECT_GT(m2["layers"][0]["rel_error"].get<double>(), 0.0);
}

TEST(CliQuantize, ARefusedRunLeavesNothingAndTheCorrectedOneRuns) {
    TempDir dir;
    const std::string out = dir.file("q");
    auto r = run_saliq(quantize_args(out) + " --method gptq --seqlen 4096");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("max_position_embeddings"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(out));
    EXPECT_FALSE(path_exists(out + ".partial"));
    r = run_saliq(quantize_args(out) + " --method gptq --act-dtype int4");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--act-dtype"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(out + ".partial"));
    // A run that cannot fit in memory is refused before it starts, with what it needs and how to need less.
    r = run_saliq(quantize_args(out) + " --method gptq --nsamples 20000000");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("needs about"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("workspace"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--no-memory-check"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(out));
    EXPECT_FALSE(path_exists(out + ".partial"));
    r = run_saliq(quantize_args(out) + " --method gptq -q");
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(CliQuantize, AFailureBeforeTheFirstBlockLeavesNothingAndAnEmptyPartialDoesNotBlock) {
    TempDir dir;
    const std::string hf = convert_stories(dir);
    poison_tensor(hf, "model.layers.0.self_attn.q_proj.weight");
    const std::string out = dir.file("q");
    const std::string args = "quantize -m " + hf + " --method gptq --calib tinystories --nsamples 2 --seqlen 64 --out ";
    auto r = run_saliq(args + out);
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_FALSE(path_exists(out + ".partial"));
    // A partial folder with no finished block (a run killed early) is replaced, not refused.
    TempDir clean;
    const std::string hf2 = convert_stories(clean);
    make_directories(out + ".partial");
    test::write_bytes(out + ".partial/state.json", "{}");
    r = run_saliq("quantize -m " + hf2 +
                  " --method gptq --calib tinystories --nsamples 2 --seqlen 64 -q --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_FALSE(path_exists(out + ".partial"));
}

TEST(CliQuantize, ResumeWithOtherOptionsNamesTheDifference) {
    TempDir dir;
    const std::string hf = convert_stories(dir);
    poison_tensor(hf, "model.layers.2.mlp.up_proj.weight");  // blocks 0 and 1 finish, block 2 fails
    const std::string out = dir.file("q");
    const std::string args = "quantize -m " + hf + " --method gptq --calib tinystories --nsamples 2 --seqlen 64 --out " + out;
    auto r = run_saliq(args + " --bits 2 --group-size 32");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    ASSERT_TRUE(path_exists(out + ".partial/block_0000.safetensors")) << r.output;
    r = run_saliq(args + " --bits 3 --group-size 32 --resume");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("bits: 2 (interrupted run) vs 3 (now)"), std::string::npos) << r.output;
    r = run_saliq(args + " --bits 2 --group-size 32");
    EXPECT_EQ(r.exit_code, 2) << r.output;  // finished blocks are never discarded silently
    EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
    // --resume --force (what `saliq table` passes): a partial run of other settings is started over, said so.
    r = run_saliq(args + " --bits 3 --group-size 32 --resume --force");
    EXPECT_EQ(r.exit_code, 3) << r.output;  // the poisoned block again, now at 3 bits
    EXPECT_NE(r.output.find("starting over, as --force asks"), std::string::npos) << r.output;
    const auto state = nlohmann::json::parse(test::read_bytes(out + ".partial/state.json"));
    EXPECT_EQ(state["fingerprint"]["bits"], 3);
}

}  // namespace
}  // namespace saliq

namespace saliq {
namespace {

TEST(CliConfigs, EveryShippedConfigParses) {
    // Each config's options must exist: with the model pointed at nothing, the run gets as far as loading it.
    int n = 0;
    const std::string configs = std::string(SALIQ_SOURCE_DIR) + "/configs";
    for (const auto& name : list_directory(configs)) {
        if (!ends_with(name, ".toml")) continue;
        ++n;
        const std::string path = configs + "/" + name;
        const auto r = run_saliq("quantize --config " + path + " -m /nonexistent/model -o /tmp/x");
        EXPECT_EQ(r.exit_code, 3) << path << "\n" << r.output;
        EXPECT_NE(r.output.find("/nonexistent/model"), std::string::npos) << path << "\n" << r.output;
    }
    EXPECT_GE(n, 4);
}

TEST(CliConfigs, UnknownKeysAreRefused) {
    TempDir dir;
    test::write_bytes(dir.file("bad.toml"), "[quantize]\nlamda = 0.1\n");
    const auto r = run_saliq("quantize --config " + dir.file("bad.toml") + " -m /nonexistent/model -o /tmp/x");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("lamda"), std::string::npos) << r.output;
}

TEST(CliConfigs, StoriesConfigRunsWithCommandLineOverrides) {
    TempDir dir;
    const auto r = run_saliq("quantize --config " + std::string(SALIQ_SOURCE_DIR) +
                             "/configs/stories260k_w2g32_gptq.toml -m " + test::stories_bin() + " --tokenizer " +
                             test::stories_tokenizer() + " --nsamples 2 --seqlen 64 -q --out " + dir.file("q"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto manifest = nlohmann::json::parse(test::read_bytes(dir.file("q/saliq_manifest.json")));
    EXPECT_EQ(manifest["method"], "gptq");
    EXPECT_EQ(manifest["calibration"]["nsamples"], 2);
    EXPECT_EQ(manifest["calibration"]["range"], "0:0.5");
}

}  // namespace
}  // namespace saliq
