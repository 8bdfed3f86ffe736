// GGUF v3 read and write (layout in saliq/gguf.h).
#include "saliq/gguf.h"

#include <cstring>

#include <set>

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian

// Bytes of a tensor of `n` elements of a ggml type saliq reads (float types, and the 32-weight block types Q8_0,
// Q4_0, Q4_1, dequantized on read); 0 for types we do not serve (or a count that is not whole blocks).
uint64_t float_bytes(uint32_t type, uint64_t n) {
    if (type == kGgmlF32) return 4 * n;
    if (type == kGgmlF16 || type == kGgmlBF16) return 2 * n;
    if (n % 32 != 0) return 0;
    if (type == kGgmlQ8_0) return n / 32 * 34;  // fp16 d, 32 x int8
    if (type == kGgmlQ4_0) return n / 32 * 18;  // fp16 d, 16 bytes of nibbles
    if (type == kGgmlQ4_1) return n / 32 * 20;  // fp16 d, fp16 m, 16 bytes of nibbles
    return 0;
}

// Bytes of a tensor of a type saliq knows: the float and dequantized types above, or a GGML grid's blocks (served
// raw); 0 otherwise.
uint64_t tensor_bytes(uint32_t type, const std::vector<int64_t>& ne, uint64_t n) {
    if (const uint64_t b = float_bytes(type, n)) return b;
    const GgmlGrid grid = ggml_grid_of_type(type);
    if (grid == GgmlGrid::kNone || ne.empty() || ne[0] % ggml_grid_traits(grid).block != 0) return 0;
    return n / static_cast<uint64_t>(ggml_grid_traits(grid).block) * static_cast<uint64_t>(ggml_grid_traits(grid).block_bytes);
}

float half_to_float(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return at::Half(h, at::Half::from_bits()).operator float();
}

// ggml's dequantize_row_q8_0 / q4_0 / q4_1: per block of 32, w = d * q (q int8), d * (q - 8) or d * q + m with the
// nibbles of byte j holding weights j (low) and j + 16 (high).
at::Tensor dequantize_blocks(uint32_t type, const uint8_t* data, int64_t n) {
    at::Tensor out = at::empty({n}, at::kFloat);
    float* w = out.data_ptr<float>();
    const int64_t blocks = n / 32;
    for (int64_t b = 0; b < blocks; ++b, w += 32) {
        if (type == kGgmlQ8_0) {
            const uint8_t* p = data + b * 34;
            const float d = half_to_float(p);
            for (int j = 0; j < 32; ++j) w[j] = d * static_cast<float>(static_cast<int8_t>(p[2 + j]));
        } else {
            const bool q41 = type == kGgmlQ4_1;
            const uint8_t* p = data + b * (q41 ? 20 : 18);
            const float d = half_to_float(p), m = q41 ? half_to_float(p + 2) : 0.0f;
            const uint8_t* qs = p + (q41 ? 4 : 2);
            for (int j = 0; j < 16; ++j) {
                const int lo = qs[j] & 0x0f, hi = qs[j] >> 4;
                w[j] = q41 ? d * static_cast<float>(lo) + m : d * static_cast<float>(lo - 8);
                w[j + 16] = q41 ? d * static_cast<float>(hi) + m : d * static_cast<float>(hi - 8);
            }
        }
    }
    return out;
}

class Cursor {
public:
    Cursor(const uint8_t* data, uint64_t size, const std::string& path) : data_(data), size_(size), path_(path) {}
    template <typename T>
    T read() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string string() {
        const uint64_t n = read<uint64_t>();
        need(n);
        std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
        pos_ += n;
        return s;
    }
    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }
    [[noreturn]] void fail(const std::string& what) const {
        throw FormatError(path_, strprintf("%s (at byte %llu)", what.c_str(), (unsigned long long)pos_));
    }

private:
    void need(uint64_t n) const {
        if (n > size_ - pos_) fail("truncated GGUF file");
    }
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    std::string path_;
};

nlohmann::json read_scalar(Cursor& c, GgufType t) {
    switch (t) {
        case GgufType::kUint8: return c.read<uint8_t>();
        case GgufType::kInt8: return c.read<int8_t>();
        case GgufType::kUint16: return c.read<uint16_t>();
        case GgufType::kInt16: return c.read<int16_t>();
        case GgufType::kUint32: return c.read<uint32_t>();
        case GgufType::kInt32: return c.read<int32_t>();
        case GgufType::kFloat32: return c.read<float>();
        case GgufType::kBool: return c.read<uint8_t>() != 0;
        case GgufType::kString: return c.string();
        case GgufType::kUint64: return c.read<uint64_t>();
        case GgufType::kInt64: return c.read<int64_t>();
        case GgufType::kFloat64: return c.read<double>();
        default: c.fail("unknown GGUF value type " + std::to_string(static_cast<uint32_t>(t)));
    }
}

