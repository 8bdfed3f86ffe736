// The interface every quantization method implements (one method per file in methods/).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "saliq/model.h"
#include "saliq/quantize.h"

namespace saliq {

struct BlockContext {
    int64_t layer = 0;
    const LlamaConfig* config = nullptr;
    const Rope* rope = nullptr;
    const at::Tensor* inputs = nullptr;     // [N, T, H] inputs of the quantized chain
    const at::Tensor* fp_inputs = nullptr;  // [N, T, H] inputs of the FP chain, when the method asked for them
    const QuantizeOptions* options = nullptr;

    // Runs `block` over every window of `x` in batches of options->batch_size; returns [N, T, H].
    at::Tensor run(const DecoderBlock& block, const at::Tensor& x) const;
};

class QuantMethod {
public:
    virtual ~QuantMethod() = default;
    virtual bool needs_fp_chain() const { return false; }
    // Replaces every linear of `block` by its quantized form. Returns method statistics for the manifest.
    virtual nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& context) = 0;
    // The finished linears of the last block, when they carry more than a QuantizedLinear shows (adapters, clipping
    // factors). Empty: the pipeline reads the QuantizedLinear of each slot.
    virtual std::vector<LinearResult> take_results() { return {}; }
};

std::unique_ptr<QuantMethod> make_rtn_method();
std::unique_ptr<QuantMethod> make_gptq_method();
std::unique_ptr<QuantMethod> make_omniquant_method();
std::unique_ptr<QuantMethod> make_apiq_bw_method();
std::unique_ptr<QuantMethod> make_apiq_lw_method();

// A linear that reports each input it sees, then computes like the wrapped one (forward hooks).
class CapturingLinear : public Linear {
public:
    using Hook = std::function<void(const at::Tensor& x)>;
    CapturingLinear(std::shared_ptr<Linear> inner, Hook hook) : inner_(std::move(inner)), hook_(std::move(hook)) {}
    at::Tensor forward(const at::Tensor& x) const override;
    at::Tensor weight() const override { return inner_->weight(); }
    int64_t in_features() const override { return inner_->in_features(); }
    int64_t out_features() const override { return inner_->out_features(); }

private:
    std::shared_ptr<Linear> inner_;
    Hook hook_;
};

// Every linear of a block, in forward order.
inline const std::vector<int> kAllLinears = {kQProj, kKProj, kVProj, kOProj, kGateProj, kUpProj, kDownProj};

// `block` with the linears `indices` wrapped so that each appends the inputs it sees to seen[index]
// (`seen` needs kNumLinears slots and must outlive the returned block's use).
DecoderBlock capturing_block(const DecoderBlock& block, const std::vector<int>& indices,
                             std::vector<std::vector<at::Tensor>>& seen);

}  // namespace saliq
