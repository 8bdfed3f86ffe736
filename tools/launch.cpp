#include "launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <CLI/CLI.hpp>

#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/strings.h"
#include "cli.h"

extern char** environ;

namespace saliq {
namespace {

volatile sig_atomic_t g_signal = 0;
void remember_signal(int sig) { g_signal = sig; }

// A TCP port on loopback that nothing listens on now (the kernel's pick; torchrun takes its port the same way).
int free_loopback_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw IoError("socket", std::string("cannot open a socket: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    close(fd);
    if (!ok) throw IoError("127.0.0.1", "cannot find a free port on loopback");
    return ntohs(addr.sin_port);
}

std::string describe(int status) {
    if (WIFSIGNALED(status)) return strprintf("was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    return strprintf("exited with code %d", WEXITSTATUS(status));
}

std::string joined(const std::vector<std::string>& parts, const char* sep) {
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
    return out;
}

int exit_code(int status) { return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status); }

}  // namespace

const std::vector<std::string>& distributed_subcommands() {
    static const std::vector<std::string> names = {"eval", "quantize", "saliency"};
    return names;
}

std::string saliq_executable() {
    char buffer[4096];
    const ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
    if (n <= 0) throw IoError("/proc/self/exe", "cannot find the saliq executable");
    return std::string(buffer, static_cast<size_t>(n));
}

int run_launch(int nproc, const std::vector<std::string>& command) {
    const auto& shardable = distributed_subcommands();
    if (command.empty()) throw ConfigError("saliq launch: give the command to run after --, e.g. -- eval -m MODEL");
    if (std::find(shardable.begin(), shardable.end(), command.front()) == shardable.end())
        throw ConfigError("saliq launch: '" + command.front() + "' does not run over several processes (these do: " +
                          joined(shardable, ", ") + ")");
    if (nproc < 1 || nproc > 256) throw ConfigError("--nproc must be between 1 and 256");
    if (std::getenv("RANK") != nullptr) throw ConfigError("saliq launch inside a distributed run (RANK is set)");

    const std::string exe = saliq_executable();
    const int port = free_loopback_port();
    // Each rank gets its share of the cores unless the user chose a thread count.
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const std::string threads = std::to_string(std::max(1u, cores / static_cast<unsigned>(nproc)));
    std::vector<std::string> base_env;
    for (char** e = environ; *e != nullptr; ++e) base_env.emplace_back(*e);

    struct sigaction action {};
    action.sa_handler = remember_signal;
    sigemptyset(&action.sa_mask);
    struct sigaction old_int {}, old_term {};
    sigaction(SIGINT, &action, &old_int);
    sigaction(SIGTERM, &action, &old_term);

    std::vector<pid_t> pids(static_cast<size_t>(nproc), 0);
    log_info(strprintf("launch: %d ranks of saliq %s on 127.0.0.1:%d", nproc, joined(command, " ").c_str(), port));
    for (int rank = 0; rank < nproc; ++rank) {
        std::vector<std::string> env = base_env;
        env.push_back("RANK=" + std::to_string(rank));
        env.push_back("LOCAL_RANK=" + std::to_string(rank));
        env.push_back("WORLD_SIZE=" + std::to_string(nproc));
        env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
        env.push_back("MASTER_ADDR=127.0.0.1");
        env.push_back("MASTER_PORT=" + std::to_string(port));
        if (std::getenv("SALIQ_THREADS") == nullptr) env.push_back("SALIQ_THREADS=" + threads);
        std::vector<std::string> argv = {exe};
        argv.insert(argv.end(), command.begin(), command.end());
        std::vector<char*> cargv, cenv;
        for (auto& s : argv) cargv.push_back(s.data());
        cargv.push_back(nullptr);
        for (auto& s : env) cenv.push_back(s.data());
        cenv.push_back(nullptr);
        pid_t pid = 0;
        if (posix_spawn(&pid, exe.c_str(), nullptr, nullptr, cargv.data(), cenv.data()) != 0) {
            for (pid_t p : pids)
                if (p > 0) kill(p, SIGTERM);
            throw IoError(exe, strprintf("cannot start rank %d", rank));
        }
        pids[static_cast<size_t>(rank)] = pid;
    }

    // Reap the ranks. After the first failure (or a signal to the launcher) the others get SIGTERM, then SIGKILL
    // after a grace period, so that no rank is left waiting on a peer that is gone.
    int failure_code = 0, running = nproc;
    bool stopping = false;
    std::chrono::steady_clock::time_point kill_at{};
    auto stop_others = [&](int sig) {
        for (pid_t p : pids)
            if (p > 0) kill(p, sig);
    };
    auto start_stopping = [&](int sig, int code) {  // the first failure or signal decides the exit status
        stop_others(sig);
        stopping = true;
        kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        failure_code = code;
    };
    while (running > 0) {
        if (g_signal != 0 && !stopping) {
            log_warn(strprintf("launch: %s, stopping the ranks", strsignal(g_signal)));
            start_stopping(g_signal, 128 + g_signal);
        }
        int status = 0;
        const pid_t pid = waitpid(-1, &status, stopping ? WNOHANG : 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;  // no children left
        }
        if (pid == 0) {  // stopping: the others have not exited yet
            if (std::chrono::steady_clock::now() >= kill_at) stop_others(SIGKILL);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
        }
        const auto it = std::find(pids.begin(), pids.end(), pid);
        if (it == pids.end()) continue;
        const int rank = static_cast<int>(it - pids.begin());
        *it = 0;
        --running;
        const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!failed) continue;
        if (!stopping) {
            log_error(strprintf("launch: rank %d %s; stopping the other ranks", rank, describe(status).c_str()));
            start_stopping(SIGTERM, exit_code(status));
        } else {
            log_warn(strprintf("launch: rank %d %s", rank, describe(status).c_str()));
        }
    }
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    return failure_code;
}

Command add_launch_command(CLI::App& app) {
    struct Args {
        int nproc = 1;
        std::vector<std::string> command;
    };
    auto a = std::make_shared<Args>();
    int& launch_nproc = a->nproc;
    std::vector<std::string>& launch_command = a->command;
    CLI::App* launch = app.add_subcommand(
        "launch", "run one saliq command as N processes on this machine (torchrun's environment, Gloo over "
                  "loopback): saliq launch --nproc N -- eval|quantize|saliency ARGS...");
    launch->add_option("--nproc", launch_nproc, "processes (ranks)")->required();
    launch->add_option("command", launch_command, "the saliq command and its arguments, after --")
        ->expected(-1)
        ->required();

    return {launch, [a] { return run_launch(a->nproc, a->command); }};
}

}  // namespace saliq
