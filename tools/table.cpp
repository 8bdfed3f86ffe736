// `saliq table`: runs a table config's rows as child saliq processes (a row that crashes or runs out of memory does
// not take the table with it, and each row starts with a clean heap), then aggregates their JSON results.
#include "table.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/checkpoint.h"
#include "saliq/file.h"
#include "saliq/inspect.h"
#include "saliq/log.h"
#include "saliq/progress.h"
#include "saliq/strings.h"
#include "launch.h"
#include "table_config.h"
#include "cli.h"

extern char** environ;

namespace saliq {
namespace {

std::string shell_line(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
    return out;
}

// Runs saliq with `args`, its output into `log`. True when it exited 0; a child stopped by Ctrl-C cancels the table.
bool run_child(const std::vector<std::string>& args, const std::string& log) {
    std::vector<std::string> argv = {saliq_executable()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& s : argv) cargv.push_back(s.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw IoError(argv[0], "cannot start a child saliq process");
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) throw IoError(argv[0], "lost the child saliq process");
    if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM)) throw Cancelled{};
    if (WIFEXITED(status) && WEXITSTATUS(status) == 130) throw Cancelled{};
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

nlohmann::json read_json(const std::string& path) { return read_json_file(path); }

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// Evaluates `model` (a quantized folder, or the source model with its tokenizer) into dir/result.json.
// Returns false (and logs which command failed) when a child did not finish.
bool evaluate(const Table& t, const std::vector<std::string>& model_args, const std::vector<std::string>& common,
              const std::string& dir, nlohmann::json& result) {
    for (const auto& p : t.perplexity) {
        const std::string json = dir + "/ppl-" + p.name + ".json";
        if (!path_exists(json)) {
            const auto args = with(with(with({"eval"}, model_args), p.args), with(common, {"--json", json}));
            if (!run_child(args, dir + "/ppl-" + p.name + ".log")) {
                log_error("failed: saliq " + shell_line(args) + " (log: " + dir + "/ppl-" + p.name + ".log)");
                return false;
            }
        }
        result["ppl"][p.name] = read_json(json).at("ppl");
    }
    if (!t.tasks.empty()) {
        const std::string json = dir + "/zeroshot.json";
        if (!path_exists(json)) {
            const auto args =
                with(with(with({"eval"}, model_args), {"--tasks", t.tasks}), with(with(t.tasks_args, common), {"--json", json}));
            if (!run_child(args, dir + "/zeroshot.log")) {
                log_error("failed: saliq " + shell_line(args) + " (log: " + dir + "/zeroshot.log)");
                return false;
            }
        }
        const nlohmann::json z = read_json(json).at("zeroshot");
        // The unweighted mean of acc over the table's tasks (with the seed paper's five: its headline number).
        double sum = 0;
        for (auto it = z.at("tasks").begin(); it != z.at("tasks").end(); ++it) {
            result["acc"][it.key()] = it.value().at("acc");
            sum += it.value().at("acc").get<double>();
        }
        if (!z.at("tasks").empty()) result["avg_acc"] = sum / static_cast<double>(z.at("tasks").size());
    }
    return true;
}

// Bits per weight a row's folder takes on disk: every tensor, embeddings and head included, and its LoRA adapters
// (they are stored and loaded with it).
nlohmann::json disk_bits(const std::string& model) {
    const nlohmann::json b = inspect_checkpoint(load_checkpoint(model)).at("bits_per_weight");
    return {{"overall", b.value("overall_with_adapters", b.at("overall").get<double>())},
            {"linear", b.value("linear_with_adapters", b.at("linear").get<double>())}};
}

struct Stat {
    double mean = NAN, std = NAN;
    int n = 0;
};

Stat stat_of(const std::vector<double>& v) {
    Stat s;
    s.n = static_cast<int>(v.size());
    if (v.empty()) return s;
    double sum = 0;
    for (double x : v) sum += x;
    s.mean = sum / static_cast<double>(v.size());
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
    return s;
}

// mean (and std) over seeds of result[section][key] (key empty: result[section]).
Stat over_seeds(const std::vector<nlohmann::json>& results, const std::string& section, const std::string& key) {
    std::vector<double> v;
    for (const auto& r : results) {
        const nlohmann::json* x = r.contains(section) ? &r[section] : nullptr;
        if (x != nullptr && !key.empty()) x = x->contains(key) ? &(*x)[key] : nullptr;
        if (x != nullptr && x->is_number()) v.push_back(x->get<double>());
    }
    return stat_of(v);
}

nlohmann::json stat_json(const Stat& s) {
    if (s.n == 0) return nullptr;
    return {{"mean", s.mean}, {"std", s.std}, {"n", s.n}};
}

std::string cell(const Stat& s, int digits) {
    if (s.n == 0) return "–";
    if (s.n == 1) return strprintf("%.*f", digits, s.mean);
    return strprintf("%.*f ± %.*f", digits, s.mean, digits, s.std);
}

std::string paper_cell(const Row& r, const std::string& key, int digits) {
    if (!r.paper.contains(key)) return "–";
    return strprintf("%.*f", digits, r.paper[key].get<double>());
}

std::string percent(double x) { return std::isfinite(x) ? strprintf("%.1f %%", 100.0 * x) : "–"; }

}  // namespace

