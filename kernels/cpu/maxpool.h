// 2x2 max-pool, stride 2, VALID padding on the CPU, forward and backward.
//
// Contract (as Ops::maxpool2x2_* in kernels/ops.h): x [n, h, w, c] -> y [n, h/2, w/2, c]
// (floor: an odd last row/column is dropped). argmax[i] is the flat index into x of the element
// y[i] came from; ties go to the first element of the window in row-major order (top-left,
// top-right, bottom-left, bottom-right). Backward writes dx [n, h, w, c]: dy routed to each
// window's argmax, 0 elsewhere. Every output element is written.
// Thread-safety: pure functions.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/common.h"
#include "kernels/ops.h"

namespace pstrain::cpu {

template <typename T>
void maxpool2x2_forward(const T* x, T* y, int32_t* argmax, const PoolDims& d) {
  const int oh = d.out_h(), ow = d.out_w(), c = d.c;
  const int64_t row = int64_t{d.w} * c;  // elements per input row
  const int64_t out_rows = int64_t{d.n} * oh;
  const int nt = parallel_threads();
  PSTRAIN_CPU_PARALLEL_FOR(nt)
  for (int64_t r = 0; r < out_rows; ++r) {  // one output row (image b, row oy) per iteration
    const int64_t b = r / oh;
    const int64_t oy = r % oh;
    T* yr = y + r * ow * c;
    int32_t* ar = argmax + r * ow * c;
    for (int ox = 0; ox < ow; ++ox) {
      const int64_t top = ((b * d.h + 2 * oy) * d.w + 2 * ox) * c;
      for (int ch = 0; ch < c; ++ch) {
        const int64_t i0 = top + ch;
        const int64_t cand[3] = {i0 + c, i0 + row, i0 + row + c};
        int64_t best = i0;
        T best_v = x[i0];
        for (int64_t i : cand) {
          if (x[i] > best_v) {  // strict: the first maximum wins
            best_v = x[i];
            best = i;
          }
        }
        yr[int64_t{ox} * c + ch] = best_v;
        ar[int64_t{ox} * c + ch] = static_cast<int32_t>(best);
      }
    }
  }
}

template <typename T>
void maxpool2x2_backward(const T* dy, const int32_t* argmax, T* dx, const PoolDims& d) {
  const int64_t image_in = int64_t{d.h} * d.w * d.c;
  const int64_t image_out = int64_t{d.out_h()} * d.out_w() * d.c;
  const int nt = parallel_threads();
  PSTRAIN_CPU_PARALLEL_FOR(nt)
  for (int64_t b = 0; b < d.n; ++b) {  // an image's argmax entries all point into that image
    std::fill_n(dx + b * image_in, image_in, T(0));
    for (int64_t i = b * image_out; i < (b + 1) * image_out; ++i) dx[argmax[i]] += dy[i];
  }
}

}  // namespace pstrain::cpu
