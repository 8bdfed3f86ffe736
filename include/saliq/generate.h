// Greedy decoding, as a correctness probe of the forward pass.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saliq {

class LlamaModel;
class Tokenizer;

// Starts from [BOS] + encode(prompt) (just [BOS] for an empty prompt) and appends argmax tokens until
// `max_tokens` new tokens, EOS/BOS, or the model's context is full. Returns the new token ids.
std::vector<int32_t> generate_greedy(const LlamaModel& model, const std::vector<int32_t>& prompt_ids,
                                     int64_t max_tokens, int32_t stop_a, int32_t stop_b);

// Prompt plus continuation as text.
std::string generate_text(const LlamaModel& model, const Tokenizer& tokenizer, const std::string& prompt,
                          int64_t max_tokens);

}  // namespace saliq
