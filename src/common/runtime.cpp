#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "saliq/runtime.h"

#include <dlfcn.h>

#include <fstream>
#include <sstream>

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

namespace {
// A "Key:   123 kB" line of a /proc file, in bytes; 0 when absent.
uint64_t proc_kb_field(const char* file, const std::string& key) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        if (line.compare(0, key.size(), key) != 0 || line.size() <= key.size() || line[key.size()] != ':') continue;
        std::istringstream fields(line.substr(key.size() + 1));
        uint64_t kb = 0;
        fields >> kb;
        return kb * 1024;
    }
    return 0;
}
}  // namespace

uint64_t available_memory_bytes() { return proc_kb_field("/proc/meminfo", "MemAvailable"); }
uint64_t peak_resident_bytes() { return proc_kb_field("/proc/self/status", "VmHWM"); }

}  // namespace saliq
