// What each quantization method is and supports, said once: one row per method, as llama.cpp's ggml_type_traits
// says once what each GGML type is. Validation, the pipeline, export and the CLI ask this table; nobody compares
// method names. A method is its own file under src/quant/methods/ plus one row in src/quant/method_registry.cpp
// (or a register_method call, as a test or an extension makes).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace saliq {

class QuantMethod;

struct MethodTraits {
    std::string name;     // --method
    std::string summary;  // one line for --help
    std::function<std::unique_ptr<QuantMethod>()> make;
    // False: the method quantizes from the weights alone (no calibration windows, no forward passes).
    bool needs_calibration = true;
    // The method also needs the FP block's inputs (the FP chain run beside the quantized one).
    bool needs_fp_chain = false;
    // Every sum over the calibration windows goes through the distributed collectives, so the method may run over
    // the ranks' shards of them and reach what one process reaches.
    bool shards_windows = false;
    // Optimizer steps over batches of the windows (--epochs, --stages, --lwc-lr, --train-*; --saliency's
    // regularizer); over ranks, in lockstep.
    bool trains = false;
    // LoRA adapters beside the grid (--lora-*); the folder holds a PEFT adapter.
    bool trains_adapters = false;
    // Learned weight clipping (LWC): its factors go to the manifest.
    bool learns_clipping = false;
    // GPTQ's solver takes a column order from the Hessian's diagonal: --act-order, --group-order.
    bool orders_columns = false;
    // The group-aware order is the default (gptq: measured better on stories260K W2 g32, 3/3 seeds, and SmolLM2-135M
    // W3 g64; slim-llm: worse on 3/3 seeds, so it keeps the natural order).
    bool groups_ordered_by_default = false;
    // Allocates its own mixed-precision bit map from salience (SliM-LLM; --slim-lambda).
    bool allocates_bits = false;
    // Trains on a given bit map (--bit-map slim or a file); a method that allocates bits with LWC sets both.
    bool takes_bit_map = false;
    // Trains the binarizers (--quantizer db-llm / binarymos) as well as the uniform grid.
    bool trains_binarizers = false;
    // Quantizes onto a GGML block type (--grid): its codes and scales are then exactly what the type stores.
    bool supports_ggml_grid = false;
    // Can start its clipping factors from a search on the block's inputs (--lwc-init search) instead of min-max.
    bool searches_clipping_init = false;
    // Can weigh its group fit by the columns' input mean squares on calibration windows (--rtn-importance).
    bool fits_by_input_importance = false;
};

// The row of --method `name`; ConfigError naming the methods there are.
const MethodTraits& method_traits(const std::string& name);
// Every row, in registration order.
const std::vector<MethodTraits>& method_table();
// Adds a row (a method defined outside the registry). ConfigError for an empty or taken name or no factory.
void register_method(MethodTraits traits);
// "a, b or c": the methods with a trait, for messages.
std::string methods_where(bool MethodTraits::*trait);

}  // namespace saliq
