#include "kernels/cuda/cuda_ops.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <initializer_list>
#include <utility>

#include "kernels/cuda/check.h"
#include "kernels/cuda/device_query.h"
#include "kernels/cuda/kernels.h"
#include "kernels/optim_math.h"

namespace pstrain::cuda {
namespace {

// Deleters run when the last Tensor copy goes, possibly on another thread, after the CudaOps,
// or at process exit (when the runtime may already be unloading): they must not throw, so
// errors are ignored there.
void free_device_memory(int device, void* p) noexcept {
  int previous = -1;
  const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device &&
                        cudaSetDevice(device) == cudaSuccess;
  cudaFree(p);
  if (switched) cudaSetDevice(previous);
  cudaGetLastError();  // leave no error behind for the next checked call
}

void free_host_memory(void* p) noexcept {
  cudaFreeHost(p);
  cudaGetLastError();
}

size_t tensor_bytes(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(num_elements(shape)) * dtype_size(dtype);
  return bytes == 0 ? dtype_size(dtype) : bytes;  // a valid pointer even for empty tensors
}

ConvShape conv_shape(const Conv2dDims& d) { return {d.n, d.h, d.w, d.c, d.k, d.ksize}; }
PoolShape pool_shape(const PoolDims& d) { return {d.n, d.h, d.w, d.c}; }

std::string describe(int device, bool tf32) {
  cudaDeviceProp prop{};
  PSTRAIN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char memory[32];
  std::snprintf(memory, sizeof(memory), "%.1f GiB",
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return "cuda:" + std::to_string(device) + " " + prop.name + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ", " + memory + ", TF32 " + (tf32 ? "on" : "off") + ")";
}

}  // namespace

CudaOps::CudaOps(int device, bool tf32) : device_(device), tf32_(tf32) {
  try {
    activate();
    description_ = describe(device, tf32);
    check_kernel_image();
    PSTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    PSTRAIN_CUBLAS_CHECK(cublasCreate(&blas_));
    PSTRAIN_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    PSTRAIN_CUBLAS_CHECK(
        cublasSetMathMode(blas_, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    PSTRAIN_CUDA_CHECK(
        cudaMalloc(reinterpret_cast<void**>(&count_device_), sizeof(unsigned long long)));
    PSTRAIN_CUDA_CHECK(
        cudaMallocHost(reinterpret_cast<void**>(&count_host_), sizeof(unsigned long long)));
  } catch (...) {
    release();
    throw;
  }
}

CudaOps::~CudaOps() {
  if (cudaSetDevice(device_) == cudaSuccess && stream_ != nullptr) {
    cudaStreamSynchronize(stream_);  // errors cannot be reported from a destructor
  }
  release();
}

void CudaOps::release() noexcept {
  if (blas_ != nullptr) cublasDestroy(blas_);
  blas_ = nullptr;
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
  for (Scratch* s : {&ones_, &row_loss_}) {
    if (s->data != nullptr) cudaFree(s->data);
    *s = Scratch{};
  }
  if (count_device_ != nullptr) cudaFree(count_device_);
  count_device_ = nullptr;
  if (count_host_ != nullptr) cudaFreeHost(count_host_);
  count_host_ = nullptr;
  cudaGetLastError();
}

void CudaOps::activate() const { PSTRAIN_CUDA_CHECK(cudaSetDevice(device_)); }

float* CudaOps::grow(Scratch* s, int64_t floats) {
  if (floats <= s->capacity) return s->data;
  const int64_t capacity = floats > 2 * s->capacity ? floats : 2 * s->capacity;
  if (s->data != nullptr) {
    PSTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));  // queued work may still read it
    PSTRAIN_CUDA_CHECK(cudaFree(s->data));
    *s = Scratch{};
  }
  void* p = nullptr;
  PSTRAIN_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(capacity) * sizeof(float)));
  s->data = static_cast<float*>(p);
  s->capacity = capacity;
  return s->data;
}

const float* CudaOps::ones(int64_t count) {
  if (count <= ones_.capacity) return ones_.data;
  float* p = grow(&ones_, count);
  fill({stream_, blas_}, p, 1.0f, ones_.capacity);
  return p;
}

Tensor CudaOps::alloc(Shape shape, DType dtype) {
  activate();
  const size_t bytes = tensor_bytes(shape, dtype);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw CudaError(description_ + ": cudaMalloc of " + std::to_string(bytes) +
                    " bytes for a tensor of shape " + shape_string(shape) + " failed: " +
                    cudaGetErrorString(err) + " (use a smaller --batch_size or free GPU memory)");
  }
  const int device = device_;
  return Tensor(Device::kCuda, dtype, std::move(shape),
                std::shared_ptr<void>(p, [device](void* q) { free_device_memory(device, q); }));
}

Tensor CudaOps::alloc_host(Shape shape, DType dtype) {
  activate();
  const size_t bytes = tensor_bytes(shape, dtype);
  void* p = nullptr;
  const cudaError_t err = cudaMallocHost(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw CudaError(description_ + ": cudaMallocHost of " + std::to_string(bytes) +
                    " pinned bytes for shape " + shape_string(shape) +
                    " failed: " + cudaGetErrorString(err));
  }
  return Tensor(Device::kCpu, dtype, std::move(shape),
                std::shared_ptr<void>(p, [](void* q) { free_host_memory(q); }));
}

