// ReLU on the CPU: y = max(x, 0); backward dx = dy where y > 0, else 0.
//
// Contract (as Ops::relu_forward/backward in kernels/ops.h): element-wise over `count`
// elements; in place allowed (y == x, dx == dy). Every output element is written. The loops
// are branch-free (both operands loaded, then selected) so they vectorise, and run in
// parallel chunks of kChunkElements.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "kernels/cpu/common.h"

namespace pstrain::cpu {

template <typename T>
void relu_forward(const T* x, T* y, int64_t count) {
  parallel_ranges(count, kChunkElements, [x, y](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T v = x[i];
      y[i] = v > T(0) ? v : T(0);
    }
  });
}

template <typename T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t count) {
  parallel_ranges(count, kChunkElements, [y, dy, dx](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T g = dy[i];
      dx[i] = y[i] > T(0) ? g : T(0);
    }
  });
}

}  // namespace pstrain::cpu
