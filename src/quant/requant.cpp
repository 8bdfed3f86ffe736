// ReQuant's two sparse parts (requant.h). Outliers: largest magnitudes per linear, counts chosen per linear under
// the global budget. Significant weights: PQI (quant/pqi.h) between the FP model and the quantized one, recomputed
// after each round of detaching.
#include "quant/requant.h"

#include <algorithm>
#include <array>
#include <limits>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "quant/pqi.h"
#include "saliq/binarize.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/saliency.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

const double kRatioMultipliers[] = {0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0};
constexpr int kCandidates = sizeof(kRatioMultipliers) / sizeof(kRatioMultipliers[0]);

int64_t candidate_count(double multiplier, double fraction, int64_t n) {
    return std::min<int64_t>(n, static_cast<int64_t>(std::llround(multiplier * fraction * static_cast<double>(n))));
}

// Positions to detach this round: the `k` largest scores over every linear (scores < 0 are never taken), by
// bisection on the threshold so no list of all scores is built. Ties at the threshold may leave the count short.
std::vector<at::Tensor> top_scores(const std::vector<at::Tensor>& scores, int64_t k) {
    auto count_at_least = [&](double t) {
        int64_t c = 0;
        for (const auto& s : scores) c += (s >= t).sum().item<int64_t>();
        return c;
    };
    double hi = 0.0;
    for (const auto& s : scores) hi = std::max(hi, s.max().item<double>());
    double lo = 0.0;
    double threshold = std::nextafter(0.0, 1.0);  // every positive score
    if (count_at_least(threshold) > k) {
        for (int it = 0; it < 80; ++it) {  // invariant: count(>= lo) > k >= count(>= hi)
            const double mid = 0.5 * (lo + hi);
            if (mid <= lo || mid >= hi) break;
            if (count_at_least(mid) > k) lo = mid;
            else hi = mid;
        }
        threshold = hi;
    }
    std::vector<at::Tensor> picked;
    for (const auto& s : scores) picked.push_back(at::nonzero(s.reshape({-1}) >= threshold).reshape({-1}));
    return picked;
}

// Mean next-token cross-entropy of the model over the calibration windows (no gradients).
double calibration_loss(const LlamaModel& model, const CalibSet& calib, int64_t T) {
    c10::NoGradGuard no_grad;
    const int64_t N = static_cast<int64_t>(calib.tokens.size()) / T;
    double sum = 0.0;
    for (int64_t n = 0; n < N; ++n) {
        std::vector<int64_t> window(calib.tokens.begin() + n * T, calib.tokens.begin() + (n + 1) * T);
        const at::Tensor ids = at::tensor(window, at::kLong).unsqueeze(0).to(model.options().device());
        const at::Tensor logits = model.forward(ids);
        sum += at::cross_entropy_loss(logits[0].narrow(0, 0, T - 1), ids[0].narrow(0, 1, T - 1)).item<double>();
    }
    return sum / static_cast<double>(N);
}

}  // namespace

void validate_sparse_options(const QuantizeOptions& o) {
    const SparseOptions& s = o.sparse;
    if (!(s.outliers_pct >= 0 && s.outliers_pct < 25) || !(s.significant_pct >= 0 && s.significant_pct < 25))
        throw ConfigError("--sparse-outliers and --sparse-significant are percentages of the linears' weights, "
                          "from 0 to under 25 (ReQuant's: 0.45 and 0.05)");
    if (!s.enabled()) return;
    if (is_binarizer(o.apiq.quantizer))
        throw ConfigError("--sparse-outliers / --sparse-significant work on the uniform grid, not --quantizer " +
                          o.apiq.quantizer);
    if (s.steps < 1) throw ConfigError("--sparse-steps must be at least 1");
    if (s.pqi_points < 1) throw ConfigError("--sparse-pqi-points must be at least 1");
}

at::Tensor largest_magnitude_index(const at::Tensor& weight, int64_t k) {
    const at::Tensor flat = weight.reshape({-1});
    k = std::min<int64_t>(k, flat.numel());
    if (k <= 0) return at::empty({0}, weight.options().dtype(at::kLong));
    const at::Tensor idx = std::get<1>(at::topk(flat.abs().to(at::kFloat), k));
    return std::get<0>(at::sort(idx));
}

