// End-to-end distillation of a packed folder (finetune.h). The student's linears keep their integer codes and
// zero points; what moves is each group's scale (in log space), the adapters and optionally the norms. The loss is
// the forward KL from the teacher, KL(p_T || p_S) = sum p_T (log p_T - log p_S) per token: the teacher's whole
// distribution is the target (mean-seeking, the standard form of knowledge distillation); the reverse KL would let
// the 2-bit student drop the teacher's low-probability modes.
#include "saliq/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/quantizer.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

// A packed linear made trainable: W = s0 exp(theta)[g] (codes - z[g]) + sparse parts, plus LoRA.
class GridLinear : public Linear {
public:
    GridLinear(const QuantizedTensor& q, at::Tensor lora_a, at::Tensor lora_b, double lora_scale,
               const at::Device& device)
        : codes_(q.codes.to(device)),
          zeros_(q.zeros.to(at::kFloat).to(device)),
          g_idx_(q.g_idx.to(device)),
          scales0_(q.scales.to(at::kFloat).to(device)),
          log_scales_(at::zeros_like(scales0_)),
          lora_scale_(lora_scale) {
        std::vector<at::Tensor> index, value;
        for (const SparsePart* part : {&q.outliers, &q.significant})
            if (part->defined()) index.push_back(part->index), value.push_back(part->value);
        if (!index.empty()) {
            sparse_index_ = at::cat(index).to(device);
            sparse_value_ = at::cat(value).to(at::kFloat).to(device);
        }
        if (lora_a.defined()) {
            lora_a_ = lora_a.to(at::kFloat).to(device).contiguous();
            lora_b_ = lora_b.to(at::kFloat).to(device).contiguous();
        }
    }

    at::Tensor dense() const {
        const at::Tensor s = scales0_ * at::exp(log_scales_);
        at::Tensor w = expand_groups(s, g_idx_) * (codes_.to(at::kFloat) - expand_groups(zeros_, g_idx_));
        if (sparse_index_.defined()) w = w.reshape({-1}).index_add(0, sparse_index_, sparse_value_).view(w.sizes());
        return w;
    }
    at::Tensor forward(const at::Tensor& x) const override {
        at::Tensor y = at::linear(x, dense().to(x.scalar_type()));
        if (lora_a_.defined())
            y = y + at::linear(at::linear(x, lora_a_.to(x.scalar_type())), lora_b_.to(x.scalar_type())) * lora_scale_;
        return y;
    }
    at::Tensor weight() const override {
        at::Tensor w = dense();
        if (lora_a_.defined()) w = w + at::matmul(lora_b_, lora_a_) * lora_scale_;
        return w.detach();
    }
    int64_t in_features() const override { return codes_.size(1); }
    int64_t out_features() const override { return codes_.size(0); }

    // Tensor handles: the optimizer updates them in place.
    const at::Tensor& log_scales() const { return log_scales_; }
    const at::Tensor& scales0() const { return scales0_; }
    const at::Tensor& lora_a() const { return lora_a_; }
    const at::Tensor& lora_b() const { return lora_b_; }

private:
    at::Tensor codes_, zeros_, g_idx_, scales0_;
    at::Tensor log_scales_;  // [out, G], trained
    at::Tensor sparse_index_, sparse_value_;
    at::Tensor lora_a_, lora_b_;
    double lora_scale_;
};

struct Param {
    std::string name;
    at::Tensor value;  // the leaf the forward uses (fp32)
    double lr;
    at::Tensor m, v;   // Adam's moments
};

void check_same_shape(const LlamaConfig& s, const LlamaConfig& t) {
    if (s.hidden_size != t.hidden_size || s.intermediate_size != t.intermediate_size || s.n_layers != t.n_layers ||
        s.n_heads != t.n_heads || s.n_kv_heads != t.n_kv_heads || s.head_dim != t.head_dim ||
        s.vocab_size != t.vocab_size)
        throw ConfigError(strprintf("the teacher (%lld layers, hidden %lld, vocab %lld) is not the quantized model's "
                                    "architecture (%lld layers, hidden %lld, vocab %lld)",
                                    (long long)t.n_layers, (long long)t.hidden_size, (long long)t.vocab_size,
                                    (long long)s.n_layers, (long long)s.hidden_size, (long long)s.vocab_size));
}

