#include "saliq/zeroshot.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "eval/tasks/tasks.h"
#include "saliq/corpus.h"
#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/model.h"
#include "saliq/strings.h"
#include "saliq/tokenizer.h"

namespace saliq {
namespace {

// The task table: name, files under <data>/tasks, whether the harness reports acc_norm, and the loader.
struct TaskSpec {
    const char* name;
    const char* file;
    const char* second_file;  // PIQA's labels; nullptr otherwise
    bool acc_norm;
    std::function<std::vector<McDoc>(const std::string&, const std::string&)> load;
};

const std::vector<TaskSpec>& task_specs() {
    static const std::vector<TaskSpec> specs = {
        {"piqa", "tasks/piqa/valid.jsonl", "tasks/piqa/valid-labels.lst", true,
         [](const std::string& a, const std::string& b) { return detail::load_piqa(a, b); }},
        {"arc_easy", "tasks/arc/ARC-Easy_test.json", nullptr, true,
         [](const std::string& a, const std::string&) { return detail::load_arc(a); }},
        {"arc_challenge", "tasks/arc/ARC-Challenge_test.json", nullptr, true,
         [](const std::string& a, const std::string&) { return detail::load_arc(a); }},
        {"hellaswag", "tasks/hellaswag/hellaswag_val_full.txt", nullptr, true,
         [](const std::string& a, const std::string&) { return detail::load_hellaswag(a); }},
        {"winogrande", "tasks/winogrande/dev.jsonl", nullptr, false,
         [](const std::string& a, const std::string&) { return detail::load_winogrande(a); }},
        {"boolq", "tasks/boolq/dev.jsonl", nullptr, false,
         [](const std::string& a, const std::string&) { return detail::load_boolq(a); }},
    };
    return specs;
}

const TaskSpec& find_spec(const std::string& name) {
    for (const auto& spec : task_specs())
        if (name == spec.name) return spec;
    std::string known;
    for (const auto& spec : task_specs()) known += std::string(known.empty() ? "" : ", ") + spec.name;
    throw ConfigError("unknown task '" + name + "' (known: " + known + ", or all)");
}

std::string require_file(const std::string& root, const char* relative, const std::string& task) {
    const std::string path = root + "/" + relative;
    if (!path_exists(path))
        throw IoError(path, "task file for '" + task + "' not found (data folder " + root +
                                "; set SALIQ_DATA_DIR to the shared data folder)");
    return path;
}

// encode_request with a one-entry cache of the context's tokens: the choices of an item share their context.
class RequestEncoder {
public:
    RequestEncoder(const Tokenizer& tokenizer, bool add_bos) : tokenizer_(tokenizer), add_bos_(add_bos) {}

