// safetensors: validated, zero-copy reading (mmap) and atomic writing.
// Format: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, then the data section.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace saliq {

class MappedFile;

struct SafetensorsEntry {
    std::string name;
    std::string dtype;            // as spelled in the file: "F32", "BF16", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0;           // byte offsets into the data section, [begin, end)
    uint64_t end = 0;
};

class SafetensorsReader {
public:
    // Opens and validates the whole header: length within the file, JSON object, known dtypes, offsets in range,
    // no overlaps or holes, dtype x shape == byte size. Throws FormatError naming the file and tensor.
    static std::shared_ptr<SafetensorsReader> open(const std::string& path);

    const std::string& path() const;
    const std::vector<SafetensorsEntry>& entries() const { return entries_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const SafetensorsEntry* find(const std::string& name) const;
    bool has(const std::string& name) const { return find(name) != nullptr; }

    // A CPU tensor over the mapped bytes (zero-copy when aligned; read-only: clone before writing in place).
    // Throws FormatError when the name is absent or the dtype has no LibTorch equivalent.
    at::Tensor tensor(const std::string& name) const;
    // The LibTorch dtype and the shape of `name` from the header, no value read. Throws as tensor() does.
    std::pair<at::ScalarType, std::vector<int64_t>> describe(const std::string& name) const;
    // Releases the resident pages of a tensor once its values have been copied out (see MappedFile::release).
    void release(const std::string& name) const;

private:
    std::shared_ptr<const MappedFile> file_;
    uint64_t data_start_ = 0;
    std::vector<SafetensorsEntry> entries_;
    std::map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes tensors (any device; copied to CPU, contiguous) in the given order, with `metadata` under __metadata__.
// Atomic: a temporary file is renamed over `path` only when complete.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A tensor to be written by write_safetensors_streamed: its header entry, known before its values exist.
struct TensorSpec {
    std::string name;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
};

// Writes the header from `specs`, then asks `produce(i)` for each tensor in turn, writes it and lets it go, so only
// one tensor is alive at a time (a whole model never sits in memory). `produce` must return the declared dtype and
// shape (checked); `done(i)`, when given, runs once tensor i is on disk (to release its source pages). Atomic.
void write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& specs,
                                const std::function<at::Tensor(size_t)>& produce,
                                const std::map<std::string, std::string>& metadata = {},
                                const std::function<void(size_t)>& done = nullptr);

}  // namespace saliq
