// What each GGML block type saliq quantizes onto stores (issue 29): one traits table, as ggml's type traits, read
// by the quantizer (ops), the folder and GGUF readers (io) and validation; no tensors here. The codec is ggml_grid.h.
#pragma once

#include <cstdint>
#include <string>

namespace saliq {

enum class GgmlGrid : uint8_t { kNone, kQ4_0, kQ4_1, kQ5_0, kQ8_0, kIQ4_NL, kQ2_K, kQ3_K, kQ4_K };

// The 8-bit type llama.cpp's CPU backend quantizes a product's activations to before multiplying them with a weight
// of a GGML type (ggml-cpu's `vec_dot_type`): Q8_0 (32 int8 with an fp16 scale), Q8_1 (the same plus an fp16 sum
// for the types with a min), Q8_K (256 int8 with an fp32 scale, for the k-quants).
enum class GgmlActivation : uint8_t { kNone, kQ8_0, kQ8_1, kQ8_K };

struct GgmlGridTraits {
    GgmlGrid grid;
    const char* name;        // as --grid and the folder spell it: "q2_k"
    uint32_t ggml_type;      // GGUF's type id
    int64_t block;           // weights per block: 32, or a k-quant's super-block of 256
    int64_t sub_block;       // weights per scale (saliq's group size)
    int64_t block_bytes;
    int bits;                // code width
    int zero;                // ŵ = s·(code − zero) for the types without a stored min
    bool has_min;            // Q4_1, Q2_K, Q4_K: an offset per group of its own
    bool levels;             // IQ4_NL: codes index a table of 16 non-uniform levels
    GgmlGrid fallback;       // for rows that are not a multiple of `block`: llama-quantize's substitute
    int llama_ftype;         // general.file_type of a file mostly of this type (LLAMA_FTYPE_MOSTLY_*)
    GgmlActivation vec_dot;  // what llama.cpp's CPU kernels round the activations to in this type's products
};

const GgmlGridTraits& ggml_grid_traits(GgmlGrid grid);
// "q4_k" -> GgmlGrid::kQ4_K; "none" or "" -> kNone; ConfigError listing the choices otherwise.
GgmlGrid parse_ggml_grid(const std::string& name);
// The grid of a GGUF type id (kNone when saliq has no grid for it).
GgmlGrid ggml_grid_of_type(uint32_t ggml_type);
// The grid a row of `in` weights takes on `grid`: itself, or llama-quantize's fallback (src/llama-quant.cpp:
// Q2_K / Q3_K -> Q4_0, Q4_K -> Q5_0) when `in` is not a multiple of the block; kNone when no grid fits (in not a multiple of 32).
GgmlGrid ggml_grid_for_row(GgmlGrid grid, int64_t in);

}  // namespace saliq
