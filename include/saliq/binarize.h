// The seed paper's QAT binarizers (apiq_saliency.md d.5), trained inside ApiQ's partial training instead of the
// uniform quantizer: DB-LLM's flexible dual binarization and BinaryMoS's mixture of scales. The math (initialisation,
// differentiable forward with its straight-through estimator) and the stored form of a finished weight.
//
// Packed layout (model.safetensors of a `saliq_binary` folder; no GPTQ loader reads it, `saliq eval` does):
//   db-llm     <linear>.qweight [in*2/32, out] int32: codes c = 2*b1 + b2 packed along the input dim as GPTQ packs
//                                                     2-bit codes (LSB first), so b1 and b2 are the two bit planes;
//              <linear>.alpha1, <linear>.alpha2 [G, out] fp16; <linear>.g_idx [in] int32 (k / group size);
//              w = alpha1 * b1 + alpha2 * b2.
//   binarymos  <linear>.qweight [ceil(in/32), out] int32: one bit per weight, 1 where sign(W) = +1 (LSB first);
//              <linear>.router [E, in], <linear>.scale_in [E, in], <linear>.scale_out [E, out] fp16;
//              y = ((x * s_in(x)) sign(W)^T) * s_out(x), with g = softmax(x router^T), s_in = g scale_in,
//              s_out = g scale_out, per token.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace saliq {

constexpr int64_t kDefaultMosExperts = 8;

// What each --quantizer is, said once: the uniform grid and the seed paper's two binarizers. Validation, training
// and the folder writer ask this table instead of comparing names.
// Which fake quantizer a --quantizer name is: what code dispatches on (switch), never on the name.
enum class QuantizerFamily { kUniform, kDualBinary, kMixtureOfScales };

struct QuantizerTraits {
    const char* name;
    QuantizerFamily family;
    bool binary;            // a binarizer: BinaryWeight, trained by the LWC methods, saliq_binary folders
    int bits;               // bits per weight it stores; 0: --bits decides (the uniform grid)
    const char* bits_why;   // what the bits are, for the message when --bits disagrees
    bool group_scales;      // its scales are per group of --group-size (db-llm's alphas)
    bool experts;           // BinaryMoS's scale experts (--mos-experts)
    double scale_lr;        // default learning rate of its scales; 0: the method's LWC default
    const char* parts[4];   // a binarizer's packed tensors, suffixes of the linear's name (saliq_binary folders)
};
// The row of `kind`; ConfigError unless it is uniform, db-llm or binarymos.
const QuantizerTraits& quantizer_traits(const std::string& kind);
inline void check_quantizer_name(const std::string& kind) { (void)quantizer_traits(kind); }
inline bool is_binarizer(const std::string& kind) { return quantizer_traits(kind).binary; }

// A weight stored by a binarizer. `kind` is "db-llm" or "binarymos" (empty: not binarized).
struct BinaryWeight {
    std::string kind;
    at::Tensor codes;             // [out, in] uint8: db-llm 2*b1 + b2 in [0, 3]; binarymos 1 where sign(W) = +1
    at::Tensor alpha1, alpha2;    // db-llm: [out, G] fp32 (fp16-representable)
    at::Tensor g_idx;             // db-llm: [in] int64
    at::Tensor router;            // binarymos: [E, in] fp32 (fp16-representable)
    at::Tensor scale_in;          // binarymos: [E, in]
    at::Tensor scale_out;         // binarymos: [E, out]

    bool defined() const { return !kind.empty(); }
    int64_t out_features() const { return codes.size(0); }
    int64_t in_features() const { return codes.size(1); }
    int bits() const { return quantizer_traits(kind).bits; }
    // db-llm: the dense weight alpha1*b1 + alpha2*b2 [out, in] fp32. binarymos: the signs, +-1 [out, in] fp32.
    at::Tensor dequantize() const;
};


// --- DB-LLM flexible dual binarization: per group alpha1 = 2s, alpha2 = -s with s = absmax(group) / 2 at init. ---
struct DualBinaryParams {
    at::Tensor alpha1;  // [out, G]
    at::Tensor alpha2;  // [out, G]
};
DualBinaryParams init_dual_binary(const at::Tensor& weight, int64_t group_size);
// b1 = 1[w >= (a1 + a2) / 2], b2 = 1[w - a1 b1 <= a2 / 2] (per column's group): 2*b1 + b2, uint8, no gradient.
at::Tensor dual_binary_codes(const at::Tensor& weight, const DualBinaryParams& params, const at::Tensor& g_idx);
// w_hat = a1 b1 + a2 b2, differentiable in a1 and a2; the identity straight-through estimator for w.
at::Tensor dual_binary_fake_quant(const at::Tensor& weight, const DualBinaryParams& params, const at::Tensor& g_idx);

// --- BinaryMoS: sign(W) with E experts of input- and output-channel scales mixed per token by a router. ---
struct MosParams {
    at::Tensor router;     // [E, in]
    at::Tensor scale_in;   // [E, in]
    at::Tensor scale_out;  // [E, out]
};
// Scales from a rank-1 SVD of |W| (|W| ~ sigma u v^T: scale_out = sqrt(sigma) |u|, scale_in = sqrt(sigma) |v|, the
// same for every expert); the router uniform in +-1/sqrt(in) (nn.Linear's init; a zero router would leave the
// experts identical forever: each gets the same gradient).
MosParams init_mos(const at::Tensor& weight, int64_t experts);
// sign(w) (+1 at 0) forward; the gradient passes where |w| < 1 (BinaryMoS's STE).
at::Tensor sign_ste(const at::Tensor& w);
// y = ((x * s_in) signs^T) * s_out with the token-wise mixed scales; x [..., in], signs [out, in] +-1.
at::Tensor mos_forward(const at::Tensor& x, const at::Tensor& signs, const MosParams& params);
// The weight with every expert weighted equally, diag(mean scale_out) signs diag(mean scale_in): what the saliency
// regularizer compares with W (the token-wise weight has no single value).
at::Tensor mos_mean_weight(const at::Tensor& signs, const MosParams& params);

// --- Packing (the layout above). ---
// Suffix and tensor of each stored part, in file order.
std::vector<std::pair<std::string, at::Tensor>> binary_pack(const BinaryWeight& w);
// Reads the parts back through `get(suffix)`; checks every shape against [out, in]. Throws FormatError(origin).
template <typename Get>
BinaryWeight binary_unpack(const std::string& kind, int64_t in, int64_t out, Get get, const std::string& origin);
BinaryWeight binary_unpack_parts(const std::string& kind, int64_t in, int64_t out,
                                 const std::vector<std::pair<std::string, at::Tensor>>& parts,
                                 const std::string& origin);
// The suffixes a stored binarized linear has.
std::vector<std::string> binary_suffixes(const std::string& kind);

template <typename Get>
BinaryWeight binary_unpack(const std::string& kind, int64_t in, int64_t out, Get get, const std::string& origin) {
    std::vector<std::pair<std::string, at::Tensor>> parts;
    for (const auto& s : binary_suffixes(kind)) parts.emplace_back(s, get(s));
    return binary_unpack_parts(kind, in, out, parts, origin);
}

}  // namespace saliq
