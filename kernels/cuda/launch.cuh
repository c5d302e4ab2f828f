// Launch helpers shared by the .cu files of the CUDA backend: grid sizes by ceil-div for any
// element count, grid-stride loops, warp reductions.
//
// Contract: grid_for(count) > 0 for count > 0 and never exceeds kMaxBlocks; kernels written with
// a grid-stride loop cover every index in [0, count) exactly once whatever the grid. Callers
// skip the launch when count == 0 (a zero-block launch is an error).
// Thread-safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "runtime/base/check.h"

namespace pstrain::cuda {

constexpr int kThreads = 256;            // threads per block for element-wise kernels
constexpr int64_t kMaxBlocks = 1 << 16;  // grid-stride loops cover the rest
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline unsigned grid_for(int64_t count, int threads = kThreads) {
  const int64_t blocks = ceil_div(count, threads);
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// A size handed to cuBLAS (int arguments); one that does not fit is a programmer error (the
// models' shapes are far below it), so it fails a check naming the argument.
inline int blas_int(int64_t v, const char* what) {
  PSTRAIN_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), what);
  return static_cast<int>(v);
}

__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(blockDim.x) * gridDim.x;
}

// Butterfly reductions: every lane of the warp ends with the same (bitwise) result, because
// each lane adds the same two values at every step (addition is commutative).
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  return v;
}

}  // namespace pstrain::cuda
