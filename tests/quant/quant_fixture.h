// A folder writer that also installs each finished block into an in-memory model, so tests can compare the
// fake-quantized model the pipeline saw with the packed folder it wrote.
#pragma once

#include "saliq/export.h"
#include "saliq/model.h"
#include "saliq/quantize.h"

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

}  // namespace saliq::test
