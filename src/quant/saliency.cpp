#include "saliq/saliency.h"

#include <chrono>
#include <cmath>
#include <set>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/quantize.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"
#include "saliq/tokenizer.h"

namespace saliq {

std::unique_ptr<LlamaModel> load_saliency_model(const Checkpoint& ckpt, const FisherOptions& o, bool stream_blocks) {
    if (ckpt.packed.bits > 0) throw ConfigError("saliency needs the full-precision model, not a packed one");
    if (o.calib.seqlen > ckpt.config.max_position_embeddings)
        throw ConfigError(strprintf("--seqlen %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)o.calib.seqlen, (long long)ckpt.config.max_position_embeddings));
    ModelOptions model_options = o.model;
    model_options.use_adapter = false;
    model_options.stream_blocks = stream_blocks;
    return LlamaModel::load(ckpt, model_options);
}

std::map<std::string, at::Tensor> compute_fisher(const Checkpoint& ckpt, const Tokenizer& tokenizer,
                                                 const FisherOptions& o, const ProgressFn& progress) {
    auto model = load_saliency_model(ckpt, o, /*stream_blocks=*/false);
    const CalibSet calib = sample_calibration(o.calib, tokenizer);

    std::vector<std::string> names;
    std::vector<at::Tensor> weights;
    for (int64_t layer = 0; layer < model->n_layers(); ++layer)
        for (int i = 0; i < kNumLinears; ++i) {
            at::Tensor w = model->block(layer).linears[i]->weight();
            w.requires_grad_(true);
            names.push_back(hf_names::linear_name(layer, i) + ".weight");
            weights.push_back(w);
        }
    std::vector<at::Tensor> fisher;
    for (const auto& w : weights) fisher.push_back(at::zeros(w.sizes(), w.options().dtype(at::kFloat)));

    c10::AutoGradMode grad(true);
    const auto start = std::chrono::steady_clock::now();
    const int64_t T = o.calib.seqlen;
    // A distributed run takes its share of the windows; the squared gradients are summed over the ranks.
    const auto [first, end] = dist_shard(o.calib.nsamples);
    for (int64_t n = first; n < end; ++n) {
        std::vector<int64_t> window(calib.tokens.begin() + n * T, calib.tokens.begin() + (n + 1) * T);
        const at::Tensor ids = at::tensor(window, at::kLong).unsqueeze(0).to(model->options().device());
        const at::Tensor logits = model->forward(ids);  // [1, T, V] fp32
        const at::Tensor loss = at::cross_entropy_loss(logits[0].narrow(0, 0, T - 1), ids[0].narrow(0, 1, T - 1));
        if (!std::isfinite(loss.item<double>()))
            throw NumericError(strprintf("saliency: non-finite loss on calibration sequence %lld", (long long)n));
        const auto grads = torch::autograd::grad({loss}, weights);
        for (size_t i = 0; i < grads.size(); ++i) fisher[i].add_(grads[i].to(at::kFloat).pow(2));
        if (progress) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (!progress({"saliency", n + 1 - first, end - first, elapsed, strprintf("loss %.3f", loss.item<double>())}))
                throw Cancelled{};
        }
    }
    dist_all_reduce_sum(fisher);
    std::map<std::string, at::Tensor> out;
    for (size_t i = 0; i < names.size(); ++i) out[names[i]] = fisher[i].to(at::kCPU);
    return out;
}

std::map<std::string, at::Tensor> compute_saliency(const Checkpoint& ckpt, const Tokenizer& tokenizer,
                                                   const FisherOptions& o, const ProgressFn& progress) {
    if (o.metric == "fisher") return compute_fisher(ckpt, tokenizer, o, progress);
    if (dist_active())
        throw ConfigError("the " + o.metric + " salience runs in one process (over several ranks: fisher)");
    if (o.metric == "hessian") return compute_hessian_salience(ckpt, tokenizer, o, progress);
    if (o.metric == "pqi") {
        PqiResult r = compute_pqi(ckpt, tokenizer, o, progress);
        log_info(strprintf("pqi: F(w) %.6f, F(w~) %.6f, change %.6f, predicted by the integral %.6f", r.loss_fp,
                           r.loss_quantized, r.loss_quantized - r.loss_fp, r.predicted_change));
        return std::move(r.salience);
    }
    throw ConfigError("unknown saliency metric '" + o.metric + "' (expected fisher, hessian or pqi)");
}

void write_fisher(const std::string& path, const std::map<std::string, at::Tensor>& fisher,
                  const FisherOptions& o) {
    NamedTensors tensors(fisher.begin(), fisher.end());
    write_safetensors(path, tensors,
                      {{"format", "pt"},
                       {"saliq_kind", o.metric == "fisher" ? "diagonal_fisher" : o.metric + "_salience"},
                       {"calib_source", o.calib.source},
                       {"nsamples", std::to_string(o.calib.nsamples)},
                       {"seqlen", std::to_string(o.calib.seqlen)},
                       {"seed", std::to_string(o.calib.seed)},
                       {"calib_range", o.calib.range.to_string()}});
}

void check_fisher_file(const std::string& path, const LlamaConfig& c) {
    const auto reader = SafetensorsReader::open(path);
    const auto shapes = linear_shapes(c);  // [out, in] of each linear
    std::set<std::string> expected;
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string key = hf_names::linear_name(layer, i) + ".weight";
            expected.insert(key);
            if (!reader->has(key))
                throw FormatError(path, "no Fisher tensor for '" + key + "' (made for another model?)");
            const auto [dtype, shape] = reader->describe(key);
            const std::vector<int64_t>& want = shapes[i];
            if (shape != want)
                throw FormatError(path, "Fisher tensor '" + key + "' has shape " + shape_to_string(shape) +
                                            ", the model's weight " + shape_to_string(want) + " (made for another model?)");
            if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kDouble)
                throw FormatError(path, "Fisher tensor '" + key + "' is not a float tensor");
        }
    }
    for (const auto& e : reader->entries())
        if (expected.count(e.name) == 0)
            throw FormatError(path, "tensor '" + e.name + "' is not a linear weight of this " +
                                        std::to_string(c.n_layers) + "-layer model (made for another model?)");
}

