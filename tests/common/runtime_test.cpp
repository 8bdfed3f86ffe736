#include <gtest/gtest.h>

#include "saliq/runtime.h"

namespace saliq {
namespace {

TEST(Runtime, DefiningLibraryNamesTheLoadedObject) {
    // (Not malloc: a sanitizer runtime interposes it, which is exactly what this function would show.)
    EXPECT_NE(defining_library("gnu_get_libc_version").find("libc.so"), std::string::npos)
        << defining_library("gnu_get_libc_version");
    EXPECT_EQ(defining_library("saliq_no_such_symbol_anywhere"), "");
}

// A pip PyTorch's libtorch carries its own copy of std::filesystem; our binaries must bind to libstdc++'s.
TEST(Runtime, LibstdcxxSymbolsComeFromLibstdcxx) {
    const std::string symbol = "_ZNSt10filesystem7__cxx114path14_M_split_cmptsEv";
    EXPECT_NE(defining_library(symbol.c_str()).find("libstdc++"), std::string::npos)
        << defining_library(symbol.c_str());
    EXPECT_EQ(libstdcxx_shadowing(), "");
}

}  // namespace
}  // namespace saliq
