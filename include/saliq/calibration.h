// Calibration windows for quantization, drawn reproducibly, and token ranges that keep them apart from the
// evaluation windows when both come from the same file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saliq {

class Tokenizer;

// A half-open fraction [begin, end) of a token stream (or, for c4, of its documents). Parsed from "0.5:1".
struct TokenRange {
    double begin = 0.0;
    double end = 1.0;
    static TokenRange parse(const std::string& text);  // throws ConfigError
    std::string to_string() const;
    bool whole() const { return begin == 0.0 && end == 1.0; }
    bool overlaps(const TokenRange& other) const { return begin < other.end && other.begin < end; }
};

struct CalibOptions {
    std::string source = "wikitext2";  // a corpus name (wikitext2, c4, ptb, tinystories) or a text file
    int64_t nsamples = 128;
    int64_t seqlen = 2048;
    uint64_t seed = 0;
    TokenRange range;                  // part of the source windows are drawn from
};

struct CalibSet {
    std::vector<int32_t> tokens;       // [nsamples * seqlen], window after window
    std::vector<int64_t> starts;       // token offset of each window in the stream (c4: document index)
    std::vector<int64_t> offsets;      // c4 only: offset within the document
    int64_t stream_tokens = 0;         // tokens (c4: documents) in the range windows were drawn from
};

// Draws nsamples windows of seqlen tokens: for a text, uniform starts in the range of [BOS] + encode(text) (GPTQ's
// randint(0, L - seqlen - 1)); for c4, a uniform document of the range with more than seqlen tokens, then a uniform
// start. Uses Rng(seed). Throws ConfigError when the range is too small for one window.
CalibSet sample_calibration(const CalibOptions& options, const Tokenizer& tokenizer);

}  // namespace saliq
