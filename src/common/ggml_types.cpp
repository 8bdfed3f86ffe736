#include "saliq/ggml_types.h"

#include "saliq/error.h"

namespace saliq {
namespace {

using Act = GgmlActivation;

constexpr GgmlGridTraits kTraits[] = {
    // ftype of Q3_K: Q3_K_S, of Q4_K: Q4_K_S; activations: ggml-cpu's vec_dot_type of the type
    // grid             name      type block sub bytes bits zero  min    levels fallback         ftype act
    {GgmlGrid::kNone,   "none",   0,   0,    0,  0,    0,   0,    false, false, GgmlGrid::kNone, 0,  Act::kNone},
    {GgmlGrid::kQ4_0,   "q4_0",   2,   32,   32, 18,   4,   8,    false, false, GgmlGrid::kNone, 2,  Act::kQ8_0},
    {GgmlGrid::kQ4_1,   "q4_1",   3,   32,   32, 20,   4,   0,    true,  false, GgmlGrid::kNone, 3,  Act::kQ8_1},
    {GgmlGrid::kQ5_0,   "q5_0",   6,   32,   32, 22,   5,   16,   false, false, GgmlGrid::kNone, 8,  Act::kQ8_0},
    {GgmlGrid::kQ8_0,   "q8_0",   8,   32,   32, 34,   8,   128,  false, false, GgmlGrid::kNone, 7,  Act::kQ8_0},
    {GgmlGrid::kIQ4_NL, "iq4_nl", 20,  32,   32, 18,   4,   0,    false, true,  GgmlGrid::kNone, 25, Act::kQ8_0},
    {GgmlGrid::kQ2_K,   "q2_k",   10,  256,  16, 84,   2,   0,    true,  false, GgmlGrid::kQ4_0, 10, Act::kQ8_K},
    {GgmlGrid::kQ3_K,   "q3_k",   11,  256,  16, 110,  3,   4,    false, false, GgmlGrid::kQ4_0, 11, Act::kQ8_K},
    {GgmlGrid::kQ4_K,   "q4_k",   12,  256,  32, 144,  4,   0,    true,  false, GgmlGrid::kQ5_0, 14, Act::kQ8_K},
};

}  // namespace

const GgmlGridTraits& ggml_grid_traits(GgmlGrid grid) { return kTraits[static_cast<size_t>(grid)]; }

GgmlGrid parse_ggml_grid(const std::string& name) {
    if (name.empty()) return GgmlGrid::kNone;
    std::string names;
    for (const auto& t : kTraits) {
        if (name == t.name) return t.grid;
        names += std::string(names.empty() ? "" : ", ") + t.name;
    }
    throw ConfigError("--grid must be one of " + names + ", not '" + name + "'");
}

GgmlGrid ggml_grid_of_type(uint32_t ggml_type) {
    for (const auto& t : kTraits)
        if (t.grid != GgmlGrid::kNone && t.ggml_type == ggml_type) return t.grid;
    return GgmlGrid::kNone;
}

GgmlGrid ggml_grid_for_row(GgmlGrid grid, int64_t in) {
    while (grid != GgmlGrid::kNone && in % ggml_grid_traits(grid).block != 0) grid = ggml_grid_traits(grid).fallback;
    return grid;
}

}  // namespace saliq
