// GGUF v3 (llama.cpp's container; methods_formats_eval.md 2.4): little-endian header, typed key-value metadata,
// tensor infos with ne[0] fastest-varying (an [out, in] weight is ne = [in, out]), aligned data section.
// Reading maps the file and checks every offset and size; tensors of the float types F32 / F16 / BF16 are served as
// LibTorch tensors, Q8_0 / Q4_0 / Q4_1 dequantized to fp32 on read (other quantized types are listed but refused
// with their name).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "saliq/ggml_types.h"

namespace saliq {

class MappedFile;

// A metadata value as written: the GGUF type beside the JSON value (numbers, strings, bools, arrays of one type).
enum class GgufType : uint32_t {
    kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7,
    kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12
};

struct GgufValue {
    std::string key;
    GgufType type = GgufType::kString;
    GgufType element = GgufType::kString;  // for arrays
    nlohmann::json value;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<int64_t> ne;  // fastest-varying first
    uint32_t ggml_type = 0;   // 0 F32, 1 F16, 30 BF16, others quantized
    uint64_t offset = 0;      // from the data section's start
    uint64_t bytes = 0;
};

constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ4_1 = 3, kGgmlQ8_0 = 8, kGgmlBF16 = 30;
const char* ggml_type_name(uint32_t type);

class GgufReader {
public:
    static std::shared_ptr<GgufReader> open(const std::string& path);  // throws FormatError naming the file
    const std::string& path() const;
    const std::vector<GgufValue>& metadata() const { return metadata_; }
    const GgufValue* find_value(const std::string& key) const;
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find(const std::string& name) const;
    // [ne[n-1], ..., ne[0]] (row-major, the PyTorch order): zero-copy over the mapping for float types, a
    // dequantized fp32 copy for Q8_0 / Q4_0 / Q4_1.
    at::Tensor tensor(const std::string& name) const;
    // A tensor of a GGML grid type (ggml_types.h) as its raw blocks, uint8 [rows, row_bytes], zero-copy.
    at::Tensor raw(const std::string& name) const;
    void release(const std::string& name) const;

private:
    std::shared_ptr<const MappedFile> file_;
    std::vector<GgufValue> metadata_;
    std::vector<GgufTensorInfo> tensors_;
    uint64_t data_start_ = 0;
};

// A tensor to write: its name and PyTorch shape (written reversed as ne), F32 / F16 / BF16, produced on demand; or,
// with `blocks`, raw blocks of that GGML type: produced as uint8 [rows, row_bytes], `shape` still counting weights.
struct GgufTensorSpec {
    std::string name;
    at::ScalarType dtype = at::kFloat;
    std::vector<int64_t> shape;
    GgmlGrid blocks = GgmlGrid::kNone;
};

// Writes a GGUF v3 file atomically (temporary name, then rename), tensors streamed one at a time.
void write_gguf(const std::string& path, const std::vector<GgufValue>& metadata,
                const std::vector<GgufTensorSpec>& tensors, const std::function<at::Tensor(size_t)>& produce,
                uint32_t alignment = 32);

// The byte-level BPE vocabulary of a GGUF (tokenizer.ggml.model "gpt2") as the tokenizer.json Hugging Face would
// write for it: tokens, merges, control / user-defined tokens as added tokens, and the pre-tokenizer llama.cpp
// names in tokenizer.ggml.pre ("gpt2", "smollm", "llama-bpe", ...) spelled out as tokenizers' steps. ConfigError for
// a SentencePiece vocabulary ("llama": give its tokenizer.model) or a pre-tokenizer name saliq does not know.
nlohmann::json gguf_tokenizer_json(const GgufReader& reader);
// tokenizer_config.json for it: bos/eos/pad tokens and add_bos_token.
nlohmann::json gguf_tokenizer_config(const GgufReader& reader);
// The inverse for writers: llama.cpp's tokenizer.ggml.pre name of a tokenizer.json pre-tokenizer ("" if none fits).
std::string gguf_pre_name(const nlohmann::json& pre_tokenizer);

}  // namespace saliq
