// Shared pieces of the Eigen CPU backend: the kernels' thread pool and how work is split into
// chunks, row-major Eigen maps over raw pointers, and column sums.
//
// Threading: every kernel splits its work into chunks whose number and bounds depend only on
// the problem size (never on the thread count), runs them on the process-wide ThreadPool
// (kernels/cpu/thread_pool.h: the caller works too and never waits for a helper that has not
// started), and calls Eigen single-threaded inside a chunk. Sums across chunks (weight
// gradients, column sums) are added in chunk order, so results are bitwise identical for any
// thread count. Eigen's own GEMM threading is switched off on first use of the pool.
// Contract: the maps view caller memory (no copies, no ownership); every kernel in
// kernels/cpu/*.h is a function template over the scalar T (float for training, double for
// gradient checks). The pool has 1 worker (no helper threads) until set_num_threads().
// Thread-safety: set_num_threads and the kernels may be called from any thread (a kernel
// that finds the pool busy with another thread's kernel runs on its own thread).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/cpu/thread_pool.h"

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

// The process-wide pool of the CPU kernels.
inline ThreadPool& thread_pool() {
  static ThreadPool pool;
  // Eigen would otherwise start its own OpenMP team inside a chunk (it only checks for
  // OpenMP parallel regions, which the pool's threads are not).
  static const bool eigen_single_threaded = [] {
    Eigen::setNbThreads(1);
    return true;
  }();
  static_cast<void>(eigen_single_threaded);
  return pool;
}

// Threads the kernels use (the caller plus helpers).
inline int num_threads() { return thread_pool().size(); }
inline void set_num_threads(int threads) { thread_pool().resize(threads); }

// Target work per chunk: GEMM flops (~0.2 ms), and elements for memory-bound loops.
inline constexpr double kChunkFlops = 4e6;
inline constexpr int64_t kChunkElements = int64_t{1} << 16;

// About work / per_chunk chunks, at least 1 and at most max_chunks.
inline int64_t chunk_count(double work, double per_chunk, int64_t max_chunks) {
  const double c = work / per_chunk;
  const int64_t wanted = c < 1 ? 1 : (c > 1e9 ? int64_t{1000000000} : static_cast<int64_t>(c));
  return std::clamp<int64_t>(wanted, 1, std::max<int64_t>(1, max_chunks));
}

// Workers worth starting for `chunks` chunks.
inline int workers_for(int64_t chunks) {
  return static_cast<int>(std::min<int64_t>(num_threads(), std::max<int64_t>(1, chunks)));
}

// [begin, end) of part `part` of `total` items split into `parts` near-equal contiguous parts.
inline std::pair<int64_t, int64_t> split_range(int64_t total, int64_t part, int64_t parts) {
  const int64_t base = total / parts, extra = total % parts;
  const int64_t begin = part * base + std::min(part, extra);
  return {begin, begin + base + (part < extra ? 1 : 0)};
}

// Calls body(begin, end) for consecutive ranges of `grain` items covering [0, total), on the
// pool.
template <typename Body>
void parallel_ranges(int64_t total, int64_t grain, const Body& body) {
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (total + grain - 1) / grain;
  thread_pool().run(chunks, workers_for(chunks), [&](int64_t c, int /*worker*/) {
    body(c * grain, std::min(total, (c + 1) * grain));
  });
}

// out[j] = sum_r a[r * cols + j] for a row-major [rows, cols] matrix. Rows are summed in
// blocks of 128 (a partial sum per block, so float rounding grows with rows / 128 + 128
// rather than rows), chunks of rows in parallel, and the chunk sums in order. The scratch
// vectors are per thread and only grow: a training step's calls allocate nothing.
template <typename T>
void column_sums(const T* a, int64_t rows, int64_t cols, T* out) {
  if (cols <= 0) return;
  const int64_t grain = std::max<int64_t>(128, kChunkElements / cols / 128 * 128);
  const int64_t chunks = std::max<int64_t>(1, (rows + grain - 1) / grain);
  thread_local std::vector<T> partials_storage;
  if (partials_storage.size() < static_cast<size_t>((chunks - 1) * cols)) {
    partials_storage.resize(static_cast<size_t>((chunks - 1) * cols));
  }
  T* const partials = partials_storage.data();
  thread_pool().run(chunks, workers_for(chunks), [&](int64_t c, int /*worker*/) {
    const int64_t begin = c * grain, end = std::min(rows, begin + grain);
    RowVecMap<T> total(c == 0 ? out : partials + (c - 1) * cols, cols);
    total.setZero();
    thread_local std::vector<T> block_storage;
    if (block_storage.size() < static_cast<size_t>(cols)) {
      block_storage.resize(static_cast<size_t>(cols));
    }
    RowVecMap<T> block(block_storage.data(), cols);
    for (int64_t r0 = begin; r0 < end; r0 += 128) {
      const int64_t r1 = std::min(end, r0 + 128);
      block = ConstRowVecMap<T>(a + r0 * cols, cols);
      for (int64_t r = r0 + 1; r < r1; ++r) block += ConstRowVecMap<T>(a + r * cols, cols);
      total += block;
    }
  });
  RowVecMap<T> total(out, cols);
  for (int64_t c = 1; c < chunks; ++c) {
    total += ConstRowVecMap<T>(partials + (c - 1) * cols, cols);
  }
}

}  // namespace pstrain::cpu
