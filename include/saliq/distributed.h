// Runs of several processes, started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT) or by `saliq launch`. They meet over c10d (a TCPStore on rank 0, then a Gloo process
// group); the math shards its windows or items over the ranks and sums what it reduced. One process (no RANK in the
// environment) has world size 1 and every collective here is a no-op, so single-process runs stay as they were.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace saliq {

struct DistEnv {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    int local_world_size = 1;
    std::string master_addr = "127.0.0.1";
    int master_port = 29500;
    double timeout_s = 1800;  // a collective that waits longer ends the run ($SALIQ_DIST_TIMEOUT, seconds)
    bool cuda = false;        // the ranks compute on CUDA (each on cuda:LOCAL_RANK): NCCL for device tensors
};

// The run's layout from the environment; world size 1 when RANK and WORLD_SIZE are unset. Throws ConfigError on a
// partial or inconsistent environment (RANK without WORLD_SIZE, RANK >= WORLD_SIZE, no MASTER_PORT, ...).
DistEnv dist_env_from_environment();

// Joins the process group of `env` (waits up to env.timeout_s for every rank); world size 1: nothing to join.
// Logs of every rank but 0 are then prefixed with their rank and kept to warnings unless $SALIQ_LOG_ALL_RANKS=1.
void init_distributed(const DistEnv& env);
// Leaves it (after a last barrier when `clean`, so no rank exits while another still sends).
void shutdown_distributed(bool clean);

int dist_rank();
int dist_world_size();
inline bool dist_is_main() { return dist_rank() == 0; }
inline bool dist_active() { return dist_world_size() > 1; }

// This rank's contiguous share [begin, end) of n items, in units of `align` items (a batch), so that every batch a
// rank runs is one the single process runs too: rank r gets the r-th of world_size near-equal runs of units.
std::pair<int64_t, int64_t> dist_shard(int64_t n, int64_t align = 1);

// Sums of every rank's tensor, in place (any dtype and device; CUDA tensors over NCCL when the build has it, else
// through the host over Gloo).
void dist_all_reduce_sum(at::Tensor& tensor);
void dist_all_reduce_sum(std::vector<at::Tensor>& tensors);
void dist_all_reduce_sum(std::vector<double>& values);
double dist_sum(double value);
int64_t dist_sum(int64_t value);
void dist_barrier();

}  // namespace saliq
