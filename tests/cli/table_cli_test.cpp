// `saliq table`: a small table config runs every row through child processes, aggregates seeds, puts the paper's
// numbers beside ours, keeps finished row runs on a rerun, and reports a failing row with a non-zero exit.
#include <map>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "saliq/file.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::run_saliq;
using test::TempDir;

std::string table_config(const TempDir& dir, const std::string& extra_rows,
                         const std::string& model = test::stories_bin()) {
    const std::string path = dir.file("t.toml");
    std::string text = "[table]\ntitle = \"tiny\"\nmodel = \"" + model + "\"\ntokenizer = \"" +
                       test::stories_tokenizer() + "\"\nout = \"" + dir.file("out") +
                       "\"\nseeds = [0, 1]\nreference = \"gptq\"\n"
                       "quantize = \"--calib tinystories --calib-range 0:0.5 --nsamples 4 --seqlen 64 --group-size 32\"\n"
                       "\n[[perplexity]]\nname = \"ts\"\nargs = \"--dataset tinystories --eval-range 0.5:1 --seqlen 64 "
                       "--max-windows 4\"\n"
                       "\n[zeroshot]\ntasks = \"piqa,arc_easy\"\nargs = \"--limit 4\"\n"
                       "\n[fp]\npaper_acc = 64.85\n"
                       "\n[[row]]\nname = \"rtn\"\nargs = \"--method rtn --bits 2\"\npaper_ppl_ts = 431.97\n"
                       "\n[[row]]\nname = \"gptq\"\nargs = [\"--method\", \"gptq\", \"--bits\", \"2\"]\n"
                       "[[row]]\nname = \"gptq-g64\"\nreference = \"rtn\"\n"
                       "args = \"--method gptq --bits 2 --group-size 64\"\n" + extra_rows;
    write_file_atomic(path, [&](std::ostream& o) { o << text; });
    return path;
}

TEST(TableCli, RunsEveryRowAggregatesSeedsAndKeepsFinishedRuns) {
    TempDir dir;
    const std::string config = table_config(dir, "");
    auto r = run_saliq("table " + config + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto table = nlohmann::json::parse(test::read_bytes(dir.file("out/table.json")));
    ASSERT_EQ(table["rows"].size(), 4u);  // fp, rtn, gptq, gptq-g64
    const auto& fp = table["rows"][0];
    const auto& rtn = table["rows"][1];
    EXPECT_EQ(fp["row"], "fp");
    EXPECT_EQ(rtn["seeds"], 2);
    EXPECT_EQ(rtn["ppl"]["ts"]["n"], 2);
    EXPECT_EQ(rtn["ppl"]["ts"]["std"], 0.0);  // RTN draws no windows: both seeds agree
    EXPECT_GT(rtn["ppl"]["ts"]["mean"].get<double>(), fp["ppl"]["ts"]["mean"].get<double>());
    EXPECT_TRUE(rtn["acc"]["piqa"]["mean"].is_number());
    // Bits per weight on disk, every tensor counted: the fp32 checkpoint, and the 2-bit folder (fp16 embeddings).
    EXPECT_DOUBLE_EQ(fp["bits_per_weight"]["mean"].get<double>(), 32.0);
    EXPECT_GT(rtn["bits_per_weight"]["mean"].get<double>(), 2.0);
    EXPECT_LT(rtn["bits_per_weight"]["mean"].get<double>(), 16.0);
    const double avg = (rtn["acc"]["piqa"]["mean"].get<double>() + rtn["acc"]["arc_easy"]["mean"].get<double>()) / 2;
    EXPECT_NEAR(rtn["avg_acc"]["mean"].get<double>(), avg, 1e-12);
    // The share of the reference row's (GPTQ's) degradation closed: (ref - x) / (ref - fp) on the first perplexity.
    const double x = rtn["ppl"]["ts"]["mean"], ref = table["rows"][2]["ppl"]["ts"]["mean"], f = fp["ppl"]["ts"]["mean"];
    EXPECT_NEAR(rtn["gap_closed_ppl"].get<double>(), (ref - x) / (ref - f), 1e-12);
    // A row may name its own reference (e.g. W3 rows against the W3 baseline).
    const auto& g64 = table["rows"][3];
    EXPECT_EQ(g64["reference"], "rtn");
    const double y = g64["ppl"]["ts"]["mean"];
    EXPECT_NEAR(g64["gap_closed_ppl"].get<double>(), (x - y) / (x - f), 1e-12);
    const std::string md = test::read_bytes(dir.file("out/table.md"));
    EXPECT_NE(md.find("| rtn |"), std::string::npos) << md;
    EXPECT_NE(md.find("431.97"), std::string::npos) << md;
    EXPECT_NE(md.find("64.85"), std::string::npos) << md;
    EXPECT_FALSE(path_exists(dir.file("out/rtn/s0/model")));  // quantized folders are removed once scored
    // A rerun keeps every finished row seed (said at info level; the suite runs at warn).
    r = run_saliq("--log-level info table " + config + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("done before, kept"), std::string::npos) << r.output;
}

// A row folder quantized outside the table (a long run made by hand, linked in) is scored as it is, not made again.
TEST(TableCli, AFinishedFolderIsScoredNotQuantizedAgain) {
    TempDir dir;
    const std::string config = table_config(dir, "");
    auto r = run_saliq("table " + config + " --threads 1 --seeds 0 --rows rtn --keep-models");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto first = nlohmann::json::parse(test::read_bytes(dir.file("out/rtn/s0/result.json")));
    ASSERT_TRUE(path_exists(dir.file("out/rtn/s0/model/saliq_manifest.json")));
    ASSERT_TRUE(remove_tree(dir.file("out/rtn/s0/result.json")) && remove_tree(dir.file("out/rtn/s0/quantize.log")));
    r = run_saliq("--log-level info table " + config + " --threads 1 --seeds 0 --rows rtn --keep-models");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("is a finished folder, scored as it is"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("out/rtn/s0/quantize.log")));
    const auto again = nlohmann::json::parse(test::read_bytes(dir.file("out/rtn/s0/result.json")));
    EXPECT_EQ(again["ppl"], first["ppl"]);
    EXPECT_EQ(again["quantize_seconds"], first["quantize_seconds"]);  // the folder's own manifest
}

