#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/safetensors.h"

namespace saliq {
namespace {

class MemorySource : public TensorSource {
public:
    MemorySource(std::map<std::string, at::Tensor> tensors, std::string origin)
        : tensors_(std::move(tensors)), origin_(std::move(origin)) {}
    bool has(const std::string& name) const override { return tensors_.count(name) != 0; }
    at::Tensor get(const std::string& name) const override {
        auto it = tensors_.find(name);
        if (it == tensors_.end()) throw FormatError(origin_, "checkpoint has no tensor '" + name + "'");
        return it->second;
    }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : tensors_) out.push_back(kv.first);
        return out;
    }
    std::string origin() const override { return origin_; }

private:
    std::map<std::string, at::Tensor> tensors_;
    std::string origin_;
};

class SafetensorsFolderSource : public TensorSource {
public:
    explicit SafetensorsFolderSource(std::string dir) : dir_(std::move(dir)) {}
    void add_shard(const std::shared_ptr<SafetensorsReader>& reader) { shards_.push_back(reader); }
    void route(const std::string& name, size_t shard) { where_[name] = shard; }

    bool has(const std::string& name) const override { return where_.count(name) != 0; }
    at::Tensor get(const std::string& name) const override {
        auto it = where_.find(name);
        if (it == where_.end()) throw FormatError(dir_, "checkpoint has no tensor '" + name + "'");
        return shards_[it->second]->tensor(name);
    }
    std::pair<at::ScalarType, std::vector<int64_t>> describe(const std::string& name) const override {
        auto it = where_.find(name);
        if (it == where_.end()) throw FormatError(dir_, "checkpoint has no tensor '" + name + "'");
        return shards_[it->second]->describe(name);
    }
    void release(const std::string& name) const override {
        auto it = where_.find(name);
        if (it != where_.end()) shards_[it->second]->release(name);
    }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : where_) out.push_back(kv.first);
        return out;
    }
    std::string origin() const override { return dir_; }

private:
    std::string dir_;
    std::vector<std::shared_ptr<SafetensorsReader>> shards_;
    std::map<std::string, size_t> where_;
};

}  // namespace

std::shared_ptr<TensorSource> make_memory_source(std::map<std::string, at::Tensor> tensors, std::string origin) {
    return std::make_shared<MemorySource>(std::move(tensors), std::move(origin));
}

std::shared_ptr<TensorSource> open_safetensors_file(const std::string& path) {
    auto source = std::make_shared<SafetensorsFolderSource>(path);
    auto reader = SafetensorsReader::open(path);
    source->add_shard(reader);
    for (const auto& entry : reader->entries()) source->route(entry.name, 0);
    return source;
}

std::shared_ptr<TensorSource> open_safetensors_folder(const std::string& dir) {
    auto source = std::make_shared<SafetensorsFolderSource>(dir);
    const std::string index_path = dir + "/model.safetensors.index.json";
    const std::string single_path = dir + "/model.safetensors";
    if (path_exists(index_path)) {
        const nlohmann::json index = read_json_file(index_path);
        if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
            throw FormatError(index_path, "missing object 'weight_map'");
        std::map<std::string, size_t> shard_ids;
        std::vector<std::string> shard_names;
        std::vector<std::shared_ptr<SafetensorsReader>> readers;
        const nlohmann::json& weight_map = index["weight_map"];
        for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
            if (!it.value().is_string())
                throw FormatError(index_path, "weight_map value for '" + it.key() + "' is not a file name");
            const std::string shard = it.value().get<std::string>();
            if (!is_path_component(shard))
                throw FormatError(index_path, "shard name '" + shard + "' must be a file in the same folder");
            auto found = shard_ids.find(shard);
            if (found == shard_ids.end()) {
                const std::string shard_path = dir + "/" + shard;
                if (!path_exists(shard_path))
                    throw FormatError(index_path, "shard '" + shard + "' listed in weight_map does not exist");
                found = shard_ids.emplace(shard, readers.size()).first;
                shard_names.push_back(shard);
                readers.push_back(SafetensorsReader::open(shard_path));
                source->add_shard(readers.back());
            }
            if (!readers[found->second]->has(it.key()))
                throw FormatError(index_path, "weight_map puts '" + it.key() + "' in " + shard + ", which has no such tensor");
            source->route(it.key(), found->second);
        }
        // Every tensor of a shard is where weight_map says: a copy in a second shard, or one the map does not list,
        // would be a tensor saliq silently ignores (and another loader might read instead).
        for (size_t i = 0; i < readers.size(); ++i)
            for (const auto& entry : readers[i]->entries()) {
                const auto listed = weight_map.find(entry.name);
                if (listed == weight_map.end())
                    throw FormatError(index_path, "shard " + shard_names[i] + " holds '" + entry.name +
                                                      "', which weight_map does not list");
                if (*listed != shard_names[i])
                    throw FormatError(index_path, "'" + entry.name + "' is in both " + shard_names[i] + " and " +
                                                      listed->get<std::string>() + "; weight_map names " +
                                                      listed->get<std::string>());
            }
        return source;
    }
    if (path_exists(single_path)) return open_safetensors_file(single_path);
    throw FormatError(dir, "no model.safetensors or model.safetensors.index.json in this folder "
                           "(saliq reads safetensors checkpoints; convert .bin/.pth files first)");
}

}  // namespace saliq
