#include "saliq/safetensors.h"

#include <algorithm>
#include <cstring>
#include <ostream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;  // the reference reader's limit

struct DTypeInfo {
    const char* name;
    size_t size;
    bool has_torch;
    at::ScalarType torch_type;
};

const DTypeInfo kDTypes[] = {
    {"F64", 8, true, at::kDouble},   {"F32", 4, true, at::kFloat},     {"F16", 2, true, at::kHalf},
    {"BF16", 2, true, at::kBFloat16}, {"I64", 8, true, at::kLong},     {"I32", 4, true, at::kInt},
    {"I16", 2, true, at::kShort},    {"I8", 1, true, at::kChar},       {"U8", 1, true, at::kByte},
    {"BOOL", 1, true, at::kBool},    {"U16", 2, false, at::kFloat},    {"U32", 4, false, at::kFloat},
    {"U64", 8, false, at::kFloat},   {"F8_E4M3", 1, false, at::kFloat}, {"F8_E5M2", 1, false, at::kFloat},
};

const DTypeInfo* find_dtype(const std::string& name) {
    for (const auto& info : kDTypes)
        if (name == info.name) return &info;
    return nullptr;
}

const char* dtype_name(at::ScalarType type) {
    for (const auto& info : kDTypes)
        if (info.has_torch && info.torch_type == type) return info.name;
    throw ConfigError(std::string("cannot write tensors of dtype ") + c10::toString(type) + " to safetensors");
}

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& value) {
    auto fail = [&](const std::string& what) { throw FormatError(path, "tensor '" + name + "': " + what); };
    if (!value.is_object()) fail("entry is not a JSON object");
    SafetensorsEntry entry;
    entry.name = name;
    if (!value.contains("dtype") || !value["dtype"].is_string()) fail("missing string field 'dtype'");
    entry.dtype = value["dtype"].get<std::string>();
    if (find_dtype(entry.dtype) == nullptr) fail("unknown dtype '" + entry.dtype + "'");
    if (!value.contains("shape") || !value["shape"].is_array()) fail("missing array field 'shape'");
    for (const auto& dim : value["shape"]) {
        if (!dim.is_number_integer() || dim.get<int64_t>() < 0) fail("shape has a non-integer or negative dimension");
        entry.shape.push_back(dim.get<int64_t>());
    }
    const auto& offsets = value.contains("data_offsets") ? value["data_offsets"] : nlohmann::json();
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
        fail("'data_offsets' must be two non-negative integers [begin, end]");
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.end < entry.begin) fail(strprintf("data_offsets [%llu, %llu] end before begin",
                                                 (unsigned long long)entry.begin, (unsigned long long)entry.end));
    uint64_t numel = 1;
    for (int64_t dim : entry.shape) {
        if (dim != 0 && numel > UINT64_MAX / static_cast<uint64_t>(dim)) fail("shape overflows");
        numel *= static_cast<uint64_t>(dim);
    }
    if (numel > UINT64_MAX / find_dtype(entry.dtype)->size) fail("shape overflows");
    const uint64_t expected = numel * find_dtype(entry.dtype)->size;
    if (entry.end - entry.begin != expected)
        fail(strprintf("dtype %s x shape %s = %llu bytes, but data_offsets span %llu bytes", entry.dtype.c_str(),
                       shape_to_string(entry.shape).c_str(), (unsigned long long)expected,
                       (unsigned long long)(entry.end - entry.begin)));
    return entry;
}

}  // namespace

std::shared_ptr<SafetensorsReader> SafetensorsReader::open(const std::string& path) {
    auto reader = std::shared_ptr<SafetensorsReader>(new SafetensorsReader());
    reader->file_ = MappedFile::open(path);
    const uint64_t size = reader->file_->size();
    const uint8_t* bytes = reader->file_->data();
    if (size < 8)
        throw FormatError(path, strprintf("file is %llu bytes, too short for a safetensors header (truncated?)",
                                          (unsigned long long)size));
    const uint64_t header_len = read_u64_le(bytes);
    if (header_len > kMaxHeaderBytes)
        throw FormatError(path, strprintf("header length %llu exceeds the 100 MB limit (not a safetensors file?)",
                                          (unsigned long long)header_len));
    if (header_len > size - 8)
        throw FormatError(path, strprintf("header length %llu runs past the end of the %llu-byte file (truncated?)",
                                          (unsigned long long)header_len, (unsigned long long)size));
    reader->data_start_ = 8 + header_len;
    const uint64_t data_size = size - reader->data_start_;

    nlohmann::json header;
    try {
        header = parse_json(std::string(bytes + 8, bytes + 8 + header_len), path + " (header)");
    } catch (const nlohmann::json::exception& e) {
        throw FormatError(path, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) throw FormatError(path, "header JSON is not an object");

    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it.value().is_object()) throw FormatError(path, "__metadata__ is not an object");
            for (auto m = it.value().begin(); m != it.value().end(); ++m) {
                if (!m.value().is_string())
                    throw FormatError(path, "__metadata__ value of '" + m.key() + "' is not a string");
                reader->metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        reader->entries_.push_back(parse_entry(path, it.key(), it.value()));
    }

    // Offsets must tile the data section exactly: sorted by begin, each starts where the previous ended.
    std::vector<const SafetensorsEntry*> by_offset;
    for (const auto& e : reader->entries_) by_offset.push_back(&e);
    std::sort(by_offset.begin(), by_offset.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t cursor = 0;
    const SafetensorsEntry* previous = nullptr;
    for (const SafetensorsEntry* e : by_offset) {
        if (e->end > data_size)
            throw FormatError(path, strprintf("tensor '%s': data_offsets [%llu, %llu] out of range: the data section "
                                              "has %llu bytes (truncated file?)",
                                              e->name.c_str(), (unsigned long long)e->begin,
                                              (unsigned long long)e->end, (unsigned long long)data_size));
        if (e->begin < cursor)
            throw FormatError(path, strprintf("tensor '%s' [%llu, %llu) overlaps tensor '%s' ending at %llu",
                                              e->name.c_str(), (unsigned long long)e->begin,
                                              (unsigned long long)e->end, previous->name.c_str(),
                                              (unsigned long long)cursor));
        if (e->begin > cursor)
            throw FormatError(path, strprintf("hole in the data section: bytes [%llu, %llu) before tensor '%s' belong "
                                              "to no tensor",
                                              (unsigned long long)cursor, (unsigned long long)e->begin,
                                              e->name.c_str()));
        cursor = e->end;
        previous = e;
    }
    if (cursor != data_size)
        throw FormatError(path, strprintf("data section has %llu bytes but the tensors cover only %llu",
                                          (unsigned long long)data_size, (unsigned long long)cursor));

    for (size_t i = 0; i < reader->entries_.size(); ++i) reader->index_[reader->entries_[i].name] = i;
    return reader;
}

const std::string& SafetensorsReader::path() const { return file_->path(); }

const SafetensorsEntry* SafetensorsReader::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
}

