// The LLaMA forward pass in LibTorch: embedding, decoder blocks (RMSNorm, RoPE, grouped-query causal attention,
// SwiGLU MLP), final norm and head. Blocks are plain structs so the quantization pipeline can drive them one at a
// time and swap their linears.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saliq/binarize.h"
#include "saliq/checkpoint.h"
#include "saliq/llama_config.h"
#include "saliq/packed_matmul.h"
#include "saliq/quantizer.h"

namespace saliq {

// Where and in which precision the model computes.
struct ModelOptions {
    std::string device = "cpu";  // "cpu" or "cuda" / "cuda:N"
    std::string dtype = "auto";  // "fp32", "bf16", "fp16"; auto = fp32 on CPU, bf16 on CUDA
    bool use_adapter = true;     // apply LoRA adapters found beside the weights
    // Keep no decoder block resident: each is read from the checkpoint when it runs (its mapped pages released
    // after), so resident memory does not grow with depth. For block-major passes (perplexity); a window-major caller
    // (zero-shot, generation) would read every block once per forward.
    bool stream_blocks = false;
    // Packed linears dequantized to dense weights on load (the reference path) instead of computed from the codes.
    bool dequantize = false;
    // On CUDA, packed linears stay packed on the GPU and run saliq's CUDA kernels (packed_matmul.h) instead of
    // being dequantized once on load. Opt-in until the kernels have been checked on a GPU.
    bool packed_cuda = false;
    // Compute as llama.cpp's CPU kernels compute this folder's GGUF export (`export --format gguf --dtype D`):
    // each GGML-typed linear's input rounded to its 8-bit activation type (ggml_activations.h; equal to ggml's own
    // mul_mat), the embeddings, the head and the head's input held in D. "" = off; else D ("fp32", "fp16" or
    // "bf16"). For a saliq_ggml folder (`quantize --grid`), computed in fp32 on CPU. llama.cpp's whole-model figure
    // can still differ (~2e-3 on SmolLM2; README, "llama.cpp's 8-bit activations").
    std::string emulate_llamacpp;
};

// Resolves and checks ModelOptions (CUDA present, fp16 not on CPU). Throws ConfigError.
at::TensorOptions resolve_model_options(const ModelOptions& options);

// A linear map y = x W^T. Methods replace the dense one with quantized variants behind this interface.
class Linear {
public:
    virtual ~Linear() = default;
    virtual at::Tensor forward(const at::Tensor& x) const = 0;  // [..., in] -> [..., out]
    virtual at::Tensor weight() const = 0;                      // the effective dense weight [out, in]
    virtual int64_t in_features() const = 0;
    virtual int64_t out_features() const = 0;
};

// A linear that holds another and changes part of what it does (its input, its output, what weight() reports);
// the shape, and whatever it does not override, are the inner linear's. The decorators of a linear derive from it.
class WrappingLinear : public Linear {
public:
    explicit WrappingLinear(std::shared_ptr<Linear> inner) : inner_(std::move(inner)) {}
    at::Tensor forward(const at::Tensor& x) const override { return inner_->forward(x); }
    at::Tensor weight() const override { return inner_->weight(); }
    int64_t in_features() const override { return inner_->in_features(); }
    int64_t out_features() const override { return inner_->out_features(); }
    const std::shared_ptr<Linear>& inner() const { return inner_; }

protected:
    std::shared_ptr<Linear> inner_;
};

class DenseLinear : public Linear {
public:
    explicit DenseLinear(at::Tensor weight);  // [out, in]
    at::Tensor forward(const at::Tensor& x) const override;
    at::Tensor weight() const override { return weight_; }
    int64_t in_features() const override;
    int64_t out_features() const override;

private:
    at::Tensor weight_;  // [out, in]
};

// A linear whose weight is a dequantized QuantizedTensor (the fake-quantized model, and packed folders on load).
class QuantizedLinear : public Linear {
public:
    QuantizedLinear(QuantizedTensor q, const at::TensorOptions& options);
    at::Tensor forward(const at::Tensor& x) const override;
    at::Tensor weight() const override { return weight_; }
    int64_t in_features() const override { return weight_.size(1); }
    int64_t out_features() const override { return weight_.size(0); }
    const QuantizedTensor& quantized() const { return q_; }

private:
    QuantizedTensor q_;
    at::Tensor weight_;  // [out, in] dequantized, compute dtype
};

// A packed folder's linear at inference: the codes stay bit-packed and y = x·Ŵᵀ is computed from them
// (packed_matmul.h), so a W2 model takes ~2.4 bits per weight in memory instead of the compute dtype's 16 or 32.
class PackedLinear : public Linear {
public:
    PackedLinear(const QuantizedTensor& q, const at::TensorOptions& options);
    at::Tensor forward(const at::Tensor& x) const override;
    at::Tensor weight() const override;  // dequantized on demand (exports, merges)
    int64_t in_features() const override { return packed_.in; }
    int64_t out_features() const override { return packed_.out; }
    const PackedWeight& packed() const { return packed_; }

private:
    PackedWeight packed_;
    at::TensorOptions options_;
    at::Tensor sparse_;  // ReQuant's parts of q, one fp32 sparse COO [out, in]; undefined without them
};

// A linear whose input is first rounded as llama.cpp's CPU kernels round the input of a product with a weight of
// GGML type `grid` (ggml_activations.h; ModelOptions::emulate_llamacpp). A LoRA branch wraps it from outside: llama.cpp
// multiplies its F32 adapter matrices with the unrounded input.
class LlamacppInputLinear : public WrappingLinear {
public:
    LlamacppInputLinear(std::shared_ptr<Linear> base, GgmlGrid grid);
    at::Tensor forward(const at::Tensor& x) const override;

private:
    GgmlGrid grid_;
};

// BinaryMoS at inference: sign(W) with the router's token-wise mixture of scale experts (binarize.h).
class MosLinear : public Linear {
public:
    MosLinear(const BinaryWeight& w, const at::TensorOptions& options);
    at::Tensor forward(const at::Tensor& x) const override;
    // The experts weighted equally (forward() mixes them per token; there is no single dense weight).
    at::Tensor weight() const override;
    int64_t in_features() const override { return signs_.size(1); }
    int64_t out_features() const override { return signs_.size(0); }

private:
    at::Tensor signs_;  // [out, in] +-1, compute dtype
    MosParams params_;  // compute dtype
};

// The inference linear of a binarized weight: db-llm's dense alpha1 b1 + alpha2 b2, or a MosLinear.
std::shared_ptr<Linear> make_binary_linear(const BinaryWeight& w, const at::TensorOptions& options);

// A base linear plus a LoRA branch: y = base(x) + scale * (x A^T) B^T (PEFT's forward; scale = alpha / r).
class LoraLinear : public WrappingLinear {
public:
    LoraLinear(std::shared_ptr<Linear> base, at::Tensor lora_a, at::Tensor lora_b, double scale);
    at::Tensor forward(const at::Tensor& x) const override;
    at::Tensor weight() const override;  // base weight + scale * B A
    const at::Tensor& lora_a() const { return lora_a_; }
    const at::Tensor& lora_b() const { return lora_b_; }
    double scale() const { return scale_; }

private:
    at::Tensor lora_a_;  // [r, in]
    at::Tensor lora_b_;  // [out, r]
    double scale_;
};

enum LinearIndex { kQProj = 0, kKProj, kVProj, kOProj, kGateProj, kUpProj, kDownProj, kNumLinears };

struct DecoderBlock {
    at::Tensor input_norm;  // [H]
    at::Tensor post_norm;   // [H]
    std::array<std::shared_ptr<Linear>, kNumLinears> linears;  // order of hf_names::kLinearNames
};

// Rotary tables in Hugging Face layout (rotate halves).
struct Rope {
    at::Tensor cos;  // [T_max, head_dim]
    at::Tensor sin;  // [T_max, head_dim]
};

Rope make_rope(const LlamaConfig& config, int64_t max_len, const at::TensorOptions& options);
// x [..., head_dim] rotated by rows of the tables (cos, sin broadcast against x).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// Grouped-query attention of q [B, nh, Tq, d] over k, v [B, nkv, Tk, d]; `blocked` (broadcastable to
// [B, nkv, nh / nkv, Tq, Tk]) is true where a query must not look. Softmax in fp32. Returns [B, Tq, nh * d].
// Past max_score_elements scores (fp32: 64 MiB by default), samples and then query rows are taken in pieces, so a
// calibration batch (8 windows x 16 heads x 512 x 512) or a 2048-token window does not put several hundred MiB of
// scores and probabilities on the memory peak.
constexpr int64_t kMaxScoreElements = int64_t{16} << 20;
at::Tensor grouped_query_attention(const LlamaConfig& config, const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& v, const at::Tensor& blocked,
                                   int64_t max_score_elements = kMaxScoreElements);
// down_proj's input, silu(gate(y)) * up(y), on normed hidden states y.
at::Tensor mlp_hidden(const DecoderBlock& block, const at::Tensor& y);
// The block's gated MLP, down(mlp_hidden(y)), on normed hidden states y.
at::Tensor mlp_forward(const DecoderBlock& block, const at::Tensor& y);

// Keys and values of the positions a decoder block has seen ([B, nkv, L, d] each; undefined before the first step).
struct LayerCache {
    at::Tensor k, v;
    int64_t length() const { return k.defined() ? k.size(2) : 0; }
};

// One decoder block on hidden states [B, T, H] (positions 0..T-1, causal). With `cache`, the T new positions follow
// the cache's (RoPE and the causal mask offset by its length), attend to its keys too, and are appended to it.
at::Tensor block_forward(const DecoderBlock& block, const LlamaConfig& config, const Rope& rope,
                         const at::Tensor& hidden, LayerCache* cache = nullptr);

// The input of linear `linear` of the block on hidden states [B, T, H], computing only what it depends on (q, k and v
// share one input, as do gate and up): for taking a linear's statistics without running the rest of the block.
at::Tensor block_linear_input(const DecoderBlock& block, const LlamaConfig& config, const Rope& rope,
                              const at::Tensor& hidden, int linear);

// Reads block `layer` from the checkpoint, checking every shape, converted to `options`. Linears stored GPTQ-packed
// (`packed.bits` > 0 and a `.qweight` present) become PackedLinear, or QuantizedLinear (dense, dequantized) without
// `keep_packed`; the rest are dense.
// With `adapter`, linears that have PEFT lora_A/lora_B tensors there are wrapped in LoraLinear; with
// `emulate_llamacpp`, a saliq_ggml folder's linears in LlamacppInputLinear (inside the LoRA wrapper).
// A GPTQ linear's g_idx: the stored one, or, for a folder without act-order that leaves it out (AutoRound's own
// format), the natural order k / group_size. FormatError when an act-order folder lacks it.
at::Tensor gptq_group_index(const TensorSource& tensors, const std::string& linear, const PackedInfo& packed,
                            int64_t in_features);
// A packed linear of a folder (GPTQ, saliq_mixed or saliq_ggml layout) as its quantized tensor, checked as loading
// checks it; its stored tensors released after.
QuantizedTensor load_quantized_linear(const TensorSource& tensors, const PackedInfo& packed, const std::string& name,
                                      int64_t out, int64_t in);
// A saliq_ggml linear's type from its <linear>.ggml_type: the folder's grid or one of its fallbacks, else
// FormatError(origin).
GgmlGrid ggml_linear_grid(const at::Tensor& type, GgmlGrid requested, const std::string& origin);

DecoderBlock load_block(const TensorSource& tensors, const LlamaConfig& config, const PackedInfo& packed,
                        int64_t layer, const at::TensorOptions& options, const TensorSource* adapter = nullptr,
                        double adapter_scale = 0.0, bool keep_packed = false, bool emulate_llamacpp = false);

// Checks a checkpoint's tensors against its config.json from their headers, before any weight is read: every
// tensor the config implies present with its shape and a float dtype; in a packed folder every linear packed, with
// the four GPTQ tensors of the shapes and dtypes its quantization_config implies (or its binarizer's tensors), and no
// packed tensor the model does not have. Throws FormatError naming the folder and the tensor.
void check_checkpoint_tensors(const Checkpoint& checkpoint);

class LlamaModel {
public:
    // Loads all weights. Throws FormatError for missing tensors or wrong shapes.
    static std::unique_ptr<LlamaModel> load(const Checkpoint& checkpoint, const ModelOptions& options);