    TokenizedRequest encode(const McRequest& request) {
        std::string context = request.context, continuation = request.continuation;
        const size_t kept = detail::rstrip(context).size();  // the harness's _encode_pair
        if (kept < context.size()) {
            continuation = context.substr(kept) + continuation;
            context.resize(kept);
        }
        TokenizedRequest out;
        if (request.context.empty()) {
            // the harness's prefix token for an empty context: BOS, or EOS where there is none
            out.context = {tokenizer_.bos_id() >= 0 ? tokenizer_.bos_id() : tokenizer_.eos_id()};
            out.continuation = tokenizer_.encode(continuation);
            return out;
        }
        if (context != cached_context_ || !has_cache_) {
            cached_tokens_ = tokenizer_.encode(context);
            cached_context_ = context;
            has_cache_ = true;
        }
        const std::vector<int32_t> whole = tokenizer_.encode(context + continuation);
        const size_t n_context = std::min(cached_tokens_.size(), whole.size());
        if (add_bos_) out.context.push_back(tokenizer_.bos_id());
        out.context.insert(out.context.end(), cached_tokens_.begin(), cached_tokens_.end());
        out.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(n_context), whole.end());
        return out;
    }

private:
    const Tokenizer& tokenizer_;
    bool add_bos_;
    bool has_cache_ = false;
    std::string cached_context_;
    std::vector<int32_t> cached_tokens_;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double mean_of(const std::vector<double>& values) {
    double sum = 0.0;
    for (double v : values) sum += v;
    return values.empty() ? std::nan("") : sum / static_cast<double>(values.size());
}

// compute_loglikelihoods over this rank's share of the documents; every rank ends with every document's results
// (the others' shares are zeros until the sum).
std::vector<std::vector<LoglikelihoodResult>> sharded_loglikelihoods(
    const LlamaModel& model, const std::vector<std::vector<TokenizedRequest>>& groups,
    const LoglikelihoodOptions& options, const ProgressFn& progress) {
    if (!dist_active()) return compute_loglikelihoods(model, groups, options, progress);
    const auto [first, end] = dist_shard(static_cast<int64_t>(groups.size()));
    const std::vector<std::vector<TokenizedRequest>> mine(groups.begin() + first, groups.begin() + end);
    const auto local = compute_loglikelihoods(model, mine, options, progress);
    std::vector<int64_t> offset(groups.size() + 1, 0);
    for (size_t d = 0; d < groups.size(); ++d) offset[d + 1] = offset[d] + static_cast<int64_t>(groups[d].size());
    const int64_t n = offset.back();
    std::vector<double> values(static_cast<size_t>(2 * n), 0.0);  // log-likelihoods, then greedy flags
    auto v = [&](int which, int64_t k) -> double& { return values[static_cast<size_t>(which * n + k)]; };
    for (size_t d = 0; d < local.size(); ++d)
        for (size_t r = 0; r < local[d].size(); ++r) {
            const int64_t k = offset[static_cast<size_t>(first) + d] + static_cast<int64_t>(r);
            v(0, k) = local[d][r].logprob;
            v(1, k) = local[d][r].is_greedy ? 1.0 : 0.0;
        }
    dist_all_reduce_sum(values);
    std::vector<std::vector<LoglikelihoodResult>> all(groups.size());
    for (size_t d = 0; d < groups.size(); ++d)
        for (size_t r = 0; r < groups[d].size(); ++r) {
            const int64_t k = offset[d] + static_cast<int64_t>(r);
            all[d].push_back({v(0, k), v(1, k) > 0.5});
        }
    return all;
}

TaskResult evaluate_task(const LlamaModel& model, const Tokenizer& tokenizer, const McTask& task,
                         const ZeroShotOptions& options, int64_t max_length, const ProgressFn& progress) {
    TaskResult result;
    result.name = task.name;
    result.path = task.path;
    const size_t n_docs = options.limit >= 0 ? std::min(task.docs.size(), static_cast<size_t>(options.limit))
                                             : task.docs.size();
    result.n_docs = static_cast<int64_t>(n_docs);
    result.n_available = static_cast<int64_t>(task.docs.size());

    auto start = std::chrono::steady_clock::now();
    RequestEncoder encoder(tokenizer, options.add_bos);
    std::vector<std::vector<TokenizedRequest>> groups(n_docs);
    for (size_t d = 0; d < n_docs; ++d) {
        const McDoc& doc = task.docs[d];
        for (size_t c = 0; c < doc.requests.size(); ++c) {
            TokenizedRequest r = encoder.encode(doc.requests[c]);
            if (r.continuation.empty())
                throw FormatError(task.path, strprintf("line %lld: choice %zu (\"%s\") has no tokens of its own after "
                                                       "joint encoding with its context",
                                                       (long long)doc.line, c + 1, doc.requests[c].continuation.c_str()));
            const int64_t n = static_cast<int64_t>(r.context.size() + r.continuation.size());
            result.n_tokens += std::min(n, max_length + 1) - 1;
            if (n > max_length + 1) ++result.n_truncated;
            if (static_cast<int64_t>(r.continuation.size()) > max_length) ++result.n_continuation_cut;
            groups[d].push_back(std::move(r));
        }
        result.n_requests += static_cast<int64_t>(doc.requests.size());
    }
    result.tokenize_seconds = seconds_since(start);

    start = std::chrono::steady_clock::now();
    LoglikelihoodOptions ll_options;
    ll_options.batch_size = options.batch_size;
    ll_options.max_length = max_length;
    ll_options.share_prefix = options.share_prefix;
    ll_options.label = task.name;
    const auto lls = sharded_loglikelihoods(model, groups, ll_options, progress);
    result.score_seconds = seconds_since(start);

    std::vector<double> acc, acc_norm;
    for (size_t d = 0; d < n_docs; ++d) {
        std::vector<double> doc_lls;
        for (const auto& r : lls[d]) doc_lls.push_back(r.logprob);
        const ChoicePrediction p = predict_choice(doc_lls, task.docs[d].choices);
        acc.push_back(p.pred == task.docs[d].gold ? 1.0 : 0.0);
        acc_norm.push_back(p.pred_norm == task.docs[d].gold ? 1.0 : 0.0);
        result.loglikelihoods.push_back(std::move(doc_lls));
        result.predictions.push_back(p);
    }
    result.metrics.push_back({"acc", mean_of(acc), mean_stderr(acc)});
    if (task.has_acc_norm) result.metrics.push_back({"acc_norm", mean_of(acc_norm), mean_stderr(acc_norm)});
    if (result.n_continuation_cut > 0)
        log_warn(strprintf("%s: %lld continuations are longer than max_length %lld; only their last %lld tokens are "
                           "scored",
                           task.name.c_str(), (long long)result.n_continuation_cut, (long long)max_length,
                           (long long)max_length));
    log_info(strprintf("%s: %lld items, %lld requests (%lld truncated), acc %.4f, %.1f s (%.1f items/s)",
                       task.name.c_str(), (long long)result.n_docs, (long long)result.n_requests,
                       (long long)result.n_truncated, result.metrics[0].value, result.seconds(),
                       static_cast<double>(result.n_docs) / std::max(result.seconds(), 1e-9)));
    return result;
}

}  // namespace

const std::vector<std::string>& zeroshot_task_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        for (const auto& spec : task_specs()) out.emplace_back(spec.name);
        return out;
    }();
    return names;
}

