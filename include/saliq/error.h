// Error types thrown by the saliq library. The CLI is the one place that catches them.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace saliq {

// Base of every error saliq raises itself.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Bad user input: options, config values, inconsistent settings. CLI exit code 2.
class ConfigError : public Error {
public:
    explicit ConfigError(const std::string& message) : Error(message) {}
};

// A file whose content is malformed. The message names the file (and tensor/offset where known). Exit code 3.
class FormatError : public Error {
public:
    FormatError(const std::string& path, const std::string& message);
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// A file that cannot be opened, read, written or renamed. Exit code 3.
class IoError : public Error {
public:
    IoError(const std::string& path, const std::string& message);
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// A numerical failure (NaN/Inf, a failed factorization) that the user should know about. Exit code 4.
class NumericError : public Error {
public:
    explicit NumericError(const std::string& message) : Error(message) {}
};

// A distributed run lost a rank: it died, was stopped, or did not answer a collective in time. Exit code 5.
class DistributedError : public Error {
public:
    explicit DistributedError(const std::string& message) : Error(message) {}
};

}  // namespace saliq