// KL(p_T || p_S) per token at temperature tau, times tau^2; the mean over the batch's tokens.
at::Tensor distillation_kl(const at::Tensor& teacher_logits, const at::Tensor& student_logits, double tau) {
    const at::Tensor log_t = at::log_softmax(teacher_logits.to(at::kFloat) / tau, -1);
    const at::Tensor log_s = at::log_softmax(student_logits.to(at::kFloat) / tau, -1);
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean() * (tau * tau);
}

}  // namespace

void FinetuneOptions::validate() const {
    if (epochs < 1) throw ConfigError("--epochs must be at least 1");
    if (batch < 1) throw ConfigError("--batch must be at least 1");
    if (calib.nsamples < 1) throw ConfigError("--nsamples must be at least 1");
    if (calib.seqlen < 2) throw ConfigError("--seqlen must be at least 2");
    for (double lr : {scale_lr, lora_lr, norm_lr})
        if (!(lr >= 0) || !std::isfinite(lr)) throw ConfigError("learning rates must be finite and not negative");
    if (!(temperature > 0) || !std::isfinite(temperature)) throw ConfigError("--temperature must be positive");
    if (!train_scales && !train_lora && !train_norms)
        throw ConfigError("nothing to train: keep the scales, the adapters or --train-norms");
}

struct Finetuner::Impl {
    FinetuneOptions options;
    std::unique_ptr<LlamaModel> teacher, student;
    std::map<std::string, std::shared_ptr<GridLinear>> linears;
    std::vector<Param> params;
    std::map<std::string, at::Tensor> norms;
    int64_t steps = 0;
};

Finetuner::Finetuner(const Checkpoint& student, const Checkpoint& teacher, const FinetuneOptions& o)
    : impl_(std::make_unique<Impl>()) {
    o.validate();
    if (student.packed.bits == 0)
        throw ConfigError(student.path + " is not a quantized folder (no quantization_config); finetune trains a "
                                         "packed model against its FP teacher");
    if (!student.packed.binarizer.empty())
        throw ConfigError(student.path + " holds binarized weights (" + student.packed.binarizer +
                          "); finetune trains the uniform grid's scales");
    if (student.packed.grid != GgmlGrid::kNone)
        throw ConfigError(student.path + " holds GGML blocks (--grid " + ggml_grid_traits(student.packed.grid).name +
                          "); finetune trains the uniform grid's scales");
    if (teacher.packed.bits > 0) throw ConfigError("the teacher " + teacher.path + " is quantized; pass the FP model");
    check_same_shape(student.config, teacher.config);
    Impl& m = *impl_;
    m.options = o;
    m.teacher = LlamaModel::load(teacher, o.model);
    ModelOptions so = o.model;
    so.stream_blocks = false;
    so.dequantize = false;  // packed while loading: only one block's dense copy exists at a time below
    m.student = LlamaModel::load(student, so);
    const at::TensorOptions compute = m.student->options();
    if (o.train_norms && compute.dtype() != at::kFloat)
        throw ConfigError("--train-norms trains the norms in place: use --dtype fp32");
    const LlamaConfig& c = student.config;
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
        const DecoderBlock dense = load_block(*student.tensors, c, student.packed, layer, compute.dtype(at::kFloat),
                                              o.model.use_adapter ? student.adapter.get() : nullptr,
                                              student.adapter_scale, /*keep_packed=*/false);
        DecoderBlock& block = m.student->block(layer);
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string name = hf_names::linear_name(layer, i);
            std::shared_ptr<Linear> base = dense.linears[i];
            at::Tensor a, b;
            double scale = 0.0;
            if (const auto* lora = dynamic_cast<const LoraLinear*>(base.get())) {
                a = lora->lora_a();
                b = lora->lora_b();
                scale = lora->scale();
                base = lora->inner();
            }
            const auto* q = dynamic_cast<const QuantizedLinear*>(base.get());
            if (q == nullptr) throw FormatError(student.path, name + " is not a packed linear");
            auto g = std::make_shared<GridLinear>(q->quantized(), a, b, scale, compute.device());
            if (o.train_scales) m.params.push_back({name + ".log_scales", g->log_scales(), o.scale_lr, {}, {}});
            if (o.train_lora && a.defined()) {
                m.params.push_back({name + ".lora_A", g->lora_a(), o.lora_lr, {}, {}});
                m.params.push_back({name + ".lora_B", g->lora_b(), o.lora_lr, {}, {}});
            }
            m.linears[name] = g;
            block.linears[i] = g;
        }
        if (o.train_norms) {
            const std::string p = hf_names::layer_prefix(layer);
            m.norms[p + hf_names::kInputNorm] = block.input_norm;
            m.norms[p + hf_names::kPostNorm] = block.post_norm;
            m.params.push_back({p + hf_names::kInputNorm, block.input_norm, o.norm_lr, {}, {}});
            m.params.push_back({p + hf_names::kPostNorm, block.post_norm, o.norm_lr, {}, {}});
        }
    }
    if (m.params.empty()) throw ConfigError("nothing to train: the folder has no adapters and the scales are frozen");
    for (auto& p : m.params) {
        p.value.requires_grad_(true);
        p.m = at::zeros_like(p.value);
        p.v = at::zeros_like(p.value);
    }
}

