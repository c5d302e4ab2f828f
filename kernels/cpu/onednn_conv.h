// OnednnConv: the CPU backend's conv2d through oneDNN (Debian's libdnnl-dev), forward, backward
// data and backward weights + bias, with the contract of Ops::conv2d_* (kernels/ops.h): NHWC
// images, HWIO weights, stride 1, SAME padding, odd square kernel; every output element is
// written. Built only with PSTRAIN_ONEDNN (kernels/CMakeLists.txt); this header names no
// oneDNN type, so nothing that includes it needs oneDNN's headers.
//
// Method: the batch is split into image groups whose number depends only on the problem size
// (as the Eigen kernels' chunks, kernels/cpu/common.h); the groups run on the kernels' thread
// pool, each as one single-threaded oneDNN call on its sub-batch, and the weight and bias
// gradients of groups 1.. are added to group 0's in group order. So results are the same
// bits for any thread count, and no OpenMP barrier waits for a descheduled thread (on the
// shared 2-core machine oneDNN's own OpenMP threading made the CNN step slower than Eigen's;
// PSTRAIN_ONEDNN_THREADS=openmp, read once, brings it back for comparison: one call on the
// whole batch with `threads` OpenMP threads, whose weight gradients then depend on the count).
// Per worker and sub-batch dims, the three primitives are created once (oneDNN chooses its
// memory formats, `any`; the caller's NHWC / HWIO buffers are reordered to and from them where
// they differ) with owned buffers for the reordered tensors and a user scratchpad, and kept in
// a small cache: a training step's convolutions create no primitive, reorder or buffer after
// the first step. The kernels' workspace (Ops::conv2d_workspace_floats) is not used.
// PSTRAIN_ONEDNN_FORMAT=nhwc (read once) keeps the activations in NHWC (only the weights
// reordered), for comparing the two layouts on a machine.
// Thread-safety: an object is used by one thread at a time (as an Ops object).
#pragma once

#include <memory>
#include <string>

#include "kernels/ops.h"

namespace pstrain::cpu {

class OnednnConv {
 public:
  // `threads` >= 1: the most workers (pool threads, or OpenMP threads with
  // PSTRAIN_ONEDNN_THREADS=openmp) a call uses.
  explicit OnednnConv(int threads);
  ~OnednnConv();
  OnednnConv(const OnednnConv&) = delete;
  OnednnConv& operator=(const OnednnConv&) = delete;

  void forward(const float* x, const float* w, const float* b, float* y, const Conv2dDims& d);
  // dx skipped when null.
  void backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                const Conv2dDims& d);

  // Dims whose primitives are cached (for tests: a repeated shape creates nothing new).
  int cached_shapes() const;
  // e.g. "oneDNN 2.6.3 (kernels' pool)" or, with PSTRAIN_ONEDNN_THREADS=openmp,
  // "oneDNN 2.6.3 (OpenMP threads)".
  static std::string version();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pstrain::cpu
