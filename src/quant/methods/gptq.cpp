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
    // The widest linear input n: its fp32 Hessian becomes fp64, then two fp64 factors at a time, then the fp32
    // inverse factor (about 20 n^2 bytes); plus the fp32 Hessians of a group of three hidden-wide linears.
    uint64_t workspace_bytes(const LlamaConfig& c, const QuantizeOptions&) const override {
        const auto n = static_cast<uint64_t>(std::max({c.hidden_size, c.intermediate_size, c.n_heads * c.head_dim}));
        const auto h = static_cast<uint64_t>(c.hidden_size);
        return 20 * n * n + 12 * h * h;
    }
    nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& context) override {
        const QuantizeOptions& o = *context.options;
        const std::vector<std::vector<int>> order =
            o.gptq.true_sequential
                ? std::vector<std::vector<int>>{{kKProj, kVProj, kQProj}, {kOProj}, {kUpProj, kGateProj}, {kDownProj}}
                : std::vector<std::vector<int>>{kAllLinears};
        nlohmann::json stats = nlohmann::json::object();
        const at::TensorOptions options = block.input_norm.options();
        for (const auto& group : order) {
            // Hessians of this group's linears from the block's inputs, with every earlier group already quantized.
            std::vector<at::Tensor> hessians = capture_hessians(block, context, group);
            for (int index : group) {
                const std::string name = hf_names::linear_name(context.layer, index);
                at::Tensor H = std::move(hessians[index]);
                QuantizedTensor q =
                    gptq_quantize(block.linears[index]->weight(), std::move(H), o.spec, o.gptq, name, stats);
                block.linears[index] = std::make_shared<QuantizedLinear>(std::move(q), options);
            }
        }
        return stats;
    }
};

}  // namespace

std::unique_ptr<QuantMethod> make_gptq_method() { return std::make_unique<GptqMethod>(); }

}  // namespace saliq
