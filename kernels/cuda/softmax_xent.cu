// Softmax cross-entropy, stable (row maximum subtracted): one warp per row computes the row's
// maximum, sum of exponentials, dlogits and its loss; one block then averages the per-row losses
// in a fixed order (no atomics: the loss is bit-for-bit reproducible). See kernels.h and
// shared_math.h.
#include <math.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/shared_math.h"

namespace pstrain::cuda {
namespace {

constexpr int kRowsPerBlock = kThreads / kWarp;
constexpr int kMeanThreads = 256;  // a power of two (tree reduction)

__global__ void softmax_xent_rows_kernel(const float* __restrict__ logits,
                                         const int32_t* __restrict__ labels,
                                         float* __restrict__ dlogits, float* __restrict__ row_loss,
                                         int n, int k, float inv_n) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + static_cast<int64_t>(threadIdx.x) / kWarp;
  if (row >= n) return;  // the whole warp leaves together, so the shuffles below see 32 lanes
  const float* x = logits + row * k;
  float* d = dlogits + row * k;

  float row_max = -INFINITY;
  for (int j = lane; j < k; j += kWarp) row_max = fmaxf(row_max, x[j]);
  row_max = warp_max(row_max);
  float sum = 0.0f;
  for (int j = lane; j < k; j += kWarp) sum += math::hd_exp(x[j] - row_max);
  sum = warp_sum(sum);

  const int label = labels[row];
  for (int j = lane; j < k; j += kWarp) {
    d[j] = math::softmax_xent_grad(x[j], row_max, sum, j == label, inv_n);
  }
  if (lane == 0) {
    // A label outside [0, k) breaks the Ops contract; make it visible as a NaN loss rather than
    // reading out of bounds.
    row_loss[row] =
        (label >= 0 && label < k) ? math::softmax_xent_row_loss(x[label], row_max, sum) : NAN;
  }
}

// One block of kMeanThreads: *loss = mean of v[0, n), summed in double in a fixed order.
__global__ void mean_kernel(const float* __restrict__ v, int n, float* __restrict__ loss) {
  __shared__ double part[kMeanThreads];
  double s = 0.0;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += kMeanThreads) s += v[i];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int half = kMeanThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss = static_cast<float>(part[0] / n);
}

}  // namespace

void softmax_xent(const Launch& ctx, const float* logits, const int32_t* labels, float* dlogits,
                  float* loss, float* row_loss, int n, int k) {
  if (n <= 0 || k <= 0) {
    // No rows (or no classes, which leaves no valid label): loss 0, dlogits has no elements.
    PSTRAIN_CUDA_CHECK(cudaMemsetAsync(loss, 0, sizeof(float), ctx.stream));
    return;
  }
  const unsigned blocks = static_cast<unsigned>(ceil_div(n, kRowsPerBlock));
  softmax_xent_rows_kernel<<<blocks, kRowsPerBlock * kWarp, 0, ctx.stream>>>(
      logits, labels, dlogits, row_loss, n, k, 1.0f / static_cast<float>(n));
  PSTRAIN_CUDA_CHECK_LAUNCH();
  mean_kernel<<<1, kMeanThreads, 0, ctx.stream>>>(row_loss, n, loss);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace pstrain::cuda
