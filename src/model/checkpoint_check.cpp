// A checkpoint's tensors against what its config.json claims, from the safetensors headers alone: run before the
// first weight is read, so a folder that disagrees with itself is refused at load instead of scored (or refused
// only when a streamed evaluation reaches its last block).
#include <algorithm>
#include <set>

#include <ATen/ATen.h>

#include "saliq/binarize.h"
#include "saliq/error.h"
#include "saliq/model.h"
#include "saliq/quantizer.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

const char* const kGptqSuffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
const char* const kMixedSuffixes[] = {".qweight", ".scales", ".zeros", ".group_bits"};
const char* const kGgmlSuffixes[] = {".qweight", ".ggml_type"};
// Every suffix a packed linear may carry in any layout saliq reads (GPTQ, mixed precision, the binarizers).
const char* const kAnyPackedSuffixes[] = {".qweight", ".qzeros",   ".scales",    ".g_idx", ".zeros", ".group_bits",
                                          ".alpha1",  ".alpha2",   ".router",    ".scale_in", ".scale_out",
                                          ".ggml_type",
                                          ".outlier_idx", ".outlier_val", ".significant_idx", ".significant_val"};

std::string dtype_name(at::ScalarType t) { return c10::toString(t); }

void expect_tensor(const TensorSource& tensors, const std::string& name, const std::vector<int64_t>& shape,
                   const std::vector<at::ScalarType>& dtypes, const std::string& why) {
    if (!tensors.has(name))
        throw FormatError(tensors.origin(), "tensor '" + name + "' is missing (" + why + ")");
    const auto [dtype, sizes] = tensors.describe(name);
    if (sizes != shape)
        throw FormatError(tensors.origin(), "tensor '" + name + "' has shape " + shape_to_string(sizes) + ", " + why +
                                                " implies " + shape_to_string(shape));
    bool ok = false;
    std::string allowed;
    for (at::ScalarType d : dtypes) {
        ok = ok || d == dtype;
        allowed += (allowed.empty() ? "" : " or ") + dtype_name(d);
    }
    if (!ok)
        throw FormatError(tensors.origin(), "tensor '" + name + "' is " + dtype_name(dtype) + ", " + why +
                                                " stores " + allowed);
}

// ReQuant's sparse parts of one linear (gptq_pack.h): only where quantization_config says saliq_sparse, each as
// a pair of 1-D tensors of one length, int positions and float values.
void check_sparse_tensors(const TensorSource& tensors, const std::string& name, const PackedInfo& packed,
                          const std::string& claim) {
    for (const std::string part : {".outlier", ".significant"}) {
        const std::string idx = name + part + "_idx", val = name + part + "_val";
        const bool has_idx = tensors.has(idx), has_val = tensors.has(val);
        if (!has_idx && !has_val) continue;
        if (!packed.sparse)
            throw FormatError(tensors.origin(), "tensor '" + (has_idx ? idx : val) + "' is a sparse part, but " + claim +
                                                    " has no saliq_sparse to say the linears carry them");
        if (has_idx != has_val)
            throw FormatError(tensors.origin(), "'" + (has_idx ? idx : val) + "' without '" + (has_idx ? val : idx) + "'");
        const auto [idx_type, idx_shape] = tensors.describe(idx);
        const auto [val_type, val_shape] = tensors.describe(val);
        if ((idx_type != at::kInt && idx_type != at::kLong) || idx_shape.size() != 1)
            throw FormatError(tensors.origin(), "tensor '" + idx + "' is " + dtype_name(idx_type) + " " +
                                                    shape_to_string(idx_shape) + ", a sparse part stores Int [nnz]");
        if ((val_type != at::kHalf && val_type != at::kFloat && val_type != at::kBFloat16) || val_shape != idx_shape)
            throw FormatError(tensors.origin(), "tensor '" + val + "' is " + dtype_name(val_type) + " " +
                                                    shape_to_string(val_shape) + ", a sparse part stores Half " +
                                                    shape_to_string(idx_shape) + " beside its positions");
    }
}

}  // namespace

