// The GPTQ solver shared by the methods built on it (gptq, slim-llm): Hessians from a block's real inputs, the upper
// Cholesky factor of H^-1, and the column-by-column rounding with error feedback, where how each group's grid is
// fitted is the caller's.
#pragma once

#include <functional>
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
