// The block pipeline: the one loop over decoder blocks that every quantization method runs in.
#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "quant/method.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/quantize.h"
#include "saliq/strings.h"
#include "saliq/tokenizer.h"

namespace saliq {
namespace {

struct MethodEntry {
    MethodInfo info;
    std::unique_ptr<QuantMethod> (*make)();
};

const std::vector<MethodEntry>& registry() {
    static const std::vector<MethodEntry> entries = {
        {{"rtn", "round-to-nearest with min-max groups (no calibration)"}, make_rtn_method},
        {{"gptq", "GPTQ: Hessian-aware column-by-column rounding with error feedback"}, make_gptq_method},
        {{"omniquant", "OmniQuant LWC: learned weight clipping per block, no adapters"}, make_omniquant_method},
        {{"apiq-bw", "ApiQ block-wise: learned clipping + LoRA matching each FP block's outputs"}, make_apiq_bw_method},
        {{"apiq-lw", "ApiQ layer-wise: learned clipping + LoRA matching each FP layer's outputs"}, make_apiq_lw_method},
    };
    return entries;
}

std::unique_ptr<QuantMethod> make_method(const std::string& name) {
    std::string known;
    for (const auto& e : registry()) {
        if (name == e.info.name) return e.make();
        known += known.empty() ? e.info.name : std::string(", ") + e.info.name;
    }
    throw ConfigError("unknown method '" + name + "' (available: " + known + ")");
}

double relative_error(const at::Tensor& approx, const at::Tensor& exact) {
    const double denom = exact.to(at::kDouble).pow(2).sum().item<double>();
    const double num = (approx.to(at::kDouble) - exact.to(at::kDouble)).pow(2).sum().item<double>();
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

// Quantizes one block with the method and measures each linear's and the block's reconstruction error on the
// first `n_err` windows.
BlockResult quantize_one_block(QuantMethod& method, int64_t layer, DecoderBlock& block, const DecoderBlock& fp_block,
                               const BlockContext& context, int64_t n_err) {
    const LlamaConfig& config = *context.config;
    std::vector<std::vector<at::Tensor>> seen(kNumLinears);
    const DecoderBlock hooked = capturing_block(fp_block, kAllLinears, seen);
    const at::Tensor err_inputs = context.inputs->narrow(0, 0, n_err);
    const at::Tensor fp_out = block_forward(hooked, config, *context.rope, err_inputs);

    BlockResult result;
    result.layer = layer;
    result.method_stats = method.quantize_block(block, context);
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
        const at::Tensor X = at::cat(seen[i], 0).to(at::kFloat);
        const at::Tensor W = fp_block.linears[i]->weight().to(at::kFloat);
        lr.rel_error = relative_error(at::matmul(X, block.linears[i]->weight().to(at::kFloat).t()), at::matmul(X, W.t()));
        result.linears.push_back(std::move(lr));
    }
    result.block_error = relative_error(block_forward(block, config, *context.rope, err_inputs), fp_out);
    return result;
}

}  // namespace

std::shared_ptr<Linear> inference_linear(const LinearResult& result, const at::TensorOptions& options) {
    std::shared_ptr<Linear> base = std::make_shared<QuantizedLinear>(result.q, options);
    if (!result.lora_a.defined()) return base;
    return std::make_shared<LoraLinear>(base, result.lora_a.to(options), result.lora_b.to(options),
                                        result.lora_scale);
}

const std::vector<MethodInfo>& quant_methods() {
    static const std::vector<MethodInfo> infos = [] {
        std::vector<MethodInfo> out;
        for (const auto& e : registry()) out.push_back(e.info);
        return out;
    }();
    return infos;
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

at::Tensor BlockContext::run(const DecoderBlock& block, const at::Tensor& x) const {
    std::vector<at::Tensor> outs;
    const int64_t n = x.size(0), b = std::max<int64_t>(1, options->batch_size);
    for (int64_t i = 0; i < n; i += b) outs.push_back(block_forward(block, *config, *rope, x.narrow(0, i, std::min(b, n - i))));
    return at::cat(outs, 0);
}

QuantizeResult quantize_model(const Checkpoint& ckpt, const Tokenizer& tokenizer, const QuantizeOptions& o,
                              BlockStore* store, const ProgressFn& progress) {
    o.spec.validate();
    if (ckpt.packed.bits > 0)
        throw ConfigError(ckpt.path + " is already quantized (" + std::to_string(ckpt.packed.bits) +
                          "-bit GPTQ); quantize the full-precision model instead");
    const LlamaConfig& config = ckpt.config;
    check_shapes(config, o.spec);
    if (o.calib.seqlen > config.max_position_embeddings)
        throw ConfigError(strprintf("--seqlen %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)o.calib.seqlen, (long long)config.max_position_embeddings));
    if (o.batch_size < 1) throw ConfigError("--batch-size must be at least 1");
    if (tokenizer.vocab_size() != config.vocab_size)
        throw ConfigError(strprintf("tokenizer has %d pieces but the model's vocabulary is %lld", tokenizer.vocab_size(),
                                    (long long)config.vocab_size));
    auto method = make_method(o.method);
    const at::TensorOptions options = resolve_model_options(o.model);
    c10::NoGradGuard no_grad;

    QuantizeResult result;
    const auto start = std::chrono::steady_clock::now();
    auto seconds_since = [](std::chrono::steady_clock::time_point t) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    };
    result.calib = sample_calibration(o.calib, tokenizer);
    result.calib_seconds = seconds_since(start);
    const int64_t N = o.calib.nsamples, T = o.calib.seqlen;
    log_info(strprintf("calibration: %lld windows x %lld tokens from %s (range %s, seed %llu) in %.2f s",
                       (long long)N, (long long)T, o.calib.source.c_str(), o.calib.range.to_string().c_str(),
                       (unsigned long long)o.calib.seed, result.calib_seconds));

    at::Tensor ids = at::tensor(std::vector<int64_t>(result.calib.tokens.begin(), result.calib.tokens.end()))
                         .view({N, T})
                         .to(options.device());
    at::Tensor hidden = at::embedding(ckpt.tensors->get(hf_names::kEmbed).to(options), ids);  // [N, T, H]
    at::Tensor hidden_fp = method->needs_fp_chain() ? hidden.clone() : at::Tensor();
    const Rope rope = make_rope(config, T, options);
    const int64_t n_err = std::min(N, std::max<int64_t>(1, o.error_windows));

    for (int64_t layer = 0; layer < config.n_layers; ++layer) {
        const auto block_start = std::chrono::steady_clock::now();
        DecoderBlock block = load_block(*ckpt.tensors, config, PackedInfo{}, layer, options);
        const DecoderBlock fp_block = block;
        BlockContext context;
        context.layer = layer;
        context.config = &config;
        context.rope = &rope;
        context.inputs = &hidden;
        context.fp_inputs = hidden_fp.defined() ? &hidden_fp : nullptr;
        context.options = &o;

        BlockResult block_result;
        const bool restored = store != nullptr && store->has(layer);
        if (restored) {
            block_result = store->load(layer);
            for (int i = 0; i < kNumLinears; ++i)
                block.linears[i] = inference_linear(block_result.linears[static_cast<size_t>(i)], options);
            log_info(strprintf("%s restored from the interrupted run", hf_names::layer_prefix(layer).c_str()));
        } else {
            block_result = quantize_one_block(*method, layer, block, fp_block, context, n_err);
            block_result.seconds = seconds_since(block_start);
        }

        if (hidden_fp.defined()) hidden_fp = context.run(fp_block, hidden_fp);
        hidden = context.run(block, hidden);
        if (!at::isfinite(hidden).all().item<bool>())
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
    result.seconds = seconds_since(start);
    return result;
}

}  // namespace saliq
