#include "quant/trainable.h"

#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/optim/adamw.h>

#include "saliq/checkpoint.h"
#include "saliq/distributed.h"
#include "saliq/binarize.h"
#include "saliq/dtype.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"
#include "saliq/threads.h"

namespace saliq {

TrainableLinear::TrainableLinear(const at::Tensor& weight, int64_t lora_rank, double lora_alpha)
    : weight_(weight.detach().to(weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat).contiguous()) {
    if (lora_rank > 0) {
        const int64_t in = weight_.size(1);
        const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // kaiming_uniform(a=sqrt(5))
        lora_a_ = at::empty({lora_rank, in}, weight_.options()).uniform_(-bound, bound).requires_grad_(true);
        lora_b_ = at::zeros({weight_.size(0), lora_rank}, weight_.options()).requires_grad_(true);
        lora_scale_ = lora_alpha / static_cast<double>(lora_rank);
    }
}

void TrainableLinear::set_fixed_sparse(const SparsePart& part) {
    fixed_sparse_ = at::zeros_like(weight_);
    fixed_sparse_.view({-1}).index_copy_(0, part.index.to(weight_.device()),
                                         part.value.to(weight_.device()).to(weight_.scalar_type()));
}

at::Tensor TrainableLinear::quantized_weight() const { return step_weight_.defined() ? step_weight_ : fake_quant(); }

at::Tensor TrainableLinear::quantized_forward(const at::Tensor& x) const {
    const at::Tensor q = quantized_weight();
    const at::Tensor w = fixed_sparse_.defined() ? q + fixed_sparse_ : q;
    return at::linear(x, w.to(x.scalar_type()));
}

at::Tensor TrainableLinear::forward(const at::Tensor& x) const {
    at::Tensor y = quantized_forward(x);
    if (has_lora())
        y = y + at::linear(at::linear(x, lora_a_.to(x.scalar_type())), lora_b_.to(x.scalar_type())) * lora_scale_;
    return y;
}

at::Tensor TrainableLinear::effective_weight(bool with_lora) const {
    at::Tensor w = quantized_weight();
    if (with_lora && has_lora()) w = w + at::matmul(lora_b_, lora_a_) * lora_scale_;
    return w;
}

at::Tensor TrainableLinear::weight() const {
    at::Tensor w = fake_quant().detach();
    if (has_lora()) w = w + at::matmul(lora_b_, lora_a_).detach() * lora_scale_;
    return fixed_sparse_.defined() ? w + fixed_sparse_ : w;
}

std::vector<at::Tensor> TrainableLinear::lora_parameters() const {
    if (!has_lora()) return {};
    return {lora_a_, lora_b_};
}

LinearResult TrainableLinear::finalize(const std::string& name) const {
    LinearResult r;
    r.name = name;
    finalize_quantizer(r);
    if (has_lora()) {
        r.lora_a = lora_a_.detach().clone();
        r.lora_b = lora_b_.detach().clone();
        r.lora_scale = lora_scale_;
    }
    return r;
}

LwcLinear::LwcLinear(const at::Tensor& weight, const QuantSpec& spec, int64_t lora_rank, double lora_alpha,
                     const at::Tensor& group_bits)
    : TrainableLinear(weight, lora_rank, lora_alpha),
      spec_(spec),
      group_bits_(group_bits),
      lwc_(group_bits.defined() ? make_mixed_lwc_params(weight_, spec, group_bits) : make_lwc_params(weight_, spec)) {
    lwc_.up.requires_grad_(true);
    lwc_.low.requires_grad_(true);
    if (!group_bits.defined()) group_max_min(weight_, spec_, group_max_, group_min_);
}

void LwcLinear::start_from_search(const at::Tensor& importance) {
    if (group_bits_.defined()) throw Error("internal: the clipping search is for the uniform grid, not a bit map");
    const LwcParams searched = lwc_search_params(weight_, group_max_, group_min_, spec_, importance);
    c10::NoGradGuard no_grad;
    lwc_.up.copy_(searched.up);
    lwc_.low.copy_(searched.low);
}

at::Tensor LwcLinear::fake_quant() const {
    return group_bits_.defined() ? lwc_fake_quant_mixed(weight_, lwc_, spec_, group_bits_)
                                 : lwc_fake_quant_of_range(weight_, group_max_, group_min_, lwc_, spec_);
}

void LwcLinear::finalize_quantizer(LinearResult& r) const {
    r.q = group_bits_.defined() ? lwc_finalize_mixed(weight_, lwc_, spec_, group_bits_)
                                : lwc_finalize(weight_, lwc_, spec_);
    r.lwc_up = lwc_.up.detach().clone();
    r.lwc_low = lwc_.low.detach().clone();
}

namespace {

// LWC on a GGML grid (--grid): one clipping pair per sub-block, the type's own fit inside the fake quantizer.
class GgmlLwcLinear : public TrainableLinear {
public:
    GgmlLwcLinear(const at::Tensor& weight, GgmlGrid grid, int64_t lora_rank, double lora_alpha)
        : TrainableLinear(weight, lora_rank, lora_alpha), grid_(grid) {
        QuantSpec sub_blocks;
        sub_blocks.group_size = ggml_grid_traits(grid).sub_block;
        group_max_min(weight_.to(at::kFloat), sub_blocks, group_max_, group_min_);
        lwc_.up = at::full_like(group_max_, kLwcInit).requires_grad_(true);
        lwc_.low = at::full_like(group_max_, kLwcInit).requires_grad_(true);
    }
    std::vector<at::Tensor> quantizer_parameters() const override { return {lwc_.up, lwc_.low}; }

protected:
    at::Tensor fake_quant() const override {
        return ggml_lwc_fake_quant(weight_, group_max_, group_min_, lwc_, grid_).to(weight_.scalar_type());
    }
    void finalize_quantizer(LinearResult& r) const override {
        r.q = ggml_lwc_finalize(weight_, group_max_, group_min_, lwc_, grid_);
        r.lwc_up = lwc_.up.detach().clone();
        r.lwc_low = lwc_.low.detach().clone();
    }

private:
    GgmlGrid grid_;
    LwcParams lwc_;                     // [out, in / sub_block] each
    at::Tensor group_max_, group_min_;  // of the frozen weight, per sub-block
};

}  // namespace

std::shared_ptr<TrainableLinear> make_trainable_linear(const at::Tensor& weight, const QuantizeOptions& o,
                                                       int64_t lora_rank, const at::Tensor& group_bits,
                                                       const SparsePart* outliers) {
    switch (quantizer_traits(o.apiq.quantizer).family) {
        case QuantizerFamily::kDualBinary:
            return make_dual_binary_linear(weight, o.spec.group_size, lora_rank, o.apiq.lora_alpha);
        case QuantizerFamily::kMixtureOfScales:
            return make_mos_linear(weight, o.apiq.mos_experts, lora_rank, o.apiq.lora_alpha);
        case QuantizerFamily::kUniform: break;
    }
    if (o.spec.grid != GgmlGrid::kNone)  // the type this linear's rows take (llama-quantize's fallback, say)
        return std::make_shared<GgmlLwcLinear>(weight, spec_for_row(o.spec, weight.size(1)).grid, lora_rank,
                                               o.apiq.lora_alpha);
    auto linear = std::make_shared<LwcLinear>(weight, o.spec, lora_rank, o.apiq.lora_alpha, group_bits);
    if (outliers != nullptr) linear->set_fixed_sparse(*outliers);
    return linear;
}

std::vector<TrainStage> resolve_stages(const QuantizeOptions& o) {
    if (!o.apiq.stages.empty()) {
        for (const auto& s : o.apiq.stages) {
            if (s.name != "opt" && s.name != "wpt" && s.name != "mixed")
                throw ConfigError("unknown training stage '" + s.name + "' (expected opt, wpt or mixed)");
            if (s.epochs < 0) throw ConfigError("stage " + s.name + " has negative epochs");
            if (stage_uses_reg(s.name) && s.epochs > 0 && !o.saliency.enabled)
                throw ConfigError("stage '" + s.name + "' uses the saliency regularizer; pass --saliency");
        }
        return o.apiq.stages;
    }
    // MSE + lambda R for every epoch: chosen by scripts/bench_saliency.sh (stories260K W2 g32, seeds 0-2: beats
    // apiq-bw on every seed, closes 21% of its degradation; the ULB-SAPR README's wpt:15 opt:5 loses on every seed).
    if (o.saliency.enabled) return {{"mixed", o.apiq.epochs}};
    return {{"opt", o.apiq.epochs}};
}

double block_lambda(const QuantizeOptions& o, int64_t layer) {
    return o.saliency.lambda * std::pow(o.saliency.lambda_multiplier, static_cast<double>(layer));
}

std::string resolve_train_dtype(const std::string& requested, const at::TensorOptions& model) {
    const at::ScalarType m = model.dtype().toScalarType();
    if (m == at::kDouble) return "fp64";
    if (requested == "auto") {
        if (model.device().is_cuda()) return m == at::kHalf ? "fp16" : "bf16";
        return cpu_has_bf16_matrix_units() ? "bf16" : (m == at::kBFloat16 ? "bf16" : "fp32");
    }
    if (requested != "fp32" && requested != "bf16" && requested != "fp16")
        throw ConfigError("--train-dtype must be fp32, bf16, fp16 or auto, not '" + requested + "'");
    if (requested == "fp16" && model.device().is_cpu())
        throw ConfigError("--train-dtype fp16 is not available on CPU (LibTorch has no fp16 CPU matmul); use bf16");
    return requested;
}

at::ScalarType training_compute_dtype(const QuantizeOptions& o, const at::TensorOptions& model) {
    const std::string d = resolve_train_dtype(o.apiq.train_dtype, model);
    return d == "fp64" ? at::kDouble : float_dtype(d, "--train-dtype");
}

int64_t step_windows(const QuantizeOptions& o) {
    return static_cast<int64_t>(dist_world_size()) * std::max<int64_t>(1, o.apiq.train_batch);
}

// The defaults are rates for one window a step. Adam moves each parameter by about its learning rate a step whatever
// the batch, so at those rates B windows a step travel B times less in the same epochs; they are scaled by B (the
// linear rule). SmolLM2-135M W3 g64 --saliency, 12 epochs of 8 windows a step (README, SmolLM2-135M): 47.23 at the
// per-window rates, 41.59 at sqrt(8) times them, 39.36 at 8 times (one window a step: 38.94).
double lwc_learning_rate(const QuantizeOptions& o, bool with_lora) {
    if (o.apiq.lwc_lr >= 0) return o.apiq.lwc_lr;
    const double scale = static_cast<double>(step_windows(o));
    if (const double lr = quantizer_traits(o.apiq.quantizer).scale_lr; lr > 0) return lr * scale;  // binarizer scales
    return (with_lora ? 5e-3 : 1e-2) * scale;
}

double default_lora_learning_rate(int64_t windows) { return 5e-4 * static_cast<double>(std::max<int64_t>(1, windows)); }

double lora_learning_rate(const QuantizeOptions& o) {
    return o.apiq.lora_lr >= 0 ? o.apiq.lora_lr : default_lora_learning_rate(step_windows(o));
}

void resolve_learning_rates(QuantizeOptions& o, bool with_lora) {
    const int64_t windows = step_windows(o);
    const bool lwc_default = o.apiq.lwc_lr < 0, lora_default = o.apiq.lora_lr < 0;
    if (lora_default) o.apiq.lora_lr = lora_learning_rate(o);
    // At one window a step the clipping rate stays "the method's default" (< 0), as manifests have always said.
    if (lwc_default && windows > 1) o.apiq.lwc_lr = lwc_learning_rate(o, with_lora);
    if (windows > 1 && (lwc_default || (with_lora && lora_default))) {
        const std::string lora = with_lora ? strprintf(", LoRA %g", o.apiq.lora_lr) : "";
        log_info(strprintf("%lld windows a step: the default learning rates times %lld (clipping %g%s); --lwc-lr and "
                           "--lora-lr set them",
                           (long long)windows, (long long)windows, lwc_learning_rate(o, with_lora), lora.c_str()));
    }
}

double training_weight_decay(const QuantizeOptions& o, bool with_lora) {
    return o.apiq.weight_decay >= 0 ? o.apiq.weight_decay : (with_lora ? 0.1 : 0.0);
}

void seed_block(const QuantizeOptions& o, int64_t layer) {
    at::manual_seed(o.apiq.seed * 1000003ull + static_cast<uint64_t>(layer));
}

bool stage_uses_mse(const std::string& stage) { return stage == "opt" || stage == "mixed"; }
bool stage_uses_reg(const std::string& stage) { return stage == "wpt" || stage == "mixed"; }

bool stages_use_reg(const std::vector<TrainStage>& stages) {
    for (const auto& s : stages)
        if (stage_uses_reg(s.name) && s.epochs > 0) return true;
    return false;
}

namespace {

// --fisher-norm mean: F / sum(F), so the linear's term is a weighted mean; a Fisher of all zeros weighs uniformly.
at::Tensor normalize_fisher(const QuantizeOptions& o, const at::Tensor& f) {
    if (o.saliency.fisher_norm == "none") return f;
    const double sum = f.sum().item<double>();
    return sum > 0 ? f / sum : at::full_like(f, 1.0 / static_cast<double>(f.numel()));
}

}  // namespace

std::vector<at::Tensor> load_block_fisher(const QuantizeOptions& o, const std::vector<const TrainableLinear*>& linears,
                                          const std::vector<std::string>& names, nlohmann::json& stats) {
    std::vector<at::Tensor> out;
    std::shared_ptr<SafetensorsReader> reader;
    if (o.saliency.weighted) {
        if (o.saliency.fisher_path.empty()) throw ConfigError("weighted saliency needs a Fisher file");
        reader = SafetensorsReader::open(o.saliency.fisher_path);
    }
    for (size_t i = 0; i < linears.size(); ++i) {
        const at::Tensor& w = linears[i]->frozen_weight();
        if (!reader) {
            out.push_back(normalize_fisher(o, at::ones_like(w, w.options().dtype(at::kFloat))));
            continue;
        }
        const std::string key = names[i] + ".weight";
        if (!reader->has(key))
            throw FormatError(o.saliency.fisher_path, "no Fisher tensor for '" + key + "' (made for another model?)");
        at::Tensor f = reader->tensor(key);
        if (f.sizes() != w.sizes())
            throw FormatError(o.saliency.fisher_path, "Fisher tensor '" + key + "' has shape " +
                                                          shape_to_string(f.sizes().vec()) + ", the weight " +
                                                          shape_to_string(w.sizes().vec()));
        f = f.to(at::kFloat).to(w.device());
        if (!at::isfinite(f).all().item<bool>() || (f < 0).any().item<bool>())
            throw FormatError(o.saliency.fisher_path, "Fisher tensor '" + key + "' has negative or non-finite values");
        stats[names[i]] = {{"sum", f.sum().item<double>()}, {"max", f.max().item<double>()},
                           {"mean", f.mean().item<double>()}};
        out.push_back(normalize_fisher(o, f));
    }
    return out;
}

at::Tensor saliency_regularizer(const std::vector<const TrainableLinear*>& linears,
                                const std::vector<at::Tensor>& fisher, bool after_lora) {
    at::Tensor total;
    for (size_t i = 0; i < linears.size(); ++i) {
        const at::Tensor diff = linears[i]->effective_weight(after_lora) - linears[i]->frozen_weight();
        const at::Tensor term = (fisher[i] * diff.pow(2)).sum();
        total = total.defined() ? total + term : term;
    }
    return total;
}

struct Trainer::Impl {
    std::unique_ptr<torch::optim::AdamW> optimizer;
    std::vector<at::Tensor> params;
    bool loss_scaling = false;
    double scale = 65536.0;
    int64_t good_steps = 0;
};

Trainer::Trainer(const std::vector<at::Tensor>& lwc_params, const std::vector<at::Tensor>& lora_params, double lwc_lr,
                 double lora_lr, double weight_decay, bool loss_scaling)
    : impl_(std::make_unique<Impl>()) {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(lwc_params, std::make_unique<torch::optim::AdamWOptions>(
                                        torch::optim::AdamWOptions(lwc_lr).weight_decay(weight_decay)));
    if (!lora_params.empty())
        groups.emplace_back(lora_params, std::make_unique<torch::optim::AdamWOptions>(
                                             torch::optim::AdamWOptions(lora_lr).weight_decay(weight_decay)));
    impl_->optimizer = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(lwc_lr));
    impl_->params = lwc_params;
    impl_->params.insert(impl_->params.end(), lora_params.begin(), lora_params.end());
    impl_->loss_scaling = loss_scaling;
}

