// `saliq saliency`: the salience of every quantizable weight (Fisher, Hessian or PQI).
#include "cli.h"

#include <chrono>
#include <cstdio>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/saliency.h"
#include "saliq/threads.h"

namespace saliq {
namespace {

int run_saliency(const ModelArgs& margs, FisherOptions& fo, const std::string& calib_range, const std::string& out) {
    set_compute_threads(margs.threads);
    fo.model.device = margs.device;
    fo.model.dtype = margs.dtype;
    fo.calib.range = TokenRange::parse(calib_range);
    const Checkpoint ckpt = load_checkpoint(margs.model, margs.tokenizer);
    const auto tokenizer = checkpoint_tokenizer(ckpt, margs.model);
    const auto t0 = std::chrono::steady_clock::now();
    if (fo.metric == "imatrix") {  // not a salience per weight: llama.cpp's importance matrix, for llama-quantize
        if (dist_active()) throw ConfigError("--metric imatrix runs in one process");
        int64_t tokens = 0;
        const auto sums = compute_input_square_sums(ckpt, *tokenizer, fo, tokens, progress_printer());
        write_imatrix_gguf(out, sums, tokens, fo.calib.source + " " + fo.calib.range.to_string(), fo.calib.nsamples,
                           fo.calib.seqlen);
        std::printf("imatrix    %s (%zu linears, %lld tokens of %s; llama-quantize --imatrix reads it)\n", out.c_str(),
                    sums.size(), (long long)tokens, fo.calib.source.c_str());
        std::printf("time       %.2f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        return 0;
    }
    const auto fisher = compute_saliency(ckpt, *tokenizer, fo, progress_printer());
    if (dist_is_main()) write_fisher(out, fisher, fo);
    double total = 0.0, top = 0.0;
    const nlohmann::json summary = fisher_summary(fisher);
    for (const auto& item : summary.items()) {
        total += item.value()["sum"].get<double>();
        top += item.value()["top1pct_mass"].get<double>() * item.value()["sum"].get<double>();
    }
    std::printf("%-10s %s (%zu tensors, %s, %lld x %lld tokens)\n", fo.metric.c_str(), out.c_str(), fisher.size(),
                fo.calib.source.c_str(), (long long)fo.calib.nsamples, (long long)fo.calib.seqlen);
    std::printf("mass       total %.4e, %.1f%% in the top 1%% of weights\n", total, total > 0 ? 100.0 * top / total : 0.0);
    std::printf("time       %.2f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
}

}  // namespace

Command add_saliency_command(CLI::App& app) {
    struct Args {
        FisherOptions options;
        std::string range = "0:1", out;
    };
    auto model = std::make_shared<ModelArgs>();
    auto a = std::make_shared<Args>();
    ModelArgs& sal_model = *model;
    FisherOptions& fisher_options = a->options;
    std::string& sal_range = a->range;
    std::string& sal_out = a->out;
    CLI::App* saliency = app.add_subcommand("saliency", "saliency of every quantizable weight: diagonal Fisher or Hessian salience");
    add_model_options(saliency, sal_model);
    saliency->add_option("--calib", fisher_options.calib.source, "wikitext2, c4, ptb, tinystories or a text file")
        ->capture_default_str();
    saliency->add_option("--nsamples", fisher_options.calib.nsamples, "sequences")->capture_default_str();
    saliency->add_option("--seqlen", fisher_options.calib.seqlen, "tokens per sequence")->capture_default_str();
    saliency->add_option("--seed", fisher_options.calib.seed, "seed of the window draw")->capture_default_str();
    saliency->add_option("--calib-range", sal_range, "fraction of the text (c4: documents) to draw from")
        ->capture_default_str();
    saliency->add_option("--metric", fisher_options.metric,
                         "fisher (diagonal empirical Fisher), hessian (SliM-LLM's w^2 / [chol(H^-1)]_jj^2), pqi "
                         "(ReQuant's |post-quantization integral| towards RTN with --bits/--group-size), or imatrix: "
                         "llama.cpp's importance matrix (sum of x^2 per input column) as the GGUF llama-quantize "
                         "--imatrix reads")
        ->capture_default_str();
    saliency->add_option("--bits", fisher_options.spec.bits, "pqi: bits of the RTN end point")->capture_default_str();
    saliency->add_option("--group-size", fisher_options.spec.group_size, "pqi: group size of the RTN end point")
        ->capture_default_str();
    saliency->add_option("--pqi-points", fisher_options.pqi_points, "pqi: trapezoid intervals on the path")
        ->capture_default_str();
    saliency->add_option("--out,-o", sal_out, "output .safetensors")->required();

    return {saliency, [model, a] { return run_saliency(*model, a->options, a->range, a->out); }, model.get()};
}

}  // namespace saliq
