// SliM-LLM (Huang et al. 2024; slim_gptq.py, bitsearch.py, mixed_quantizer.py of the official code): GPTQ with
// group-wise mixed precision, the average width of every linear exactly b (the allocation and the group fit are
// quant/slim_bits.cpp's, shared with slim-llm-plus).
//  - Salience-Determined Bit Allocation, per linear: group salience S_k = sum of w^2 / U_jj^2 (U the upper Cholesky
//    factor of H^-1, H with 0.01 added to its diagonal first); for k = 1 .. G/2 - 1 the k least salient groups go to
//    b-1 bits and the k most salient to b+1; each map is scored by RTN under it and
//    KL(softmax(X W_k^T) || softmax(X W^T)) over the output channels, per token, averaged over the calibration
//    windows (the block's inputs from the quantized chain, the block itself still FP); the best k wins.
//  - Salience-Weighted Quantizer Calibration, in GPTQ's loop at each group's first column: the group's range scaled
//    by the best of 101 factors in [0.9, 1.1] per row, under an L2.4 error that weights the salient entries (z-score
//    of w^2 / U_jj^2 above 2) by lambda (1 in the released scripts: a plain range search).
//  - 1-bit groups: sign(w - mean w) * mean |w| + mean w.
// A short last group (in not a multiple of the group size) keeps b bits, so the average over weights stays b.
#include <algorithm>
#include <ATen/ATen.h>

#include "quant/gptq_solver.h"
#include "quant/method.h"
#include "quant/slim_bits.h"
#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

class SlimLlmMethod : public QuantMethod {
public:
    uint64_t workspace_bytes(const LlamaConfig& c, const QuantizeOptions& o) const override {
        // GPTQ's solver, then (not at the same time) the bit search: every candidate's weights and the Hessians.
        return std::max(gptq_workspace_bytes(c), slim_search_bytes(c, o.spec));
    }

    nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& context) override {
        const QuantizeOptions& o = *context.options;
        const int b = o.spec.bits;
        if (b < 2 || b > 7) throw ConfigError("slim-llm moves groups to b-1 and b+1 bits: --bits must be 2 to 7");
        nlohmann::json stats = nlohmann::json::object();
        const std::vector<at::Tensor> maps = slim_bit_maps(block, context, stats);

        const at::TensorOptions options = block.input_norm.options();
        SequentialHessians capture(block, context);
        for (const auto& group : gptq_linear_order(o.gptq.true_sequential)) {
            std::vector<at::Tensor> hessians = capture.next(group);
            for (int index : group) {
                const std::string name = hf_names::linear_name(context.layer, index);
                const at::Tensor bits = maps[index];
                const double lambda = o.slim.salience_lambda;
                const GroupFit fit = [&bits, lambda](const at::Tensor& w, const at::Tensor& hinv_diag, int64_t k,
                                                     at::Tensor& scale, at::Tensor& zero) {
                    return slim_fit_group(w, hinv_diag, static_cast<int>(bits[k].item<int64_t>()), true, lambda,
                                          scale, zero);
                };
                QuantizedTensor q = gptq_quantize(block.linears[index]->weight(), std::move(hessians[index]), o.spec,
                                                  o.gptq, name, stats, fit,
                                                  context.outlier(index));
                q.group_bits = bits.to(q.codes.device());
                block.linears[index] = std::make_shared<QuantizedLinear>(std::move(q), options);
            }
        }
        if (context.outputs != nullptr) *context.outputs = capture.outputs();
        return stats;
    }
};

}  // namespace

std::unique_ptr<QuantMethod> make_slim_llm_method() { return std::make_unique<SlimLlmMethod>(); }

}  // namespace saliq
