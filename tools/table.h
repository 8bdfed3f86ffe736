// `saliq table CONFIG`: one command per paper table. Every row of configs/tables/*.toml is quantized and evaluated
// (perplexity sets, zero-shot tasks) by child `saliq` processes, seed by seed; the results go to OUT/table.json and
// OUT/table.md with the paper's published numbers beside ours. A row seed that finished is not run again.
#pragma once

#include <string>

namespace saliq {

struct TableArgs {
    std::string config;
    std::string rows;       // comma-separated row names to run (empty: all)
    std::string seeds;      // comma-separated seeds overriding the config's
    std::string out;        // overrides [table].out
    std::string model;      // overrides [table].model
    std::string tokenizer;  // overrides [table].tokenizer
    int threads = 0;        // passed to every child
    bool dry_run = false;   // print the commands only
    bool keep_models = false;
};

int run_table(const TableArgs& args);

}  // namespace saliq
