// Shared host/device math for the kernels: the element-wise functions and index arithmetic that
// the CUDA kernels (kernels/cuda/*.cu) evaluate per element, written once so that CPU unit tests
// (tests/kernels/shared_math_test.cc) can check them against straightforward formulas.
//
// Contract
// - Every function is PSTRAIN_HD (host and device), pure, allocates nothing, throws nothing and
//   checks nothing: callers pass in-range indices and positive sizes.
// - Layouts are those of kernels/ops.h: NHWC images, HWIO conv weights, row-major matrices.
//   Sizes are int, flat indices int64_t (products of sizes can pass 2^31).
// - This header compiles as C++17 under nvcc (CMake builds CUDA as C++17), so it includes
//   nothing that needs C++20.
// Thread-safety: pure functions.
#pragma once

#include <math.h>  // expf/logf/exp/log in the global namespace, callable from device code
#include <stdint.h>

#include "kernels/hd.h"

namespace pstrain::math {

// --- element-wise ------------------------------------------------------------------------------

PSTRAIN_HD float hd_exp(float x) { return expf(x); }
PSTRAIN_HD double hd_exp(double x) { return exp(x); }
PSTRAIN_HD float hd_log(float x) { return logf(x); }
PSTRAIN_HD double hd_log(double x) { return log(x); }

template <typename T>
PSTRAIN_HD T relu(T x) {
  return x > static_cast<T>(0) ? x : static_cast<T>(0);
}

// Gradient of relu through its output: dy where y > 0, else 0.
template <typename T>
PSTRAIN_HD T relu_grad(T y, T dy) {
  return y > static_cast<T>(0) ? dy : static_cast<T>(0);
}

// A flat NHWC index of an [*, h, w, c] tensor split into (image, row, column, channel), and
// the reverse.
struct NhwcIndex {
  int64_t img;
  int y;
  int x;
  int ci;
};

PSTRAIN_HD NhwcIndex nhwc_split(int64_t i, int h, int w, int c) {
  NhwcIndex p;
  p.ci = static_cast<int>(i % c);
  int64_t rest = i / c;
  p.x = static_cast<int>(rest % w);
  rest /= w;
  p.y = static_cast<int>(rest % h);
  p.img = rest / h;
  return p;
}

PSTRAIN_HD int64_t nhwc_flat(int64_t img, int y, int x, int ci, int h, int w, int c) {
  return ((img * h + y) * w + x) * c + ci;
}

// --- conv2d (stride 1, SAME padding, odd square kernel) -----------------------------------------
// The column matrix `cols` has shape [n*h*w, ksize*ksize*c]: row r = (img*h + oy)*w + ox is an
// output pixel, column q = (ky*ksize + kx)*c + ci is a row of the HWIO weight matrix seen as
// [ksize*ksize*c, k]. So y[n*h*w, k] = cols * w.

PSTRAIN_HD int same_pad(int ksize) { return ksize / 2; }

PSTRAIN_HD bool in_range(int v, int limit) { return v >= 0 && v < limit; }

PSTRAIN_HD int64_t conv_cols_width(int c, int ksize) {
  return static_cast<int64_t>(ksize) * ksize * c;
}

// Flat NHWC index of the x element that feeds cols[r, q], or -1 where it reads SAME padding.
PSTRAIN_HD int64_t im2col_source(int64_t r, int64_t q, int h, int w, int c, int ksize) {
  const int ci = static_cast<int>(q % c);
  const int kpos = static_cast<int>(q / c);
  const int kx = kpos % ksize;
  const int ky = kpos / ksize;
  const NhwcIndex pixel = nhwc_split(r, h, w, 1);  // row r is output pixel (img, oy, ox)
  const int ox = pixel.x, oy = pixel.y;
  const int64_t img = pixel.img;
  const int pad = same_pad(ksize);
  const int iy = oy + ky - pad;
  const int ix = ox + kx - pad;
  if (!in_range(iy, h) || !in_range(ix, w)) return -1;
  return nhwc_flat(img, iy, ix, ci, h, w, c);
}

// cols[idx] (idx flat in the [n*h*w, ksize*ksize*c] column matrix): x value or 0 for padding.
template <typename T>
PSTRAIN_HD T im2col_value(const T* x, int64_t idx, int h, int w, int c, int ksize) {
  const int64_t width = conv_cols_width(c, ksize);
  const int64_t src = im2col_source(idx / width, idx % width, h, w, c, ksize);
  return src < 0 ? static_cast<T>(0) : x[src];
}

// col2im in gather form: dx[i] (i flat NHWC in x) is the sum of dcols[r, q] over every column
// entry that im2col filled from x[i]: for kernel position (ky, kx) that is the output pixel
// (oy, ox) = (iy - ky + pad, ix - kx + pad) when it lies inside the image, and
// q = (ky*ksize + kx)*c + ci. Summed with ky outer, kx inner. Each dx element is written once.
template <typename T>
PSTRAIN_HD T col2im_value(const T* dcols, int64_t i, int h, int w, int c, int ksize) {
  const NhwcIndex p = nhwc_split(i, h, w, c);
  const int ci = p.ci, ix = p.x, iy = p.y;
  const int64_t img = p.img;
  const int pad = same_pad(ksize);
  const int64_t width = conv_cols_width(c, ksize);
  T sum = static_cast<T>(0);
  for (int ky = 0; ky < ksize; ++ky) {
    const int oy = iy - ky + pad;
    if (!in_range(oy, h)) continue;
    for (int kx = 0; kx < ksize; ++kx) {
      const int ox = ix - kx + pad;
      if (!in_range(ox, w)) continue;
      const int64_t r = (img * h + oy) * w + ox;
      const int64_t q = (static_cast<int64_t>(ky) * ksize + kx) * c + ci;
      sum += dcols[r * width + q];
    }
  }
  return sum;
}

// --- 2x2 max-pool, stride 2, VALID (floor) ------------------------------------------------------
// y [n, h/2, w/2, c]; y[img, oy, ox, ci] looks at x[img, 2*oy + j/2, 2*ox + j%2, ci] for window
// element j = 0..3 in row-major order.

// Flat x index of window element j of output o.
PSTRAIN_HD int64_t pool_window_source(int64_t o, int j, int h, int w, int c) {
  const NhwcIndex p = nhwc_split(o, h / 2, w / 2, c);
  return nhwc_flat(p.img, 2 * p.y + j / 2, 2 * p.x + j % 2, p.ci, h, w, c);
}

// Flat y index of the one window holding x[i], or -1 when x[i] lies in no window (the last row
// or column of an odd h or w).
PSTRAIN_HD int64_t pool_window_of(int64_t i, int h, int w, int c) {
  const NhwcIndex p = nhwc_split(i, h, w, c);
  const int out_h = h / 2;
  const int out_w = w / 2;
  const int oy = p.y / 2;
  const int ox = p.x / 2;
  if (oy >= out_h || ox >= out_w) return -1;
  return nhwc_flat(p.img, oy, ox, p.ci, out_h, out_w, c);
}

// y[o] and its argmax (flat x index): the window maximum, ties to the first element in
// row-major window order (a later element replaces the best only when strictly greater).
template <typename T>
PSTRAIN_HD T maxpool2x2_value(const T* x, int64_t o, int h, int w, int c, int64_t* argmax) {
  int64_t best_i = pool_window_source(o, 0, h, w, c);
  T best = x[best_i];
  for (int j = 1; j < 4; ++j) {
    const int64_t s = pool_window_source(o, j, h, w, c);
    if (x[s] > best) {
      best = x[s];
      best_i = s;
    }
  }
  *argmax = best_i;
  return best;
}

// dx[i] in gather form: dy of the window holding x[i] when x[i] was that window's argmax, else 0.
template <typename T>
PSTRAIN_HD T maxpool2x2_grad(const T* dy, const int32_t* argmax, int64_t i, int h, int w, int c) {
  const int64_t o = pool_window_of(i, h, w, c);
  if (o < 0) return static_cast<T>(0);
  return static_cast<int64_t>(argmax[o]) == i ? dy[o] : static_cast<T>(0);
}

// --- softmax cross-entropy (stable: the row maximum is subtracted) -----------------------------
// For a row with maximum m and s = sum_j exp(x_j - m):
//   loss_row = log(s) - (x_label - m)          (= -log softmax(x)_label)
//   dlogits_j = (exp(x_j - m) / s - [j == label]) * inv_n

template <typename T>
PSTRAIN_HD T softmax_xent_row_loss(T label_logit, T row_max, T sum_exp) {
  return hd_log(sum_exp) - (label_logit - row_max);
}

template <typename T>
PSTRAIN_HD T softmax_xent_grad(T logit, T row_max, T sum_exp, bool is_label, T inv_n) {
  const T p = hd_exp(logit - row_max) / sum_exp;
  return (p - (is_label ? static_cast<T>(1) : static_cast<T>(0))) * inv_n;
}

// Argmax with ties to the first maximum, as a combine rule for any scan or reduction order:
// (v, i) beats (best_v, best_i) when larger, or equal at a smaller index. NaN never wins.
template <typename T>
PSTRAIN_HD bool argmax_prefer(T v, int i, T best_v, int best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

// --- row-major GEMM through a column-major BLAS (cuBLAS) -----------------------------------------
// Row-major C[m, n] = op(A)[m, k] * op(B)[k, n], where A is stored [m, k] (or [k, m] when
// trans_a) and B is stored [k, n] (or [n, k] when trans_b). A row-major matrix read in
// column-major order is its transpose, so the call computes C^T = op(B)^T op(A)^T: BLAS's first
// operand is our B, its second is our A, and each keeps its own transpose flag.
struct ColumnMajorGemm {
  bool trans_first = false;   // BLAS transa, applied to our B
  bool trans_second = false;  // BLAS transb, applied to our A
  int m = 0, n = 0, k = 0;    // BLAS m, n, k (= our n, m, k)
  int ld_first = 1;           // BLAS lda (leading dimension of our B)
  int ld_second = 1;          // BLAS ldb (leading dimension of our A)
  int ldc = 1;                // BLAS ldc (= our n)
};

PSTRAIN_HD int max1(int v) { return v > 1 ? v : 1; }

PSTRAIN_HD ColumnMajorGemm row_major_gemm(bool trans_a, bool trans_b, int m, int n, int k) {
  ColumnMajorGemm g;
  g.trans_first = trans_b;
  g.trans_second = trans_a;
  g.m = n;
  g.n = m;
  g.k = k;
  g.ld_first = max1(trans_b ? k : n);
  g.ld_second = max1(trans_a ? m : k);
  g.ldc = max1(n);
  return g;
}

}  // namespace pstrain::math