// A row whose run stopped after some blocks (killed, or failed as here) continues from them on the next table run,
// its time counting what the interrupted run spent on them, and scores as the uninterrupted run does.
TEST(TableCli, AnInterruptedRowContinuesFromItsFinishedBlocks) {
    TempDir dir;
    const std::string hf = test::convert_stories(dir);
    test::poison_tensor(hf, "model.layers.2.mlp.up_proj.weight");  // blocks 0 and 1 finish, block 2 fails
    const std::string config = table_config(dir, "", hf);
    const std::string args = " --threads 1 --seeds 0 --rows gptq";
    auto r = run_saliq("table " + config + args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    ASSERT_TRUE(path_exists(dir.file("out/gptq/s0/model.partial/block_0001.safetensors"))) << r.output;
    ASSERT_FALSE(path_exists(dir.file("out/gptq/s0/result.json")));
    ASSERT_TRUE(remove_tree(hf));
    ASSERT_EQ(test::convert_stories(dir), hf);  // the model mended, at the same path
    r = run_saliq("--log-level info table " + config + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("continuing the interrupted run in " + dir.file("out/gptq/s0/model.partial")),
              std::string::npos)
        << r.output;
    const auto resumed = nlohmann::json::parse(test::read_bytes(dir.file("out/gptq/s0/result.json")));
    EXPECT_EQ(resumed["restored_blocks"], 2);
    EXPECT_FALSE(path_exists(dir.file("out/gptq/s0/model.partial")));

    TempDir clean;  // the same row, never interrupted
    r = run_saliq("table " + table_config(clean, "", hf) + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto whole = nlohmann::json::parse(test::read_bytes(clean.file("out/gptq/s0/result.json")));
    EXPECT_FALSE(whole.contains("restored_blocks"));
    EXPECT_EQ(resumed["ppl"], whole["ppl"]);
    EXPECT_EQ(resumed["acc"], whole["acc"]);
}

TEST(TableCli, AFailingRowIsReportedAndTheOthersStillRun) {
    TempDir dir;
    const std::string config = table_config(dir, "\n[[row]]\nname = \"broken\"\nargs = \"--method rtn --bits 7\"\n");
    const auto r = run_saliq("table " + config + " --threads 1 --seeds 0");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("broken/s0"), std::string::npos) << r.output;
    EXPECT_TRUE(path_exists(dir.file("out/gptq/s0/result.json")));
    EXPECT_NE(test::read_bytes(dir.file("out/broken/s0/quantize.log")).find("bit width 7"), std::string::npos);
    const auto bad = run_saliq("table " + dir.file("t.toml") + " --rows nosuch");
    EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

// The shipped table configs parse and name every command they would run.
// Row and perplexity names become folders and file names under the table's output: one that would climb out of it
// is refused before anything runs, and nothing is written outside.
TEST(TableCli, NamesThatLeaveTheOutputFolderAreRefused) {
    TempDir dir;
    for (const std::string& extra : {std::string("\n[[row]]\nname = \"..\"\nargs = \"--method rtn --bits 2\"\n"),
                                     std::string("\n[[perplexity]]\nname = \"../../escaped\"\nargs = \"--dataset "
                                                 "tinystories --seqlen 64 --max-windows 1\"\n")}) {
        const auto r = run_saliq("table " + table_config(dir, extra) + " --threads 1 --dry-run");
        EXPECT_EQ(r.exit_code, 2) << r.output;
        EXPECT_NE(r.output.find("name"), std::string::npos) << r.output;
        EXPECT_FALSE(path_exists(dir.file("out")));
        EXPECT_FALSE(path_exists(dir.file("escaped.json")));
    }
}

// A row calibrating on WikiText-2's train split needs the user's copy: without SALIQ_WIKITEXT2_TRAIN the table refuses
// before anything runs (it would otherwise calibrate on the test split it scores); a dry run shows the placeholder.
TEST(TableCli, TheTrainSplitPlaceholderMustBeFilled) {
    TempDir dir;
    const std::string config =
        table_config(dir, "\n[[row]]\nname = \"wt2\"\nargs = \"--method rtn --bits 2 --calib {wikitext2_train}\"\n");
    auto r = run_saliq("table " + config + " --threads 1", "SALIQ_WIKITEXT2_TRAIN=");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("SALIQ_WIKITEXT2_TRAIN"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir.file("out")));
    r = run_saliq("table " + config + " --threads 1 --dry-run --rows wt2", "SALIQ_WIKITEXT2_TRAIN=");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("{wikitext2_train}"), std::string::npos) << r.output;
    r = run_saliq("table " + config + " --threads 1 --dry-run --rows wt2",
                  "SALIQ_WIKITEXT2_TRAIN=" + test::data_path("text/tinystories/tinystories_validation_head.txt"));
    EXPECT_EQ(r.output.find("{wikitext2_train}"), std::string::npos) << r.output;
}