const std::vector<std::string>& paper_average_tasks() {
    static const std::vector<std::string> names = {"piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande"};
    return names;
}

std::vector<std::string> parse_task_list(const std::string& list) {
    std::vector<std::string> names;
    for (const auto& raw : split(list, ',')) {
        const std::string name = detail::strip(raw);
        if (name.empty()) continue;
        const std::vector<std::string> expanded =
            name == "all" ? zeroshot_task_names() : std::vector<std::string>{find_spec(name).name};
        for (const auto& n : expanded)
            if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
    if (names.empty()) throw ConfigError("--tasks is empty (give task names separated by commas, or all)");
    return names;
}

McTask load_task(const std::string& name, const std::string& data_root) {
    const TaskSpec& spec = find_spec(name);
    const std::string root = data_root.empty() ? data_dir() : data_root;
    McTask task;
    task.name = spec.name;
    task.path = require_file(root, spec.file, task.name);
    const std::string second = spec.second_file ? require_file(root, spec.second_file, task.name) : std::string();
    task.has_acc_norm = spec.acc_norm;
    task.docs = spec.load(task.path, second);
    if (task.docs.empty()) throw FormatError(task.path, "has no items");
    return task;
}

TokenizedRequest encode_request(const Tokenizer& tokenizer, const McRequest& request, bool add_bos) {
    return RequestEncoder(tokenizer, add_bos).encode(request);
}

int64_t utf8_length(const std::string& text) {
    int64_t n = 0;
    for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

ChoicePrediction predict_choice(const std::vector<double>& loglikelihoods, const std::vector<std::string>& choices) {
    if (loglikelihoods.empty() || loglikelihoods.size() != choices.size())
        throw ConfigError(strprintf("predict_choice: %zu log-likelihoods for %zu choices", loglikelihoods.size(),
                                    choices.size()));
    ChoicePrediction p;
    double best = loglikelihoods[0];
    double best_norm = loglikelihoods[0] / static_cast<double>(utf8_length(choices[0]));
    for (size_t i = 1; i < loglikelihoods.size(); ++i) {
        const double norm = loglikelihoods[i] / static_cast<double>(utf8_length(choices[i]));
        if (loglikelihoods[i] > best) {
            best = loglikelihoods[i];
            p.pred = static_cast<int64_t>(i);
        }
        if (norm > best_norm) {
            best_norm = norm;
            p.pred_norm = static_cast<int64_t>(i);
        }
    }
    return p;
}

double mean_stderr(const std::vector<double>& values) {
    const size_t n = values.size();
    if (n < 2) return std::nan("");
    const double mu = mean_of(values);
    double ss = 0.0;
    for (double v : values) ss += (v - mu) * (v - mu);
    return std::sqrt(ss / static_cast<double>(n - 1)) / std::sqrt(static_cast<double>(n));
}

const MetricValue* TaskResult::metric(const std::string& metric_name) const {
    for (const auto& m : metrics)
        if (m.name == metric_name) return &m;
    return nullptr;
}

ZeroShotResult evaluate_zeroshot(const LlamaModel& model, const Tokenizer& tokenizer, const std::vector<McTask>& tasks,
                                 const ZeroShotOptions& options, const ProgressFn& progress) {
    if (options.batch_size < 1) throw ConfigError("--batch-size must be at least 1");
    if (options.limit == 0 || options.limit < -1) throw ConfigError("--limit must be a positive number of items");
    const int64_t max_positions = model.config().max_position_embeddings;
    if (options.max_length > max_positions)
        throw ConfigError(strprintf("max_length %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)options.max_length, (long long)max_positions));
    if (options.add_bos && tokenizer.bos_id() < 0)
        throw ConfigError("the tokenizer defines no BOS token; run with --no-bos");

    ZeroShotResult result;
    result.options = options;
    result.max_length = options.max_length > 0 ? options.max_length : max_positions;
    const auto start = std::chrono::steady_clock::now();
    for (const auto& task : tasks)
        result.tasks.push_back(evaluate_task(model, tokenizer, task, options, result.max_length, progress));
    result.seconds = seconds_since(start);

    std::vector<double> paper;
    for (const auto& name : paper_average_tasks())
        for (const auto& t : result.tasks)
            if (t.name == name) paper.push_back(t.metric("acc")->value);
    if (paper.size() == paper_average_tasks().size()) result.paper_average_acc = mean_of(paper);
    return result;
}

}  // namespace saliq