Trainer::~Trainer() = default;

namespace {

// Data-parallel training: every rank's gradient of its own windows, averaged (one flat all-reduce per step), so that
// every rank takes the same optimizer step on the mean loss of all ranks' batches.
void average_gradients(std::vector<at::Tensor>& params) {
    if (!dist_active()) return;
    c10::NoGradGuard no_grad;
    std::vector<at::Tensor> grads;
    for (auto& p : params)
        if (p.grad().defined()) grads.push_back(p.mutable_grad());
    if (grads.empty()) return;
    std::vector<at::Tensor> flat_parts;
    for (const auto& g : grads) flat_parts.push_back(g.reshape({-1}).to(at::kFloat));
    at::Tensor flat = at::cat(flat_parts);
    dist_all_reduce_sum(flat);
    flat.div_(static_cast<double>(dist_world_size()));
    int64_t offset = 0;
    for (auto& g : grads) {
        g.copy_(flat.narrow(0, offset, g.numel()).view(g.sizes()));
        offset += g.numel();
    }
}

}  // namespace

bool Trainer::step(const at::Tensor& loss) {
    impl_->optimizer->zero_grad();
    if (!impl_->loss_scaling) {
        loss.backward();
        average_gradients(impl_->params);
        impl_->optimizer->step();
        return true;
    }
    (loss * impl_->scale).backward();
    average_gradients(impl_->params);  // an overflow on any rank reaches every rank: all skip the step
    bool finite = true;
    for (auto& p : impl_->params)
        if (p.grad().defined()) finite = finite && at::isfinite(p.grad()).all().item<bool>();
    if (!finite) {  // overflow: skip the step, halve the scale (GradScaler's policy)
        impl_->scale /= 2.0;
        impl_->good_steps = 0;
        return false;
    }
    for (auto& p : impl_->params)
        if (p.grad().defined()) p.mutable_grad().div_(impl_->scale);
    impl_->optimizer->step();
    if (++impl_->good_steps % 2000 == 0) impl_->scale *= 2.0;
    return true;
}

