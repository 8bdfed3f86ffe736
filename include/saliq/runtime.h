// Checks on the process's own runtime: which shared library the dynamic loader binds a symbol to.
#pragma once

#include <cstdint>
#include <string>

namespace saliq {

// Path of the loaded object that defines `symbol` first in the global lookup order (the one our own references
// bind to); "" when no loaded object defines it.
std::string defining_library(const char* symbol);

// "" when libstdc++'s out-of-line symbols resolve to libstdc++ itself; otherwise a message naming the library
// that shadows them (a pip PyTorch's libtorch does, pytorch/pytorch#133437, unless libstdc++ is linked first).
std::string libstdcxx_shadowing();

// Memory the kernel could give this process now without swapping (MemAvailable of /proc/meminfo, bytes);
// 0 when unknown.
uint64_t available_memory_bytes();
// Peak resident set of this process so far (VmHWM, bytes); 0 when unknown.
uint64_t peak_resident_bytes();

}  // namespace saliq
