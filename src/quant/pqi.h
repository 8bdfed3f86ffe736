// ReQuant's post-quantization integral along a straight path of every linear weight (saliency_pqi.cpp): shared by
// the pqi saliency metric (the path ends at RTN) and ReQuant's significant-weight detach (it ends at the run's own
// quantized weights).
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saliq/calibration.h"
#include "saliq/model.h"
#include "saliq/progress.h"

namespace saliq {

struct PqiIntegral {
    std::vector<at::Tensor> pqi;  // per weight: (w~ - w) * the integral of dF/dw along the path, fp32, weights' device
    std::vector<double> losses;   // F at each of the points + 1 values of t (front: F(w), back: F(w~))
};

// Moves each of `weights` (the model's own linear weights, in place) along start + t * delta for t on `points` + 1
// trapezoid points, one forward and backward pass per calibration window at each; the weights end at start + delta.
// `stage` names the progress lines.
PqiIntegral integrate_pqi(const LlamaModel& model, std::vector<at::Tensor>& weights,
                          const std::vector<at::Tensor>& start, const std::vector<at::Tensor>& delta,
                          const CalibSet& calib, int64_t seqlen, int64_t points, const std::string& stage,
                          const ProgressFn& progress);

}  // namespace saliq
