#include "saliq/generate.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "saliq/error.h"
#include "saliq/model.h"
#include "saliq/tokenizer.h"

namespace saliq {

std::vector<int32_t> generate_greedy(const LlamaModel& model, const std::vector<int32_t>& prompt_ids,
                                     int64_t max_tokens, int32_t stop_a, int32_t stop_b) {
    if (prompt_ids.empty()) throw ConfigError("generation needs at least one prompt token");
    c10::InferenceMode guard;
    std::vector<int64_t> sequence(prompt_ids.begin(), prompt_ids.end());
    std::vector<int32_t> generated;
    const int64_t context = model.config().max_position_embeddings;
    // The prompt once, then one token per step against the blocks' key/value cache.
    std::vector<LayerCache> cache;
    at::Tensor ids = at::tensor(sequence, at::kLong).unsqueeze(0);
    while (static_cast<int64_t>(generated.size()) < max_tokens && static_cast<int64_t>(sequence.size()) < context) {
        at::Tensor logits = model.forward_cached(ids, cache);  // [1, T, V]
        const int32_t next = static_cast<int32_t>(logits[0][-1].argmax().item<int64_t>());
        if (next == stop_a || next == stop_b) break;
        generated.push_back(next);
        sequence.push_back(next);
        ids = at::full({1, 1}, static_cast<int64_t>(next), at::kLong);
    }
    return generated;
}

std::string generate_text(const LlamaModel& model, const Tokenizer& tokenizer, const std::string& prompt,
                          int64_t max_tokens) {
    std::vector<int32_t> ids = tokenizer.prefix();
    const size_t prefix = ids.size();
    if (!prompt.empty()) {
        const auto body = tokenizer.encode(prompt);
        ids.insert(ids.end(), body.begin(), body.end());
    }
    if (ids.empty()) throw ConfigError("this model's tokenizer adds no BOS: give a prompt to continue");
    const auto out = generate_greedy(model, ids, max_tokens, tokenizer.eos_id(), tokenizer.bos_id());
    std::vector<int32_t> all(ids.begin() + static_cast<std::ptrdiff_t>(prefix), ids.end());
    all.insert(all.end(), out.begin(), out.end());
    return tokenizer.decode(all);
}

}  // namespace saliq