Finetuner::~Finetuner() = default;

double Finetuner::loss(const at::Tensor& ids_in, bool backward) {
    Impl& m = *impl_;
    const at::Tensor ids = ids_in.to(m.student->options().device());
    at::Tensor teacher_logits;
    std::vector<at::Tensor> inputs;  // each block's input, kept without a graph
    at::Tensor h;
    {
        c10::AutoGradMode no_grad(false);
        teacher_logits = m.teacher->forward(ids.to(m.teacher->options().device())).to(ids.device());
        h = m.student->embed(ids);
        for (int64_t l = 0; l < m.student->n_layers(); ++l) {
            inputs.push_back(h);
            h = m.student->run_block(l, h);
        }
        if (!backward) {
            const double value = distillation_kl(teacher_logits, m.student->head(h), m.options.temperature).item<double>();
            if (!std::isfinite(value)) throw NumericError("finetune: the KL is not finite");
            return value;
        }
    }
    c10::AutoGradMode grad(true);
    at::Tensor top = h.detach().requires_grad_(true);
    const at::Tensor kl = distillation_kl(teacher_logits, m.student->head(top), m.options.temperature);
    const double value = kl.item<double>();
    if (!std::isfinite(value)) throw NumericError("finetune: the KL is not finite (lower the learning rates?)");
    torch::autograd::backward({kl});
    at::Tensor g = top.grad();
    // Block by block from the top: recompute the block's forward from its saved input, backpropagate the gradient
    // of its output, hand the gradient of its input down.
    for (int64_t l = m.student->n_layers() - 1; l >= 0; --l) {
        at::Tensor x = inputs[static_cast<size_t>(l)].detach().requires_grad_(l > 0);
        inputs[static_cast<size_t>(l)] = at::Tensor();
        const at::Tensor out = m.student->run_block(l, x);
        torch::autograd::backward({out}, {g.to(out.scalar_type())});
        if (l > 0) g = x.grad();
    }
    return value;
}

void Finetuner::step() {
    Impl& m = *impl_;
    ++m.steps;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const double c1 = 1.0 - std::pow(b1, static_cast<double>(m.steps)), c2 = 1.0 - std::pow(b2, static_cast<double>(m.steps));
    c10::NoGradGuard no_grad;
    for (auto& p : m.params) {
        at::Tensor g = p.value.grad();
        if (!g.defined()) continue;
        if (!at::isfinite(g).all().item<bool>()) throw NumericError("finetune: a non-finite gradient of " + p.name);
        p.m.mul_(b1).add_(g, 1.0 - b1);
        p.v.mul_(b2).addcmul_(g, g, 1.0 - b2);
        p.value.addcdiv_(p.m / c1, (p.v / c2).sqrt_().add_(eps), -p.lr);
        g.zero_();
    }
}

int64_t Finetuner::steps() const { return impl_->steps; }

