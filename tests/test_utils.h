// Shared helpers for the saliq test suite.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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

// A converted HF folder of stories260K, at dir/hf.
inline std::string convert_stories(const TempDir& dir) {
    const std::string out = dir.file("hf");
    const auto r = run_saliq("convert --from-llama2c " + stories_bin() + " --tokenizer " + stories_tokenizer() +
                             " --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return out;
}

// Puts a NaN into the first float of `tensor` inside the folder's model.safetensors.
inline void poison_tensor(const std::string& hf, const std::string& tensor) {
    std::string bytes = read_bytes(hf + "/model.safetensors");
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
    const auto json = nlohmann::json::parse(bytes.substr(8, header));
    const uint64_t offset = 8 + header + json[tensor]["data_offsets"][0].get<uint64_t>();
    const float nan = NAN;
    std::memcpy(&bytes[offset], &nan, 4);
    write_bytes(hf + "/model.safetensors", bytes);
}

}  // namespace saliq::test
