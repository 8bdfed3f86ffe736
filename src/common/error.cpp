#include "saliq/error.h"

namespace saliq {

FormatError::FormatError(const std::string& path, const std::string& message)
    : Error(path + ": " + message), path_(path) {}

IoError::IoError(const std::string& path, const std::string& message)
    : Error(path + ": " + message), path_(path) {}

}  // namespace saliq
