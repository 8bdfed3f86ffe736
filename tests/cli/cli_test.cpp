// End-to-end checks of the saliq binary: exit codes and messages a user sees.
#include <nlohmann/json.hpp>

#include "test_utils.h"

namespace saliq {
namespace {

using test::run_saliq;
using test::TempDir;

std::string stories_args() { return "-m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer(); }

// A converted HF folder of stories260K.
std::string convert_stories(const TempDir& dir) {
    const std::string out = dir.file("hf");
    const auto r = run_saliq("convert --from-llama2c " + test::stories_bin() + " --tokenizer " +
                             test::stories_tokenizer() + " --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return out;
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

}  // namespace
}  // namespace saliq
