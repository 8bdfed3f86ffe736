// llama.cpp's importance-matrix GGUF (export.h): what llama-imatrix writes, so llama-quantize can weigh its rounding
// by saliq's calibration windows.
#include <ATen/ATen.h>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/gguf.h"

namespace saliq {

void write_imatrix_gguf(const std::string& path, const std::map<std::string, at::Tensor>& square_sums, int64_t tokens,
                        const std::string& dataset, int64_t windows, int64_t seqlen) {
    if (square_sums.empty() || tokens < 1) throw ConfigError("an importance matrix needs at least one linear and token");
    std::vector<std::string> names;
    std::vector<GgufTensorSpec> specs;
    for (const auto& [hf, sums] : square_sums) {
        const std::string g = gguf_tensor_name(hf);
        names.push_back(hf);
        specs.push_back({g + ".in_sum2", at::kFloat, {sums.numel()}});
        specs.push_back({g + ".counts", at::kFloat, {1}});
    }
    const std::vector<GgufValue> meta = {
        {"general.type", GgufType::kString, GgufType::kString, "imatrix"},
        {"imatrix.datasets", GgufType::kArray, GgufType::kString, nlohmann::json::array({dataset})},
        {"imatrix.chunk_count", GgufType::kUint32, GgufType::kString, windows},
        {"imatrix.chunk_size", GgufType::kUint32, GgufType::kString, seqlen}};
    write_gguf(path, meta, specs, [&](size_t i) {
        if (i % 2 == 1) return at::full({1}, static_cast<double>(tokens), at::kFloat);
        return square_sums.at(names[i / 2]).to(at::kFloat).contiguous();
    });
}

}  // namespace saliq
