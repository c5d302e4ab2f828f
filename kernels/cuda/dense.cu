// Dense layer y = x w + b on cuBLAS, forward and backward, plus the GEMM/bias/column-sum
// helpers that conv2d.cu shares. See kernels.h for the contract.
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/shared_math.h"

namespace pstrain::cuda {
namespace {

__global__ void add_row_bias_kernel(float* y, const float* bias, int64_t count, int64_t cols) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) y[i] += bias[i % cols];
}

__global__ void fill_kernel(float* p, float value, int64_t count) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) p[i] = value;
}

}  // namespace

void gemm_row_major(const Launch& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    const float* a, const float* b, float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // empty sum: C = 0 (cuBLAS may return early without writing C)
    PSTRAIN_CUDA_CHECK(
        cudaMemsetAsync(c, 0, static_cast<size_t>(m * n) * sizeof(float), ctx.stream));
    return;
  }
  const math::ColumnMajorGemm g =
      math::row_major_gemm(trans_a, trans_b, blas_int(m, "GEMM rows"), blas_int(n, "GEMM columns"),
                           blas_int(k, "GEMM inner size"));
  const float one = 1.0f;
  const float zero = 0.0f;  // beta == 0: cuBLAS does not read C, so C may hold anything
  PSTRAIN_CUBLAS_CHECK(cublasSgemm(ctx.blas, g.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   g.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &one,
                                   b, g.ld_first, a, g.ld_second, &zero, c, g.ldc));
}

void add_row_bias(const Launch& ctx, float* y, const float* bias, int64_t rows, int64_t cols) {
  const int64_t count = rows * cols;
  if (count == 0) return;
  add_row_bias_kernel<<<grid_for(count), kThreads, 0, ctx.stream>>>(y, bias, count, cols);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

void column_sums(const Launch& ctx, const float* a, int64_t rows, int64_t cols, const float* ones,
                 float* sums) {
  if (cols == 0) return;
  if (rows == 0) {
    PSTRAIN_CUDA_CHECK(
        cudaMemsetAsync(sums, 0, static_cast<size_t>(cols) * sizeof(float), ctx.stream));
    return;
  }
  // a row-major [rows, cols] is column-major [cols, rows] with leading dimension cols:
  // sums = that matrix times a vector of ones.
  const int m = blas_int(cols, "column-sum columns");
  const int n = blas_int(rows, "column-sum rows");
  const float one = 1.0f;
  const float zero = 0.0f;
  PSTRAIN_CUBLAS_CHECK(
      cublasSgemv(ctx.blas, CUBLAS_OP_N, m, n, &one, a, m, ones, 1, &zero, sums, 1));
}

void fill(const Launch& ctx, float* p, float value, int64_t count) {
  if (count == 0) return;
  fill_kernel<<<grid_for(count), kThreads, 0, ctx.stream>>>(p, value, count);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

void dense_forward(const Launch& ctx, const float* x, const float* w, const float* b, float* y,
                   int n, int in, int out) {
  // y [n, out] = x [n, in] * w [in, out], then + b.
  gemm_row_major(ctx, false, false, n, out, in, x, w, y);
  add_row_bias(ctx, y, b, n, out);
}

void dense_backward(const Launch& ctx, const float* x, const float* w, const float* dy, float* dx,
                    float* dw, float* db, int n, int in, int out, const float* ones) {
  // dw [in, out] = x^T [in, n] * dy [n, out]
  gemm_row_major(ctx, true, false, in, out, n, x, dy, dw);
  // db [out] = column sums of dy
  column_sums(ctx, dy, n, out, ones, db);
  // dx [n, in] = dy [n, out] * w^T [out, in]
  if (dx != nullptr) gemm_row_major(ctx, false, true, n, in, out, dy, w, dx);
}

}  // namespace pstrain::cuda