int run_table(const TableArgs& a) {
    const Table t = parse_table(a.config, a);
    std::set<std::string> wanted;
    if (!a.rows.empty())
        for (const auto& r : split(a.rows, ',')) wanted.insert(r);
    const std::vector<std::string> common = {"--threads", std::to_string(a.threads), "-q"};
    std::vector<std::string> source = {"-m", t.model};
    if (!t.tokenizer.empty()) source = with(source, {"--tokenizer", t.tokenizer});
    if (!a.dry_run) {
        // Before anything runs: every row this run would start must have its placeholders filled.
        check_placeholders(t.quantize_args, a.config);
        for (const auto& row : t.rows)
            if (wanted.empty() || wanted.count(row.name)) {
                check_placeholders(row.args, a.config + " (row " + row.name + ")");
                check_placeholders(row.finetune, a.config + " (row " + row.name + ")");
            }
        make_directories(t.out);
    }

    std::vector<std::string> failed;
    // The full-precision model: evaluated once.
    std::map<std::string, std::vector<nlohmann::json>> results;
    {
        const std::string dir = t.out + "/fp";
        nlohmann::json result = {{"row", "fp"}};
        if (a.dry_run) {
            std::printf("fp: saliq eval %s ...\n", shell_line(source).c_str());
        } else if (path_exists(dir + "/result.json")) {
            results["fp"].push_back(read_json(dir + "/result.json"));
        } else {
            make_directories(dir);
            if (evaluate(t, source, common, dir, result)) {
                result["bits_per_weight"] = disk_bits(t.model);
                write_json_atomic(dir + "/result.json", result);
                results["fp"].push_back(result);
            } else {
                failed.push_back("fp");
            }
        }
    }
    for (const auto& row : t.rows) {
        if (!wanted.empty() && !wanted.count(row.name)) continue;
        for (int64_t seed : t.seeds) {
            const std::string dir = t.out + "/" + row.name + "/s" + std::to_string(seed);
            const std::string model = dir + "/model";
            // An interrupted run's finished blocks are continued, not thrown away (its settings must still match:
            // with --force a partial folder of other settings is started over).
            const bool interrupted = path_exists(model + ".partial");
            const auto quantize =
                with(with(with(with({"quantize"}, source), t.quantize_args), row.args),
                     with(with({"--seed", std::to_string(seed), "--out", model, "--force"}, common),
                          interrupted ? std::vector<std::string>{"--resume"} : std::vector<std::string>{}));
            if (a.dry_run) {
                std::printf("%s seed %lld: saliq %s\n", row.name.c_str(), (long long)seed, shell_line(quantize).c_str());
                if (!row.finetune.empty())
                    std::printf("%s seed %lld: saliq finetune -m %s --teacher %s %s --out %s/finetuned\n",
                                row.name.c_str(), (long long)seed, model.c_str(), t.model.c_str(),
                                shell_line(row.finetune).c_str(), dir.c_str());
                continue;
            }
            if (path_exists(dir + "/result.json")) {
                results[row.name].push_back(read_json(dir + "/result.json"));
                log_info(row.name + " seed " + std::to_string(seed) + ": done before, kept");
                continue;
            }
            make_directories(dir);
            const bool finished = path_exists(model + "/saliq_manifest.json");
            log_info(row.name + " seed " + std::to_string(seed) +
                     (finished      ? ": " + model + " is a finished folder, scored as it is"
                      : interrupted ? ": continuing the interrupted run in " + model + ".partial: saliq " +
                                          shell_line(quantize)
                                    : ": saliq " + shell_line(quantize)));
            nlohmann::json result = {{"row", row.name}, {"seed", seed}, {"quantize", quantize}};
            if (!finished && !run_child(quantize, dir + "/quantize.log")) {
                log_error(row.name + " seed " + std::to_string(seed) + ": quantize failed (log: " + dir + "/quantize.log)");
                failed.push_back(row.name + "/s" + std::to_string(seed));
                continue;
            }
            const nlohmann::json manifest = read_json(model + "/saliq_manifest.json");
            // A resumed run's own seconds, plus what the interrupted run spent on the blocks it finished.
            const nlohmann::json& timings = manifest.at("timings");
            result["quantize_seconds"] =
                timings.at("quantize_seconds").get<double>() + timings.value("restored_block_seconds", 0.0);
            if (timings.contains("restored_blocks")) result["restored_blocks"] = timings["restored_blocks"];
            std::string scored = model;
            if (!row.finetune.empty()) {  // distilled end to end against the table's model, then scored
                scored = dir + "/finetuned";
                const bool finetune_interrupted = path_exists(scored + ".partial");
                const auto finetune =
                    with(with(with(with({"finetune", "-m", model, "--teacher", t.model}, row.finetune),
                                   {"--out", scored, "--force"}),
                              common),
                         finetune_interrupted ? std::vector<std::string>{"--resume"} : std::vector<std::string>{});
                result["finetune"] = finetune;
                log_info(row.name + " seed " + std::to_string(seed) + ": saliq " + shell_line(finetune));
                if (!path_exists(scored + "/saliq_manifest.json") && !run_child(finetune, dir + "/finetune.log")) {
                    log_error(row.name + " seed " + std::to_string(seed) + ": finetune failed (log: " + dir +
                              "/finetune.log)");
                    failed.push_back(row.name + "/s" + std::to_string(seed));
                    continue;
                }
                result["finetune_seconds"] = read_json(scored + "/saliq_manifest.json").at("finetune").at("seconds");
            }
            if (!evaluate(t, {"-m", scored}, common, dir, result)) {
                failed.push_back(row.name + "/s" + std::to_string(seed));
                continue;
            }
            result["bits_per_weight"] = disk_bits(scored);
            write_json_atomic(dir + "/result.json", result);
            results[row.name].push_back(result);
            if (!a.keep_models) {
                remove_tree(model);
                if (scored != model) remove_tree(scored);
            }
        }
    }
    if (a.dry_run) return 0;

    // Aggregate: means over seeds, the share of the reference row's degradation each row closes, paper beside.
    const auto& fp = results["fp"];
    nlohmann::json rows_json = nlohmann::json::array();
    std::vector<const Row*> all = {&t.fp};
    for (const auto& r : t.rows) all.push_back(&r);
    // Paper columns only for the metrics some row has a published number for.
    auto paper_used = [&](const std::string& key) {
        for (const Row* r : all)
            if (r->paper.contains(key)) return true;
        return false;
    };
    std::vector<const Perplexity*> paper_ppl;
    for (const auto& p : t.perplexity)
        if (paper_used("ppl_" + p.name)) paper_ppl.push_back(&p);
    const bool paper_acc = !t.tasks.empty() && paper_used("acc"), paper_gap = paper_used("gap");
    std::string md = "# " + t.title + "\n\n";
    if (!t.source.empty()) md += "Paper numbers: " + t.source + "\n\n";
    md += "| row | ";
    for (const auto& p : t.perplexity) md += p.name + " ppl | ";
    if (!t.tasks.empty()) md += "avg acc (%) | ";
    if (!t.reference.empty()) md += "gap closed vs " + t.reference + " (ppl / acc) | ";
    for (const Perplexity* p : paper_ppl) md += "paper " + p->name + " | ";
    if (paper_acc) md += "paper avg acc | ";
    if (paper_gap) md += "paper gap closed | ";
    md += "bits/weight on disk | seeds |\n|";
    const size_t columns = 3 + t.perplexity.size() + (t.tasks.empty() ? 0 : 1) + (t.reference.empty() ? 0 : 1) +
                           paper_ppl.size() + (paper_acc ? 1 : 0) + (paper_gap ? 1 : 0);
    for (size_t i = 0; i < columns; ++i) md += "---|";
    md += "\n";
    for (const Row* r : all) {
        const auto& ref = r->reference.empty() ? std::vector<nlohmann::json>() : results[r->reference];
        const auto& got = results[r->name];
        nlohmann::json j = {{"row", r->name}, {"args", r->args}, {"paper", r->paper}, {"seeds", got.size()}};
        if (!r->note.empty()) j["note"] = r->note;
        md += "| " + r->name + " | ";
        for (const auto& p : t.perplexity) {
            const Stat s = over_seeds(got, "ppl", p.name);
            j["ppl"][p.name] = stat_json(s);
            md += cell(s, 3) + " | ";
        }
        Stat acc;
        if (!t.tasks.empty()) {
            acc = over_seeds(got, "avg_acc", "");
            j["avg_acc"] = stat_json(acc);
            for (const auto& task : split(t.tasks, ',')) j["acc"][task] = stat_json(over_seeds(got, "acc", task));
            md += (acc.n ? cell(Stat{100 * acc.mean, 100 * acc.std, acc.n}, 2) : "–") + " | ";
        }
        if (!t.reference.empty()) {
            if (!r->reference.empty()) j["reference"] = r->reference;
            std::string gaps;
            if (!t.perplexity.empty()) {
                const std::string& p0 = t.perplexity.front().name;
                const double x = over_seeds(got, "ppl", p0).mean, q = over_seeds(ref, "ppl", p0).mean,
                             f = over_seeds(fp, "ppl", p0).mean;
                const double g = (q - x) / (q - f);
                j["gap_closed_ppl"] = std::isfinite(g) ? nlohmann::json(g) : nlohmann::json();
                gaps = percent(g);
            }
            if (!t.tasks.empty()) {
                const double q = over_seeds(ref, "avg_acc", "").mean, f = over_seeds(fp, "avg_acc", "").mean;
                const double g = (acc.mean - q) / (f - q);
                j["gap_closed_acc"] = std::isfinite(g) ? nlohmann::json(g) : nlohmann::json();
                gaps += (gaps.empty() ? "" : " / ") + percent(g);
            }
            const std::string shown = r->reference == t.reference ? gaps : gaps + " (vs " + r->reference + ")";
            md += (r->name == r->reference || r->name == "fp" ? "–" : shown) + " | ";
        }
        for (const Perplexity* p : paper_ppl) md += paper_cell(*r, "ppl_" + p->name, 2) + " | ";
        if (paper_acc) md += paper_cell(*r, "acc", 2) + " | ";
        if (paper_gap)
            md += (r->paper.contains("gap") ? strprintf("%.2f %%", r->paper["gap"].get<double>()) : std::string("–")) + " | ";
        const Stat bits = over_seeds(got, "bits_per_weight", "overall");
        j["bits_per_weight"] = stat_json(bits);
        md += (bits.n ? strprintf("%.2f", bits.mean) : std::string("–")) + " | " + std::to_string(got.size()) + " |\n";
        rows_json.push_back(j);
    }
    md += "\n";
    for (const Row* r : all)
        if (!r->note.empty()) md += "- **" + r->name + "**: " + r->note + "\n";
    const nlohmann::json table = {{"title", t.title}, {"config", a.config}, {"source", t.source},
                                  {"model", t.model}, {"seeds", t.seeds}, {"reference", t.reference},
                                  {"rows", rows_json}, {"failed", failed}};
    write_json_atomic(t.out + "/table.json", table);
    write_file_atomic(t.out + "/table.md", [&](std::ostream& o) { o << md; });
    std::printf("%s", md.c_str());
    std::printf("wrote %s/table.md and table.json\n", t.out.c_str());
    if (!failed.empty()) {
        std::string list;
        for (const auto& f : failed) list += (list.empty() ? "" : ", ") + f;
        log_error(std::to_string(failed.size()) + " row runs failed: " + list + " (their logs are in " + t.out +
                  "; rerun the same command to retry them, finished ones are kept)");
        return 1;
    }
    return 0;
}

Command add_table_command(CLI::App& app) {
    auto args = std::make_shared<TableArgs>();
    TableArgs& table_args = *args;
    CLI::App* table = app.add_subcommand("table", "run every row of a paper table config (configs/tables/*.toml): "
                                                  "quantize, perplexity, zero-shot; writes OUT/table.md and table.json");
    table->add_option("config", table_args.config, "table config (.toml)")->required();
    table->add_option("--rows", table_args.rows, "comma-separated row names to run (default: all)");
    table->add_option("--seeds", table_args.seeds, "comma-separated seeds (default: the config's)");
    table->add_option("--out,-o", table_args.out, "working and output folder (default: the config's)");
    table->add_option("--model,-m", table_args.model, "the model (default: the config's)");
    table->add_option("--tokenizer", table_args.tokenizer, "its tokenizer (default: the config's)");
    table->add_option("--threads", table_args.threads, "CPU threads of every child run (0: all cores)")
        ->capture_default_str();
    table->add_flag("--dry-run", table_args.dry_run, "print the commands, run nothing");
    table->add_flag("--keep-models", table_args.keep_models, "keep each row's quantized folder");

    return {table, [args] { return run_table(*args); }};
}

}  // namespace saliq
