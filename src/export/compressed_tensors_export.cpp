// compressed-tensors' pack-quantized checkpoint (what llm-compressor writes and vLLM's W4A16/WNA16 kernels load)
// from a GPTQ-packed saliq folder, value for value: per linear
//   weight_packed      [out, ceil(in*b/32)] int32: each row's codes as one LSB-first bit stream (code k at bits
//                      [k*b, (k+1)*b)), stored unsigned (the library's signed value + 2^(b-1): saliq's code as is);
//   weight_zero_point  [ceil(out*b/32), G] int32: zero points packed the same way along the output dim (asymmetric
//                      folders only: a symmetric one's are all 2^(b-1), the library's signed zero, and the scheme
//                      says symmetric without storing them, as llm-compressor's W4A16 does);
//   weight_scale       [out, G] fp16;  weight_shape [2] int64 = [out, in];
// so the library's dequantization (q - zp) * s is saliq's s (c - z). Embeddings, norms and the head stay as stored
// (the head is listed in `ignore`). The format has no g_idx, no per-group widths and no sparse parts: act-order,
// saliq_mixed, saliq_binary and ReQuant folders are refused. LoRA adapters cannot live inside it; the folder's PEFT
// files are copied beside the weights, for servers that apply adapters (vLLM's --enable-lora).
#include <map>

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/gptq_pack.h"
#include "saliq/log.h"
#include "saliq/model.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

const char* const kFormatVersion = "0.20.1";  // the compressed-tensors release whose layout this follows

void check_exportable(const Checkpoint& ckpt) {
    const PackedInfo& p = ckpt.packed;
    if (p.bits <= 0)
        throw ConfigError(ckpt.path + " is not a quantized folder; compressed-tensors export takes a GPTQ-packed "
                                      "saliq folder (quantize it first)");
    if (!p.binarizer.empty())
        throw ConfigError("a saliq_binary folder (" + p.binarizer + ") has no integer grid compressed-tensors holds");
    if (p.grid != GgmlGrid::kNone)
        throw ConfigError(std::string("a saliq_ggml folder holds GGML blocks (") + ggml_grid_traits(p.grid).name +
                          "), which compressed-tensors cannot hold; export it with --format gguf");
    if (p.mixed)
        throw ConfigError("a saliq_mixed folder has per-group widths; compressed-tensors' pack-quantized format holds "
                          "one width per tensor");
    if (p.sparse)
        throw ConfigError("a ReQuant folder carries sparse FP16 parts compressed-tensors cannot hold; export "
                          "--format hf (dense) instead");
    if (p.desc_act)
        throw ConfigError("an act-order (desc_act) folder: compressed-tensors has no g_idx; quantize without "
                          "--act-order");
}

nlohmann::json quantization_config(const PackedInfo& p) {
    const nlohmann::json weights = {{"num_bits", p.bits},     {"type", "int"},         {"symmetric", p.symmetric},
                                    {"strategy", "group"},    {"group_size", p.group_size},
                                    {"dynamic", false},       {"observer", "minmax"},  {"actorder", nullptr}};
    return {{"quant_method", "compressed-tensors"},
            {"format", "pack-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"format", "pack-quantized"},
                {"weights", weights},
                {"input_activations", nullptr},
                {"output_activations", nullptr}}}}},
            {"ignore", {"lm_head"}},
            {"kv_cache_scheme", nullptr},
            {"sparsity_config", nlohmann::json::object()},
            {"global_compression_ratio", nullptr},
            {"version", kFormatVersion}};
}

}  // namespace

CompressedTensorsLinear compressed_tensors_linear(const QuantizedTensor& q, const std::string& origin) {
    const int64_t out = q.out_features(), in = q.in_features(), g = q.spec.effective_group(in);
    if (q.group_bits.defined()) throw ConfigError(origin + ": per-group widths have no compressed-tensors layout");
    if (q.sparse_count() > 0) throw ConfigError(origin + ": sparse parts have no compressed-tensors layout");
    if (in % g != 0)
        throw ConfigError(strprintf("%s: %lld input columns are not a multiple of the group size %lld, which "
                                    "compressed-tensors requires",
                                    origin.c_str(), (long long)in, (long long)g));
    if (!at::equal(q.g_idx.to(at::kLong).cpu(), natural_group_index(in, q.spec)))
        throw ConfigError(origin + ": groups are not in natural column order (act-order); compressed-tensors has no "
                                   "g_idx");
    const at::Tensor zeros = q.zeros.to(at::kFloat).cpu();
    if (!at::equal(zeros, at::round(zeros)) || zeros.min().item<double>() < 0 ||
        zeros.max().item<double>() > static_cast<double>(q.spec.maxq()))
        throw ConfigError(origin + ": zero points outside the integer grid [0, maxq]");
    const double middle = static_cast<double>(int64_t{1} << (q.spec.bits - 1));
    if (q.spec.symmetric && (zeros.min().item<double>() != middle || zeros.max().item<double>() != middle))
        throw ConfigError(strprintf("%s: a symmetric linear with zero points other than %g, which compressed-tensors' "
                                    "symmetric scheme cannot store",
                                    origin.c_str(), middle));
    CompressedTensorsLinear t;
    t.weight_packed = pack_bits(q.codes.cpu().t().contiguous(), q.spec.bits).t().contiguous();
    if (!q.spec.symmetric) t.weight_zero_point = pack_bits(zeros.to(at::kLong), q.spec.bits);
    t.weight_scale = q.scales.cpu().to(at::kHalf).contiguous();
    t.weight_shape = at::tensor({out, in}, at::kLong);
    return t;
}

