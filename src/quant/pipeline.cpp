// The block pipeline: the one loop over decoder blocks that every quantization method runs in.
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "quant/method.h"
#include "quant/trainable.h"
#include "quant/requant.h"
#include "quant/slim_bits.h"
#include "saliq/binarize.h"
#include "saliq/distributed.h"
#include "saliq/dtype.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/quantize.h"
#include "saliq/saliency.h"
#include "saliq/strings.h"
#include "saliq/tokenizer.h"

namespace saliq {
namespace {

// ||approx - exact||^2 / ||exact||^2, the sums taken over every rank's rows (a rank may have none: undefined tensors).
double relative_error(const at::Tensor& approx, const at::Tensor& exact) {
    double denom = exact.defined() ? exact.to(at::kDouble).pow(2).sum().item<double>() : 0.0;
    double num = exact.defined() ? (approx.to(at::kDouble) - exact.to(at::kDouble)).pow(2).sum().item<double>() : 0.0;
    denom = dist_sum(denom);
    num = dist_sum(num);
    return denom > 0 ? num / denom : num;
}

void check_shapes(const LlamaConfig& c, const QuantSpec& spec) {
    const int64_t rows[] = {c.hidden_size, c.n_heads * c.head_dim, c.intermediate_size};
    const char* names[] = {"q/k/v/gate/up_proj", "o_proj", "down_proj"};
    for (int i = 0; i < 3; ++i)
        if (spec.group_size > rows[i])
            throw ConfigError(strprintf("group size %lld is larger than the rows of %s (%lld inputs); use a smaller "
                                        "--group-size or -1 for one group per row",
                                        (long long)spec.group_size, names[i], (long long)rows[i]));
}

at::ScalarType act_storage_dtype(const QuantizeOptions& o, const at::TensorOptions& compute) {
    if (o.act_dtype == "auto") return compute.dtype().toScalarType();
    if (o.act_dtype != "fp32" && o.act_dtype != "bf16" && o.act_dtype != "fp16")
        throw ConfigError("--act-dtype must be auto, fp32, bf16 or fp16, not '" + o.act_dtype + "'");
    return float_dtype(o.act_dtype, "--act-dtype");
}

// A linear of the FP block with ReQuant's outliers taken out for the method: it computes with the whole FP weight
// (the block's targets stay those of the FP model) while weight(), what the method quantizes, is W_dense.
class OutlierSplitLinear : public WrappingLinear {
public:
    OutlierSplitLinear(std::shared_ptr<Linear> fp, at::Tensor dense)
        : WrappingLinear(std::move(fp)), dense_(std::move(dense)) {}
    at::Tensor weight() const override { return dense_; }

private:
    at::Tensor dense_;
};

// Takes each linear's planned count of largest-magnitude weights out of `block` (S_outlier: their positions and FP
// values); the linears become OutlierSplitLinear.
std::vector<SparsePart> split_outliers(DecoderBlock& block, int64_t layer, const std::map<std::string, int64_t>& counts) {
    std::vector<SparsePart> outliers(kNumLinears);
    for (int i = 0; i < kNumLinears; ++i) {
        const int64_t k = counts.at(hf_names::linear_name(layer, i));
        if (k == 0) continue;
        const at::Tensor W = block.linears[i]->weight();
        SparsePart& part = outliers[static_cast<size_t>(i)];
        part.index = largest_magnitude_index(W, k);
        part.value = W.reshape({-1}).index_select(0, part.index).to(at::kFloat);
        at::Tensor dense = W.clone();
        dense.view({-1}).index_fill_(0, part.index, 0.0);
        block.linears[i] = std::make_shared<OutlierSplitLinear>(block.linears[i], std::move(dense));
    }
    return outliers;
}

// Stores with each finished linear the sparse part that restores its outliers' FP values (on top of the grid and
// any LoRA), unless the method kept them itself (the GPTQ solver). Reinstalls the linears of `block` that changed.
void attach_outliers(std::vector<LinearResult>& linears, const std::vector<SparsePart>& outliers, DecoderBlock* block,
                     const at::TensorOptions& options) {
    for (int i = 0; i < kNumLinears; ++i) {
        const SparsePart& s = outliers[static_cast<size_t>(i)];
        LinearResult& lr = linears[static_cast<size_t>(i)];
        if (!s.defined() || lr.q.outliers.defined()) continue;
        attach_outlier(lr, s);
        if (block != nullptr) block->linears[i] = inference_linear(lr, options);
    }
}

}  // namespace

void attach_outlier(LinearResult& lr, const SparsePart& s) {
    const at::Tensor dense = inference_linear(lr, at::TensorOptions().dtype(at::kFloat).device(s.value.device()))->weight();
    lr.q.outliers.index = s.index;
    lr.q.outliers.value = (s.value.to(dense.device()) - dense.reshape({-1}).index_select(0, s.index.to(dense.device())))
                              .to(at::kHalf)
                              .to(at::kFloat);
    if (!at::isfinite(lr.q.outliers.value).all().item<bool>())
        throw NumericError(lr.name + ": an outlier does not fit fp16 (|value| > 65504)");
}

namespace {

// Quantizes one block with the method, moves both chains on, and (with `measure`) measures each linear's and the
// block's reconstruction error on the run's first error windows: this rank's first n_err windows (a distributed
// rank may hold none of them; the sums are taken over the ranks). The quantized block's output on those windows is
// the propagated chain's, so error measurement costs only one FP forward over them.
BlockResult quantize_one_block(QuantMethod& method, int64_t layer, DecoderBlock& block, const DecoderBlock& fp_block,
                               BlockContext& context, bool measure, int64_t n_err, at::Tensor& hidden,
                               at::Tensor& hidden_fp) {
    std::vector<std::vector<at::Tensor>> seen(kNumLinears);
    at::Tensor fp_out;
    if (n_err > 0) {
        const DecoderBlock hooked = capturing_block(fp_block, kAllLinears, seen);
        fp_out = context.run(hooked, hidden.narrow(0, 0, n_err));
    }

    BlockResult result;
    result.layer = layer;
    at::Tensor fp_next, next;
    context.fp_outputs = &fp_next;
    context.outputs = &next;
    result.method_stats = method.quantize_block(block, context);
    context.fp_outputs = nullptr;
    context.outputs = nullptr;
    const auto method_linears = block.linears;
    std::vector<LinearResult> linears = method.take_results();
    for (int i = 0; i < kNumLinears; ++i) {
        const std::string name = hf_names::linear_name(layer, i);
        LinearResult lr;
        if (!linears.empty()) {
            lr = linears.at(static_cast<size_t>(i));
        } else {
            const auto* q = dynamic_cast<const QuantizedLinear*>(block.linears[i].get());
            if (q == nullptr) throw Error("internal: method " + context.options->method + " left " + name + " unquantized");
            lr.q = q->quantized();
        }
        lr.name = name;
        result.linears.push_back(std::move(lr));
    }
    if (context.outliers != nullptr)
        attach_outliers(result.linears, *context.outliers, &block, block.input_norm.options());
    for (int i = 0; i < kNumLinears; ++i) {
        LinearResult& lr = result.linears[static_cast<size_t>(i)];
        if (measure) {
            // Through forward(): a BinaryMoS linear has no single weight.
            at::Tensor approx, exact;
            if (n_err > 0) {
                const at::Tensor X = at::cat(seen[i], 0);
                approx = block.linears[i]->forward(X);
                exact = fp_block.linears[i]->forward(X);
            }
            lr.rel_error = relative_error(approx, exact);
        }
    }
    seen.clear();
    if (hidden_fp.defined()) hidden_fp = fp_next.defined() ? fp_next : context.run(fp_block, hidden_fp);
    // The method's outputs hold while its linears are the block's (outliers it left are added back above).
    hidden = next.defined() && block.linears == method_linears ? std::move(next) : context.run(block, hidden);
    if (measure) result.block_error = relative_error(n_err > 0 ? hidden.narrow(0, 0, n_err) : at::Tensor(), fp_out);
    return result;
}

// Bytes per element of a dtype.
uint64_t dtype_bytes(at::ScalarType t) { return static_cast<uint64_t>(c10::elementSize(t)); }

}  // namespace

std::shared_ptr<Linear> inference_linear(const LinearResult& result, const at::TensorOptions& options) {
    std::shared_ptr<Linear> base = result.binary.defined() ? make_binary_linear(result.binary, options)
                                                           : std::make_shared<QuantizedLinear>(result.q, options);
    if (!result.lora_a.defined()) return base;
    return std::make_shared<LoraLinear>(base, result.lora_a.to(options), result.lora_b.to(options),
                                        result.lora_scale);
}

at::Tensor CapturingLinear::forward(const at::Tensor& x) const {
    hook_(x);
    return inner_->forward(x);
}

DecoderBlock capturing_block(const DecoderBlock& block, const std::vector<int>& indices,
                             std::vector<std::vector<at::Tensor>>& seen) {
    DecoderBlock hooked = block;
    for (int i : indices)
        hooked.linears[i] = std::make_shared<CapturingLinear>(
            block.linears[i], [&seen, i](const at::Tensor& x) { seen[i].push_back(x.detach()); });
    return hooked;
}

std::vector<at::Tensor> input_second_moments(const DecoderBlock& block, const BlockContext& context,
                                             at::Tensor* output) {
    std::vector<at::Tensor> sums(kNumLinears);
    std::vector<double> tokens(kNumLinears, 0.0);
    DecoderBlock hooked = block;
    for (int i : kAllLinears)
        hooked.linears[i] = std::make_shared<CapturingLinear>(block.linears[i], [&sums, &tokens, i](const at::Tensor& a) {
            const at::Tensor flat = a.reshape({-1, a.size(-1)}).to(at::kDouble);
            const at::Tensor s = flat.square().sum(0);
            if (sums[i].defined()) sums[i].add_(s);
            else sums[i] = s;
            tokens[i] += static_cast<double>(flat.size(0));
        });
    at::Tensor out = context.run(hooked, *context.inputs);
    if (output != nullptr) *output = std::move(out);
    dist_all_reduce_sum(sums);
    dist_all_reduce_sum(tokens);
    for (int i : kAllLinears) sums[i] = (sums[i] / tokens[i]).to(at::kFloat);
    return sums;
}

at::Tensor BlockContext::run(const DecoderBlock& block, const at::Tensor& x) const {
    // Written batch by batch into one preallocated buffer: no list of pieces plus a concatenated copy.
    at::Tensor out = at::empty_like(x);
    const int64_t n = x.size(0), b = std::max<int64_t>(1, options->batch_size);
    for (int64_t i = 0; i < n; i += b) {
        const int64_t m = std::min(b, n - i);
        out.narrow(0, i, m).copy_(block_forward(block, *config, *rope, compute_slice(x, i, m, block)));
    }
    return out;
}

int64_t block_parameter_count(const LlamaConfig& c) {
    const int64_t H = c.hidden_size, I = c.intermediate_size, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
    return 2 * qd * H + 2 * kvd * H + 3 * I * H;
}

uint64_t training_workspace_bytes(const LlamaConfig& c, int64_t windows, int64_t seqlen) {
    const auto tokens = static_cast<uint64_t>(std::max<int64_t>(1, windows) * seqlen);
    const auto rows = static_cast<uint64_t>(10 * c.hidden_size + 4 * c.intermediate_size);
    return 12 * static_cast<uint64_t>(block_parameter_count(c)) + 4 * tokens * rows;
}

at::Tensor compute_slice(const at::Tensor& buffer, int64_t b, int64_t n, const DecoderBlock& block) {
    return buffer.narrow(0, b, n).to(block.input_norm.scalar_type());
}

namespace {

// The method itself reads the windows (not only to measure errors): every calibrating method, and RTN weighing its
// fit by the windows' importance.
bool method_reads_windows(const QuantizeOptions& o) {
    return method_traits(o.method).needs_calibration || o.rtn_importance;
}

}  // namespace

bool quantize_needs_calibration(const QuantizeOptions& o) {
    return method_reads_windows(o) || o.error_windows > 0;
}

namespace {

// --quantizer: the binarizers train inside ApiQ / OmniQuant and fix their own bits.
void validate_quantizer(QuantizeOptions& o) {
    const QuantizerTraits& quantizer = quantizer_traits(o.apiq.quantizer);
    const MethodTraits& method = method_traits(o.method);
    if (!quantizer.binary) {
        o.spec.validate();
        if (method.allocates_bits && method.takes_bit_map) o.bit_map = "slim";  // SliM-LLM's map, then trained
        if (!o.bit_map.empty() && o.bit_map != "slim" && !path_exists(o.bit_map))
            throw ConfigError("--bit-map '" + o.bit_map + "' is neither slim (SliM-LLM's allocation per block) nor an "
                              "existing saliq_mixed folder or safetensors file of bit maps");
        if (!o.bit_map.empty() && !method.takes_bit_map)
            throw ConfigError("--bit-map is trained by " + methods_where(&MethodTraits::takes_bit_map) + ", not " +
                              o.method + (method.allocates_bits ? " (which allocates its own)" : ""));
        if (method.allocates_bits || !o.bit_map.empty()) {
            if (o.spec.bits < 2 || o.spec.bits > 7)
                throw ConfigError("SliM-LLM's bit map moves groups to b-1 and b+1 bits: --bits must be 2 to 7");
            if (o.spec.symmetric) throw ConfigError("SliM-LLM's groups are asymmetric (min-max ranges): drop --sym");
            if (o.gptq.act_order)
                throw ConfigError(o.method + " keeps groups in column order (its bit map is per group): drop "
                                  "--act-order (--group-order keeps them)");
            if (!(o.slim.salience_lambda > 0) || !std::isfinite(o.slim.salience_lambda))
                throw ConfigError("--slim-lambda must be a positive number");
        }
        return;
    }
    if (!o.bit_map.empty()) throw ConfigError("--bit-map is for the uniform grid, not --quantizer " + o.apiq.quantizer);
    if (!method.trains_binarizers)
        throw ConfigError("--quantizer " + o.apiq.quantizer + " is trained by " +
                          methods_where(&MethodTraits::trains_binarizers) + ", not " + o.method);
    if (o.spec.bits != quantizer.bits)
        throw ConfigError(strprintf("--quantizer %s %s: pass --bits %d", quantizer.name, quantizer.bits_why,
                                    quantizer.bits));
    if (o.spec.symmetric) throw ConfigError("--sym has no meaning for --quantizer " + o.apiq.quantizer);
    if (quantizer.experts && (o.apiq.mos_experts < 1 || o.apiq.mos_experts > 64))
        throw ConfigError("--mos-experts must be between 1 and 64");
    QuantSpec groups = o.spec;
    groups.bits = 2;
    groups.validate();  // the group size (db-llm's alpha groups)
}

// The regularizer's settings and the saliency pass that would feed it.
void validate_saliency_options(const QuantizeOptions& o, const LlamaConfig& c) {
    const SaliencyOptions& s = o.saliency;
    if (s.metric != "fisher" && s.metric != "hessian" && s.metric != "pqi")
        throw ConfigError("--saliency-metric must be fisher, hessian or pqi, not '" + s.metric + "'");
    if (s.fisher_norm != "none" && s.fisher_norm != "mean")
        throw ConfigError("--fisher-norm must be none or mean, not '" + s.fisher_norm + "'");
    if (s.reg_method != "before_lora" && s.reg_method != "after_lora")
        throw ConfigError("--reg-method must be before_lora or after_lora, not '" + s.reg_method + "'");
    if (s.pqi_points < 1) throw ConfigError("--pqi-points must be at least 1");
    if (s.nsamples < 1 || s.seqlen < 2)
        throw ConfigError("--fisher-nsamples must be at least 1 and --fisher-seqlen at least 2");
    if (!s.fisher_path.empty() && !path_exists(s.fisher_path))
        throw IoError(s.fisher_path, "saliency file does not exist");
    if (s.enabled && s.weighted && s.fisher_path.empty() && s.seqlen > c.max_position_embeddings)
        throw ConfigError(strprintf("--fisher-seqlen %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)s.seqlen, (long long)c.max_position_embeddings));
}

// --lwc-init auto. The searched start at 2 bits: on stories260K W2 g32 it closes 54% of ApiQ-bw's gap to FP (3/3
// seeds), on SmolLM2-135M W2 g64 17.6% (seed 0); at 3 bits it gains little (stories260K 6.6%, 2/3 seeds; SmolLM2
// 3.2%), and the saliency verdict at 3 bits was measured from min-max. Binarizers, bit maps and GGML grids have no
// search.
std::string default_lwc_init(const QuantizeOptions& o, const MethodTraits& method) {
    const bool searchable = method.searches_clipping_init && !is_binarizer(o.apiq.quantizer) && o.bit_map.empty() &&
                            o.spec.grid == GgmlGrid::kNone;
    return searchable && o.spec.bits <= 2 ? "search" : "minmax";
}

// Options the chosen method would not use: refused where the run would silently be another (the saliency
// regularizer on a method that does not train), otherwise named in a warning. "Set" means changed from the default.
void check_options_apply(const QuantizeOptions& o, const MethodTraits& method) {
    if (o.saliency.enabled && !method.trains)
        throw ConfigError("--saliency trains a regularizer: it works with --method " +
                          methods_where(&MethodTraits::trains) + ", not " + o.method);
    if (o.rtn_importance && !method.fits_by_input_importance)
        throw ConfigError("--rtn-importance weighs the group fit of " +
                          methods_where(&MethodTraits::fits_by_input_importance) + ", not " + o.method);
    if (o.apiq.lwc_init != "minmax" && o.apiq.lwc_init != "search" && o.apiq.lwc_init != "auto")
        throw ConfigError("--lwc-init must be auto, minmax or search, not '" + o.apiq.lwc_init + "'");
    if (o.apiq.lwc_init == "search") {
        if (!method.searches_clipping_init)
            throw ConfigError("--lwc-init search starts the learned clipping of " +
                              methods_where(&MethodTraits::searches_clipping_init) + ", not " + o.method);
        if (is_binarizer(o.apiq.quantizer) || !o.bit_map.empty() || o.spec.grid != GgmlGrid::kNone)
            throw ConfigError("--lwc-init search is for the uniform grid: no --quantizer, --bit-map or --grid beside it");
    }
    const ApiqOptions defaults;
    std::vector<std::string> ignored;
    if (o.gptq.act_order && !method.orders_columns) ignored.push_back("--act-order");
    // value_or: validation runs twice (the CLI, then quantize_model) and the first resolves the default to false
    // for a method that does not order columns; only an explicit --group-order is worth a warning.
    if (o.gptq.group_order.value_or(false) && !method.orders_columns) ignored.push_back("--group-order");
    float_dtype(o.apiq.adapter_dtype, "--adapter-dtype");
    // The LoRA rate counts as set when it is not the default for this step's windows (the second validation pass sees
    // the default made concrete; methods that do not train leave it unset).
    const bool lora_lr_set = o.apiq.lora_lr >= 0 && o.apiq.lora_lr != default_lora_learning_rate(step_windows(o));
    if (!method.trains_adapters && (o.apiq.lora_rank != defaults.lora_rank || o.apiq.lora_alpha != defaults.lora_alpha ||
                                      lora_lr_set || o.apiq.adapter_dtype != defaults.adapter_dtype))
        ignored.push_back("--lora-rank/--lora-alpha/--lora-lr/--adapter-dtype");
    if (!method.trains) {
        if (o.apiq.epochs != defaults.epochs) ignored.push_back("--epochs");
        if (!o.apiq.stages.empty()) ignored.push_back("--stages");
        if (o.apiq.lwc_lr != defaults.lwc_lr) ignored.push_back("--lwc-lr");
        if (o.apiq.train_batch != defaults.train_batch) ignored.push_back("--train-batch");
        if (o.apiq.train_dtype != defaults.train_dtype) ignored.push_back("--train-dtype");
    } else if (!o.apiq.stages.empty() && o.apiq.epochs != defaults.epochs) {
        log_warn("--epochs is ignored: --stages gives each stage's epochs");
    }
    for (const auto& option : ignored) log_warn(option + " does not apply to --method " + o.method + ": ignored");
}

// --grid: a method that can quantize onto it, no option the GGML type cannot store, and every row on some type
// (the fallbacks named, as llama-quantize names them).
void check_ggml_grid(const QuantizeOptions& o, const MethodTraits& method, const LlamaConfig& c) {
    const char* name = ggml_grid_traits(o.spec.grid).name;
    if (!method.supports_ggml_grid)
        throw ConfigError(std::string("--grid ") + name + " is quantized by " +
                          methods_where(&MethodTraits::supports_ggml_grid) + ", not " + o.method);
    if (o.gptq.act_order) throw ConfigError("--act-order permutes groups (g_idx), which GGML types cannot store");
    if (method.trains && ggml_grid_traits(o.spec.grid).levels)
        throw ConfigError(std::string("--grid ") + name + " maps codes to fixed levels with no range to learn: "
                          "quantize it with rtn or gptq");
    if (is_binarizer(o.apiq.quantizer) || !o.bit_map.empty() || o.sparse.enabled())
        throw ConfigError(std::string("--grid ") + name + " stores one GGML type per linear: no --quantizer, "
                          "--bit-map or sparse parts beside it");
    const auto shapes = linear_shapes(c);
    std::map<std::string, std::set<std::string>> fallbacks;  // type -> linears taking it
    for (int i = 0; i < kNumLinears; ++i) {
        const QuantSpec row = spec_for_row(o.spec, shapes[i][1]);
        if (row.grid != o.spec.grid) fallbacks[ggml_grid_traits(row.grid).name].insert(hf_names::kLinearNames[i]);
    }
    for (const auto& [type, linears] : fallbacks) {
        std::string list;
        for (const auto& l : linears) list += (list.empty() ? "" : ", ") + l;
        log_warn(std::string("--grid ") + name + ": rows of " + list + " are not a multiple of " +
                 std::to_string(ggml_grid_traits(o.spec.grid).block) + " weights; they take " + type +
                 ", as llama-quantize does");
    }
}

}  // namespace

void validate_quantize_options(const Checkpoint& ckpt, const Tokenizer& tokenizer, QuantizeOptions& o) {
    validate_quantizer(o);
    validate_sparse_options(o);
    // lambda's scale follows the normalization: F / sum F per linear (mean) or the raw saliency (none, the paper's).
    if (o.saliency.lambda < 0) o.saliency.lambda = o.saliency.fisher_norm == "mean" ? 20.0 : 0.1;
    if (ckpt.packed.bits > 0)
        throw ConfigError(ckpt.path + " is already quantized (" + std::to_string(ckpt.packed.bits) +
                          "-bit GPTQ); quantize the full-precision model instead");
    const LlamaConfig& config = ckpt.config;
    check_shapes(config, o.spec);
    const MethodTraits& traits = method_traits(o.method);
    const at::TensorOptions compute = resolve_model_options(o.model);
    act_storage_dtype(o, compute);
    if (traits.trains) o.apiq.train_dtype = resolve_train_dtype(o.apiq.train_dtype, compute);  // the manifest's
    check_options_apply(o, traits);
    if (traits.trains)  // after the check: the second validation pass sees the concrete rates
        resolve_learning_rates(o, traits.trains_adapters);
    if (o.apiq.lwc_init == "auto") o.apiq.lwc_init = default_lwc_init(o, traits);
    if (o.spec.grid != GgmlGrid::kNone) check_ggml_grid(o, traits, config);
    if (o.gptq.act_order && o.gptq.group_order.value_or(false))
        throw ConfigError("--act-order and --group-order are two column orders; pick one");
    if (!o.gptq.group_order.has_value())
        o.gptq.group_order = traits.orders_columns && traits.groups_ordered_by_default && !o.gptq.act_order;
    if (dist_active()) {  // what runs over the ranks' shards of the windows, so far
        if (!traits.shards_windows)
            throw ConfigError("--method " + o.method + " runs in one process; over several ranks: " +
                              methods_where(&MethodTraits::shards_windows));
        if (o.sparse.outliers_pct > 0 || o.sparse.significant_pct > 0)
            throw ConfigError("--sparse-outliers and --sparse-significant run in one process, not over several ranks");
        if (o.saliency.enabled && o.saliency.weighted && o.saliency.fisher_path.empty() &&
            o.saliency.metric != "fisher")
            throw ConfigError("--saliency-metric " + o.saliency.metric + " runs in one process; over several ranks: "
                              "--saliency-metric fisher, or --fisher FILE computed beforehand");
        if (o.bit_map == "slim")
            throw ConfigError("SliM-LLM's bit allocation (--method " + o.method + ") runs in one process");
        // Training steps in lockstep: every rank needs as many windows as the others.
        const int64_t unit = dist_world_size() * std::max<int64_t>(1, o.apiq.train_batch);
        if (traits.trains && o.calib.nsamples % unit != 0)
            throw ConfigError(strprintf("--nsamples %lld does not split into equal shares of whole --train-batch %lld "
                                        "steps over %d ranks: give a multiple of %lld",
                                        (long long)o.calib.nsamples, (long long)o.apiq.train_batch, dist_world_size(),
                                        (long long)unit));
    }
    validate_saliency_options(o, config);
    if (o.saliency.enabled && o.saliency.weighted && !o.saliency.fisher_path.empty())
        check_fisher_file(o.saliency.fisher_path, config);
    if (!o.bit_map.empty() && o.bit_map != "slim")  // every block's maps, checked before the run starts
        for (int64_t layer = 0; layer < config.n_layers; ++layer) (void)read_bit_maps(o.bit_map, layer, config, o.spec);
    if (o.error_windows < -1) throw ConfigError("--error-windows must be 0 or more");
    if (o.error_windows == -1) o.error_windows = traits.needs_calibration ? kDefaultErrorWindows : 0;
    if (o.calib.seqlen <= 0) {
        o.calib.seqlen = std::min<int64_t>(2048, config.max_position_embeddings);
        if (quantize_needs_calibration(o))
            log_info(strprintf("--seqlen not given: %lld (min of 2048 and the model's context)", (long long)o.calib.seqlen));
    }
    if (!quantize_needs_calibration(o)) return;  // RTN without error windows reads no text at all
    if (o.calib.seqlen > config.max_position_embeddings)
        throw ConfigError(strprintf("--seqlen %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)o.calib.seqlen, (long long)config.max_position_embeddings));
    if (o.calib.seqlen < 2) throw ConfigError("--seqlen must be at least 2");
    if (o.calib.nsamples < 1) throw ConfigError("--nsamples must be at least 1");
    if (o.batch_size < 1) throw ConfigError("--batch-size must be at least 1");
    if (o.apiq.train_batch < 1) throw ConfigError("--train-batch must be at least 1");
    if (tokenizer.vocab_size() != config.vocab_size)
        throw ConfigError(strprintf("tokenizer has %d pieces but the model's vocabulary is %lld", tokenizer.vocab_size(),
                                    (long long)config.vocab_size));
    if (o.calib.source != "c4" && o.calib.source != "wikitext2" && o.calib.source != "ptb" &&
        o.calib.source != "tinystories" && !path_exists(o.calib.source))
        throw ConfigError("--calib '" + o.calib.source + "' is neither a data set name (wikitext2, c4, ptb, tinystories) "
                          "nor an existing text file");
}

std::string MemoryEstimate::describe() const {
    return strprintf("%s activations (%.1f buffers of N x T x hidden) + %s per block's weights + %s embedding + "
                     "%s workspace (a forward batch, the method's own) + %s runtime = %s",
                     human_bytes(activations).c_str(), activation_buffers, human_bytes(block_weights).c_str(),
                     human_bytes(embedding).c_str(), human_bytes(workspace).c_str(), human_bytes(runtime).c_str(),
                     human_bytes(total).c_str()) +
           (detach > 0 ? "; the significant-weight detach after the blocks holds " + human_bytes(detach) : "");
}

MemoryEstimate estimate_quantize_memory(const Checkpoint& ckpt, const QuantizeOptions& o) {
    const LlamaConfig& c = ckpt.config;
    const MethodTraits& traits = method_traits(o.method);
    const auto method = traits.make();
    const at::TensorOptions compute = resolve_model_options(o.model);
    const uint64_t act = dtype_bytes(act_storage_dtype(o, compute)), w = dtype_bytes(compute.dtype().toScalarType());
    MemoryEstimate e;
    const bool calib = quantize_needs_calibration(o);
    int64_t N = calib ? (method_reads_windows(o) ? o.calib.nsamples : o.error_windows) : 0;
    if (dist_active() && method_reads_windows(o)) {  // this rank's share (the largest one)
        const int64_t unit = traits.trains ? 1 : std::max<int64_t>(1, o.batch_size);
        const int64_t units = (N + unit - 1) / unit;
        N = std::min(N, (units + dist_world_size() - 1) / dist_world_size() * unit);
    }
    if (calib) {
        // The quantized chain, its next value, the FP chain and its next value when the method keeps one, the
        // method's own buffers, and the error windows' FP output and captured linear inputs.
        e.activation_buffers = 2.0 + (traits.needs_fp_chain ? 2.0 : 0.0) + method->extra_activation_buffers(c);
        const double err = static_cast<double>(std::min(N, o.error_windows)) / static_cast<double>(std::max<int64_t>(1, N));
        e.activation_buffers += err * (7.0 + static_cast<double>(c.intermediate_size) / static_cast<double>(c.hidden_size));
        e.activations = static_cast<uint64_t>(e.activation_buffers * static_cast<double>(N) *
                                              static_cast<double>(o.calib.seqlen) * static_cast<double>(c.hidden_size) *
                                              static_cast<double>(act));
        e.embedding = static_cast<uint64_t>(c.vocab_size * c.hidden_size) * w;
    }
    const uint64_t block_params = static_cast<uint64_t>(block_parameter_count(c));
    // FP weights, the quantized weights' dense form, and (training methods) fp32 master copies with Adam state.
    const double copies = traits.needs_fp_chain ? 6.0 : 2.0;
    e.block_weights = static_cast<uint64_t>(copies * static_cast<double>(block_params) * static_cast<double>(std::max<uint64_t>(w, 4)));
    if (N > 0) {
        // One forward batch: about five hidden-wide and four intermediate-wide rows per token in the compute dtype,
        // plus attention's scores and probabilities (at most two pieces of kMaxScoreElements fp32).
        const auto tokens = static_cast<uint64_t>(std::min<int64_t>(N, o.batch_size) * o.calib.seqlen);
        const auto rows = static_cast<uint64_t>(5 * c.hidden_size + 4 * c.intermediate_size);
        const auto scores = static_cast<uint64_t>(std::min<int64_t>(N, o.batch_size) * c.n_heads) *
                            static_cast<uint64_t>(o.calib.seqlen * o.calib.seqlen);
        e.workspace = tokens * rows * std::max<uint64_t>(w, 4) +
                      2 * 4 * std::min<uint64_t>(scores, static_cast<uint64_t>(kMaxScoreElements));
    }
    e.workspace += method->workspace_bytes(c, o);
    e.runtime = kRuntimeBytes;
    e.total = e.activations + e.block_weights + e.embedding + e.workspace + e.runtime;
    if (o.sparse.significant_pct > 0) {
        const auto linear = static_cast<uint64_t>(block_parameter_count(c) * c.n_layers);
        const auto other = static_cast<uint64_t>(c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2));
        const auto tokens = static_cast<uint64_t>(o.calib.seqlen);
        const auto saved = tokens * static_cast<uint64_t>(c.n_layers) *
                               static_cast<uint64_t>(10 * c.hidden_size + 4 * c.intermediate_size) * 4 +
                           2 * tokens * static_cast<uint64_t>(c.vocab_size) * 4;
        e.detach = 4 * (5 * linear + 2 * other) + linear + saved;
        e.total = std::max(e.total, e.detach + e.runtime);
    }
    return e;
}

QuantizeResult quantize_model(const Checkpoint& ckpt, const Tokenizer& tokenizer, const QuantizeOptions& options,
                              BlockStore* store, const ProgressFn& progress) {
    QuantizeOptions o = options;
    validate_quantize_options(ckpt, tokenizer, o);
    if (o.saliency.enabled && o.saliency.weighted && o.saliency.fisher_path.empty())
        throw ConfigError("--saliency needs its saliency file: give --fisher FILE, or compute it first "
                          "(prepare_saliency)");
    const LlamaConfig& config = ckpt.config;
    const MethodTraits& traits = method_traits(o.method);
    auto method = traits.make();
    const at::TensorOptions compute = resolve_model_options(o.model);
    const at::ScalarType storage = act_storage_dtype(o, compute);
    c10::NoGradGuard no_grad;

    QuantizeResult result;
    const auto start = std::chrono::steady_clock::now();
    auto seconds_since = [](std::chrono::steady_clock::time_point t) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    };
    // RTN reads no text: with no error windows asked for, there is nothing to embed or run.
    const bool calibrate = quantize_needs_calibration(o);
    if (calibrate && !method_reads_windows(o)) o.calib.nsamples = o.error_windows;  // windows only to measure
    at::Tensor hidden, hidden_fp;
    const int64_t N = calibrate ? o.calib.nsamples : 0, T = o.calib.seqlen;
    std::vector<int64_t> local_windows;  // the run's windows this rank holds, in order
    Rope rope;
    if (calibrate) {
        result.calib = sample_calibration(o.calib, tokenizer);
        result.calib_seconds = seconds_since(start);
        log_info(strprintf("calibration: %lld windows x %lld tokens from %s (range %s, seed %llu) in %.2f s",
                           (long long)N, (long long)T, o.calib.source.c_str(), o.calib.range.to_string().c_str(),
                           (unsigned long long)o.calib.seed, result.calib_seconds));
        at::Tensor all_ids = at::tensor(std::vector<int64_t>(result.calib.tokens.begin(), result.calib.tokens.end()))
                                 .view({N, T});
        // A distributed run keeps its share of the windows. Summing methods: a contiguous run of whole forward
        // batches, so every batch is one a single process runs too. Training methods: its --train-batch slot of
        // every step of ranks x --train-batch windows, so each averaged step is the single-process step with that
        // larger batch.
        std::string share;
        local_windows.clear();
        if (dist_active() && traits.trains) {
            const int64_t tb = std::max<int64_t>(1, o.apiq.train_batch), step = dist_world_size() * tb;
            std::vector<int64_t> mine;
            for (int64_t s = 0; s < N; s += step)
                for (int64_t j = 0; j < tb; ++j) mine.push_back(s + dist_rank() * tb + j);
            all_ids = all_ids.index_select(0, at::tensor(mine, at::kLong));
            local_windows = mine;
            share = strprintf("windows %lld, %lld, ... (%lld of every %lld)", (long long)mine[0],
                              (long long)(mine.size() > 1 ? mine[1] : mine[0]), (long long)tb, (long long)step);
        } else {
            const auto [first, end] = dist_shard(N, o.batch_size);
            all_ids = all_ids.narrow(0, first, end - first);
            for (int64_t w = first; w < end; ++w) local_windows.push_back(w);
            share = strprintf("windows %lld..%lld", (long long)first, (long long)end - 1);
        }
        if (dist_active()) {
            log_info(strprintf("distributed: %d ranks, this one runs %s", dist_world_size(), share.c_str()));
            result.distributed["ranks"] = dist_world_size();
            if (traits.trains) {
                const int64_t effective = dist_world_size() * std::max<int64_t>(1, o.apiq.train_batch);
                result.distributed["effective_train_batch"] = effective;
                log_info(strprintf("data-parallel training: every optimizer step averages the gradients of %d ranks "
                                   "x --train-batch %lld = %lld windows",
                                   dist_world_size(), (long long)o.apiq.train_batch, (long long)effective));
            }
        }
        const at::Tensor ids = all_ids.to(compute.device());
        hidden = at::embedding(ckpt.tensors->get(hf_names::kEmbed).to(compute), ids).to(storage);  // [N, T, H]
        ckpt.tensors->release(hf_names::kEmbed);
        if (traits.needs_fp_chain) hidden_fp = hidden.clone();
        rope = make_rope(config, T, compute);
    }
    // Errors are measured on the run's first windows: of those, this rank holds its first n_err.
    const int64_t n_err_run = std::min(N, o.error_windows);
    int64_t n_err = 0;
    for (int64_t w : local_windows) n_err += w < n_err_run ? 1 : 0;
    // ReQuant's outlier counts per linear, planned over the whole model before its first block (a resumed run plans
    // again: the plan depends only on the weights and the options).
    std::map<std::string, int64_t> outlier_counts;
    if (o.sparse.outliers_pct > 0) {
        bool all_restored = store != nullptr;
        for (int64_t layer = 0; all_restored && layer < config.n_layers; ++layer) all_restored = store->has(layer);
        if (!all_restored) outlier_counts = plan_outliers(ckpt, o, result.sparse_stats["outliers"]);
    }

    for (int64_t layer = 0; layer < config.n_layers; ++layer) {
        const auto block_start = std::chrono::steady_clock::now();
        BlockResult block_result;
        const bool restored = store != nullptr && store->has(layer);
        if (restored) {
            block_result = store->load(layer);
            if (calibrate) {  // the chains move on through the saved block
                DecoderBlock block = load_block(*ckpt.tensors, config, PackedInfo{}, layer, compute);
                const DecoderBlock fp_block = block;
                for (int i = 0; i < kNumLinears; ++i)
                    block.linears[i] = inference_linear(block_result.linears[static_cast<size_t>(i)], compute);
                BlockContext context;
                context.config = &config;
                context.rope = &rope;
                context.options = &o;
                if (hidden_fp.defined()) hidden_fp = context.run(fp_block, hidden_fp);
                hidden = context.run(block, hidden);
            }
            ++result.restored_blocks;
            result.restored_block_seconds += block_result.seconds;
            log_info(strprintf("%s restored from the interrupted run", hf_names::layer_prefix(layer).c_str()));
        } else {
            DecoderBlock block = load_block(*ckpt.tensors, config, PackedInfo{}, layer, compute);
            BlockContext context;
            context.layer = layer;
            context.config = &config;
            context.rope = &rope;
            context.inputs = &hidden;
            context.fp_inputs = hidden_fp.defined() ? &hidden_fp : nullptr;
            context.options = &o;
            const DecoderBlock fp_block = block;
            const std::vector<SparsePart> outliers =
                outlier_counts.empty() ? std::vector<SparsePart>() : split_outliers(block, layer, outlier_counts);
            if (!outliers.empty()) context.outliers = &outliers;
            if (calibrate) {
                block_result = quantize_one_block(*method, layer, block, fp_block, context, n_err_run > 0, n_err,
                                                  hidden, hidden_fp);
            } else {
                block_result.layer = layer;
                block_result.method_stats = method->quantize_block(block, context);
                block_result.linears = method->take_results();
                if (block_result.linears.size() != static_cast<size_t>(kNumLinears))
                    throw Error("internal: method " + o.method + " did not hand back the block's seven linears");
                for (int i = 0; i < kNumLinears; ++i) block_result.linears[static_cast<size_t>(i)].name = hf_names::linear_name(layer, i);
                if (!outliers.empty()) attach_outliers(block_result.linears, outliers, nullptr, compute);
            }
            block_result.seconds = seconds_since(block_start);
        }
        if (calibrate && !at::isfinite(hidden).all().item<bool>())
            throw NumericError(strprintf("block %lld produced NaN/Inf activations after quantization", (long long)layer));
        if (store != nullptr && !restored) store->save(block_result);
        for (auto& lr : block_result.linears) {  // the store has the tensors; keep only the numbers
            lr.q = QuantizedTensor{};
            lr.lora_a = lr.lora_b = lr.lwc_up = lr.lwc_low = at::Tensor();
        }
        result.blocks.push_back(block_result);
        if (progress &&
            !progress({"quantize", layer + 1, config.n_layers, seconds_since(start),
                       strprintf("%sblock err %.3e  %.2fs", hf_names::layer_prefix(layer).c_str(),
                                 block_result.block_error, block_result.seconds)}))
            throw Cancelled{};
    }
    // ReQuant's significant weights: PQI over the whole quantized model, after its last block. The store keeps the
    // result like a block's, so a resumed run does not detach again.
    if (o.sparse.significant_pct > 0) {
        if (store == nullptr) throw Error("internal: --sparse-significant needs a block store");
        hidden = hidden_fp = at::Tensor();
        if (!store->has_significant()) {
            const auto detach_start = std::chrono::steady_clock::now();
            std::vector<BlockResult> blocks;
            for (int64_t layer = 0; layer < config.n_layers; ++layer) blocks.push_back(store->load(layer));
            nlohmann::json stats;
            const auto significant = detach_significant(ckpt, tokenizer, o, blocks, stats, progress);
            stats["seconds"] = seconds_since(detach_start);
            store->save_significant(significant, stats);
        }
        result.sparse_stats["significant"] = store->significant_stats();
    }
    result.seconds = seconds_since(start);
    return result;
}

}  // namespace saliq
