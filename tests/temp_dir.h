// A fresh empty folder under the system temp dir, removed when the object dies. Free of gtest, so the fuzz targets
// (built without it) use the same one as the suite.
#pragma once

#include <stdlib.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "saliq/file.h"

namespace saliq::test {

class TempDir {
public:
    explicit TempDir(const std::string& prefix = "saliq-test") {
        const std::string pattern = saliq::temp_directory() + "/" + prefix + "-XXXXXX";
        std::vector<char> buffer(pattern.begin(), pattern.end());
        buffer.push_back('\0');
        if (mkdtemp(buffer.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
        path_ = buffer.data();
    }
    ~TempDir() { saliq::remove_tree(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

}  // namespace saliq::test
