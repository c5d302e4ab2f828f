// conv2d, stride 1, SAME padding, NHWC x HWIO: im2col + cuBLAS SGEMM forward; backward
// dw = cols^T dy, db = column sums of dy, dx = col2im(dy w^T) in gather form (no atomics, every
// dx element written once). See kernels.h for the contract and shared_math.h for the index math.
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/shared_math.h"

namespace pstrain::cuda {
namespace {

// cols [n*h*w, ksize*ksize*c], count = its size.
__global__ void im2col_kernel(const float* __restrict__ x, float* __restrict__ cols, int64_t count,
                              int h, int w, int c, int ksize) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) {
    cols[i] = math::im2col_value(x, i, h, w, c, ksize);
  }
}

// dx [n, h, w, c], count = its size; dcols [n*h*w, ksize*ksize*c].
__global__ void col2im_kernel(const float* __restrict__ dcols, float* __restrict__ dx,
                              int64_t count, int h, int w, int c, int ksize) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) {
    dx[i] = math::col2im_value(dcols, i, h, w, c, ksize);
  }
}

void im2col(const Launch& ctx, const float* x, float* cols, const ConvShape& s) {
  const int64_t count = conv2d_workspace_floats(s);
  if (count == 0) return;
  im2col_kernel<<<grid_for(count), kThreads, 0, ctx.stream>>>(x, cols, count, s.h, s.w, s.c,
                                                              s.ksize);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

void col2im(const Launch& ctx, const float* dcols, float* dx, const ConvShape& s) {
  const int64_t count = static_cast<int64_t>(s.n) * s.h * s.w * s.c;
  if (count == 0) return;
  col2im_kernel<<<grid_for(count), kThreads, 0, ctx.stream>>>(dcols, dx, count, s.h, s.w, s.c,
                                                              s.ksize);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace

int64_t conv2d_workspace_floats(const ConvShape& s) {
  return static_cast<int64_t>(s.n) * s.h * s.w * math::conv_cols_width(s.c, s.ksize);
}

void conv2d_forward(const Launch& ctx, const float* x, const float* w, const float* b, float* y,
                    float* workspace, const ConvShape& s) {
  const int64_t pixels = static_cast<int64_t>(s.n) * s.h * s.w;
  const int64_t width = math::conv_cols_width(s.c, s.ksize);
  if (pixels == 0 || s.k == 0) return;  // y has no elements
  im2col(ctx, x, workspace, s);
  // y [pixels, k] = cols [pixels, width] * w [width, k], then + b.
  gemm_row_major(ctx, false, false, pixels, s.k, width, workspace, w, y);
  add_row_bias(ctx, y, b, pixels, s.k);
}

void conv2d_backward(const Launch& ctx, const float* x, const float* w, const float* dy, float* dx,
                     float* dw, float* db, float* workspace, const float* ones,
                     const ConvShape& s) {
  const int64_t pixels = static_cast<int64_t>(s.n) * s.h * s.w;
  const int64_t width = math::conv_cols_width(s.c, s.ksize);
  // dw [width, k] = cols^T [width, pixels] * dy [pixels, k]
  im2col(ctx, x, workspace, s);
  gemm_row_major(ctx, true, false, width, s.k, pixels, workspace, dy, dw);
  // db [k] = column sums of dy [pixels, k]
  column_sums(ctx, dy, pixels, s.k, ones, db);
  if (dx == nullptr) return;
  // dcols [pixels, width] = dy [pixels, k] * w^T [k, width], into the same workspace (stream
  // order puts this after the dw GEMM has read the columns), then gathered into dx.
  gemm_row_major(ctx, false, true, pixels, width, s.k, dy, w, workspace);
  col2im(ctx, workspace, dx, s);
}

}  // namespace pstrain::cuda
