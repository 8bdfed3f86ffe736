#include "saliq/token_cache.h"

#include <cstdlib>
#include <cstring>
#include <ostream>

#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/sha256.h"
#include "saliq/tokenizer.h"

namespace saliq {
namespace {

constexpr size_t kMinCachedText = 64 * 1024;
constexpr char kMagic[8] = {'S', 'A', 'L', 'I', 'Q', 'T', 'O', 'K'};
constexpr uint64_t kVersion = 1;
// Layout: magic, version (u64), token count (u64), the tokens (i32, little-endian as this machine), then the hex
// SHA-256 of the token bytes (64 chars), which catches a truncated or damaged entry.
constexpr size_t kHeader = sizeof(kMagic) + 2 * sizeof(uint64_t);
constexpr size_t kChecksum = 64;

std::string token_bytes(const std::vector<int32_t>& tokens) {
    return std::string(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(int32_t));
}

// The entry's tokens, or false when it is missing or does not check out.
bool read_entry(const std::string& path, std::vector<int32_t>& tokens) {
    if (!path_exists(path)) return false;
    std::string bytes;
    try {
        bytes = read_text_file(path);
    } catch (const std::exception& e) {
        log_debug(std::string("token cache: ") + e.what());
        return false;
    }
    uint64_t version = 0, count = 0;
    if (bytes.size() < kHeader + kChecksum || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) return false;
    std::memcpy(&version, bytes.data() + sizeof(kMagic), sizeof(version));
    std::memcpy(&count, bytes.data() + sizeof(kMagic) + sizeof(version), sizeof(count));
    if (version != kVersion || count > (bytes.size() - kHeader - kChecksum) / sizeof(int32_t) ||
        bytes.size() != kHeader + count * sizeof(int32_t) + kChecksum)
        return false;
    const std::string body = bytes.substr(kHeader, count * sizeof(int32_t));
    if (sha256_hex(body) != bytes.substr(kHeader + body.size())) return false;
    tokens.resize(count);
    std::memcpy(tokens.data(), body.data(), body.size());
    return true;
}

void write_entry(const std::string& path, const std::vector<int32_t>& tokens) {
    const std::string body = token_bytes(tokens);
    const uint64_t count = tokens.size();
    write_file_atomic(path, [&](std::ostream& out) {
        out.write(kMagic, sizeof(kMagic));
        out.write(reinterpret_cast<const char*>(&kVersion), sizeof(kVersion));
        out.write(reinterpret_cast<const char*>(&count), sizeof(count));
        out << body << sha256_hex(body);
    });
}

}  // namespace

std::string token_cache_dir() {
    const char* own = std::getenv("SALIQ_CACHE_DIR");
    if (own != nullptr && *own != '\0') return std::string(own) == "off" ? "" : std::string(own) + "/tokens";
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0')
        return std::string(xdg) + "/saliq/tokens";
    if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
        return std::string(home) + "/.cache/saliq/tokens";
    return "";
}

std::vector<int32_t> encode_cached(const Tokenizer& tokenizer, const std::string& text) {
    const std::string dir = text.size() < kMinCachedText ? "" : token_cache_dir();
    if (dir.empty()) return tokenizer.encode(text);
    std::string path;
    try {
        path = dir + "/" + sha256_hex(sha256_file(tokenizer.path()) + sha256_hex(text)) + ".tokens";
    } catch (const std::exception& e) {  // the tokenizer file went away after loading: nothing to key on
        log_debug(std::string("token cache: ") + e.what());
        return tokenizer.encode(text);
    }
    std::vector<int32_t> tokens;
    if (read_entry(path, tokens)) {
        log_debug("token cache: read " + path);
        return tokens;
    }
    tokens = tokenizer.encode(text);
    try {
        make_directories(dir);
        write_entry(path, tokens);
        log_debug("token cache: wrote " + path);
    } catch (const std::exception& e) {
        log_debug(std::string("token cache: not written: ") + e.what());
    }
    return tokens;
}

}  // namespace saliq
