#include "saliq/threads.h"

#include <cstdlib>
#include <thread>

#include <ATen/Parallel.h>

namespace saliq {

void set_compute_threads(int n) {
    if (n <= 0) {
        const char* env = std::getenv("SALIQ_THREADS");
        n = env != nullptr ? std::atoi(env) : 0;
    }
    if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(n);
}

int compute_threads() { return at::get_num_threads(); }

}  // namespace saliq

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace saliq {

void tune_allocator() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 256 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
    mallopt(M_TOP_PAD, 64 * 1024 * 1024);
#endif
}

}  // namespace saliq
