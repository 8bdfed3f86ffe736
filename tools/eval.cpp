// `saliq eval`: perplexity on a data set or text, and zero-shot tasks.
#include "cli.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/calibration.h"
#include "saliq/corpus.h"
#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/perplexity.h"
#include "saliq/strings.h"
#include "saliq/threads.h"
#include "saliq/zeroshot.h"

namespace saliq {
namespace {

struct EvalArgs {
    std::string dataset;
    std::string text_file;
    int64_t seqlen = 0;  // 0: min(2048, the model's context)
    int64_t max_windows = -1;
    int64_t batch_size = 1;
    std::string eval_range = "0:1";
    bool batch_size_given = false;
    std::string json_path;
    std::string json_format = "saliq";
    std::string tasks;
    int64_t limit = -1;
    bool bos = false, no_bos = false;  // neither: the tokenizer's own convention
    bool no_share_prefix = false;
};

constexpr int64_t kTaskBatchSize = 32;  // zero-shot requests per forward pass unless --batch-size is given

nlohmann::json run_perplexity(const EvalArgs& eargs, const LoadedModel& loaded) {
    const std::string source = !eargs.text_file.empty() ? eargs.text_file
                               : !eargs.dataset.empty() ? eargs.dataset : std::string("wikitext2");
    const auto t0 = std::chrono::steady_clock::now();
    const TokenRange range = TokenRange::parse(eargs.eval_range);
    const auto tokens = perplexity_tokens(source, *loaded.tokenizer, eargs.seqlen, range.begin, range.end);
    const double tokenize_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_info(strprintf("%s: %zu tokens (tokenized in %.2f s)", source.c_str(), tokens.size(), tokenize_s));
    PerplexityOptions options;
    options.seqlen = eargs.seqlen;
    options.max_windows = eargs.max_windows;
    options.batch_size = eargs.batch_size;
    const PerplexityResult r = evaluate_perplexity(*loaded.model, tokens, options, progress_printer());
    std::printf("dataset    %s%s (seqlen %lld, %lld windows, %lld tokens scored)\n", source.c_str(),
                range.whole() ? "" : (" range " + range.to_string()).c_str(), (long long)eargs.seqlen,
                (long long)r.n_windows, (long long)r.tokens_scored);
    std::printf("perplexity %.6f\n", r.ppl);
    std::printf("time       %.2f s (%.0f tokens/s)\n", r.seconds, r.tokens_per_second);
    return {
        {"dataset", source},
        {"eval_range", range.to_string()},
        {"seqlen", eargs.seqlen},
        {"windows", r.n_windows},
        {"tokens_scored", r.tokens_scored},
        {"nll_sum", r.nll_sum},
        {"window_nll", r.window_nll},
        {"ppl", r.ppl},
        {"seconds", r.seconds},
        {"tokens_per_second", r.tokens_per_second},
    };
}

int run_eval(const ModelArgs& margs, EvalArgs eargs) {
    if (!eargs.dataset.empty() && !eargs.text_file.empty())
        throw ConfigError("give either --dataset or --text, not both");
    if (!eargs.text_file.empty() && !path_exists(eargs.text_file))
        throw IoError(eargs.text_file, "text file does not exist");
    if (eargs.limit == 0 || eargs.limit < -1) throw ConfigError("--limit must be a positive number of items");
    const bool want_tasks = !eargs.tasks.empty();
    const bool want_perplexity = !want_tasks || !eargs.dataset.empty() || !eargs.text_file.empty();
    std::vector<McTask> tasks;
    if (eargs.json_format != "saliq" && eargs.json_format != "lm-eval")
        throw ConfigError("--json-format must be saliq or lm-eval, not '" + eargs.json_format + "'");
    ZeroShotResult last_zeroshot;
    if (want_tasks)  // bad names and files fail before the model loads
        for (const auto& name : parse_task_list(eargs.tasks)) tasks.push_back(load_task(name));

    // Perplexity alone runs block-major, so no block need stay resident; zero-shot requests run window-major.
    LoadedModel loaded = load_model(margs, /*stream_blocks=*/!want_tasks);
    if (eargs.seqlen <= 0) eargs.seqlen = std::min<int64_t>(2048, loaded.checkpoint.config.max_position_embeddings);
    nlohmann::json json = {
        {"model", margs.model},
        {"format", loaded.checkpoint.format},
        {"tokenizer", loaded.checkpoint.tokenizer_path},
        {"device", loaded.model->options().device().str()},
        {"dtype", c10::toString(loaded.model->options().dtype().toScalarType())},
        {"threads", compute_threads()},
    };
    if (!margs.emulate_llamacpp.empty()) json["emulate_llamacpp"] = margs.emulate_llamacpp;
    std::printf("model      %s\n", margs.model.c_str());
    if (want_perplexity) json.update(run_perplexity(eargs, loaded));
    if (want_tasks) {
        ZeroShotOptions options;
        options.batch_size = eargs.batch_size_given ? eargs.batch_size : kTaskBatchSize;
        options.limit = eargs.limit;
        options.add_bos = eargs.bos || (!eargs.no_bos && loaded.tokenizer->add_bos());
        options.share_prefix = !eargs.no_share_prefix;
        const ZeroShotResult r = evaluate_zeroshot(*loaded.model, *loaded.tokenizer, tasks, options, progress_printer());
        last_zeroshot = r;
        std::printf("\n%s", format_zeroshot_table(r).c_str());
        json["zeroshot"] = zeroshot_json(r);
    }
    if (dist_active()) json["ranks"] = dist_world_size();
    if (!eargs.json_path.empty() && dist_is_main()) {
        if (eargs.json_format == "lm-eval") {
            nlohmann::json lm = zeroshot_lm_eval_json(last_zeroshot, margs.model, json["device"].get<std::string>());
            if (json.contains("ppl")) {  // perplexity beside the tasks, as a results entry of its own
                const std::string name = json.value("dataset", std::string("text"));
                lm["results"][name] = {{"alias", name},
                                       {"token_perplexity,none", json["ppl"]},
                                       {"token_perplexity_stderr,none", "N/A"}};
                lm["higher_is_better"][name] = {{"token_perplexity", false}};
                lm["n-samples"][name] = {{"original", json["windows"]}, {"effective", json["windows"]}};
                lm["versions"][name] = nullptr;
            }
            lm["saliq"] = json;
            write_json_atomic(eargs.json_path, lm);
        } else {
            write_json_atomic(eargs.json_path, json);
        }
    }
    return 0;
}

}  // namespace

Command add_eval_command(CLI::App& app) {
    auto model = std::make_shared<ModelArgs>();
    auto args = std::make_shared<EvalArgs>();
    ModelArgs& eval_model = *model;
    EvalArgs& eval_args = *args;
    CLI::App* eval = app.add_subcommand("eval", "perplexity on a data set or text file, and/or zero-shot tasks");
    add_model_options(eval, eval_model);
    add_llamacpp_emulation_option(eval, eval_model);
    eval->add_option("--dataset", eval_args.dataset, "wikitext2 (default), c4, ptb or tinystories");
    eval->add_option("--text", eval_args.text_file, "score this text file instead of a named data set");
    eval->add_option("--seqlen", eval_args.seqlen, "window length in tokens (default: min(2048, the model's context))");
    eval->add_option("--max-windows", eval_args.max_windows, "score at most N windows (-1: all)")
        ->capture_default_str();
    CLI::Option* batch_size = eval->add_option("--batch-size", eval_args.batch_size,
                                               "windows (perplexity, default 1) or requests (tasks, default 32) per "
                                               "forward pass");
    eval->add_option("--eval-range", eval_args.eval_range,
                     "score only this fraction of the token stream (c4: of the documents), e.g. 0.5:1 to hold out "
                     "calibration data")
        ->capture_default_str();
    eval->add_option("--json", eval_args.json_path, "also write the result as JSON to this file");
    eval->add_option("--json-format", eval_args.json_format,
                     "saliq (default) or lm-eval (lm-evaluation-harness's results layout, perplexity as an entry)")
        ->capture_default_str();
    eval->add_option("--tasks", eval_args.tasks,
                     "zero-shot tasks, comma-separated or all: piqa, arc_easy, arc_challenge, hellaswag, winogrande, "
                     "boolq (alone: tasks only; with --dataset/--text: both)");
    eval->add_option("--limit", eval_args.limit, "score only the first N items of each task");
    eval->add_flag("--bos", eval_args.bos, "BOS before every task context (default: as the model's tokenizer does; on for LLaMA)");
    eval->add_flag("--no-bos", eval_args.no_bos, "no BOS before task contexts")->excludes("--bos");
    eval->add_flag("--no-share-prefix", eval_args.no_share_prefix,
                   "score every choice as a separate row instead of running a shared context once");

    return {eval,
            [model, args, batch_size] {
                args->batch_size_given = batch_size->count() > 0;
                return run_eval(*model, *args);
            },
            model.get()};
}

}  // namespace saliq
