// LLaMA in GGUF: llama.cpp's tensor names and metadata keys, mapped to and from the Hugging Face names saliq uses;
// q/k rows are stored in llama.cpp's (Meta's interleaved) rotary order and permuted to HF halves on read.
#include <ATen/ATen.h>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/gguf.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

const char* const kGgufLinear[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

class GgufSource : public TensorSource {
public:
    GgufSource(std::shared_ptr<GgufReader> reader, const LlamaConfig& config) : reader_(std::move(reader)), config_(config) {}
    bool has(const std::string& name) const override {
        const std::string g = gguf_tensor_name(name);
        return !g.empty() && reader_->find(g) != nullptr;
    }
    at::Tensor get(const std::string& name) const override {
        const std::string g = gguf_tensor_name(name);
        if (g.empty() || reader_->find(g) == nullptr)
            throw FormatError(reader_->path(), "no tensor for '" + name + "' (llama.cpp name '" + g + "')");
        at::Tensor t = reader_->tensor(g);
        // q and k rows are permuted from llama.cpp's RoPE layout here, before the loader's shape checks see them:
        // their shape is checked first.
        auto rotary = [&](int64_t heads) {
            const std::vector<int64_t> expected = {heads * config_.head_dim, config_.hidden_size};
            if (t.sizes().vec() != expected)
                throw FormatError(reader_->path(), "tensor '" + g + "' has shape " + shape_to_string(t.sizes().vec()) +
                                                       ", the metadata implies " + shape_to_string(expected));
            return permute_rotary_rows_to_hf(t, heads);
        };
        if (ends_with(name, "self_attn.q_proj.weight")) return rotary(config_.n_heads);
        if (ends_with(name, "self_attn.k_proj.weight")) return rotary(config_.n_kv_heads);
        return t;
    }
    // From the tensor info, nothing dequantized: F16 / BF16 are served as stored, every other type as fp32.
    std::pair<at::ScalarType, std::vector<int64_t>> describe(const std::string& name) const override {
        const std::string g = gguf_tensor_name(name);
        const GgufTensorInfo* info = g.empty() ? nullptr : reader_->find(g);
        if (info == nullptr) return TensorSource::describe(name);  // get() names what is missing
        const std::vector<int64_t> shape(info->ne.rbegin(), info->ne.rend());
        const at::ScalarType dtype = info->ggml_type == kGgmlF16    ? at::kHalf
                                     : info->ggml_type == kGgmlBF16 ? at::kBFloat16
                                                                    : at::kFloat;
        return {dtype, shape};
    }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& n : llama_tensor_names(config_))
            if (has(n)) out.push_back(n);
        return out;
    }
    std::string origin() const override { return reader_->path(); }
    void release(const std::string& name) const override { reader_->release(gguf_tensor_name(name)); }

private:
    static bool ends_with(const std::string& s, const std::string& tail) {
        return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
    }
    std::shared_ptr<GgufReader> reader_;
    LlamaConfig config_;
};

int64_t uint_value(const GgufReader& r, const std::string& key, int64_t fallback, bool required) {
    const GgufValue* v = r.find_value(key);
    if (v == nullptr) {
        if (required) throw FormatError(r.path(), "GGUF metadata '" + key + "' is missing");
        return fallback;
    }
    if (!v->value.is_number_integer()) throw FormatError(r.path(), "GGUF metadata '" + key + "' is not an integer");
    // Read in its stored width: a UINT64 past 2^62 or a negative INT would otherwise wrap into a size.
    if (v->value.is_number_unsigned() ? v->value.get<uint64_t>() > (uint64_t{1} << 62) : v->value.get<int64_t>() < 0)
        throw FormatError(r.path(), "GGUF metadata '" + key + "' = " + v->value.dump() + " is not a count or an id");
    return v->value.get<int64_t>();
}

double float_value(const GgufReader& r, const std::string& key, double fallback) {
    const GgufValue* v = r.find_value(key);
    if (v == nullptr) return fallback;
    if (!v->value.is_number()) throw FormatError(r.path(), "GGUF metadata '" + key + "' is not a number");
    return v->value.get<double>();
}

std::string string_value(const GgufReader& r, const std::string& key, const std::string& fallback) {
    const GgufValue* v = r.find_value(key);
    if (v == nullptr) return fallback;
    if (!v->value.is_string()) throw FormatError(r.path(), "GGUF metadata '" + key + "' is not a string");
    return v->value.get<std::string>();
}

