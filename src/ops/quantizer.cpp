#include "saliq/quantizer.h"

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/lwc.h"
#include "saliq/strings.h"

namespace saliq {

int64_t QuantSpec::n_groups(int64_t in) const {
    const int64_t g = effective_group(in);
    return (in + g - 1) / g;
}

void QuantSpec::validate() const {
    if (grid != GgmlGrid::kNone) {
        const GgmlGridTraits& t = ggml_grid_traits(grid);
        if (bits != t.bits || group_size != t.sub_block || symmetric != !t.has_min)
            throw ConfigError(strprintf("%s stores %d-bit codes in groups of %lld (%s): say so or leave --bits and "
                                        "--group-size out", t.name, t.bits, (long long)t.sub_block,
                                        t.has_min ? "asymmetric" : "symmetric"));
        return;
    }
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        throw ConfigError(strprintf("unsupported bit width %d (saliq quantizes to 2, 3, 4 or 8 bits)", bits));
    if (group_size == 0 || group_size < -1)
        throw ConfigError(strprintf("group size %lld is invalid (use a positive size such as 32, 64, 128, or -1 for "
                                    "one group per row)",
                                    (long long)group_size));
}

std::string QuantSpec::describe() const {
    if (grid != GgmlGrid::kNone) return ggml_grid_traits(grid).name;
    return strprintf("W%d %s %s", bits, group_size < 0 ? "per-row" : ("g" + std::to_string(group_size)).c_str(),
                     symmetric ? "sym" : "asym");
}

int64_t QuantizedTensor::out_features() const { return codes.size(0); }
int64_t QuantizedTensor::in_features() const { return codes.size(1); }

int QuantizedTensor::max_bits() const {
    return group_bits.defined() ? static_cast<int>(group_bits.max().item<int64_t>()) : spec.bits;
}

double QuantizedTensor::average_bits() const {
    if (!group_bits.defined()) return spec.bits;
    const at::Tensor columns = at::bincount(g_idx.to(at::kCPU), {}, group_bits.size(0)).to(at::kDouble);
    return (columns * group_bits.to(at::kCPU).to(at::kDouble)).sum().item<double>() / static_cast<double>(in_features());
}

at::Tensor QuantizedTensor::dequantize() const {
    const at::Tensor s = expand_groups(scales, g_idx);
    at::Tensor w;
    if (offsets.defined()) {
        w = s * ggml_code_values(codes, spec.grid) + expand_groups(offsets, g_idx);
    } else {
        w = s * (codes.to(at::kFloat) - expand_groups(zeros, g_idx));
    }
    add_sparse(w, outliers);
    add_sparse(w, significant);
    return w;
}

SparsePart make_sparse_part(const at::Tensor& index, const at::Tensor& target, const at::Tensor& dense) {
    SparsePart part;
    if (!index.defined() || index.numel() == 0) return part;
    part.index = std::get<0>(at::sort(index.to(at::kLong).flatten()));
    const at::Tensor at_target = target.reshape({-1}).to(at::kFloat).index_select(0, part.index.to(target.device()));
    const at::Tensor at_dense = dense.reshape({-1}).to(at::kFloat).index_select(0, part.index.to(dense.device()));
    part.value = (at_target - at_dense.to(at_target.device())).to(at::kHalf).to(at::kFloat);
    if (!at::isfinite(part.value).all().item<bool>())
        throw NumericError("a sparse FP16 entry does not fit fp16 (|value| > 65504)");
    return part;
}

void add_sparse(at::Tensor& weight, const SparsePart& part) {
    if (!part.defined()) return;
    weight.view({-1}).index_add_(0, part.index.to(weight.device()), part.value.to(weight.device()).to(weight.scalar_type()));
}

at::Tensor natural_group_index(int64_t in, const QuantSpec& spec) {
    return at::div(at::arange(in, at::kLong), spec.effective_group(in), "floor");
}

at::Tensor expand_groups(const at::Tensor& per_group, const at::Tensor& g_idx) {
    return per_group.index_select(1, g_idx.to(per_group.device()));
}

void minmax_scale_zero(const at::Tensor& xmin_in, const at::Tensor& xmax_in, const QuantSpec& spec, at::Tensor& scale,
                       at::Tensor& zero) {
    const double maxq = static_cast<double>(spec.maxq());
    at::Tensor xmin = at::clamp_max(xmin_in.to(at::kFloat), 0.0);
    at::Tensor xmax = at::clamp_min(xmax_in.to(at::kFloat), 0.0);
    if (spec.symmetric) {
        // GPTQ mirrors the range only when xmin < 0, which halves the usable grid of an all-positive group;
        // we always mirror it.
        xmax = at::maximum(xmin.abs(), xmax);
        xmin = -xmax;
    }
    const at::Tensor both_zero = (xmin == 0) & (xmax == 0);
    xmin = at::where(both_zero, at::full_like(xmin, -1.0), xmin);
    xmax = at::where(both_zero, at::full_like(xmax, 1.0), xmax);
    scale = ((xmax - xmin) / maxq).to(at::kHalf).to(at::kFloat);
    // fp16 rounding can only underflow for absurdly small ranges; keep the scale positive.
    scale = at::clamp_min(scale, 6.1e-5);
    if (spec.symmetric) zero = at::full_like(scale, (maxq + 1.0) / 2.0);
    else zero = at::clamp(at::round(-xmin / scale), 0.0, maxq);
}

at::Tensor quantize_codes(const at::Tensor& w, const at::Tensor& scale, const at::Tensor& zero, int64_t maxq) {
    return at::clamp(at::round(w.to(at::kFloat) / scale) + zero, 0, static_cast<double>(maxq)).to(at::kByte);
}

void group_max_min(const at::Tensor& weight, const QuantSpec& spec, at::Tensor& gmax, at::Tensor& gmin) {
    const int64_t out = weight.size(0), in = weight.size(1), g = spec.effective_group(in), G = spec.n_groups(in);
    // Pad the short last group with copies of its first column: min/max stay those of the real columns.
    at::Tensor w = weight;
    if (G * g != in) w = at::cat({w, w.narrow(1, (G - 1) * g, 1).expand({out, G * g - in})}, 1);
    at::Tensor grouped = w.view({out, G, g});
    gmax = std::get<0>(grouped.max(2));
    gmin = std::get<0>(grouped.min(2));
}

QuantizedTensor quantize_rtn(const at::Tensor& weight, const QuantSpec& requested, const at::Tensor& importance) {
    const QuantSpec spec = spec_for_row(requested, weight.size(1));
    spec.validate();
    if (spec.grid != GgmlGrid::kNone) {
        const at::Tensor weights = importance.defined() ? importance.to(at::kCPU).to(at::kFloat) : at::Tensor();
        QuantizedTensor q = ggml_quantized(ggml_quantize_rows(weight, spec.grid, {}, {}, weights), spec.grid,
                                           weight.size(0), weight.size(1), "round-to-nearest");
        q.codes = q.codes.to(weight.device());
        q.scales = q.scales.to(weight.device());
        q.zeros = q.zeros.to(weight.device());
        q.offsets = q.offsets.to(weight.device());
        q.g_idx = q.g_idx.to(weight.device());
        return q;
    }
    const at::Tensor w = weight.to(at::kFloat);
    at::Tensor gmax, gmin, scale, zero;
    group_max_min(w, spec, gmax, gmin);
    if (importance.defined()) return lwc_finalize(w, lwc_search_params(w, gmax, gmin, spec, importance), spec);
    minmax_scale_zero(gmin, gmax, spec, scale, zero);  // [out, G]
    return make_quantized(w, scale, zero, natural_group_index(w.size(1), spec), spec);
}

QuantizedTensor make_quantized(const at::Tensor& weight, const at::Tensor& scales, const at::Tensor& zeros,
                               const at::Tensor& g_idx, const QuantSpec& spec) {
    QuantizedTensor q;
    q.spec = spec;
    q.scales = scales.to(at::kFloat).contiguous();
    q.zeros = zeros.to(at::kFloat).contiguous();
    q.g_idx = g_idx.to(at::kLong).to(weight.device()).contiguous();
    q.codes = quantize_codes(weight, expand_groups(q.scales, q.g_idx), expand_groups(q.zeros, q.g_idx), spec.maxq());
    return q;
}

QuantSpec spec_for_row(const QuantSpec& spec, int64_t in) {
    if (spec.grid == GgmlGrid::kNone) return spec;
    const GgmlGrid grid = ggml_grid_for_row(spec.grid, in);
    if (grid == GgmlGrid::kNone)
        throw ConfigError(strprintf("--grid %s: rows of %lld weights fit no GGML block type (llama.cpp would keep "
                                    "them in F16); use the uniform grid for this model",
                                    ggml_grid_traits(spec.grid).name, (long long)in));
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    QuantSpec s;
    s.grid = grid;
    s.bits = t.bits;
    s.group_size = t.sub_block;
    s.symmetric = !t.has_min;
    return s;
}

QuantizedTensor ggml_quantized(const at::Tensor& blocks, GgmlGrid grid, int64_t out, int64_t in,
                               const std::string& origin) {
    const GgmlGridTraits& t = ggml_grid_traits(grid);
    GgmlDecoded d = ggml_decode(blocks, grid, in, origin);
    if (d.codes.size(0) != out)
        throw FormatError(origin, strprintf("%s blocks hold %lld rows, not %lld", t.name, (long long)d.codes.size(0),
                                            (long long)out));
    QuantizedTensor q;
    q.spec.bits = t.bits;
    q.spec.group_size = t.sub_block;
    q.spec.symmetric = !t.has_min;
    q.spec.grid = grid;
    q.codes = d.codes;
    q.scales = d.scales;
    q.offsets = d.offsets;
    q.zeros = at::where(d.scales == 0, at::zeros_like(d.scales), -d.offsets / at::where(d.scales == 0, at::ones_like(d.scales), d.scales));
    q.g_idx = natural_group_index(in, q.spec);
    q.ggml_blocks = blocks.to(at::kCPU).contiguous();
    return q;
}

}  // namespace saliq
