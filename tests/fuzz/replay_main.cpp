// The fuzz corpus as a test: every input kept under tests/fuzz/corpus/<target>/ (the seeds and each finding) runs
// through its target without libFuzzer; exit 1 if any lets something other than saliq::Error escape (a crash fails
// the test by itself). `fuzz_replay --write-seeds ROOT` writes the synthetic seeds instead.
#include <cstdio>
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
    const std::string root = argv[1];
    int inputs = 0, failures = 0;
    for (const auto& target : saliq::fuzz::targets()) {
        const std::string dir = root + "/" + target.name;
        if (!saliq::is_directory(dir)) {
            std::fprintf(stderr, "%s: no corpus folder (every target keeps seeds)\n", dir.c_str());
            ++failures;
            continue;
        }
        int here = 0;
        for (const auto& name : saliq::list_directory(dir)) {
            const std::string bytes = saliq::read_text_file(dir + "/" + name);
            ++inputs;
            ++here;
            if (!saliq::fuzz::run_input(target, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())) {
                std::fprintf(stderr, "  input %s/%s\n", target.name, name.c_str());
                ++failures;
            }
        }
        if (here == 0) {
            std::fprintf(stderr, "%s: empty corpus folder\n", dir.c_str());
            ++failures;
        }
    }
    std::printf("%d inputs over %zu targets, %d failures\n", inputs, saliq::fuzz::targets().size(), failures);
    return failures == 0 ? 0 : 1;
}
