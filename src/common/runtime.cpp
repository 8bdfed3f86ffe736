#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "saliq/runtime.h"

#include <dlfcn.h>

namespace saliq {

std::string defining_library(const char* symbol) {
    void* address = dlsym(RTLD_DEFAULT, symbol);
    if (address == nullptr) return "";
    Dl_info info{};
    if (dladdr(address, &info) == 0 || info.dli_fname == nullptr) return "";
    return info.dli_fname;
}

std::string libstdcxx_shadowing() {
    // Out-of-line libstdc++ functions that the pip wheels' libtorch also defines: std::filesystem's path parser
    // and remove_all, and std::filesystem::status.
    static const char* const kSymbols[] = {
        "_ZNSt10filesystem7__cxx114path14_M_split_cmptsEv",
        "_ZNSt10filesystem10remove_allERKNS_7__cxx114pathE",
        "_ZNSt10filesystem6statusERKNS_7__cxx114pathERSt10error_code",
    };
    for (const char* symbol : kSymbols) {
        const std::string library = defining_library(symbol);
        if (!library.empty() && library.find("libstdc++") == std::string::npos)
            return "libstdc++ symbol " + std::string(symbol) + " is taken from " + library +
                   " instead of libstdc++; relink with libstdc++ listed first (CMakeLists.txt does this)";
    }
    return "";
}

}  // namespace saliq
