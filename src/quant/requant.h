// ReQuant (Hu et al. 2025; methods_formats_eval.md §1.4) on top of any uniform-grid method: W = Q(W_dense) +
// S_outlier + S_significant, both sparse parts FP16. The pipeline takes the outliers out of each linear before the
// method quantizes it (plan_outliers, largest_magnitude_index) and, after the last block, detaches the significant
// weights by PQI (detach_significant).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "saliq/quantize.h"
#include "saliq/tokenizer.h"

namespace saliq {

// Self-adaptive outlier ratios (ReQuant's Algorithm 1; its exact criterion is not published): each linear may keep
// 0, 1/4, 1/2, 1, 3/2, 2, 3 or 4 times the global ratio; the choice minimises the summed squared error of
// re-quantizing the remaining weights (RTN with the run's grid, the outliers exact) under the global budget
// (Lagrangian bisection). Returns the outlier count of every linear (its name -> count); figures go to `stats`.
std::map<std::string, int64_t> plan_outliers(const Checkpoint& checkpoint, const QuantizeOptions& options,
                                             nlohmann::json& stats);

// Flat positions (row * in + col, ascending) of the k largest-magnitude entries of `weight` [out, in].
at::Tensor largest_magnitude_index(const at::Tensor& weight, int64_t k);

// ReQuant's Algorithm 2: `options.sparse.steps` rounds; each computes the PQI of every weight along the path from
// the FP model to the current quantized one (`blocks`: every block's finished linears, outliers included), and
// restores the FP value of the top 1/steps of the significant budget by |PQI| among the weights not yet sparse.
// Returns each linear's significant part (name -> SparsePart, values added to the quantized linear's weight, LoRA
// included); figures (F before and after each round) go to `stats`.
std::map<std::string, SparsePart> detach_significant(const Checkpoint& checkpoint, const Tokenizer& tokenizer,
                                                     const QuantizeOptions& options,
                                                     const std::vector<BlockResult>& blocks, nlohmann::json& stats,
                                                     const ProgressFn& progress);

// The options ReQuant accepts with the others (percentages, steps, a uniform grid); throws ConfigError.
void validate_sparse_options(const QuantizeOptions& options);

}  // namespace saliq
