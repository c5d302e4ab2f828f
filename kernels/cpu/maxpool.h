// 2x2 max-pool, stride 2, VALID padding on the CPU, forward and backward.
//
// Contract (as Ops::maxpool2x2_* in kernels/ops.h): x [n, h, w, c] -> y [n, h/2, w/2, c]
// (floor: an odd last row/column is dropped). argmax[i] is the flat index into x of the element
// y[i] came from; ties go to the first element of the window in row-major order (top-left,
// top-right, bottom-left, bottom-right). Backward writes dx [n, h, w, c]: dy routed to each
// window's argmax, 0 elsewhere. Every output element is written. x must have fewer than 2^31
// elements (argmax is int32).
// Thread-safety: pure functions.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/common.h"
#include "kernels/ops.h"

namespace pstrain::cpu {

template <typename T>
void maxpool2x2_forward(const T* x, T* y, int32_t* argmax, const PoolDims& d) {
  const int oh = d.out_h(), ow = d.out_w(), c = d.c, h = d.h, w = d.w;
  const int32_t right = c, down = w * c;  // offsets of the other window elements
  const int64_t out_rows = int64_t{d.n} * oh;
  const int64_t grain = kChunkElements / std::max<int64_t>(1, 4 * int64_t{ow} * c);
  parallel_ranges(out_rows, grain, [=](int64_t r_begin, int64_t r_end) {
    // Locals, not the closure's members, so the stores through ao (int32) cannot alias them
    // and the channel loop vectorises.
    const int32_t rt = right, dn = down;
    const int cc = c, oww = ow, ohh = oh, hh = h, ww = w;
    for (int64_t r = r_begin; r < r_end; ++r) {  // output row oy of image b
      const int64_t b = r / ohh, oy = r % ohh;
      T* yr = y + r * oww * cc;
      int32_t* ar = argmax + r * oww * cc;
      for (int ox = 0; ox < oww; ++ox) {
        const int64_t top = ((b * hh + 2 * oy) * ww + 2 * ox) * cc;
        const T* p00 = x + top;
        const T* p01 = p00 + rt;
        const T* p10 = p00 + dn;
        const T* p11 = p10 + rt;
        T* yo = yr + int64_t{ox} * cc;
        int32_t* ao = ar + int64_t{ox} * cc;
        const int32_t base = static_cast<int32_t>(top);
        for (int ch = 0; ch < cc; ++ch) {  // branch-free: strict > keeps the first maximum
          T best = p00[ch];
          int32_t off = 0;
          const T v01 = p01[ch], v10 = p10[ch], v11 = p11[ch];
          bool g = v01 > best;
          best = g ? v01 : best;
          off = g ? rt : off;
          g = v10 > best;
          best = g ? v10 : best;
          off = g ? dn : off;
          g = v11 > best;
          best = g ? v11 : best;
          off = g ? dn + rt : off;
          yo[ch] = best;
          ao[ch] = base + ch + off;
        }
      }
    }
  });
}

template <typename T>
void maxpool2x2_backward(const T* dy, const int32_t* argmax, T* dx, const PoolDims& d) {
  const int64_t image_in = int64_t{d.h} * d.w * d.c;
  const int64_t image_out = int64_t{d.out_h()} * d.out_w() * d.c;
  const int64_t grain = kChunkElements / std::max<int64_t>(1, image_in);
  // An image's argmax entries all point into that image, so images are independent.
  parallel_ranges(d.n, grain, [=](int64_t b_begin, int64_t b_end) {
    std::fill(dx + b_begin * image_in, dx + b_end * image_in, T(0));
    for (int64_t i = b_begin * image_out; i < b_end * image_out; ++i) dx[argmax[i]] += dy[i];
  });
}

}  // namespace pstrain::cpu