void CudaOps::copy_to_device(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  PSTRAIN_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaOps::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  PSTRAIN_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
}

void CudaOps::synchronize() {
  activate();
  PSTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaOps::dense_forward(const float* x, const float* w, const float* b, float* y, int n, int in,
                            int out) {
  activate();
  cuda::dense_forward({stream_, blas_}, x, w, b, y, n, in, out);
}

void CudaOps::dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                             float* db, int n, int in, int out) {
  activate();
  const float* one = ones(n);
  cuda::dense_backward({stream_, blas_}, x, w, dy, dx, dw, db, n, in, out, one);
}

void CudaOps::relu_forward(const float* x, float* y, int64_t count) {
  activate();
  cuda::relu_forward({stream_, blas_}, x, y, count);
}

void CudaOps::relu_backward(const float* y, const float* dy, float* dx, int64_t count) {
  activate();
  cuda::relu_backward({stream_, blas_}, y, dy, dx, count);
}

size_t CudaOps::conv2d_workspace_floats(const Conv2dDims& d) const {
  return static_cast<size_t>(cuda::conv2d_workspace_floats(conv_shape(d)));
}

void CudaOps::conv2d_forward(const float* x, const float* w, const float* b, float* y,
                             float* workspace, const Conv2dDims& d) {
  activate();
  cuda::conv2d_forward({stream_, blas_}, x, w, b, y, workspace, conv_shape(d));
}

void CudaOps::conv2d_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                              float* db, float* workspace, const Conv2dDims& d) {
  activate();
  const float* one = ones(static_cast<int64_t>(d.n) * d.h * d.w);
  cuda::conv2d_backward({stream_, blas_}, x, w, dy, dx, dw, db, workspace, one, conv_shape(d));
}

void CudaOps::maxpool2x2_forward(const float* x, float* y, int32_t* argmax, const PoolDims& d) {
  activate();
  cuda::maxpool2x2_forward({stream_, blas_}, x, y, argmax, pool_shape(d));
}

void CudaOps::maxpool2x2_backward(const float* dy, const int32_t* argmax, float* dx,
                                  const PoolDims& d) {
  activate();
  cuda::maxpool2x2_backward({stream_, blas_}, dy, argmax, dx, pool_shape(d));
}

void CudaOps::softmax_xent(const float* logits, const int32_t* labels, float* dlogits, float* loss,
                           int n, int k) {
  activate();
  float* row_loss = grow(&row_loss_, n > 0 ? n : 1);
  cuda::softmax_xent({stream_, blas_}, logits, labels, dlogits, loss, row_loss, n, k);
}

int64_t CudaOps::count_correct(const float* logits, const int32_t* labels, int n, int k) {
  activate();
  cuda::count_correct({stream_, blas_}, logits, labels, n, k, count_device_);
  PSTRAIN_CUDA_CHECK(cudaMemcpyAsync(count_host_, count_device_, sizeof(unsigned long long),
                                     cudaMemcpyDeviceToHost, stream_));
  PSTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return static_cast<int64_t>(*count_host_);
}

void CudaOps::optimizer_update(const OptimizerConfig& config, float* param, const float* grad,
                               float* slot0, float* slot1, int64_t count, int64_t t) {
  activate();
  OptimizerStep step;
  switch (config.kind) {
    case OptimizerKind::kSgd:
      step.kind = OptimizerStep::kSgd;
      break;
    case OptimizerKind::kMomentum:
      step.kind = OptimizerStep::kMomentum;
      break;
    case OptimizerKind::kAdam:
      step.kind = OptimizerStep::kAdam;
      break;
    case OptimizerKind::kAdagrad:
      step.kind = OptimizerStep::kAdagrad;
      break;
  }
  step.lr = learning_rate_at(config, t - 1);
  step.lr_t = config.kind == OptimizerKind::kAdam
                  ? adam_step_size(step.lr, config.beta1, config.beta2, t)
                  : step.lr;
  step.momentum = config.momentum;
  step.beta1 = config.beta1;
  step.beta2 = config.beta2;
  step.epsilon = config.epsilon;
  cuda::optimizer_update({stream_, blas_}, step, param, grad, slot0, slot1, count);
}

}  // namespace pstrain::cuda

namespace pstrain {

Result<std::unique_ptr<Ops>> make_cuda_ops(int device, bool tf32) {
  const cuda::GpuQuery query = cuda::query_gpus();
  if (query.gpus.empty()) {
    return unavailable("the CUDA backend cannot start: " + query.error +
                       " (run on a machine with an NVIDIA GPU and driver, or use the CPU "
                       "backend: --num_gpus=0)");
  }
  const int count = static_cast<int>(query.gpus.size());
  if (device < 0 || device >= count) {
    return invalid_argument("CUDA device " + std::to_string(device) + " does not exist: this " +
                            "machine has " + std::to_string(count) + " GPU(s), numbered 0 to " +
                            std::to_string(count - 1));
  }
  try {
    return std::unique_ptr<Ops>(std::make_unique<cuda::CudaOps>(device, tf32));
  } catch (const CudaError& e) {
    return unavailable("cannot set up CUDA device " + std::to_string(device) + " (" +
                       query.gpus[static_cast<size_t>(device)].name + "): " + e.what());
  }
}

}  // namespace pstrain