// Bytes an element of type `t` takes at least in the file: its width, a string's 8-byte length, 1 for a type
// read_scalar refuses.
uint64_t min_element_bytes(GgufType t) {
    switch (t) {
        case GgufType::kUint16: case GgufType::kInt16: return 2;
        case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
        case GgufType::kString: case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: return 8;
        default: return 1;
    }
}

// Far above any vocabulary's arrays (256k tokens, their scores, types and merges): an element costs 16 bytes or
// more as json, so a count bounded only by the file would let a bool array take 16 times the file's size.
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 24;

}  // namespace

const char* ggml_type_name(uint32_t type) {
    static const char* names[] = {"F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                                  "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
                                  "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
                                  "IQ1_M", "BF16"};
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "unknown";
}

std::shared_ptr<GgufReader> GgufReader::open(const std::string& path) {
    auto r = std::shared_ptr<GgufReader>(new GgufReader());
    r->file_ = MappedFile::open(path);
    Cursor c(r->file_->data(), r->file_->size(), path);
    if (r->file_->size() < 24 || c.read<uint32_t>() != kMagic) throw FormatError(path, "not a GGUF file (bad magic)");
    const uint32_t version = c.read<uint32_t>();
    if (version != 2 && version != 3) throw FormatError(path, "GGUF version " + std::to_string(version) + " is not 2 or 3");
    const uint64_t n_tensors = c.read<uint64_t>(), n_kv = c.read<uint64_t>();
    if (n_tensors > (uint64_t{1} << 24) || n_kv > (uint64_t{1} << 24)) c.fail("implausible tensor or key count");
    uint32_t alignment = 32;
    std::set<std::string> keys;
    for (uint64_t i = 0; i < n_kv; ++i) {
        GgufValue v;
        v.key = c.string();
        v.type = static_cast<GgufType>(c.read<uint32_t>());
        if (v.type == GgufType::kArray) {
            v.element = static_cast<GgufType>(c.read<uint32_t>());
            const uint64_t n = c.read<uint64_t>();
            if (v.element == GgufType::kArray) c.fail("nested GGUF arrays are not supported");
            if (n > kMaxArrayElements) c.fail(strprintf("array %s of %llu elements exceeds saliq's limit of %llu",
                                                        v.key.c_str(), (unsigned long long)n,
                                                        (unsigned long long)kMaxArrayElements));
            if (n > c.remaining() / min_element_bytes(v.element))
                c.fail(strprintf("array %s claims %llu elements, more than the %llu bytes left in the file hold",
                                 v.key.c_str(), (unsigned long long)n, (unsigned long long)c.remaining()));
            v.value = nlohmann::json::array();
            for (uint64_t k = 0; k < n; ++k) v.value.push_back(read_scalar(c, v.element));
        } else {
            v.value = read_scalar(c, v.type);
        }
        if (v.key == "general.alignment") {
            // The spec's type is UINT32; a wider value would be narrowed (2^32 to 0) and then divide by zero.
            if (v.type != GgufType::kUint32 || !v.value.is_number_unsigned())
                c.fail("general.alignment must be stored as UINT32");
            const uint64_t a = v.value.get<uint64_t>();
            if (a == 0 || (a & (a - 1)) != 0 || a > (uint64_t{1} << 20))
                c.fail("general.alignment " + std::to_string(a) + " must be a power of two up to 2^20");
            alignment = static_cast<uint32_t>(a);
        }
        if (!keys.insert(v.key).second) c.fail("metadata key " + v.key + " appears twice");  // one would win
        r->metadata_.push_back(std::move(v));
    }
    std::set<std::string> tensor_names;
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo t;
        t.name = c.string();
        const uint32_t n_dims = c.read<uint32_t>();
        if (n_dims < 1 || n_dims > 4) c.fail("tensor " + t.name + " has " + std::to_string(n_dims) + " dimensions");
        uint64_t numel = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t ne = c.read<uint64_t>();
            if (ne == 0 || ne > (uint64_t{1} << 40) || numel > (uint64_t{1} << 40) / ne) c.fail("tensor " + t.name + " has a bad shape");
            numel *= ne;
            t.ne.push_back(static_cast<int64_t>(ne));
        }
        t.ggml_type = c.read<uint32_t>();
        t.offset = c.read<uint64_t>();
        t.bytes = tensor_bytes(t.ggml_type, t.ne, numel);
        if (t.offset % alignment != 0) c.fail("tensor " + t.name + " is not aligned");
        if (!tensor_names.insert(t.name).second) c.fail("tensor " + t.name + " appears twice");
        r->tensors_.push_back(std::move(t));
    }
    r->data_start_ = (c.pos() + alignment - 1) / alignment * alignment;
    // Compared as room left, never as sums: an offset near 2^64 would wrap data_start_ + offset back into the file.
    const uint64_t size = r->file_->size();
    for (const auto& t : r->tensors_)
        if (t.bytes > 0 && (r->data_start_ > size || t.offset > size - r->data_start_ ||
                            t.bytes > size - r->data_start_ - t.offset))
            throw FormatError(path, "tensor " + t.name + " lies past the end of the file (truncated?)");
    return r;
}

