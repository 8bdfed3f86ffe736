// Uniform affine group quantization: groups of `group_size` consecutive input columns of each output row, one
// scale and integer zero point per (row, group); w_hat = s * (q - z), q in [0, 2^bits - 1].
// One implementation that every method (RTN, GPTQ, LWC, ApiQ) and the packed format reuse.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "saliq/ggml_grid.h"

namespace saliq {

struct QuantSpec {
    int bits = 2;
    int64_t group_size = 64;  // -1: one group per row
    bool symmetric = false;
    // A GGML block type (ggml_grid.h) instead of uniform groups: bits and group_size are then the type's code width
    // and sub-block, and the scales follow the type's own quantization.
    GgmlGrid grid = GgmlGrid::kNone;

    int64_t maxq() const { return (int64_t{1} << bits) - 1; }
    // Groups per row for rows of `in` columns (the last group may be shorter).
    int64_t n_groups(int64_t in) const;
    int64_t effective_group(int64_t in) const { return group_size < 0 ? in : group_size; }
    // Throws ConfigError for unsupported bits or group sizes.
    void validate() const;
    std::string describe() const;  // "W2 g64 asym"
};

// A sparse FP16 part of a weight (ReQuant's dense-and-sparse decomposition, methods_formats_eval.md §1.4): entries
// at flat positions row * in + col, added to the dense grid's values. Empty when index is undefined.
struct SparsePart {
    at::Tensor index;  // [nnz] int64, strictly ascending, in [0, out * in)
    at::Tensor value;  // [nnz] fp32, each representable in fp16 (the folder stores fp16)

    bool defined() const { return index.defined() && index.numel() > 0; }
    int64_t nnz() const { return index.defined() ? index.numel() : 0; }
};

// The sparse part that makes `dense` [out, in] equal to `target` at the flat positions `index` (any order):
// value = fp16(target - dense) there. Throws NumericError when a value does not fit fp16.
SparsePart make_sparse_part(const at::Tensor& index, const at::Tensor& target, const at::Tensor& dense);
// Adds a sparse part to `weight` [out, in] in place.
void add_sparse(at::Tensor& weight, const SparsePart& part);

// A quantized [out, in] weight. scales and zeros are per (row, group); g_idx maps each input column to its group
// (k / g in natural order; a permutation of that under GPTQ act-order).
struct QuantizedTensor {
    at::Tensor codes;   // [out, in] uint8, values in [0, maxq]
    at::Tensor scales;  // [out, G] fp32 (values representable in fp16: the packed format stores fp16)
    at::Tensor zeros;   // [out, G] fp32, integer-valued, in [0, maxq]
    at::Tensor g_idx;   // [in] int64
    // Mixed precision (SliM-LLM): each group's code width, [G] int64; undefined: spec.bits for every group. Zero
    // points of 1-bit groups are fractional (sign(w - m) a + m is (c - z) s with s = 2a, z = 1/2 - m / 2a).
    at::Tensor group_bits;
    // ReQuant's FP16 sparse parts, added to the grid's values: outliers taken out before quantization and the
    // significant weights PQI detached after it. Empty for every other method.
    SparsePart outliers;
    SparsePart significant;
    // On a GGML grid (spec.grid): the raw blocks [out, row_bytes] that codes, scales and offsets were decoded from,
    // and the offsets [out, G] fp32 with ŵ = s·v(code) + offset (v: IQ4_NL's levels, else the code itself); zeros
    // then only describe them (−offset / s). Undefined for uniform groups.
    at::Tensor ggml_blocks;
    at::Tensor offsets;
    QuantSpec spec;

    int64_t out_features() const;
    int64_t in_features() const;
    int max_bits() const;         // the widest code: spec.bits, or the largest group width
    double average_bits() const;  // code bits per weight (each group's width times its columns, over in)
    int64_t sparse_count() const { return outliers.nnz() + significant.nnz(); }
    at::Tensor dequantize() const;  // [out, in] fp32, the sparse parts included
};

// The spec a row of `in` weights is quantized with: `spec` itself for uniform groups; on a GGML grid, the type the
// row takes (llama-quantize's fallback where the type's blocks do not divide it) with its bits and sub-block.
// ConfigError when no GGML type holds the row.
QuantSpec spec_for_row(const QuantSpec& spec, int64_t in);

// Group index of each column in natural order: [in] int64 with k / g.
at::Tensor natural_group_index(int64_t in, const QuantSpec& spec);

// Per-group max and min of weight [out, in]: [out, G] each (a short last group uses only its own columns).
void group_max_min(const at::Tensor& weight, const QuantSpec& spec, at::Tensor& gmax, at::Tensor& gmin);

// Expands per-group values [out, G] to per-column values [out, in] through g_idx.
at::Tensor expand_groups(const at::Tensor& per_group, const at::Tensor& g_idx);

// Scale and zero of a set of rows from their min and max (the GPTQ repository's convention: the range is widened to
// include 0; an all-zero row gets [-1, 1]; symmetric uses [-max|x|, max|x|] and z = 2^(bits-1)). xmin/xmax: [rows] or [rows, G].
// Scales are rounded to fp16 precision so the packed file reproduces them exactly.
void minmax_scale_zero(const at::Tensor& xmin, const at::Tensor& xmax, const QuantSpec& spec, at::Tensor& scale,
                       at::Tensor& zero);

// Codes for w [rows, cols] under per-column scale/zero [rows, cols] (or broadcastable): clamp(round(w/s) + z).
at::Tensor quantize_codes(const at::Tensor& w, const at::Tensor& scale, const at::Tensor& zero, int64_t maxq);

// Round-to-nearest with min-max groups: the RTN method and the fit every other method starts from. On a GGML grid
// (spec.grid), the grid's own round-to-nearest (ggml_grid.h) for the type the row takes. With `importance` [in]
// (the columns' input mean squares): each group's range is the clipping pair lwc_search_params finds (uniform
// grid), or each block's scales are searched under it (GGML grid, as llama-quantize with an importance matrix).
QuantizedTensor quantize_rtn(const at::Tensor& weight, const QuantSpec& spec, const at::Tensor& importance = {});

// A tensor on a GGML grid from its raw blocks (checked; FormatError(origin) when they disagree with [out, in]).
QuantizedTensor ggml_quantized(const at::Tensor& blocks, GgmlGrid grid, int64_t out, int64_t in,
                               const std::string& origin);

// Packs codes computed elsewhere (e.g. by GPTQ) with their group parameters.
QuantizedTensor make_quantized(const at::Tensor& weight, const at::Tensor& scales, const at::Tensor& zeros,
                               const at::Tensor& g_idx, const QuantSpec& spec);

}  // namespace saliq
