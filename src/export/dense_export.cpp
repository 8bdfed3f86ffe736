// Dense exports (hf, gguf): every linear's effective weight (dequantized, adapters merged) computed one block at a
// time from the checkpoint, so exporting holds one block, not the model.
#include <map>
#include <memory>
#include <optional>

#include <ATen/ATen.h>

#include "saliq/dtype.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/ggml_grid.h"
#include "saliq/gguf.h"
#include "saliq/log.h"
#include "saliq/model.h"
#include "saliq/strings.h"
#include "saliq/bpe_tokenizer.h"
#include "saliq/tokenizer.h"

namespace saliq {
namespace {

// --dtype in every command's vocabulary (fp32, fp16, bf16); GGML's f32/f16, which export once took, still read.
at::ScalarType export_dtype(const std::string& d) {
    if (d == "f32" || d == "f16") log_warn("--dtype " + d + " is deprecated: say fp" + d.substr(1) + ", as every command does");
    return float_dtype(d == "f32" || d == "f16" ? "fp" + d.substr(1) : d, "--dtype");
}

// [out, in] of the linear weight `name`.
std::vector<int64_t> linear_shape(const LlamaConfig& c, const std::string& name) {
    const auto shapes = linear_shapes(c);
    for (int i = 0; i < kNumLinears; ++i) {
        const std::string tail = std::string(hf_names::kLinearNames[i]) + ".weight";
        if (name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0) return shapes[i];
    }
    throw Error("internal: " + name + " is not a linear weight");
}

// The checkpoint's tensors as a dense model would hold them: linears merged, the rest as stored, in `dtype`.
class MergedSource : public TensorSource {
public:
    MergedSource(const Checkpoint& ckpt, at::ScalarType dtype, bool use_adapter)
        : ckpt_(ckpt), dtype_(dtype), adapter_(use_adapter ? ckpt.adapter.get() : nullptr) {}
    bool has(const std::string& name) const override {
        return linear_of(name).first >= 0 || ckpt_.tensors->has(name);
    }
    at::Tensor get(const std::string& name) const override {
        const auto [layer, index] = linear_of(name);
        if (layer < 0) return ckpt_.tensors->get(name).to(dtype_);
        if (layer != cached_layer_) {
            cached_ = load_block(*ckpt_.tensors, ckpt_.config, ckpt_.packed, layer, at::TensorOptions().dtype(at::kFloat),
                                 adapter_, ckpt_.adapter_scale);
            cached_layer_ = layer;
        }
        if (dynamic_cast<const MosLinear*>(cached_.linears[index].get()) != nullptr)
            throw ConfigError("BinaryMoS mixes its scales per token: it has no dense weight to export");
        return cached_.linears[index]->weight().to(dtype_);
    }
    std::vector<std::string> names() const override { return llama_tensor_names(ckpt_.config); }
    // A linear's header from the config, so declaring the file does not dequantize every block a first time.
    std::pair<at::ScalarType, std::vector<int64_t>> describe(const std::string& name) const override {
        if (linear_of(name).first < 0) return {dtype_, ckpt_.tensors->describe(name).second};
        return {dtype_, linear_shape(ckpt_.config, name)};
    }
    std::string origin() const override { return ckpt_.path; }
    void release(const std::string& name) const override {
        if (linear_of(name).first < 0) ckpt_.tensors->release(name);
    }

private:
    // (layer, linear index) of a linear weight's name, (-1, -1) otherwise.
    std::pair<int64_t, int> linear_of(const std::string& name) const {
        for (int64_t layer = 0; layer < ckpt_.config.n_layers; ++layer)
            for (int i = 0; i < kNumLinears; ++i)
                if (name == hf_names::linear_name(layer, i) + ".weight") return {layer, i};
        return {-1, -1};
    }
    const Checkpoint& ckpt_;
    at::ScalarType dtype_;
    const TensorSource* adapter_;
    mutable DecoderBlock cached_;
    mutable int64_t cached_layer_ = -1;
};

std::vector<GgufValue> gguf_metadata(const Checkpoint& ckpt, const Tokenizer& tok, const std::string& name,
                                     at::ScalarType dtype, GgmlGrid grid) {
    const LlamaConfig& c = ckpt.config;
    if (tok.vocab_size() != c.vocab_size)
        throw ConfigError(strprintf("tokenizer has %d pieces but the model's vocabulary is %lld", tok.vocab_size(),
                                    (long long)c.vocab_size));
    if (c.head_dim * c.n_heads != c.hidden_size)
        throw ConfigError("llama.cpp needs head_dim * heads == hidden size");
    auto u32 = [](const std::string& k, int64_t v) { return GgufValue{k, GgufType::kUint32, GgufType::kString, v}; };
    auto f32 = [](const std::string& k, double v) { return GgufValue{k, GgufType::kFloat32, GgufType::kString, v}; };
    auto str = [](const std::string& k, const std::string& v) { return GgufValue{k, GgufType::kString, GgufType::kString, v}; };
    nlohmann::json tokens = nlohmann::json::array(), scores = nlohmann::json::array(), types = nlohmann::json::array();
    for (int32_t id = 0; id < tok.vocab_size(); ++id) {
        tokens.push_back(tok.piece(id));
        scores.push_back(tok.score(id));
        types.push_back(tok.piece_type(id));
    }
    // llama.cpp's LLAMA_FTYPE: 0 all F32, 1 mostly F16, 32 mostly BF16, or the grid's "mostly" type.
    const int64_t file_type = grid != GgmlGrid::kNone ? ggml_grid_traits(grid).llama_ftype
                              : dtype == at::kFloat ? 0 : dtype == at::kHalf ? 1 : 32;
    std::vector<GgufValue> meta = {str("general.architecture", "llama"),
                                   str("general.name", name),
                                   u32("general.file_type", file_type),
                                   u32("llama.context_length", c.max_position_embeddings),
                                   u32("llama.vocab_size", c.vocab_size),
                                   u32("llama.embedding_length", c.hidden_size),
                                   u32("llama.feed_forward_length", c.intermediate_size),
                                   u32("llama.block_count", c.n_layers),
                                   u32("llama.attention.head_count", c.n_heads),
                                   u32("llama.attention.head_count_kv", c.n_kv_heads),
                                   u32("llama.rope.dimension_count", c.head_dim),
                                   f32("llama.rope.freq_base", c.rope_theta),
                                   f32("llama.attention.layer_norm_rms_epsilon", c.rms_norm_eps)};
    const RopeScaling& rope = c.rope_scaling;
    if (rope.type == "linear") {
        meta.push_back(str("llama.rope.scaling.type", "linear"));
        meta.push_back(f32("llama.rope.scaling.factor", rope.factor));
    } else if (rope.type == "yarn") {
        throw ConfigError("yarn-scaled rotary embeddings: llama.cpp's yarn parameters are not transformers', so "
                          "saliq does not write them to GGUF (export --format hf instead)");
    }  // dynamic equals default within the context; llama3 and freq_factors travel as the rope_freqs tensor
    const auto* bpe = dynamic_cast<const BpeTokenizer*>(&tok);
    if (bpe != nullptr) {
        const std::string pre = gguf_pre_name(bpe->pre_tokenizer());
        if (pre.empty())
            throw ConfigError("tokenizer " + tok.path() + ": its pre-tokenizer has no llama.cpp name saliq knows "
                              "(gpt2, smollm, llama-bpe), so llama.cpp would split text differently");
        meta.push_back(str("tokenizer.ggml.model", "gpt2"));
        meta.push_back(str("tokenizer.ggml.pre", pre));
        meta.push_back(GgufValue{"tokenizer.ggml.add_space_prefix", GgufType::kBool, GgufType::kString, false});
        meta.push_back(GgufValue{"tokenizer.ggml.tokens", GgufType::kArray, GgufType::kString, tokens});
        meta.push_back(GgufValue{"tokenizer.ggml.token_type", GgufType::kArray, GgufType::kInt32, types});
        meta.push_back(GgufValue{"tokenizer.ggml.merges", GgufType::kArray, GgufType::kString, bpe->merges()});
        meta.push_back(GgufValue{"tokenizer.ggml.add_bos_token", GgufType::kBool, GgufType::kString, tok.add_bos()});
    } else {
        meta.push_back(str("tokenizer.ggml.model", "llama"));
        meta.push_back(GgufValue{"tokenizer.ggml.tokens", GgufType::kArray, GgufType::kString, tokens});
        meta.push_back(GgufValue{"tokenizer.ggml.scores", GgufType::kArray, GgufType::kFloat32, scores});
        meta.push_back(GgufValue{"tokenizer.ggml.token_type", GgufType::kArray, GgufType::kInt32, types});
        meta.push_back(u32("tokenizer.ggml.unknown_token_id", 0));
    }
    if (tok.bos_id() >= 0) meta.push_back(u32("tokenizer.ggml.bos_token_id", tok.bos_id()));
    if (tok.eos_id() >= 0) meta.push_back(u32("tokenizer.ggml.eos_token_id", tok.eos_id()));
    return meta;
}

// The output's name without .gguf, and with .lora.gguf: where the adapter goes by default.
std::string gguf_stem(const std::string& out) {
    return out.size() > 5 && out.compare(out.size() - 5, 5, ".gguf") == 0 ? out.substr(0, out.size() - 5) : out;
}

// Rows of q and k in llama.cpp's rotary order (its converter permutes them); other linears as they are.
at::Tensor to_gguf_rows(const at::Tensor& t, const std::string& hf_name, const LlamaConfig& c) {
    if (hf_name.find("self_attn.q_proj") != std::string::npos) return permute_rotary_rows_to_meta(t, c.n_heads);
    if (hf_name.find("self_attn.k_proj") != std::string::npos) return permute_rotary_rows_to_meta(t, c.n_kv_heads);
    return t;
}

// llama.cpp's GGUF LoRA adapter (convert_lora_to_gguf.py's layout): general.type "adapter", adapter.type "lora",
// adapter.lora.alpha; per linear <gguf name>.lora_a [r, in] and .lora_b [out, r] (B's q/k rows permuted as the
// base's), F32. llama.cpp scales by alpha / r, so alpha = r × the folder's scale.
void write_gguf_adapter(const Checkpoint& ckpt, const std::string& path) {
    const LlamaConfig& c = ckpt.config;
    std::vector<std::string> keys;  // [A, B] HF keys per adapted linear, in the model's order
    std::vector<GgufTensorSpec> specs;
    int64_t rank = -1;
    for (int64_t l = 0; l < c.n_layers; ++l)
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string base = hf_names::linear_name(l, i);
            const std::string a = hf_names::lora_key(base, 'A'), b = hf_names::lora_key(base, 'B');
            if (!ckpt.adapter->has(a)) continue;
            const auto shape_a = ckpt.adapter->describe(a).second, shape_b = ckpt.adapter->describe(b).second;
            if (rank >= 0 && shape_a.front() != rank)
                throw ConfigError(ckpt.adapter_path + ": llama.cpp's adapter has one alpha for every rank; " + base +
                                  " has rank " + std::to_string(shape_a.front()) + ", others " + std::to_string(rank));
            rank = shape_a.front();
            const std::string g = gguf_tensor_name(base + ".weight");
            keys.push_back(a);
            keys.push_back(b);
            specs.push_back({g + ".lora_a", at::kFloat, shape_a});
            specs.push_back({g + ".lora_b", at::kFloat, shape_b});
        }
    if (specs.empty()) throw ConfigError(ckpt.adapter_path + " holds no LoRA tensors of this model's linears");
    const std::vector<GgufValue> meta = {
        {"general.architecture", GgufType::kString, GgufType::kString, "llama"},
        {"general.type", GgufType::kString, GgufType::kString, "adapter"},
        {"adapter.type", GgufType::kString, GgufType::kString, "lora"},
        {"adapter.lora.alpha", GgufType::kFloat32, GgufType::kString, ckpt.adapter_scale * static_cast<double>(rank)}};
    write_gguf(path, meta, specs, [&](size_t i) {
        const at::Tensor t = ckpt.adapter->get(keys[i]).to(at::kFloat);
        return i % 2 == 0 ? t : to_gguf_rows(t, keys[i], ckpt.config);  // B's rows are the base's rows
    });
}

// Each linear's GGML blocks, when the export writes them (a saliq_ggml folder's as stored; a GPTQ folder's in the
// type that holds its codes): the type and the raw rows [out, row_bytes] of a linear's HF base name.
struct LinearBlocks {
    std::function<GgmlGrid(const std::string&)> type;
    std::function<at::Tensor(const std::string&)> rows;
    GgmlGrid file_type = GgmlGrid::kNone;  // general.file_type's "mostly" type
    std::shared_ptr<double> max_change;    // largest |Δw| the conversion made (Q4_1's fp16 m), when it converts
};

// Why a uniform-grid linear has no GGML type that holds it as it is ("" when one does: `grid` says which).
//   symmetric codes (zero 2^(b−1)) of up to 4 bits: Q4_0, codes moved to zero 8, exactly;
//   symmetric 8-bit codes: Q8_0 (int8 = code − 128), exactly;
//   asymmetric codes of up to 4 bits: Q4_1 with m = −s·z rounded to fp16 (the only rounding);
// each 32-weight block taking its group's scale (groups of any multiple of 32 in natural order, or one per row).
std::string why_no_ggml_type(const QuantizedTensor& q, GgmlGrid& grid) {
    grid = GgmlGrid::kNone;
    const int64_t in = q.in_features(), g = q.spec.effective_group(in);
    if (q.group_bits.defined()) return "group-wise widths (saliq_mixed)";
    if (q.sparse_count() > 0) return "sparse FP16 parts (ReQuant)";
    if (!at::equal(q.g_idx.to(at::kCPU).to(at::kLong), natural_group_index(in, q.spec))) return "act-order's group index";
    if (in % 32 != 0) return "rows of " + std::to_string(in) + " weights (GGML blocks hold 32)";
    if (g % 32 != 0) return "groups of " + std::to_string(g) + " (GGML blocks hold 32 weights)";
    const bool symmetric = (q.zeros == static_cast<double>(int64_t{1} << (q.spec.bits - 1))).all().item<bool>();
    if (q.spec.bits <= 4) grid = symmetric ? GgmlGrid::kQ4_0 : GgmlGrid::kQ4_1;
    else if (q.spec.bits == 8 && symmetric) grid = GgmlGrid::kQ8_0;
    else return "8-bit asymmetric codes (no GGML type has a zero point beside 8-bit codes)";
    return "";
}

at::Tensor uniform_blocks(const QuantizedTensor& q, GgmlGrid grid, double& max_abs_change) {
    const int64_t in = q.in_features(), g = q.spec.effective_group(in);
    const at::Tensor group_of_block = at::div(at::arange(in / 32, at::kLong) * 32, g, "floor");
    const at::Tensor d = q.scales.to(at::kCPU).index_select(1, group_of_block);
    const at::Tensor z = q.zeros.to(at::kCPU).index_select(1, group_of_block);
    at::Tensor codes = q.codes.to(at::kCPU).to(at::kLong);
    if (grid == GgmlGrid::kQ4_0) codes = codes + (8 - (int64_t{1} << (q.spec.bits - 1)));
    const at::Tensor blocks = ggml_encode_blocks(grid, codes.to(at::kByte), d, grid == GgmlGrid::kQ4_1 ? -(d * z) : at::Tensor());
    const at::Tensor back = ggml_quantized(blocks, grid, q.out_features(), in, "export").dequantize();
    max_abs_change = (back - q.dequantize().to(at::kCPU)).abs().max().item<double>();
    if (grid != GgmlGrid::kQ4_1 && max_abs_change != 0.0)
        throw Error(std::string("internal: ") + ggml_grid_traits(grid).name + " does not hold the codes exactly");
    return blocks;
}

// A GPTQ-packed folder's linears as GGML blocks, when every one has a type that holds it; nullopt (and a line
// saying why) otherwise, and the export stays dense.
std::optional<LinearBlocks> uniform_folder_blocks(const Checkpoint& ckpt) {
    const auto shapes = linear_shapes(ckpt.config);
    struct Held {
        GgmlGrid grid;
        int64_t out, in;
    };
    auto held = std::make_shared<std::map<std::string, Held>>();  // each linear's type, from one pass over them
    std::map<std::string, int64_t> count;
    for (int64_t l = 0; l < ckpt.config.n_layers; ++l)
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string base = hf_names::linear_name(l, i);
            GgmlGrid grid;
            const std::string why = why_no_ggml_type(
                load_quantized_linear(*ckpt.tensors, ckpt.packed, base, shapes[i][0], shapes[i][1]), grid);
            if (!why.empty()) {
                log_info("writing dense weights: " + base + " has " + why + ", which no GGML type holds");
                return std::nullopt;
            }
            (*held)[base] = {grid, shapes[i][0], shapes[i][1]};
            ++count[ggml_grid_traits(grid).name];
        }
    auto worst = std::make_shared<double>(0.0);
    LinearBlocks b;
    b.max_change = worst;
    b.type = [held](const std::string& base) { return held->at(base).grid; };
    b.rows = [held, worst, c = &ckpt](const std::string& base) {
        const Held& h = held->at(base);
        double change = 0;
        const at::Tensor blocks =
            uniform_blocks(load_quantized_linear(*c->tensors, c->packed, base, h.out, h.in), h.grid, change);
        *worst = std::max(*worst, change);
        return blocks;
    };
    std::string summary;
    int64_t most = 0;
    for (const auto& [name, n] : count) {
        summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " as " + name;
        if (n > most) most = n, b.file_type = parse_ggml_grid(name);
    }
    const int bits = ckpt.packed.bits;
    log_info("GGML blocks of the folder's own codes: " + summary +
             (bits < 4 ? ", its " + std::to_string(bits) + "-bit codes widened to 4-bit fields" : std::string()) +
             (count.count("q4_1") ? " (Q4_1's m = -s·z rounded to fp16; Q4_0 and Q8_0 exact)" : " (exact)"));
    return b;
}

