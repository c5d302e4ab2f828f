// ReLU forward and backward (element-wise, in place allowed). See kernels.h for the contract.
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/shared_math.h"

namespace pstrain::cuda {
namespace {

// No __restrict__: y may alias x, dx may alias dy (each element is read before it is written
// by the same thread).
__global__ void relu_forward_kernel(const float* x, float* y, int64_t count) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) y[i] = math::relu(x[i]);
}

__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t count) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) {
    dx[i] = math::relu_grad(y[i], dy[i]);
  }
}

}  // namespace

void relu_forward(const Launch& ctx, const float* x, float* y, int64_t count) {
  if (count <= 0) return;
  relu_forward_kernel<<<grid_for(count), kThreads, 0, ctx.stream>>>(x, y, count);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

void relu_backward(const Launch& ctx, const float* y, const float* dy, float* dx, int64_t count) {
  if (count <= 0) return;
  relu_backward_kernel<<<grid_for(count), kThreads, 0, ctx.stream>>>(y, dy, dx, count);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

void check_kernel_image() {
  // Fails with cudaErrorNoKernelImageForDevice (or InvalidDeviceFunction) when the binary holds
  // neither machine code nor PTX that this GPU can run (CMAKE_CUDA_ARCHITECTURES too new).
  cudaFuncAttributes attr{};
  PSTRAIN_CUDA_CHECK(cudaFuncGetAttributes(&attr, relu_forward_kernel));
}

}  // namespace pstrain::cuda
