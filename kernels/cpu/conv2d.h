// 2-D convolution on the CPU: stride 1, SAME padding, odd square kernel, NHWC / HWIO, via
// im2col and Eigen GEMM, forward and backward.
//
// Contract (as Ops::conv2d_* in kernels/ops.h): x [n, h, w, c], w [ks, ks, c, k] (HWIO),
// b [k], y [n, h, w, k]; backward takes dy [n, h, w, k] and writes dx [n, h, w, c] (skipped
// when dx is null), dw [ks, ks, c, k], db [k]. Every output element is written.
// The images are processed in chunks of conv2d_chunk_images(d) images: each chunk is unrolled
// into the workspace as a [chunk * h * w, ks * ks * c] patch matrix (row = output pixel,
// column = (ky, kx, ci), matching HWIO flattened to [ks * ks * c, k]), so the workspace stays
// near kConv2dWorkspaceBudget elements however large the batch is.
//   forward:  y_chunk = patches * W + b
//   backward: dW = sum over chunks patches^T dy_chunk; db = column sums of dy;
//             dpatches = dy_chunk W^T (reusing the workspace), scattered back (col2im) into dx.
// Thread-safety: pure functions of their arguments; the workspace belongs to one call at a
// time.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/common.h"
#include "kernels/ops.h"

namespace pstrain::cpu {

// Target size of the patch matrix, in elements (8 MiB of floats): large enough for efficient
// GEMMs, small enough to stay moderate for big batches.
inline constexpr int64_t kConv2dWorkspaceBudget = int64_t{1} << 21;

// Patch-matrix columns: ks * ks * c.
inline int64_t conv2d_patch_size(const Conv2dDims& d) { return int64_t{d.ksize} * d.ksize * d.c; }

// Images unrolled at once (at least 1, at most n).
inline int64_t conv2d_chunk_images(const Conv2dDims& d) {
  const int64_t per_image = int64_t{d.h} * d.w * conv2d_patch_size(d);
  if (per_image <= 0 || d.n <= 0) return 1;
  return std::clamp<int64_t>(kConv2dWorkspaceBudget / per_image, 1, d.n);
}

// Elements of scratch memory that conv2d_forward and conv2d_backward need (the same for both).
inline size_t conv2d_workspace_floats(const Conv2dDims& d) {
  if (d.n <= 0) return 0;
  return static_cast<size_t>(conv2d_chunk_images(d) * d.h * d.w * conv2d_patch_size(d));
}

namespace detail {

// Valid kernel columns [kx0, kx1) for output column ox (input column ox + kx - pad in [0, w)).
inline void conv2d_valid_kx(int ox, int w, int ksize, int* kx0, int* kx1) {
  const int pad = ksize / 2;
  *kx0 = std::max(0, pad - ox);
  *kx1 = std::min(ksize, w + pad - ox);
}

// Unrolls images [i0, i0 + ni) of x into patches [ni * h * w, ks * ks * c].
template <typename T>
void im2col(const T* x, const Conv2dDims& d, int64_t i0, int64_t ni, T* patches) {
  const int ks = d.ksize, pad = ks / 2, h = d.h, w = d.w, c = d.c;
  const int64_t patch = conv2d_patch_size(d);
  const int64_t ks_c = int64_t{ks} * c;
  const int64_t rows = ni * h * w;
  const int nt = parallel_threads();
  PSTRAIN_CPU_PARALLEL_FOR(nt)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t img = i0 + r / (int64_t{h} * w);
    const int oy = static_cast<int>((r / w) % h);
    const int ox = static_cast<int>(r % w);
    int kx0 = 0, kx1 = 0;
    conv2d_valid_kx(ox, w, ks, &kx0, &kx1);
    const T* ximg = x + img * h * w * c;
    T* dst = patches + r * patch;
    for (int ky = 0; ky < ks; ++ky, dst += ks_c) {
      const int iy = oy + ky - pad;
      if (iy < 0 || iy >= h) {
        std::fill_n(dst, ks_c, T(0));
        continue;
      }
      std::fill_n(dst, int64_t{kx0} * c, T(0));
      const T* src = ximg + (int64_t{iy} * w + (ox + kx0 - pad)) * c;
      std::copy_n(src, int64_t{kx1 - kx0} * c, dst + int64_t{kx0} * c);
      std::fill_n(dst + int64_t{kx1} * c, int64_t{ks - kx1} * c, T(0));
    }
  }
}

// dx for images [i0, i0 + ni) = sum of the patch gradients over the pixels they came from.
template <typename T>
void col2im(const T* dpatches, const Conv2dDims& d, int64_t i0, int64_t ni, T* dx) {
  const int ks = d.ksize, pad = ks / 2, h = d.h, w = d.w, c = d.c;
  const int64_t patch = conv2d_patch_size(d);
  const int64_t ks_c = int64_t{ks} * c;
  const int64_t image = int64_t{h} * w * c;
  const int nt = parallel_threads();
  PSTRAIN_CPU_PARALLEL_FOR(nt)
  for (int64_t i = 0; i < ni; ++i) {  // one image per iteration: no two write the same dx
    T* dximg = dx + (i0 + i) * image;
    std::fill_n(dximg, image, T(0));
    const T* src_img = dpatches + i * h * w * patch;
    for (int oy = 0; oy < h; ++oy) {
      for (int ox = 0; ox < w; ++ox) {
        int kx0 = 0, kx1 = 0;
        conv2d_valid_kx(ox, w, ks, &kx0, &kx1);
        const T* src = src_img + (int64_t{oy} * w + ox) * patch;
        const int64_t len = int64_t{kx1 - kx0} * c;
        for (int ky = 0; ky < ks; ++ky) {
          const int iy = oy + ky - pad;
          if (iy < 0 || iy >= h) continue;
          const T* s = src + ky * ks_c + int64_t{kx0} * c;
          T* t = dximg + (int64_t{iy} * w + (ox + kx0 - pad)) * c;
          for (int64_t j = 0; j < len; ++j) t[j] += s[j];
        }
      }
    }
  }
}

}  // namespace detail

