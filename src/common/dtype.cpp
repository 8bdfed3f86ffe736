#include "saliq/dtype.h"

#include "saliq/error.h"

namespace saliq {

at::ScalarType float_dtype(const std::string& name, const std::string& option) {
    if (name == "fp32") return at::kFloat;
    if (name == "fp16") return at::kHalf;
    if (name == "bf16") return at::kBFloat16;
    throw ConfigError(option + " must be fp32, fp16 or bf16, not '" + name + "'");
}

std::string float_dtype_name(at::ScalarType type) {
    switch (type) {
        case at::kFloat: return "fp32";
        case at::kHalf: return "fp16";
        case at::kBFloat16: return "bf16";
        default: return c10::toString(type);
    }
}

}  // namespace saliq
