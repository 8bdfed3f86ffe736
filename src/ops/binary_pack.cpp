// The stored form of binarized weights (layout in include/saliq/binarize.h): bit planes in GPTQ's int32 packing,
// the learned scales in fp16.
#include <ATen/ATen.h>

#include "saliq/binarize.h"
#include "saliq/error.h"
#include "saliq/gptq_pack.h"
#include "saliq/strings.h"

namespace saliq {

std::vector<std::string> binary_suffixes(const std::string& kind) {
    const QuantizerTraits& t = quantizer_traits(kind);
    if (!t.binary) throw Error("internal: no packed layout for quantizer '" + kind + "'");
    return {std::begin(t.parts), std::end(t.parts)};
}

std::vector<std::pair<std::string, at::Tensor>> binary_pack(const BinaryWeight& w) {
    auto half = [](const at::Tensor& t) { return t.to(at::kCPU).to(at::kHalf).contiguous(); };
    std::vector<std::pair<std::string, at::Tensor>> out;
    out.emplace_back(".qweight", pack_bits(w.codes.t(), w.bits()));  // [in, out] codes packed along in
    switch (quantizer_traits(w.kind).family) {
        case QuantizerFamily::kDualBinary:
            out.emplace_back(".alpha1", half(w.alpha1.t()));
            out.emplace_back(".alpha2", half(w.alpha2.t()));
            out.emplace_back(".g_idx", w.g_idx.to(at::kCPU).to(at::kInt).contiguous());
            break;
        case QuantizerFamily::kMixtureOfScales:
            out.emplace_back(".router", half(w.router));
            out.emplace_back(".scale_in", half(w.scale_in));
            out.emplace_back(".scale_out", half(w.scale_out));
            break;
        case QuantizerFamily::kUniform: throw Error("internal: binary_pack of quantizer '" + w.kind + "'");
    }
    return out;
}

BinaryWeight binary_unpack_parts(const std::string& kind, int64_t in, int64_t out,
                                 const std::vector<std::pair<std::string, at::Tensor>>& parts,
                                 const std::string& origin) {
    auto part = [&](const std::string& suffix) -> const at::Tensor& {
        for (const auto& p : parts)
            if (p.first == suffix) return p.second;
        throw FormatError(origin, "no " + suffix.substr(1) + " tensor");
    };
    auto expect = [&](const at::Tensor& t, const std::vector<int64_t>& shape, const std::string& what) {
        if (t.sizes().vec() != shape)
            throw FormatError(origin, what + " has shape " + shape_to_string(t.sizes().vec()) + ", expected " +
                                          shape_to_string(shape));
        if (t.is_floating_point() && !at::isfinite(t.to(at::kFloat)).all().item<bool>())
            throw FormatError(origin, what + " holds non-finite values");
    };
    BinaryWeight w;
    w.kind = kind;
    const int bits = quantizer_traits(kind).bits;
    const at::Tensor& qweight = part(".qweight");
    expect(qweight, {(in * bits + 31) / 32, out}, "qweight");
    if (qweight.scalar_type() != at::kInt) throw FormatError(origin, "qweight must be int32");
    w.codes = unpack_bits(qweight, bits, in).t().contiguous();  // [out, in]
    if (quantizer_traits(kind).family == QuantizerFamily::kDualBinary) {
        const at::Tensor& a1 = part(".alpha1");
        if (a1.dim() != 2) throw FormatError(origin, "alpha1 must be a 2-D [groups, out] tensor");
        const int64_t G = a1.size(0);
        expect(a1, {G, out}, "alpha1");
        expect(part(".alpha2"), {G, out}, "alpha2");
        expect(part(".g_idx"), {in}, "g_idx");
        w.alpha1 = a1.to(at::kFloat).t().contiguous();
        w.alpha2 = part(".alpha2").to(at::kFloat).t().contiguous();
        w.g_idx = part(".g_idx").to(at::kLong).contiguous();
        if (in > 0 && (w.g_idx.min().item<int64_t>() < 0 || w.g_idx.max().item<int64_t>() >= G))
            throw FormatError(origin, strprintf("g_idx points outside the %lld groups", (long long)G));
    } else {
        const at::Tensor& router = part(".router");
        if (router.dim() != 2 || router.size(0) < 1) throw FormatError(origin, "router must be a 2-D [experts, in] tensor");
        const int64_t E = router.size(0);
        expect(router, {E, in}, "router");
        expect(part(".scale_in"), {E, in}, "scale_in");
        expect(part(".scale_out"), {E, out}, "scale_out");
        w.router = router.to(at::kFloat).contiguous();
        w.scale_in = part(".scale_in").to(at::kFloat).contiguous();
        w.scale_out = part(".scale_out").to(at::kFloat).contiguous();
    }
    return w;
}

}  // namespace saliq
