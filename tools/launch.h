// `saliq launch --nproc N -- SUBCOMMAND ARGS...`: N ranks of one saliq command on this machine, the environment set
// as torchrun sets it (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT).
// The first rank that fails stops the others; its exit status is the launcher's.
#pragma once

#include <string>
#include <vector>

namespace saliq {

// The subcommands that shard their work over ranks (the others run in one process).
const std::vector<std::string>& distributed_subcommands();

int run_launch(int nproc, const std::vector<std::string>& command);

// The running saliq executable (/proc/self/exe), for child processes.
std::string saliq_executable();

}  // namespace saliq
