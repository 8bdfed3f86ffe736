// Shared pieces of the command line (cli.h).
#include "cli.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/strings.h"
#include "saliq/threads.h"

namespace saliq {

void add_model_options(CLI::App* cmd, ModelArgs& args) {
    cmd->add_option("--model,-m", args.model, "Hugging Face folder, llama2.c .bin or GGUF checkpoint")->required();
    cmd->add_option("--tokenizer", args.tokenizer, "SentencePiece .model or tokenizer.json (default: the folder's)");
    cmd->add_option("--device", args.device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--dtype", args.dtype, "compute dtype: fp32, bf16, fp16 or auto (fp32 on CPU, bf16 on CUDA)")
        ->capture_default_str();
    cmd->add_option("--threads", args.threads, "CPU threads (0: all cores)")->capture_default_str();
    cmd->add_flag("--no-adapter", args.no_adapter, "ignore LoRA adapters stored beside the weights");
    cmd->add_flag("--dequantize", args.dequantize,
                  "hold a packed folder's linears as dense weights (the reference path; default: compute from the "
                  "packed codes)");
    cmd->add_flag("--packed-cuda", args.packed_cuda,
                  "with --device cuda: keep a packed folder's linears packed on the GPU and compute with saliq's CUDA "
                  "kernels (default there: dequantize once on load; the kernels await a check on a GPU)");
}

void add_llamacpp_emulation_option(CLI::App* cmd, ModelArgs& args) {
    cmd->add_option("--emulate-llamacpp", args.emulate_llamacpp,
                    "compute a --grid folder with llama.cpp's CPU arithmetic for its `export --format gguf --dtype "
                    "DTYPE` file (8-bit activations in every GGML product, as ggml rounds them; embeddings and head "
                    "in DTYPE): fp32, fp16 or bf16");
}

// The checkpoint's tokenizer, refused when there is none or its vocabulary does not fit the model.
std::shared_ptr<Tokenizer> checkpoint_tokenizer(const Checkpoint& ckpt, const std::string& model_arg) {
    if (ckpt.tokenizer_path.empty())
        throw ConfigError("no tokenizer: " + model_arg +
                          " has no tokenizer.model or tokenizer.json beside it; pass --tokenizer");
    auto tokenizer = Tokenizer::load(ckpt.tokenizer_path);
    if (tokenizer->vocab_size() != ckpt.config.vocab_size)
        throw ConfigError(strprintf("tokenizer %s has %d pieces but the model's vocabulary is %lld",
                                    ckpt.tokenizer_path.c_str(), tokenizer->vocab_size(),
                                    (long long)ckpt.config.vocab_size));
    return tokenizer;
}

LoadedModel load_model(const ModelArgs& args, bool stream_blocks) {
    set_compute_threads(args.threads);
    LoadedModel loaded;
    loaded.checkpoint = load_checkpoint(args.model, args.tokenizer);
    loaded.tokenizer = checkpoint_tokenizer(loaded.checkpoint, args.model);
    ModelOptions options;
    options.device = args.device;
    options.dtype = args.dtype;
    options.use_adapter = !args.no_adapter;
    options.dequantize = args.dequantize;
    options.packed_cuda = args.packed_cuda;
    options.emulate_llamacpp = args.emulate_llamacpp;
    options.stream_blocks = stream_blocks;
    const auto start = std::chrono::steady_clock::now();
    loaded.model = LlamaModel::load(loaded.checkpoint, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& c = loaded.checkpoint.config;
    if (!loaded.checkpoint.adapter_path.empty())
        log_info(args.no_adapter ? "LoRA adapters present but not applied (--no-adapter)"
                                 : strprintf("LoRA adapters applied (scale %.4g)", loaded.checkpoint.adapter_scale));
    log_info(strprintf("loaded %s (%s): %lld layers, hidden %lld, heads %lld/%lld, vocab %lld, %s on %s, %d threads, "
                       "%.2f s",
                       args.model.c_str(), loaded.checkpoint.format.c_str(), (long long)c.n_layers,
                       (long long)c.hidden_size, (long long)c.n_heads, (long long)c.n_kv_heads,
                       (long long)c.vocab_size, c10::toString(loaded.model->options().dtype().toScalarType()),
                       loaded.model->options().device().str().c_str(), compute_threads(), seconds));
    return loaded;
}

ProgressFn progress_printer() {
    if (!dist_is_main()) return [](const ProgressEvent&) { return true; };  // one bar for a distributed run: rank 0's
    const bool tty = isatty(STDERR_FILENO) != 0;
    auto last_decile = std::make_shared<int64_t>(-1);
    return [tty, last_decile](const ProgressEvent& e) {
        const double frac = e.total > 0 ? static_cast<double>(e.done) / static_cast<double>(e.total) : 0.0;
        const double eta = frac > 0 ? e.elapsed_s * (1.0 - frac) / frac : 0.0;
        if (tty) {
            const int width = 30;
            const int filled = static_cast<int>(frac * width);
            std::string bar(static_cast<size_t>(filled), '=');
            bar.resize(width, ' ');
            std::fprintf(stderr, "\r%s [%s] %lld/%lld %s  %s eta %s   ", e.stage.c_str(), bar.c_str(),
                         (long long)e.done, (long long)e.total, e.detail.c_str(), human_seconds(e.elapsed_s).c_str(),
                         human_seconds(eta).c_str());
            if (e.done >= e.total) std::fprintf(stderr, "\n");
        } else {
            const int64_t decile = static_cast<int64_t>(frac * 10);
            if (decile != *last_decile) {
                *last_decile = decile;
                log_info(strprintf("%s %lld/%lld %s  %s eta %s", e.stage.c_str(), (long long)e.done,
                                   (long long)e.total, e.detail.c_str(), human_seconds(e.elapsed_s).c_str(),
                                   human_seconds(eta).c_str()));
            }
        }
        return true;
    };
}

std::string command_line(int argc, char** argv) {
    std::string out;
    for (int i = 0; i < argc; ++i) {
        if (i) out += ' ';
        out += argv[i];
    }
    return out;
}

}  // namespace saliq
