// With libstdc++'s own fs_path.o linked in and exported, this library stands in for a pip libtorch that carries a
// statically linked copy of std::filesystem (pytorch/pytorch#133437). See libstdcxx_probe.cpp.
int saliq_fake_libstdcxx_marker() { return 1; }
