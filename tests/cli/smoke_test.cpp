// One run of every saliq command on the bundled stories260K model, chained as a user would: the CLI's end-to-end
// check in the pip-LibTorch pass (scripts/test.sh), which runs the library-sensitive suites and this instead of the
// whole CLI suite again. Each step must exit 0 and print what it exists for; the deeper checks live in the other
// CLI suites.
#include "saliq/file.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::run_saliq;
using test::TempDir;

// Runs one step (one compute thread: tests/test_main.cpp sets SALIQ_THREADS for the saliq it starts); on failure the
// step's output says which command broke and why.
void step(const std::string& args, const std::string& expect) {
    const auto r = run_saliq(args);
    EXPECT_EQ(r.exit_code, 0) << "saliq " << args << "\n" << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << "saliq " << args << "\n" << r.output;
}

TEST(CliSmoke, EveryCommandRunsOnTheBundledModel) {
    TempDir dir;
    const std::string tok = test::stories_tokenizer();
    const std::string hf = dir.file("hf"), q = dir.file("q"), ft = dir.file("ft");
    const std::string calib = " --calib tinystories --calib-range 0:0.5 --nsamples 4 --seqlen 64";
    const std::string score = " --dataset tinystories --eval-range 0.5:1 --seqlen 64 --max-windows 2";

    step("tokenize --tokenizer " + tok + " --text " +
             test::data_path("text/tinystories/tinystories_validation_head.txt") + " -o " + dir.file("ids.txt"),
         "");
    EXPECT_FALSE(test::read_bytes(dir.file("ids.txt")).empty());

    step("convert --from-llama2c " + test::stories_bin() + " --tokenizer " + tok + " --out " + hf, "");
    ASSERT_TRUE(path_exists(hf + "/config.json"));
    step("eval -m " + hf + score + " --tasks piqa --limit 4", "perplexity");
    step("windows --tokenizer " + tok + calib + " --out " + dir.file("w.json"), "");
    EXPECT_TRUE(path_exists(dir.file("w.json")));
    step("saliency -m " + hf + calib + " --metric hessian --out " + dir.file("s.safetensors"), "");
    EXPECT_TRUE(path_exists(dir.file("s.safetensors")));
    step("quantize -m " + hf + calib + " --method apiq-bw --bits 2 --group-size 32 --epochs 1 --out " + q,
         "bits/weight");
    step("inspect " + q, "2-bit, group 32");
    step("generate -m " + q + " --prompt \"Once upon\" -n 8", "Once upon");
    step("finetune -m " + q + " --teacher " + hf + calib + " --out " + ft, "");
    ASSERT_TRUE(path_exists(ft + "/saliq_manifest.json"));
    step("eval -m " + ft + score, "perplexity");
    step("export -m " + q + " --format gguf --out " + dir.file("q.gguf"), "");
    EXPECT_TRUE(path_exists(dir.file("q.gguf")));
    step("launch --nproc 2 -- eval -m " + hf + score, "perplexity");

    const std::string config = dir.file("t.toml");
    write_file_atomic(config, [&](std::ostream& o) {
        o << "[table]\ntitle = \"smoke\"\nmodel = \"" << hf << "\"\nout = \"" << dir.file("table")
          << "\"\nseeds = [0]\nreference = \"rtn\"\nquantize = \"" << calib << " --group-size 32\"\n"
          << "\n[[perplexity]]\nname = \"ts\"\nargs = \"" << score << "\"\n"
          << "\n[[row]]\nname = \"rtn\"\nargs = \"--method rtn --bits 2\"\n";
    });
    step("table " + config, "rtn");
    EXPECT_TRUE(path_exists(dir.file("table/table.md")));
}

}  // namespace
}  // namespace saliq
