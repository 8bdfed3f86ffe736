// SentencePiece tokenizer (the library itself is isolated in a dlmopen'ed shim; see tokenizer.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace saliq {

class Tokenizer {
public:
    // Loads a SentencePiece `.model`. Throws IoError/FormatError with the path on failure.
    static std::shared_ptr<Tokenizer> load(const std::string& model_path);
    ~Tokenizer();
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // Encodes without special tokens (SentencePiece adds its dummy prefix space as LLaMA's tokenizer does).
    std::vector<int32_t> encode(const std::string& text) const;
    std::string decode(const std::vector<int32_t>& ids) const;
    std::string piece(int32_t id) const;
    float score(int32_t id) const;     // the piece's log-probability score
    int piece_type(int32_t id) const;  // 1 normal (or user defined), 2 unknown, 3 control, 5 unused, 6 byte
    int32_t vocab_size() const { return vocab_size_; }
    int32_t bos_id() const { return bos_id_; }
    int32_t eos_id() const { return eos_id_; }
    const std::string& path() const { return path_; }

private:
    Tokenizer() = default;
    std::string path_;
    void* handle_ = nullptr;
    int32_t vocab_size_ = 0;
    int32_t bos_id_ = -1;
    int32_t eos_id_ = -1;
};

}  // namespace saliq