std::map<std::string, int64_t> plan_outliers(const Checkpoint& ckpt, const QuantizeOptions& o, nlohmann::json& stats) {
    const LlamaConfig& c = ckpt.config;
    const double fraction = o.sparse.outliers_pct / 100.0;
    const auto shapes = linear_shapes(c);
    std::vector<std::string> names;
    std::vector<int64_t> sizes;
    std::vector<std::array<double, kCandidates>> errors;  // squared re-quantization error per candidate
    int64_t total = 0;
    for (int64_t layer = 0; layer < c.n_layers; ++layer)
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string name = hf_names::linear_name(layer, i);
            const at::Tensor W = ckpt.tensors->get(name + ".weight").to(at::kFloat);
            ckpt.tensors->release(name + ".weight");
            const int64_t n = W.numel();
            // Sorted by magnitude, each candidate's outliers are a prefix of the largest.
            const int64_t k_max = candidate_count(kRatioMultipliers[kCandidates - 1], fraction, n);
            const at::Tensor order = std::get<1>(at::topk(W.reshape({-1}).abs(), k_max, -1, true, true));
            std::array<double, kCandidates> e{};
            for (int m = 0; m < kCandidates; ++m) {
                const int64_t k = candidate_count(kRatioMultipliers[m], fraction, n);
                at::Tensor dense = W.clone();
                const at::Tensor idx = order.narrow(0, 0, k);
                dense.view({-1}).index_fill_(0, idx, 0.0);
                at::Tensor err = (dense - quantize_rtn(dense, o.spec).dequantize()).pow(2);
                err.view({-1}).index_fill_(0, idx, 0.0);  // the outliers are kept exactly
                e[m] = err.sum().item<double>();
            }
            names.push_back(name);
            sizes.push_back(n);
            errors.push_back(e);
            total += n;
        }
    const auto budget = static_cast<int64_t>(std::llround(fraction * static_cast<double>(total)));
    // For a price per outlier lambda, each linear takes the candidate minimising error + lambda * count; the total
    // falls as lambda rises. Bisect for the cheapest lambda within the budget.
    auto choose = [&](double lambda, std::vector<int>& pick) {
        int64_t used = 0;
        pick.assign(names.size(), 0);
        for (size_t j = 0; j < names.size(); ++j) {
            double best = std::numeric_limits<double>::infinity();
            for (int m = 0; m < kCandidates; ++m) {
                const double cost = errors[j][m] + lambda * static_cast<double>(candidate_count(kRatioMultipliers[m], fraction, sizes[j]));
                if (cost < best) best = cost, pick[j] = m;
            }
            used += candidate_count(kRatioMultipliers[pick[j]], fraction, sizes[j]);
        }
        return used;
    };
    std::vector<int> pick;
    double lo = 0.0, hi = 1.0;
    for (const auto& e : errors) hi = std::max(hi, e[0]);  // one outlier can never be worth more than all the error
    if (choose(lo, pick) > budget) {
        for (int it = 0; it < 100; ++it) {
            const double mid = 0.5 * (lo + hi);
            if (choose(mid, pick) > budget) lo = mid;
            else hi = mid;
        }
        choose(hi, pick);
    }
    std::map<std::string, int64_t> counts;
    int64_t used = 0;
    double error_uniform = 0, error_chosen = 0;
    nlohmann::json per_linear = nlohmann::json::object();
    for (size_t j = 0; j < names.size(); ++j) {
        const int64_t k = candidate_count(kRatioMultipliers[pick[j]], fraction, sizes[j]);
        counts[names[j]] = k;
        used += k;
        error_uniform += errors[j][3];  // every linear at the global ratio (multiplier 1)
        error_chosen += errors[j][static_cast<size_t>(pick[j])];
        per_linear[names[j]] = 100.0 * static_cast<double>(k) / static_cast<double>(sizes[j]);
    }
    stats = {{"budget", budget}, {"used", used}, {"weights", total},
             {"requant_error_uniform_ratio", error_uniform}, {"requant_error_adaptive", error_chosen},
             {"percent_per_linear", per_linear}};
    log_info(strprintf("outliers: %lld of %lld weights (%.3f%%) over %zu linears, per-linear ratios %.3f%% to "
                       "%.3f%%; re-quantization error %.4e (one ratio everywhere: %.4e)",
                       (long long)used, (long long)total, 100.0 * static_cast<double>(used) / static_cast<double>(total),
                       names.size(), 100.0 * fraction * kRatioMultipliers[*std::min_element(pick.begin(), pick.end())],
                       100.0 * fraction * kRatioMultipliers[*std::max_element(pick.begin(), pick.end())], error_chosen,
                       error_uniform));
    return counts;
}