template <typename T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, T* workspace, const Conv2dDims& d) {
  assert(d.ksize % 2 == 1 && "conv2d needs an odd kernel size");
  const int64_t patch = conv2d_patch_size(d);
  const int64_t pixels = int64_t{d.h} * d.w;
  const int64_t chunk = conv2d_chunk_images(d);
  const ConstMatMap<T> wm(w, patch, d.k);
  const ConstRowVecMap<T> bm(b, d.k);
  for (int64_t i0 = 0; i0 < d.n; i0 += chunk) {
    const int64_t ni = std::min<int64_t>(chunk, d.n - i0);
    const int64_t rows = ni * pixels;
    const T* patches = x + i0 * pixels * d.c;  // a 1x1 kernel needs no unrolling
    if (d.ksize != 1) {
      detail::im2col(x, d, i0, ni, workspace);
      patches = workspace;
    }
    MatMap<T> ym(y + i0 * pixels * d.k, rows, d.k);
    ym.noalias() = ConstMatMap<T>(patches, rows, patch) * wm;
    ym.rowwise() += bm;
  }
}

template <typename T>
void conv2d_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, T* workspace,
                     const Conv2dDims& d) {
  assert(d.ksize % 2 == 1 && "conv2d needs an odd kernel size");
  const int64_t patch = conv2d_patch_size(d);
  const int64_t pixels = int64_t{d.h} * d.w;
  const int64_t chunk = conv2d_chunk_images(d);
  const ConstMatMap<T> wm(w, patch, d.k);
  MatMap<T> dwm(dw, patch, d.k);
  column_sums(dy, int64_t{d.n} * pixels, d.k, db);
  if (d.n <= 0) {
    dwm.setZero();
    return;
  }
  for (int64_t i0 = 0; i0 < d.n; i0 += chunk) {
    const int64_t ni = std::min<int64_t>(chunk, d.n - i0);
    const int64_t rows = ni * pixels;
    const ConstMatMap<T> dym(dy + i0 * pixels * d.k, rows, d.k);
    const T* patches = x + i0 * pixels * d.c;
    if (d.ksize != 1) {
      detail::im2col(x, d, i0, ni, workspace);
      patches = workspace;
    }
    const ConstMatMap<T> pm(patches, rows, patch);
    if (i0 == 0) {
      dwm.noalias() = pm.transpose() * dym;
    } else {
      dwm.noalias() += pm.transpose() * dym;
    }
    if (dx != nullptr) {
      if (d.ksize == 1) {  // patches are x itself: dx = dy W^T directly
        MatMap<T>(dx + i0 * pixels * d.c, rows, patch).noalias() = dym * wm.transpose();
        continue;
      }
      MatMap<T> dpm(workspace, rows, patch);
      dpm.noalias() = dym * wm.transpose();
      detail::col2im(workspace, d, i0, ni, dx);
    }
  }
}

}  // namespace pstrain::cpu
