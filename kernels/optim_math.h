// Element-wise optimizer updates (TensorFlow 1.x semantics, see kernels/optim.h), shared by
// the host loops in kernels/optim.cc and CUDA kernels (PSTRAIN_HD).
//
// Contract: each *_step function updates one parameter element and its slot elements in
// place. Adam's bias-corrected step size depends only on the step t, so it is computed once
// per call on the host by adam_step_size() and passed to adam_step().
// Thread-safety: pure functions of their arguments.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace pstrain {

// p -= lr * g
PSTRAIN_HD void sgd_step(float& p, float g, float lr) { p -= lr * g; }

// a = momentum * a + g;  p -= lr * a
PSTRAIN_HD void momentum_step(float& p, float g, float& a, float lr, float momentum) {
  a = momentum * a + g;
  p -= lr * a;
}

// lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t), t >= 1 (host only; once per update call).
inline float adam_step_size(float lr, float beta1, float beta2, int64_t t) {
  const double td = static_cast<double>(t);
  const double b1t = std::pow(static_cast<double>(beta1), td);
  const double b2t = std::pow(static_cast<double>(beta2), td);
  return static_cast<float>(static_cast<double>(lr) * std::sqrt(1.0 - b2t) / (1.0 - b1t));
}

// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr_t * m / (sqrt(v) + eps)
PSTRAIN_HD void adam_step(float& p, float g, float& m, float& v, float lr_t, float beta1,
                          float beta2, float epsilon) {
  m = beta1 * m + (1.0f - beta1) * g;
  v = beta2 * v + (1.0f - beta2) * g * g;
  p -= lr_t * m / (sqrtf(v) + epsilon);
}

// a += g^2;  p -= lr * g / sqrt(a)
PSTRAIN_HD void adagrad_step(float& p, float g, float& a, float lr) {
  a += g * g;
  p -= lr * g / sqrtf(a);
}

}  // namespace pstrain
