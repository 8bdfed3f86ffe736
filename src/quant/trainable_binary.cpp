// The seed paper's QAT binarizers as trainable linears (apiq_saliency.md d.5): DB-LLM learns the two scales of each
// group's dual binarization, BinaryMoS its router and scale experts; the weight stays frozen, as in ApiQ's partial
// training, and LoRA trains beside them.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "quant/trainable.h"
#include "saliq/binarize.h"

namespace saliq {
namespace {

// Stored values are fp16: finalizing rounds the learned scales so the packed model is the one evaluated.
at::Tensor fp16_precision(const at::Tensor& t) { return t.detach().to(at::kHalf).to(at::kFloat).contiguous(); }

class DualBinaryLinear : public TrainableLinear {
public:
    DualBinaryLinear(const at::Tensor& weight, int64_t group_size, int64_t lora_rank, double lora_alpha)
        : TrainableLinear(weight, lora_rank, lora_alpha), params_(init_dual_binary(weight_, group_size)) {
        QuantSpec spec;
        spec.group_size = group_size;
        g_idx_ = natural_group_index(weight_.size(1), spec).to(weight_.device());
        params_.alpha1.requires_grad_(true);
        params_.alpha2.requires_grad_(true);
    }
    std::vector<at::Tensor> quantizer_parameters() const override { return {params_.alpha1, params_.alpha2}; }

protected:
    at::Tensor fake_quant() const override { return dual_binary_fake_quant(weight_, params_, g_idx_); }
    void finalize_quantizer(LinearResult& r) const override {
        c10::NoGradGuard no_grad;
        const DualBinaryParams stored{fp16_precision(params_.alpha1), fp16_precision(params_.alpha2)};
        r.binary.kind = "db-llm";
        r.binary.alpha1 = stored.alpha1;
        r.binary.alpha2 = stored.alpha2;
        r.binary.g_idx = g_idx_.clone();
        r.binary.codes = dual_binary_codes(weight_, stored, g_idx_);  // with the stored scales' thresholds
    }

private:
    DualBinaryParams params_;
    at::Tensor g_idx_;
};

class MosTrainLinear : public TrainableLinear {
public:
    MosTrainLinear(const at::Tensor& weight, int64_t experts, int64_t lora_rank, double lora_alpha)
        : TrainableLinear(weight, lora_rank, lora_alpha), params_(init_mos(weight_, experts)) {
        signs_ = sign_ste(weight_).detach();  // the weight is frozen: its signs are constants
        for (auto* p : {&params_.router, &params_.scale_in, &params_.scale_out}) p->requires_grad_(true);
    }
    std::vector<at::Tensor> quantizer_parameters() const override {
        return {params_.router, params_.scale_in, params_.scale_out};
    }

protected:
    at::Tensor fake_quant() const override { return mos_mean_weight(signs_, params_); }
    at::Tensor quantized_forward(const at::Tensor& x) const override { return mos_forward(x, signs_, params_); }
    void finalize_quantizer(LinearResult& r) const override {
        r.binary.kind = "binarymos";
        r.binary.codes = (weight_ >= 0).to(at::kByte);
        r.binary.router = fp16_precision(params_.router);
        r.binary.scale_in = fp16_precision(params_.scale_in);
        r.binary.scale_out = fp16_precision(params_.scale_out);
    }

private:
    MosParams params_;
    at::Tensor signs_;
};

}  // namespace

std::shared_ptr<TrainableLinear> make_dual_binary_linear(const at::Tensor& weight, int64_t group_size,
                                                         int64_t lora_rank, double lora_alpha) {
    return std::make_shared<DualBinaryLinear>(weight, group_size, lora_rank, lora_alpha);
}

std::shared_ptr<TrainableLinear> make_mos_linear(const at::Tensor& weight, int64_t experts, int64_t lora_rank,
                                                 double lora_alpha) {
    return std::make_shared<MosTrainLinear>(weight, experts, lora_rank, lora_alpha);
}

}  // namespace saliq
