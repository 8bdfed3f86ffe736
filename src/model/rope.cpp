#include <ATen/ATen.h>

#include "saliq/model.h"

namespace saliq {

Rope make_rope(const LlamaConfig& config, int64_t max_len, const at::TensorOptions& options) {
    // inv_freq_i = theta^(-2i/d) with the config's scaling, in fp64 so every dtype starts from the same angles.
    const std::vector<double> frequencies = rope_inverse_frequencies(config);
    at::Tensor inv_freq = at::tensor(frequencies, at::kDouble);
    at::Tensor positions = at::arange(max_len, at::kDouble);
    at::Tensor angles = at::outer(positions, inv_freq);        // [T, d/2]
    at::Tensor emb = at::cat({angles, angles}, -1);            // [T, d]: HF pairs i with i + d/2
    const double scale = rope_attention_factor(config);  // yarn's mscale; 1 otherwise
    return Rope{(emb.cos() * scale).to(options), (emb.sin() * scale).to(options)};
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    const int64_t half = x.size(-1) / 2;
    const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);  // rotate halves
    return x * cos + rotated * sin;
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
    // Normalize in fp32, as the reference implementation does, then return to the compute dtype.
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + eps);
    return weight * normed.to(x.scalar_type());
}

}  // namespace saliq
