// 2-D convolution on the CPU: stride 1, SAME padding, odd square kernel, NHWC / HWIO, via
// im2col and Eigen GEMM, forward and backward.
//
// Contract (as Ops::conv2d_* in kernels/ops.h): x [n, h, w, c], w [ks, ks, c, k] (HWIO),
// b [k], y [n, h, w, k]; backward takes dy [n, h, w, k] and writes dx [n, h, w, c] (skipped
// when dx is null), dw [ks, ks, c, k], db [k]. Every output element is written. The workspace
// holds conv2d_workspace_floats(d) elements of T (scratch; independent of the thread count).
//
// Method: output pixels are the rows of a patch matrix [n * h * w, ks * ks * c] (column =
// (ky, kx, ci), matching HWIO flattened to [ks * ks * c, k]). It is never built whole: a worker
// unrolls conv2d_block_rows(d) rows at a time (about kConv2dBlockElements, so a block is
// reused from cache) into its own slot of the workspace (up to kConv2dWorkspaceSlots workers)
// and multiplies the block by the weights:
//   forward:  chunk = one block of rows: y_rows = patches_rows * W + b
//   backward: chunk = a group of whole images: dW_group = sum over its blocks of
//             patches^T dy_rows (group 0 into dw, the others into temporaries added in group
//             order); dpatches = dy_rows W^T in the slot, scattered into the group's dx
//             (col2im); db = column sums of dy.
// A 1x1 kernel multiplies x directly (no unrolling).
// Thread-safety: pure functions of their arguments; a workspace belongs to one call at a time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/ops.h"
#include "runtime/base/check.h"

