// A folder writer that also installs each finished block into an in-memory model, so tests can compare the
// fake-quantized model the pipeline saw with the packed folder it wrote.
#pragma once

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