nlohmann::json fisher_summary(const std::map<std::string, at::Tensor>& fisher) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [name, f] : fisher) {
        const at::Tensor flat = f.reshape({-1}).to(at::kDouble);
        const int64_t k = std::max<int64_t>(1, flat.numel() / 100);
        const double total = flat.sum().item<double>();
        const double top = std::get<0>(flat.topk(k)).sum().item<double>();
        out[name] = {{"sum", total}, {"max", flat.max().item<double>()}, {"mean", flat.mean().item<double>()},
                     {"top1pct_mass", total > 0 ? top / total : 0.0}};
    }
    return out;
}

nlohmann::json prepare_saliency(const Checkpoint& ckpt, const Tokenizer& tokenizer, QuantizeOptions& o,
                                const std::string& path, bool reuse, const ProgressFn& progress) {
    if (!o.saliency.enabled || !o.saliency.weighted || !o.saliency.fisher_path.empty()) return nlohmann::json();
    FisherOptions fo;
    fo.calib.source = o.saliency.calib;
    fo.calib.nsamples = o.saliency.nsamples;
    fo.calib.seqlen = o.saliency.seqlen;
    fo.calib.seed = o.calib.seed;
    fo.model = o.model;
    fo.metric = o.saliency.metric;
    fo.spec = o.spec;  // pqi: the path ends at this run's RTN values
    fo.pqi_points = o.saliency.pqi_points;
    nlohmann::json stats;
    if (dist_active() || !reuse || !path_exists(path)) {  // every rank takes part in a distributed pass
        log_info(strprintf("saliency: %s from %s, %lld x %lld", fo.metric.c_str(), fo.calib.source.c_str(),
                           (long long)fo.calib.nsamples, (long long)fo.calib.seqlen));
        const auto t0 = std::chrono::steady_clock::now();
        const auto saliency = compute_saliency(ckpt, tokenizer, fo, progress);
        write_fisher(path, saliency, fo);
        stats = {{"metric", fo.metric}, {"calib", fo.calib.source}, {"nsamples", fo.calib.nsamples},
                 {"seqlen", fo.calib.seqlen},
                 {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
                 {"summary", fisher_summary(saliency)}};
    }
    o.saliency.fisher_path = path;
    return stats;
}

}  // namespace saliq
