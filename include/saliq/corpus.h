// Evaluation and calibration text: the bundled data sets (by name) or any text file, tokenized per protocol.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace saliq {

class Tokenizer;

// The shared data folder: $SALIQ_DATA_DIR, else ../shared/data from the working directory, else from the binary.
std::string data_dir();

// Names accepted by --dataset / --calib.
const std::vector<std::string>& corpus_names();

// The file behind a named corpus, e.g. wikitext2 -> <data>/text/wikitext2/wiki.test.raw.
std::string corpus_path(const std::string& name);

// Text of a document-level corpus joined the way the reference protocols do:
//   wikitext2: Hugging Face rows (blank lines -> "", others keep their "\n") joined with "\n\n" (GPTQ);
//   ptb: stripped sentences joined with " " (GPTQ); tinystories and files: as-is.
std::string corpus_text(const std::string& name_or_path);

// Documents of the C4 subset (JSON Lines, field "text").
std::vector<std::string> c4_documents(const std::string& path);

// Token stream scored for perplexity:
//   c4: 256 windows of `seqlen`, each a random slice of a random document ([BOS] + text) with >= seqlen tokens,
//       drawn with std::mt19937_64 seeded with 0 (the GPTQ protocol, on our 2,000-document subset);
//   anything else: [BOS] + encode(corpus_text).
// `begin`/`end` restrict it to a fraction of the stream (c4: of the documents), to hold out calibration data.
std::vector<int32_t> perplexity_tokens(const std::string& name_or_path, const Tokenizer& tokenizer, int64_t seqlen,
                                       double begin = 0.0, double end = 1.0);

// Uniform integer in [lo, hi] from a 64-bit Mersenne Twister, by rejection (no implementation-defined
// std::uniform_int_distribution), so window choices are the same on every platform.
// (std::mt19937_64's output sequence is fixed by the standard; its distributions are not.)
class Rng {
public:
    explicit Rng(uint64_t seed) : engine_(seed) {}
    int64_t uniform(int64_t lo, int64_t hi);

private:
    std::mt19937_64 engine_;
};

}  // namespace saliq
