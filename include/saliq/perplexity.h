// Perplexity by the GPTQ protocol: non-overlapping windows of `seqlen` tokens (tail dropped), every predicted
// position of every window scored, ppl = exp(mean next-token cross-entropy).
#pragma once

#include <cstdint>
#include <vector>

#include "saliq/progress.h"

namespace saliq {

class LlamaModel;

struct PerplexityOptions {
    int64_t seqlen = 2048;
    int64_t max_windows = -1;  // -1: every full window
    int64_t batch_size = 1;    // windows per forward pass
};

struct PerplexityResult {
    int64_t n_windows = 0;
    int64_t tokens_scored = 0;   // n_windows * (seqlen - 1)
    double nll_sum = 0.0;        // summed cross-entropy, nats
    std::vector<double> window_nll;  // each window's summed cross-entropy (nats), for paired comparisons of two runs
    double ppl = 0.0;
    double seconds = 0.0;
    double tokens_per_second = 0.0;  // tokens fed through the model per second
};

PerplexityResult evaluate_perplexity(const LlamaModel& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options, const ProgressFn& progress = nullptr);

}  // namespace saliq