// Seeds are integers, each once: 1.5 was read as 1 and a repeated seed counted one run twice in the mean and std.
TEST(TableCli, SeedsThatAreNotDistinctIntegersAreRefused) {
    TempDir dir;
    const std::string config = table_config(dir, "");
    const std::string text = test::read_bytes(config);
    for (const auto& [seeds, words] : std::vector<std::pair<std::string, std::string>>{
             {"[0, 0]", "seed 0 is listed twice"}, {"[0, 1.5]", "table.seeds holds 1.5, not an integer"},
             {"[0, \"1\"]", "table.seeds holds \"1\""}}) {
        std::string changed = text;
        changed.replace(changed.find("[0, 1]"), 6, seeds);
        test::write_bytes(config, changed);
        const auto r = run_saliq("table " + config + " --dry-run");
        EXPECT_EQ(r.exit_code, 2) << r.output;
        EXPECT_NE(r.output.find(words), std::string::npos) << r.output;
    }
    test::write_bytes(config, text);
    for (const auto& [seeds, words] : std::vector<std::pair<std::string, std::string>>{
             {"0,1,0", "seed 0 is listed twice"}, {"0,1.5", "not '1.5'"}, {"99999999999999999999", "integers"}}) {
        const auto r = run_saliq("table " + config + " --dry-run --seeds " + seeds);
        EXPECT_EQ(r.exit_code, 2) << r.output;
        EXPECT_NE(r.output.find(words), std::string::npos) << r.output;
    }
    EXPECT_EQ(run_saliq("table " + config + " --dry-run --seeds 3,4").exit_code, 0);
    EXPECT_FALSE(path_exists(dir.file("out")));
}

