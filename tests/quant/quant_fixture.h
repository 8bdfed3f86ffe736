// A folder writer that also installs each finished block into an in-memory model, so tests can compare the
// fake-quantized model the pipeline saw with the packed folder it wrote.
#pragma once

#include <memory>
#include <string>

#include "saliq/corpus.h"
#include "saliq/export.h"
#include "saliq/model.h"
#include "saliq/perplexity.h"
#include "saliq/quantize.h"
#include "saliq/tokenizer.h"

namespace saliq::test {

class RecordingWriter : public GptqFolderWriter {
public:
    RecordingWriter(const std::string& out, const Checkpoint& source, const QuantizeOptions& options, LlamaModel& model)
        : GptqFolderWriter(out, source, options, false), model_(model) {}
    void save(const BlockResult& block) override {
        GptqFolderWriter::save(block);
        for (int i = 0; i < kNumLinears; ++i)
            model_.block(block.layer).linears[i] =
                inference_linear(block.linears[static_cast<size_t>(i)], model_.options());
    }

private:
    LlamaModel& model_;
};

// Quantizes into `out` (the folder finished), and also returns the fake-quantized in-memory model built from the
// same blocks.
inline std::unique_ptr<LlamaModel> quantize_to(const Checkpoint& ckpt, const Tokenizer& tok, const QuantizeOptions& o,
                                               const std::string& out, QuantizeResult* result_out = nullptr) {
    auto model = LlamaModel::load(ckpt, {});
    RecordingWriter writer(out, ckpt, o, *model);
    const QuantizeResult result = quantize_model(ckpt, tok, o, &writer);
    writer.finish(result, {});
    if (result_out) *result_out = result;
    return model;
}

// A quick run on stories260K: 8 x 64 TinyStories windows from the first half, errors on 4 of them.
inline QuantizeOptions small_options(const std::string& method, int bits, int64_t group) {
    QuantizeOptions o;
    o.method = method;
    o.spec.bits = bits;
    o.spec.group_size = group;
    o.calib.source = "tinystories";
    o.calib.nsamples = 8;
    o.calib.seqlen = 64;
    o.calib.range = TokenRange::parse("0:0.5");
    o.error_windows = 4;
    return o;
}

// Perplexity on the held-out second half of TinyStories (calibration draws from the first half), seqlen 128.
inline double heldout_ppl(const LlamaModel& model, const Tokenizer& tok, int64_t max_windows) {
    PerplexityOptions p;
    p.seqlen = 128;
    p.max_windows = max_windows;
    return evaluate_perplexity(model, perplexity_tokens("tinystories", tok, 128, 0.5, 1.0), p).ppl;
}

}  // namespace saliq::test
