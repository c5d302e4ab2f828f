// The CUDA backend's op functions, one .cu file per kernel family (forward and backward
// together), with the names of the Ops methods (kernels/ops.h) they implement. CudaOps
// (cuda_ops.h) is the public face; these functions are its building blocks.
//
// Contract
// - Same semantics, layouts and "write every output element" rule as kernels/ops.h. Pointers
//   are device memory of the current device; everything is issued asynchronously on
//   `ctx.stream` (cuBLAS calls go through `ctx.blas`, whose stream must be ctx.stream).
// - Sizes of zero are no-ops (outputs with zero elements); a reduction over an empty range
//   writes zeros. Nothing here allocates: scratch comes from the caller.
// - Every CUDA call and launch is checked (check.h); failures throw pstrain::CudaError. Sizes
//   that cuBLAS cannot take (above INT_MAX) throw std::invalid_argument (a programmer error).
// - Compiles as C++17 (nvcc), so it cannot include ops.h (C++20); the *Shape structs mirror
//   Conv2dDims and PoolDims.
// Thread-safety: the functions are stateless; one stream is used by one thread at a time.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace pstrain::cuda {

struct Launch {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
};

// --- dense.cu: GEMM helpers, bias, dense layer ---------------------------------------------
// Row-major c[m, n] = op(a) op(b) (a stored [m, k] or [k, m] when trans_a; b stored [k, n] or
// [n, k] when trans_b), one cublasSgemm; k == 0 writes zeros.
void gemm_row_major(const Launch& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    const float* a, const float* b, float* c);
// y[r, j] += bias[j] for y [rows, cols].
void add_row_bias(const Launch& ctx, float* y, const float* bias, int64_t rows, int64_t cols);
// sums[j] = sum_r a[r, j] for a [rows, cols] (cublasSgemv with `ones`, >= rows floats of 1).
void column_sums(const Launch& ctx, const float* a, int64_t rows, int64_t cols, const float* ones,
                 float* sums);
// p[0, count) = value.
void fill(const Launch& ctx, float* p, float value, int64_t count);

void dense_forward(const Launch& ctx, const float* x, const float* w, const float* b, float* y,
                   int n, int in, int out);
// `ones`: at least n floats of 1 (for db).
void dense_backward(const Launch& ctx, const float* x, const float* w, const float* dy, float* dx,
                    float* dw, float* db, int n, int in, int out, const float* ones);

// --- relu.cu --------------------------------------------------------------------------------
void relu_forward(const Launch& ctx, const float* x, float* y, int64_t count);
void relu_backward(const Launch& ctx, const float* y, const float* dy, float* dx, int64_t count);
// Throws CudaError when this binary has no kernel image the current device can run.
void check_kernel_image();

// --- conv2d.cu ------------------------------------------------------------------------------
struct ConvShape {
  int n = 0, h = 0, w = 0, c = 0, k = 0, ksize = 5;
};
// Floats of workspace: one im2col matrix [n*h*w, ksize*ksize*c] (the backward pass reuses it
// for the column gradient).
int64_t conv2d_workspace_floats(const ConvShape& s);
void conv2d_forward(const Launch& ctx, const float* x, const float* w, const float* b, float* y,
                    float* workspace, const ConvShape& s);
// `ones`: at least n*h*w floats of 1 (for db).
void conv2d_backward(const Launch& ctx, const float* x, const float* w, const float* dy, float* dx,
                     float* dw, float* db, float* workspace, const float* ones, const ConvShape& s);

// --- maxpool.cu -----------------------------------------------------------------------------
struct PoolShape {
  int n = 0, h = 0, w = 0, c = 0;
};
void maxpool2x2_forward(const Launch& ctx, const float* x, float* y, int32_t* argmax,
                        const PoolShape& s);
void maxpool2x2_backward(const Launch& ctx, const float* dy, const int32_t* argmax, float* dx,
                         const PoolShape& s);

// --- softmax_xent.cu ------------------------------------------------------------------------
// `row_loss`: n floats of scratch (per-row losses, reduced by one block: deterministic).
// n == 0 writes loss 0.
void softmax_xent(const Launch& ctx, const float* logits, const int32_t* labels, float* dlogits,
                  float* loss, float* row_loss, int n, int k);

// --- accuracy.cu ----------------------------------------------------------------------------
// *count (device memory) = number of rows whose first maximum equals the label. Asynchronous.
void count_correct(const Launch& ctx, const float* logits, const int32_t* labels, int n, int k,
                   unsigned long long* count);

// --- optimizer.cu ---------------------------------------------------------------------------
// One update of TensorFlow 1.x's optimizers (kernels/optim.h) over `count` parameters, with the
// element-wise steps of kernels/optim_math.h. lr_t is Adam's bias-corrected step size
// (adam_step_size(), computed on the host). slot0/slot1 as in Ops::optimizer_update.
struct OptimizerStep {
  enum Kind { kSgd, kMomentum, kAdam, kAdagrad };
  Kind kind = kAdam;
  float lr = 0.f;
  float lr_t = 0.f;
  float momentum = 0.f;
  float beta1 = 0.f;
  float beta2 = 0.f;
  float epsilon = 0.f;
};
void optimizer_update(const Launch& ctx, const OptimizerStep& step, float* param, const float* grad,
                      float* slot0, float* slot1, int64_t count);

}  // namespace pstrain::cuda
