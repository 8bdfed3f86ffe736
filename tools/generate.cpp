// `saliq generate`: greedy decoding, a correctness probe.
#include "cli.h"

#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>

#include "saliq/generate.h"
#include "saliq/log.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

int run_generate(const ModelArgs& margs, const std::string& prompt, int64_t max_tokens) {
    LoadedModel loaded = load_model(margs);
    const auto start = std::chrono::steady_clock::now();
    const std::string text = generate_text(*loaded.model, *loaded.tokenizer, prompt, max_tokens);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << text << std::endl;
    log_info(strprintf("generated in %.2f s (prompt and up to %lld tokens)", seconds, (long long)max_tokens));
    return 0;
}

}  // namespace

Command add_generate_command(CLI::App& app) {
    struct Args {
        std::string prompt;
        int64_t max_tokens = 256;
    };
    auto model = std::make_shared<ModelArgs>();
    auto a = std::make_shared<Args>();
    ModelArgs& gen_model = *model;
    std::string& prompt = a->prompt;
    int64_t& max_tokens = a->max_tokens;
    CLI::App* generate = app.add_subcommand("generate", "greedy decoding (a correctness probe)");
    add_model_options(generate, gen_model);
    add_llamacpp_emulation_option(generate, gen_model);
    generate->add_option("--prompt,-p", prompt, "prompt text (empty: start from BOS)");
    generate->add_option("--max-tokens,-n", max_tokens, "tokens to generate")->capture_default_str();

    return {generate, [model, a] { return run_generate(*model, a->prompt, a->max_tokens); }};
}

}  // namespace saliq
