#include <chrono>
#include <ctime>
#include <filesystem>

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/gptq_pack.h"
#include "saliq/sha256.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

std::string utc_now() {
    const std::time_t now = std::time(nullptr);
    char buffer[32];
    std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    return buffer;
}

}  // namespace

nlohmann::json gptq_quantization_config(const QuantizeOptions& o) {
    return {{"quant_method", "gptq"},
            {"bits", o.spec.bits},
            {"group_size", o.spec.group_size},
            {"sym", o.spec.symmetric},
            {"desc_act", o.method == "gptq" && o.gptq.act_order},
            {"static_groups", false},
            {"damp_percent", o.gptq.damp},
            {"true_sequential", o.gptq.true_sequential},
            // v2 keeps asymmetric zero points exact (v1's "z - 1" cannot store z = 0).
            {"checkpoint_format", o.spec.symmetric ? "gptq" : "gptq_v2"},
            {"pack_dtype", "int32"},
            {"saliq_method", o.method}};
}

GptqFolderWriter::GptqFolderWriter(const std::string& out_dir, const Checkpoint& source,
                                   const QuantizeOptions& options, bool force)
    : source_(source), options_(options), staging_(std::make_unique<StagingDir>(out_dir, force)) {}

GptqFolderWriter::~GptqFolderWriter() = default;

void GptqFolderWriter::add_block(const BlockResult& block) {
    const bool v2 = !options_.spec.symmetric;
    for (const auto& lr : block.linears) {
        GptqTensors t = gptq_pack(lr.q, v2);
        // Round-trip check before anything reaches disk: a packing bug must never produce a plausible file.
        QuantizedTensor back = gptq_unpack(t, lr.q.spec, lr.q.in_features(), lr.q.out_features(), v2, lr.name);
        if (!at::equal(back.codes, lr.q.codes.to(at::kCPU)) || !at::equal(back.zeros, lr.q.zeros.to(at::kCPU)) ||
            !at::equal(back.scales, lr.q.scales.to(at::kCPU)))
            throw Error("internal: packed weights of " + lr.name + " do not unpack to the quantized values");
        packed_[lr.name + ".qweight"] = t.qweight;
        packed_[lr.name + ".qzeros"] = t.qzeros;
        packed_[lr.name + ".scales"] = t.scales;
        packed_[lr.name + ".g_idx"] = t.g_idx;
    }
}

void GptqFolderWriter::finish(const QuantizeResult& result, const nlohmann::json& extra) {
    const LlamaConfig& c = source_.config;
    NamedTensors tensors;
    for (const auto& name : llama_tensor_names(c)) {
        const std::string base = name.substr(0, name.size() - std::string(".weight").size());
        if (packed_.count(base + ".qweight")) {
            for (const char* suffix : {".qweight", ".qzeros", ".scales", ".g_idx"})
                tensors.emplace_back(base + suffix, packed_.at(base + suffix));
        } else {
            if (name.find(".self_attn.") != std::string::npos || name.find(".mlp.") != std::string::npos)
                throw Error("internal: " + base + " was never quantized");
            tensors.emplace_back(name, source_.tensors->get(name));  // embeddings, norms, head: stored as they came
        }
    }
    write_safetensors(staging_->file("model.safetensors"), tensors,
                      {{"format", "pt"}, {"quantized_by", "saliq"}, {"gptq_bits", std::to_string(options_.spec.bits)},
                       {"gptq_group_size", std::to_string(options_.spec.group_size)}});

    nlohmann::json config = llama_config_to_json(c);
    config["quantization_config"] = gptq_quantization_config(options_);
    const std::string config_text = config.dump(2) + "\n";
    write_file_atomic(staging_->file("config.json"), [&](std::ostream& out) { out << config_text; });
    if (!source_.tokenizer_path.empty()) {
        std::error_code ec;
        std::filesystem::copy_file(source_.tokenizer_path, staging_->file("tokenizer.model"), ec);
        if (ec) throw IoError(source_.tokenizer_path, "cannot copy tokenizer: " + ec.message());
    }

    nlohmann::json manifest = {{"saliq_version", "0.1.0"}, {"created", utc_now()}};
    manifest["source_model"] = {{"path", source_.path}, {"format", source_.format}, {"config", llama_config_to_json(c)}};
    manifest["method"] = options_.method;
    manifest["quantization"] = {{"bits", options_.spec.bits},
                                {"group_size", options_.spec.group_size},
                                {"symmetric", options_.spec.symmetric}};
    if (options_.method == "gptq")
        manifest["gptq"] = {{"damp", options_.gptq.damp},
                            {"block_size", options_.gptq.block_size},
                            {"act_order", options_.gptq.act_order},
                            {"true_sequential", options_.gptq.true_sequential}};
    manifest["calibration"] = {{"source", options_.calib.source},
                               {"nsamples", options_.calib.nsamples},
                               {"seqlen", options_.calib.seqlen},
                               {"seed", options_.calib.seed},
                               {"range", options_.calib.range.to_string()},
                               {"range_tokens", result.calib.stream_tokens},
                               {"window_starts", result.calib.starts}};
    if (!result.calib.offsets.empty()) manifest["calibration"]["window_offsets"] = result.calib.offsets;
    manifest["compute"] = {{"device", options_.model.device}, {"dtype", options_.model.dtype},
                           {"batch_size", options_.batch_size}};
    nlohmann::json layers = nlohmann::json::array(), blocks = nlohmann::json::array();
    for (const auto& b : result.blocks) {
        blocks.push_back({{"layer", b.layer}, {"block_error", b.block_error}, {"seconds", b.seconds},
                          {"method_stats", b.method_stats}});
        for (const auto& lr : b.linears) layers.push_back({{"name", lr.name}, {"rel_error", lr.rel_error}});
    }
    manifest["blocks"] = blocks;
    manifest["layers"] = layers;
    manifest["timings"] = {{"calibration_seconds", result.calib_seconds}, {"quantize_seconds", result.seconds}};
    for (auto it = extra.begin(); it != extra.end(); ++it) manifest[it.key()] = it.value();
    nlohmann::json files = nlohmann::json::object();
    for (const char* name : {"model.safetensors", "config.json", "tokenizer.model"}) {
        const std::string path = staging_->file(name);
        if (path_exists(path)) files[name] = {{"bytes", file_size(path)}, {"sha256", sha256_file(path)}};
    }
    manifest["files"] = files;
    const std::string manifest_text = manifest.dump(2) + "\n";
    write_file_atomic(staging_->file("saliq_manifest.json"), [&](std::ostream& out) { out << manifest_text; });
    staging_->commit();
}

}  // namespace saliq