namespace {
double g_training_seconds = 0.0;  // only the calling thread trains
}  // namespace

double training_seconds() { return g_training_seconds; }

nlohmann::json run_stages(const std::vector<TrainStage>& stages, Trainer& trainer, int64_t n_windows, int64_t batch,
                          const StepLoss& loss, const std::string& where) {
    c10::AutoGradMode grad(true);
    nlohmann::json log = nlohmann::json::array();
    int64_t skipped = 0;
    for (const auto& stage : stages) {
        if (stage.epochs <= 0) continue;
        std::vector<double> epoch_losses;
        const auto stage_start = std::chrono::steady_clock::now();
        int64_t stage_steps = 0;
        for (int64_t epoch = 0; epoch < stage.epochs; ++epoch) {
            double total = 0.0;
            int64_t steps = 0;
            for (int64_t first = 0; first < n_windows; first += batch) {
                const at::Tensor value_t = loss(stage.name, first, std::min(batch, n_windows - first));
                const double value = value_t.item<double>();
                if (!std::isfinite(value))
                    throw NumericError(strprintf("%s: loss is %s in stage %s, epoch %lld, step %lld (lower the learning "
                                                 "rates or use fp32/bf16)",
                                                 where.c_str(), std::isnan(value) ? "NaN" : "Inf", stage.name.c_str(),
                                                 (long long)epoch, (long long)(first / batch)));
                if (!trainer.step(value_t)) ++skipped;
                total += value;
                ++steps;
                ++stage_steps;
            }
            // Distributed: every rank ran as many steps (equal shards); the logged loss is the mean over the ranks.
            epoch_losses.push_back(dist_sum(total / static_cast<double>(steps)) / dist_world_size());
        }
        log.push_back({{"stage", stage.name},
                       {"epochs", stage.epochs},
                       {"loss_start", epoch_losses.front()},
                       {"loss_end", epoch_losses.back()},
                       {"epoch_losses", epoch_losses},
                       {"steps", stage_steps}});
        g_training_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - stage_start).count();
    }
    if (skipped > 0) log.push_back({{"fp16_skipped_steps", skipped}});
    return log;
}

}  // namespace saliq