namespace pstrain::cpu {

// Patch-matrix elements one worker unrolls at a time (1 MiB of floats).
inline constexpr int64_t kConv2dBlockElements = int64_t{1} << 18;
// Workers that can unroll at once (slots in the workspace).
inline constexpr int64_t kConv2dWorkspaceSlots = 8;
// Image groups (chunks) of the backward pass, at most; each has its own weight-gradient sum.
inline constexpr int64_t kConv2dBackwardGroups = 8;

// Patch-matrix columns: ks * ks * c.
inline int64_t conv2d_patch_size(const Conv2dDims& d) { return int64_t{d.ksize} * d.ksize * d.c; }

// Patch-matrix rows unrolled at a time (0 when there is nothing to convolve).
inline int64_t conv2d_block_rows(const Conv2dDims& d) {
  const int64_t total = int64_t{d.n} * d.h * d.w;
  const int64_t patch = conv2d_patch_size(d);
  if (total <= 0 || patch <= 0) return 0;
  return std::min(total, std::max<int64_t>(1, kConv2dBlockElements / patch));
}

// Workspace slots: as many as there are blocks, at most kConv2dWorkspaceSlots.
inline int64_t conv2d_workspace_slots(const Conv2dDims& d) {
  const int64_t block = conv2d_block_rows(d);
  if (block == 0) return 0;
  const int64_t blocks = (int64_t{d.n} * d.h * d.w + block - 1) / block;
  return std::min(blocks, kConv2dWorkspaceSlots);
}

// Elements of scratch memory that conv2d_forward and conv2d_backward need (the same for both).
inline size_t conv2d_workspace_floats(const Conv2dDims& d) {
  return static_cast<size_t>(conv2d_workspace_slots(d) * conv2d_block_rows(d) *
                             conv2d_patch_size(d));
}

namespace detail {

// Valid kernel columns [kx0, kx1) for output column ox (input column ox + kx - pad in [0, w)).
inline void conv2d_valid_kx(int ox, int w, int ksize, int* kx0, int* kx1) {
  const int pad = ksize / 2;
  *kx0 = std::max(0, pad - ox);
  *kx1 = std::min(ksize, w + pad - ox);
}

// Unrolls patch-matrix rows [r0, r1) of x into patches [r1 - r0, ks * ks * c]. For each row
// and kernel row ky, the taps are contiguous in NHWC x: one copy plus zero padding.
template <typename T>
void im2col(const T* x, const Conv2dDims& d, int64_t r0, int64_t r1, T* patches) {
  const int ks = d.ksize, pad = ks / 2, h = d.h, w = d.w, c = d.c;
  const int64_t ks_c = int64_t{ks} * c;
  T* dst = patches;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / (int64_t{h} * w);
    const int oy = static_cast<int>((r / w) % h);
    const int ox = static_cast<int>(r % w);
    int kx0 = 0, kx1 = 0;
    conv2d_valid_kx(ox, w, ks, &kx0, &kx1);
    const T* ximg = x + img * h * w * c;
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

// Adds the patch gradients of rows [r0, r1) into dx at the pixels they came from.
template <typename T>
void col2im_add(const T* dpatches, const Conv2dDims& d, int64_t r0, int64_t r1, T* dx) {
  const int ks = d.ksize, pad = ks / 2, h = d.h, w = d.w, c = d.c;
  const int64_t ks_c = int64_t{ks} * c;
  const T* src = dpatches;
  for (int64_t r = r0; r < r1; ++r, src += ks * ks_c) {
    const int64_t img = r / (int64_t{h} * w);
    const int oy = static_cast<int>((r / w) % h);
    const int ox = static_cast<int>(r % w);
    int kx0 = 0, kx1 = 0;
    conv2d_valid_kx(ox, w, ks, &kx0, &kx1);
    T* dximg = dx + img * h * w * c;
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

}  // namespace detail

template <typename T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, T* workspace, const Conv2dDims& d) {
  PSTRAIN_CHECK(d.ksize % 2 == 1, "conv2d needs an odd kernel size");
  const int64_t patch = conv2d_patch_size(d);
  const int64_t total = int64_t{d.n} * d.h * d.w;
  const int64_t block = conv2d_block_rows(d);
  if (block == 0) return;
  const ConstMatMap<T> wm(w, patch, d.k);
  const ConstRowVecMap<T> bm(b, d.k);
  const int64_t chunks = (total + block - 1) / block;
  const int workers =
      static_cast<int>(std::min<int64_t>(workers_for(chunks), conv2d_workspace_slots(d)));
  thread_pool().run(chunks, workers, [&](int64_t c, int worker) {
    const int64_t r0 = c * block, r1 = std::min(total, r0 + block);
    const T* patches = x + r0 * d.c;  // a 1x1 kernel needs no unrolling
    if (d.ksize != 1) {
      T* slot = workspace + worker * block * patch;
      detail::im2col(x, d, r0, r1, slot);
      patches = slot;
    }
    MatMap<T> ym(y + r0 * d.k, r1 - r0, d.k);
    ym.noalias() = ConstMatMap<T>(patches, r1 - r0, patch) * wm;
    ym.rowwise() += bm;
  });
}

template <typename T>
void conv2d_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, T* workspace,
                     const Conv2dDims& d) {
  PSTRAIN_CHECK(d.ksize % 2 == 1, "conv2d needs an odd kernel size");
  const int64_t patch = conv2d_patch_size(d);
  const int64_t pixels = int64_t{d.h} * d.w;
  const int64_t dw_size = patch * d.k;
  const int64_t block = conv2d_block_rows(d);
  MatMap<T> dwm(dw, patch, d.k);
  column_sums(dy, int64_t{d.n} * pixels, d.k, db);
  if (block == 0) {  // no pixels: the gradients of w are zero
    dwm.setZero();
    return;
  }
  const ConstMatMap<T> wm(w, patch, d.k);
  const double flops = (dx != nullptr ? 4.0 : 2.0) * static_cast<double>(d.n) *
                       static_cast<double>(pixels) * static_cast<double>(dw_size);
  const int64_t groups =
      chunk_count(flops, kChunkFlops, std::min<int64_t>(d.n, kConv2dBackwardGroups));
  std::vector<T> group_dw(static_cast<size_t>((groups - 1) * dw_size));
  const int workers =
      static_cast<int>(std::min<int64_t>(workers_for(groups), conv2d_workspace_slots(d)));
  thread_pool().run(groups, workers, [&](int64_t g, int worker) {
    const auto [img_begin, img_end] = split_range(d.n, g, groups);
    const int64_t begin = img_begin * pixels, end = img_end * pixels;
    T* slot = workspace + worker * block * patch;
    MatMap<T> acc(g == 0 ? dw : group_dw.data() + (g - 1) * dw_size, patch, d.k);
    if (dx != nullptr) std::fill(dx + begin * d.c, dx + end * d.c, T(0));
    for (int64_t r0 = begin; r0 < end; r0 += block) {
      const int64_t r1 = std::min(end, r0 + block), rows = r1 - r0;
      const ConstMatMap<T> dym(dy + r0 * d.k, rows, d.k);
      const T* patches = x + r0 * d.c;
      if (d.ksize != 1) {
        detail::im2col(x, d, r0, r1, slot);
        patches = slot;
      }
      const ConstMatMap<T> pm(patches, rows, patch);
      if (r0 == begin) {
        acc.noalias() = pm.transpose() * dym;
      } else {
        acc.noalias() += pm.transpose() * dym;
      }
      if (dx == nullptr) continue;
      if (d.ksize == 1) {  // the patches are x itself: dx = dy W^T directly
        MatMap<T>(dx + r0 * d.c, rows, patch).noalias() = dym * wm.transpose();
        continue;
      }
      MatMap<T>(slot, rows, patch).noalias() = dym * wm.transpose();
      detail::col2im_add(slot, d, r0, r1, dx);
    }
  });
  for (int64_t g = 1; g < groups; ++g) {
    dwm += ConstMatMap<T>(group_dw.data() + (g - 1) * dw_size, patch, d.k);
  }
}

}  // namespace pstrain::cpu
