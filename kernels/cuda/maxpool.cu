// 2x2 max-pool, stride 2, VALID: forward records the argmax (flat int32 index into x, ties to
// the first element in row-major window order); backward in gather form writes every dx element
// (each x element lies in at most one window; those in none get 0). See kernels.h and
// shared_math.h.
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/shared_math.h"
#include "runtime/base/check.h"

namespace pstrain::cuda {
namespace {

__global__ void maxpool2x2_forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                                          int32_t* __restrict__ argmax, int64_t count, int h, int w,
                                          int c) {
  for (int64_t o = grid_start(); o < count; o += grid_stride()) {
    int64_t best = 0;
    y[o] = math::maxpool2x2_value(x, o, h, w, c, &best);
    argmax[o] = static_cast<int32_t>(best);
  }
}

__global__ void maxpool2x2_backward_kernel(const float* __restrict__ dy,
                                           const int32_t* __restrict__ argmax,
                                           float* __restrict__ dx, int64_t count, int h, int w,
                                           int c) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) {
    dx[i] = math::maxpool2x2_grad(dy, argmax, i, h, w, c);
  }
}

int64_t checked_input_count(const PoolShape& s) {
  const int64_t count = static_cast<int64_t>(s.n) * s.h * s.w * s.c;
  // argmax holds int32 flat indices into x (kernels/ops.h).
  PSTRAIN_CHECK(count <= INT32_MAX, "maxpool2x2: input too large for int32 argmax indices");
  return count;
}

}  // namespace

void maxpool2x2_forward(const Launch& ctx, const float* x, float* y, int32_t* argmax,
                        const PoolShape& s) {
  checked_input_count(s);
  const int64_t count = static_cast<int64_t>(s.n) * (s.h / 2) * (s.w / 2) * s.c;
  if (count == 0) return;
  maxpool2x2_forward_kernel<<<grid_for(count), kThreads, 0, ctx.stream>>>(x, y, argmax, count, s.h,
                                                                          s.w, s.c);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

void maxpool2x2_backward(const Launch& ctx, const float* dy, const int32_t* argmax, float* dx,
                         const PoolShape& s) {
  const int64_t count = checked_input_count(s);
  if (count == 0) return;
  maxpool2x2_backward_kernel<<<grid_for(count), kThreads, 0, ctx.stream>>>(dy, argmax, dx, count,
                                                                           s.h, s.w, s.c);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace pstrain::cuda
