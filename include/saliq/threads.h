#pragma once

namespace saliq {

// Sets LibTorch's intra-op thread count (1.13 and 2.x pick different defaults, so we always set it). n > 0, or
// $SALIQ_THREADS, fixes it for the run; otherwise (auto) it starts at the cores other processes leave free and
// adapt_compute_threads() follows their load (src/common/threads.cpp says why).
void set_compute_threads(int n);
// Under auto threads: re-measures other processes' load (at most once a second) and resizes the pool to the cores
// they leave free. Cheap; call it between blocks, batches and steps. Does nothing when the count was fixed.
void adapt_compute_threads();
int compute_threads();

// Whether this CPU multiplies bf16 matrices in hardware (AMX-BF16 or AVX512-BF16, from /proc/cpuinfo's flags):
// where bf16 training pays on CPU.
bool cpu_has_bf16_matrix_units();

}  // namespace saliq

namespace saliq {

// Keeps large activation buffers in the heap instead of fresh mmaps: LibTorch frees and reallocates them every
// layer, and page-faulting them back in cost more time than the math on small models (glibc only; no-op elsewhere).
void tune_allocator();

}  // namespace saliq
