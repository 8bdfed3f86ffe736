// Shared helpers for the saliq test suite.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "saliq/corpus.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "temp_dir.h"

namespace saliq::test {

inline std::string data_path(const std::string& relative) { return saliq::data_dir() + "/" + relative; }
inline std::string stories_bin() { return data_path("models/stories260K/stories260K.bin"); }
inline std::string stories_tokenizer() { return data_path("models/stories260K/tok512.model"); }

inline void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// What a saliq::Error thrown by f says, or "<no error>".
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

inline std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

struct CommandResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr together
};

// Runs the saliq binary with `args` (a shell-quoted string) and captures its output and exit code; `env` is
// prepended as shell variable assignments (e.g. "SALIQ_SPM_LOAD=deepbind").
inline CommandResult run_saliq(const std::string& args, const std::string& env = "") {
    const std::string command = (env.empty() ? "" : env + " ") + std::string(SALIQ_BINARY) + " " + args + " 2>&1";
    CommandResult result;
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return result;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
    const int status = pclose(pipe);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

// Builds a safetensors file by hand (header JSON given verbatim) for malformed-input tests.
inline std::string safetensors_bytes(const std::string& header, const std::string& data, int64_t header_len = -1) {
    const uint64_t n = header_len >= 0 ? static_cast<uint64_t>(header_len) : header.size();
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    return out + header + data;
}

}  // namespace saliq::test
