// The fuzz targets: one per reader of a file saliq takes from a user. Each runs the reader on one input the way the
// CLI would (the file put where the CLI looks, beside valid companions, then loaded and used), and may reject it
// only with saliq::Error; any other exception, a crash or a sanitizer report is a finding.
// Built twice: with libFuzzer (fuzz_main.cpp, SALIQ_FUZZ=ON, scripts/fuzz.sh) and as the corpus replay of the
// regular test suite (replay_main.cpp), which also writes the synthetic seeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace saliq::fuzz {

struct Target {
    const char* name;  // the corpus folder tests/fuzz/corpus/<name>
    const char* what;
    void (*run)(const uint8_t* data, size_t size);
};

const std::vector<Target>& targets();
const Target* find_target(const std::string& name);

// Runs `target` on one input. Returns false (after printing the message) when something other than saliq::Error
// escaped the reader.
bool run_input(const Target& target, const uint8_t* data, size_t size);

// Writes seeds made by saliq's own writers (tiny models, packed and adapter folders, Fisher and resume files,
// GGUF) into `corpus_root`/<target>/; the seeds copied from real files are scripts/fuzz.sh's.
void write_synthetic_seeds(const std::string& corpus_root);

}  // namespace saliq::fuzz
