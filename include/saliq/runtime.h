// Checks on the process's own runtime: which shared library the dynamic loader binds a symbol to.
#pragma once

#include <string>

namespace saliq {

// Path of the loaded object that defines `symbol` first in the global lookup order (the one our own references
// bind to); "" when no loaded object defines it.
std::string defining_library(const char* symbol);

// "" when libstdc++'s out-of-line symbols resolve to libstdc++ itself; otherwise a message naming the library
// that shadows them (a pip PyTorch's libtorch does, pytorch/pytorch#133437, unless libstdc++ is linked first).
std::string libstdcxx_shadowing();

}  // namespace saliq
