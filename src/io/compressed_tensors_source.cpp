// A compressed-tensors pack-quantized folder (llm-compressor's output, vLLM's WNA16 route) seen as a GPTQ v2 one, so
// that loading, checking, inspecting and exporting read it as they read GPTQ folders. Per linear the library stores
//   weight_packed      [out, ceil(in*b/32)] int32: each row's codes as one LSB-first bit stream along in, the
//                      library's signed code + 2^(b-1) (bit_stream.h) -> qweight is its transpose (GPTQ packs each
//                      output column's codes as the same stream);
//   weight_zero_point  [ceil(out*b/32), G] int32, packed the same way along out (asymmetric only) -> qzeros is its
//                      transpose, raw zero points (gptq_v2); without it (symmetric) every zero point is 2^(b-1), the
//                      library's signed zero with the codes' offset;
//   weight_scale       [out, G] -> scales is its transpose;   weight_g_idx [in] (actorder "group") -> g_idx;
//   weight_shape       [2] int64 = [out, in]: checked against the packed widths, not passed on.
// Dequantization agrees: the library's (q - zp) * s, both offset by 2^(b-1), is GPTQ's (c - z) * s.
#include <map>

#include <ATen/ATen.h>

#include "saliq/bit_stream.h"
#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

struct Part {
    const char* stored;  // compressed-tensors' suffix
    const char* gptq;    // what the view calls it
};
const Part kParts[] = {{".weight_packed", ".qweight"},
                       {".weight_zero_point", ".qzeros"},
                       {".weight_scale", ".scales"},
                       {".weight_g_idx", ".g_idx"}};
const char* const kShape = ".weight_shape";

class CompressedTensorsView : public TensorSource {
public:
    CompressedTensorsView(std::shared_ptr<TensorSource> raw, const PackedInfo& packed)
        : raw_(std::move(raw)), bits_(packed.bits) {
        // A name the view would show twice (a GPTQ part stored beside the compressed-tensors one it stands for) is
        // refused: which of the two is the model?
        auto show = [this](const std::string& as, const std::string& stored) {
            const auto [it, added] = names_.emplace(as, stored);
            if (!added)
                throw FormatError(raw_->origin(), "tensors '" + it->second + "' and '" + stored + "' both stand for '" +
                                                      as + "'");
        };
        for (const auto& name : raw_->names()) {
            bool part = ends_with(name, kShape);
            for (const Part& p : kParts) {
                if (!ends_with(name, p.stored)) continue;
                show(base_of(name, p.stored) + p.gptq, name);
                part = true;
            }
            if (!part) show(name, name);
        }
        // Every packed linear has its scales and shape, and its zero points exactly when the scheme is asymmetric
        // (a symmetric one stores none: the view gives it the constant ones).
        for (const auto& name : raw_->names()) {
            if (!ends_with(name, ".weight_packed")) continue;
            const std::string base = base_of(name, ".weight_packed");
            for (const char* needed : {".weight_scale", kShape})
                if (!raw_->has(base + needed))
                    throw FormatError(raw_->origin(),
                                      "tensor '" + base + needed + "' is missing beside '" + name + "'");
            const bool has_zeros = raw_->has(base + ".weight_zero_point");
            if (packed.symmetric && has_zeros)
                throw FormatError(raw_->origin(), "'" + base + ".weight_zero_point' in a folder whose scheme is "
                                                  "symmetric (no zero points)");
            if (!packed.symmetric && !has_zeros)
                throw FormatError(raw_->origin(), "tensor '" + base + ".weight_zero_point' is missing: the scheme is "
                                                  "asymmetric (symmetric false)");
            if (packed.symmetric) names_[base + ".qzeros"] = "";
        }
    }

