// The interface every quantization method implements (one method per file in methods/).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "saliq/method_traits.h"
#include "saliq/model.h"
#include "saliq/quantize.h"

namespace saliq {

struct BlockContext {
    int64_t layer = 0;
    const LlamaConfig* config = nullptr;
    const Rope* rope = nullptr;
    const at::Tensor* inputs = nullptr;     // [N, T, H] inputs of the quantized chain
    const at::Tensor* fp_inputs = nullptr;  // [N, T, H] inputs of the FP chain, when the method asked for them
    const QuantizeOptions* options = nullptr;
    // A method that runs the FP block over the whole FP chain anyway stores the result here (in the buffers'
    // dtype), and the pipeline moves the FP chain on with it instead of running that forward a second time.
    at::Tensor* fp_outputs = nullptr;
    // Likewise, a method that ends with the quantized block's outputs over `inputs` (run(block, *inputs) with the
    // linears it leaves) stores them here, and the pipeline moves the quantized chain on with them.
    at::Tensor* outputs = nullptr;
    // ReQuant (--sparse-outliers): each linear's S_outlier (flat positions, FP values). The block's linears then
    // still compute with the FP weight W but their weight() is W_dense = W - S_outlier, what the method quantizes.
    // Null without outliers. A method that trains keeps S in its forward; the GPTQ solver keeps them exact itself;
    // for the others the pipeline adds them back after.
    const std::vector<SparsePart>* outliers = nullptr;
    const SparsePart* outlier(int index) const {
        return outliers != nullptr && (*outliers)[static_cast<size_t>(index)].defined()
                   ? &(*outliers)[static_cast<size_t>(index)]
                   : nullptr;
    }

    // Runs `block` over every window of `x` in batches of options->batch_size; returns [N, T, H] in x's dtype
    // (the activation buffers' storage dtype), computing each batch in the block's own dtype.
    at::Tensor run(const DecoderBlock& block, const at::Tensor& x) const;
};

// Windows [b, b + n) of an activation buffer, in the compute dtype of `block` (buffers may be stored narrower).
at::Tensor compute_slice(const at::Tensor& buffer, int64_t b, int64_t n, const DecoderBlock& block);

// Weights of one decoder block (the seven linears).
int64_t block_parameter_count(const LlamaConfig& config);

// What a training step holds besides the weights, per optimizer step of `windows` windows of T tokens: the
// fake-quantized weights, their gradients and autograd's copies (3 x block weights, fp32), and the block's saved
// activations (about 10 hidden-wide and 4 intermediate-wide fp32 rows per token).
uint64_t training_workspace_bytes(const LlamaConfig& config, int64_t windows, int64_t seqlen);

// A method's work on one block. What the method supports is its row in the traits table (method_traits.h).
class QuantMethod {
public:
    virtual ~QuantMethod() = default;
    // Activation buffers of [N, T, hidden] the method holds at once besides the pipeline's own (for the memory
    // estimate printed before a run); a buffer of wider rows counts as its width / hidden.
    virtual double extra_activation_buffers(const LlamaConfig& /*config*/) const { return 0.0; }
    // Bytes the method needs while one block is quantized beyond those buffers and the block's weights (GPTQ's
    // Hessians and their factors, training's fake-quantized weights, gradients and saved activations); estimate.
    virtual uint64_t workspace_bytes(const LlamaConfig& /*config*/, const QuantizeOptions& /*options*/) const {
        return 0;
    }
    // Replaces every linear of `block` by its quantized form. Returns method statistics for the manifest.
    virtual nlohmann::json quantize_block(DecoderBlock& block, const BlockContext& context) = 0;
    // The finished linears of the last block, when they carry more than a QuantizedLinear shows (adapters, clipping
    // factors). Empty: the pipeline reads the QuantizedLinear of each slot.
    virtual std::vector<LinearResult> take_results() { return {}; }
};

std::unique_ptr<QuantMethod> make_rtn_method();
std::unique_ptr<QuantMethod> make_gptq_method();
std::unique_ptr<QuantMethod> make_slim_llm_method();
std::unique_ptr<QuantMethod> make_slim_llm_plus_method();
std::unique_ptr<QuantMethod> make_omniquant_method();
std::unique_ptr<QuantMethod> make_apiq_bw_method();
std::unique_ptr<QuantMethod> make_apiq_lw_method();

// A linear that reports each input it sees, then computes like the wrapped one (forward hooks).
class CapturingLinear : public WrappingLinear {
public:
    using Hook = std::function<void(const at::Tensor& x)>;
    CapturingLinear(std::shared_ptr<Linear> inner, Hook hook)
        : WrappingLinear(std::move(inner)), hook_(std::move(hook)) {}
    at::Tensor forward(const at::Tensor& x) const override;

private:
    Hook hook_;
};

// Every linear of a block, in forward order.
inline const std::vector<int> kAllLinears = {kQProj, kKProj, kVProj, kOProj, kGateProj, kUpProj, kDownProj};

// `block` with the linears `indices` wrapped so that each appends the inputs it sees to seen[index]
// (`seen` needs kNumLinears slots and must outlive the returned block's use).
DecoderBlock capturing_block(const DecoderBlock& block, const std::vector<int>& indices,
                             std::vector<std::vector<at::Tensor>>& seen);

// E[x_j^2] [in] over every token each linear of `block` reads when it runs on the context's inputs (over all ranks'
// windows; fp32): llama.cpp's importance matrix, diag(X^T X) / tokens, which --lwc-init search and --rtn-importance
// weigh the group fit by. The block's output goes to `output` when given (one pass serves both).
std::vector<at::Tensor> input_second_moments(const DecoderBlock& block, const BlockContext& context,
                                             at::Tensor* output = nullptr);

// Stores with a finished linear the sparse part that restores its outliers' FP values on top of its grid and LoRA
// (FP16, as the folder holds it). NumericError for an outlier past fp16's range.
void attach_outlier(LinearResult& result, const SparsePart& outliers);

}  // namespace saliq
