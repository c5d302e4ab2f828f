// Ops: the one interface through which models run their math, on the CPU or a GPU.
//
// Contract
// - Every pointer passed to an op is memory of this backend (host memory for the CPU backend,
//   device memory for CUDA), allocated by alloc(). Ops write every element of their outputs
//   (they never accumulate into them), so outputs need no zeroing.
// - Layouts are TensorFlow's: images NHWC, conv weights HWIO [k, k, c_in, c_out], dense
//   weights [in, out], all row-major. Labels are int32 class indices in [0, classes).
// - Ops may run asynchronously (CUDA: on the backend's stream, in issue order). Host memory
//   touched by copy_to_host() is valid only after synchronize(). Ops that return a value to the
//   host (count_correct) synchronize themselves.
// - The CPU backend (kernels/cpu) is the reference: its template functions in kernels/cpu/*.h
//   carry the same names as these methods and also run in double precision for gradient checks.
//   The CUDA backend (kernels/cuda) implements the same methods with the same names.
// Thread-safety: an Ops object is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/optim.h"
#include "kernels/tensor.h"

namespace pstrain {

// conv2d: stride 1, SAME padding (output h x w), square kernel of odd size `ksize`.
// x [n, h, w, c], w [ksize, ksize, c, k], b [k], y [n, h, w, k].
struct Conv2dDims {
  int n = 0, h = 0, w = 0, c = 0, k = 0, ksize = 5;
};

// 2x2 max-pool, stride 2, VALID padding: x [n, h, w, c] -> y [n, h/2, w/2, c] (floor).
// argmax[i] is the flat index into x of the element that y[i] came from; ties go to the first
// element of the window in row-major order.
struct PoolDims {
  int n = 0, h = 0, w = 0, c = 0;
  int out_h() const { return h / 2; }
  int out_w() const { return w / 2; }
};

class Ops {
 public:
  virtual ~Ops() = default;

  virtual Device device() const = 0;
  // e.g. "cpu (Eigen, 2 threads)" or "cuda:0 NVIDIA H100 80GB HBM3".
  virtual std::string description() const = 0;

  // --- memory -----------------------------------------------------------------------------
  // Memory of this backend, contents undefined.
  virtual Tensor alloc(Shape shape, DType dtype = DType::kFloat32) = 0;
  // Host memory for transfers to and from this backend (pinned on CUDA), contents undefined.
  virtual Tensor alloc_host(Shape shape, DType dtype = DType::kFloat32) = 0;
  // Stream-ordered copies between host memory and this backend's memory.
  virtual void copy_to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  // Waits for every op and copy issued so far.
  virtual void synchronize() = 0;

  // --- dense: y = x w + b -------------------------------------------------------------------
  // x [n, in], w [in, out], b [out], y [n, out].
  virtual void dense_forward(const float* x, const float* w, const float* b, float* y, int n,
                             int in, int out) = 0;
  // dy [n, out] -> dx [n, in] (skipped when dx is null), dw [in, out], db [out].
  virtual void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                              float* db, int n, int in, int out) = 0;

  // --- relu (in place allowed: y == x, dx == dy) ------------------------------------------
  virtual void relu_forward(const float* x, float* y, int64_t count) = 0;
  // dx = dy where y > 0, else 0.
  virtual void relu_backward(const float* y, const float* dy, float* dx, int64_t count) = 0;

  // --- conv2d -------------------------------------------------------------------------------
  // Floats of scratch memory (from alloc) that conv2d_forward/backward need for these dims.
  virtual size_t conv2d_workspace_floats(const Conv2dDims& d) const = 0;
  virtual void conv2d_forward(const float* x, const float* w, const float* b, float* y,
                              float* workspace, const Conv2dDims& d) = 0;
  // dy [n, h, w, k] -> dx [n, h, w, c] (skipped when dx is null), dw, db.
  virtual void conv2d_backward(const float* x, const float* w, const float* dy, float* dx,
                               float* dw, float* db, float* workspace, const Conv2dDims& d) = 0;

  // --- 2x2 max-pool -------------------------------------------------------------------------
  virtual void maxpool2x2_forward(const float* x, float* y, int32_t* argmax, const PoolDims& d) = 0;
  // dx [n, h, w, c]: dy routed to each window's argmax, 0 elsewhere.
  virtual void maxpool2x2_backward(const float* dy, const int32_t* argmax, float* dx,
                                   const PoolDims& d) = 0;

  // --- loss and evaluation ------------------------------------------------------------------
  // Softmax cross-entropy, mean over the batch, computed stably (max subtracted).
  // logits [n, k], labels [n] -> *loss (one float of this backend's memory) and
  // dlogits [n, k] = (softmax - onehot) / n.
  virtual void softmax_xent(const float* logits, const int32_t* labels, float* dlogits, float* loss,
                            int n, int k) = 0;
  // Number of rows whose argmax (first maximum) equals the label. Synchronizes.
  virtual int64_t count_correct(const float* logits, const int32_t* labels, int n, int k) = 0;

  // --- optimizer ----------------------------------------------------------------------------
  // One update of `config` (kernels/optim.h semantics) on `count` parameters in place. slot0 and
  // slot1 are the optimizer's state arrays (those it does not use may be null); t is the
  // 1-based number of this update.
  virtual void optimizer_update(const OptimizerConfig& config, float* param, const float* grad,
                                float* slot0, float* slot1, int64_t count, int64_t t) = 0;
};

// The Eigen reference backend; `threads` <= 0 means all cores.
std::unique_ptr<Ops> make_cpu_ops(int threads = 0);

}  // namespace pstrain
