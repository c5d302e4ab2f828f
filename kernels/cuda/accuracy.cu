// count_correct: one warp per row finds the row's first maximum (shared_math.h argmax_prefer
// as the combine rule, so ties go to the lowest index whatever the reduction order) and counts
// rows where it equals the label (integer atomics: the count is exact). See kernels.h.
#include <limits.h>
#include <math.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/shared_math.h"

namespace pstrain::cuda {
namespace {

constexpr int kRowsPerBlock = kThreads / kWarp;

__global__ void count_correct_kernel(const float* __restrict__ logits,
                                     const int32_t* __restrict__ labels, int n, int k,
                                     unsigned long long* __restrict__ count) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + static_cast<int64_t>(threadIdx.x) / kWarp;
  if (row >= n) return;  // whole warp
  const float* x = logits + row * k;
  float best_v = -INFINITY;
  int best_i = INT_MAX;  // loses every tie, so a row of -inf still picks index 0
  for (int j = lane; j < k; j += kWarp) {
    const float v = x[j];
    if (math::argmax_prefer(v, j, best_v, best_i)) {
      best_v = v;
      best_i = j;
    }
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const float other_v = __shfl_xor_sync(kFullMask, best_v, offset);
    const int other_i = __shfl_xor_sync(kFullMask, best_i, offset);
    if (math::argmax_prefer(other_v, other_i, best_v, best_i)) {
      best_v = other_v;
      best_i = other_i;
    }
  }
  if (lane == 0 && best_i == labels[row]) atomicAdd(count, 1ULL);
}

}  // namespace

void count_correct(const Launch& ctx, const float* logits, const int32_t* labels, int n, int k,
                   unsigned long long* count) {
  PSTRAIN_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned long long), ctx.stream));
  if (n <= 0 || k <= 0) return;
  const unsigned blocks = static_cast<unsigned>(ceil_div(n, kRowsPerBlock));
  count_correct_kernel<<<blocks, kRowsPerBlock * kWarp, 0, ctx.stream>>>(logits, labels, n, k,
                                                                         count);
  PSTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace pstrain::cuda
