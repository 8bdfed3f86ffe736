// A table config (configs/tables/*.toml) as `saliq table` runs it: the model, the seeds, what each row passes to
// `saliq quantize` (and `finetune`), what is scored, the papers' numbers beside each row. Parsing checks everything
// a run would trip over later (names usable as folders, references that exist, seeds given once).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "table.h"

namespace saliq {

struct Perplexity {
    std::string name;
    std::vector<std::string> args;
    std::string paper_key;  // paper_ppl_<name>
};

struct Row {
    std::string name;
    std::string reference;  // the row whose gap this one closes (default: the table's)
    std::vector<std::string> args;
    // `saliq finetune` arguments: the quantized folder is then distilled against the table's model and that is scored.
    std::vector<std::string> finetune;
    nlohmann::json paper = nlohmann::json::object();  // metric -> published value
    std::string note;
};

struct Table {
    std::string title, model, tokenizer, out, reference, source;
    std::vector<int64_t> seeds;
    std::vector<std::string> quantize_args;
    std::vector<Perplexity> perplexity;
    std::vector<std::string> tasks_args;  // empty: no zero-shot
    std::string tasks;
    Row fp;
    std::vector<Row> rows;
};

// The config at `path`, with the command line's overrides (model, tokenizer, out, seeds, rows) applied.
Table parse_table(const std::string& path, const TableArgs& args);
// Refuses a run whose arguments still hold a placeholder no variable filled ({wikitext2_train}).
void check_placeholders(const std::vector<std::string>& args, const std::string& where);

}  // namespace saliq
