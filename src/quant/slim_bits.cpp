// SliM-LLM's Salience-Determined Bit Allocation and its group fit (slim_bits.h), shared by slim-llm and the LWC
// methods with --bit-map slim.
#include "quant/slim_bits.h"

#include <algorithm>
#include <limits>

#include <ATen/ATen.h>

#include "quant/gptq_solver.h"
#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

at::Tensor fp16_exact(const at::Tensor& t) { return t.to(at::kHalf).to(at::kFloat); }

// 1-bit group: codes (w >= mean) under scale 2a and zero 1/2 - m / 2a, which is sign(w - m) * a + m.
void binary_fit(const at::Tensor& w, at::Tensor& scale, at::Tensor& zero) {
    const at::Tensor m = w.mean(1);
    const at::Tensor a = at::clamp_min(w.abs().mean(1), 3.1e-5);
    scale = fp16_exact(2.0 * a);
    zero = fp16_exact(0.5 - m / scale);
}

// One group's grid at `bits`: the binary rule, min-max, or (with `search`) min-max scaled per row by the best of
// SliM-LLM's 101 factors under sum |q - w|^2.4 with the salient entries weighted by `lambda`. Returns maxq.
}  // namespace

int64_t slim_fit_group(const at::Tensor& w, const at::Tensor& hinv_diag, int bits, bool search, double lambda,
                  at::Tensor& scale, at::Tensor& zero) {
    if (bits == 1) {
        binary_fit(w, scale, zero);
        return 1;
    }
    QuantSpec spec;
    spec.bits = bits;
    spec.symmetric = false;
    const at::Tensor xmin = std::get<0>(w.min(1)), xmax = std::get<0>(w.max(1));
    minmax_scale_zero(xmin, xmax, spec, scale, zero);
    if (!search) return spec.maxq();
    at::Tensor weight = at::ones_like(w);
    if (lambda != 1.0 && hinv_diag.defined()) {
        const at::Tensor delta = w.pow(2) / hinv_diag.pow(2).unsqueeze(0);
        const at::Tensor zscore = (delta - delta.mean()) / delta.std().clamp_min(1e-12);
        const at::Tensor outlying = zscore.abs() > 2.0;
        if (outlying.any().item<bool>()) {
            const double threshold = delta.masked_select(outlying).min().item<double>();
            weight = at::where(delta >= threshold, at::full_like(w, lambda), weight);
        }
    }
    at::Tensor best = at::full({w.size(0)}, std::numeric_limits<float>::infinity(), w.options());
    const double maxq = static_cast<double>(spec.maxq());
    std::vector<double> factors = {1.0};
    for (int i = 1; i <= 50; ++i) factors.push_back(1.0 + 0.1 * i / 50.0);
    for (int i = 0; i < 50; ++i) factors.push_back(0.9 + 0.1 * i / 50.0);
    for (double p : factors) {
        at::Tensor s, z;
        minmax_scale_zero(xmin * p, xmax * p, spec, s, z);
        const at::Tensor q = (at::clamp(at::round(w / s.unsqueeze(1)) + z.unsqueeze(1), 0.0, maxq) - z.unsqueeze(1)) *
                             s.unsqueeze(1);
        const at::Tensor err = ((q - w).abs().pow(2.4) * weight).sum(1);
        const at::Tensor better = err < best;
        best = at::where(better, err, best);
        scale = at::where(better, s, scale);
        zero = at::where(better, z, zero);
    }
    return spec.maxq();
}

