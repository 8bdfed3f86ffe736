#include <ATen/ATen.h>

#include "saliq/model.h"

namespace saliq {

Rope make_rope(const LlamaConfig& config, int64_t max_len, const at::TensorOptions& options) {
    const int64_t d = config.head_dim;
    // inv_freq_i = theta^(-2i/d), computed in fp64 so every dtype starts from the same angles.
    at::Tensor inv_freq = at::pow(config.rope_theta, at::arange(0, d, 2, at::kDouble) / static_cast<double>(d)).reciprocal();
    at::Tensor positions = at::arange(max_len, at::kDouble);
    at::Tensor angles = at::outer(positions, inv_freq);        // [T, d/2]
    at::Tensor emb = at::cat({angles, angles}, -1);            // [T, d]: HF pairs i with i + d/2
    return Rope{emb.cos().to(options), emb.sin().to(options)};
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