    const LlamaConfig& config() const { return config_; }
    const at::TensorOptions& options() const { return options_; }
    int64_t n_layers() const { return config_.n_layers; }
    // Resident blocks (not with stream_blocks, where block() throws: use read_block).
    DecoderBlock& block(int64_t i);
    const DecoderBlock& block(int64_t i) const;
    bool streams_blocks() const { return streaming_; }
    // Block i as the model runs it: the resident one, or read now from the checkpoint (streaming).
    DecoderBlock read_block(int64_t i) const;
    // Block i on hidden states, with a block from read_block (checks the sequence length against the RoPE table).
    at::Tensor run_block(const DecoderBlock& block, const at::Tensor& hidden) const;

    at::Tensor embed(const at::Tensor& ids) const;                          // [B, T] int64 -> [B, T, H]
    at::Tensor run_block(int64_t i, const at::Tensor& hidden) const;        // [B, T, H] -> [B, T, H]
    at::Tensor head(const at::Tensor& hidden) const;                        // [B, T, H] -> logits [B, T, V] fp32
    at::Tensor forward(const at::Tensor& ids) const;                        // [B, T] -> logits [B, T, V] fp32
    at::Tensor hidden_states(const at::Tensor& ids) const;                  // [B, T] -> last block's output [B, T, H]
    // Logits of new tokens after those `cache` holds (one LayerCache per block, grown in place): incremental decoding.
    at::Tensor forward_cached(const at::Tensor& ids, std::vector<LayerCache>& cache) const;
    const Rope& rope() const { return rope_; }

private:
    LlamaConfig config_;
    at::TensorOptions options_;
    at::Tensor embed_tokens_;  // [V, H]
    at::Tensor final_norm_;    // [H]
    at::Tensor lm_head_;       // [V, H] (the embedding when tied)
    std::vector<DecoderBlock> blocks_;
    Rope rope_;
    bool streaming_ = false;
    // What read_block needs when streaming.
    std::shared_ptr<TensorSource> source_;
    PackedInfo packed_;
    std::shared_ptr<TensorSource> adapter_;
    double adapter_scale_ = 0.0;
    bool keep_packed_ = true;
    // ModelOptions::emulate_llamacpp: the GGUF export's dtype for the embeddings, head and head input (undefined: off).
    std::optional<at::ScalarType> llamacpp_dtype_;
};

}  // namespace saliq
