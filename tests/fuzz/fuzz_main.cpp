// libFuzzer entry: SALIQ_FUZZ_READER names the target (fuzz_targets.cpp); scripts/fuzz.sh runs each in turn.
//   cmake -B build-fuzz -DSALIQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ && cmake --build build-fuzz --target fuzz_readers
//   SALIQ_FUZZ_READER=gguf build-fuzz/fuzz_readers -max_total_time=300 tests/fuzz/corpus/gguf
#include <cstdio>
#include <cstdlib>

#include "fuzz_targets.h"
#include "saliq/log.h"

namespace {
const saliq::fuzz::Target* g_target = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
    saliq::set_log_level(saliq::LogLevel::Error);
    const char* name = std::getenv("SALIQ_FUZZ_READER");
    g_target = name != nullptr ? saliq::fuzz::find_target(name) : nullptr;
    if (g_target == nullptr) {
        std::fprintf(stderr, "set SALIQ_FUZZ_READER to one of:\n");
        for (const auto& t : saliq::fuzz::targets()) std::fprintf(stderr, "  %-16s %s\n", t.name, t.what);
        std::exit(2);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (!saliq::fuzz::run_input(*g_target, data, size)) std::abort();
    return 0;
}
