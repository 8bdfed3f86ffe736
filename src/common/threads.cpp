// Threading policy. LibTorch's intra-op pool splits every parallel region evenly and waits for its slowest thread,
// so a thread that loses its core to another process stalls the whole region (measured: 10.9x slower eval beside one
// busy process on one of two cores). saliq therefore sizes its pool to the cores nobody else is using:
//   - an explicit count (--threads N, or $SALIQ_THREADS) is fixed for the whole run (bit-reproducible results);
//   - otherwise (auto) the pool starts at the cores this process may run on minus the load other processes put on
//     them (sampled from /proc/stat for 50 ms), and adapt_compute_threads(), called between blocks, batches and
//     training steps, re-measures that load over the last second or more and resizes the pool (at least 1 thread).
#include "saliq/threads.h"

#include <sched.h>
#include <unistd.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <ATen/Parallel.h>

namespace saliq {
namespace {

struct CpuSample {
    double machine_busy = 0;  // seconds of CPU time all processes used (from /proc/stat)
    double self_busy = 0;     // seconds this process used
    std::chrono::steady_clock::time_point when;
};

CpuSample sample_cpu() {
    CpuSample s;
    s.when = std::chrono::steady_clock::now();
    std::ifstream stat("/proc/stat");
    std::string cpu;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal && cpu == "cpu") {
        static const double tick = [] {
            const long t = sysconf(_SC_CLK_TCK);
            return t > 0 ? static_cast<double>(t) : 100.0;
        }();
        s.machine_busy = static_cast<double>(user + nice + system + irq + softirq + steal) / tick;
    }
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) == 0)
        s.self_busy = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                      1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
    return s;
}

int usable_cores() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

struct Policy {
    bool adaptive = false;
    int cores = 1;
    CpuSample last;
};

Policy& policy() {
    static Policy p;
    return p;
}

// Cores' worth of load that other processes put on the machine between two samples.
double neighbour_load(const CpuSample& a, const CpuSample& b) {
    const double wall = std::chrono::duration<double>(b.when - a.when).count();
    if (wall <= 0) return 0;
    return std::max(0.0, ((b.machine_busy - a.machine_busy) - (b.self_busy - a.self_busy)) / wall);
}

int threads_for(double load, int cores) {
    // A neighbour using most of a core takes it: round, with a little hysteresis toward keeping what is free.
    return std::clamp(static_cast<int>(std::lround(static_cast<double>(cores) - load + 0.2)), 1, cores);
}

}  // namespace

void set_compute_threads(int n) {
    if (n <= 0) {
        const char* env = std::getenv("SALIQ_THREADS");
        n = env != nullptr ? std::atoi(env) : 0;
    }
    Policy& p = policy();
    p.cores = usable_cores();
    p.adaptive = n <= 0;
    if (p.adaptive) {
        const CpuSample a = sample_cpu();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        p.last = sample_cpu();
        n = threads_for(neighbour_load(a, p.last), p.cores);
    }
    at::set_num_threads(n);
}

void adapt_compute_threads() {
    Policy& p = policy();
    // Called on every block forward: only the clock is read until a second has passed.
    if (!p.adaptive || std::chrono::steady_clock::now() - p.last.when < std::chrono::seconds(1)) return;
    const CpuSample now = sample_cpu();
    const int n = threads_for(neighbour_load(p.last, now), p.cores);
    p.last = now;
    if (n != at::get_num_threads()) at::set_num_threads(n);
}

int compute_threads() { return at::get_num_threads(); }

bool cpu_has_bf16_matrix_units() {
    static const bool has = [] {
        std::ifstream in("/proc/cpuinfo");
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("flags", 0) != 0) continue;
            std::istringstream words(line);
            std::string w;
            while (words >> w)
                if (w == "amx_bf16" || w == "avx512_bf16") return true;
            return false;
        }
        return false;
    }();
    return has;
}

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
