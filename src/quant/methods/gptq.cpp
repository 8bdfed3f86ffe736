// GPTQ (Frantar et al. 2022): the solver (quant/gptq_solver.cpp) on each linear, true-sequential groups within the
// block: [k, v, q] -> [o] -> [up, gate] -> [down], each Hessian taken with every earlier group already quantized.
#include <algorithm>
#include <utility>

#include <ATen/ATen.h>

#include "quant/gptq_solver.h"
#include "quant/method.h"

namespace saliq {
namespace {

class GptqMethod : public QuantMethod {
public:
    uint64_t workspace_bytes(const LlamaConfig& c, const QuantizeOptions&) const override {
        return gptq_workspace_bytes(c);
    }
    nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& context) override {
        const QuantizeOptions& o = *context.options;
        nlohmann::json stats = nlohmann::json::object();
        const at::TensorOptions options = block.input_norm.options();
        SequentialHessians capture(block, context);
        for (const auto& group : gptq_linear_order(o.gptq.true_sequential)) {
            // Hessians of this group's linears from the block's inputs, with every earlier group already quantized.
            std::vector<at::Tensor> hessians = capture.next(group);
            for (int index : group) {
                const std::string name = hf_names::linear_name(context.layer, index);
                at::Tensor H = std::move(hessians[index]);
                QuantizedTensor q =
                    gptq_quantize(block.linears[index]->weight(), std::move(H), o.spec, o.gptq, name, stats, nullptr,
                                  context.outlier(index));
                block.linears[index] = std::make_shared<QuantizedLinear>(std::move(q), options);
            }
        }
        if (context.outputs != nullptr) *context.outputs = capture.outputs();
        return stats;
    }
};

}  // namespace

std::unique_ptr<QuantMethod> make_gptq_method() { return std::make_unique<GptqMethod>(); }

}  // namespace saliq
