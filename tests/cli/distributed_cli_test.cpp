// Two ranks over Gloo on loopback (saliq launch) against one process: the same perplexity, zero-shot accuracies,
// Fisher and GPTQ folder; and a run that loses a rank ends cleanly, naming it.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "saliq/file.h"
#include "saliq/safetensors.h"
#include "test_utils.h"

extern char** environ;

namespace saliq {
namespace {

using test::run_saliq;
using test::TempDir;

std::string stories_args() { return "-m " + test::stories_bin() + " --tokenizer " + test::stories_tokenizer(); }

double relative(double a, double b) { return std::abs(a - b) / std::max(std::abs(a), 1e-300); }

// `saliq ONE` in one process, then `saliq launch --nproc 2 -- TWO` (info logs: the tests look for its lines, which
// go to `launched`). Fails with the output of the run that did not exit 0.
::testing::AssertionResult one_process_then_two_ranks(const std::string& one, const std::string& two,
                                                      std::string* launched = nullptr) {
    auto r = run_saliq(one);
    if (r.exit_code != 0) return ::testing::AssertionFailure() << "one process exited " << r.exit_code << ": " << r.output;
    r = run_saliq("launch --nproc 2 -- " + two, "SALIQ_LOG_LEVEL=info");
    if (r.exit_code != 0) return ::testing::AssertionFailure() << "two ranks exited " << r.exit_code << ": " << r.output;
    if (launched != nullptr) *launched = r.output;
    return ::testing::AssertionSuccess();
}

TEST(Distributed, TwoRanksScoreThePerplexityAndTheTasksOfOneProcess) {
    TempDir dir;
    const std::string args = "eval " + stories_args() +
                             " --dataset tinystories --seqlen 128 --max-windows 9 --tasks piqa,arc_easy,hellaswag "
                             "--limit 25 --json ";
    std::string launched;
    ASSERT_TRUE(one_process_then_two_ranks(args + dir.file("one.json"), args + dir.file("two.json"), &launched));
    EXPECT_NE(launched.find("[rank 0] distributed: 2 processes"), std::string::npos) << launched;
    const auto one = nlohmann::json::parse(test::read_bytes(dir.file("one.json")));
    const auto two = nlohmann::json::parse(test::read_bytes(dir.file("two.json")));
    EXPECT_EQ(two["ranks"], 2);
    EXPECT_EQ(one["windows"], 9);  // odd: the ranks' shares differ (5 and 4 windows)
    EXPECT_EQ(two["windows"], one["windows"]);
    EXPECT_EQ(two["tokens_scored"], one["tokens_scored"]);
    EXPECT_LE(relative(one["nll_sum"], two["nll_sum"]), 1e-6);
    EXPECT_LE(relative(one["ppl"], two["ppl"]), 1e-6);
    ASSERT_EQ(two["window_nll"].size(), 9u);  // every window's loss, each rank's share gathered in order
    for (size_t w = 0; w < 9; ++w)
        EXPECT_LE(relative(one["window_nll"][w], two["window_nll"][w]), 1e-6) << "window " << w;
    for (const auto& task : {"piqa", "arc_easy", "hellaswag"}) {
        const auto& a = one["zeroshot"]["tasks"][task];
        const auto& b = two["zeroshot"]["tasks"][task];
        EXPECT_EQ(b["n"], a["n"]) << task;
        EXPECT_EQ(b["requests"], a["requests"]) << task;
        EXPECT_DOUBLE_EQ(b["acc"].get<double>(), a["acc"].get<double>()) << task;
        EXPECT_DOUBLE_EQ(b["acc_norm"].get<double>(), a["acc_norm"].get<double>()) << task;
    }
}

TEST(Distributed, TwoRanksSumTheFisherOfOneProcess) {
    TempDir dir;
    const std::string args = "saliency " + stories_args() + " --metric fisher --calib tinystories --nsamples 5 --seqlen 64 --out ";
    ASSERT_TRUE(one_process_then_two_ranks(args + dir.file("one.safetensors"), args + dir.file("two.safetensors")));
    const auto one = SafetensorsReader::open(dir.file("one.safetensors"));
    const auto two = SafetensorsReader::open(dir.file("two.safetensors"));
    ASSERT_EQ(one->entries().size(), two->entries().size());
    ASSERT_EQ(one->entries().size(), 35u);
    for (const auto& e : one->entries()) {
        const at::Tensor a = one->tensor(e.name).to(at::kDouble), b = two->tensor(e.name).to(at::kDouble);
        EXPECT_GT(a.abs().max().item<double>(), 0.0) << e.name;
        EXPECT_LE(((a - b).abs().max() / a.abs().max()).item<double>(), 1e-6) << e.name;
    }
}

TEST(Distributed, TwoRanksWriteTheGptqFolderOfOneProcess) {
    TempDir dir;
    // 10 windows in batches of 2: rank 0 runs windows 0..3 (two batches), rank 1 4..9 (three).
    const std::string args = "quantize " + stories_args() +
                             " --method gptq --bits 2 --group-size 32 --calib tinystories --nsamples 10 --seqlen 128 "
                             "--batch-size 2 --error-windows 6 --out ";
    std::string launched;
    ASSERT_TRUE(one_process_then_two_ranks(args + dir.file("one"), args + dir.file("two"), &launched));
    EXPECT_NE(launched.find("this one runs windows 0..3"), std::string::npos) << launched;
    const std::string a = test::read_bytes(dir.file("one/model.safetensors"));
    EXPECT_FALSE(a.empty());
    EXPECT_TRUE(a == test::read_bytes(dir.file("two/model.safetensors"))) << "the packed tensors differ";
    const auto manifest = nlohmann::json::parse(test::read_bytes(dir.file("two/saliq_manifest.json")));
    EXPECT_EQ(manifest.dump().find("\"ranks\":2") != std::string::npos, true) << manifest.dump();
    // The error windows 0..5 lie on both ranks (4 and 2): the figures are summed over them, as one process takes them.
    const auto single = nlohmann::json::parse(test::read_bytes(dir.file("one/saliq_manifest.json")));
    ASSERT_EQ(manifest["blocks"].size(), single["blocks"].size());
    for (size_t b = 0; b < single["blocks"].size(); ++b)
        EXPECT_LE(relative(single["blocks"][b]["block_error"], manifest["blocks"][b]["block_error"]), 1e-9) << b;
}

// The searched clipping start (--lwc-init, auto at 2 bits) over 2 ranks: the input importance is summed over every
// rank's windows, so the start is the one process's to the bit.
TEST(Distributed, SearchedClippingStartEqualsOneProcess) {
    TempDir dir;
    const std::string args = "quantize " + stories_args() +
                             " --method apiq-bw --bits 2 --group-size 32 --calib tinystories --calib-range 0:0.5 "
                             "--nsamples 8 --seqlen 128 --epochs 0 --out ";
    ASSERT_TRUE(one_process_then_two_ranks(args + dir.file("one"), args + dir.file("two")));
    const auto manifest = nlohmann::json::parse(test::read_bytes(dir.file("two/saliq_manifest.json")));
    EXPECT_EQ(manifest["settings"]["apiq"]["lwc_init"], "search");
    const std::string a = test::read_bytes(dir.file("one/lwc.safetensors"));
    EXPECT_FALSE(a.empty());
    EXPECT_TRUE(a == test::read_bytes(dir.file("two/lwc.safetensors"))) << "the searched starts differ";
}

// Data-parallel ApiQ-bw with the in-run Fisher: 2 ranks x --train-batch 1 take the steps one process takes with
// --train-batch 2 (the same windows in each step, gradients averaged), so the models score the same. From the
// min-max start: from a searched one the clipping logits sit where the sigmoid is steep, and the two reductions'
// float rounding grows to 0.3% in perplexity over these 12 steps (0.002% after the first block). At the per-window
// rates: the defaults scale with the 2 windows a step on both sides alike (both manifests say 1e-3 / 1e-2), and the
// doubled rates grow the same rounding to 0.27%.
TEST(Distributed, DataParallelApiqEqualsOneProcessWithTheEffectiveBatch) {
    TempDir dir;
    const std::string args = "quantize " + stories_args() +
                             " --lwc-init minmax --lora-lr 5e-4 --lwc-lr 5e-3"
                             " --method apiq-bw --bits 2 --group-size 32 --calib tinystories --calib-range 0:0.5 "
                             "--nsamples 8 --seqlen 128 --epochs 3 --saliency --saliency-metric fisher "
                             "--fisher-calib tinystories --fisher-nsamples 4 --fisher-seqlen 64 --out ";
    std::string launched;
    ASSERT_TRUE(one_process_then_two_ranks(args + dir.file("one") + " --train-batch 2",
                                           args + dir.file("two") + " --train-batch 1", &launched));
    EXPECT_NE(launched.find("2 ranks x --train-batch 1 = 2 windows"), std::string::npos) << launched;
    const auto manifest = nlohmann::json::parse(test::read_bytes(dir.file("two/saliq_manifest.json")));
    EXPECT_EQ(manifest.dump().find("\"effective_train_batch\":2") != std::string::npos, true) << manifest.dump();
    const std::string ev = " --dataset tinystories --eval-range 0.5:1 --seqlen 128 --max-windows 16 --json ";
    ASSERT_EQ(run_saliq("eval -m " + dir.file("one") + ev + dir.file("one.json")).exit_code, 0);
    ASSERT_EQ(run_saliq("eval -m " + dir.file("two") + ev + dir.file("two.json")).exit_code, 0);
    const double a = nlohmann::json::parse(test::read_bytes(dir.file("one.json")))["ppl"];
    const double b = nlohmann::json::parse(test::read_bytes(dir.file("two.json")))["ppl"];
    EXPECT_LE(relative(a, b), 1e-4) << a << " vs " << b;
    // Unequal shares would leave the ranks stepping out of lockstep.
    const auto r = run_saliq("launch --nproc 2 -- " + args + dir.file("odd") + " --nsamples 7");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--nsamples 7 does not split into equal shares"), std::string::npos) << r.output;
}

TEST(Distributed, MethodsAndSubcommandsThatDoNotShardAreRefused) {
    TempDir dir;
    auto r = run_saliq("launch --nproc 2 -- quantize " + stories_args() + " --method slim-llm --out " + dir.file("q"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--method slim-llm runs in one process"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("q")));
    EXPECT_FALSE(path_exists(dir.file("q.partial")));
    r = run_saliq("launch --nproc 2 eval " + stories_args());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("put -- before the command"), std::string::npos) << r.output;
    r = run_saliq("launch --nproc 2 -- inspect " + test::stories_bin());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("'inspect' does not run over several processes"), std::string::npos) << r.output;
    r = run_saliq("eval " + stories_args(), "RANK=2 WORLD_SIZE=2");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("RANK 2 is not below WORLD_SIZE 2"), std::string::npos) << r.output;
    r = run_saliq("eval " + stories_args(), "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("MASTER_PORT is not set"), std::string::npos) << r.output;
}

TEST(Distributed, ARankWhosePeerNeverComesGivesUpAfterTheTimeout) {
    const auto start = std::chrono::steady_clock::now();
    const auto r = run_saliq("eval " + stories_args() + " --dataset tinystories --seqlen 128 --max-windows 2",
                             "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29731 SALIQ_DIST_TIMEOUT=2");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.exit_code, 5) << r.output;
    EXPECT_NE(r.output.find("rank 0 of 2 could not join the process group"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("frame #"), std::string::npos) << "a backtrace reached the user: " << r.output;
    EXPECT_LT(seconds, 60.0);
}

// The pids of `parent`'s children.
std::vector<pid_t> children_of(pid_t parent) {
    std::ifstream in("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children");
    std::vector<pid_t> out;
    pid_t pid = 0;
    while (in >> pid) out.push_back(pid);
    return out;
}

bool has_env(pid_t pid, const std::string& entry) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
    std::string item;
    while (std::getline(in, item, '\0'))
        if (item == entry) return true;
    return false;
}

TEST(Distributed, AKilledRankEndsTheRunNamingItAndLeavesNoFolder) {
    TempDir dir;
    const std::string log = dir.file("launch.log"), out = dir.file("q");
    std::vector<std::string> argv = {SALIQ_BINARY, "launch", "--nproc", "2", "--", "quantize", "-m",
                                     test::stories_bin(), "--tokenizer", test::stories_tokenizer(), "--method", "gptq",
                                     "--bits", "2", "--group-size", "32", "--calib", "tinystories", "--nsamples",
                                     "256", "--seqlen", "512", "--out", out};
    std::vector<char*> cargv;
    for (auto& s : argv) cargv.push_back(s.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> env = {"SALIQ_LOG_LEVEL=info"};  // the ranks say when they have their shards
    for (char** e = environ; *e != nullptr; ++e)
        if (std::string(*e).rfind("SALIQ_LOG_LEVEL=", 0) != 0) env.emplace_back(*e);
    std::vector<char*> cenv;
    for (auto& s : env) cenv.push_back(s.data());
    cenv.push_back(nullptr);
    pid_t launcher = 0;
    ASSERT_EQ(posix_spawn(&launcher, cargv[0], &actions, nullptr, cargv.data(), cenv.data()), 0);
    posix_spawn_file_actions_destroy(&actions);

    // Wait until the ranks are at work (rank 0 has its shard), then kill rank 1.
    pid_t victim = 0;
    std::vector<pid_t> ranks;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (victim == 0 && std::chrono::steady_clock::now() < deadline) {
        if (test::read_bytes(log).find("this one runs windows") != std::string::npos)
            for (pid_t c : ranks = children_of(launcher))
                if (has_env(c, "RANK=1")) victim = c;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_NE(victim, 0) << test::read_bytes(log);
    kill(victim, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(launcher, &status, 0), launcher);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 128 + SIGKILL);
    const std::string text = test::read_bytes(log);
    EXPECT_NE(text.find("launch: rank 1 was killed by signal 9"), std::string::npos) << text;
    for (pid_t p : ranks) EXPECT_NE(kill(p, 0), 0) << "rank process " << p << " outlived the launcher";
    EXPECT_FALSE(path_exists(out + "/model.safetensors")) << "an interrupted run looks complete";
    // Nothing blocks the next run into the same folder.
    const auto r = run_saliq("quantize " + stories_args() + " --method rtn --bits 2 --group-size 32 --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace saliq
