#include "saliq/gptq_pack.h"

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq {

GptqTensors gptq_pack(const QuantizedTensor& q, bool zeros_v2) {
    GptqTensors out;
    out.qweight = pack_bits(q.codes.t(), q.spec.bits);                 // [in, out] codes packed along in
    at::Tensor z = q.zeros.t().to(at::kLong);                          // [G, out]
    if (!zeros_v2) z = z - 1;                                          // v1 offset; the caller picks v2 for asym
    if (!zeros_v2 && z.min().item<int64_t>() < 0)
        throw ConfigError("zero point 0 cannot be stored in the v1 GPTQ layout; write gptq_v2 (asymmetric)");
    out.qzeros = pack_bits(z.t(), q.spec.bits).t().contiguous();       // packed along out
    out.scales = q.scales.t().to(at::kHalf).contiguous();              // [G, out]
    out.g_idx = q.g_idx.to(at::kInt).to(at::kCPU).contiguous();
    return out;
}

QuantizedTensor gptq_unpack(const GptqTensors& p, const QuantSpec& spec, int64_t in, int64_t out, bool zeros_v2,
                            const std::string& origin) {
    const int bits = spec.bits;
    const int64_t G = p.scales.dim() == 2 ? p.scales.size(0) : -1;
    auto expect = [&](const at::Tensor& t, std::vector<int64_t> shape, const char* what) {
        if (t.sizes().vec() != shape)
            throw FormatError(origin, std::string(what) + " has shape " + shape_to_string(t.sizes().vec()) +
                                          ", expected " + shape_to_string(shape));
    };
    expect(p.qweight, {(in * bits + 31) / 32, out}, "qweight");
    if (G <= 0) throw FormatError(origin, "scales must be a 2-D [groups, out] tensor");
    expect(p.scales, {G, out}, "scales");
    expect(p.qzeros, {G, (out * bits + 31) / 32}, "qzeros");
    expect(p.g_idx, {in}, "g_idx");
    QuantizedTensor q;
    q.spec = spec;
    q.codes = unpack_bits(p.qweight, bits, in).t().contiguous();            // [out, in]
    at::Tensor z = unpack_bits(p.qzeros.t().contiguous(), bits, out).to(at::kLong);  // [out, G]
    if (!zeros_v2) z = z + 1;
    if (z.max().item<int64_t>() > spec.maxq())
        throw FormatError(origin, "zero point out of range for " + std::to_string(bits) + "-bit codes");
    q.zeros = z.to(at::kFloat).contiguous();
    q.scales = p.scales.to(at::kFloat).t().contiguous();
    q.g_idx = p.g_idx.to(at::kLong).contiguous();
    if (q.g_idx.min().item<int64_t>() < 0 || q.g_idx.max().item<int64_t>() >= G)
        throw FormatError(origin, "g_idx refers to a group outside the scales");
    return q;
}

namespace {

// Bit offset of each input column in a mixed stream (one more entry: the total).
std::vector<int64_t> mixed_offsets(const at::Tensor& group_bits, int64_t in, int64_t g) {
    const at::Tensor bits = group_bits.to(at::kCPU).to(at::kLong).contiguous();
    const int64_t* b = bits.data_ptr<int64_t>();
    std::vector<int64_t> offsets(static_cast<size_t>(in) + 1, 0);
    for (int64_t r = 0; r < in; ++r) offsets[r + 1] = offsets[r] + b[r / g];
    return offsets;
}

}  // namespace

MixedTensors mixed_pack(const QuantizedTensor& q) {
    const int64_t in = q.in_features(), out = q.out_features(), g = q.spec.effective_group(in);
    if (!at::equal(q.g_idx.to(at::kCPU), natural_group_index(in, q.spec)))
        throw ConfigError("internal: the mixed-precision layout keeps groups in natural order (no act-order)");
    const std::vector<int64_t> offsets = mixed_offsets(q.group_bits, in, g);
    const at::Tensor v = q.codes.t().to(at::kCPU).to(at::kLong).contiguous();  // [in, out]
    at::Tensor packed = at::zeros({(offsets.back() + 31) / 32, out}, at::kLong);
    const int64_t* src = v.data_ptr<int64_t>();
    int64_t* dst = packed.data_ptr<int64_t>();
    for (int64_t r = 0; r < in; ++r) {
        const int64_t bits = offsets[r + 1] - offsets[r], word = offsets[r] / 32, shift = offsets[r] % 32;
        const uint64_t mask = (uint64_t{1} << bits) - 1;
        for (int64_t c = 0; c < out; ++c) {
            const uint64_t value = static_cast<uint64_t>(src[r * out + c]) & mask;
            dst[word * out + c] |= static_cast<int64_t>((value << shift) & 0xffffffffull);
            if (shift + bits > 32) dst[(word + 1) * out + c] |= static_cast<int64_t>(value >> (32 - shift));
        }
    }
    MixedTensors m;
    m.qweight = packed.to(at::kInt);
    m.scales = q.scales.t().to(at::kCPU).to(at::kHalf).contiguous();
    m.zeros = q.zeros.t().to(at::kCPU).to(at::kHalf).contiguous();
    m.group_bits = q.group_bits.to(at::kCPU).to(at::kInt).contiguous();
    return m;
}

at::Tensor checked_group_bits(const at::Tensor& group_bits, int64_t groups, const std::string& origin) {
    if (group_bits.sizes().vec() != std::vector<int64_t>{groups})
        throw FormatError(origin, "group_bits has shape " + shape_to_string(group_bits.sizes().vec()) + ", expected " +
                                      shape_to_string({groups}));
    const at::Tensor bits = group_bits.to(at::kCPU).to(at::kLong);
    if (bits.min().item<int64_t>() < 1 || bits.max().item<int64_t>() > 8)
        throw FormatError(origin, "group_bits holds a width outside 1..8");
    return bits;
}

QuantizedTensor mixed_unpack(const MixedTensors& p, const QuantSpec& spec, int64_t in, int64_t out,
                             const std::string& origin) {
    const int64_t g = spec.effective_group(in), G = spec.n_groups(in);
    auto expect = [&](const at::Tensor& t, std::vector<int64_t> shape, const char* what) {
        if (t.sizes().vec() != shape)
            throw FormatError(origin, std::string(what) + " has shape " + shape_to_string(t.sizes().vec()) +
                                          ", expected " + shape_to_string(shape));
    };
    const at::Tensor bits = checked_group_bits(p.group_bits, G, origin);
    const std::vector<int64_t> offsets = mixed_offsets(bits, in, g);
    expect(p.qweight, {(offsets.back() + 31) / 32, out}, "qweight");
    expect(p.scales, {G, out}, "scales");
    expect(p.zeros, {G, out}, "zeros");
    const at::Tensor words = p.qweight.to(at::kCPU).to(at::kInt).contiguous();
    const uint32_t* src = reinterpret_cast<const uint32_t*>(words.data_ptr<int32_t>());
    at::Tensor codes = at::empty({in, out}, at::kByte);
    uint8_t* dst = codes.data_ptr<uint8_t>();
    for (int64_t r = 0; r < in; ++r) {
        const int64_t width = offsets[r + 1] - offsets[r], word = offsets[r] / 32, shift = offsets[r] % 32;
        const uint64_t mask = (uint64_t{1} << width) - 1;
        for (int64_t c = 0; c < out; ++c) {
            uint64_t value = static_cast<uint64_t>(src[word * out + c]) >> shift;
            if (shift + width > 32) value |= static_cast<uint64_t>(src[(word + 1) * out + c]) << (32 - shift);
            dst[r * out + c] = static_cast<uint8_t>(value & mask);
        }
    }
    QuantizedTensor q;
    q.spec = spec;
    q.codes = codes.t().contiguous();
    q.scales = p.scales.to(at::kFloat).t().contiguous();
    q.zeros = p.zeros.to(at::kFloat).t().contiguous();
    q.g_idx = natural_group_index(in, spec);
    q.group_bits = bits.contiguous();
    if (!at::isfinite(q.scales).all().item<bool>() || !at::isfinite(q.zeros).all().item<bool>())
        throw FormatError(origin, "scales or zeros hold NaN or infinite values");
    return q;
}

void check_gptq_claims(const QuantizedTensor& q, const GptqClaims& claims, const std::string& origin) {
    const int64_t in = q.in_features();
    QuantSpec spec = q.spec;
    spec.group_size = claims.group_size;
    const int64_t groups = spec.n_groups(in);
    if (q.scales.size(1) != groups)
        throw FormatError(origin, strprintf("%lld groups of scales, but group_size %lld over %lld inputs makes %lld",
                                            (long long)q.scales.size(1), (long long)claims.group_size,
                                            (long long)in, (long long)groups));
    const at::Tensor natural = natural_group_index(in, spec);
    if (!claims.desc_act) {
        if (!at::equal(q.g_idx, natural))
            throw FormatError(origin, "g_idx is not column / group_size, but desc_act is false");
    } else if (!at::equal(at::bincount(q.g_idx, {}, groups), at::bincount(natural, {}, groups))) {
        throw FormatError(origin, strprintf("g_idx does not give every group %lld columns (desc_act reorders columns, "
                                            "it does not resize groups)", (long long)spec.effective_group(in)));
    }
    if (claims.symmetric) {
        const double zero = static_cast<double>(int64_t{1} << (q.spec.bits - 1));
        if (!(q.zeros == zero).all().item<bool>())
            throw FormatError(origin, strprintf("sym is true but a zero point is not %g (GPTQ's symmetric zero for "
                                                "%d bits); the folder should say sym false",
                                                zero, q.spec.bits));
    }
    if (!at::isfinite(q.scales).all().item<bool>()) throw FormatError(origin, "scales hold NaN or infinite values");
}

SparseTensors sparse_pack(const SparsePart& part) {
    if (!part.defined()) return {};
    return {part.index.to(at::kCPU).to(at::kInt).contiguous(), part.value.to(at::kCPU).to(at::kHalf).contiguous()};
}

SparsePart sparse_unpack(const SparseTensors& packed, int64_t out, int64_t in, const std::string& origin) {
    const at::Tensor& idx = packed.idx;
    const at::Tensor& val = packed.val;
    if (idx.dim() != 1 || val.dim() != 1 || idx.size(0) != val.size(0))
        throw FormatError(origin, "sparse part: indices " + shape_to_string(idx.sizes().vec()) + " and values " +
                                      shape_to_string(val.sizes().vec()) + " must be 1-D of one length");
    if (idx.scalar_type() != at::kInt && idx.scalar_type() != at::kLong)
        throw FormatError(origin, "sparse part: indices must be int32 or int64");
    if (!at::isFloatingType(val.scalar_type())) throw FormatError(origin, "sparse part: values must be floating point");
    SparsePart part;
    if (idx.numel() == 0) return part;
    part.index = idx.to(at::kLong);
    part.value = val.to(at::kFloat);
    if (part.index.min().item<int64_t>() < 0 || part.index.max().item<int64_t>() >= out * in)
        throw FormatError(origin, strprintf("sparse part: a position lies outside the %lld x %lld weight",
                                            (long long)out, (long long)in));
    if (part.index.numel() > 1 && !(part.index.narrow(0, 1, part.index.numel() - 1) >
                                    part.index.narrow(0, 0, part.index.numel() - 1)).all().item<bool>())
        throw FormatError(origin, "sparse part: positions must be strictly ascending (no repeats)");
    if (!at::isfinite(part.value).all().item<bool>()) throw FormatError(origin, "sparse part: a value is not finite");
    return part;
}

}  // namespace saliq
