#include "saliq/dtype.h"

#include "saliq/error.h"

namespace saliq {

at::ScalarType float_dtype(const std::string& name, const std::string& option) {
    if (name == "fp32") return at::kFloat;
    if (name == "fp16") return at::kHalf;
    if (name == "bf16") return at::kBFloat16;
    throw ConfigError(option + " must be fp32, fp16 or bf16, not '" + name + "'");
}

}  // namespace saliq
