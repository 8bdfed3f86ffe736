// saliq command line: main() registers every subcommand (one file each under tools/, cli.h), parses, runs the chosen
// one and is the one place errors are caught and turned into exit codes.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/runtime.h"
#include "saliq/threads.h"
#include "cli.h"
#include "launch.h"

using namespace saliq;

int main(int argc, char** argv) {
    CLI::App app{"saliq: 2-bit post-training quantization of LLaMA models (ApiQ with saliency-aware retraining)"};
    app.require_subcommand(1);
    app.fallthrough();
    // A repeated option takes its last value, so a command line can override a config file or a script's default.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // global flags (-v, -q, --log-level) may follow the subcommand
    app.set_version_flag("--version", "saliq 0.1.0");
    app.set_config("--config", "", "read options from a TOML/INI file ([quantize], [eval] ... sections)");
    std::string log_level;
    bool verbose = false, quiet = false;
    app.add_option("--log-level", log_level, "debug, info, warn, error or off (env SALIQ_LOG_LEVEL)");
    app.add_flag("-v,--verbose", verbose, "debug logging");
    app.add_flag("-q,--quiet", quiet, "warnings and errors only");

    const std::string command = command_line(argc, argv);
    const std::vector<Command> commands = {
        add_convert_command(app),  add_tokenize_command(app), add_eval_command(app),
        add_quantize_command(app, command), add_saliency_command(app), add_inspect_command(app),
        add_generate_command(app), add_export_command(app), add_finetune_command(app, command),
        add_table_command(app),    add_windows_command(app),  add_launch_command(app),
    };
    const Command& launch = commands.back();

    tune_allocator();
    // A misspelled key in a config file must not be silently ignored.
    app.allow_config_extras(CLI::config_extras_mode::error);
    for (CLI::App* sub : app.get_subcommands({})) sub->allow_config_extras(CLI::config_extras_mode::error);
    // `saliq launch --nproc N eval -m ...`: without the --, CLI11 would take -m for an option of launch.
    if (argc > 1 && std::string(argv[1]) == "launch") {
        bool dashes = false, help = false;
        for (int i = 2; i < argc; ++i) {
            dashes = dashes || std::string(argv[i]) == "--";
            help = help || std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h";
        }
        if (!dashes && !help) {
            std::fprintf(stderr, "saliq launch: put -- before the command: saliq launch --nproc N -- eval -m MODEL ...\n");
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    try {
        LogLevel level = log_level_from_env(LogLevel::Info);
        if (verbose) level = LogLevel::Debug;
        if (quiet) level = LogLevel::Warn;
        if (!log_level.empty()) level = parse_log_level(log_level);
        set_log_level(level);
        if (const std::string shadowing = libstdcxx_shadowing(); !shadowing.empty()) log_warn(shadowing);

        auto run_subcommand = [&]() -> int {
            for (const Command& c : commands)
                if (*c.app) return c.run();
            return 0;
        };
        if (*launch.app) return launch.run();
        // A distributed run (torchrun's environment, or saliq launch): the subcommands that shard join the group;
        // the others would only repeat one process's work N times.
        const DistEnv dist_env = dist_env_from_environment();
        if (dist_env.world_size > 1) {
            std::string sub = app.get_subcommands().front()->get_name();
            const auto& names = distributed_subcommands();
            if (std::find(names.begin(), names.end(), sub) == names.end())
                throw ConfigError("saliq " + sub + " runs in one process; unset RANK/WORLD_SIZE");
            DistEnv env = dist_env;
            for (const Command& c : commands)  // one GPU per local rank
                if (c.model != nullptr && *c.app && c.model->device == "cuda") {
                    ModelArgs* m = c.model;
                    m->device = "cuda:" + std::to_string(dist_env.local_rank);
                    env.cuda = true;
                }
            init_distributed(env);
            if (!dist_is_main() && std::freopen("/dev/null", "w", stdout) == nullptr)  // rank 0 alone prints results
                throw IoError("/dev/null", "cannot silence the standard output of this rank");
        }
        const int rc = run_subcommand();
        shutdown_distributed(/*clean=*/rc == 0);
        return rc;
    } catch (const ConfigError& e) {
        log_error(e.what());
        return 2;
    } catch (const FormatError& e) {
        log_error(e.what());
        return 3;
    } catch (const IoError& e) {
        log_error(e.what());
        return 3;
    } catch (const NumericError& e) {
        log_error(e.what());
        return 4;
    } catch (const DistributedError& e) {
        log_error(e.what());
        return 5;
    } catch (const Cancelled&) {
        log_error("cancelled");
        return 130;
    } catch (const std::exception& e) {
        log_error(std::string("internal error: ") + e.what());
        return 1;
    }
    return 0;
}