at::Tensor SafetensorsReader::tensor(const std::string& name) const {
    const SafetensorsEntry* entry = find(name);
    if (entry == nullptr) throw FormatError(path(), "no tensor named '" + name + "'");
    const DTypeInfo* info = find_dtype(entry->dtype);
    if (!info->has_torch)
        throw FormatError(path(), "tensor '" + name + "': dtype " + entry->dtype + " is not supported by saliq");
    const auto options = at::TensorOptions().dtype(info->torch_type).device(at::kCPU);
    const uint8_t* ptr = file_->data() + data_start_ + entry->begin;
    if (entry->end == entry->begin) return at::empty(entry->shape, options);
    // Some writers do not pad the header, so data may be misaligned: copy those into aligned memory.
    if (reinterpret_cast<uintptr_t>(ptr) % info->size != 0) {
        at::Tensor out = at::empty(entry->shape, options);
        std::memcpy(out.data_ptr(), ptr, entry->end - entry->begin);
        return out;
    }
    auto keep_alive = file_;
    return at::from_blob(const_cast<uint8_t*>(ptr), entry->shape, [keep_alive](void*) {}, options);
}

std::pair<at::ScalarType, std::vector<int64_t>> SafetensorsReader::describe(const std::string& name) const {
    const SafetensorsEntry* entry = find(name);
    if (entry == nullptr) throw FormatError(path(), "no tensor named '" + name + "'");
    const DTypeInfo* info = find_dtype(entry->dtype);
    if (!info->has_torch)
        throw FormatError(path(), "tensor '" + name + "': dtype " + entry->dtype + " is not supported by saliq");
    return {info->torch_type, entry->shape};
}

void SafetensorsReader::release(const std::string& name) const {
    if (const SafetensorsEntry* entry = find(name)) file_->release(data_start_ + entry->begin, entry->end - entry->begin);
}

void write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& specs,
                                const std::function<at::Tensor(size_t)>& produce,
                                const std::map<std::string, std::string>& metadata,
                                const std::function<void(size_t)>& done) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto& spec : specs) {
        if (spec.name == "__metadata__") throw ConfigError("a tensor cannot be named __metadata__");
        if (header.contains(spec.name)) throw ConfigError("duplicate tensor name '" + spec.name + "' in safetensors output");
        uint64_t numel = 1;
        for (int64_t d : spec.shape) numel *= static_cast<uint64_t>(d);
        const uint64_t bytes = numel * c10::elementSize(spec.dtype);
        header[spec.name] = {{"dtype", dtype_name(spec.dtype)}, {"shape", spec.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string json = header.dump();
    json.append((8 - json.size() % 8) % 8, ' ');  // data section starts 8-byte aligned, as the reference writer does
    write_file_atomic(path, [&](std::ostream& out) {
        uint8_t len[8];
        uint64_t n = json.size();
        for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
        out.write(reinterpret_cast<const char*>(len), 8);
        out.write(json.data(), static_cast<std::streamsize>(json.size()));
        for (size_t i = 0; i < specs.size(); ++i) {
            {
                const at::Tensor t = produce(i).detach().to(at::kCPU).contiguous();
                if (t.scalar_type() != specs[i].dtype || t.sizes().vec() != specs[i].shape)
                    throw Error("internal: tensor '" + specs[i].name + "' was declared " +
                                c10::toString(specs[i].dtype) + " " + shape_to_string(specs[i].shape) + " but is " +
                                c10::toString(t.scalar_type()) + " " + shape_to_string(t.sizes().vec()));
                out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
            }
            if (done) done(i);
        }
    });
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
    std::vector<TensorSpec> specs;
    specs.reserve(tensors.size());
    for (const auto& [name, tensor] : tensors) specs.push_back({name, tensor.scalar_type(), tensor.sizes().vec()});
    write_safetensors_streamed(path, specs, [&](size_t i) { return tensors[i].second; }, metadata);
}

}  // namespace saliq
