#include <ATen/ATen.h>

#include "saliq/ggml_activations.h"
#include "saliq/model.h"

namespace saliq {

DenseLinear::DenseLinear(at::Tensor weight) : weight_(std::move(weight)) {}

at::Tensor DenseLinear::forward(const at::Tensor& x) const { return at::linear(x, weight_); }

int64_t DenseLinear::in_features() const { return weight_.size(1); }
int64_t DenseLinear::out_features() const { return weight_.size(0); }

QuantizedLinear::QuantizedLinear(QuantizedTensor q, const at::TensorOptions& options)
    : q_(std::move(q)), weight_(q_.dequantize().to(options.dtype()).to(options.device())) {}

at::Tensor QuantizedLinear::forward(const at::Tensor& x) const { return at::linear(x, weight_); }

PackedLinear::PackedLinear(const QuantizedTensor& q, const at::TensorOptions& options)
    : packed_(pack_weight(q)), options_(options) {
    if (options.device().is_cuda()) packed_ = packed_to(packed_, options.device());  // the CUDA kernels' input
    std::vector<at::Tensor> index, value;
    for (const SparsePart* part : {&q.outliers, &q.significant})
        if (part->defined()) index.push_back(part->index.to(at::kCPU)), value.push_back(part->value.to(at::kCPU));
    if (index.empty()) return;
    const at::Tensor flat = at::cat(index);
    const at::Tensor rows_cols = at::stack({at::div(flat, q.in_features(), "floor"), at::remainder(flat, q.in_features())});
    sparse_ = at::sparse_coo_tensor(rows_cols, at::cat(value), {q.out_features(), q.in_features()},
                                    at::TensorOptions().dtype(at::kFloat))
                  .coalesce()
                  .to(options.device());
}

at::Tensor PackedLinear::forward(const at::Tensor& x) const {
    at::Tensor y = packed_linear(x, packed_);
    if (!sparse_.defined()) return y;
    // The sparse parts' product, S x^T, as a sparse-dense matmul over the flattened tokens.
    const at::Tensor x2 = x.reshape({-1, packed_.in}).to(at::kFloat);
    const at::Tensor s = at::mm(sparse_, x2.t()).t();
    return y + s.reshape(y.sizes()).to(y.scalar_type());
}

at::Tensor PackedLinear::weight() const {
    at::Tensor w = packed_dequantize_rows(packed_, 0, packed_.out);
    if (sparse_.defined()) w = w + sparse_.to_dense().to(w.device());
    return w.to(options_.dtype()).to(options_.device());
}

LlamacppInputLinear::LlamacppInputLinear(std::shared_ptr<Linear> base, GgmlGrid grid)
    : WrappingLinear(std::move(base)), grid_(grid) {}

at::Tensor LlamacppInputLinear::forward(const at::Tensor& x) const {
    return inner_->forward(ggml_round_activations(x, grid_).to(x.scalar_type()));
}

MosLinear::MosLinear(const BinaryWeight& w, const at::TensorOptions& options)
    : signs_(w.dequantize().to(options.dtype()).to(options.device())),
      params_{w.router.to(options.dtype()).to(options.device()), w.scale_in.to(options.dtype()).to(options.device()),
              w.scale_out.to(options.dtype()).to(options.device())} {}

at::Tensor MosLinear::forward(const at::Tensor& x) const { return mos_forward(x, signs_, params_); }

at::Tensor MosLinear::weight() const { return mos_mean_weight(signs_, params_); }

std::shared_ptr<Linear> make_binary_linear(const BinaryWeight& w, const at::TensorOptions& options) {
    if (quantizer_traits(w.kind).family == QuantizerFamily::kMixtureOfScales) return std::make_shared<MosLinear>(w, options);
    return std::make_shared<DenseLinear>(w.dequantize().to(options.dtype()).to(options.device()));
}

LoraLinear::LoraLinear(std::shared_ptr<Linear> base, at::Tensor lora_a, at::Tensor lora_b, double scale)
    : WrappingLinear(std::move(base)), lora_a_(std::move(lora_a)), lora_b_(std::move(lora_b)), scale_(scale) {}

at::Tensor LoraLinear::forward(const at::Tensor& x) const {
    return inner_->forward(x) + at::linear(at::linear(x, lora_a_), lora_b_) * scale_;
}

at::Tensor LoraLinear::weight() const {
    return inner_->weight() + (at::matmul(lora_b_.to(at::kFloat), lora_a_.to(at::kFloat)) * scale_)
                                  .to(inner_->weight().scalar_type());
}

}  // namespace saliq
