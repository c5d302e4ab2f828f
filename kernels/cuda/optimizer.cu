// Optimizer updates on the GPU: one element-wise kernel per optimizer over the shared
// PSTRAIN_HD step functions of kernels/optim_math.h (the same code the CPU and the parameter
// servers run). See kernels.h for the contract.
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/optim_math.h"

namespace pstrain::cuda {
namespace {

__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ g, float lr,
                           int64_t count) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) sgd_step(p[i], g[i], lr);
}

__global__ void momentum_kernel(float* __restrict__ p, const float* __restrict__ g,
                                float* __restrict__ a, float lr, float momentum, int64_t count) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) {
    momentum_step(p[i], g[i], a[i], lr, momentum);
  }
}

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g,
                            float* __restrict__ m, float* __restrict__ v, float lr_t, float beta1,
                            float beta2, float epsilon, int64_t count) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) {
    adam_step(p[i], g[i], m[i], v[i], lr_t, beta1, beta2, epsilon);
  }
}

__global__ void adagrad_kernel(float* __restrict__ p, const float* __restrict__ g,
                               float* __restrict__ a, float lr, int64_t count) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) adagrad_step(p[i], g[i], a[i], lr);
}

}  // namespace

void optimizer_update(const Launch& ctx, const OptimizerStep& s, float* param, const float* grad,
                      float* slot0, float* slot1, int64_t count) {
  if (count <= 0) return;
  const unsigned grid = grid_for(count);
  switch (s.kind) {
    case OptimizerStep::kSgd:
      sgd_kernel<<<grid, kThreads, 0, ctx.stream>>>(param, grad, s.lr, count);
      break;
    case OptimizerStep::kMomentum:
      momentum_kernel<<<grid, kThreads, 0, ctx.stream>>>(param, grad, slot0, s.lr, s.momentum,
                                                         count);
      break;
    case OptimizerStep::kAdam:
      adam_kernel<<<grid, kThreads, 0, ctx.stream>>>(param, grad, slot0, slot1, s.lr_t, s.beta1,
                                                     s.beta2, s.epsilon, count);
      break;
    case OptimizerStep::kAdagrad:
      adagrad_kernel<<<grid, kThreads, 0, ctx.stream>>>(param, grad, slot0, s.lr, count);
      break;
  }
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace pstrain::cuda
