// Round-to-nearest: min-max groups, no calibration data used; or, with --rtn-importance, each group's range searched
// under its columns' input mean squares (llama.cpp's importance matrix) on the calibration windows.
#include "quant/method.h"

namespace saliq {
namespace {

class RtnMethod : public QuantMethod {
public:
    nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& context) override {
        const at::TensorOptions options = block.input_norm.options();
        // Without calibration nothing runs the block afterwards: each FP weight is let go as soon as it is
        // quantized and no dense dequantized copy is made (at 7B shape that is 0.8 GB of fp32 per copy).
        const bool propagate = context.inputs != nullptr && context.inputs->defined();
        // --rtn-importance: each group fitted under its columns' input mean squares on the quantized chain's windows.
        const std::vector<at::Tensor> importance = context.options->rtn_importance
                                                       ? input_second_moments(block, context)
                                                       : std::vector<at::Tensor>(kNumLinears);
        finished_.clear();
        for (int i = 0; i < kNumLinears; ++i) {
            std::shared_ptr<Linear>& linear = block.linears[i];
            LinearResult lr;
            lr.q = quantize_rtn(linear->weight(), context.options->spec, importance[static_cast<size_t>(i)]);
            if (propagate) linear = std::make_shared<QuantizedLinear>(lr.q, options);
            else linear.reset();
            finished_.push_back(std::move(lr));
        }
        return nlohmann::json::object();
    }

    std::vector<LinearResult> take_results() override { return std::move(finished_); }

private:
    std::vector<LinearResult> finished_;
};

}  // namespace

std::unique_ptr<QuantMethod> make_rtn_method() { return std::make_unique<RtnMethod>(); }

}  // namespace saliq
