// Debian's libsentencepiece exports its own bundled protobuf, which collides with libtorch's protobuf and crashes
// the process before main when both are linked. The library therefore lives in a separate module (spm_shim.cpp)
// loaded with dlmopen(LM_ID_NEWLM): it gets a private copy of its dependencies in its own link-map namespace, and
// only plain C types cross the boundary.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "saliq/tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/strings.h"
#include "saliq/bpe_tokenizer.h"

namespace saliq {
namespace {

struct ShimApi {
    void* (*load)(const char*, int64_t, char*, int) = nullptr;
    void (*free)(void*) = nullptr;
    int64_t (*encode)(void*, const char*, int64_t, int32_t*, int64_t) = nullptr;
    int64_t (*decode)(void*, const int32_t*, int64_t, char*, int64_t) = nullptr;
    int (*piece)(void*, int32_t, char*, int) = nullptr;
    int32_t (*vocab_size)(void*) = nullptr;
    int32_t (*bos_id)(void*) = nullptr;
    int32_t (*eos_id)(void*) = nullptr;
    float (*score)(void*, int32_t) = nullptr;
    int (*type)(void*, int32_t) = nullptr;
};

std::vector<std::string> shim_candidates() {
    std::vector<std::string> out;
    if (const char* env = std::getenv("SALIQ_SPM_SHIM")) out.emplace_back(env);
    out.push_back(executable_dir() + "/libsaliq_spm.so");
#ifdef SALIQ_SPM_SHIM_PATH
    out.emplace_back(SALIQ_SPM_SHIM_PATH);
#endif
    return out;
}

template <typename F>
void bind(void* library, const char* name, F& slot, const std::string& path) {
    slot = reinterpret_cast<F>(dlsym(library, name));
    if (slot == nullptr) throw IoError(path, std::string("tokenizer shim lacks symbol ") + name);
}

// SALIQ_SPM_LOAD=deepbind loads the shim into our own namespace instead, its dependencies binding to their own
// symbols first (RTLD_DEEPBIND): a fallback for systems where a second namespace misbehaves.
void* open_shim(const std::string& path) {
    const char* mode = std::getenv("SALIQ_SPM_LOAD");
    if (mode != nullptr && std::string(mode) == "deepbind") {
        log_debug("loading the tokenizer shim " + path + " with RTLD_DEEPBIND");
        return dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    }
    log_debug("loading the tokenizer shim " + path + " into a new link-map namespace");
    return dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
}

// The shim is loaded once per process: each dlmopen(LM_ID_NEWLM) takes one of glibc's few namespaces.
const ShimApi& shim() {
    static std::once_flag once;
    static ShimApi api;
    static std::string error;
    std::call_once(once, [] {
        std::string tried;
        for (const auto& path : shim_candidates()) {
            if (!path_exists(path)) {
                tried += " " + path;
                continue;
            }
            void* library = open_shim(path);
            if (library == nullptr) {
                error = path + ": cannot load tokenizer shim: " + dlerror();
                return;
            }
            try {
                bind(library, "saliq_spm_load", api.load, path);
                bind(library, "saliq_spm_free", api.free, path);
                bind(library, "saliq_spm_encode", api.encode, path);
                bind(library, "saliq_spm_decode", api.decode, path);
                bind(library, "saliq_spm_piece", api.piece, path);
                bind(library, "saliq_spm_vocab_size", api.vocab_size, path);
                bind(library, "saliq_spm_bos_id", api.bos_id, path);
                bind(library, "saliq_spm_eos_id", api.eos_id, path);
                bind(library, "saliq_spm_score", api.score, path);
                bind(library, "saliq_spm_type", api.type, path);
            } catch (const Error& e) {
                error = e.what();
                api = ShimApi{};
            }
            return;
        }
        error = "tokenizer shim libsaliq_spm.so not found (looked at" + tried +
                "); set SALIQ_SPM_SHIM to its path";
    });
    if (api.load == nullptr) throw IoError("libsaliq_spm.so", error);
    return api;
}

class SentencePieceTokenizer final : public Tokenizer {
public:
    static std::shared_ptr<Tokenizer> open(const std::string& model_path) {
        const auto file = MappedFile::open(model_path);
        const ShimApi& api = shim();
        char error[512] = {0};
        void* handle = api.load(reinterpret_cast<const char*>(file->data()), static_cast<int64_t>(file->size()),
                                error, sizeof(error));
        if (handle == nullptr) throw FormatError(model_path, std::string("not a SentencePiece model: ") + error);
        auto tokenizer = std::shared_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer());
        tokenizer->path_ = model_path;
        tokenizer->handle_ = handle;
        tokenizer->vocab_size_ = api.vocab_size(handle);
        tokenizer->bos_id_ = api.bos_id(handle);
        tokenizer->eos_id_ = api.eos_id(handle);
        tokenizer->add_bos_ = true;  // LLaMA's convention
        return tokenizer;
    }
    ~SentencePieceTokenizer() override {
        if (handle_ != nullptr) shim().free(handle_);
    }