    bool has(const std::string& name) const override { return names_.count(name) != 0; }

    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : names_) out.push_back(kv.first);
        return out;
    }

    std::pair<at::ScalarType, std::vector<int64_t>> describe(const std::string& name) const override {
        const std::string& stored = stored_name(name);
        if (stored.empty()) {  // synthesized zero points: [G, ceil(out*b/32)]
            const auto [out, groups] = scale_shape(base_of(name, ".qzeros"));
            return {at::kInt, {groups, (out * bits_ + 31) / 32}};
        }
        auto d = raw_->describe(stored);
        if (stored != name && d.second.size() == 2) std::swap(d.second[0], d.second[1]);
        return d;
    }

    at::Tensor get(const std::string& name) const override {
        const std::string& stored = stored_name(name);
        if (stored.empty()) return constant_zeros(base_of(name, ".qzeros"));
        if (stored == name) return raw_->get(name);
        const at::Tensor t = raw_->get(stored);
        if (ends_with(name, ".g_idx")) return t;
        if (t.dim() != 2)
            throw FormatError(raw_->origin(), "tensor '" + stored + "' is " + shape_to_string(t.sizes().vec()) +
                                                  ", not a matrix");
        if (ends_with(name, ".qweight")) check_shape(base_of(name, ".qweight"), t);
        return t.t().contiguous();
    }

    void release(const std::string& name) const override {
        const auto it = names_.find(name);
        if (it != names_.end() && !it->second.empty()) raw_->release(it->second);
    }

    bool stored(const std::string& name) const override { return !stored_name(name).empty(); }

    // Checks downstream name the GPTQ parts: the origin says what they are in this folder.
    std::string origin() const override {
        return raw_->origin() + " [compressed-tensors read as GPTQ: qweight, qzeros, scales are weight_packed, "
                                "weight_zero_point, weight_scale transposed]";
    }

private:
    const std::string& stored_name(const std::string& name) const {
        const auto it = names_.find(name);
        if (it == names_.end()) throw FormatError(raw_->origin(), "checkpoint has no tensor '" + name + "'");
        return it->second;
    }

    static std::string base_of(const std::string& name, const std::string& suffix) {
        return name.substr(0, name.size() - suffix.size());
    }

    // weight_shape says [out, in] (the constructor saw it beside every weight_packed); the packed codes must be
    // exactly that many rows of ceil(in*b/32) words.
    void check_shape(const std::string& base, const at::Tensor& packed) const {
        const at::Tensor shape = raw_->get(base + kShape);
        if (shape.dim() != 1 || shape.numel() != 2 || at::isFloatingType(shape.scalar_type()))
            throw FormatError(raw_->origin(), "tensor '" + base + kShape + "' is not two integers [out, in]");
        const at::Tensor s = shape.to(at::kLong);
        const int64_t out = s[0].item<int64_t>(), in = s[1].item<int64_t>();
        if (out <= 0 || in <= 0 || packed.size(0) != out || packed.size(1) != (in * bits_ + 31) / 32)
            throw FormatError(raw_->origin(),
                              strprintf("'%s.weight_packed' is %s, but weight_shape [%lld, %lld] at %d bits packs to "
                                        "[%lld, %lld]",
                                        base.c_str(), shape_to_string(packed.sizes().vec()).c_str(), (long long)out,
                                        (long long)in, bits_, (long long)out, (long long)((in * bits_ + 31) / 32)));
    }

    // [out, groups] of a linear's weight_scale, from its header: the shape of the zero points a symmetric one lacks.
    std::pair<int64_t, int64_t> scale_shape(const std::string& base) const {
        const std::vector<int64_t> shape = raw_->describe(base + ".weight_scale").second;
        if (shape.size() != 2)
            throw FormatError(raw_->origin(),
                              "tensor '" + base + ".weight_scale' is " + shape_to_string(shape) + ", not [out, groups]");
        return {shape[0], shape[1]};
    }

    at::Tensor constant_zeros(const std::string& base) const {
        const auto [out, groups] = scale_shape(base);
        const at::Tensor zeros = at::full({out, groups}, int64_t{1} << (bits_ - 1), at::kLong);
        return pack_bits(zeros, bits_).t().contiguous();  // [G, ceil(out*b/32)]
    }

    std::shared_ptr<TensorSource> raw_;
    int bits_;
    std::map<std::string, std::string> names_;  // the view's name -> the stored one ("" for synthesized zeros)
};

}  // namespace

std::shared_ptr<TensorSource> open_compressed_tensors_view(std::shared_ptr<TensorSource> raw,
                                                            const PackedInfo& packed) {
    return std::make_shared<CompressedTensorsView>(std::move(raw), packed);
}

}  // namespace saliq
