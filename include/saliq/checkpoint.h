// Reading LLaMA checkpoints: Hugging Face folders (config.json + safetensors, single or sharded) and llama2.c
// `.bin` files. Everything is returned in Hugging Face tensor names and rotary layout.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saliq/ggml_types.h"
#include "saliq/llama_config.h"

#include <nlohmann/json_fwd.hpp>

namespace saliq {

// Named tensors, read on demand (a Hugging Face folder serves them from the mmap, so a block's weights are only
// paged in when that block is reached).
class TensorSource {
public:
    virtual ~TensorSource() = default;
    virtual bool has(const std::string& name) const = 0;
    // Throws FormatError naming the checkpoint and the tensor when it is absent.
    virtual at::Tensor get(const std::string& name) const = 0;
    virtual std::vector<std::string> names() const = 0;
    // dtype and shape of `name` without its values when the source can tell (writers declare headers first);
    // by default the tensor is read.
    virtual std::pair<at::ScalarType, std::vector<int64_t>> describe(const std::string& name) const;
    virtual std::string origin() const = 0;  // file or folder, for messages
    // The caller has copied `name` out and will not read it again soon: memory-mapped sources drop its resident
    // pages (a later get() still works). In-memory sources keep it.
    virtual void release(const std::string& /*name*/) const {}
    // False for a tensor a view makes up rather than reads (a symmetric compressed-tensors folder's zero points):
    // it takes no bytes on disk.
    virtual bool stored(const std::string& /*name*/) const { return true; }
};

std::shared_ptr<TensorSource> make_memory_source(std::map<std::string, at::Tensor> tensors, std::string origin);
// `dir`/model.safetensors.index.json (sharded) or `dir`/model.safetensors; validates every shard's header.
std::shared_ptr<TensorSource> open_safetensors_folder(const std::string& dir);
std::shared_ptr<TensorSource> open_safetensors_file(const std::string& path);

// quantization_config of a GPTQ-packed folder.
struct PackedInfo {
    int bits = 0;                 // 0: not packed
    int64_t group_size = -1;
    bool symmetric = false;
    bool desc_act = false;
    bool zeros_v2 = false;        // checkpoint_format "gptq_v2": zero points stored without the v1 "- 1"
    // quant_method "saliq_binary": the linears hold a binarizer's weights (binarize.h), "db-llm" or "binarymos".
    std::string binarizer;
    // quant_method "saliq_mixed": group-wise widths around `bits` (SliM-LLM; gptq_pack.h's mixed layout).
    bool mixed = false;
    // quantization_config "saliq_sparse": linears may carry ReQuant's FP16 sparse parts (gptq_pack.h).
    bool sparse = false;
    // quant_method "saliq_ggml": each linear's raw GGML blocks (<linear>.qweight, uint8 [out, row_bytes]) and type
    // (<linear>.ggml_type, int32 [1], GGUF's id); `grid` is the type asked for (some rows may hold its fallback).
    GgmlGrid grid = GgmlGrid::kNone;
    // quant_method "compressed-tensors" (pack-quantized): the folder's tensors are read through
    // open_compressed_tensors_view, which shows them in GPTQ v2 layout (zeros_v2 is set).
    bool compressed_tensors = false;
};

struct Checkpoint {
    std::string path;
    std::string format;           // "hf", "gptq" (packed HF folder) or "llama2c"
    LlamaConfig config;
    PackedInfo packed;
    std::shared_ptr<TensorSource> tensors;
    std::string tokenizer_path;   // tokenizer.model found beside the weights, or the one given; may be empty
    // LoRA adapters in PEFT layout (adapter_config.json + adapter_model.safetensors) beside the weights, if any.
    std::string adapter_path;
    std::shared_ptr<TensorSource> adapter;
    double adapter_scale = 0.0;   // lora_alpha / r (or / sqrt(r) with use_rslora)
};

// Parses a config.json "quantization_config" object (GPTQ). Throws FormatError naming `source`.
PackedInfo parse_quantization_config(const nlohmann::json& q, const std::string& source);
// A compressed-tensors pack-quantized folder's tensors as GPTQ v2 ones (qweight, qzeros, scales, g_idx), the
// rest as they are; checks each packed linear's parts against `packed` (compressed_tensors_source.cpp).
std::shared_ptr<TensorSource> open_compressed_tensors_view(std::shared_ptr<TensorSource> raw,
                                                            const PackedInfo& packed);

// A folder is read as Hugging Face, a .gguf file as GGUF, another file as llama2.c. `tokenizer_path` overrides the folder's tokenizer.model.
Checkpoint load_checkpoint(const std::string& path, const std::string& tokenizer_path = "");
Checkpoint read_llama2c(const std::string& bin_path);
// A LLaMA GGUF file (F32 / F16 / BF16 tensors); its tokenizer comes from --tokenizer (or tokenizer.model beside it).
Checkpoint read_gguf(const std::string& path);
// llama.cpp's name of a Hugging Face LLaMA tensor ("model.layers.3.mlp.up_proj.weight" -> "blk.3.ffn_up.weight"),
// empty when it has none.
std::string gguf_tensor_name(const std::string& hf_name);

// llama2.c (Meta) rotates adjacent pairs (2i, 2i+1) within a head, Hugging Face rotates halves (i, i + d/2):
// this permutes the rows of wq/wk ([n_heads * head_dim, in]) from the former to the latter, and back.
at::Tensor permute_rotary_rows_to_hf(const at::Tensor& weight, int64_t n_heads);
at::Tensor permute_rotary_rows_to_meta(const at::Tensor& weight, int64_t n_heads);

// Tensor names of a LLaMA model in Hugging Face spelling (the one place they are spelled).
namespace hf_names {
std::string layer_prefix(int64_t layer);                  // "model.layers.3."
std::string linear_name(int64_t layer, int index);        // "model.layers.3.self_attn.q_proj" (no ".weight")
std::string lora_key(const std::string& linear, char which);  // PEFT: "base_model.model.<linear>.lora_A.weight"
extern const char* const kEmbed;                          // model.embed_tokens.weight
extern const char* const kFinalNorm;                      // model.norm.weight
extern const char* const kLmHead;                         // lm_head.weight
extern const char* const kLinearNames[7];                 // self_attn.q_proj ... mlp.down_proj
extern const char* const kInputNorm;                      // input_layernorm.weight
extern const char* const kPostNorm;                       // post_attention_layernorm.weight
}  // namespace hf_names

// [out, in] of each linear of a block, in kLinearNames order (the one place the shapes are spelled).
std::array<std::vector<int64_t>, 7> linear_shapes(const LlamaConfig& config);

// Every tensor a LLaMA checkpoint with this config must hold, in file order.
std::vector<std::string> llama_tensor_names(const LlamaConfig& config);

// Puts the tokenizer into a model folder being written (`dir`): a SentencePiece file as tokenizer.model with
// LLaMA's tokenizer_config.json; a tokenizer.json with the tokenizer_config.json beside it (a minimal one if none);
// a GGUF's BPE vocabulary as the tokenizer.json and tokenizer_config.json it spells. Returns the files written.
std::vector<std::string> write_tokenizer_files(const std::string& tokenizer_path, const LlamaConfig& config,
                                               const std::string& dir);

// Writes config.json, model.safetensors (the given dtype) and the tokenizer's files into `out_dir`, atomically.
void write_hf_folder(const std::string& out_dir, const LlamaConfig& config, const TensorSource& tensors,
                     const std::string& tokenizer_path, bool force);

}  // namespace saliq