// Returns the GGUF LoRA adapter's path when it wrote one.
std::string write_gguf_export(const Checkpoint& ckpt, const MergedSource& merged, const std::string& out,
                              at::ScalarType dtype, const DenseExportOptions& o, const LinearBlocks* blocks) {
    if (ckpt.tokenizer_path.empty())
        throw ConfigError("a GGUF file embeds the vocabulary: pass --tokenizer (no tokenizer.model or tokenizer.json beside the model)");
    const auto tok = Tokenizer::load(ckpt.tokenizer_path);
    std::string name = out.substr(out.rfind('/') == std::string::npos ? 0 : out.rfind('/') + 1);
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".gguf") == 0) name.resize(name.size() - 5);
    const LlamaConfig& c = ckpt.config;
    // llama.cpp's order: embeddings, final norm, head, then per block attention and feed-forward.
    std::vector<std::string> hf;
    hf.push_back(hf_names::kEmbed);
    hf.push_back(hf_names::kFinalNorm);
    hf.push_back(hf_names::kLmHead);  // written for tied models too, as llama.cpp's own converters do
    const int order[] = {kQProj, kKProj, kVProj, kOProj};
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const std::string p = hf_names::layer_prefix(l);
        for (int i : order) hf.push_back(hf_names::linear_name(l, i) + ".weight");
        hf.push_back(p + hf_names::kInputNorm);
        for (int i : {kGateProj, kDownProj, kUpProj}) hf.push_back(hf_names::linear_name(l, i) + ".weight");
        hf.push_back(p + hf_names::kPostNorm);
    }
    // Linears as GGML blocks (rows are independent, so q/k permute as rows of bytes).
    const bool raw = blocks != nullptr;
    auto linear_base = [](const std::string& name) {
        return name.find(".self_attn.") != std::string::npos || name.find(".mlp.") != std::string::npos
                   ? name.substr(0, name.size() - 7)
                   : std::string();
    };
    auto produce = [&](size_t i) {
        const std::string base = linear_base(hf[i]);
        if (raw && !base.empty()) return to_gguf_rows(blocks->rows(base), hf[i], c);
        at::Tensor t = merged.get(hf[i] == hf_names::kLmHead && c.tie_word_embeddings ? hf_names::kEmbed : hf[i]);
        if (t.dim() == 1) return t.to(at::kFloat);  // norms stay F32, as llama.cpp's converter writes them
        return to_gguf_rows(t, hf[i], c);
    };
    // llama.cpp's spelling of per-frequency scaling (LLaMA-3.1's rope type): divisors of the plain frequencies.
    const bool rope_freqs = c.rope_scaling.type == "llama3" || c.rope_scaling.type == "freq_factors";
    at::Tensor rope_factors;
    if (rope_freqs) {
        LlamaConfig plain = c;
        plain.rope_scaling = RopeScaling{};
        const std::vector<double> base = rope_inverse_frequencies(plain), scaled = rope_inverse_frequencies(c);
        std::vector<float> factors(base.size());
        for (size_t i = 0; i < base.size(); ++i) factors[i] = static_cast<float>(base[i] / scaled[i]);
        rope_factors = at::tensor(factors, at::kFloat);
    }
    std::vector<GgufTensorSpec> specs;
    if (rope_freqs) specs.push_back({"rope_freqs.weight", at::kFloat, {c.head_dim / 2}});
    for (size_t i = 0; i < hf.size(); ++i) {
        const std::string g = gguf_tensor_name(hf[i]);
        const std::vector<int64_t> shape =
            merged.describe(hf[i] == hf_names::kLmHead && c.tie_word_embeddings ? hf_names::kEmbed : hf[i]).second;
        specs.push_back({g, shape.size() == 1 ? at::kFloat : dtype, shape});
        const std::string base = linear_base(hf[i]);
        if (raw && !base.empty()) specs.back().blocks = blocks->type(base);
    }
    write_gguf(out, gguf_metadata(ckpt, *tok, name, dtype, raw ? blocks->file_type : GgmlGrid::kNone), specs, [&](size_t i) {
        if (rope_freqs) {
            if (i == 0) return rope_factors;
            --i;
        }
        at::Tensor t = produce(i);
        merged.release(hf[i]);
        return t;
    });
    if (raw && blocks->max_change && *blocks->max_change > 0)
        log_info(strprintf("largest change of a weight in the conversion: %.3g (Q4_1's fp16 m)", *blocks->max_change));
    if (raw && ckpt.adapter != nullptr && o.use_adapter) {
        const std::string adapter = o.adapter_out.empty() ? gguf_stem(out) + ".lora.gguf" : o.adapter_out;
        if (path_exists(adapter) && !o.force) throw ConfigError(adapter + " exists; pass --force to replace it");
        write_gguf_adapter(ckpt, adapter);
        log_info("wrote the LoRA adapters as " + adapter + " (llama.cpp: --lora " + adapter + ")");
        return adapter;
    }
    return "";
}

}  // namespace

