#include "saliq/ggml_activations.h"

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq {

at::Tensor ggml_round_activations(const at::Tensor& x, GgmlActivation type) {
    if (type == GgmlActivation::kNone) return x;
    const int64_t block = type == GgmlActivation::kQ8_K ? 256 : 32;
    const int64_t in = x.size(-1);
    if (in % block != 0)
        throw ConfigError(strprintf("llama.cpp's 8-bit activations come in blocks of %lld; this input has %lld "
                                    "features", (long long)block, (long long)in));
    const at::Tensor xb = x.to(at::kFloat).reshape({-1, block});
    const at::Tensor amax = xb.abs().amax(1, /*keepdim=*/true);
    const at::Tensor nonzero = amax > 0;
    // Divisions tensor by tensor: ATen turns a division by a scalar into a product with its reciprocal, which is
    // not always the quotient ggml computes. 127/amax in fp32 (0 for a zero block, as ggml's id), round half to even.
    const at::Tensor c127 = at::full_like(amax, 127.0f), zero = at::zeros_like(amax);
    const at::Tensor iscale = at::where(nonzero, at::div(c127, amax), zero);
    const at::Tensor q = at::round(xb * iscale);
    const at::Tensor scale = type == GgmlActivation::kQ8_K
                                 ? at::where(nonzero, at::div(at::ones_like(amax), iscale), zero)  // fp32 d
                                 : at::div(amax, c127).to(at::kHalf).to(at::kFloat);               // fp16 d
    return (q * scale).reshape(x.sizes());
}

at::Tensor ggml_round_activations(const at::Tensor& x, GgmlGrid weight) {
    return ggml_round_activations(x, ggml_grid_traits(weight).vec_dot);
}

}  // namespace saliq
