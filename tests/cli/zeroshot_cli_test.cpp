// End-to-end checks of `saliq eval --tasks`: the table, the JSON, the BOS switch, and exit codes for bad input.
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "test_utils.h"

namespace saliq {
namespace {

using test::run_saliq;
using test::TempDir;

std::string stories_args() { return "-m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer(); }

// Points SALIQ_DATA_DIR at `dir` for the saliq processes this test starts.
class ScopedDataDir {
public:
    explicit ScopedDataDir(const std::string& dir) { setenv("SALIQ_DATA_DIR", dir.c_str(), 1); }
    ~ScopedDataDir() { unsetenv("SALIQ_DATA_DIR"); }
};

// --json-format lm-eval: the harness's results layout, with the same numbers as saliq's own JSON.
TEST(ZeroShotCli, LmEvalLayoutCarriesTheSameNumbers) {
    TempDir dir;
    const std::string common = "eval " + stories_args() + " --tasks piqa,winogrande --limit 6 --threads 1 "
                               "--dataset tinystories --seqlen 128 --max-windows 2 --json ";
    auto r = run_saliq(common + dir.file("s.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_saliq(common + dir.file("l.json") + " --json-format lm-eval");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto s = nlohmann::json::parse(test::read_bytes(dir.file("s.json")));
    const auto l = nlohmann::json::parse(test::read_bytes(dir.file("l.json")));
    EXPECT_EQ(l["results"]["piqa"]["acc,none"], s["zeroshot"]["tasks"]["piqa"]["acc"]);
    EXPECT_EQ(l["results"]["piqa"]["acc_norm,none"], s["zeroshot"]["tasks"]["piqa"]["acc_norm"]);
    EXPECT_EQ(l["results"]["piqa"]["acc_stderr,none"], s["zeroshot"]["tasks"]["piqa"]["acc_stderr"]);
    EXPECT_FALSE(l["results"]["winogrande"].contains("acc_norm,none"));
    EXPECT_EQ(l["versions"]["piqa"], 1.0);
    EXPECT_EQ(l["n-shot"]["winogrande"], 0);
    EXPECT_EQ(l["n-samples"]["piqa"]["effective"], 6);
    EXPECT_EQ(l["n-samples"]["piqa"]["original"], 1838);
    EXPECT_EQ(l["config"]["limit"], 6);
    EXPECT_EQ(l["results"]["tinystories"]["token_perplexity,none"], s["ppl"]);
    EXPECT_EQ(l["higher_is_better"]["tinystories"]["token_perplexity"], false);
    EXPECT_EQ(run_saliq(common + dir.file("x.json") + " --json-format csv").exit_code, 2);
}

TEST(ZeroShotCli, TasksWriteATableAndJson) {
    TempDir dir;
    const auto r = run_saliq("eval " + stories_args() + " --tasks piqa,winogrande --limit 4 --threads 1 --json " +
                             dir.file("r.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("|piqa         |acc     |"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("|             |acc_norm|"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("|winogrande   |acc     |"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("perplexity"), std::string::npos) << r.output;  // tasks only
    const auto json = nlohmann::json::parse(test::read_bytes(dir.file("r.json")));
    EXPECT_EQ(json["zeroshot"]["settings"]["bos"], true);
    EXPECT_EQ(json["zeroshot"]["settings"]["limit"], 4);
    EXPECT_EQ(json["zeroshot"]["settings"]["batch_size"], 32);
    const auto& piqa = json["zeroshot"]["tasks"]["piqa"];
    EXPECT_EQ(piqa["n"], 4);
    EXPECT_EQ(piqa["requests"], 8);
    EXPECT_GE(piqa["acc"].get<double>(), 0.0);
    EXPECT_LE(piqa["acc"].get<double>(), 1.0);
    EXPECT_TRUE(piqa.contains("acc_norm_stderr"));
    EXPECT_FALSE(json["zeroshot"]["tasks"]["winogrande"].contains("acc_norm"));
    EXPECT_TRUE(json["zeroshot"]["paper_average"].is_null());  // only two of the five tasks
    EXPECT_FALSE(json.contains("ppl"));
    EXPECT_EQ(json["model"], test::stories_bin());
}

TEST(ZeroShotCli, NoBosIsRecordedAndPerplexityCanRunAlongside) {
    TempDir dir;
    const auto r = run_saliq("eval " + stories_args() + " --tasks boolq --limit 2 --no-bos --batch-size 3 "
                             "--dataset tinystories --seqlen 64 --max-windows 2 --threads 1 --json " +
                             dir.file("r.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("perplexity"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("BOS off"), std::string::npos) << r.output;
    const auto json = nlohmann::json::parse(test::read_bytes(dir.file("r.json")));
    EXPECT_EQ(json["windows"], 2);
    EXPECT_EQ(json["zeroshot"]["settings"]["bos"], false);
    EXPECT_EQ(json["zeroshot"]["settings"]["batch_size"], 3);
    EXPECT_EQ(json["zeroshot"]["tasks"]["boolq"]["n"], 2);
}

TEST(ZeroShotCli, UnknownTaskExitsWithConfigError) {
    const auto r = run_saliq("eval " + stories_args() + " --tasks piqa,squad");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("squad"), std::string::npos) << r.output;
    const auto bad_limit = run_saliq("eval " + stories_args() + " --tasks piqa --limit 0");
    EXPECT_EQ(bad_limit.exit_code, 2) << bad_limit.output;
}

TEST(ZeroShotCli, MissingAndMalformedTaskFilesExitWithCode3) {
    const std::string args = stories_args();  // resolved against the real data folder first
    TempDir dir;
    ScopedDataDir data(dir.path());
    auto r = run_saliq("eval " + args + " --tasks boolq");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find(dir.path() + "/tasks/boolq/dev.jsonl"), std::string::npos) << r.output;

    make_directories(dir.file("tasks/boolq"));
    test::write_bytes(dir.file("tasks/boolq/dev.jsonl"),
                      "{\"question\": \"q\", \"passage\": \"p\", \"answer\": true}\n{\"question\": \"q\", \"passage\"\n");
    r = run_saliq("eval " + args + " --tasks boolq");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find(dir.path() + "/tasks/boolq/dev.jsonl: line 2"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace saliq
