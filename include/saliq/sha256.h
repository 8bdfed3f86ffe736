#pragma once

#include <string>

namespace saliq {

// Hex SHA-256 of a file's bytes (for the manifest's checksums). Throws IoError.
std::string sha256_file(const std::string& path);
std::string sha256_hex(const std::string& bytes);

}  // namespace saliq
