// `saliq convert`: a llama2.c .bin or a GGUF checkpoint as a Hugging Face folder.
#include "cli.h"

#include <iostream>

#include <CLI/CLI.hpp>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"

namespace saliq {
namespace {

int run_convert(const std::string& from, const std::string& from_gguf, const std::string& tokenizer,
                const std::string& out, bool force) {
    if (from.empty() == from_gguf.empty()) throw ConfigError("give one of --from-llama2c and --from-gguf");
    Checkpoint ckpt = from.empty() ? read_gguf(from_gguf) : read_llama2c(from);
    if (!tokenizer.empty() && !path_exists(tokenizer)) throw IoError(tokenizer, "tokenizer file does not exist");
    if (!tokenizer.empty()) ckpt.tokenizer_path = tokenizer;
    std::string tokenizer_file;
    if (!ckpt.tokenizer_path.empty()) {  // refuse a broken or mismatched tokenizer before writing anything
        const auto tok = checkpoint_tokenizer(ckpt, from.empty() ? from_gguf : from);
        tokenizer_file = ", " + tok->file_name();
        log_info("tokenizer: " + std::string(tok->is_bpe() ? "byte-level BPE" : "SentencePiece") + " from " +
                 ckpt.tokenizer_path);
    }
    write_hf_folder(out, ckpt.config, *ckpt.tensors, ckpt.tokenizer_path, force);
    std::cout << "wrote " << out << " (config.json, model.safetensors"
              << tokenizer_file << ")\n";
    return 0;
}

}  // namespace

Command add_convert_command(CLI::App& app) {
    struct Args {
        std::string from_llama2c, from_gguf, tokenizer, out;
        bool force = false;
    };
    auto a = std::make_shared<Args>();
    CLI::App* convert = app.add_subcommand("convert", "convert a llama2.c .bin or a GGUF checkpoint to a Hugging Face folder");
    convert->add_option("--from-llama2c", a->from_llama2c, "llama2.c .bin checkpoint");
    convert->add_option("--from-gguf", a->from_gguf, "LLaMA GGUF file (F32/F16/BF16; Q8_0/Q4_0/Q4_1 dequantized)");
    convert->add_option("--tokenizer", a->tokenizer,
                        "tokenizer for the folder: SentencePiece .model or tokenizer.json (default: a GGUF's own BPE "
                        "vocabulary)");
    convert->add_option("--out,-o", a->out, "output folder")->required();
    convert->add_flag("--force", a->force, "replace an existing non-empty output folder");
    return {convert, [a] { return run_convert(a->from_llama2c, a->from_gguf, a->tokenizer, a->out, a->force); }};
}

}  // namespace saliq
