#pragma once

namespace saliq {

// Sets LibTorch's intra-op thread count; n <= 0 means $SALIQ_THREADS, else every core (1.13 and 2.x pick
// different defaults, so we always set it).
void set_compute_threads(int n);
int compute_threads();

}  // namespace saliq

namespace saliq {

// Keeps large activation buffers in the heap instead of fresh mmaps: LibTorch frees and reallocates them every
// layer, and page-faulting them back in cost more time than the math on small models (glibc only; no-op elsewhere).
void tune_allocator();

}  // namespace saliq
