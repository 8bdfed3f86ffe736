// Progress reporting: the library calls back, the CLI draws. Returning false from the callback cancels.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace saliq {

struct ProgressEvent {
    std::string stage;      // "perplexity", "quantize", ...
    int64_t done = 0;
    int64_t total = 0;
    double elapsed_s = 0.0;
    std::string detail;     // e.g. "model.layers.3  err 1.2e-3"
};

using ProgressFn = std::function<bool(const ProgressEvent&)>;

// Thrown when a progress callback returns false.
struct Cancelled {};

}  // namespace saliq