std::map<std::string, SparsePart> detach_significant(const Checkpoint& ckpt, const Tokenizer& tokenizer,
                                                     const QuantizeOptions& o, const std::vector<BlockResult>& blocks,
                                                     nlohmann::json& stats, const ProgressFn& progress) {
    FisherOptions fo;
    fo.model = o.model;
    fo.calib = o.calib;
    auto model = load_saliency_model(ckpt, fo, /*stream_blocks=*/false);
    const CalibSet calib = sample_calibration(o.calib, tokenizer);
    const int64_t T = o.calib.seqlen;

    std::vector<std::string> names;
    // What is held: the model's weights, their FP values, the current quantized ones, and during a round the path
    // and the integral, five fp32 copies of the linears; `taken` (bool) marks weights already sparse.
    std::vector<at::Tensor> weights, start, current, taken;
    int64_t total = 0;
    for (const auto& b : blocks)
        for (int i = 0; i < kNumLinears; ++i) {
            const LinearResult& lr = b.linears.at(static_cast<size_t>(i));
            at::Tensor w = model->block(b.layer).linears[i]->weight();
            names.push_back(lr.name);
            start.push_back(w.detach().clone());
            current.push_back(inference_linear(lr, w.options())->weight().detach().to(w.options()).clone());
            at::Tensor t = at::zeros(w.sizes(), w.options().dtype(at::kBool));
            if (lr.q.outliers.defined()) t.view({-1}).index_fill_(0, lr.q.outliers.index.to(w.device()), true);
            taken.push_back(t);
            total += w.numel();
            w.requires_grad_(true);
            weights.push_back(w);
        }
    const auto budget = static_cast<int64_t>(std::llround(o.sparse.significant_pct / 100.0 * static_cast<double>(total)));
    std::vector<at::Tensor> detached(names.size()), replaced(names.size());  // positions, their quantized values
    int64_t done = 0;
    stats = {{"budget", budget}, {"rounds", nlohmann::json::array()}};
    for (int64_t round = 0; round < o.sparse.steps; ++round) {
        const int64_t k = round + 1 == o.sparse.steps ? budget - done : budget / o.sparse.steps;
        std::vector<at::Tensor> scores;
        double predicted = 0.0;
        std::vector<double> losses;
        {
            std::vector<at::Tensor> delta;
            for (size_t j = 0; j < names.size(); ++j) delta.push_back(current[j] - start[j]);
            PqiIntegral pqi = integrate_pqi(*model, weights, start, delta, calib, T, o.sparse.pqi_points,
                                            strprintf("detach %lld/%lld", (long long)round + 1, (long long)o.sparse.steps),
                                            progress);
            losses = pqi.losses;
            for (size_t j = 0; j < names.size(); ++j) {
                predicted += pqi.pqi[j].sum().item<double>();
                scores.push_back(pqi.pqi[j].abs_().masked_fill_(taken[j], -1.0));
            }
        }
        const std::vector<at::Tensor> picked = top_scores(scores, k);
        scores.clear();
        int64_t count = 0;
        for (size_t j = 0; j < names.size(); ++j) {
            const at::Tensor& idx = picked[j];
            if (idx.numel() == 0) continue;
            count += idx.numel();
            taken[j].view({-1}).index_fill_(0, idx, true);
            const at::Tensor before = current[j].reshape({-1}).index_select(0, idx);  // never restored before
            current[j].view({-1}).index_copy_(0, idx, start[j].reshape({-1}).index_select(0, idx));
            detached[j] = detached[j].defined() ? at::cat({detached[j], idx}) : idx;
            replaced[j] = replaced[j].defined() ? at::cat({replaced[j], before}) : before;
        }
        done += count;
        stats["rounds"].push_back({{"loss_fp", losses.front()}, {"loss_quantized", losses.back()},
                                   {"predicted_change", predicted}, {"detached", count}});
        log_info(strprintf("detach round %lld: F(w) %.4f, F(w~) %.4f (PQI predicts %+.4f), %lld weights restored",
                           (long long)round + 1, losses.front(), losses.back(), predicted, (long long)count));
    }
    {
        c10::NoGradGuard no_grad;
        for (size_t j = 0; j < names.size(); ++j) weights[j].copy_(current[j]);
    }
    stats["detached"] = done;
    stats["loss_after"] = calibration_loss(*model, calib, T);
    log_info(strprintf("detached %lld significant weights; calibration F now %.4f", (long long)done,
                       stats["loss_after"].get<double>()));
    std::map<std::string, SparsePart> out;
    for (size_t j = 0; j < names.size(); ++j) {
        if (!detached[j].defined()) continue;
        // value = fp16(w - w~) at each restored position, in ascending order of position.
        const at::Tensor order = at::argsort(detached[j]);
        const at::Tensor idx = detached[j].index_select(0, order);
        SparsePart part;
        part.index = idx.to(at::kCPU);
        part.value = (start[j].reshape({-1}).index_select(0, idx) - replaced[j].index_select(0, order))
                         .to(at::kHalf)
                         .to(at::kFloat)
                         .to(at::kCPU);
        if (!at::isfinite(part.value).all().item<bool>())
            throw NumericError(names[j] + ": a significant weight's correction does not fit fp16");
        out[names[j]] = std::move(part);
    }
    return out;
}

}  // namespace saliq
