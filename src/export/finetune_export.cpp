// The finetuned folder (export.h): the student's files with the trained tensors swapped in.
#include <ctime>
#include <functional>

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/sha256.h"
#include "saliq/strings.h"

namespace saliq {

FinetuneFolderWriter::FinetuneFolderWriter(const std::string& out_dir, const Checkpoint& student,
                                           const nlohmann::json& fingerprint, bool force, bool resume)
    : student_(student), out_(out_dir), fingerprint_(fingerprint), force_(force) {
    while (out_.size() > 1 && out_.back() == '/') out_.pop_back();
    partial_ = out_ + ".partial";
    if (path_exists(out_) && (!is_directory(out_) || !is_empty_directory(out_)) && !force)
        throw ConfigError("output folder " + out_ + " already holds files; pass --force to replace it");
    if (!path_exists(partial_)) {
        if (resume) log_warn("--resume: no interrupted run at " + partial_ + "; starting from the first epoch");
        return;
    }
    if (resume) {
        if (!path_exists(state_path())) return;  // the run stopped before its first epoch ended
        (void)continue_or_start_over(partial_, force, [this] {
            nlohmann::json meta;
            (void)load_state(meta);
            check_same_settings(partial_, meta.value("fingerprint", nlohmann::json()), fingerprint_);
        });
        return;
    }
    if (!path_exists(state_path())) {  // no finished epoch there: nothing to lose
        remove_tree(partial_);
        return;
    }
    if (!force)
        throw ConfigError("an interrupted finetune left " + partial_ + "; pass --resume to continue it or --force to "
                          "start over");
    remove_tree(partial_);
}

bool FinetuneFolderWriter::has_state() const { return path_exists(state_path()); }

NamedTensors FinetuneFolderWriter::load_state(nlohmann::json& meta) const {
    auto reader = SafetensorsReader::open(state_path());
    try {
        meta = parse_json(reader->metadata().at("saliq_finetune"), state_path());
        if (!meta.is_object()) throw std::runtime_error("not an object");
    } catch (const std::exception&) {
        throw FormatError(state_path(), "missing or unreadable finetune state; use --force to start over");
    }
    NamedTensors out;
    for (const auto& e : reader->entries()) out.emplace_back(e.name, reader->tensor(e.name).clone());
    return out;
}

void FinetuneFolderWriter::save_state(const NamedTensors& state, const nlohmann::json& meta) {
    make_directories(partial_);
    nlohmann::json m = meta;
    m["fingerprint"] = fingerprint_;
    write_safetensors(state_path(), state, {{"saliq_finetune", m.dump()}});
}

void FinetuneFolderWriter::finish(const Finetuner& f, const FinetuneResult& result, const nlohmann::json& extra) {
    const LlamaConfig& c = student_.config;
    const TensorSource& src = *student_.tensors;
    StagingDir staging(out_, force_);
    std::map<std::string, std::string> linear_of_scales;  // "<linear>.scales" -> linear
    for (int64_t layer = 0; layer < c.n_layers; ++layer)
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string name = hf_names::linear_name(layer, i);
            linear_of_scales[name + ".scales"] = name;
        }
    std::vector<TensorSpec> specs;
    std::vector<std::function<at::Tensor()>> produce;
    for (const auto& name : src.names()) {
        const auto [dtype, shape] = src.describe(name);
        specs.push_back({name, dtype, shape});
        auto linear = linear_of_scales.find(name);
        if (linear != linear_of_scales.end()) {  // stored [G, out]
            const std::string l = linear->second;
            const at::ScalarType t = dtype;
            produce.emplace_back([&f, l, t] { return f.scales(l).t().contiguous().to(t); });
        } else if (f.norm(name).defined()) {
            const at::ScalarType t = dtype;
            produce.emplace_back([&f, name, t] { return f.norm(name).to(t).contiguous(); });
        } else {
            produce.emplace_back([&src, name] { return src.get(name); });
        }
    }
    write_safetensors_streamed(staging.file("model.safetensors"), specs, [&](size_t i) { return produce[i](); },
                               {{"format", "pt"}, {"quantized_by", "saliq"}, {"finetuned_by", "saliq"}},
                               [&](size_t i) { src.release(specs[i].name); });
    const std::string dir = student_.path;
    if (student_.adapter) {
        NamedTensors adapters;
        for (const auto& [key, linear] : linear_of_scales)
            if (f.has_lora(linear)) {
                // Stored as the student's adapters were (fp16 by default): distillation does not widen the folder.
                const std::string key_a = hf_names::lora_key(linear, 'A'), key_b = hf_names::lora_key(linear, 'B');
                adapters.emplace_back(key_a, f.lora_a(linear).to(student_.adapter->describe(key_a).first));
                adapters.emplace_back(key_b, f.lora_b(linear).to(student_.adapter->describe(key_b).first));
            }
        write_safetensors(staging.file("adapter_model.safetensors"), adapters, {{"format", "pt"}});
        copy_file(student_.adapter_path + "/adapter_config.json", staging.file("adapter_config.json"));
    }
    for (const char* name : {"config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                             "special_tokens_map.json", "generation_config.json"})
        if (path_exists(dir + "/" + name)) copy_file(dir + "/" + name, staging.file(name));

    const std::time_t now = std::time(nullptr);
    char created[32];
    std::strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    nlohmann::json manifest = {{"saliq_version", "0.1.0"}, {"created", created}};
    if (path_exists(dir + "/saliq_manifest.json")) manifest["quantized"] = read_json_file(dir + "/saliq_manifest.json");
    manifest["finetune"] = {{"settings", fingerprint_},
                            {"kl_before", result.kl_before},
                            {"kl_after", result.kl_after},
                            {"epoch_kl", result.epoch_kl},
                            {"steps", result.steps},
                            {"seconds", result.seconds},
                            {"window_starts", result.calib.starts},
                            {"dropped", "lwc.safetensors (the clipping logits no longer produce the trained scales)"}};
    if (result.resumed_epochs > 0) manifest["finetune"]["resumed_epochs"] = result.resumed_epochs;
    for (auto it = extra.begin(); it != extra.end(); ++it) manifest["finetune"][it.key()] = it.value();
    nlohmann::json files = nlohmann::json::object();
    for (const auto& name : list_directory(staging.path())) {
        const std::string path = staging.file(name);
        files[name] = {{"bytes", file_size(path)}, {"sha256", sha256_file(path)}};
    }
    manifest["files"] = files;
    write_json_atomic(staging.file("saliq_manifest.json"), manifest);
    staging.commit();
    remove_tree(partial_);
}

}  // namespace saliq