std::vector<std::pair<std::string, at::Tensor>> Finetuner::parameters() const {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& p : impl_->params) out.emplace_back(p.name, p.value);
    return out;
}

NamedTensors Finetuner::state() const {
    NamedTensors out;
    for (const auto& p : impl_->params) {
        out.emplace_back(p.name, p.value.detach().to(at::kCPU).contiguous());
        out.emplace_back(p.name + ".adam_m", p.m.to(at::kCPU).contiguous());
        out.emplace_back(p.name + ".adam_v", p.v.to(at::kCPU).contiguous());
    }
    return out;
}

void Finetuner::load_state(const NamedTensors& state, int64_t steps) {
    std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
    c10::NoGradGuard no_grad;
    for (auto& p : impl_->params)
        for (const auto& [suffix, target] : std::vector<std::pair<std::string, at::Tensor*>>{
                 {"", &p.value}, {".adam_m", &p.m}, {".adam_v", &p.v}}) {
            auto it = by_name.find(p.name + suffix);
            if (it == by_name.end() || it->second.sizes() != target->sizes())
                throw FormatError("finetune state", "'" + p.name + suffix + "' is missing or has another shape; "
                                                    "use --force to start over");
            // A negative second moment makes Adam's step the square root of a negative number.
            const bool second_moment = suffix == ".adam_v";
            if (!at::isfinite(it->second).all().item<bool>() || (second_moment && (it->second < 0).any().item<bool>()))
                throw FormatError("finetune state", "'" + p.name + suffix + "' holds " +
                                                        (second_moment ? "a negative or non-finite" : "a non-finite") +
                                                        " value; use --force to start over");
            target->copy_(it->second);
        }
    impl_->steps = steps;
}

at::Tensor Finetuner::scales(const std::string& linear) const {
    const GridLinear& g = *impl_->linears.at(linear);
    c10::NoGradGuard no_grad;
    const at::Tensor s = (g.scales0() * at::exp(g.log_scales())).to(at::kHalf).to(at::kFloat);
    if (!at::isfinite(s).all().item<bool>() || !(s > 0).all().item<bool>())
        throw NumericError(linear + ": a trained scale left fp16's range");
    return s.to(at::kCPU);
}

bool Finetuner::has_lora(const std::string& linear) const {
    return impl_->linears.at(linear)->lora_a().defined();
}
at::Tensor Finetuner::lora_a(const std::string& linear) const {
    return impl_->linears.at(linear)->lora_a().detach().to(at::kCPU);
}
at::Tensor Finetuner::lora_b(const std::string& linear) const {
    return impl_->linears.at(linear)->lora_b().detach().to(at::kCPU);
}
at::Tensor Finetuner::norm(const std::string& name) const {
    auto it = impl_->norms.find(name);
    return it == impl_->norms.end() ? at::Tensor() : it->second.detach().to(at::kCPU);
}
const LlamaModel& Finetuner::student() const { return *impl_->student; }

namespace {

// What the state of an interrupted run says about its progress, checked against this run (whose fingerprint it
// shares) before it is trusted: negative steps made Adam's bias corrections zero (NaN weights), and epochs past the
// run's would skip training or index past its epoch losses.
void check_resume_progress(const nlohmann::json& meta, int64_t epochs, int64_t steps_per_epoch) {
    auto fail = [](const std::string& what) {
        throw FormatError("finetune state", what + "; use --force to start over");
    };
    auto integer = [&](const char* key) {
        if (!meta.contains(key) || !meta[key].is_number_integer()) fail(std::string("'") + key + "' is not an integer");
        return meta[key].get<int64_t>();
    };
    const int64_t done = integer("epochs_done"), steps = integer("steps");
    if (done < 0 || done > epochs)
        fail(strprintf("epochs_done %lld is not between 0 and the run's %lld epochs", (long long)done,
                       (long long)epochs));
    if (steps != done * steps_per_epoch)
        fail(strprintf("steps %lld, but %lld epochs of %lld steps make %lld", (long long)steps, (long long)done,
                       (long long)steps_per_epoch, (long long)(done * steps_per_epoch)));
    auto finite = [](const nlohmann::json& v) { return v.is_number() && std::isfinite(v.get<double>()); };
    if (!meta.contains("kl_before") || !finite(meta["kl_before"])) fail("'kl_before' is not a finite number");
    // Absent in states saved before it was recorded: those resume with their earlier epochs' time unknown (0).
    if (meta.contains("seconds") && !(finite(meta["seconds"]) && meta["seconds"].get<double>() >= 0.0))
        fail("'seconds' is not a finite number of seconds");
    const nlohmann::json& kl = meta.contains("epoch_kl") ? meta["epoch_kl"] : nlohmann::json();
    if (!kl.is_array() || static_cast<int64_t>(kl.size()) != done || !std::all_of(kl.begin(), kl.end(), finite))
        fail(strprintf("'epoch_kl' is not a list of %lld finite numbers, one per finished epoch", (long long)done));
}

}  // namespace

