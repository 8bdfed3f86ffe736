// The saliq command line's shared pieces: the model options every model-reading command takes, loading, progress
// on stderr, and the Command each subcommand's file registers (tools/<command>.cpp). A command parses its options,
// calls the library (which makes every check) and prints results; main() (saliq.cpp) catches errors once.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "saliq/checkpoint.h"
#include "saliq/model.h"
#include "saliq/progress.h"
#include "saliq/tokenizer.h"

namespace CLI {
class App;
}

namespace saliq {

struct ModelArgs {
    std::string model;
    std::string tokenizer;
    std::string device = "cpu";
    std::string dtype = "auto";
    int threads = 0;
    bool no_adapter = false;
    bool dequantize = false;
    bool packed_cuda = false;
    std::string emulate_llamacpp;  // ModelOptions::emulate_llamacpp
};

void add_model_options(CLI::App* cmd, ModelArgs& args);
// --emulate-llamacpp, for the commands that score or run a model (eval, generate).
void add_llamacpp_emulation_option(CLI::App* cmd, ModelArgs& args);

struct LoadedModel {
    Checkpoint checkpoint;
    std::unique_ptr<LlamaModel> model;
    std::shared_ptr<Tokenizer> tokenizer;
};

// The checkpoint's tokenizer, refused when there is none or its vocabulary does not fit the model.
std::shared_ptr<Tokenizer> checkpoint_tokenizer(const Checkpoint& ckpt, const std::string& model_arg);
LoadedModel load_model(const ModelArgs& args, bool stream_blocks = false);
// Draws progress on stderr: an in-place bar on a terminal, a line every 10% otherwise (logs, CI).
ProgressFn progress_printer();
// The command line as typed, for manifests.
std::string command_line(int argc, char** argv);

// One subcommand: its options registered on the app, and what runs when it is the one chosen.
struct Command {
    CLI::App* app = nullptr;
    std::function<int()> run;
    ModelArgs* model = nullptr;  // its model options, where a distributed run gives each rank its own GPU
};

Command add_convert_command(CLI::App& app);
Command add_tokenize_command(CLI::App& app);
Command add_eval_command(CLI::App& app);
Command add_quantize_command(CLI::App& app, const std::string& command_line);
Command add_saliency_command(CLI::App& app);
Command add_inspect_command(CLI::App& app);
Command add_generate_command(CLI::App& app);
Command add_export_command(CLI::App& app);
Command add_finetune_command(CLI::App& app, const std::string& command_line);
Command add_table_command(CLI::App& app);
Command add_windows_command(CLI::App& app);
Command add_launch_command(CLI::App& app);

}  // namespace saliq
