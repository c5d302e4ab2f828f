// How the processes that move tensors (a PS, a worker) use glibc's allocator.
//
// Contract
// - keep_large_buffers_mapped() makes every malloc come from the heap instead of a fresh
//   mmap(2) (M_MMAP_MAX = 0), and keeps up to kKeptFreeBytes of freed memory at the top of a
//   heap instead of returning it to the kernel (M_TRIM_THRESHOLD). ZeroMQ allocates a receive
//   buffer for every message; without this, each message over glibc's mmap threshold (32 MB at
//   most) is a new mapping whose pages fault in on first touch and are unmapped on free, which
//   cost about 40 % of a 40 MB push+pull (docs/benchmarks.md). With it, the next buffer of the
//   same size reuses the pages of the last one.
// - The cost: up to kKeptFreeBytes per arena stay resident after the largest transfers end.
// - Returns false (and changes nothing it could not set) when glibc refuses a setting; the
//   process works either way, only slower. In an ASan or TSan build it changes nothing and
//   returns true: the sanitizer's allocator replaces glibc's.
// Thread-safety: glibc's mallopt takes the allocator's lock, so any thread may call it; call it
// once, early (`pstrain ps` and `pstrain worker` do before they open a socket).
#pragma once

#include <cstddef>

namespace pstrain {

inline constexpr size_t kKeptFreeBytes = size_t{256} << 20;

bool keep_large_buffers_mapped();

}  // namespace pstrain
