// llama2.c legacy (version 0) checkpoints: 7 x int32 header, then float32 tensors in a fixed order.
#include <cstring>

#include <ATen/ATen.h>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"

namespace saliq {

Checkpoint read_llama2c(const std::string& bin_path) {
    auto file = MappedFile::open(bin_path);
    if (file->size() < 28)
        throw FormatError(bin_path, strprintf("file is %llu bytes, too short for a llama2.c header (28 bytes)",
                                              (unsigned long long)file->size()));
    int32_t header[7];
    std::memcpy(header, file->data(), sizeof(header));
    if (header[0] == 0x616b3432)  // "ak42": llama2.c's versioned export, which this reader does not take
        throw FormatError(bin_path, "versioned llama2.c export (magic ak42) is not supported; use the legacy format");
    const int64_t dim = header[0], hidden = header[1], n_layers = header[2], n_heads = header[3],
                  n_kv_heads = header[4], seq_len = header[6];
    const bool shared_classifier = header[5] > 0;
    const int64_t vocab = shared_classifier ? header[5] : -static_cast<int64_t>(header[5]);

    LlamaConfig c;
    c.hidden_size = dim;
    c.intermediate_size = hidden;
    c.n_layers = n_layers;
    c.n_heads = n_heads;
    c.n_kv_heads = n_kv_heads;
    c.vocab_size = vocab;
    c.max_position_embeddings = seq_len;
    c.rms_norm_eps = 1e-5;  // llama2.c's RMSNorm
    c.rope_theta = 10000.0;
    c.tie_word_embeddings = shared_classifier;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    c.torch_dtype = "float32";
    if (dim <= 0 || n_heads <= 0 || dim % n_heads != 0)
        throw FormatError(bin_path, strprintf("header: dim %lld is not divisible by n_heads %lld",
                                              (long long)dim, (long long)n_heads));
    c.head_dim = dim / n_heads;
    c.validate(bin_path);

    const int64_t kv_dim = n_kv_heads * c.head_dim;
    const int64_t L = n_layers;
    // (name, element count) in file order; the RoPE tables are skipped (we compute them).
    struct Part { const char* key; std::vector<int64_t> shape; };
    const std::vector<Part> parts = {
        {"tok_emb", {vocab, dim}},   {"rms_att", {L, dim}},         {"wq", {L, dim, dim}},
        {"wk", {L, kv_dim, dim}},    {"wv", {L, kv_dim, dim}},      {"wo", {L, dim, dim}},
        {"rms_ffn", {L, dim}},       {"w1", {L, hidden, dim}},      {"w2", {L, dim, hidden}},
        {"w3", {L, hidden, dim}},    {"rms_final", {dim}},          {"freq_cis", {seq_len, c.head_dim}},
    };
    uint64_t expected = 28;
    for (const auto& p : parts) {
        uint64_t n = 4;
        for (int64_t d : p.shape) n *= static_cast<uint64_t>(d);
        expected += n;
    }
    if (!shared_classifier) expected += 4ull * vocab * dim;
    if (file->size() != expected)
        throw FormatError(bin_path, strprintf("file has %llu bytes but its header (dim %lld, hidden %lld, layers %lld, "
                                              "heads %lld/%lld, vocab %lld, seq_len %lld, %s classifier) needs %llu%s",
                                              (unsigned long long)file->size(), (long long)dim, (long long)hidden,
                                              (long long)n_layers, (long long)n_heads, (long long)n_kv_heads,
                                              (long long)vocab, (long long)seq_len,
                                              shared_classifier ? "shared" : "separate",
                                              (unsigned long long)expected,
                                              file->size() < expected ? " (truncated?)" : ""));

    std::map<std::string, at::Tensor> raw;
    uint64_t offset = 28;
    for (const auto& p : parts) {
        at::Tensor t = at::empty(p.shape, at::kFloat);
        const uint64_t bytes = static_cast<uint64_t>(t.numel()) * 4;
        std::memcpy(t.data_ptr(), file->data() + offset, bytes);
        offset += bytes;
        raw[p.key] = t;
    }
    std::map<std::string, at::Tensor> hf;
    hf[hf_names::kEmbed] = raw["tok_emb"];
    for (int64_t i = 0; i < L; ++i) {
        const std::string p = hf_names::layer_prefix(i);
        hf[p + hf_names::kInputNorm] = raw["rms_att"][i];
        hf[p + "self_attn.q_proj.weight"] = permute_rotary_rows_to_hf(raw["wq"][i], n_heads);
        hf[p + "self_attn.k_proj.weight"] = permute_rotary_rows_to_hf(raw["wk"][i], n_kv_heads);
        hf[p + "self_attn.v_proj.weight"] = raw["wv"][i];
        hf[p + "self_attn.o_proj.weight"] = raw["wo"][i];
        hf[p + hf_names::kPostNorm] = raw["rms_ffn"][i];
        hf[p + "mlp.gate_proj.weight"] = raw["w1"][i];
        hf[p + "mlp.down_proj.weight"] = raw["w2"][i];
        hf[p + "mlp.up_proj.weight"] = raw["w3"][i];
    }
    hf[hf_names::kFinalNorm] = raw["rms_final"];
    if (!shared_classifier) {
        at::Tensor wcls = at::empty({vocab, dim}, at::kFloat);
        std::memcpy(wcls.data_ptr(), file->data() + offset, static_cast<size_t>(vocab * dim * 4));
        hf[hf_names::kLmHead] = wcls;
    }
    for (auto& kv : hf) kv.second = kv.second.contiguous();

    Checkpoint ckpt;
    ckpt.path = bin_path;
    ckpt.format = "llama2c";
    ckpt.config = c;
    ckpt.tensors = make_memory_source(std::move(hf), bin_path);
    return ckpt;
}

}  // namespace saliq
