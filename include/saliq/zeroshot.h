// Zero-shot multiple-choice evaluation by lm-evaluation-harness v0.4 conventions (methods_formats_eval.md §3.2):
// each task's prompt template, the summed log-likelihood of every choice's continuation given its context,
// acc / acc_norm, and the harness's standard errors. Tasks: piqa, arc_easy, arc_challenge, hellaswag, winogrande,
// boolq, read from <data>/tasks.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "saliq/progress.h"

namespace saliq {

class LlamaModel;
class Tokenizer;

// ---------------------------------------------------------------------------------------------------------------
// Tasks

// One harness "loglikelihood" request: log p(continuation | context).
struct McRequest {
    std::string context;
    std::string continuation;
};

// One multiple-choice item, rendered by the harness's templates.
struct McDoc {
    std::vector<McRequest> requests;   // one per choice, in choice order
    std::vector<std::string> choices;  // the harness's doc_to_choice strings; acc_norm divides by their length
    int64_t gold = 0;                  // index of the correct choice
    int64_t line = 0;                  // 1-based line of the item in its source file
};

struct McTask {
    std::string name;           // "piqa", "arc_easy", ...
    std::string path;           // the file the items come from
    bool has_acc_norm = false;  // the harness reports acc_norm for this task
    std::vector<McDoc> docs;
};

// Every task, in report order.
const std::vector<std::string>& zeroshot_task_names();
// The five tasks whose mean acc the seed paper reports (piqa, arc_easy, arc_challenge, hellaswag, winogrande).
const std::vector<std::string>& paper_average_tasks();

// "all" or a comma-separated list -> task names (duplicates dropped, order kept). ConfigError for unknown names.
std::vector<std::string> parse_task_list(const std::string& list);

// Loads a task from `data_root`/tasks (default: data_dir()). IoError names a missing file's path; FormatError names
// the file and line of a malformed item.
McTask load_task(const std::string& name, const std::string& data_root = "");

// ---------------------------------------------------------------------------------------------------------------
// Tokenization and scoring

// Context and continuation tokens as harness v0.4 `_encode_pair` builds them: trailing whitespace of the context
// moves to the front of the continuation; whole = encode(ctx + cont), ctx = encode(ctx), cont = whole[len(ctx):].
// With `add_bos`, BOS leads the context. An empty context becomes [BOS] (the harness's prefix token).
struct TokenizedRequest {
    std::vector<int32_t> context;
    std::vector<int32_t> continuation;
};
TokenizedRequest encode_request(const Tokenizer& tokenizer, const McRequest& request, bool add_bos);

struct LoglikelihoodResult {
    double logprob = 0.0;    // sum over continuation tokens of log p(token | all tokens before it)
    bool is_greedy = false;  // every continuation token is the argmax of its distribution
};

struct LoglikelihoodOptions {
    int64_t batch_size = 32;   // requests per forward pass
    int64_t max_length = 0;    // inputs keep their last max_length tokens; 0: the model's max_position_embeddings
    bool share_prefix = true;  // run the common token prefix of a group's requests once (same numbers, less work)
    std::string label;         // progress stage name
};

// Scores groups of requests (typically the choices of one item). The input of a request is
// (context + continuation)[:-1], left-truncated to max_length; requests run longest first, right-padded.
// A continuation longer than max_length is scored on its last max_length tokens (the harness has no rule for it).
// Returns one result per request, shaped like `groups`.
std::vector<std::vector<LoglikelihoodResult>> compute_loglikelihoods(
    const LlamaModel& model, const std::vector<std::vector<TokenizedRequest>>& groups,
    const LoglikelihoodOptions& options, const ProgressFn& progress = nullptr);

// ---------------------------------------------------------------------------------------------------------------
// Metrics

// Length of a UTF-8 string in code points (Python's len).
int64_t utf8_length(const std::string& text);

struct ChoicePrediction {
    int64_t pred = 0;       // argmax of the log-likelihoods (first wins ties, as numpy.argmax)
    int64_t pred_norm = 0;  // argmax of log-likelihood / utf8_length(choice)
};
ChoicePrediction predict_choice(const std::vector<double>& loglikelihoods, const std::vector<std::string>& choices);

// The harness's mean_stderr: sample standard deviation (n - 1) / sqrt(n). NaN when n < 2 (the harness prints N/A).
double mean_stderr(const std::vector<double>& values);

// ---------------------------------------------------------------------------------------------------------------
// Evaluation

struct ZeroShotOptions {
    int64_t batch_size = 32;
    int64_t limit = -1;        // the first N items of each task; -1: all
    bool add_bos = true;       // BOS before every context (harness >= 0.4.9.2 for LLaMA; earlier 0.4.x: off)
    bool share_prefix = true;
    int64_t max_length = 0;    // 0: the model's max_position_embeddings (the harness's max_length for HF models)
};

struct MetricValue {
    std::string name;  // "acc", "acc_norm"
    double value = 0.0;
    double standard_error = std::numeric_limits<double>::quiet_NaN();
};

struct TaskResult {
    std::string name;
    std::string path;
    int64_t n_docs = 0;        // scored (after --limit)
    int64_t n_available = 0;   // in the task's file
    int64_t n_requests = 0;
    int64_t n_truncated = 0;   // requests cut to max_length
    int64_t n_continuation_cut = 0;  // of those, requests whose continuation alone exceeds max_length
    int64_t n_tokens = 0;      // input tokens over all requests, before prefix sharing
    std::vector<MetricValue> metrics;  // acc, then acc_norm where the harness reports it
    double tokenize_seconds = 0.0;
    double score_seconds = 0.0;
    std::vector<std::vector<double>> loglikelihoods;  // [doc][choice]
    std::vector<ChoicePrediction> predictions;         // [doc]

    double seconds() const { return tokenize_seconds + score_seconds; }
    const MetricValue* metric(const std::string& metric_name) const;
};

struct ZeroShotResult {
    std::vector<TaskResult> tasks;
    ZeroShotOptions options;
    int64_t max_length = 0;  // the value used
    // Mean acc over paper_average_tasks(); NaN unless all five were run.
    double paper_average_acc = std::numeric_limits<double>::quiet_NaN();
    double seconds = 0.0;
};

ZeroShotResult evaluate_zeroshot(const LlamaModel& model, const Tokenizer& tokenizer, const std::vector<McTask>& tasks,
                                 const ZeroShotOptions& options, const ProgressFn& progress = nullptr);

// The harness-style table (task, metric, value, stderr, n) plus the paper average, for stdout.
std::string format_zeroshot_table(const ZeroShotResult& result);

// Settings, per-task metrics with stderr and n, timings and the paper average.
nlohmann::json zeroshot_json(const ZeroShotResult& result);

// lm-evaluation-harness's results layout (what its `--output_path` JSON holds): results.<task>["acc,none"],
// "acc_stderr,none", "acc_norm,none", versions, n-shot, higher_is_better, n-samples, configs and config, so the
// tools that read lm-eval results read ours. `model` names the model in config.
nlohmann::json zeroshot_lm_eval_json(const ZeroShotResult& result, const std::string& model, const std::string& device);

}  // namespace saliq
