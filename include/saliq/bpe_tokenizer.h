// Byte-level BPE (the GPT-2 / LLaMA-3 scheme) as Hugging Face's tokenizers runs a tokenizer.json: added tokens
// matched first (leftmost, longest), the pre-tokenizer's splits (Split regexes, ByteLevel, Digits, in sequence),
// bytes spelled as GPT-2's printable characters, then the merges applied lowest rank first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "saliq/tokenizer.h"

namespace saliq {

class BpeTokenizer final : public Tokenizer {
public:
    // Throws FormatError (naming `origin`) for a malformed document, ConfigError for a valid tokenizer.json whose
    // normalizer, pre-tokenizer or model saliq does not run (the message names it).
    static std::shared_ptr<BpeTokenizer> create(const nlohmann::json& tokenizer, const nlohmann::json& config,
                                                const std::string& origin);
    ~BpeTokenizer() override;

    std::vector<int32_t> encode(const std::string& text) const override;
    std::string decode(const std::vector<int32_t>& ids) const override;
    std::string piece(int32_t id) const override;
    float score(int32_t id) const override;
    int piece_type(int32_t id) const override;
    bool is_bpe() const override { return true; }

    // For writers (the GGUF export): the merges "left right" in rank order and the tokenizer.json's pre-tokenizer.
    const std::vector<std::string>& merges() const;
    const nlohmann::json& pre_tokenizer() const;

private:
    BpeTokenizer();
    static std::shared_ptr<BpeTokenizer> create_checked(const nlohmann::json& tokenizer, const nlohmann::json& config,
                                                        const std::string& origin);
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// `path` is a tokenizer.json; tokenizer_config.json beside it (if any) gives BOS/EOS and add_bos_token.
std::shared_ptr<Tokenizer> load_tokenizer_json(const std::string& path);
// The byte-level BPE vocabulary a GGUF file embeds (tokenizer.ggml.model "gpt2").
std::shared_ptr<Tokenizer> load_gguf_vocabulary(const std::string& path);

}  // namespace saliq
