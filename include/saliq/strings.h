// Small string helpers shared by every layer (no LibTorch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saliq {

// printf-style formatting into a std::string.
std::string strprintf(const char* format, ...) __attribute__((format(printf, 1, 2)));

// "[4096, 11008]"
std::string shape_to_string(const std::vector<int64_t>& shape);

// "1.2 MiB"
std::string human_bytes(uint64_t bytes);

// "3m10s", "12.4s"
std::string human_seconds(double seconds);

bool starts_with(const std::string& text, const std::string& prefix);
bool ends_with(const std::string& text, const std::string& suffix);
std::vector<std::string> split(const std::string& text, char separator);

}  // namespace saliq
