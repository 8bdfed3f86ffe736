// GPTQ (Frantar et al. 2022), after the reference gptq.py: Hessian H = 2 X X^T / N from the block's real inputs,
// dead columns, damping, upper Cholesky factor of H^-1, lazy column batches, optional act-order.
#include "quant/gptq_solver.h"

#include <algorithm>
#include <utility>

#include <ATen/ATen.h>

#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/strings.h"
#include "saliq/threads.h"

namespace saliq {

std::vector<std::vector<int>> gptq_linear_order(bool true_sequential) {
    if (!true_sequential) return {kAllLinears};
    return {{kKProj, kVProj, kQProj}, {kOProj}, {kUpProj, kGateProj}, {kDownProj}};
}

uint64_t gptq_workspace_bytes(const LlamaConfig& c) {
    const auto n = static_cast<uint64_t>(std::max({c.hidden_size, c.intermediate_size, c.n_heads * c.head_dim}));
    const auto h = static_cast<uint64_t>(c.hidden_size);
    return 20 * n * n + 28 * h * h;  // the solver; three fp64 sums while captured, one batch's product, fp32 results
}

namespace {
// Linears that read the same tensor (q, k, v: the normed input; gate, up: the normed attention output) share one
// Hessian: it is taken once, for the first of them.
int input_stage(int linear) {
    switch (linear) {
    case kQProj: case kKProj: case kVProj: return 0;
    case kOProj: return 1;
    case kGateProj: case kUpProj: return 2;
    default: return 3;
    }
}
}  // namespace

std::vector<at::Tensor> capture_hessians(const DecoderBlock& block, const BlockContext& context,
                                         const std::vector<int>& indices) {
    return SequentialHessians(block, context).next(indices);
}

SequentialHessians::SequentialHessians(const DecoderBlock& block, const BlockContext& context)
    : block_(block), context_(context) {
    const LlamaConfig& c = *context.config;
    can_keep_ = context.inputs->scalar_type() == block.input_norm.scalar_type() && c.n_heads * c.head_dim == c.hidden_size;
}

bool SequentialHessians::kept_still_valid() const {
    // Attention depends on q, k and v; the residual after it on o too.
    const std::vector<int> inputs_of = kept_ == kAttention ? std::vector<int>{kQProj, kKProj, kVProj}
                                                           : std::vector<int>{kQProj, kKProj, kVProj, kOProj};
    for (int i : inputs_of)
        if (block_.linears[i] != kept_with_[i]) return false;
    return true;
}

at::Tensor SequentialHessians::stage(Kept level, int64_t i, int64_t m, bool keep) {
    if (kept_ == level) return buffer_.narrow(0, i, m);
    const at::Tensor x = compute_slice(*context_.inputs, i, m, block_);
    at::Tensor out = kept_ == kAttention ? buffer_.narrow(0, i, m)
                                         : block_linear_input(block_, *context_.config, *context_.rope, x, kOProj);
    if (level == kResidual) out = x + block_.linears[kOProj]->forward(out);  // as block_forward
    if (keep) buffer_.narrow(0, i, m).copy_(out);
    return out;
}

std::vector<at::Tensor> SequentialHessians::next(const std::vector<int>& indices) {
    // Each batch's X^T X is taken in fp32 and summed in fp64, so the sums do not depend on how the windows are split
    // (over batches, or over the ranks of a distributed run, whose shards are whole batches): the fp64 sum of a few
    // fp32 products is exact or off in bits the final fp32 rounding drops, and GPTQ's output stays the same.
    std::vector<at::Tensor> sums(kNumLinears);
    std::vector<int64_t> counts(kNumLinears, 0);
    std::vector<int> taken;       // the first linear of each distinct input among `indices`
    std::vector<int> owner(kNumLinears, -1);
    for (int index : indices) {
        for (int t : taken)
            if (input_stage(t) == input_stage(index)) owner[index] = t;
        if (owner[index] < 0) {
            owner[index] = index;
            taken.push_back(index);
        }
    }
    const at::TensorOptions options = block_.input_norm.options().dtype(at::kDouble);
    auto add = [&sums, &counts](int index, const at::Tensor& x) {
        const at::Tensor flat = x.reshape({-1, x.size(-1)}).to(at::kFloat);
        sums[index].add_(at::mm(flat.t(), flat));
        counts[index] += x.size(0);  // GPTQ's N counts sequences
    };
    for (int index : taken) {
        const int64_t in = block_.linears[index]->in_features();
        sums[index] = at::zeros({in, in}, options);
    }
    if (kept_ != kNothing && !kept_still_valid()) kept_ = kNothing;
    const at::Tensor& x = *context_.inputs;
    const LlamaConfig& c = *context_.config;
    if (taken.size() == 1 && input_stage(taken[0]) == 0) {
        const int64_t n = x.size(0), b = std::max<int64_t>(1, context_.options->batch_size);
        for (int64_t i = 0; i < n; i += b)
            add(taken[0], block_linear_input(block_, c, *context_.rope, compute_slice(x, i, std::min(b, n - i), block_),
                                             taken[0]));
    } else if (taken.size() == 1) {
        // One input (true-sequential's groups): computed up to that point only, from the stage kept by the last pass.
        const int index = taken[0];
        const Kept level = index == kOProj ? kAttention : kResidual;
        const bool keep = can_keep_ && kept_ != level;
        if (keep && !buffer_.defined()) buffer_ = at::empty_like(x);
        const int64_t n = x.size(0), b = std::max<int64_t>(1, context_.options->batch_size);
        for (int64_t i = 0; i < n; i += b) {
            adapt_compute_threads();
            const at::Tensor h = stage(level, i, std::min(b, n - i), keep);
            if (level == kAttention) {
                add(index, h);
                continue;
            }
            const at::Tensor y = rms_norm(h, block_.post_norm, c.rms_norm_eps);
            add(index, index == kDownProj ? mlp_hidden(block_, y) : y);
        }
        if (keep) {
            kept_ = level;
            kept_with_ = block_.linears;
        }
    } else {
        DecoderBlock hooked = block_;
        for (int index : taken)
            hooked.linears[index] = std::make_shared<CapturingLinear>(
                block_.linears[index], [&add, index](const at::Tensor& a) { add(index, a); });
        context_.run(hooked, x);
    }
    std::vector<at::Tensor> reduced;
    for (int index : taken) reduced.push_back(sums[index]);
    dist_all_reduce_sum(reduced);  // a distributed run: every rank's windows
    std::vector<at::Tensor> out(kNumLinears);
    for (int index : taken) {
        const int64_t n = dist_sum(counts[index]);
        out[index] = sums[index].mul_(2.0 / static_cast<double>(n)).to(at::kFloat);
        sums[index].reset();
    }
    for (int index : indices)  // a copy each: callers damp their Hessian in place
        if (owner[index] != index) out[index] = out[owner[index]].clone();
    return out;
}

at::Tensor SequentialHessians::outputs() {
    if (kept_ == kResidual && kept_still_valid()) {
        // The block's MLP on the kept residual, written over it: the buffer becomes the outputs.
        const LlamaConfig& c = *context_.config;
        const int64_t n = buffer_.size(0), b = std::max<int64_t>(1, context_.options->batch_size);
        for (int64_t i = 0; i < n; i += b) {
            adapt_compute_threads();
            at::Tensor h = buffer_.narrow(0, i, std::min(b, n - i));
            h.copy_(h + mlp_forward(block_, rms_norm(h, block_.post_norm, c.rms_norm_eps)));  // as block_forward
        }
        kept_ = kNothing;
        return std::move(buffer_);
    }
    kept_ = kNothing;
    buffer_.reset();
    return context_.run(block_, *context_.inputs);
}

at::Tensor group_aware_order(const at::Tensor& diag, int64_t group) {
    const int64_t cols = diag.size(0), full = cols / group;
    const auto [values, local] = at::sort(diag.narrow(0, 0, full * group).view({full, group}), /*stable=*/true,
                                          /*dim=*/1, /*descending=*/true);
    const at::Tensor order = std::get<1>(at::sort(values.select(1, 0), /*stable=*/true, 0, /*descending=*/true));
    const at::Tensor starts = at::arange(full, local.options()).mul_(group).unsqueeze(1);
    at::Tensor perm = local.add(starts).index_select(0, order).reshape({-1});
    // A partial last group keeps its columns, in natural order, at the end (GPTQModel's tail).
    if (full * group < cols) perm = at::cat({perm, at::arange(full * group, cols, perm.options())});
    return perm;
}

// Frees each factor once the next exists (down_proj of a 7B model: in = 11008, 0.97 GB each; the plain sequence
// held five).
at::Tensor inverse_cholesky_upper(at::Tensor H, double damp, const std::string& name, double& used_damp) {
    const double diag_mean = H.diagonal().mean().item<double>();
    double added = 0;  // damping currently on H's diagonal, as a multiple of diag_mean
    for (int attempt = 0; attempt < 10; ++attempt) {
        used_damp = damp + 0.01 * attempt;
        H.diagonal().add_((used_damp - added) * diag_mean);
        added = used_damp;
        auto [L, info] = at::linalg_cholesky_ex(H);
        if (info.item<int64_t>() != 0) continue;
        H.reset();
        at::Tensor Hinv = at::cholesky_inverse(L);
        L.reset();
        auto [U, info2] = at::linalg_cholesky_ex(Hinv, /*upper=*/true);
        if (info2.item<int64_t>() == 0) return U;
        // Rare: H^-1 lost definiteness in rounding. Recover the damped H from it and damp more.
        U.reset();
        H = at::linalg_inv(Hinv);
    }
    throw NumericError("GPTQ: the Hessian of " + name + " is not positive definite even with damping " +
                       strprintf("%.2f", used_damp) + " (too few or degenerate calibration inputs?)");
}

QuantizedTensor gptq_quantize(const at::Tensor& weight, at::Tensor H, const QuantSpec& requested, const GptqOptions& o,
                              const std::string& name, nlohmann::json& stats, const GroupFit& fit,
                              const SparsePart* outliers) {
    const int64_t rows = weight.size(0), cols = weight.size(1);
    const QuantSpec spec = spec_for_row(requested, cols);
    // On a GGML grid a "group" is a whole block (a k-quant's super-block of 256): its sub-block scales are fitted
    // together, against the block's fp16 scale, when its first column comes up.
    const GgmlGrid grid = spec.grid;
    if (grid != GgmlGrid::kNone && (fit || o.act_order || (outliers != nullptr && outliers->defined())))
        throw ConfigError("GPTQ on a GGML grid: no bit map, --act-order or sparse outliers");
    const GgmlGridTraits& grid_traits = ggml_grid_traits(grid);
    const int64_t g = grid != GgmlGrid::kNone ? grid_traits.block : spec.effective_group(cols);
    at::Tensor W = weight.to(at::kFloat).clone();
    H = H.to(at::kDouble);  // the caller's fp32 H was moved in: only the fp64 copy stays

    const at::Tensor dead = H.diagonal() == 0;
    const int64_t n_dead = dead.sum().item<int64_t>();
    if (n_dead > 0) {
        H.diagonal().masked_fill_(dead, 1.0);
        W.masked_fill_(dead.unsqueeze(0).to(W.device()), 0.0);
    }
    // ReQuant's outliers (SpQR's treatment): they keep their updated value exactly, so their error is zero and
    // nothing is fed forward for them; they stay out of their group's range.
    // `weight` is W_dense (the outliers zeroed); they are put back here, so their error-compensated value is the FP
    // weight plus the feedback they receive.
    at::Tensor keep, kept;
    if (outliers != nullptr && outliers->defined()) {
        const at::Tensor index = outliers->index.to(W.device());
        W.view({-1}).index_copy_(0, index, outliers->value.to(W.device()).to(W.scalar_type()));
        keep = at::zeros({rows, cols}, W.options().dtype(at::kBool));
        keep.view({-1}).index_fill_(0, index, true);
        kept = at::zeros_like(W);
    }
    const bool group_order = o.group_order.value_or(false) && !o.act_order;  // act-order, when asked for, wins
    at::Tensor perm, invperm;
    const bool reorders = o.act_order || (group_order && g < cols);
    if (reorders) {
        perm = o.act_order ? at::argsort(H.diagonal(), 0, /*descending=*/true) : group_aware_order(H.diagonal(), g);
        W = W.index_select(1, perm);
        if (keep.defined()) keep = keep.index_select(1, perm.to(W.device()));
        H = H.index_select(0, perm).index_select(1, perm);
        invperm = at::argsort(perm);
    }
    // On a grid, each block's scales are searched under the columns' importance diag(H) (llama-quantize's imatrix
    // weighting, with GPTQ's own Hessian).
    const at::Tensor importance = grid != GgmlGrid::kNone ? H.diagonal().to(at::kCPU).to(at::kFloat).clone() : at::Tensor();
    double used_damp = o.damp;
    const at::Tensor Hinv = inverse_cholesky_upper(std::move(H), o.damp, name, used_damp).to(W.device()).to(at::kFloat);

    // Blocks hold whole groups, so each group's scale is fitted on its columns after every earlier update. Under the
    // group-aware order, each run of g columns is one natural group (`natural` maps position to it).
    const at::Tensor natural = group_order && reorders ? perm.to(at::kCPU) : at::Tensor();
    const int64_t block = g >= o.block_size ? g : std::max<int64_t>(1, o.block_size / g) * g;
    const int64_t G = spec.n_groups(cols);
    at::Tensor scales = at::zeros({rows, G}, W.options());
    at::Tensor zeros = at::zeros({rows, G}, W.options());
    at::Tensor codes = at::zeros({rows, cols}, W.options().dtype(at::kByte));
    at::Tensor loss = at::zeros({}, W.options());
    at::Tensor scale, zero;
    at::Tensor blocks, block_scales, block_offsets;  // grid: the raw blocks, and the current block's per-column s, o
    if (grid != GgmlGrid::kNone) blocks = at::zeros({rows, cols / g * grid_traits.block_bytes}, at::kByte);
    double maxq = static_cast<double>(spec.maxq());
    for (int64_t i1 = 0; i1 < cols; i1 += block) {
        const int64_t i2 = std::min(i1 + block, cols), count = i2 - i1;
        at::Tensor W1 = W.narrow(1, i1, count).clone();
        at::Tensor Err1 = at::zeros_like(W1);
        at::Tensor Hinv1 = Hinv.narrow(0, i1, count).narrow(1, i1, count);
        for (int64_t i = 0; i < count; ++i) {
            const int64_t col = i1 + i;
            if (col % g == 0) {
                const int64_t width = std::min(g, cols - col);
                const int64_t group_index = natural.defined() ? natural[col].item<int64_t>() / g : col / g;
                at::Tensor group = W1.narrow(1, i, width);
                if (keep.defined()) group = group.masked_fill(keep.narrow(1, col, width), 0.0);
                if (grid != GgmlGrid::kNone) {
                    // The group-aware order also orders columns within a group; sub-blocks are natural runs, so the
                    // block is fitted in natural order and its scales read back per position.
                    const at::Tensor offset = natural.defined()
                                                  ? (natural.narrow(0, col, width) - group_index * g).to(W.device())
                                                  : at::arange(width, W.options().dtype(at::kLong));
                    const at::Tensor in_order = at::empty_like(group).index_copy_(1, offset, group);
                    const at::Tensor weights = at::empty({width}, importance.options())
                                                   .index_copy_(0, offset.to(at::kCPU), importance.narrow(0, col, width));
                    const at::Tensor b = ggml_quantize_rows(in_order, grid, {}, {}, weights);
                    const GgmlDecoded d = ggml_decode(b, grid, width, name);
                    blocks.narrow(1, group_index * grid_traits.block_bytes, grid_traits.block_bytes).copy_(b);
                    block_scales = d.scales.repeat_interleave(grid_traits.sub_block, 1).to(W.device()).index_select(1, offset);
                    block_offsets = d.offsets.repeat_interleave(grid_traits.sub_block, 1).to(W.device()).index_select(1, offset);
                } else if (fit) {
                    maxq = static_cast<double>(fit(group, Hinv1.diagonal().narrow(0, i, width), group_index, scale, zero));
                } else {
                    minmax_scale_zero(std::get<0>(group.min(1)), std::get<0>(group.max(1)), spec, scale, zero);
                }
                if (grid == GgmlGrid::kNone) {
                    scales.select(1, group_index).copy_(scale);
                    zeros.select(1, group_index).copy_(zero);
                }
            }
            at::Tensor w = W1.select(1, i);
            at::Tensor q, deq;
            if (grid != GgmlGrid::kNone) {
                const at::Tensor s = block_scales.select(1, col % g), m = block_offsets.select(1, col % g);
                q = ggml_nearest_codes(w, s, m, grid);
                deq = s * ggml_code_values(q, grid) + m;
            } else {
                // A fitted grid may have a fractional zero (1-bit groups); min-max zeros are integers, added after
                // rounding as gptq.py does.
                q = at::clamp(fit ? at::round(w / scale + zero) : at::round(w / scale) + zero, 0.0, maxq);
                deq = scale * (q - zero);
            }
            codes.select(1, col).copy_(q);
            const at::Tensor d = Hinv1[i][i];
            at::Tensor diff = w - deq;
            if (keep.defined()) {
                const at::Tensor mask = keep.select(1, col);
                kept.select(1, col).copy_(at::where(mask, w, at::zeros_like(w)));
                diff = diff.masked_fill(mask, 0.0);
            }
            at::Tensor err = diff / d;
            W1.narrow(1, i, count - i).addr_(err, Hinv1[i].narrow(0, i, count - i), /*beta=*/1, /*alpha=*/-1);
            Err1.select(1, i).copy_(err);
        }
        loss += Err1.pow(2).sum() / 2.0;  // sum of (w - q)^2 / (2 d^2), gptq.py's Losses
        if (i2 < cols) W.narrow(1, i2, cols - i2).sub_(at::matmul(Err1, Hinv.narrow(0, i1, count).narrow(1, i2, cols - i2)));
    }

    if (grid != GgmlGrid::kNone) {
        const at::Tensor natural_codes = reorders ? codes.index_select(1, invperm) : codes;
        QuantizedTensor result = ggml_quantized(ggml_replace_codes(blocks, grid, natural_codes), grid, rows, cols, name);
        for (at::Tensor* t : {&result.codes, &result.scales, &result.zeros, &result.offsets, &result.g_idx})
            *t = t->to(W.device());
        stats[name] = {{"gptq_loss", loss.item<double>()}, {"damp", used_damp}, {"dead_columns", n_dead},
                       {"grid", grid_traits.name}};
        return result;
    }
    QuantizedTensor result;
    result.spec = spec;
    result.scales = scales;
    result.zeros = zeros;
    if (o.act_order) {
        result.codes = codes.index_select(1, invperm).contiguous();
        // Column perm[j] was quantized j-th, in group j / g.
        result.g_idx = at::empty({cols}, at::kLong).to(W.device());
        result.g_idx.index_copy_(0, perm, at::div(at::arange(cols, perm.options()), g, "floor"));
    } else {
        result.codes = reorders ? codes.index_select(1, invperm).contiguous() : codes;
        result.g_idx = natural_group_index(cols, spec).to(W.device());
    }
    if (keep.defined())
        result.outliers = make_sparse_part(outliers->index, reorders ? kept.index_select(1, invperm) : kept,
                                           result.dequantize());
    stats[name] = {{"gptq_loss", loss.item<double>()}, {"damp", used_damp}, {"dead_columns", n_dead}};
    return result;
}

}  // namespace saliq
