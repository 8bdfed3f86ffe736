#include <execinfo.h>
#include <stdlib.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "saliq/log.h"
#include "saliq/threads.h"

namespace {

// A crash in a test prints where it happened before the process dies (no debugger needed on CI or GPU machines).
void print_backtrace(int signal_number) {
    void* frames[64];
    const int n = backtrace(frames, 64);
    const char header[] = "\n*** fatal signal; backtrace:\n";
    (void)!write(STDERR_FILENO, header, sizeof(header) - 1);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGSEGV, print_backtrace);
    signal(SIGABRT, print_backtrace);
    testing::InitGoogleTest(&argc, argv);
    // Tests leave no token cache in the home folder; the cache's own tests point it at a temporary folder.
    setenv("SALIQ_CACHE_DIR", "off", 0);
    saliq::set_log_level(saliq::log_level_from_env(saliq::LogLevel::Warn));
    // One thread per test process, and per saliq it starts (ctest -j runs as many tests as cores: never
    // oversubscribed, and every result is the fixed-thread-count one). A test that sets its own count still can.
    setenv("SALIQ_THREADS", "1", 0);
    saliq::set_compute_threads(1);
    return RUN_ALL_TESTS();
}
