// The one vocabulary every dtype option takes (--dtype, --act-dtype, --train-dtype, --adapter-dtype): fp32, fp16,
// bf16.
#pragma once

#include <c10/core/ScalarType.h>

#include <string>

namespace saliq {

// fp32 / fp16 / bf16 → the scalar type; anything else is a ConfigError naming `option` (e.g. "--adapter-dtype").
at::ScalarType float_dtype(const std::string& name, const std::string& option);

}  // namespace saliq
