// ReLU on the CPU: y = max(x, 0); backward dx = dy where y > 0, else 0.
//
// Contract (as Ops::relu_forward/backward in kernels/ops.h): element-wise over `count`
// elements; in place allowed (y == x, dx == dy). Every output element is written.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "kernels/cpu/common.h"

namespace pstrain::cpu {

template <typename T>
void relu_forward(const T* x, T* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}

template <typename T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

}  // namespace pstrain::cpu
