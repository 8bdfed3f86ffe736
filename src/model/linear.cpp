#include <ATen/ATen.h>

#include "saliq/model.h"

namespace saliq {

DenseLinear::DenseLinear(at::Tensor weight) : weight_(std::move(weight)) {}

at::Tensor DenseLinear::forward(const at::Tensor& x) const { return at::linear(x, weight_); }

int64_t DenseLinear::in_features() const { return weight_.size(1); }
int64_t DenseLinear::out_features() const { return weight_.size(0); }

QuantizedLinear::QuantizedLinear(QuantizedTensor q, const at::TensorOptions& options)
    : q_(std::move(q)), weight_(q_.dequantize().to(options.dtype()).to(options.device())) {}

at::Tensor QuantizedLinear::forward(const at::Tensor& x) const { return at::linear(x, weight_); }

}  // namespace saliq
