// `saliq inspect`: a checkpoint's architecture, quantization and size.
#include "cli.h"

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/inspect.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

int run_inspect(const std::string& path, const std::string& tokenizer, bool as_json) {
    const auto info = inspect_checkpoint(load_checkpoint(path, tokenizer));
    if (as_json) {
        std::cout << info.dump(2) << std::endl;
        return 0;
    }
    const auto& c = info["config"];
    std::printf("path          %s (%s)\n", path.c_str(), info["format"].get<std::string>().c_str());
    std::printf("architecture  llama: %lld layers, hidden %lld, intermediate %lld, heads %lld (kv %lld), head_dim %lld, "
                "vocab %lld, context %lld%s\n",
                (long long)c["num_hidden_layers"], (long long)c["hidden_size"], (long long)c["intermediate_size"],
                (long long)c["num_attention_heads"], (long long)c["num_key_value_heads"], (long long)c["head_dim"],
                (long long)c["vocab_size"], (long long)c["max_position_embeddings"],
                c["tie_word_embeddings"].get<bool>() ? ", tied embeddings" : "");
    if (info.contains("quantization")) {
        const auto& q = info["quantization"];
        if (q.contains("grid")) {
            std::string types;
            for (auto it = q["linears_by_type"].begin(); it != q["linears_by_type"].end(); ++it)
                types += strprintf("%s%lld %s", types.empty() ? "" : ", ", (long long)it.value().get<int64_t>(),
                                   it.key().c_str());
            std::printf("quantization  GGML grid %s (saliq_ggml): %s\n", q["grid"].get<std::string>().c_str(), types.c_str());
        } else {
            std::printf("quantization  %d-bit, group %lld, %s, %s%s, %lld linears packed\n", q["bits"].get<int>(),
                        (long long)q["group_size"], q["symmetric"].get<bool>() ? "symmetric" : "asymmetric",
                        q["checkpoint_format"].get<std::string>().c_str(), q["desc_act"].get<bool>() ? ", act-order" : "",
                        (long long)q["quantized_linears"]);
        }
        if (q.contains("bits_histogram")) {
            std::string hist;
            for (auto it = q["bits_histogram"].begin(); it != q["bits_histogram"].end(); ++it)
                hist += strprintf("%s%s-bit %.1f%%", hist.empty() ? "" : ", ", it.key().c_str(),
                                  100.0 * it.value().get<double>());
            std::printf("bit widths    %s of the linears' weights: %.4f code bits per weight\n", hist.c_str(),
                        q["code_bits_per_weight"].get<double>());
        }
        if (q.contains("sparse")) {
            const auto& sp = q["sparse"];
            std::printf("sparse parts  %lld outliers + %lld significant FP16 entries (%.3f%% of the linears' weights, "
                        "%.3f bits per weight of the total; GPTQ loaders ignore them)\n",
                        (long long)sp["outliers"].get<int64_t>(), (long long)sp["significant"].get<int64_t>(),
                        sp["percent"].get<double>(), sp["bits_per_weight"].get<double>());
        }
        if (q.contains("gptq_loaders_reject") && !q["gptq_loaders_reject"].empty()) {
            std::string list;
            for (const auto& l : q["gptq_loaders_reject"]) list += (list.empty() ? "" : "; ") + l.get<std::string>();
            std::printf("gptq loaders  may reject %s (widths not multiples of 32; saliq reads them)\n", list.c_str());
        }
    } else {
        std::printf("quantization  none\n");
    }
    std::printf("parameters    %lld (linear %lld, other %lld)\n", (long long)info["parameters"]["total"],
                (long long)info["parameters"]["linear"], (long long)info["parameters"]["other"]);
    std::printf("bytes         %s tensors (linear %s, other %s)\n",
                human_bytes(info["bytes"]["tensors"].get<uint64_t>()).c_str(),
                human_bytes(info["bytes"]["linear"].get<uint64_t>()).c_str(),
                human_bytes(info["bytes"]["other"].get<uint64_t>()).c_str());
    std::printf("bits/weight   %.3f in linears, %.3f overall\n", info["bits_per_weight"]["linear"].get<double>(),
                info["bits_per_weight"]["overall"].get<double>());
    if (info["bits_per_weight"].contains("adapters"))
        std::printf("adapters      %s, %.3f bits/weight: %.3f in linears with them, %.3f overall\n",
                    human_bytes(info["bytes"]["adapters"].get<uint64_t>()).c_str(),
                    info["bits_per_weight"]["adapters"].get<double>(),
                    info["bits_per_weight"]["linear_with_adapters"].get<double>(),
                    info["bits_per_weight"]["overall_with_adapters"].get<double>());
    return 0;
}

}  // namespace

Command add_inspect_command(CLI::App& app) {
    struct Args {
        std::string path, tokenizer;
        bool json = false;
    };
    auto a = std::make_shared<Args>();
    std::string& inspect_path = a->path;
    bool& inspect_json = a->json;
    CLI::App* inspect = app.add_subcommand("inspect", "print a checkpoint's architecture, quantization and size");
    inspect->add_option("path", inspect_path, "model folder or llama2.c .bin")->required();
    inspect->add_flag("--json", inspect_json, "print JSON");

    return {inspect, [a] { return run_inspect(a->path, a->tokenizer, a->json); }};
}

}  // namespace saliq