FinetuneResult run_finetune(Finetuner& f, const Tokenizer& tokenizer, const FinetuneOptions& o, FinetuneStore* store,
                            const ProgressFn& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    FinetuneResult result;
    result.calib = sample_calibration(o.calib, tokenizer);
    const int64_t N = o.calib.nsamples, T = o.calib.seqlen;
    const at::Tensor ids =
        at::tensor(std::vector<int64_t>(result.calib.tokens.begin(), result.calib.tokens.end())).view({N, T});
    auto mean_kl = [&] {
        double sum = 0.0;
        for (int64_t i = 0; i < N; i += o.batch) {
            const int64_t n = std::min(o.batch, N - i);
            sum += f.loss(ids.narrow(0, i, n), false) * static_cast<double>(n);
        }
        return sum / static_cast<double>(N);
    };
    const int64_t steps_per_epoch = (N + o.batch - 1) / o.batch;
    int64_t first_epoch = 0;
    double earlier_seconds = 0.0;  // spent by the interrupted run on the epochs it finished
    if (store != nullptr && store->has_state()) {
        nlohmann::json meta;
        const NamedTensors state = store->load_state(meta);
        check_resume_progress(meta, o.epochs, steps_per_epoch);
        f.load_state(state, meta.at("steps").get<int64_t>());
        first_epoch = meta.at("epochs_done").get<int64_t>();
        result.kl_before = meta.at("kl_before").get<double>();
        result.epoch_kl = meta.at("epoch_kl").get<std::vector<double>>();
        result.resumed_epochs = first_epoch;
        earlier_seconds = meta.value("seconds", 0.0);
        log_info(strprintf("finetune: resumed after epoch %lld (%lld steps)", (long long)first_epoch,
                           (long long)f.steps()));
    } else {
        result.kl_before = mean_kl();
    }
    log_info(strprintf("finetune: KL(teacher || student) %.5f on %lld x %lld calibration windows", result.kl_before,
                       (long long)N, (long long)T));
    for (int64_t epoch = first_epoch; epoch < o.epochs; ++epoch) {
        double sum = 0.0;
        for (int64_t i = 0, s = 0; i < N; i += o.batch, ++s) {
            const int64_t n = std::min(o.batch, N - i);
            const double kl = f.loss(ids.narrow(0, i, n), true);
            f.step();
            sum += kl * static_cast<double>(n);
            if (progress &&
                !progress({"finetune", epoch * steps_per_epoch + s + 1, o.epochs * steps_per_epoch, elapsed(),
                           strprintf("epoch %lld kl %.5f", (long long)epoch + 1, kl)}))
                throw Cancelled{};
        }
        result.epoch_kl.push_back(sum / static_cast<double>(N));
        if (store != nullptr)
            store->save_state(f.state(), {{"epochs_done", epoch + 1},
                                          {"steps", f.steps()},
                                          {"kl_before", result.kl_before},
                                          {"epoch_kl", result.epoch_kl},
                                          {"seconds", earlier_seconds + elapsed()}});
    }
    result.kl_after = mean_kl();
    result.steps = f.steps();
    result.seconds = earlier_seconds + elapsed();
    log_info(strprintf("finetune: KL %.5f -> %.5f after %lld steps", result.kl_before, result.kl_after,
                       (long long)result.steps));
    return result;
}

}  // namespace saliq
