// The zero-shot report: a table shaped like the harness's (task, metric, value, stderr, n) and its JSON twin.
#include <cmath>

#include <nlohmann/json.hpp>

#include "saliq/strings.h"
#include "saliq/zeroshot.h"

namespace saliq {
namespace {

std::string join(const std::vector<std::string>& items, const char* separator) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
    return out;
}

nlohmann::json number_or_null(double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(); }

double items_per_second(const TaskResult& t) { return static_cast<double>(t.n_docs) / std::max(t.seconds(), 1e-9); }

std::string settings_line(const ZeroShotResult& r) {
    return strprintf("lm-eval v0.4 conventions (0-shot, joint context+continuation encoding), BOS %s, max_length %lld, "
                     "batch %lld, prefix sharing %s, limit %s",
                     r.options.add_bos ? "on" : "off", (long long)r.max_length, (long long)r.options.batch_size,
                     r.options.share_prefix ? "on" : "off",
                     r.options.limit > 0 ? std::to_string(r.options.limit).c_str() : "none");
}

}  // namespace

std::string format_zeroshot_table(const ZeroShotResult& r) {
    std::string out = "|Task         |Metric  | Value|   |Stderr|     n|\n"
                      "|-------------|--------|-----:|---|-----:|-----:|\n";
    for (const auto& t : r.tasks)
        for (size_t i = 0; i < t.metrics.size(); ++i) {
            const auto& m = t.metrics[i];
            const std::string se = std::isfinite(m.standard_error) ? strprintf("%.4f", m.standard_error) : "N/A";
            out += strprintf("|%-13s|%-8s|%6.4f|±  |%6s|%6lld|\n", i == 0 ? t.name.c_str() : "", m.name.c_str(),
                             m.value, se.c_str(), (long long)t.n_docs);
        }
    if (std::isfinite(r.paper_average_acc))
        out += strprintf("\naverage acc (%s): %.4f\n", join(paper_average_tasks(), ", ").c_str(), r.paper_average_acc);
    out += "\n" + settings_line(r) + "\n";
    for (const auto& t : r.tasks)
        out += strprintf("time %-13s %8.1f s  %8.1f items/s  (%lld requests, %lld truncated%s)\n", t.name.c_str(),
                         t.seconds(), items_per_second(t), (long long)t.n_requests, (long long)t.n_truncated,
                         t.n_continuation_cut > 0
                             ? strprintf(", %lld with a continuation longer than max_length",
                                         (long long)t.n_continuation_cut).c_str()
                             : "");
    out += strprintf("time %-13s %8.1f s\n", "total", r.seconds);
    return out;
}

nlohmann::json zeroshot_json(const ZeroShotResult& r) {
    nlohmann::json tasks = nlohmann::json::object();
    for (const auto& t : r.tasks) {
        nlohmann::json entry = {
            {"n", t.n_docs},
            {"path", t.path},
            {"requests", t.n_requests},
            {"truncated_requests", t.n_truncated},
            {"continuations_cut", t.n_continuation_cut},
            {"input_tokens", t.n_tokens},
            {"tokenize_seconds", t.tokenize_seconds},
            {"score_seconds", t.score_seconds},
            {"seconds", t.seconds()},
            {"items_per_second", items_per_second(t)},
        };
        for (const auto& m : t.metrics) {
            entry[m.name] = m.value;
            entry[m.name + "_stderr"] = number_or_null(m.standard_error);
        }
        tasks[t.name] = std::move(entry);
    }
    nlohmann::json average = nullptr;
    if (std::isfinite(r.paper_average_acc))
        average = {{"metric", "acc"}, {"tasks", paper_average_tasks()}, {"value", r.paper_average_acc}};
    return {
        {"settings",
         {{"harness", "lm-evaluation-harness v0.4 conventions"},
          {"num_fewshot", 0},
          {"tokenization", "joint: whole = encode(ctx + cont), cont = whole[len(encode(ctx)):]"},
          {"bos", r.options.add_bos},
          {"max_length", r.max_length},
          {"batch_size", r.options.batch_size},
          {"share_prefix", r.options.share_prefix},
          {"limit", r.options.limit > 0 ? nlohmann::json(r.options.limit) : nlohmann::json()}}},
        {"tasks", std::move(tasks)},
        {"paper_average", std::move(average)},
        {"seconds", r.seconds},
    };
}

