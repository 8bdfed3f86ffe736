// SliM-LLM (Huang et al. 2024): the Salience-Determined Bit Allocation of every linear of a block, and the grid fit of
// one group at its width (min-max, with the Salience-Weighted Quantizer Calibration's range search, or the 1-bit
// rule). Used by slim-llm (on GPTQ) and by the LWC methods with --bit-map slim (slim-llm-plus).
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "quant/method.h"

namespace saliq {

// Per linear (kLinearNames order), the widths [G] int64 of its groups: b-1 / b / b+1 with the average exactly b, the
// map of least KL between the quantized and the FP layer outputs on the block's calibration inputs (the block FP).
// Figures (the chosen k, each candidate's KL) go to stats["<linear>.slim"].
std::vector<at::Tensor> slim_bit_maps(const DecoderBlock& block, const BlockContext& context, nlohmann::json& stats);

// --bit-map FILE: the widths of block `layer`'s linears from a saliq_mixed folder (its model.safetensors) or any
// safetensors file with "<linear>.group_bits" [G] tensors, checked against the model: every linear present, G
// groups of `spec`, widths 1..8, averaging exactly spec.bits over the linear's weights. Throws FormatError.
std::vector<at::Tensor> read_bit_maps(const std::string& path, int64_t layer, const LlamaConfig& config,
                                      const QuantSpec& spec);

// One group's grid, w [rows, width] at `bits`: 1 bit: codes (w >= m) under scale 2a and zero 1/2 - m / 2a, which is
// sign(w - m) * a + m (m the mean, a the mean |w|); else min-max, and with `search` the range scaled per row by the
// best of 101 factors in [0.9, 1.1] under sum |q - w|^2.4, salient entries (z-score of w^2 / hinv_diag^2 above 2)
// weighted by `lambda`. Writes scale and zero [rows]; returns maxq.
int64_t slim_fit_group(const at::Tensor& w, const at::Tensor& hinv_diag, int bits, bool search, double lambda,
                       at::Tensor& scale, at::Tensor& zero);

// Bytes slim_bit_maps holds at its peak for a block of `config`: every linear's candidate bit maps are scored in one
// pass, so each keeps (in / g) / 2 - 1 dense fp32 copies of its weight (SBA's candidates), beside the seven Hessians.
// About 35 GiB for LLaMA-2-7B at g64: the memory check must see it.
uint64_t slim_search_bytes(const LlamaConfig& config, const QuantSpec& spec);

}  // namespace saliq
