// The sentencepiece shim: a plain-C surface over SentencePieceProcessor, built as its own MODULE and loaded with
// dlmopen into a private link-map namespace (see src/data/tokenizer.cpp for why). Only C types cross this
// boundary; memory is freed on the side that allocated it; no exception escapes.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <sentencepiece_processor.h>

namespace {

int copy_out(const std::string& text, char* out, int capacity) {
    const int n = static_cast<int>(text.size());
    if (out != nullptr && capacity > 0) std::memcpy(out, text.data(), static_cast<size_t>(std::min(n, capacity)));
    return n;
}

}  // namespace

extern "C" {

// Parses a model from its bytes: the file is read on our side, so no file I/O happens in this namespace.
void* saliq_spm_load(const char* data, int64_t size, char* error, int error_capacity) {
    try {
        auto* processor = new sentencepiece::SentencePieceProcessor();
        const auto status = processor->LoadFromSerializedProto(absl::string_view(data, static_cast<size_t>(size)));
        if (!status.ok()) {
            copy_out(status.ToString(), error, error_capacity - 1);
            delete processor;
            return nullptr;
        }
        return processor;
    } catch (const std::exception& e) {
        copy_out(e.what(), error, error_capacity - 1);
        return nullptr;
    }
}

void saliq_spm_free(void* handle) { delete static_cast<sentencepiece::SentencePieceProcessor*>(handle); }

// Returns the number of ids (which may exceed `capacity`: call again with a larger buffer), or -1 on error.
int64_t saliq_spm_encode(void* handle, const char* text, int64_t length, int32_t* out, int64_t capacity) {
    try {
        std::vector<int> ids;
        const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Encode(
            std::string(text, static_cast<size_t>(length)), &ids);
        if (!status.ok()) return -1;
        const int64_t n = static_cast<int64_t>(ids.size());
        for (int64_t i = 0; i < n && i < capacity; ++i) out[i] = ids[static_cast<size_t>(i)];
        return n;
    } catch (...) {
        return -1;
    }
}

// Returns the decoded byte count (may exceed `capacity`), or -1 on error.
int64_t saliq_spm_decode(void* handle, const int32_t* ids, int64_t n_ids, char* out, int64_t capacity) {
    try {
        std::vector<int> in(ids, ids + n_ids);
        std::string text;
        const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Decode(in, &text);
        if (!status.ok()) return -1;
        const int64_t n = static_cast<int64_t>(text.size());
        if (out != nullptr && capacity > 0) std::memcpy(out, text.data(), static_cast<size_t>(std::min(n, capacity)));
        return n;
    } catch (...) {
        return -1;
    }
}

int saliq_spm_piece(void* handle, int32_t id, char* out, int capacity) {
    try {
        return copy_out(static_cast<sentencepiece::SentencePieceProcessor*>(handle)->IdToPiece(id), out, capacity);
    } catch (...) {
        return -1;
    }
}

int32_t saliq_spm_vocab_size(void* handle) {
    return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->GetPieceSize();
}
int32_t saliq_spm_bos_id(void* handle) { return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->bos_id(); }
int32_t saliq_spm_eos_id(void* handle) { return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->eos_id(); }
float saliq_spm_score(void* handle, int32_t id) {
    return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->GetScore(id);
}
// SentencePiece's piece types, numbered as its ModelProto (and GGUF's tokenizer.ggml.token_type): 1 normal,
// 2 unknown, 3 control, 5 unused, 6 byte (Debian's libsentencepiece has no IsUserDefined: those read as normal).
int saliq_spm_type(void* handle, int32_t id) {
    const auto* p = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
    if (p->IsUnknown(id)) return 2;
    if (p->IsControl(id)) return 3;
    if (p->IsUnused(id)) return 5;
    if (p->IsByte(id)) return 6;
    return 1;
}
int32_t saliq_spm_unk_id(void* handle) { return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->unk_id(); }

}  // extern "C"
