// Round-to-nearest: min-max groups, no calibration data used.
#include "quant/method.h"

namespace saliq {
namespace {

class RtnMethod : public QuantMethod {
public:
    bool needs_calibration() const override { return false; }
    nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& context) override {
        const at::TensorOptions options = block.input_norm.options();
        for (auto& linear : block.linears)
            linear = std::make_shared<QuantizedLinear>(quantize_rtn(linear->weight(), context.options->spec), options);
        return nlohmann::json::object();
    }
};

}  // namespace

std::unique_ptr<QuantMethod> make_rtn_method() { return std::make_unique<RtnMethod>(); }

}  // namespace saliq