    std::vector<int32_t> encode(const std::string& text) const override {
        const ShimApi& api = shim();
        // Roughly a token per 3 bytes; the shim reports the real count when the buffer is short.
        std::vector<int32_t> ids(text.size() / 3 + 16);
        int64_t n = api.encode(handle_, text.data(), static_cast<int64_t>(text.size()), ids.data(),
                               static_cast<int64_t>(ids.size()));
        if (n > static_cast<int64_t>(ids.size())) {
            ids.resize(static_cast<size_t>(n));
            n = api.encode(handle_, text.data(), static_cast<int64_t>(text.size()), ids.data(), n);
        }
        if (n < 0) throw FormatError(path_, "SentencePiece failed to encode the text");
        ids.resize(static_cast<size_t>(n));
        return ids;
    }

    std::string decode(const std::vector<int32_t>& ids) const override {
        const ShimApi& api = shim();
        std::string text(ids.size() * 8 + 16, '\0');
        int64_t n = api.decode(handle_, ids.data(), static_cast<int64_t>(ids.size()), text.data(),
                               static_cast<int64_t>(text.size()));
        if (n > static_cast<int64_t>(text.size())) {
            text.resize(static_cast<size_t>(n));
            n = api.decode(handle_, ids.data(), static_cast<int64_t>(ids.size()), text.data(), n);
        }
        if (n < 0) throw FormatError(path_, "SentencePiece failed to decode ids (out of the vocabulary?)");
        text.resize(static_cast<size_t>(n));
        return text;
    }

    std::string piece(int32_t id) const override {
        check_id(id);
        // Most pieces fit 64 bytes; the shim reports the real length of a longer one.
        std::string text(64, '\0');
        int n = shim().piece(handle_, id, text.data(), static_cast<int>(text.size()));
        if (n > static_cast<int>(text.size())) {
            text.resize(static_cast<size_t>(n));
            n = shim().piece(handle_, id, text.data(), n);
        }
        if (n < 0) throw FormatError(path_, "SentencePiece failed to look up piece " + std::to_string(id));
        text.resize(static_cast<size_t>(n));
        return text;
    }
    float score(int32_t id) const override {
        check_id(id);
        return shim().score(handle_, id);
    }
    int piece_type(int32_t id) const override {
        check_id(id);
        return shim().type(handle_, id);
    }
    bool is_bpe() const override { return false; }

private:
    SentencePieceTokenizer() = default;
    void* handle_ = nullptr;
};

}  // namespace

void Tokenizer::check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size_)
        throw ConfigError("token id " + std::to_string(id) + " is outside the vocabulary of " + path_);
}

std::shared_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
    if (!path_exists(path)) throw IoError(path, "tokenizer file does not exist");
    if (is_directory(path)) throw IoError(path, "is a folder; give its tokenizer.model or tokenizer.json");
    if (ends_with(path, ".json")) return load_tokenizer_json(path);
    if (ends_with(path, ".gguf")) return load_gguf_vocabulary(path);
    return SentencePieceTokenizer::open(path);
}

}  // namespace saliq
