// Dense (fully connected) layer on the CPU: y = x w + b, and its gradients.
//
// Contract (as Ops::dense_forward/backward in kernels/ops.h): x [n, in], w [in, out], b [out],
// y [n, out], all row-major. Backward takes dy [n, out] and writes dx [n, in] (skipped when
// dx is null), dw [in, out] = x^T dy and db [out] = column sums of dy. Every output element
// is written; nothing accumulates into outputs. The GEMMs go through Eigen (parallelised
// with OpenMP over Eigen::nbThreads() threads).
// Thread-safety: pure functions; outputs must not alias inputs.
#pragma once

#include "kernels/cpu/common.h"

namespace pstrain::cpu {

template <typename T>
void dense_forward(const T* x, const T* w, const T* b, T* y, int n, int in, int out) {
  const ConstMatMap<T> xm(x, n, in);
  const ConstMatMap<T> wm(w, in, out);
  MatMap<T> ym(y, n, out);
  ym.noalias() = xm * wm;
  ym.rowwise() += ConstRowVecMap<T>(b, out);
}

template <typename T>
void dense_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int n, int in,
                    int out) {
  const ConstMatMap<T> xm(x, n, in);
  const ConstMatMap<T> wm(w, in, out);
  const ConstMatMap<T> dym(dy, n, out);
  if (dx != nullptr) {
    MatMap<T> dxm(dx, n, in);
    dxm.noalias() = dym * wm.transpose();
  }
  MatMap<T> dwm(dw, in, out);
  dwm.noalias() = xm.transpose() * dym;
  column_sums(dy, n, out, db);
}

}  // namespace pstrain::cpu
