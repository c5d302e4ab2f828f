// OnednnConv: the CPU backend's conv2d through oneDNN (Debian's libdnnl-dev), forward, backward
// data and backward weights + bias, with the contract of Ops::conv2d_* (kernels/ops.h): NHWC
// images, HWIO weights, stride 1, SAME padding, odd square kernel; every output element is
// written. Built only with PSTRAIN_ONEDNN (kernels/CMakeLists.txt); this header names no
// oneDNN type, so nothing that includes it needs oneDNN's headers.
//
// Method: per Conv2dDims, the three primitives are created once (oneDNN chooses its memory
// formats, `any`; the caller's NHWC / HWIO buffers are reordered to and from them where they
// differ) together with owned buffers for the reordered tensors and a user scratchpad, and
// kept in a small cache (a training step's convolutions hit it after the first step: no
// primitive, reorder or buffer is created per call in steady state). The kernels' workspace
// (Ops::conv2d_workspace_floats) is not used. PSTRAIN_ONEDNN_FORMAT=nhwc (read once) keeps the
// activations in NHWC (only the weights reordered), for comparing the two on a machine.
// Threading: oneDNN's CPU runtime in Debian is OpenMP; each call sets the calling thread's
// OpenMP team size to the `threads` the object was made with (primitives are created with
// that count too). Results are the same bits when a call is repeated with the same inputs and
// thread count; across thread counts the forward output and the data gradient were the same
// bits in every shape tested, and the weight and bias gradients of some shapes differ in
// rounding (oneDNN splits their reduction by thread): tests/kernels/onednn_conv_test.cc
// asserts exactly this, and docs/benchmarks.md says what it means for training.
// Thread-safety: an object is used by one thread at a time (as an Ops object).
#pragma once

#include <memory>
#include <string>

#include "kernels/ops.h"

namespace pstrain::cpu {

class OnednnConv {
 public:
  // `threads` >= 1: the OpenMP team size of every call.
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
  // e.g. "oneDNN 2.6.3 (OpenMP)".
  static std::string version();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pstrain::cpu
