// Round-to-nearest: min-max groups, no calibration data used.
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
        finished_.clear();
        for (auto& linear : block.linears) {
            LinearResult lr;
            lr.q = quantize_rtn(linear->weight(), context.options->spec);
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
