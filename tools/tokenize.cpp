// `saliq tokenize`: the token ids of a text file.
#include "cli.h"

#include <iostream>

#include <CLI/CLI.hpp>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

int run_tokenize(const std::string& tokenizer_arg, const std::string& text_path, const std::string& out) {
    std::string path = tokenizer_arg;
    if (is_directory(path)) path = load_checkpoint(path, "").tokenizer_path;
    if (path.empty()) throw ConfigError(tokenizer_arg + " has no tokenizer.model or tokenizer.json");
    const auto tok = Tokenizer::load(path);
    const auto ids = tok->encode(read_text_file(text_path));
    std::string line;
    line.reserve(ids.size() * 6);
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) line += ' ';
        line += std::to_string(ids[i]);
    }
    line += '\n';
    if (out.empty()) {
        std::cout << line;
    } else {
        write_file_atomic(out, [&](std::ostream& os) { os << line; });
    }
    log_info(strprintf("%zu tokens (%s, vocabulary %d)", ids.size(), tok->is_bpe() ? "byte-level BPE" : "SentencePiece",
                       tok->vocab_size()));
    return 0;
}

}  // namespace

Command add_tokenize_command(CLI::App& app) {
    struct Args {
        std::string tokenizer, text, out;
    };
    auto a = std::make_shared<Args>();
    CLI::App* tokenize = app.add_subcommand("tokenize", "token ids of a text file (no BOS/EOS), one line, space-separated");
    tokenize->add_option("--tokenizer", a->tokenizer, "tokenizer.model, tokenizer.json, a GGUF or a model folder")->required();
    tokenize->add_option("--text", a->text, "text file")->required();
    tokenize->add_option("--out,-o", a->out, "write the ids here instead of stdout");
    return {tokenize, [a] { return run_tokenize(a->tokenizer, a->text, a->out); }};
}

}  // namespace saliq
