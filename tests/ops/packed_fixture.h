// A random packed-layout weight for the packed-matmul tests (CPU and CUDA).
#pragma once

#include <ATen/ATen.h>

#include "saliq/quantizer.h"

namespace saliq {

// A random quantized [out, in] weight; act_order permutes which columns share a group, as GPTQ's act-order does.
inline QuantizedTensor random_quantized(int bits, int64_t out, int64_t in, int64_t group_size, bool act_order, int seed) {
    at::manual_seed(seed);
    QuantizedTensor q;
    q.spec.bits = bits;
    q.spec.group_size = group_size;
    const int64_t G = q.spec.n_groups(in);
    q.codes = at::randint(0, q.spec.maxq() + 1, {out, in}, at::kLong).to(at::kByte);
    q.scales = at::rand({out, G}) * 0.1 + 0.01;
    q.zeros = at::randint(0, q.spec.maxq() + 1, {out, G}, at::kLong).to(at::kFloat);
    q.g_idx = natural_group_index(in, q.spec);
    if (act_order) q.g_idx = q.g_idx.index_select(0, at::randperm(in, at::kLong));
    return q;
}

}  // namespace saliq