namespace {

// Widths of each group: k least salient at b-1, k most salient at b+1, the rest (and a short last group) at b.
at::Tensor bit_map(const at::Tensor& order, int64_t full_groups, int64_t groups, int64_t k, int b) {
    at::Tensor bits = at::full({groups}, b, at::kLong);
    const at::Tensor o = order.to(at::kCPU);
    for (int64_t i = 0; i < k; ++i) {
        bits[o[i].item<int64_t>()] = b - 1;
        bits[o[full_groups - 1 - i].item<int64_t>()] = b + 1;
    }
    return bits;
}

// RTN of w [out, in] under per-group widths (SBA's candidates), dequantized.
at::Tensor rtn_mixed(const at::Tensor& w, const at::Tensor& bits, int64_t g) {
    const int64_t in = w.size(1);
    at::Tensor out = at::empty_like(w);
    const at::Tensor b = bits.to(at::kCPU);
    for (int64_t k = 0; k * g < in; ++k) {
        const int64_t width = std::min(g, in - k * g);
        const at::Tensor group = w.narrow(1, k * g, width);
        at::Tensor scale, zero;
        const int64_t maxq = slim_fit_group(group, at::Tensor(), static_cast<int>(b[k].item<int64_t>()), false, 1.0,
                                       scale, zero);
        const at::Tensor q = at::clamp(at::round(group / scale.unsqueeze(1) + zero.unsqueeze(1)), 0.0,
                                       static_cast<double>(maxq));
        out.narrow(1, k * g, width).copy_((q - zero.unsqueeze(1)) * scale.unsqueeze(1));
    }
    return out;
}

// KL(P_q || P_fp) per token, summed over the tokens of y_q and y_fp [tokens, out] (softmax over out, clamped).
double token_kl_sum(const at::Tensor& y_q, const at::Tensor& y_fp) {
    const at::Tensor p_q = at::softmax(y_q, -1).clamp_min(1e-6), p_fp = at::softmax(y_fp, -1).clamp_min(1e-6);
    return (p_q * (p_q.log() - p_fp.log())).sum().item<double>();
}

struct LinearSearch {
    at::Tensor weight;                    // [out, in] fp32
    std::vector<at::Tensor> candidates;   // bit maps [G]
    std::vector<at::Tensor> dequantized;  // their RTN weights
    std::vector<double> kl;               // summed over tokens, then windows
    int64_t tokens = 0;
};

}  // namespace

uint64_t slim_search_bytes(const LlamaConfig& config, const QuantSpec& spec) {
    uint64_t bytes = 0;
    for (const auto& shape : linear_shapes(config)) {
        const int64_t out = shape[0], in = shape[1], g = spec.effective_group(in), full = in / g;
        const int64_t candidates = std::max<int64_t>(0, full / 2 - 1);
        const auto weight = static_cast<uint64_t>(out) * static_cast<uint64_t>(in) * 4;
        bytes += weight * static_cast<uint64_t>(candidates + 1) + static_cast<uint64_t>(in) * static_cast<uint64_t>(in) * 8;
    }
    return bytes;
}

