#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include "saliq/dtype.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/gptq_pack.h"
#include "saliq/model.h"
#include "saliq/strings.h"
#include "saliq/threads.h"

namespace saliq {
namespace {

at::Tensor checked(const TensorSource& tensors, const std::string& name, const std::vector<int64_t>& shape,
                   const at::TensorOptions& options) {
    at::Tensor t = tensors.get(name);
    if (t.sizes().vec() != shape)
        throw FormatError(tensors.origin(), "tensor '" + name + "' has shape " + shape_to_string(t.sizes().vec()) +
                                                ", the config implies " + shape_to_string(shape));
    at::Tensor out = t.to(options.dtype()).to(options.device());
    // Never hand out a view of a read-only mmap: callers may train or modify weights in place.
    if (out.data_ptr() == t.data_ptr()) out = out.clone();
    tensors.release(name);  // our copy is made: the mapped pages need not stay resident
    if (!at::isfinite(out).all().item<bool>())
        throw FormatError(tensors.origin(), "tensor '" + name + "' contains NaN or Inf values");
    return out;
}

// t with the values llama.cpp holds for it in a GGUF export of `dtype` (rounded there and back; a bf16 checkpoint's
// values are exact in fp16), or t itself without one (ModelOptions::emulate_llamacpp off).
at::Tensor as_exported(const at::Tensor& t, const std::optional<at::ScalarType>& dtype) {
    return dtype ? t.to(*dtype).to(t.scalar_type()) : t;
}

}  // namespace

at::TensorOptions resolve_model_options(const ModelOptions& options) {
    at::Device device(at::kCPU);
    try {
        device = at::Device(options.device);
    } catch (const std::exception&) {
        throw ConfigError("unknown device '" + options.device + "' (expected cpu or cuda)");
    }
    if (device.is_cuda() && !at::hasCUDA())
        throw ConfigError("--device cuda asked for, but this saliq build or machine has no CUDA");
    at::ScalarType dtype;
    if (options.dtype == "auto") dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
    else if (options.dtype == "fp32") dtype = at::kFloat;
    else if (options.dtype == "bf16") dtype = at::kBFloat16;
    else if (options.dtype == "fp16") dtype = at::kHalf;
    else throw ConfigError("unknown dtype '" + options.dtype + "' (expected fp32, bf16, fp16 or auto)");
    if (options.packed_cuda && !device.is_cuda()) throw ConfigError("--packed-cuda is for --device cuda");
    if (options.packed_cuda && options.dequantize)
        throw ConfigError("--packed-cuda keeps weights packed, --dequantize makes them dense: pick one");
    if (options.packed_cuda && !packed_cuda_kernels())
        throw ConfigError("--packed-cuda: this saliq was built without CUDA kernels (build against a LibTorch with "
                          "CUDA, with nvcc on the PATH)");
    if (dtype == at::kHalf && device.is_cpu())
        throw ConfigError("fp16 compute is not available on CPU (LibTorch has no fp16 CPU matmul); "
                          "use --dtype fp32 or bf16 (fp16 checkpoints are converted on load)");
    return at::TensorOptions().dtype(dtype).device(device);
}

namespace {
// Attention of query rows [t0, t0 + tq) of samples [b0, b0 + bn) against all keys.
at::Tensor attention_rows(const at::Tensor& qs5, const at::Tensor& k, const at::Tensor& v, const at::Tensor& blocked,
                          int64_t b0, int64_t bn, int64_t t0, int64_t tq) {
    const int64_t nkv = qs5.size(1), rep = qs5.size(2), d = qs5.size(4), Tk = k.size(2);
    const at::Tensor qc = qs5.narrow(0, b0, bn).narrow(3, t0, tq).reshape({bn, nkv, rep * tq, d});
    at::Tensor scores = at::matmul(qc, k.narrow(0, b0, bn).transpose(-1, -2)).view({bn, nkv, rep, tq, Tk});
    if (scores.scalar_type() != at::kFloat) scores = scores.to(at::kFloat);  // softmax in fp32
    at::Tensor mask = blocked.size(-2) == 1 ? blocked : blocked.narrow(-2, t0, tq);
    if (mask.dim() == 5 && mask.size(0) != 1) mask = mask.narrow(0, b0, bn);
    scores.masked_fill_(mask, -std::numeric_limits<float>::infinity());
    const at::Tensor probs = at::softmax(scores, -1).to(qc.scalar_type()).view({bn, nkv, rep * tq, Tk});
    return at::matmul(probs, v.narrow(0, b0, bn)).view({bn, nkv * rep, tq, d}).transpose(1, 2).reshape({bn, tq, nkv * rep * d});
}

}  // namespace

at::Tensor grouped_query_attention(const LlamaConfig& config, const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& v, const at::Tensor& blocked, int64_t max_score_elements) {
    const int64_t B = q.size(0), Tq = q.size(2), Tk = k.size(2);
    const int64_t nh = config.n_heads, nkv = config.n_kv_heads, d = config.head_dim, rep = nh / nkv;
    // Without copying K/V: query head h uses kv head h / rep.
    const at::Tensor qs5 = q.reshape({B, nkv, rep, Tq, d}) * (1.0 / std::sqrt(static_cast<double>(d)));
    const int64_t per_row = nh * Tk;
    if (B * Tq * per_row <= max_score_elements) return attention_rows(qs5, k, v, blocked, 0, B, 0, Tq);
    const int64_t rows = std::max<int64_t>(1, std::min(Tq, max_score_elements / per_row));
    const int64_t samples = rows < Tq ? 1 : std::max<int64_t>(1, max_score_elements / (Tq * per_row));
    std::vector<at::Tensor> pieces;
    for (int64_t b0 = 0; b0 < B; b0 += samples) {
        const int64_t bn = std::min(samples, B - b0);
        std::vector<at::Tensor> row_pieces;
        for (int64_t t0 = 0; t0 < Tq; t0 += rows)
            row_pieces.push_back(attention_rows(qs5, k, v, blocked, b0, bn, t0, std::min(rows, Tq - t0)));
        pieces.push_back(row_pieces.size() == 1 ? row_pieces[0] : at::cat(row_pieces, 1));
    }
    return pieces.size() == 1 ? pieces[0] : at::cat(pieces, 0);
}

at::Tensor mlp_hidden(const DecoderBlock& block, const at::Tensor& y) {
    return at::silu(block.linears[kGateProj]->forward(y)) * block.linears[kUpProj]->forward(y);
}

at::Tensor mlp_forward(const DecoderBlock& block, const at::Tensor& y) {
    return block.linears[kDownProj]->forward(mlp_hidden(block, y));
}

namespace {
// Causal self-attention of the normed states x [B, T, H]: o_proj's input [B, T, nh * d].
at::Tensor self_attention(const DecoderBlock& block, const LlamaConfig& config, const Rope& rope, const at::Tensor& x,
                          LayerCache* cache) {
    const int64_t B = x.size(0), T = x.size(1);
    const int64_t nh = config.n_heads, nkv = config.n_kv_heads, d = config.head_dim;
    at::Tensor q = block.linears[kQProj]->forward(x).view({B, T, nh, d}).transpose(1, 2);    // [B, nh, T, d]
    at::Tensor k = block.linears[kKProj]->forward(x).view({B, T, nkv, d}).transpose(1, 2);   // [B, nkv, T, d]
    at::Tensor v = block.linears[kVProj]->forward(x).view({B, T, nkv, d}).transpose(1, 2);
    const int64_t past = cache != nullptr ? cache->length() : 0;
    const at::Tensor cos = rope.cos.narrow(0, past, T), sin = rope.sin.narrow(0, past, T);
    q = apply_rope(q, cos, sin);
    k = apply_rope(k, cos, sin);
    if (cache != nullptr) {
        if (past > 0) {
            k = at::cat({cache->k, k}, 2);
            v = at::cat({cache->v, v}, 2);
        }
        cache->k = k;
        cache->v = v;
    }
    // Query t (position past + t) sees keys 0..past + t.
    const at::Tensor causal =
        at::ones({T, past + T}, at::TensorOptions().dtype(at::kBool).device(x.device())).triu(past + 1);
    return grouped_query_attention(config, q, k, v, causal);
}
}  // namespace

at::Tensor block_forward(const DecoderBlock& block, const LlamaConfig& config, const Rope& rope,
                         const at::Tensor& hidden, LayerCache* cache) {
    adapt_compute_threads();  // every forward passes here: the pool follows other processes' load (threads.h)
    const at::Tensor x = rms_norm(hidden, block.input_norm, config.rms_norm_eps);
    const at::Tensor h = hidden + block.linears[kOProj]->forward(self_attention(block, config, rope, x, cache));
    return h + mlp_forward(block, rms_norm(h, block.post_norm, config.rms_norm_eps));
}

at::Tensor block_linear_input(const DecoderBlock& block, const LlamaConfig& config, const Rope& rope,
                              const at::Tensor& hidden, int linear) {
    adapt_compute_threads();
    const at::Tensor x = rms_norm(hidden, block.input_norm, config.rms_norm_eps);
    if (linear == kQProj || linear == kKProj || linear == kVProj) return x;
    const at::Tensor attention = self_attention(block, config, rope, x, nullptr);
    if (linear == kOProj) return attention;
    const at::Tensor y = rms_norm(hidden + block.linears[kOProj]->forward(attention), block.post_norm,
                                  config.rms_norm_eps);
    if (linear == kGateProj || linear == kUpProj) return y;
    return mlp_hidden(block, y);
}

at::Tensor gptq_group_index(const TensorSource& tensors, const std::string& linear, const PackedInfo& packed,
                            int64_t in_features) {
    if (tensors.has(linear + ".g_idx") || packed.desc_act) return tensors.get(linear + ".g_idx");
    QuantSpec spec;
    spec.group_size = packed.group_size;
    return natural_group_index(in_features, spec).to(at::kInt);
}

GgmlGrid ggml_linear_grid(const at::Tensor& type, GgmlGrid requested, const std::string& origin) {
    if (type.dim() != 1 || type.numel() != 1 || type.scalar_type() != at::kInt)
        throw FormatError(origin, "ggml_type must be int32 [1], GGUF's type id");
    const GgmlGrid grid = ggml_grid_of_type(static_cast<uint32_t>(type.item<int32_t>()));
    // The type asked for, or one of its fallbacks: anything else would be a folder of another run's tensors.
    for (GgmlGrid g = requested; g != GgmlGrid::kNone; g = ggml_grid_traits(g).fallback)
        if (g == grid) return grid;
    throw FormatError(origin, strprintf("ggml_type %d is not %s or a type it falls back to", type.item<int32_t>(),
                                        ggml_grid_traits(requested).name));
}

QuantizedTensor load_quantized_linear(const TensorSource& tensors, const PackedInfo& packed, const std::string& name,
                                      int64_t out, int64_t in) {
    QuantSpec spec;
    spec.bits = packed.bits;
    spec.group_size = packed.group_size;
    spec.symmetric = packed.symmetric;
    const std::string origin = tensors.origin() + " (" + name + ")";
    QuantizedTensor q;
    if (packed.grid != GgmlGrid::kNone) {
        q = ggml_quantized(tensors.get(name + ".qweight"),
                           ggml_linear_grid(tensors.get(name + ".ggml_type"), packed.grid, origin), out,
                           in, origin);
    } else if (packed.mixed) {
        MixedTensors m{tensors.get(name + ".qweight"), tensors.get(name + ".scales"),
                       tensors.get(name + ".zeros"), tensors.get(name + ".group_bits")};
        q = mixed_unpack(m, spec, in, out, origin);
        if (std::abs(q.average_bits() - packed.bits) > 1e-9)
            throw FormatError(origin, strprintf("group_bits average %.4f bits per weight, but "
                                                "quantization_config says bits %d",
                                                q.average_bits(), packed.bits));
    } else {
        GptqTensors t{tensors.get(name + ".qweight"), tensors.get(name + ".qzeros"),
                      tensors.get(name + ".scales"), gptq_group_index(tensors, name, packed, in)};
        q = gptq_unpack(t, spec, in, out, packed.zeros_v2, origin);
    }
    if (packed.grid == GgmlGrid::kNone)
        check_gptq_claims(q, {packed.group_size, packed.desc_act, packed.symmetric}, origin);
    if (packed.sparse) {  // ReQuant's FP16 parts, added to the grid's values
        if (tensors.has(name + ".outlier_idx"))
            q.outliers = sparse_unpack({tensors.get(name + ".outlier_idx"), tensors.get(name + ".outlier_val")},
                                       out, in, origin);
        if (tensors.has(name + ".significant_idx"))
            q.significant = sparse_unpack(
                {tensors.get(name + ".significant_idx"), tensors.get(name + ".significant_val")},
                out, in, origin);
    }
    for (const char* suffix : {".qweight", ".qzeros", ".scales", ".g_idx", ".zeros", ".group_bits", ".ggml_type",
                               ".outlier_idx", ".outlier_val", ".significant_idx", ".significant_val"})
        tensors.release(name + suffix);
    return q;
}

DecoderBlock load_block(const TensorSource& tensors, const LlamaConfig& c, const PackedInfo& packed, int64_t layer,
                        const at::TensorOptions& options, const TensorSource* adapter, double adapter_scale,
                        bool keep_packed, bool emulate_llamacpp) {
    const std::string p = hf_names::layer_prefix(layer);
    const int64_t H = c.hidden_size;
    const auto shapes = linear_shapes(c);  // [out, in] of each linear
    DecoderBlock block;
    block.input_norm = checked(tensors, p + hf_names::kInputNorm, {H}, options);
    block.post_norm = checked(tensors, p + hf_names::kPostNorm, {H}, options);
    for (int i = 0; i < kNumLinears; ++i) {
        const std::string name = hf_names::linear_name(layer, i);
        if (!packed.binarizer.empty() && tensors.has(name + ".qweight")) {
            const std::string origin = tensors.origin() + " (" + name + ")";
            const BinaryWeight w = binary_unpack(packed.binarizer, shapes[i][1], shapes[i][0],
                                                 [&](const std::string& s) { return tensors.get(name + s); }, origin);
            for (const auto& s : binary_suffixes(packed.binarizer)) tensors.release(name + s);
            block.linears[i] = make_binary_linear(w, options);
        } else if (packed.bits > 0 && tensors.has(name + ".qweight")) {
            QuantizedTensor q = load_quantized_linear(tensors, packed, name, shapes[i][0], shapes[i][1]);
            const GgmlGrid grid = q.spec.grid;
            if (keep_packed) block.linears[i] = std::make_shared<PackedLinear>(q, options);
            else block.linears[i] = std::make_shared<QuantizedLinear>(std::move(q), options);
            if (emulate_llamacpp && grid != GgmlGrid::kNone)
                block.linears[i] = std::make_shared<LlamacppInputLinear>(block.linears[i], grid);
        } else {
            block.linears[i] = std::make_shared<DenseLinear>(checked(tensors, name + ".weight", shapes[i], options));
        }
        const std::string key_a = hf_names::lora_key(name, 'A');
        if (adapter != nullptr && adapter->has(key_a)) {
            const std::string key_b = hf_names::lora_key(name, 'B');
            const at::Tensor a = adapter->get(key_a), b = adapter->get(key_b);
            if (a.dim() != 2 || b.dim() != 2 || a.size(1) != shapes[i][1] || b.size(0) != shapes[i][0] ||
                b.size(1) != a.size(0))
                throw FormatError(adapter->origin(), "LoRA tensors of " + name + " have shapes " +
                                                         shape_to_string(a.sizes().vec()) + " and " +
                                                         shape_to_string(b.sizes().vec()) + ", which do not fit " +
                                                         shape_to_string(shapes[i]));
            block.linears[i] = std::make_shared<LoraLinear>(block.linears[i], checked(*adapter, key_a, a.sizes().vec(), options),
                                                            checked(*adapter, key_b, b.sizes().vec(), options),
                                                            adapter_scale);
        }
    }
    return block;
}

std::unique_ptr<LlamaModel> LlamaModel::load(const Checkpoint& checkpoint, const ModelOptions& model_options) {
    check_checkpoint_tensors(checkpoint);
    auto model = std::unique_ptr<LlamaModel>(new LlamaModel());
    const LlamaConfig& c = checkpoint.config;
    const TensorSource& tensors = *checkpoint.tensors;
    model->config_ = c;
    model->options_ = resolve_model_options(model_options);
    if (!model_options.emulate_llamacpp.empty()) {
        if (checkpoint.packed.grid == GgmlGrid::kNone)
            throw ConfigError("--emulate-llamacpp reproduces llama.cpp on the GGUF export of a folder quantized with "
                              "--grid (GGML blocks); " +
                              (checkpoint.path.empty() ? std::string("this model") : checkpoint.path) + " has none");
        if (model->options_.dtype() != at::kFloat)
            throw ConfigError("--emulate-llamacpp computes in fp32, as llama.cpp's CPU backend does: drop --dtype");
        if (!model->options_.device().is_cpu())
            throw ConfigError("--emulate-llamacpp reproduces llama.cpp's CPU kernels: run it with --device cpu");
        model->llamacpp_dtype_ = float_dtype(model_options.emulate_llamacpp, "--emulate-llamacpp");
    }
    model->embed_tokens_ = as_exported(
        checked(tensors, hf_names::kEmbed, {c.vocab_size, c.hidden_size}, model->options_), model->llamacpp_dtype_);
    model->final_norm_ = checked(tensors, hf_names::kFinalNorm, {c.hidden_size}, model->options_);
    model->lm_head_ = c.tie_word_embeddings
                          ? model->embed_tokens_
                          : as_exported(checked(tensors, hf_names::kLmHead, {c.vocab_size, c.hidden_size},
                                                model->options_),
                                        model->llamacpp_dtype_);
    model->streaming_ = model_options.stream_blocks;
    // Packed weights stay packed on CPU (saliq's fused kernels). On CUDA they stay packed on the GPU with
    // --packed-cuda (the CUDA kernels, opt-in until checked on a GPU); otherwise each linear is dequantized once on
    // load (the same values: the packed and dequantized forms are tested equal), as the host path would dequantize
    // tiles and copy them over on every forward.
    const bool cuda = model->options_.device().is_cuda();
    model->keep_packed_ = !model_options.dequantize && (!cuda || model_options.packed_cuda);
    if (!model->keep_packed_ && !model_options.dequantize && checkpoint.packed.bits > 0)
        log_info("CUDA: packed weights are dequantized once on load (--packed-cuda keeps them packed on the GPU)");
    model->packed_ = checkpoint.packed;
    if (model_options.use_adapter) {
        model->adapter_ = checkpoint.adapter;
        model->adapter_scale_ = checkpoint.adapter_scale;
    }
    if (model->streaming_) {
        model->source_ = checkpoint.tensors;  // blocks are read (and checked) when they run
    } else {
        for (int64_t i = 0; i < c.n_layers; ++i)
            model->blocks_.push_back(load_block(tensors, c, checkpoint.packed, i, model->options_,
                                                model->adapter_.get(), model->adapter_scale_, model->keep_packed_,
                                                model->llamacpp_dtype_.has_value()));
    }
    model->rope_ = make_rope(c, usable_context(c), model->options_);
    return model;
}

DecoderBlock& LlamaModel::block(int64_t i) {
    if (streaming_) throw ConfigError("internal: block() on a model that streams its blocks; use read_block()");
    return blocks_.at(static_cast<size_t>(i));
}

const DecoderBlock& LlamaModel::block(int64_t i) const {
    if (streaming_) throw ConfigError("internal: block() on a model that streams its blocks; use read_block()");
    return blocks_.at(static_cast<size_t>(i));
}

DecoderBlock LlamaModel::read_block(int64_t i) const {
    if (!streaming_) return block(i);
    return load_block(*source_, config_, packed_, i, options_, adapter_.get(), adapter_scale_, keep_packed_,
                      llamacpp_dtype_.has_value());
}

at::Tensor LlamaModel::embed(const at::Tensor& ids) const {
    if (ids.numel() > 0) {
        const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
        if (lo < 0 || hi >= config_.vocab_size)
            throw ConfigError(strprintf("token id %lld is outside the model's vocabulary of %lld (wrong tokenizer?)",
                                        (long long)(lo < 0 ? lo : hi), (long long)config_.vocab_size));
    }
    return at::embedding(embed_tokens_, ids.to(options_.device()));
}

at::Tensor LlamaModel::run_block(int64_t i, const at::Tensor& hidden) const {
    return streaming_ ? run_block(read_block(i), hidden) : run_block(block(i), hidden);
}

static std::string context_error(const LlamaConfig& c, int64_t length) {
    if (c.sliding_window > 0 && c.sliding_window < c.max_position_embeddings)
        return strprintf("sequence length %lld exceeds the model's sliding attention window %lld (saliq attends over "
                         "the whole sequence, so it computes only sequences within the window)",
                         (long long)length, (long long)c.sliding_window);
    return strprintf("sequence length %lld exceeds the model's max_position_embeddings %lld", (long long)length,
                     (long long)c.max_position_embeddings);
}

at::Tensor LlamaModel::run_block(const DecoderBlock& block, const at::Tensor& hidden) const {
    if (hidden.size(1) > rope_.cos.size(0))
        throw ConfigError(context_error(config_, hidden.size(1)));
    return block_forward(block, config_, rope_, hidden);
}

at::Tensor LlamaModel::head(const at::Tensor& hidden) const {
    // llama.cpp converts a product's input to an F16 or BF16 weight's type (ggml-cpu's vec_dot_type) first.
    const at::Tensor y = as_exported(rms_norm(hidden, final_norm_, config_.rms_norm_eps), llamacpp_dtype_);
    return at::linear(y, lm_head_).to(at::kFloat);
}

at::Tensor LlamaModel::hidden_states(const at::Tensor& ids) const {
    at::Tensor h = embed(ids);
    for (int64_t i = 0; i < n_layers(); ++i) h = run_block(i, h);
    return h;
}

at::Tensor LlamaModel::forward(const at::Tensor& ids) const { return head(hidden_states(ids)); }

at::Tensor LlamaModel::forward_cached(const at::Tensor& ids, std::vector<LayerCache>& cache) const {
    cache.resize(static_cast<size_t>(n_layers()));
    const int64_t end = cache[0].length() + ids.size(1);
    if (end > rope_.cos.size(0))
        throw ConfigError(context_error(config_, end));
    at::Tensor h = embed(ids);
    for (int64_t i = 0; i < n_layers(); ++i) {
        LayerCache* layer = &cache[static_cast<size_t>(i)];
        h = streaming_ ? block_forward(read_block(i), config_, rope_, h, layer)
                       : block_forward(block(i), config_, rope_, h, layer);
    }
    return head(h);
}

}  // namespace saliq
