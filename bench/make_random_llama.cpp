// Writes a LLaMA-shaped Hugging Face folder with random weights (for speed and memory benchmarks at real shapes):
// linears ~ N(0, 0.02²), norms 1, embeddings ~ N(0, 0.02²). Tensors are generated and written one at a time, so a
// 7B-shaped folder (13.5 GB in bf16) is made in the memory of its largest tensor.
#include <cstdio>
#include <string>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/llama_config.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"

#include <nlohmann/json.hpp>

using namespace saliq;

int main(int argc, char** argv) {
    CLI::App app{"random-weight LLaMA folder of a given shape"};
    LlamaConfig c;
    c.hidden_size = 1024;
    c.intermediate_size = 2816;
    c.n_layers = 4;
    c.n_heads = 16;
    c.n_kv_heads = 16;
    c.vocab_size = 32000;
    c.max_position_embeddings = 2048;
    c.rms_norm_eps = 1e-5;
    std::string out, tokenizer, dtype = "bf16";
    uint64_t seed = 0;
    bool force = false;
    app.add_option("--out,-o", out, "output folder")->required();
    app.add_option("--hidden", c.hidden_size)->capture_default_str();
    app.add_option("--intermediate", c.intermediate_size)->capture_default_str();
    app.add_option("--layers", c.n_layers)->capture_default_str();
    app.add_option("--heads", c.n_heads)->capture_default_str();
    app.add_option("--kv-heads", c.n_kv_heads)->capture_default_str();
    app.add_option("--vocab", c.vocab_size)->capture_default_str();
    app.add_option("--context", c.max_position_embeddings)->capture_default_str();
    app.add_option("--dtype", dtype, "bf16, f16 or f32")->capture_default_str();
    app.add_option("--tokenizer", tokenizer, "tokenizer.model to copy into the folder");
    app.add_option("--seed", seed)->capture_default_str();
    app.add_flag("--force", force, "replace an existing folder");
    CLI11_PARSE(app, argc, argv);
    try {
        c.head_dim = c.hidden_size / c.n_heads;
        const at::ScalarType type = dtype == "bf16" ? at::kBFloat16 : dtype == "f16" ? at::kHalf
                                    : dtype == "f32" ? at::kFloat
                                                     : throw ConfigError("--dtype must be bf16, f16 or f32");
        c.torch_dtype = dtype == "bf16" ? "bfloat16" : dtype == "f16" ? "float16" : "float32";
        c.validate(out);
        const int64_t H = c.hidden_size, I = c.intermediate_size;
        const auto shapes = saliq::linear_shapes(c);
        std::vector<TensorSpec> specs;
        for (const auto& name : llama_tensor_names(c)) {
            std::vector<int64_t> shape;
            if (name == hf_names::kEmbed || name == hf_names::kLmHead) shape = {c.vocab_size, H};
            else if (name.find("norm") != std::string::npos) shape = {H};
            else
                for (int i = 0; i < 7; ++i)
                    if (name.find(hf_names::kLinearNames[i]) != std::string::npos) shape = shapes[i];
            specs.push_back({name, type, shape});
        }
        StagingDir staging(out, force);
        at::manual_seed(seed);
        write_safetensors_streamed(staging.file("model.safetensors"), specs, [&](size_t i) {
            const auto& s = specs[i];
            if (s.shape.size() == 1) return at::ones(s.shape, at::TensorOptions().dtype(type));
            return (at::randn(s.shape) * 0.02).to(type);
        }, {{"format", "pt"}});
        write_json_atomic(staging.file("config.json"), llama_config_to_json(c));
        if (!tokenizer.empty()) copy_file(tokenizer, staging.file("tokenizer.model"));
        staging.commit();
        std::printf("wrote %s: %lld layers, hidden %lld, intermediate %lld, %s\n", out.c_str(), (long long)c.n_layers,
                    (long long)H, (long long)I, human_bytes(file_size(out + "/model.safetensors")).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_random_llama: %s\n", e.what());
        return 2;
    }
    return 0;
}
