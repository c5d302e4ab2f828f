// Dense (fully connected) layer on the CPU: y = x w + b, and its gradients.
//
// Contract (as Ops::dense_forward/backward in kernels/ops.h): x [n, in], w [in, out], b [out],
// y [n, out], all row-major. Backward takes dy [n, out] and writes dx [n, in] (skipped when
// dx is null), dw [in, out] = x^T dy and db [out] = column sums of dy. Every output element
// is written; nothing accumulates into outputs. Each GEMM's output is cut into slices along
// the dimension that partitions its larger operand, computed in parallel chunks (see
// kernels/cpu/common.h). A GEMM gets at most one worker per kDenseMinFlopsPerWorker flops, so
// a small one runs on the calling thread alone (the same chunks, so the same bits): waking a
// helper for it costs more than it saves (the MLP's 784x100 layer at batch 100 made its step
// slower on 2 threads than on 1).
// Thread-safety: pure functions; outputs must not alias inputs.
#pragma once

#include <algorithm>
#include <cmath>

#include "kernels/cpu/common.h"

namespace pstrain::cpu {

// Slices of at least this many rows or columns (each chunk packs the whole other operand,
// so thin slices would repeat that work), and at most this many chunks per GEMM.
inline constexpr int64_t kDenseMinSlice = 32;
inline constexpr int64_t kDenseMaxChunks = 8;

// GEMM flops per worker, at least (~0.2 ms at 100 GFLOP/s).
inline constexpr double kDenseMinFlopsPerWorker = 2e7;

inline int64_t dense_chunks(double flops, int64_t dim) {
  return chunk_count(flops, kChunkFlops, std::min(dim / kDenseMinSlice, kDenseMaxChunks));
}

// Workers for `chunks` chunks of `flops` in all: at most one per kDenseMinFlopsPerWorker.
inline int dense_workers(int64_t chunks, double flops) {
  const double by_size = std::max(1.0, std::floor(flops / kDenseMinFlopsPerWorker));
  return static_cast<int>(std::min<double>(workers_for(chunks), by_size));
}

template <typename T>
void dense_forward(const T* x, const T* w, const T* b, T* y, int n, int in, int out) {
  const ConstMatMap<T> xm(x, n, in);
  const ConstMatMap<T> wm(w, in, out);
  const ConstRowVecMap<T> bm(b, out);
  MatMap<T> ym(y, n, out);
  const bool split_out = out >= n;  // columns of y (slices of w) or rows of y (slices of x)
  const int64_t dim = split_out ? out : n;
  const double flops = 2.0 * n * in * out;
  const int64_t chunks = dense_chunks(flops, dim);
  thread_pool().run(chunks, dense_workers(chunks, flops), [&](int64_t c, int /*worker*/) {
    const auto [s0, s1] = split_range(dim, c, chunks);
    if (split_out) {
      auto yb = ym.middleCols(s0, s1 - s0);
      yb.noalias() = xm * wm.middleCols(s0, s1 - s0);
      yb.rowwise() += bm.segment(s0, s1 - s0);
    } else {
      auto yb = ym.middleRows(s0, s1 - s0);
      yb.noalias() = xm.middleRows(s0, s1 - s0) * wm;
      yb.rowwise() += bm;
    }
  });
}

template <typename T>
void dense_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int n, int in,
                    int out) {
  const ConstMatMap<T> xm(x, n, in);
  const ConstMatMap<T> wm(w, in, out);
  const ConstMatMap<T> dym(dy, n, out);
  MatMap<T> dwm(dw, in, out);
  const double gemm = 2.0 * n * in * out;
  // dx = dy w^T, sliced by columns (rows of w) or rows (rows of dy).
  const bool dx_split_in = in >= n;
  const int64_t dx_dim = dx_split_in ? in : n;
  const int64_t dx_chunks = dx != nullptr ? dense_chunks(gemm, dx_dim) : 0;
  // dw = x^T dy, sliced by rows (columns of x) or columns (columns of dy).
  const bool dw_split_in = in >= out;
  const int64_t dw_dim = dw_split_in ? in : out;
  const int64_t dw_chunks = dense_chunks(gemm, dw_dim);
  const int64_t chunks = dx_chunks + dw_chunks;
  const double flops = (dx != nullptr ? 2 : 1) * gemm;
  thread_pool().run(chunks, dense_workers(chunks, flops), [&](int64_t c, int /*worker*/) {
    if (c < dx_chunks) {
      MatMap<T> dxm(dx, n, in);
      const auto [s0, s1] = split_range(dx_dim, c, dx_chunks);
      if (dx_split_in) {
        dxm.middleCols(s0, s1 - s0).noalias() = dym * wm.middleRows(s0, s1 - s0).transpose();
      } else {
        dxm.middleRows(s0, s1 - s0).noalias() = dym.middleRows(s0, s1 - s0) * wm.transpose();
      }
      return;
    }
    const auto [s0, s1] = split_range(dw_dim, c - dx_chunks, dw_chunks);
    if (dw_split_in) {
      dwm.middleRows(s0, s1 - s0).noalias() = xm.middleCols(s0, s1 - s0).transpose() * dym;
    } else {
      dwm.middleCols(s0, s1 - s0).noalias() = xm.transpose() * dym.middleCols(s0, s1 - s0);
    }
  });
  column_sums(dy, n, out, db);
}

}  // namespace pstrain::cpu
