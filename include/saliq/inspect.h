// A summary of a checkpoint: architecture, quantization, parameter counts, bytes and bits per weight.
#pragma once

#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"

namespace saliq {

nlohmann::json inspect_checkpoint(const Checkpoint& checkpoint);

}  // namespace saliq
