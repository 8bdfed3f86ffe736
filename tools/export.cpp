// `saliq export`: a model for other tools (Hugging Face folder, GGUF, compressed-tensors).
#include "cli.h"

#include <iostream>

#include <CLI/CLI.hpp>

#include "saliq/export.h"

namespace saliq {
namespace {

int run_export(const std::string& model, const std::string& tokenizer, const std::string& out,
               const DenseExportOptions& options) {
    const Checkpoint ckpt = load_checkpoint(model, tokenizer);
    if (options.format == "compressed-tensors") {
        export_compressed_tensors(ckpt, out, options.force);
        std::cout << "wrote " << out << " (compressed-tensors pack-quantized"
                  << (ckpt.adapter_path.empty() ? "" : ", PEFT adapters beside it") << ")\n";
        return 0;
    }
    const std::string what = export_dense(ckpt, out, options);
    std::cout << "wrote " << out << " (" << options.format << ", " << what << ")\n";
    return 0;
}

}  // namespace

Command add_export_command(CLI::App& app) {
    struct Args {
        std::string model, tokenizer, out;
        DenseExportOptions options;
    };
    auto a = std::make_shared<Args>();
    std::string& export_model = a->model;
    std::string& export_tokenizer = a->tokenizer;
    std::string& export_out = a->out;
    DenseExportOptions& export_options = a->options;
    CLI::App* exporter = app.add_subcommand(
        "export", "write a model for other tools: a Hugging Face folder (dense, adapters merged), a GGUF file for "
                  "llama.cpp (packed folders as GGML blocks where a type holds them, adapters as a GGUF LoRA "
                  "adapter; else dense) or compressed-tensors");
    exporter->add_option("--model,-m", export_model, "model folder or file")->required();
    exporter->add_option("--tokenizer", export_tokenizer, "SentencePiece .model (default: the folder's)");
    exporter->add_option("--format", export_options.format,
                         "hf, gguf (dense) or compressed-tensors (a GPTQ-packed folder as pack-quantized "
                         "W{2,3,4,8}A16 for vLLM, code for code)")
        ->capture_default_str();
    exporter->add_option("--dtype", export_options.dtype, "fp32, fp16 or bf16 (gguf norms stay F32)")->capture_default_str();
    exporter->add_option("--out,-o", export_out, "output folder (hf) or .gguf file")->required();
    exporter->add_flag("!--no-adapter", export_options.use_adapter, "leave the folder's LoRA adapters out");
    exporter->add_flag("--merge", export_options.merge,
                       "gguf of a --grid folder: dense weights with the adapters merged, instead of its GGML blocks "
                       "bit for bit beside a GGUF LoRA adapter");
    exporter->add_option("--adapter-out", export_options.adapter_out,
                         "gguf of a --grid folder: where the GGUF LoRA adapter goes (default: OUT with .lora.gguf)");
    exporter->add_flag("--force", export_options.force, "replace an existing output");

    return {exporter, [a] { return run_export(a->model, a->tokenizer, a->out, a->options); }};
}

}  // namespace saliq