void check_checkpoint_tensors(const Checkpoint& checkpoint) {
    const LlamaConfig& c = checkpoint.config;
    const PackedInfo& packed = checkpoint.packed;
    const TensorSource& tensors = *checkpoint.tensors;
    const int64_t H = c.hidden_size;
    const auto shapes = linear_shapes(c);  // [out, in] of each linear
    const std::vector<at::ScalarType> floats = {at::kFloat, at::kHalf, at::kBFloat16};
    const bool ggml = packed.grid != GgmlGrid::kNone;
    const bool is_gptq = packed.bits > 0 && packed.binarizer.empty() && !packed.mixed && !ggml;
    std::vector<std::string> suffixes;
    if (is_gptq) suffixes.assign(std::begin(kGptqSuffixes), std::end(kGptqSuffixes));
    else if (ggml) suffixes.assign(std::begin(kGgmlSuffixes), std::end(kGgmlSuffixes));
    else if (packed.mixed) suffixes.assign(std::begin(kMixedSuffixes), std::end(kMixedSuffixes));
    else if (!packed.binarizer.empty()) suffixes = binary_suffixes(packed.binarizer);
    const std::string claim =
        ggml ? std::string("quantization_config saliq_ggml grid ") + ggml_grid_traits(packed.grid).name
        : packed.binarizer.empty()
            ? strprintf("quantization_config %sbits %d group_size %lld", packed.mixed ? "saliq_mixed " : "",
                        packed.bits, (long long)packed.group_size)
            : "quantization_config " + packed.binarizer;

    std::set<std::string> linears;
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
        for (int i = 0; i < 7; ++i) {
            const std::string name = hf_names::linear_name(layer, i);
            linears.insert(name);
            const int64_t out = shapes[i][0], in = shapes[i][1];
            const bool has_packed = tensors.has(name + ".qweight");
            if (packed.bits == 0) {
                if (has_packed)
                    throw FormatError(tensors.origin(), "tensor '" + name + ".qweight' is packed, but config.json has "
                                                        "no quantization_config to say how");
                expect_tensor(tensors, name + ".weight", {out, in}, floats, "the config");
                continue;
            }
            if (!has_packed)
                throw FormatError(tensors.origin(), "linear '" + name + "' is not packed (no .qweight), but " + claim +
                                                        " says every linear is");
            if (tensors.has(name + ".weight"))
                throw FormatError(tensors.origin(), "linear '" + name + "' has both a dense .weight and a packed "
                                                    ".qweight; which one is the model?");
            QuantSpec spec;
            spec.bits = packed.bits;
            spec.group_size = packed.group_size;
            const int64_t G = spec.n_groups(in);
            if (ggml) {  // the row's width in bytes follows its type: checked as each block decodes
                const auto [dtype, qshape] = tensors.describe(name + ".qweight");
                if (dtype != at::kByte || qshape.size() != 2 || qshape[0] != out)
                    throw FormatError(tensors.origin(), "tensor '" + name + ".qweight' is " + dtype_name(dtype) + " " +
                                                            shape_to_string(qshape) + ", " + claim + " stores Byte [" +
                                                            std::to_string(out) + ", row bytes]");
                expect_tensor(tensors, name + ".ggml_type", {1}, {at::kInt}, claim);
                continue;
            }
            if (packed.mixed) {  // qweight's height follows group_bits: checked as each block unpacks
                if (!tensors.has(name + ".qweight"))
                    throw FormatError(tensors.origin(), "tensor '" + name + ".qweight' is missing (" + claim + ")");
                const auto [dtype, qshape] = tensors.describe(name + ".qweight");
                if (dtype != at::kInt || qshape.size() != 2 || qshape[1] != out)
                    throw FormatError(tensors.origin(), "tensor '" + name + ".qweight' is " + dtype_name(dtype) + " " +
                                                            shape_to_string(qshape) + ", " + claim + " stores Int [*, " +
                                                            std::to_string(out) + "]");
                expect_tensor(tensors, name + ".scales", {G, out}, floats, claim);
                expect_tensor(tensors, name + ".zeros", {G, out}, floats, claim);
                expect_tensor(tensors, name + ".group_bits", {G}, {at::kInt, at::kLong, at::kByte}, claim);
                check_sparse_tensors(tensors, name, packed, claim);
                continue;
            }
            if (!is_gptq) {
                for (const auto& s : suffixes)
                    if (!tensors.has(name + s))
                        throw FormatError(tensors.origin(), "tensor '" + name + s + "' is missing (" + claim + ")");
                continue;
            }
            check_sparse_tensors(tensors, name, packed, claim);
            const int bits = packed.bits;
            expect_tensor(tensors, name + ".qweight", {(in * bits + 31) / 32, out}, {at::kInt}, claim);
            expect_tensor(tensors, name + ".qzeros", {G, (out * bits + 31) / 32}, {at::kInt}, claim);
            expect_tensor(tensors, name + ".scales", {G, out}, floats, claim);
            // Without act-order a folder may leave g_idx out (AutoRound does): column k is in group k / group_size.
            if (tensors.has(name + ".g_idx") || packed.desc_act)
                expect_tensor(tensors, name + ".g_idx", {in}, {at::kInt, at::kLong}, claim);
        }
    }
    // Nothing packed that the model does not have: a stray tensor means the config and the weights were made for
    // different models (or a layout saliq does not read), and ignoring it would score something else.
    for (const auto& name : tensors.names()) {
        for (const char* suffix : kAnyPackedSuffixes) {
            if (!ends_with(name, suffix)) continue;
            const std::string base = name.substr(0, name.size() - std::string(suffix).size());
            const bool sparse_part = std::string(suffix).find("_idx") != std::string::npos ||
                                     std::string(suffix).find("_val") != std::string::npos;
            const bool ours = std::find(suffixes.begin(), suffixes.end(), suffix) != suffixes.end() ||
                              (sparse_part && packed.sparse && packed.binarizer.empty());
            if (linears.count(base) == 0 || !ours)
                throw FormatError(tensors.origin(),
                                  "stray packed tensor '" + name + "': " +
                                      (linears.count(base) == 0
                                           ? strprintf("not a linear of this %lld-layer model", (long long)c.n_layers)
                                           : (packed.bits == 0 ? std::string("config.json has no quantization_config")
                                                               : "not part of the layout " + claim + " names")));
        }
    }
    expect_tensor(tensors, hf_names::kEmbed, {c.vocab_size, H}, floats, "the config");
    expect_tensor(tensors, hf_names::kFinalNorm, {H}, floats, "the config");
    if (!c.tie_word_embeddings) expect_tensor(tensors, hf_names::kLmHead, {c.vocab_size, H}, floats, "the config");
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
        const std::string p = hf_names::layer_prefix(layer);
        expect_tensor(tensors, p + hf_names::kInputNorm, {H}, floats, "the config");
        expect_tensor(tensors, p + hf_names::kPostNorm, {H}, floats, "the config");
    }
}

}  // namespace saliq
