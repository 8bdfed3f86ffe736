// The fuzz corpus as a test: every input kept under tests/fuzz/corpus/<target>/ (text seeds and each finding) and the
// seeds written fresh by saliq's writers and from the shared data (none of them tracked in git) run through their
// target without libFuzzer; exit 1 if any lets something other than saliq::Error escape (a crash fails the test by
// itself). `fuzz_replay --write-seeds ROOT` only writes the generated seeds.
#include <unistd.h>

#include <cstdio>
#include <vector>
#include <string>

#include "fuzz_targets.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"

int main(int argc, char** argv) {
    saliq::set_log_level(saliq::LogLevel::Error);
    if (argc == 3 && std::string(argv[1]) == "--write-seeds") {
        saliq::fuzz::write_synthetic_seeds(argv[2]);
        return 0;
    }
    if (argc != 2) {
        std::fprintf(stderr, "usage: fuzz_replay CORPUS_ROOT | --write-seeds CORPUS_ROOT\n");
        return 2;
    }
    const std::string seeds = saliq::temp_directory() + "/saliq-fuzz-seeds-" + std::to_string(::getpid());
    saliq::remove_tree(seeds);
    saliq::fuzz::write_synthetic_seeds(seeds);
    int inputs = 0, failures = 0;
    for (const auto& target : saliq::fuzz::targets()) {
        std::vector<std::string> files;
        for (const std::string& root : {std::string(argv[1]), seeds}) {
            const std::string dir = root + "/" + target.name;
            if (saliq::is_directory(dir))
                for (const auto& name : saliq::list_directory(dir)) files.push_back(dir + "/" + name);
        }
        int here = 0;
        for (const auto& path : files) {
            const std::string bytes = saliq::read_text_file(path);
            ++inputs;
            ++here;
            if (!saliq::fuzz::run_input(target, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())) {
                std::fprintf(stderr, "  input %s\n", path.c_str());
                ++failures;
            }
        }
        if (here == 0) {
            std::fprintf(stderr, "%s: no input (every target has seeds)\n", target.name);
            ++failures;
        }
    }
    saliq::remove_tree(seeds);
    std::printf("%d inputs over %zu targets, %d failures\n", inputs, saliq::fuzz::targets().size(), failures);
    return failures == 0 ? 0 : 1;
}
