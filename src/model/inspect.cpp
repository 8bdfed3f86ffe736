#include "saliq/inspect.h"

#include <algorithm>
#include <map>

#include <ATen/ATen.h>

#include "saliq/file.h"
#include "saliq/gptq_pack.h"
#include "saliq/safetensors.h"
#include "saliq/strings.h"

namespace saliq {

nlohmann::json inspect_checkpoint(const Checkpoint& ckpt) {
    const LlamaConfig& c = ckpt.config;
    int64_t params_total = 0, params_linear = 0;
    uint64_t bytes_total = 0, bytes_linear = 0;
    const auto shapes = linear_shapes(c);
    int64_t n_quantized = 0;
    std::map<int64_t, int64_t> weights_at;  // mixed precision: code width -> weights stored at it
    for (int64_t layer = 0; layer < c.n_layers; ++layer)
        for (int i = 0; i < 7; ++i) {
            const std::string base = hf_names::linear_name(layer, i);
            const int64_t out = shapes[i][0], in = shapes[i][1];
            params_linear += out * in;
            if (ckpt.tensors->has(base + ".qweight")) ++n_quantized;
            if (!ckpt.packed.mixed || !ckpt.tensors->has(base + ".group_bits")) continue;
            const int64_t g = ckpt.packed.group_size < 0 ? in : ckpt.packed.group_size;
            // Checked as loading checks it: the histogram below trusts the count and each width.
            const std::string origin = ckpt.tensors->origin() + " (" + base + ")";
            const at::Tensor bits =
                checked_group_bits(ckpt.tensors->get(base + ".group_bits"), (in + g - 1) / g, origin).contiguous();
            for (int64_t k = 0; k < bits.numel(); ++k)
                weights_at[bits[k].item<int64_t>()] += out * std::max<int64_t>(0, std::min(g, in - k * g));
        }
    int64_t outliers = 0, significant = 0;  // ReQuant's sparse entries
    for (const auto& name : ckpt.tensors->names()) {
        const at::Tensor t = ckpt.tensors->get(name);
        if (ends_with(name, ".outlier_idx")) outliers += t.numel();
        if (ends_with(name, ".significant_idx")) significant += t.numel();
        const uint64_t bytes = ckpt.tensors->stored(name) ? static_cast<uint64_t>(t.numel()) * t.element_size() : 0;
        bytes_total += bytes;
        const bool linear = name.find(".self_attn.") != std::string::npos || name.find(".mlp.") != std::string::npos;
        if (linear) bytes_linear += bytes;
        if (!linear) params_total += t.numel();  // linears are counted by shape above, packed or not
    }
    params_total += params_linear;
    nlohmann::json out = {{"path", ckpt.path}, {"format", ckpt.format}, {"config", llama_config_to_json(c)}};
    out["parameters"] = {{"total", params_total}, {"linear", params_linear}, {"other", params_total - params_linear}};
    out["bytes"] = {{"tensors", bytes_total}, {"linear", bytes_linear}, {"other", bytes_total - bytes_linear}};
    out["bits_per_weight"] = {{"linear", 8.0 * static_cast<double>(bytes_linear) / static_cast<double>(params_linear)},
                              {"overall", 8.0 * static_cast<double>(bytes_total) / static_cast<double>(params_total)}};
    if (ckpt.packed.bits > 0)
        out["quantization"] = {{"bits", ckpt.packed.bits},
                               {"group_size", ckpt.packed.group_size},
                               {"symmetric", ckpt.packed.symmetric},
                               {"desc_act", ckpt.packed.desc_act},
                               {"checkpoint_format", !ckpt.packed.binarizer.empty()   ? "saliq_binary"
                                                     : ckpt.packed.compressed_tensors ? "compressed-tensors"
                                                     : ckpt.packed.zeros_v2           ? "gptq_v2"
                                                                                  : "gptq"},
                               {"quantized_linears", n_quantized}};
    if (!ckpt.packed.binarizer.empty()) out["quantization"]["binarizer"] = ckpt.packed.binarizer;
    if (ckpt.packed.grid != GgmlGrid::kNone) {  // each linear's own type: the grid or its fallback
        out["quantization"]["checkpoint_format"] = "saliq_ggml";
        out["quantization"]["grid"] = ggml_grid_traits(ckpt.packed.grid).name;
        nlohmann::json types = nlohmann::json::object();
        for (int64_t layer = 0; layer < c.n_layers; ++layer)
            for (int i = 0; i < 7; ++i) {
                const std::string name = hf_names::linear_name(layer, i) + ".ggml_type";
                if (!ckpt.tensors->has(name)) continue;
                const at::Tensor t = ckpt.tensors->get(name);
                const GgmlGrid g = t.numel() == 1 ? ggml_grid_of_type(static_cast<uint32_t>(t.to(at::kLong).item<int64_t>()))
                                                  : GgmlGrid::kNone;
                const std::string key = g == GgmlGrid::kNone ? "unknown" : ggml_grid_traits(g).name;
                types[key] = types.value(key, 0) + 1;
            }
        out["quantization"]["linears_by_type"] = types;
    }
    if (ckpt.packed.mixed) {
        out["quantization"]["checkpoint_format"] = "saliq_mixed";
        nlohmann::json histogram = nlohmann::json::object();
        double code_bits = 0;
        for (const auto& [bits, count] : weights_at) {
            histogram[std::to_string(bits)] = static_cast<double>(count) / static_cast<double>(params_linear);
            code_bits += static_cast<double>(bits * count);
        }
        out["quantization"]["bits_histogram"] = histogram;  // fraction of the linears' weights at each width
        out["quantization"]["code_bits_per_weight"] = code_bits / static_cast<double>(params_linear);
    }
    if (ckpt.packed.sparse) {
        const double n = static_cast<double>(params_linear);
        out["quantization"]["sparse"] = {{"outliers", outliers},
                                         {"significant", significant},
                                         {"percent", 100.0 * static_cast<double>(outliers + significant) / n},
                                         // an int32 position and an fp16 value per entry
                                         {"bits_per_weight", 48.0 * static_cast<double>(outliers + significant) / n}};
    }
    if (ckpt.packed.bits > 0 && ckpt.packed.binarizer.empty() && !ckpt.packed.mixed)
        out["quantization"]["gptq_loaders_reject"] = gptq_loader_rejected_linears(c);
    if (is_directory(ckpt.path) && path_exists(ckpt.path + "/model.safetensors"))
        out["file_bytes"] = file_size(ckpt.path + "/model.safetensors");
    // The LoRA adapters a folder ships beside its linears are part of what a user stores and loads (ApiQ's r 64 in
    // fp32 adds more bits per weight than the 2-bit codes on a 576-wide model): counted on their own and with both.
    const std::string adapter = ckpt.path + "/adapter_model.safetensors";
    if (is_directory(ckpt.path) && path_exists(adapter)) {
        uint64_t adapter_bytes = 0;
        for (const auto& e : SafetensorsReader::open(adapter)->entries()) adapter_bytes += e.end - e.begin;
        out["bytes"]["adapters"] = adapter_bytes;
        out["bits_per_weight"]["adapters"] = 8.0 * static_cast<double>(adapter_bytes) / static_cast<double>(params_linear);
        out["bits_per_weight"]["linear_with_adapters"] =
            8.0 * static_cast<double>(bytes_linear + adapter_bytes) / static_cast<double>(params_linear);
        out["bits_per_weight"]["overall_with_adapters"] =
            8.0 * static_cast<double>(bytes_total + adapter_bytes) / static_cast<double>(params_total);
    }
    return out;
}

}  // namespace saliq