// llama.cpp's rope scaling: llama.rope.scaling.type (none | linear | yarn | longrope), or a rope_freqs.weight tensor
// dividing each frequency (how LLaMA-3.1's llama3 type is stored). Applied where saliq computes what llama.cpp
// computes; refused otherwise.
void read_gguf_rope_scaling(const GgufReader& r, LlamaConfig& c) {
    const std::string type = string_value(r, "llama.rope.scaling.type", "none");
    const double factor = float_value(r, "llama.rope.scaling.factor", 0.0);
    if (type == "linear" || (type == "none" && factor > 0.0 && factor != 1.0)) {
        if (type == "none") throw FormatError(r.path(), "llama.rope.scaling.factor is set but the scaling type is none");
        c.rope_scaling.type = "linear";
        c.rope_scaling.factor = factor;
    } else if (type != "none") {
        throw FormatError(r.path(), "llama.rope.scaling.type '" + type +
                                        "' is not supported (saliq reads none, linear and rope_freqs factors)");
    }
    const GgufTensorInfo* freqs = r.find("rope_freqs.weight");
    if (freqs == nullptr) return;
    if (c.rope_scaling.type != "default")
        throw FormatError(r.path(), "rope_freqs.weight beside llama.rope.scaling.type '" + type + "'");
    if (freqs->ne.size() != 1 || freqs->ne[0] != c.head_dim / 2)
        throw FormatError(r.path(), strprintf("rope_freqs.weight must hold head_dim / 2 = %lld factors",
                                              (long long)(c.head_dim / 2)));
    const at::Tensor t = r.tensor("rope_freqs.weight").to(at::kDouble).contiguous();
    c.rope_scaling.type = "freq_factors";
    c.rope_scaling.freq_factors.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

}  // namespace

std::string gguf_tensor_name(const std::string& hf) {
    if (hf == hf_names::kEmbed) return "token_embd.weight";
    if (hf == hf_names::kFinalNorm) return "output_norm.weight";
    if (hf == hf_names::kLmHead) return "output.weight";
    const std::string prefix = "model.layers.";
    if (hf.rfind(prefix, 0) != 0) return "";
    const size_t dot = hf.find('.', prefix.size());
    if (dot == std::string::npos) return "";
    const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
    const std::string rest = hf.substr(dot + 1);
    const std::string blk = "blk." + layer + ".";
    if (rest == hf_names::kInputNorm) return blk + "attn_norm.weight";
    if (rest == hf_names::kPostNorm) return blk + "ffn_norm.weight";
    for (int i = 0; i < 7; ++i)
        if (rest == std::string(hf_names::kLinearNames[i]) + ".weight") return blk + kGgufLinear[i] + ".weight";
    return "";
}

Checkpoint read_gguf(const std::string& path) {
    auto reader = GgufReader::open(path);
    const GgufValue* arch = reader->find_value("general.architecture");
    if (arch == nullptr || !arch->value.is_string() || arch->value.get<std::string>() != "llama")
        throw FormatError(path, "general.architecture is '" + (arch && arch->value.is_string() ? arch->value.get<std::string>() : std::string("?")) +
                                    "'; saliq reads LLaMA GGUF files");
    LlamaConfig c;
    c.hidden_size = uint_value(*reader, "llama.embedding_length", 0, true);
    c.intermediate_size = uint_value(*reader, "llama.feed_forward_length", 0, true);
    c.n_layers = uint_value(*reader, "llama.block_count", 0, true);
    c.n_heads = uint_value(*reader, "llama.attention.head_count", 0, true);
    c.n_kv_heads = uint_value(*reader, "llama.attention.head_count_kv", c.n_heads, false);
    c.max_position_embeddings = uint_value(*reader, "llama.context_length", 2048, false);
    c.rms_norm_eps = float_value(*reader, "llama.attention.layer_norm_rms_epsilon", 1e-5);
    c.rope_theta = float_value(*reader, "llama.rope.freq_base", 10000.0);
    c.head_dim = c.n_heads > 0 ? c.hidden_size / c.n_heads : 0;
    read_gguf_rope_scaling(*reader, c);
    const int64_t rope_dims = uint_value(*reader, "llama.rope.dimension_count", c.head_dim, false);
    if (rope_dims != c.head_dim)
        throw FormatError(path, strprintf("llama.rope.dimension_count %lld differs from the head size %lld (partial "
                                          "rotary embeddings are not supported)",
                                          (long long)rope_dims, (long long)c.head_dim));
    const GgufTensorInfo* embed = reader->find("token_embd.weight");
    if (embed == nullptr || embed->ne.size() != 2) throw FormatError(path, "token_embd.weight is missing or not 2-D");
    c.vocab_size = embed->ne[1];
    c.tie_word_embeddings = reader->find("output.weight") == nullptr;
    c.bos_token_id = uint_value(*reader, "tokenizer.ggml.bos_token_id", 1, false);
    c.eos_token_id = uint_value(*reader, "tokenizer.ggml.eos_token_id", 2, false);
    c.torch_dtype = embed->ggml_type == kGgmlF16 ? "float16" : embed->ggml_type == kGgmlBF16 ? "bfloat16" : "float32";
    c.validate(path);
    Checkpoint ckpt;
    ckpt.path = path;
    ckpt.format = "gguf";
    ckpt.config = c;
    ckpt.tensors = std::make_shared<GgufSource>(reader, c);
    const GgufValue* vocab = reader->find_value("tokenizer.ggml.model");
    if (vocab != nullptr && vocab->value.is_string() && vocab->value.get<std::string>() == "gpt2")
        ckpt.tokenizer_path = path;  // its byte-level BPE vocabulary serves as the tokenizer
    return ckpt;
}

}  // namespace saliq
