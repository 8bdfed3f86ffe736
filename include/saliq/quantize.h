// Quantizing a model block by block: one driver for every method.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "saliq/calibration.h"
#include "saliq/checkpoint.h"
#include "saliq/model.h"
#include "saliq/progress.h"
#include "saliq/quantizer.h"

namespace saliq {

class Tokenizer;

struct GptqOptions {
    double damp = 0.01;           // fraction of mean(diag(H)) added to the diagonal
    int64_t block_size = 128;     // lazy-batch width (rounded to a multiple of the group size)
    bool act_order = false;       // desc_act: columns by descending diag(H)
    bool true_sequential = true;  // [k,v,q] -> [o] -> [up,gate] -> [down], each seeing quantized predecessors
};

struct QuantizeOptions {
    std::string method = "rtn";
    QuantSpec spec;
    CalibOptions calib;
    ModelOptions model;
    int64_t batch_size = 8;       // windows per forward pass inside the pipeline
    int64_t error_windows = 16;   // calibration windows used to measure each layer's reconstruction error
    GptqOptions gptq;
};

// One quantized linear of a finished block.
struct LinearResult {
    std::string name;             // model.layers.3.mlp.up_proj
    QuantizedTensor q;
    double rel_error = 0.0;       // ||X (W - Q)^T||^2 / ||X W^T||^2 on calibration inputs
};

struct BlockResult {
    int64_t layer = 0;
    std::vector<LinearResult> linears;
    double block_error = 0.0;     // relative error of the block's output vs the FP block, same inputs
    double seconds = 0.0;
    nlohmann::json method_stats = nlohmann::json::object();
};

struct QuantizeResult {
    CalibSet calib;
    std::vector<BlockResult> blocks;
    double calib_seconds = 0.0;
    double seconds = 0.0;
};

// Receives each block as soon as it is finished (the export layer writes it to disk).
using BlockSink = std::function<void(const BlockResult&)>;

struct MethodInfo {
    const char* name;
    const char* description;
};
const std::vector<MethodInfo>& quant_methods();

// Runs the pipeline: calibration windows -> embedding -> for each block: load its FP weights from the checkpoint,
// quantize with the method, propagate the quantized block's outputs. Only one block's weights are resident.
QuantizeResult quantize_model(const Checkpoint& checkpoint, const Tokenizer& tokenizer, const QuantizeOptions& options,
                              const BlockSink& sink = nullptr, const ProgressFn& progress = nullptr);

}  // namespace saliq