const std::string& GgufReader::path() const { return file_->path(); }

const GgufValue* GgufReader::find_value(const std::string& key) const {
    for (const auto& v : metadata_)
        if (v.key == key) return &v;
    return nullptr;
}

const GgufTensorInfo* GgufReader::find(const std::string& name) const {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

at::Tensor GgufReader::tensor(const std::string& name) const {
    const GgufTensorInfo* t = find(name);
    if (t == nullptr) throw FormatError(path(), "no tensor '" + name + "'");
    uint64_t numel = 1;
    for (int64_t d : t->ne) numel *= static_cast<uint64_t>(d);
    if (t->bytes == 0 || float_bytes(t->ggml_type, numel) == 0)
        throw FormatError(path(), "tensor '" + name + "' is " + ggml_type_name(t->ggml_type) +
                                      "; saliq reads F32, F16, BF16, Q8_0, Q4_0 and Q4_1 GGUF tensors as values" +
                                      (t->bytes > 0 ? " (and the blocks of the others raw)" : ""));
    std::vector<int64_t> shape(t->ne.rbegin(), t->ne.rend());
    const uint8_t* bytes = file_->data() + data_start_ + t->offset;
    if (t->ggml_type == kGgmlQ8_0 || t->ggml_type == kGgmlQ4_0 || t->ggml_type == kGgmlQ4_1) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return dequantize_blocks(t->ggml_type, bytes, n).view(shape);
    }
    const auto dtype = t->ggml_type == kGgmlF32 ? at::kFloat : t->ggml_type == kGgmlF16 ? at::kHalf : at::kBFloat16;
    auto keep = file_;
    void* data = const_cast<uint8_t*>(file_->data() + data_start_ + t->offset);
    return at::from_blob(data, shape, [keep](void*) {}, at::TensorOptions().dtype(dtype));
}

at::Tensor GgufReader::raw(const std::string& name) const {
    const GgufTensorInfo* t = find(name);
    if (t == nullptr) throw FormatError(path(), "no tensor '" + name + "'");
    const GgmlGrid grid = ggml_grid_of_type(t->ggml_type);
    if (grid == GgmlGrid::kNone || t->bytes == 0)
        throw FormatError(path(), "tensor '" + name + "' is " + ggml_type_name(t->ggml_type) + ", not GGML blocks saliq reads");
    const int64_t row_bytes = t->ne[0] / ggml_grid_traits(grid).block * ggml_grid_traits(grid).block_bytes;
    const int64_t rows = static_cast<int64_t>(t->bytes) / row_bytes;
    auto keep = file_;
    void* data = const_cast<uint8_t*>(file_->data() + data_start_ + t->offset);
    return at::from_blob(data, {rows, row_bytes}, [keep](void*) {}, at::TensorOptions().dtype(at::kByte));
}

void GgufReader::release(const std::string& name) const {
    if (const GgufTensorInfo* t = find(name)) file_->release(data_start_ + t->offset, t->bytes);
}

