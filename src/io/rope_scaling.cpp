// RoPE's inverse frequencies under each scaling type transformers applies to LLaMA-family models (its
// modeling_rope_utils: default, linear, dynamic, llama3, yarn), plus llama.cpp's per-frequency factors
// (GGUF rope_freqs.weight). Plain fp64 arithmetic: the model layer turns them into cos/sin tables, the GGUF writer
// into rope_freqs.
#include <algorithm>
#include <cmath>

#include "saliq/error.h"
#include "saliq/llama_config.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

constexpr double kPi = 3.14159265358979323846;

double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// The dimension (of dim) at which a frequency completes num_rotations over the original context.
double yarn_correction_dim(double num_rotations, double dim, double base, double context) {
    return dim * std::log(context / (num_rotations * 2.0 * kPi)) / (2.0 * std::log(base));
}

}  // namespace

std::vector<double> rope_inverse_frequencies(const LlamaConfig& c) {
    const RopeScaling& s = c.rope_scaling;
    const int64_t d = c.head_dim, half = d / 2;
    std::vector<double> inv(half);
    for (int64_t i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / d);
    // dynamic: transformers rescales the base only past max_position_embeddings, where saliq refuses to go.
    if (s.type == "default" || s.type == "dynamic") return inv;
    if (s.type == "linear") {
        for (double& f : inv) f /= s.factor;
        return inv;
    }
    if (s.type == "freq_factors") {
        for (int64_t i = 0; i < half; ++i) inv[i] /= s.freq_factors.at(i);
        return inv;
    }
    if (s.type == "llama3") {
        const double old_context = static_cast<double>(s.original_max_position_embeddings);
        const double low_wavelen = old_context / s.low_freq_factor, high_wavelen = old_context / s.high_freq_factor;
        for (double& f : inv) {
            const double wavelen = 2.0 * kPi / f;
            if (wavelen > low_wavelen) {
                f /= s.factor;  // low frequencies: interpolated
            } else if (wavelen >= high_wavelen) {  // medium: a smooth blend of the two
                const double smooth =
                    (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                f = (1.0 - smooth) * f / s.factor + smooth * f;
            }  // high frequencies: kept
        }
        return inv;
    }
    if (s.type == "yarn") {
        const double dim = static_cast<double>(d), context = static_cast<double>(s.original_max_position_embeddings);
        double low = yarn_correction_dim(s.beta_fast, dim, c.rope_theta, context);
        double high = yarn_correction_dim(s.beta_slow, dim, c.rope_theta, context);
        if (s.truncate) {
            low = std::floor(low);
            high = std::ceil(high);
        }
        low = std::max(low, 0.0);
        high = std::min(high, dim - 1.0);
        if (low == high) high += 0.001;  // as transformers: no zero-width ramp
        for (int64_t i = 0; i < half; ++i) {
            const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
            const double extrapolation = 1.0 - ramp;  // share of the original frequency kept
            inv[i] = inv[i] / s.factor * (1.0 - extrapolation) + inv[i] * extrapolation;
        }
        return inv;
    }
    throw ConfigError("rope scaling type '" + s.type + "' is not supported");
}

double rope_attention_factor(const LlamaConfig& c) {
    const RopeScaling& s = c.rope_scaling;
    if (s.type != "yarn") return 1.0;
    if (s.attention_factor > 0.0) return s.attention_factor;
    if (s.mscale > 0.0 && s.mscale_all_dim > 0.0)
        return yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim);
    return yarn_mscale(s.factor, 1.0);
}

int64_t usable_context(const LlamaConfig& c) {
    return c.sliding_window > 0 ? std::min(c.max_position_embeddings, c.sliding_window) : c.max_position_embeddings;
}

}  // namespace saliq
