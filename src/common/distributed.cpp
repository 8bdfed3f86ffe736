#include "saliq/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL  // a CUDA LibTorch built with NCCL (the pip wheel's config defines it)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

// Host tensors and numbers go over Gloo; with CUDA ranks and NCCL compiled in, device tensors go over NCCL (PyTorch's
// "cpu:gloo,cuda:nccl").
struct Group {
    DistEnv env;
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef USE_C10D_NCCL
    c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
};

std::unique_ptr<Group>& group() {
    static std::unique_ptr<Group> instance;
    return instance;
}

// A variable of the launch environment as a whole number; `fallback` when unset.
int env_int(const char* name, int fallback, bool required) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') {
        if (required) throw ConfigError(std::string("distributed run: ") + name + " is not set (RANK and WORLD_SIZE "
                                        "are; set every variable torchrun sets, or start the run with saliq launch)");
        return fallback;
    }
    char* end = nullptr;
    const long parsed = std::strtol(value, &end, 10);
    if (*end != '\0' || parsed < 0 || parsed > 1 << 20)
        throw ConfigError(std::string("distributed run: ") + name + "='" + value + "' is not a whole number");
    return static_cast<int>(parsed);
}

// c10's messages carry a C++ backtrace; the user needs the first line of what happened.
std::string short_message(const std::exception& e) {
    if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
    return e.what();
}

// Runs one collective and waits for it; a peer that died or stopped answering becomes an error naming this rank.
template <typename Backend, typename Launch>
void run_collective(const char* what, Backend& backend, Launch launch) {
    Group& g = *group();
    try {
        auto work = launch(backend);
        work->wait(std::chrono::milliseconds(static_cast<int64_t>(g.env.timeout_s * 1000)));
    } catch (const std::exception& e) {
        throw DistributedError(strprintf("distributed run: rank %d: %s with the other %d rank(s) failed (a rank died, was "
                              "stopped or did not answer within %.0f s): %s",
                              g.env.rank, what, g.env.world_size - 1, g.env.timeout_s, short_message(e).c_str()));
    }
}

}  // namespace

DistEnv dist_env_from_environment() {
    DistEnv env;
    const bool has_rank = std::getenv("RANK") != nullptr, has_world = std::getenv("WORLD_SIZE") != nullptr;
    if (!has_rank && !has_world) return env;
    env.rank = env_int("RANK", 0, true);
    env.world_size = env_int("WORLD_SIZE", 1, true);
    if (env.world_size < 1) throw ConfigError("distributed run: WORLD_SIZE must be at least 1");
    if (env.rank >= env.world_size)
        throw ConfigError(strprintf("distributed run: RANK %d is not below WORLD_SIZE %d", env.rank, env.world_size));
    env.local_rank = env_int("LOCAL_RANK", env.rank, false);
    env.local_world_size = env_int("LOCAL_WORLD_SIZE", env.world_size, false);
    if (env.local_rank >= env.local_world_size)
        throw ConfigError(strprintf("distributed run: LOCAL_RANK %d is not below LOCAL_WORLD_SIZE %d", env.local_rank,
                                    env.local_world_size));
    if (env.world_size > 1) {
        const char* addr = std::getenv("MASTER_ADDR");
        if (addr == nullptr || *addr == '\0') throw ConfigError("distributed run: MASTER_ADDR is not set");
        env.master_addr = addr;
        env.master_port = env_int("MASTER_PORT", 0, true);
        if (env.master_port < 1 || env.master_port > 65535)
            throw ConfigError(strprintf("distributed run: MASTER_PORT %d is not a port", env.master_port));
    }
    if (const char* t = std::getenv("SALIQ_DIST_TIMEOUT"); t != nullptr && *t != '\0') {
        char* end = nullptr;
        env.timeout_s = std::strtod(t, &end);
        if (*end != '\0' || !(env.timeout_s > 0))
            throw ConfigError(std::string("SALIQ_DIST_TIMEOUT='") + t + "' is not a positive number of seconds");
    }
    return env;
}

