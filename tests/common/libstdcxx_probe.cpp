// Prints which library the process binds libstdc++'s std::filesystem symbols to; exits 3 when it is not
// libstdc++. Built twice against a stand-in for a pip libtorch (a library exporting its own copy of those symbols):
// once linked plainly, where the stand-in must be caught, and once with libstdc++ listed first, where it must not.
#include <cstdio>

#include "saliq/runtime.h"

int main() {
    const std::string shadowing = saliq::libstdcxx_shadowing();
    std::printf("%s\n", shadowing.empty() ? "libstdc++ symbols come from libstdc++" : shadowing.c_str());
    return shadowing.empty() ? 0 : 3;
}
