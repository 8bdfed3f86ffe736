// Tokenizers behind one interface: SentencePiece `.model` files (LLaMA-1/2; the library is isolated in a dlmopen'ed
// shim, see tokenizer.cpp) and byte-level BPE (GPT-2 / LLaMA-3 / SmolLM: a Hugging Face `tokenizer.json`, or the
// vocabulary a GGUF file embeds; bpe_tokenizer.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace saliq {

class Tokenizer {
public:
    // By the file: `tokenizer.json` (or any .json) is byte-level BPE, with BOS/EOS and whether BOS starts a text from
    // the tokenizer_config.json beside it; `.gguf` is the BPE vocabulary the file embeds; anything else is read as a
    // SentencePiece model. Throws IoError/FormatError with the path, ConfigError for a tokenizer saliq cannot run.
    static std::shared_ptr<Tokenizer> load(const std::string& path);
    // Byte-level BPE from a tokenizer.json document and a tokenizer_config.json one (null when there is none);
    // `origin` names them in messages and keys the token cache.
    static std::shared_ptr<Tokenizer> from_json(const nlohmann::json& tokenizer, const nlohmann::json& config,
                                                const std::string& origin);
    virtual ~Tokenizer() = default;
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // Encodes without BOS/EOS (SentencePiece adds its dummy prefix space as LLaMA's tokenizer does; BPE matches
    // the special tokens written in the text, as Hugging Face's tokenizers does by default).
    virtual std::vector<int32_t> encode(const std::string& text) const = 0;
    virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
    virtual std::string piece(int32_t id) const = 0;  // as the vocabulary spells it ("▁the", "Ġthe")
    virtual float score(int32_t id) const = 0;        // SentencePiece's log-probability score; 0 for BPE
    virtual int piece_type(int32_t id) const = 0;     // 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
    virtual bool is_bpe() const = 0;
    // Where a model folder keeps it: "tokenizer.model" or "tokenizer.json".
    std::string file_name() const { return is_bpe() ? "tokenizer.json" : "tokenizer.model"; }

    int32_t vocab_size() const { return vocab_size_; }
    int32_t bos_id() const { return bos_id_; }
    int32_t eos_id() const { return eos_id_; }
    // Whether the model's own tokenizer starts a text with BOS (LLaMA: yes; GPT-2, SmolLM2: no).
    bool add_bos() const { return add_bos_; }
    // The ids every text starts with: {BOS} where add_bos(), none otherwise.
    std::vector<int32_t> prefix() const {
        return add_bos_ && bos_id_ >= 0 ? std::vector<int32_t>{bos_id_} : std::vector<int32_t>{};
    }
    const std::string& path() const { return path_; }

protected:
    Tokenizer() = default;
    void check_id(int32_t id) const;  // ConfigError outside the vocabulary
    std::string path_;
    int32_t vocab_size_ = 0;
    int32_t bos_id_ = -1;
    int32_t eos_id_ = -1;
    bool add_bos_ = true;
};

}  // namespace saliq