void init_distributed(const DistEnv& env) {
    if (group() != nullptr) throw Error("internal: the process group is already initialized");
    if (env.world_size <= 1) return;
    auto g = std::make_unique<Group>();
    g->env = env;
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(env.timeout_s * 1000));
    try {
        c10d::TCPStoreOptions store_options;
        store_options.port = static_cast<uint16_t>(env.master_port);
        store_options.isServer = env.rank == 0;
        store_options.numWorkers = static_cast<size_t>(env.world_size);
        store_options.waitWorkers = true;
        store_options.timeout = timeout;
        g->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
        auto options = c10d::ProcessGroupGloo::Options::create(timeout);
        // On one machine the ranks talk over loopback; across machines over the interface of this host's name.
        const bool loopback = env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
        options->devices.push_back(loopback ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                            : c10d::ProcessGroupGloo::createDefaultDevice());
        g->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
            c10::make_intrusive<c10d::PrefixStore>("gloo", g->store), env.rank, env.world_size, options);
#ifdef USE_C10D_NCCL
        if (env.cuda) {
            auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
            nccl_options->timeout = timeout;
            g->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
                c10::make_intrusive<c10d::PrefixStore>("nccl", g->store), env.rank, env.world_size, nccl_options);
        }
#endif
    } catch (const std::exception& e) {
        throw DistributedError(strprintf("distributed run: rank %d of %d could not join the process group at %s:%d within "
                              "%.0f s: %s",
                              env.rank, env.world_size, env.master_addr.c_str(), env.master_port, env.timeout_s,
                              short_message(e).c_str()));
    }
    group() = std::move(g);
    set_log_prefix(strprintf("[rank %d] ", env.rank));
    const char* all = std::getenv("SALIQ_LOG_ALL_RANKS");
    if (env.rank != 0 && !(all != nullptr && std::string(all) == "1")) set_log_level(LogLevel::Warn);
    const bool nccl =
#ifdef USE_C10D_NCCL
        group()->nccl.defined();
#else
        false;
#endif
    log_info(strprintf("distributed: %d processes (Gloo%s over %s:%d)", env.world_size,
                       nccl ? ", NCCL for CUDA tensors" : env.cuda ? "; CUDA tensors through host memory" : "",
                       env.master_addr.c_str(), env.master_port));
}

void shutdown_distributed(bool clean) {
    if (group() == nullptr) return;
    if (clean) dist_barrier();
    group().reset();
}

int dist_rank() { return group() ? group()->env.rank : 0; }
int dist_world_size() { return group() ? group()->env.world_size : 1; }

std::pair<int64_t, int64_t> dist_shard(int64_t n, int64_t align) {
    align = std::max<int64_t>(1, align);
    const int64_t world = dist_world_size(), rank = dist_rank();
    const int64_t units = (n + align - 1) / align;
    const int64_t begin = units * rank / world, end = units * (rank + 1) / world;
    return {std::min(n, begin * align), std::min(n, end * align)};
}

void dist_all_reduce_sum(std::vector<at::Tensor>& tensors) {
    if (!dist_active()) return;
    Group& g = *group();
    for (at::Tensor& t : tensors) {
#ifdef USE_C10D_NCCL
        if (g.nccl.defined() && t.is_cuda()) {
            std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
            run_collective("allreduce", *g.nccl, [&](c10d::ProcessGroupNCCL& pg) { return pg.allreduce(one); });
            if (!one[0].is_same(t)) t.copy_(one[0]);
            continue;
        }
#endif
        // Gloo reduces host tensors; a device tensor goes through a host copy and back.
        std::vector<at::Tensor> host{t.device().is_cpu() && t.is_contiguous() ? t : t.to(at::kCPU).contiguous()};
        run_collective("allreduce", *g.gloo, [&](c10d::ProcessGroupGloo& pg) { return pg.allreduce(host); });
        if (!host[0].is_same(t)) t.copy_(host[0]);
    }
}

void dist_all_reduce_sum(at::Tensor& tensor) {
    std::vector<at::Tensor> one{tensor};
    dist_all_reduce_sum(one);
}

void dist_all_reduce_sum(std::vector<double>& values) {
    if (!dist_active() || values.empty()) return;
    at::Tensor t = at::from_blob(values.data(), {static_cast<int64_t>(values.size())}, at::kDouble);
    dist_all_reduce_sum(t);
}

double dist_sum(double value) {
    if (!dist_active()) return value;
    at::Tensor t = at::full({1}, value, at::kDouble);
    dist_all_reduce_sum(t);
    return t.item<double>();
}

int64_t dist_sum(int64_t value) {
    if (!dist_active()) return value;
    at::Tensor t = at::full({1}, value, at::kLong);
    dist_all_reduce_sum(t);
    return t.item<int64_t>();
}

void dist_barrier() {
    if (!dist_active()) return;
    run_collective("barrier", *group()->gloo, [&](c10d::ProcessGroupGloo& pg) { return pg.barrier(); });
}

}  // namespace saliq
