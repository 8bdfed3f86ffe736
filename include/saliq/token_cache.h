// Tokenized corpora kept on disk, so a second eval or calibration of the same text with the same tokenizer does not
// re-tokenize it (WikiText-2 with the LLaMA tokenizer: about 2.5 s of every run).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saliq {

class Tokenizer;

// The cache folder: $SALIQ_CACHE_DIR/tokens, else $XDG_CACHE_HOME/saliq/tokens, else ~/.cache/saliq/tokens;
// "" (no cache) when SALIQ_CACHE_DIR is "off" or no home is known.
std::string token_cache_dir();

// tokenizer.encode(text), read from the cache when an entry for the tokenizer file's and the text's SHA-256 exists and
// checks out (size and checksum of its tokens), else encoded and stored (temporary name, then rename). Texts under
// 64 KiB are encoded directly. A cache that cannot be read or written is passed over, never an error.
std::vector<int32_t> encode_cached(const Tokenizer& tokenizer, const std::string& text);

}  // namespace saliq