std::string export_dense(const Checkpoint& ckpt, const std::string& out, const DenseExportOptions& o) {
    const at::ScalarType dtype = export_dtype(o.dtype);
    if (o.format != "hf" && o.format != "gguf") throw ConfigError("--format must be hf or gguf, not '" + o.format + "'");
    if (ckpt.packed.binarizer == "binarymos")
        throw ConfigError("BinaryMoS mixes its scales per token: it has no dense weight to export (evaluate it with saliq)");
    if (path_exists(out) && !o.force) throw ConfigError(out + " exists; pass --force to replace it");
    // GGUF of a packed folder: its linears as GGML blocks where a type holds them (a saliq_ggml folder's as stored,
    // a GPTQ folder's codes in Q4_0 / Q4_1 / Q8_0), the adapters beside as a GGUF LoRA adapter; --merge: dense.
    if (o.format == "gguf" && !o.merge && ckpt.packed.bits > 0 && ckpt.packed.binarizer.empty()) {
        std::optional<LinearBlocks> blocks;
        if (ckpt.packed.grid != GgmlGrid::kNone) {
            const Checkpoint* c = &ckpt;
            blocks = LinearBlocks{
                [c](const std::string& base) {
                    return ggml_linear_grid(c->tensors->get(base + ".ggml_type"), c->packed.grid,
                                            c->tensors->origin() + " (" + base + ")");
                },
                [c](const std::string& base) { return c->tensors->get(base + ".qweight"); }, ckpt.packed.grid, nullptr};
        } else {
            blocks = uniform_folder_blocks(ckpt);
        }
        if (blocks) {
            const MergedSource merged(ckpt, dtype, false);
            const std::string adapter = write_gguf_export(ckpt, merged, out, dtype, o, &*blocks);
            return std::string("GGML blocks, the rest ") + o.dtype +
                   (adapter.empty() ? "" : ", LoRA adapter " + adapter) +
                   (ckpt.adapter != nullptr && !o.use_adapter ? ", adapters left out" : "");
        }
    }
    const MergedSource merged(ckpt, dtype, o.use_adapter && ckpt.adapter != nullptr);
    if (ckpt.adapter != nullptr && o.use_adapter) log_info("merging the LoRA adapters of " + ckpt.adapter_path);
    const std::string what = o.dtype + (ckpt.adapter != nullptr && o.use_adapter ? ", adapters merged" : "");
    if (o.format == "gguf") {
        write_gguf_export(ckpt, merged, out, dtype, o, nullptr);
        return what;
    }
    LlamaConfig config = ckpt.config;
    config.torch_dtype = dtype == at::kFloat ? "float32" : dtype == at::kHalf ? "float16" : "bfloat16";
    write_hf_folder(out, config, merged, ckpt.tokenizer_path, o.force);
    return what;
}

}  // namespace saliq