void write_gguf(const std::string& path, const std::vector<GgufValue>& metadata, const std::vector<GgufTensorSpec>& tensors,
                const std::function<at::Tensor(size_t)>& produce, uint32_t alignment) {
    std::string head;
    auto put = [&head](const void* p, size_t n) { head.append(static_cast<const char*>(p), n); };
    auto put_u32 = [&](uint32_t v) { put(&v, 4); };
    auto put_u64 = [&](uint64_t v) { put(&v, 8); };
    auto put_string = [&](const std::string& s) {
        put_u64(s.size());
        head += s;
    };
    auto put_scalar = [&](GgufType t, const nlohmann::json& v) {
        switch (t) {
            case GgufType::kUint8: { const uint8_t x = v.get<uint8_t>(); put(&x, 1); break; }
            case GgufType::kInt8: { const int8_t x = v.get<int8_t>(); put(&x, 1); break; }
            case GgufType::kUint16: { const uint16_t x = v.get<uint16_t>(); put(&x, 2); break; }
            case GgufType::kInt16: { const int16_t x = v.get<int16_t>(); put(&x, 2); break; }
            case GgufType::kUint32: put_u32(v.get<uint32_t>()); break;
            case GgufType::kInt32: { const int32_t x = v.get<int32_t>(); put(&x, 4); break; }
            case GgufType::kFloat32: { const float x = v.get<float>(); put(&x, 4); break; }
            case GgufType::kBool: { const uint8_t x = v.get<bool>() ? 1 : 0; put(&x, 1); break; }
            case GgufType::kString: put_string(v.get<std::string>()); break;
            case GgufType::kUint64: put_u64(v.get<uint64_t>()); break;
            case GgufType::kInt64: { const int64_t x = v.get<int64_t>(); put(&x, 8); break; }
            case GgufType::kFloat64: { const double x = v.get<double>(); put(&x, 8); break; }
            default: throw Error("internal: GGUF value type " + std::to_string(static_cast<uint32_t>(t)));
        }
    };
    put_u32(kMagic);
    put_u32(3);
    put_u64(tensors.size());
    put_u64(metadata.size());
    for (const auto& v : metadata) {
        put_string(v.key);
        put_u32(static_cast<uint32_t>(v.type));
        if (v.type == GgufType::kArray) {
            put_u32(static_cast<uint32_t>(v.element));
            put_u64(v.value.size());
            for (const auto& e : v.value) put_scalar(v.element, e);
        } else {
            put_scalar(v.type, v.value);
        }
    }
    std::vector<uint64_t> offsets, byte_counts;
    uint64_t offset = 0;
    for (const auto& t : tensors) {
        put_string(t.name);
        put_u32(static_cast<uint32_t>(t.shape.size()));
        uint64_t numel = 1;
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) {
            put_u64(static_cast<uint64_t>(*it));
            numel *= static_cast<uint64_t>(*it);
        }
        uint32_t type = t.dtype == at::kFloat ? kGgmlF32 : t.dtype == at::kHalf ? kGgmlF16 : kGgmlBF16;
        uint64_t bytes = float_bytes(type, numel);
        if (t.blocks != GgmlGrid::kNone) {
            const GgmlGridTraits& g = ggml_grid_traits(t.blocks);
            if (t.shape.empty() || t.shape.back() % g.block != 0)
                throw Error("internal: GGUF tensor '" + t.name + "' rows are not whole " + g.name + " blocks");
            type = g.ggml_type;
            bytes = numel / static_cast<uint64_t>(g.block) * static_cast<uint64_t>(g.block_bytes);
        } else if (t.dtype != at::kFloat && t.dtype != at::kHalf && t.dtype != at::kBFloat16) {
            throw Error("internal: GGUF tensors are written as F32, F16, BF16 or GGML blocks");
        }
        put_u32(type);
        put_u64(offset);
        offsets.push_back(offset);
        byte_counts.push_back(bytes);
        offset += (bytes + alignment - 1) / alignment * alignment;
    }
    head.append((alignment - head.size() % alignment) % alignment, '\0');
    write_file_atomic(path, [&](std::ostream& out) {
        out.write(head.data(), static_cast<std::streamsize>(head.size()));
        uint64_t written = 0;
        for (size_t i = 0; i < tensors.size(); ++i) {
            const at::Tensor t = produce(i).detach().to(at::kCPU).contiguous();
            const bool raw = tensors[i].blocks != GgmlGrid::kNone;
            const auto bytes = static_cast<uint64_t>(t.numel() * t.element_size());
            if (raw ? t.scalar_type() != at::kByte || bytes != byte_counts[i] || t.dim() != 2 ||
                          t.size(0) != tensors[i].shape.front()
                    : t.scalar_type() != tensors[i].dtype || t.sizes().vec() != tensors[i].shape)
                throw Error("internal: GGUF tensor '" + tensors[i].name + "' does not match its declared type and shape");
            out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
            written += bytes;
            const uint64_t padded = (written + alignment - 1) / alignment * alignment;
            std::string pad(padded - written, '\0');
            out.write(pad.data(), static_cast<std::streamsize>(pad.size()));
            written = padded;
        }
    });
}

}  // namespace saliq