std::vector<at::Tensor> slim_bit_maps(const DecoderBlock& block, const BlockContext& context, nlohmann::json& stats) {
    const QuantizeOptions& o = *context.options;
    const int b = o.spec.bits;
    std::vector<at::Tensor> hessians = capture_hessians(block, context, kAllLinears);
    std::vector<LinearSearch> search(kNumLinears);
    for (int index : kAllLinears) {
        const std::string name = hf_names::linear_name(context.layer, index);
        LinearSearch& s = search[index];
        s.weight = block.linears[index]->weight().to(at::kFloat);
        const int64_t in = s.weight.size(1), g = o.spec.effective_group(in), G = o.spec.n_groups(in);
        const int64_t full = in / g;  // a short last group is never moved
        at::Tensor H = std::move(hessians[index]).to(at::kDouble);
        H.diagonal().add_(0.01);  // get_salience's absolute term, before GPTQ's relative damping
        double used_damp = o.gptq.damp;
        const at::Tensor U = inverse_cholesky_upper(std::move(H), o.gptq.damp, name, used_damp).to(at::kFloat);
        const at::Tensor delta = s.weight.pow(2) / U.diagonal().to(s.weight.device()).pow(2).unsqueeze(0);
        const at::Tensor salience = delta.narrow(1, 0, full * g).reshape({-1, full, g}).sum(at::IntArrayRef{0, 2});  // [full]
        const at::Tensor ranks = at::argsort(salience);  // least salient first
        for (int64_t k = 1; k <= full / 2 - 1; ++k) {
            s.candidates.push_back(bit_map(ranks, full, G, k, b));
            s.dequantized.push_back(rtn_mixed(s.weight, s.candidates.back(), g));
            s.kl.push_back(0.0);
        }
    }
    // One pass over the calibration windows scores every candidate of every linear on that linear's inputs.
    DecoderBlock hooked = block;
    for (int index : kAllLinears) {
        if (search[index].candidates.empty()) continue;
        hooked.linears[index] = std::make_shared<CapturingLinear>(
            block.linears[index], [&search, index](const at::Tensor& x) {
                LinearSearch& s = search[index];
                const at::Tensor flat = x.reshape({-1, x.size(-1)}).to(at::kFloat);
                const at::Tensor y_fp = at::matmul(flat, s.weight.t());
                for (size_t c = 0; c < s.candidates.size(); ++c)
                    s.kl[c] += token_kl_sum(at::matmul(flat, s.dequantized[c].t()), y_fp);
                s.tokens += flat.size(0);
            });
    }
    if (std::any_of(search.begin(), search.end(), [](const LinearSearch& s) { return !s.candidates.empty(); }))
        context.run(hooked, *context.inputs);
    std::vector<at::Tensor> maps(kNumLinears);
    for (int index : kAllLinears) {
        const std::string name = hf_names::linear_name(context.layer, index);
        LinearSearch& s = search[index];
        const int64_t in = s.weight.size(1), G = o.spec.n_groups(in);
        if (s.candidates.empty()) {  // fewer than 4 whole groups: nothing to trade
            maps[index] = at::full({G}, b, at::kLong);
            stats[name + ".slim"] = {{"k", 0}, {"note", "fewer than 4 whole groups: uniform"}};
            continue;
        }
        const size_t best = static_cast<size_t>(std::min_element(s.kl.begin(), s.kl.end()) - s.kl.begin());
        maps[index] = s.candidates[best];
        std::vector<double> kl;
        for (double v : s.kl) kl.push_back(v / static_cast<double>(std::max<int64_t>(1, s.tokens)));
        stats[name + ".slim"] = {{"k", best + 1}, {"kl", kl}};
    }
    return maps;
}

std::vector<at::Tensor> read_bit_maps(const std::string& path, int64_t layer, const LlamaConfig& config,
                                      const QuantSpec& spec) {
    const std::string file = is_directory(path) ? path + "/model.safetensors" : path;
    const auto reader = SafetensorsReader::open(file);
    const auto shapes = linear_shapes(config);
    std::vector<at::Tensor> maps(kNumLinears);
    for (int i = 0; i < kNumLinears; ++i) {
        const std::string key = hf_names::linear_name(layer, i) + ".group_bits";
        if (!reader->has(key)) throw FormatError(file, "no bit map '" + key + "' (made for another model?)");
        const int64_t in = shapes[i][1], g = spec.effective_group(in), G = spec.n_groups(in);
        const at::Tensor bits = reader->tensor(key).to(at::kLong).contiguous();
        if (bits.sizes().vec() != std::vector<int64_t>{G})
            throw FormatError(file, "bit map '" + key + "' has shape " + shape_to_string(bits.sizes().vec()) +
                                        strprintf(", group size %lld over %lld inputs makes [%lld]",
                                                  (long long)spec.group_size, (long long)in, (long long)G));
        if (bits.min().item<int64_t>() < 1 || bits.max().item<int64_t>() > 8)
            throw FormatError(file, "bit map '" + key + "' holds a width outside 1..8");
        int64_t total = 0;
        for (int64_t k = 0; k < G; ++k) total += bits[k].item<int64_t>() * std::min(g, in - k * g);
        if (total != static_cast<int64_t>(spec.bits) * in)
            throw FormatError(file, strprintf("bit map '%s' averages %.4f bits, the run's --bits is %d", key.c_str(),
                                              static_cast<double>(total) / static_cast<double>(in), spec.bits));
        maps[i] = bits;
    }
    return maps;
}

}  // namespace saliq