void export_compressed_tensors(const Checkpoint& ckpt, const std::string& out, bool force) {
    check_exportable(ckpt);
    const LlamaConfig& c = ckpt.config;
    QuantSpec spec;
    spec.bits = ckpt.packed.bits;
    spec.group_size = ckpt.packed.group_size;
    spec.symmetric = ckpt.packed.symmetric;
    const auto shapes = linear_shapes(c);
    StagingDir staging(out, force);

    // Every tensor's header first (streamed writer), then each tensor as its turn comes: a linear's four parts are
    // consecutive, so one unpacked linear is held at a time.
    struct Entry {
        std::string name;          // the tensor as stored, or the linear's name
        int64_t out = 0, in = 0;   // a linear's shape; 0 for a tensor written as stored
        int part = 0;              // a linear's weight_packed, weight_scale, weight_shape, weight_zero_point
    };
    std::map<std::string, std::vector<int64_t>> linears;  // "<linear>.weight" -> [out, in]
    for (int64_t layer = 0; layer < c.n_layers; ++layer)
        for (int i = 0; i < kNumLinears; ++i) linears[hf_names::linear_name(layer, i) + ".weight"] = shapes[i];
    std::vector<TensorSpec> specs;
    std::vector<Entry> entries;
    for (const auto& name : llama_tensor_names(c)) {
        const auto linear = linears.find(name);
        if (linear == linears.end()) {
            const auto [dtype, shape] = ckpt.tensors->describe(name);
            specs.push_back({name, dtype, shape});
            entries.push_back({name});
            continue;
        }
        const std::string base = name.substr(0, name.size() - std::string(".weight").size());
        const int64_t o = linear->second[0], n = linear->second[1], G = spec.n_groups(n), b = spec.bits;
        specs.push_back({base + ".weight_packed", at::kInt, {o, (n * b + 31) / 32}});
        specs.push_back({base + ".weight_scale", at::kHalf, {o, G}});
        specs.push_back({base + ".weight_shape", at::kLong, {2}});
        if (!spec.symmetric) specs.push_back({base + ".weight_zero_point", at::kInt, {(o * b + 31) / 32, G}});
        for (int part = 0; part < (spec.symmetric ? 3 : 4); ++part) entries.push_back({base, o, n, part});
    }
    std::string current;  // the linear whose parts are being written
    CompressedTensorsLinear parts;
    auto produce = [&](size_t i) {
        const Entry& e = entries[i];
        if (e.out == 0) return ckpt.tensors->get(e.name);
        if (e.name != current) {
            const std::string origin = ckpt.tensors->origin() + " (" + e.name + ")";
            GptqTensors t{ckpt.tensors->get(e.name + ".qweight"), ckpt.tensors->get(e.name + ".qzeros"),
                          ckpt.tensors->get(e.name + ".scales"), gptq_group_index(*ckpt.tensors, e.name, ckpt.packed, e.in)};
            parts = compressed_tensors_linear(gptq_unpack(t, spec, e.in, e.out, ckpt.packed.zeros_v2, origin), origin);
            current = e.name;
        }
        const at::Tensor* part[] = {&parts.weight_packed, &parts.weight_scale, &parts.weight_shape,
                                    &parts.weight_zero_point};
        return *part[e.part];
    };
    write_safetensors_streamed(staging.file("model.safetensors"), specs, produce, {{"format", "pt"}}, [&](size_t i) {
        if (entries[i].out == 0) ckpt.tensors->release(entries[i].name);
    });
    nlohmann::json config = llama_config_to_json(c);
    config["quantization_config"] = quantization_config(ckpt.packed);
    write_json_atomic(staging.file("config.json"), config);
    write_tokenizer_files(ckpt.tokenizer_path, c, staging.path());
    if (!ckpt.adapter_path.empty())
        for (const char* f : {"adapter_config.json", "adapter_model.safetensors"})
            if (path_exists(ckpt.adapter_path + "/" + f)) copy_file(ckpt.adapter_path + "/" + f, staging.file(f));
    staging.commit();
    log_info(strprintf("wrote %s: compressed-tensors pack-quantized W%d g%lld %s%s", out.c_str(),
                       ckpt.packed.bits, (long long)ckpt.packed.group_size,
                       ckpt.packed.symmetric ? "symmetric" : "asymmetric",
                       ckpt.adapter_path.empty() ? "" : ", with the folder's PEFT adapters beside it"));
}

}  // namespace saliq
