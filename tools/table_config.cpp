#include "table_config.h"

#include <cstdlib>
#include <set>
#include <sstream>
#include <stdexcept>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"
#include "saliq/toml.h"

namespace saliq {
namespace {

std::string data_dir() {
    const char* env = std::getenv("SALIQ_DATA_DIR");
    return env != nullptr && *env != '\0' ? env : "../shared/data";
}

// Where scripts/fetch_models.sh puts the models it fetches (SALIQ_MODELS_DIR, default ~/.cache/saliq/models).
std::string models_dir() {
    const char* env = std::getenv("SALIQ_MODELS_DIR");
    if (env != nullptr && *env != '\0') return env;
    const char* home = std::getenv("HOME");
    return std::string(home != nullptr ? home : ".") + "/.cache/saliq/models";
}

// "{data}" stands for the data folder (SALIQ_DATA_DIR, default ../shared/data) and "{models}" for the fetched
// models' folder, so configs run on any machine.
// "{wikitext2_train}" is WikiText-2's train split, which the papers calibrate on and the data folder does not ship
// (it holds the test split the tables score): $SALIQ_WIKITEXT2_TRAIN names the user's copy; unset, it stays as written
// and the table refuses to run (a dry run shows it).
std::string expand(std::string s) {
    for (size_t at; (at = s.find("{data}")) != std::string::npos;) s.replace(at, 6, data_dir());
    for (size_t at; (at = s.find("{models}")) != std::string::npos;) s.replace(at, 8, models_dir());
    const char* train = std::getenv("SALIQ_WIKITEXT2_TRAIN");
    const std::string key = "{wikitext2_train}";
    if (train != nullptr && *train != '\0')
        for (size_t at; (at = s.find(key)) != std::string::npos;) s.replace(at, key.size(), train);
    return s;
}

std::vector<std::string> words(const nlohmann::json& v, const std::string& where) {
    std::vector<std::string> out;
    if (v.is_null()) return out;
    if (v.is_string()) {
        std::istringstream in(v.get<std::string>());
        for (std::string w; in >> w;) out.push_back(expand(w));
        return out;
    }
    if (v.is_array()) {
        for (const auto& w : v) {
            if (!w.is_string()) throw ConfigError(where + ": arguments must be strings");
            out.push_back(expand(w.get<std::string>()));
        }
        return out;
    }
    throw ConfigError(where + " must be a string of arguments or an array of them");
}

std::string text(const nlohmann::json& t, const char* key, const std::string& fallback = "") {
    if (!t.contains(key)) return fallback;
    if (!t[key].is_string()) throw ConfigError(std::string("'") + key + "' must be a string");
    return expand(t[key].get<std::string>());
}

bool names_contain(const Table& t, const std::string& name) {
    for (const auto& r : t.rows)
        if (r.name == name) return true;
    return false;
}

Row parse_row(const nlohmann::json& r, const std::string& where) {
    if (!r.is_object()) throw ConfigError(where + " must be a table");
    static const std::set<std::string> known = {"name", "args", "note", "reference", "finetune"};
    Row row;
    row.name = text(r, "name");
    row.reference = text(r, "reference");
    row.args = words(r.value("args", nlohmann::json()), where + ".args");
    if (r.contains("finetune")) row.finetune = words(r["finetune"], where + ".finetune");
    row.note = text(r, "note");
    for (auto it = r.begin(); it != r.end(); ++it) {
        if (it.key().rfind("paper_", 0) == 0) {
            if (!it.value().is_number()) throw ConfigError(where + "." + it.key() + " must be a number");
            row.paper[it.key().substr(6)] = it.value();
        } else if (!known.count(it.key())) {
            throw ConfigError(where + ": unknown key '" + it.key() + "' (name, args, finetune, note, reference, paper_*)");
        }
    }
    return row;
}

}  // namespace

// Refuses a run whose arguments still hold a placeholder no variable filled.
void check_placeholders(const std::vector<std::string>& args, const std::string& where) {
    for (const auto& a : args)
        if (a.find("{wikitext2_train}") != std::string::npos)
            throw ConfigError(where + " calibrates on WikiText-2's train split, which the data folder does not hold "
                              "(it holds the test split the table scores): set SALIQ_WIKITEXT2_TRAIN to your copy of "
                              "wiki.train.raw");
}

Table parse_table(const std::string& path, const TableArgs& a) {
    const nlohmann::json c = read_toml_file(path);
    Table t;
    try {
        static const std::set<std::string> sections = {"table", "perplexity", "zeroshot", "fp", "row"};
        for (auto it = c.begin(); it != c.end(); ++it)
            if (!sections.count(it.key())) throw ConfigError("unknown section [" + it.key() + "]");
        const nlohmann::json& h = c.at("table");
        t.title = text(h, "title", path);
        t.source = text(h, "source");
        t.model = a.model.empty() ? text(h, "model") : a.model;
        t.tokenizer = a.tokenizer.empty() ? text(h, "tokenizer") : a.tokenizer;
        t.out = a.out.empty() ? text(h, "out") : a.out;
        t.reference = text(h, "reference");
        t.quantize_args = words(h.value("quantize", nlohmann::json()), "table.quantize");
        // Integers, each once: a seed given twice (or 1.5 read as 1) would count one run twice in the mean and std.
        if (a.seeds.empty()) {
            const nlohmann::json seeds = h.value("seeds", nlohmann::json::array({0}));
            if (!seeds.is_array()) throw ConfigError("table.seeds must be a list of integers");
            for (const auto& s : seeds) {
                if (!s.is_number_integer() || (s.is_number_unsigned() && s.get<uint64_t>() > INT64_MAX))
                    throw ConfigError("table.seeds holds " + s.dump() + ", not an integer");
                t.seeds.push_back(s.get<int64_t>());
            }
        } else {
            for (const auto& s : split(a.seeds, ',')) {
                size_t used = 0;
                try {
                    t.seeds.push_back(std::stoll(s, &used));
                } catch (const std::logic_error&) {  // not a number, or out of range
                }
                if (used == 0 || used != s.size())
                    throw ConfigError("--seeds takes integers separated by commas, not '" + s + "'");
            }
        }
        std::set<int64_t> distinct;
        for (int64_t seed : t.seeds)
            if (!distinct.insert(seed).second) throw ConfigError("seed " + std::to_string(seed) + " is listed twice");
        for (const auto& p : c.value("perplexity", nlohmann::json::array())) {
            Perplexity q;
            q.name = text(p, "name");
            q.args = words(p.value("args", nlohmann::json()), "perplexity.args");
            if (!is_path_component(q.name) || q.name.find(' ') != std::string::npos)
                throw ConfigError("every [[perplexity]] needs a name usable in a file name (no '/', spaces, '.' or "
                                  "'..'), not '" + q.name + "'");
            for (const auto& other : t.perplexity)
                if (other.name == q.name) throw ConfigError("two [[perplexity]] entries are named '" + q.name + "'");
            t.perplexity.push_back(q);
        }
        if (c.contains("zeroshot")) {
            t.tasks = text(c["zeroshot"], "tasks");
            t.tasks_args = words(c["zeroshot"].value("args", nlohmann::json()), "zeroshot.args");
        }
        t.fp = parse_row(c.value("fp", nlohmann::json::object()), "[fp]");
        t.fp.name = "fp";
        std::set<std::string> names;
        for (const auto& r : c.value("row", nlohmann::json::array())) {
            Row row = parse_row(r, "[[row]]");
            // Row names become folders under the table's output: one path component, nothing that climbs out.
            if (!is_path_component(row.name) || row.name.find(' ') != std::string::npos || row.name == "fp")
                throw ConfigError("every [[row]] needs a name usable as a folder name (no '/', spaces, '.' or '..', "
                                  "not 'fp'), not '" + row.name + "'");
            if (!names.insert(row.name).second) throw ConfigError("two rows are named '" + row.name + "'");
            t.rows.push_back(row);
        }
    } catch (const nlohmann::json::exception& e) {
        throw ConfigError(path + ": " + e.what());
    } catch (const ConfigError& e) {
        throw ConfigError(path + ": " + e.what());
    }
    if (t.model.empty()) throw ConfigError(path + ": [table] needs a model (or pass --model)");
    if (t.out.empty()) throw ConfigError(path + ": [table] needs out (or pass --out)");
    if (t.rows.empty()) throw ConfigError(path + ": no [[row]]");
    if (t.perplexity.empty() && t.tasks.empty()) throw ConfigError(path + ": nothing to evaluate ([[perplexity]], [zeroshot])");
    if (!t.reference.empty() && !names_contain(t, t.reference))
        throw ConfigError(path + ": reference row '" + t.reference + "' is not a row");
    for (auto& r : t.rows) {
        if (r.reference.empty()) r.reference = t.reference;
        if (!r.reference.empty() && !names_contain(t, r.reference))
            throw ConfigError(path + ": row " + r.name + "'s reference '" + r.reference + "' is not a row");
    }
    if (!a.rows.empty())
        for (const auto& r : split(a.rows, ','))
            if (!names_contain(t, r)) throw ConfigError("--rows: no row named '" + r + "'");
    return t;
}

}  // namespace saliq