TEST(TableCli, ShippedConfigsDryRun) {
    for (const char* name : {"stories260k", "llama2-7b", "llama2-13b"}) {
        const std::string config = std::string(SALIQ_SOURCE_DIR) + "/configs/tables/" + name + ".toml";
        const auto r = run_saliq("table " + config + " --dry-run --out /nonexistent/never-written");
        EXPECT_EQ(r.exit_code, 0) << name << "\n" << r.output;
        EXPECT_NE(r.output.find("apiq-bw seed"), std::string::npos) << r.output;
        EXPECT_NE(r.output.find("--quantizer binarymos"), std::string::npos) << r.output;
        EXPECT_FALSE(path_exists("/nonexistent/never-written"));
    }
    const std::string mixed = std::string(SALIQ_SOURCE_DIR) + "/configs/tables/stories260k-mixed.toml";
    const auto r = run_saliq("table " + mixed + " --dry-run --out /nonexistent/never-written");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("--method slim-llm --bits 2 --group-size 8"), std::string::npos) << r.output;
}

// The SmolLM2 side tables are read beside the real-budget table: the verdict table reruns two of its rows (each
// quantize line must be the big table's for the same row and seed, the output folder aside, or its figures would not
// be that table's), and the budget table's rows calibrate on its windows.
TEST(TableCli, SmolLM2SideTablesRepeatTheRealBudgetTablesRowsAndWindows) {
    const auto lines = [](const std::string& name) {
        const std::string config = std::string(SALIQ_SOURCE_DIR) + "/configs/tables/" + name + ".toml";
        const auto r = run_saliq("table " + config + " --dry-run --out /nonexistent/OUT");
        EXPECT_EQ(r.exit_code, 0) << name << "\n" << r.output;
        std::map<std::string, std::string> by_row_seed;  // "w3g64-apiq-bw seed 1" -> its quantize line
        std::istringstream in(r.output);
        for (std::string line; std::getline(in, line);) {
            const size_t colon = line.find(": saliq quantize ");
            if (colon != std::string::npos) by_row_seed[line.substr(0, colon)] = line.substr(colon);
        }
        return by_row_seed;
    };
    const auto big = lines("smollm2-135m"), seeds = lines("smollm2-135m-w3g64-seeds");
    EXPECT_EQ(lines("smollm2-135m-small").size(), 8u);
    ASSERT_EQ(seeds.size(), 6u);
    for (const auto& [row_seed, line] : seeds) {
        ASSERT_TRUE(big.count(row_seed)) << row_seed;
        EXPECT_EQ(line, big.at(row_seed)) << row_seed;
    }
    // The budget table's rows sit beside the big table's 20-epoch figures: the same model, windows and seed, and
    // each names its clipping start (saliq's default differs between its 2- and 3-bit rows).
    const auto budget = lines("smollm2-135m-budget");
    ASSERT_EQ(budget.size(), 9u);
    const std::string windows = " --calib c4 --calib-range 0:0.5 --nsamples 128 --seqlen 512 ";
    ASSERT_NE(big.at("w2g64-apiq-bw seed 0").find(windows), std::string::npos);
    for (const auto& [row_seed, line] : budget) {
        EXPECT_NE(line.find(windows), std::string::npos) << row_seed << line;
        EXPECT_NE(line.find(" --lwc-init "), std::string::npos) << row_seed << line;
        EXPECT_NE(line.find(" --seed 0 "), std::string::npos) << row_seed << line;
    }
}

}  // namespace
}  // namespace saliq
