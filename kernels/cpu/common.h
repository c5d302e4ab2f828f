// Shared pieces of the Eigen CPU backend: row-major Eigen maps over raw pointers, an OpenMP
// parallel-for macro, and column sums.
//
// Contract: the maps view caller memory (no copies, no ownership); every kernel in
// kernels/cpu/*.h is a function template over the scalar T (float for training, double for
// gradient checks). Parallel loops use Eigen::nbThreads() threads (set by make_cpu_ops), the
// same count Eigen's GEMM uses.
// Thread-safety: pure functions of their arguments; concurrent calls on disjoint outputs are
// safe (Eigen's thread count is process-wide state, set once by make_cpu_ops).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

#if defined(_OPENMP)
#define PSTRAIN_CPU_PRAGMA(x) _Pragma(#x)
// Parallel for over the following loop with `nt` threads, static schedule.
#define PSTRAIN_CPU_PARALLEL_FOR(nt) \
  PSTRAIN_CPU_PRAGMA(omp parallel for num_threads(nt) schedule(static) if ((nt) > 1))
#else
#define PSTRAIN_CPU_PARALLEL_FOR(nt)
#endif

namespace pstrain::cpu {

template <typename T>
using MatrixRM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatMap = Eigen::Map<MatrixRM<T>>;
template <typename T>
using ConstMatMap = Eigen::Map<const MatrixRM<T>>;
template <typename T>
using RowVecMap = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;
template <typename T>
using ConstRowVecMap = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;

// Threads for the parallel loops of this backend (Eigen's thread count).
inline int parallel_threads() { return Eigen::nbThreads(); }

// out[j] = sum_r a[r * cols + j] for a row-major [rows, cols] matrix. Rows are summed in
// blocks (a partial sum per block, then the blocks) so the float rounding error grows with
// rows / block + block rather than rows.
template <typename T>
void column_sums(const T* a, int64_t rows, int64_t cols, T* out) {
  RowVecMap<T> total(out, cols);
  total.setZero();
  constexpr int64_t kBlock = 128;
  Eigen::Matrix<T, 1, Eigen::Dynamic> partial(cols);
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
    const int64_t r1 = std::min(rows, r0 + kBlock);
    partial = ConstRowVecMap<T>(a + r0 * cols, cols);
    for (int64_t r = r0 + 1; r < r1; ++r) partial += ConstRowVecMap<T>(a + r * cols, cols);
    total += partial;
  }
}

}  // namespace pstrain::cpu
