// The GPTQ solver shared by the methods built on it (gptq, slim-llm): Hessians from a block's real inputs, the upper
// Cholesky factor of H^-1, and the column-by-column rounding with error feedback, where how each group's grid is
// fitted is the caller's.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "quant/method.h"

namespace saliq {

// Hessians H = 2 X^T X / N of the linears `indices` of `block`, from one pass over the block's inputs (up to their
// input only, when they all read one tensor). Linears that read the same tensor get equal copies of one Hessian.
// Entries of other linears stay undefined.
std::vector<at::Tensor> capture_hessians(const DecoderBlock& block, const BlockContext& context,
                                         const std::vector<int>& indices);

// The Hessians of a block's true-sequential groups, taken in turn as the caller quantizes group after group, and then
// the block's outputs. Each pass starts from where the previous one left off instead of from the block's input: the
// attention output (o's input) and then the residual after attention are kept between passes, in the buffer that
// finally holds the outputs. The block's attention runs once instead of four times, and its linears' work drops from
// about 2.2-2.4 block forwards (SmolLM2-135M, LLaMA-2-7B) to 1.5 (q, k, v, o and down once; gate and up twice), with
// no buffer beyond the pipeline's own. Results are the same as
// capture_hessians per group and context.run at the end, bit for bit. Kept only when the activation buffers are
// stored in the compute dtype and o's input is hidden-wide; otherwise every pass starts from the input.
class SequentialHessians {
public:
    SequentialHessians(const DecoderBlock& block, const BlockContext& context);
    // As capture_hessians(block, context, indices) with the block's linears as they are now. A kept stage is used
    // only while the linears it was computed with are still the block's; otherwise the pass starts from the input.
    std::vector<at::Tensor> next(const std::vector<int>& indices);
    // The block's outputs over the context's inputs (context.run's result), from the kept residual when there is one.
    at::Tensor outputs();

private:
    enum Kept { kNothing, kAttention, kResidual };
    // The block's hidden states at `level` (o's input, or the residual after attention) for windows [i, i + m),
    // from the kept stage or the input; with `keep`, also written to the buffer.
    at::Tensor stage(Kept level, int64_t i, int64_t m, bool keep);
    bool kept_still_valid() const;

    const DecoderBlock& block_;
    const BlockContext& context_;
    bool can_keep_ = false;
    Kept kept_ = kNothing;
    at::Tensor buffer_;  // [N, T, H] in the storage (= compute) dtype
    std::array<std::shared_ptr<Linear>, kNumLinears> kept_with_;  // the linears the kept stage was computed with
};

// The linears of a block in the order their Hessians are taken: true-sequential [k, v, q] -> [o] -> [up, gate] ->
// [down], each group seeing its quantized predecessors; or all at once.
std::vector<std::vector<int>> gptq_linear_order(bool true_sequential);

// What the solver holds for the widest linear input n (its fp32 Hessian becomes fp64, then two fp64 factors at a
// time, then the fp32 inverse factor: about 20 n^2 bytes), plus the fp32 Hessians of a group of three hidden-wide
// linears.
uint64_t gptq_workspace_bytes(const LlamaConfig& config);

// Group-aware reordering (GAR, Gafni et al. 2025; GPTQModel's act_group_aware): groups of `group` columns by their
// largest diag(H), descending, and the columns inside each by theirs; a partial last group stays last. Every run of
// `group` positions of the result is one natural group, so the stored g_idx stays k / group.
at::Tensor group_aware_order(const at::Tensor& diag, int64_t group);

// Upper Cholesky factor of H^-1 (fp64), raising the damping (a fraction of mean(diag H)) until H is positive definite.
// Takes H (the caller's only reference): at most two in x in fp64 matrices are alive at a time.
at::Tensor inverse_cholesky_upper(at::Tensor H, double damp, const std::string& name, double& used_damp);

// The grid of one group, fitted when the solver reaches its first column: w holds the group's columns [rows, width]
// after every earlier update, hinv_diag the matching diagonal of the factor U. Writes scale and zero [rows] (codes
// are clamp(round(w / scale + zero), 0, maxq); zero may be fractional) and returns maxq.
using GroupFit = std::function<int64_t(const at::Tensor& w, const at::Tensor& hinv_diag, int64_t group,
                                       at::Tensor& scale, at::Tensor& zero)>;

// GPTQ on `weight` [out, in] with Hessian H (moved in). `fit` null: min-max groups of `spec`. Per-linear figures
// (loss, damping, dead columns) go to stats[name]. `outliers` (ReQuant's S_outlier, taken out of `weight`): those
// weights keep their error-compensated values exactly (SpQR's treatment), in the result's outliers.
QuantizedTensor gptq_quantize(const at::Tensor& weight, at::Tensor H, const QuantSpec& spec, const GptqOptions& o,
                              const std::string& name, nlohmann::json& stats, const GroupFit& fit = nullptr,
                              const SparsePart* outliers = nullptr);

}  // namespace saliq
