// CudaOps: the CUDA backend of the Ops interface (kernels/ops.h) on one GPU, with cuBLAS for
// the GEMMs and the kernels of kernels/cuda/*.cu for the rest.
//
// Contract
// - Everything runs in issue order on the object's own non-blocking stream; its cuBLAS handle
//   is bound to that stream. Every method first makes its device current for the calling
//   thread. alloc() is cudaMalloc (freed with cudaFree on the same device when the last Tensor
//   copy goes, which may outlive the CudaOps); alloc_host() is pinned (cudaMallocHost).
// - Ops do not allocate per call: conv2d's workspace comes from the caller
//   (conv2d_workspace_floats); small scratch (a vector of ones for bias gradients, per-row
//   losses) is kept here and grown when a larger batch first needs it.
// - tf32: GEMMs may use TF32 tensor cores (cublasSetMathMode(CUBLAS_TF32_TENSOR_OP_MATH));
//   off by default, when results match the CPU backend to float32 rounding.
// - CUDA and cuBLAS failures throw pstrain::CudaError (kernels/cuda/check.h); they are not
//   recoverable. make_cuda_ops() reports an unusable device as a Status instead.
// This header needs no CUDA headers: the stream and cuBLAS handle are opaque pointers.
// Thread-safety: one thread at a time per object (as for every Ops).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/ops.h"
#include "runtime/base/status.h"

struct CUstream_st;    // cudaStream_t is CUstream_st*
struct cublasContext;  // cublasHandle_t is cublasContext*

namespace pstrain::cuda {

class CudaOps final : public Ops {
 public:
  // Throws CudaError when the device cannot be set up; prefer make_cuda_ops().
  CudaOps(int device, bool tf32);
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  int device_index() const { return device_; }
  bool tf32() const { return tf32_; }
  // The cudaStream_t every op and copy of this object is issued on.
  void* stream() const { return stream_; }

  Device device() const override { return Device::kCuda; }
  // "cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB, TF32 off)"
  std::string description() const override { return description_; }

  Tensor alloc(Shape shape, DType dtype = DType::kFloat32) override;
  Tensor alloc_host(Shape shape, DType dtype = DType::kFloat32) override;
  void copy_to_device(void* dst, const void* host_src, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  void synchronize() override;

  void dense_forward(const float* x, const float* w, const float* b, float* y, int n, int in,
                     int out) override;
  void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                      float* db, int n, int in, int out) override;

  void relu_forward(const float* x, float* y, int64_t count) override;
  void relu_backward(const float* y, const float* dy, float* dx, int64_t count) override;

  size_t conv2d_workspace_floats(const Conv2dDims& d) const override;
  void conv2d_forward(const float* x, const float* w, const float* b, float* y, float* workspace,
                      const Conv2dDims& d) override;
  void conv2d_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                       float* db, float* workspace, const Conv2dDims& d) override;

  void maxpool2x2_forward(const float* x, float* y, int32_t* argmax, const PoolDims& d) override;
  void maxpool2x2_backward(const float* dy, const int32_t* argmax, float* dx,
                           const PoolDims& d) override;

  void softmax_xent(const float* logits, const int32_t* labels, float* dlogits, float* loss, int n,
                    int k) override;
  int64_t count_correct(const float* logits, const int32_t* labels, int n, int k) override;

  void optimizer_update(const OptimizerConfig& config, float* param, const float* grad,
                        float* slot0, float* slot1, int64_t count, int64_t t) override;

 private:
  // Device scratch that only grows; growing waits for the stream (the old buffer may be in use).
  struct Scratch {
    float* data = nullptr;
    int64_t capacity = 0;  // floats
  };

  void activate() const;
  void release() noexcept;
  float* grow(Scratch* s, int64_t floats);
  const float* ones(int64_t count);  // >= count floats of 1.0f

  int device_ = 0;
  bool tf32_ = false;
  std::string description_;
  CUstream_st* stream_ = nullptr;
  cublasContext* blas_ = nullptr;
  Scratch ones_;
  Scratch row_loss_;
  unsigned long long* count_device_ = nullptr;
  unsigned long long* count_host_ = nullptr;  // pinned
};

}  // namespace pstrain::cuda

namespace pstrain {

// The CUDA backend on GPU `device`. An error Status (never a throw) when CUDA is unusable
// (no driver, no GPU), the device does not exist, or this binary has no kernels for its
// architecture; the message says what to do.
Result<std::unique_ptr<Ops>> make_cuda_ops(int device = 0, bool tf32 = false);

}  // namespace pstrain
