// saliq command line: parses options, calls the library, prints results. The one place errors are caught.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/corpus.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/generate.h"
#include "saliq/log.h"
#include "saliq/model.h"
#include "saliq/perplexity.h"
#include "saliq/strings.h"
#include "saliq/threads.h"
#include "saliq/tokenizer.h"
#include "saliq/zeroshot.h"

namespace {

using namespace saliq;

struct ModelArgs {
    std::string model;
    std::string tokenizer;
    std::string device = "cpu";
    std::string dtype = "auto";
    int threads = 0;
};

void add_model_options(CLI::App* cmd, ModelArgs& args) {
    cmd->add_option("--model,-m", args.model, "Hugging Face folder or llama2.c .bin checkpoint")->required();
    cmd->add_option("--tokenizer", args.tokenizer, "SentencePiece .model (default: the folder's tokenizer.model)");
    cmd->add_option("--device", args.device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--dtype", args.dtype, "compute dtype: fp32, bf16, fp16 or auto (fp32 on CPU, bf16 on CUDA)")
        ->capture_default_str();
    cmd->add_option("--threads", args.threads, "CPU threads (0: all cores)")->capture_default_str();
}

struct LoadedModel {
    Checkpoint checkpoint;
    std::unique_ptr<LlamaModel> model;
    std::shared_ptr<Tokenizer> tokenizer;
};

LoadedModel load_model(const ModelArgs& args) {
    set_compute_threads(args.threads);
    LoadedModel loaded;
    loaded.checkpoint = load_checkpoint(args.model, args.tokenizer);
    if (loaded.checkpoint.tokenizer_path.empty())
        throw ConfigError("no tokenizer: " + args.model + " has no tokenizer.model beside it; pass --tokenizer");
    loaded.tokenizer = Tokenizer::load(loaded.checkpoint.tokenizer_path);
    if (loaded.tokenizer->vocab_size() != loaded.checkpoint.config.vocab_size)
        throw ConfigError(strprintf("tokenizer %s has %d pieces but the model's vocabulary is %lld",
                                    loaded.checkpoint.tokenizer_path.c_str(), loaded.tokenizer->vocab_size(),
                                    (long long)loaded.checkpoint.config.vocab_size));
    ModelOptions options;
    options.device = args.device;
    options.dtype = args.dtype;
    const auto start = std::chrono::steady_clock::now();
    loaded.model = LlamaModel::load(loaded.checkpoint, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& c = loaded.checkpoint.config;
    log_info(strprintf("loaded %s (%s): %lld layers, hidden %lld, heads %lld/%lld, vocab %lld, %s on %s, %d threads, "
                       "%.2f s",
                       args.model.c_str(), loaded.checkpoint.format.c_str(), (long long)c.n_layers,
                       (long long)c.hidden_size, (long long)c.n_heads, (long long)c.n_kv_heads,
                       (long long)c.vocab_size, c10::toString(loaded.model->options().dtype().toScalarType()),
                       loaded.model->options().device().str().c_str(), compute_threads(), seconds));
    return loaded;
}

// Draws progress on stderr: an in-place bar on a terminal, a line every 10% otherwise (logs, CI).
ProgressFn progress_printer() {
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

void write_json(const std::string& path, const nlohmann::json& json) {
    const std::string text = json.dump(2) + "\n";
    write_file_atomic(path, [&](std::ostream& out) { out << text; });
}

int run_convert(const std::string& from, const std::string& tokenizer, const std::string& out, bool force) {
    Checkpoint ckpt = read_llama2c(from);
    if (!tokenizer.empty() && !path_exists(tokenizer)) throw IoError(tokenizer, "tokenizer file does not exist");
    if (!tokenizer.empty()) Tokenizer::load(tokenizer);  // refuse a broken tokenizer before writing anything
    write_hf_folder(out, ckpt.config, *ckpt.tensors, tokenizer, force);
    std::cout << "wrote " << out << " (config.json, model.safetensors" << (tokenizer.empty() ? "" : ", tokenizer.model")
              << ")\n";
    return 0;
}

struct EvalArgs {
    std::string dataset;
    std::string text_file;
    int64_t seqlen = 2048;
    int64_t max_windows = -1;
    int64_t batch_size = 1;
    bool batch_size_given = false;
    std::string json_path;
    std::string tasks;
    int64_t limit = -1;
    bool bos = true;
    bool no_share_prefix = false;
};

constexpr int64_t kTaskBatchSize = 32;  // zero-shot requests per forward pass unless --batch-size is given

nlohmann::json run_perplexity(const EvalArgs& eargs, const LoadedModel& loaded) {
    const std::string source = !eargs.text_file.empty() ? eargs.text_file
                               : !eargs.dataset.empty() ? eargs.dataset : std::string("wikitext2");
    const auto t0 = std::chrono::steady_clock::now();
    const auto tokens = perplexity_tokens(source, *loaded.tokenizer, eargs.seqlen);
    const double tokenize_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_info(strprintf("%s: %zu tokens (tokenized in %.2f s)", source.c_str(), tokens.size(), tokenize_s));
    PerplexityOptions options;
    options.seqlen = eargs.seqlen;
    options.max_windows = eargs.max_windows;
    options.batch_size = eargs.batch_size;
    const PerplexityResult r = evaluate_perplexity(*loaded.model, tokens, options, progress_printer());
    std::printf("dataset    %s (seqlen %lld, %lld windows, %lld tokens scored)\n", source.c_str(),
                (long long)eargs.seqlen, (long long)r.n_windows, (long long)r.tokens_scored);
    std::printf("perplexity %.6f\n", r.ppl);
    std::printf("time       %.2f s (%.0f tokens/s)\n", r.seconds, r.tokens_per_second);
    return {
        {"dataset", source},
        {"seqlen", eargs.seqlen},
        {"windows", r.n_windows},
        {"tokens_scored", r.tokens_scored},
        {"nll_sum", r.nll_sum},
        {"ppl", r.ppl},
        {"seconds", r.seconds},
        {"tokens_per_second", r.tokens_per_second},
    };
}

int run_eval(const ModelArgs& margs, const EvalArgs& eargs) {
    if (!eargs.dataset.empty() && !eargs.text_file.empty())
        throw ConfigError("give either --dataset or --text, not both");
    if (!eargs.text_file.empty() && !path_exists(eargs.text_file))
        throw IoError(eargs.text_file, "text file does not exist");
    if (eargs.limit == 0 || eargs.limit < -1) throw ConfigError("--limit must be a positive number of items");
    const bool want_tasks = !eargs.tasks.empty();
    const bool want_perplexity = !want_tasks || !eargs.dataset.empty() || !eargs.text_file.empty();
    std::vector<McTask> tasks;
    if (want_tasks)  // bad names and files fail before the model loads
        for (const auto& name : parse_task_list(eargs.tasks)) tasks.push_back(load_task(name));

    LoadedModel loaded = load_model(margs);
    nlohmann::json json = {
        {"model", margs.model},
        {"format", loaded.checkpoint.format},
        {"tokenizer", loaded.checkpoint.tokenizer_path},
        {"device", loaded.model->options().device().str()},
        {"dtype", c10::toString(loaded.model->options().dtype().toScalarType())},
        {"threads", compute_threads()},
    };
    std::printf("model      %s\n", margs.model.c_str());
    if (want_perplexity) json.update(run_perplexity(eargs, loaded));
    if (want_tasks) {
        ZeroShotOptions options;
        options.batch_size = eargs.batch_size_given ? eargs.batch_size : kTaskBatchSize;
        options.limit = eargs.limit;
        options.add_bos = eargs.bos;
        options.share_prefix = !eargs.no_share_prefix;
        const ZeroShotResult r = evaluate_zeroshot(*loaded.model, *loaded.tokenizer, tasks, options, progress_printer());
        std::printf("\n%s", format_zeroshot_table(r).c_str());
        json["zeroshot"] = zeroshot_json(r);
    }
    if (!eargs.json_path.empty()) write_json(eargs.json_path, json);
    return 0;
}

int run_generate(const ModelArgs& margs, const std::string& prompt, int64_t max_tokens) {
    LoadedModel loaded = load_model(margs);
    std::cout << generate_text(*loaded.model, *loaded.tokenizer, prompt, max_tokens) << std::endl;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"saliq: 2-bit post-training quantization of LLaMA models (ApiQ with saliency-aware retraining)"};
    app.require_subcommand(1);
    app.fallthrough();  // global flags (-v, -q, --log-level) may follow the subcommand
    app.set_version_flag("--version", "saliq 0.1.0");
    std::string log_level;
    bool verbose = false, quiet = false;
    app.add_option("--log-level", log_level, "debug, info, warn, error or off (env SALIQ_LOG_LEVEL)");
    app.add_flag("-v,--verbose", verbose, "debug logging");
    app.add_flag("-q,--quiet", quiet, "warnings and errors only");

    std::string from_llama2c, convert_tokenizer, convert_out;
    bool force = false;
    CLI::App* convert = app.add_subcommand("convert", "convert a llama2.c .bin checkpoint to a Hugging Face folder");
    convert->add_option("--from-llama2c", from_llama2c, "llama2.c .bin checkpoint")->required();
    convert->add_option("--tokenizer", convert_tokenizer, "SentencePiece .model to copy into the folder");
    convert->add_option("--out,-o", convert_out, "output folder")->required();
    convert->add_flag("--force", force, "replace an existing non-empty output folder");

    ModelArgs eval_model;
    EvalArgs eval_args;
    CLI::App* eval = app.add_subcommand("eval", "perplexity on a data set or text file, and/or zero-shot tasks");
    add_model_options(eval, eval_model);
    eval->add_option("--dataset", eval_args.dataset, "wikitext2 (default), c4, ptb or tinystories");
    eval->add_option("--text", eval_args.text_file, "score this text file instead of a named data set");
    eval->add_option("--seqlen", eval_args.seqlen, "window length in tokens")->capture_default_str();
    eval->add_option("--max-windows", eval_args.max_windows, "score at most N windows (-1: all)")
        ->capture_default_str();
    CLI::Option* batch_size = eval->add_option("--batch-size", eval_args.batch_size,
                                               "windows (perplexity, default 1) or requests (tasks, default 32) per "
                                               "forward pass");
    eval->add_option("--json", eval_args.json_path, "also write the result as JSON to this file");
    eval->add_option("--tasks", eval_args.tasks,
                     "zero-shot tasks, comma-separated or all: piqa, arc_easy, arc_challenge, hellaswag, winogrande, "
                     "boolq (alone: tasks only; with --dataset/--text: both)");
    eval->add_option("--limit", eval_args.limit, "score only the first N items of each task");
    eval->add_flag("--bos,!--no-bos", eval_args.bos, "BOS before every task context (default on, as for LLaMA)");
    eval->add_flag("--no-share-prefix", eval_args.no_share_prefix,
                   "score every choice as a separate row instead of running a shared context once");

    ModelArgs gen_model;
    std::string prompt;
    int64_t max_tokens = 256;
    CLI::App* generate = app.add_subcommand("generate", "greedy decoding (a correctness probe)");
    add_model_options(generate, gen_model);
    generate->add_option("--prompt,-p", prompt, "prompt text (empty: start from BOS)");
    generate->add_option("--max-tokens,-n", max_tokens, "tokens to generate")->capture_default_str();

    tune_allocator();
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

        if (*convert) return run_convert(from_llama2c, convert_tokenizer, convert_out, force);
        if (*eval) {
            eval_args.batch_size_given = batch_size->count() > 0;
            return run_eval(eval_model, eval_args);
        }
        if (*generate) return run_generate(gen_model, prompt, max_tokens);
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
    } catch (const Cancelled&) {
        log_error("cancelled");
        return 130;
    } catch (const std::exception& e) {
        log_error(std::string("internal error: ") + e.what());
        return 1;
    }
    return 0;
}