namespace {

// What lm-eval's task YAML says of each task saliq scores (version, data set, split), for "configs"/"versions".
struct LmEvalTask {
    const char* name;
    double version;
    const char* dataset_path;
    const char* dataset_name;  // "" for none
    const char* split;
    bool acc_norm;
};

const LmEvalTask* lm_eval_task(const std::string& name) {
    static const LmEvalTask tasks[] = {
        {"piqa", 1.0, "baber/piqa", "", "validation", true},
        {"arc_easy", 1.0, "allenai/ai2_arc", "ARC-Easy", "test", true},
        {"arc_challenge", 1.0, "allenai/ai2_arc", "ARC-Challenge", "test", true},
        {"hellaswag", 1.0, "Rowan/hellaswag", "", "validation", true},
        {"winogrande", 1.0, "allenai/winogrande", "winogrande_xl", "validation", false},
        {"boolq", 2.0, "aps/super_glue", "boolq", "validation", false},
    };
    for (const auto& t : tasks)
        if (name == t.name) return &t;
    return nullptr;
}

}  // namespace

nlohmann::json zeroshot_lm_eval_json(const ZeroShotResult& r, const std::string& model, const std::string& device) {
    nlohmann::json results = nlohmann::json::object(), configs = nlohmann::json::object(),
                   versions = nlohmann::json::object(), n_shot = nlohmann::json::object(),
                   higher = nlohmann::json::object(), n_samples = nlohmann::json::object();
    for (const auto& t : r.tasks) {
        nlohmann::json entry = {{"alias", t.name}};
        nlohmann::json metric_list = nlohmann::json::array();
        for (const auto& m : t.metrics) {
            entry[m.name + ",none"] = m.value;
            entry[m.name + "_stderr,none"] = std::isfinite(m.standard_error) ? nlohmann::json(m.standard_error)
                                                                              : nlohmann::json("N/A");
            higher[t.name][m.name] = true;
            metric_list.push_back({{"metric", m.name}, {"aggregation", "mean"}, {"higher_is_better", true}});
        }
        results[t.name] = entry;
        const LmEvalTask* info = lm_eval_task(t.name);
        versions[t.name] = info ? nlohmann::json(info->version) : nlohmann::json(nullptr);
        n_shot[t.name] = 0;
        n_samples[t.name] = {{"original", t.n_available}, {"effective", t.n_docs}};
        nlohmann::json config = {{"task", t.name}, {"output_type", "multiple_choice"}, {"num_fewshot", 0},
                                 {"metric_list", metric_list}, {"saliq_data_file", t.path}};
        if (info) {
            config["dataset_path"] = info->dataset_path;
            config["dataset_name"] = *info->dataset_name ? nlohmann::json(info->dataset_name) : nlohmann::json(nullptr);
            config["test_split"] = info->split;
            config["metadata"] = {{"version", info->version}};
        }
        configs[t.name] = config;
    }
    return {{"results", results},
            {"group_subtasks", nlohmann::json::object()},
            {"configs", configs},
            {"versions", versions},
            {"n-shot", n_shot},
            {"higher_is_better", higher},
            {"n-samples", n_samples},
            {"config",
             {{"model", "saliq"},
              {"model_args", "pretrained=" + model},
              {"batch_size", r.options.batch_size},
              {"device", device},
              {"limit", r.options.limit > 0 ? nlohmann::json(r.options.limit) : nlohmann::json(nullptr)},
              {"bootstrap_iters", 0},
              {"add_bos_token", r.options.add_bos}}},
            {"total_evaluation_time_seconds", std::to_string(r.seconds)}};
}

}  // namespace saliq
