// The host/device math of kernels/shared_math.h (what the CUDA kernels run per element),
// checked on the CPU against straightforward, independently written formulas.
#include "kernels/shared_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace pstrain {
namespace {

std::vector<double> random_values(size_t n, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) {
    do {
      x = dist(rng);
    } while (x == 0.0);
  }
  return v;
}

// Values from a small set, so that ties are common.
std::vector<float> tied_values(size_t n, std::mt19937& rng) {
  static const float kLevels[] = {-2.0f, -0.5f, 0.25f, 1.0f};
  std::uniform_int_distribution<int> pick(0, 3);
  std::vector<float> v(n);
  for (float& x : v) x = kLevels[pick(rng)];
  return v;
}

TEST(SharedMath, ReluMatchesDefinition) {
  const float values[] = {-3.5f,  -1e-30f, -0.0f, 0.0f,
                          1e-30f, 2.0f,    1e30f, -std::numeric_limits<float>::infinity()};
  for (float x : values) {
    EXPECT_EQ(math::relu(x), std::max(x, 0.0f)) << x;
    EXPECT_FALSE(std::signbit(math::relu(x))) << x;
    EXPECT_EQ(math::relu(static_cast<double>(x)), std::max(static_cast<double>(x), 0.0)) << x;
    const float dy = 0.75f;
    EXPECT_EQ(math::relu_grad(x, dy), x > 0.0f ? dy : 0.0f) << x;
  }
  EXPECT_EQ(math::relu_grad(1.0, -4.0), -4.0);
  EXPECT_EQ(math::relu_grad(0.0, -4.0), 0.0);
}

// Reference softmax without the max shift (fine in double for moderate logits).
struct NaiveSoftmax {
  std::vector<double> p;
  double loss = 0;
};
NaiveSoftmax naive_softmax(const std::vector<double>& x, int label) {
  double sum = 0;
  for (double v : x) sum += std::exp(v);
  NaiveSoftmax r;
  for (double v : x) r.p.push_back(std::exp(v) / sum);
  r.loss = -std::log(r.p[static_cast<size_t>(label)]);
  return r;
}

struct RowStats {
  double max = 0, sum = 0;
};
RowStats row_stats(const std::vector<double>& x) {
  RowStats s;
  s.max = *std::max_element(x.begin(), x.end());
  for (double v : x) s.sum += math::hd_exp(v - s.max);
  return s;
}

TEST(SharedMath, SoftmaxXentMatchesNaiveFormula) {
  std::mt19937 rng(7);
  for (int k : {1, 2, 7, 10, 33}) {
    for (int trial = 0; trial < 20; ++trial) {
      const std::vector<double> x = random_values(static_cast<size_t>(k), rng, -6.0, 6.0);
      const int label = std::uniform_int_distribution<int>(0, k - 1)(rng);
      const double inv_n = 1.0 / 3.0;
      const NaiveSoftmax ref = naive_softmax(x, label);
      const RowStats s = row_stats(x);
      EXPECT_NEAR(math::softmax_xent_row_loss(x[static_cast<size_t>(label)], s.max, s.sum),
                  ref.loss, 1e-12 * (1.0 + ref.loss));
      double grad_sum = 0;
      for (int j = 0; j < k; ++j) {
        const double g =
            math::softmax_xent_grad(x[static_cast<size_t>(j)], s.max, s.sum, j == label, inv_n);
        const double want = (ref.p[static_cast<size_t>(j)] - (j == label ? 1.0 : 0.0)) * inv_n;
        EXPECT_NEAR(g, want, 1e-14) << "k=" << k << " j=" << j;
        grad_sum += g;
      }
      EXPECT_NEAR(grad_sum, 0.0, 1e-14);  // softmax sums to 1, the one-hot to 1

      // float: the same values to float rounding
      float fmax = -std::numeric_limits<float>::infinity();
      for (double v : x) fmax = std::max(fmax, static_cast<float>(v));
      float fsum = 0;
      for (double v : x) fsum += math::hd_exp(static_cast<float>(v) - fmax);
      const float floss = math::softmax_xent_row_loss(
          static_cast<float>(x[static_cast<size_t>(label)]), fmax, fsum);
      EXPECT_NEAR(floss, ref.loss, 1e-5 * (1.0 + ref.loss));
    }
  }
}

TEST(SharedMath, SoftmaxXentIsStableForLargeLogits) {
  // exp(1000) overflows; with the max subtracted every piece stays finite and equals the
  // result for the shifted logits (softmax is shift-invariant).
  const std::vector<double> shifted = {0.5, -1.25, 2.0, 0.0625};
  float big[4];
  float m = -std::numeric_limits<float>::infinity();
  for (size_t j = 0; j < 4; ++j) {
    big[j] = static_cast<float>(1000.0 + shifted[j]);
    m = std::max(m, big[j]);
  }
  float sum = 0;
  for (float v : big) sum += math::hd_exp(v - m);
  const NaiveSoftmax ref = naive_softmax(shifted, 1);
  const float loss = math::softmax_xent_row_loss(big[1], m, sum);
  ASSERT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(loss, ref.loss, 1e-4);
  for (size_t j = 0; j < 4; ++j) {
    const float g = math::softmax_xent_grad(big[j], m, sum, j == 1, 1.0f);
    ASSERT_TRUE(std::isfinite(g));
    EXPECT_NEAR(g, ref.p[j] - (j == 1 ? 1.0 : 0.0), 1e-5);
  }
}

// What count_correct does on the GPU: each of 32 lanes scans j = lane, lane+32, ... and the lanes
// combine in a butterfly; lane 0's result is used.
int warp_argmax(const std::vector<float>& x) {
  const int k = static_cast<int>(x.size());
  float v[32];
  int idx[32];
  for (int lane = 0; lane < 32; ++lane) {
    v[lane] = -std::numeric_limits<float>::infinity();
    idx[lane] = INT_MAX;
    for (int j = lane; j < k; j += 32) {
      if (math::argmax_prefer(x[static_cast<size_t>(j)], j, v[lane], idx[lane])) {
        v[lane] = x[static_cast<size_t>(j)];
        idx[lane] = j;
      }
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    float nv[32];
    int ni[32];
    for (int lane = 0; lane < 32; ++lane) {
      const int other = lane ^ offset;
      nv[lane] = v[lane];
      ni[lane] = idx[lane];
      if (math::argmax_prefer(v[other], idx[other], v[lane], idx[lane])) {
        nv[lane] = v[other];
        ni[lane] = idx[other];
      }
    }
    std::copy(nv, nv + 32, v);
    std::copy(ni, ni + 32, idx);
  }
  return idx[0];
}

TEST(SharedMath, ArgmaxPreferGivesFirstMaximumInAnyOrder) {
  std::mt19937 rng(11);
  for (int k : {1, 2, 7, 10, 31, 32, 33, 100, 1001}) {
    for (int trial = 0; trial < 10; ++trial) {
      const std::vector<float> x = tied_values(static_cast<size_t>(k), rng);
      const int first = static_cast<int>(std::max_element(x.begin(), x.end()) - x.begin());
      EXPECT_EQ(warp_argmax(x), first) << "k=" << k;
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(warp_argmax({-inf, -inf, -inf}), 0);
  EXPECT_EQ(warp_argmax({1.0f, inf, inf}), 1);
}

struct ConvCase {
  int n, h, w, c, k, ksize;
};
const ConvCase kConvCases[] = {{1, 1, 1, 1, 1, 5}, {2, 3, 4, 2, 3, 5}, {1, 7, 5, 3, 2, 5},
                               {2, 6, 6, 1, 4, 3}, {1, 4, 9, 2, 1, 1}, {1, 2, 8, 3, 2, 7}};

// x [n,h,w,c] at (img, y, x, ci), or 0 outside the image: written from the definition of SAME.
double padded(const std::vector<double>& x, const ConvCase& s, int img, int y, int xx, int ci) {
  if (y < 0 || y >= s.h || xx < 0 || xx >= s.w) return 0.0;
  return x[static_cast<size_t>(((img * s.h + y) * s.w + xx) * s.c + ci)];
}

TEST(SharedMath, NhwcSplitAndFlatAreInverse) {
  // Every element of a [3, 5, 7, 2] tensor, against nested loops in NHWC order.
  const int n = 3, h = 5, w = 7, c = 2;
  int64_t i = 0;
  for (int img = 0; img < n; ++img) {
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        for (int ci = 0; ci < c; ++ci, ++i) {
          const math::NhwcIndex p = math::nhwc_split(i, h, w, c);
          EXPECT_EQ(p.img, img);
          EXPECT_EQ(p.y, y);
          EXPECT_EQ(p.x, x);
          EXPECT_EQ(p.ci, ci);
          EXPECT_EQ(math::nhwc_flat(img, y, x, ci, h, w, c), i);
        }
      }
    }
  }
}

TEST(SharedMath, Im2colTimesWeightsIsTheDirectConvolution) {
  std::mt19937 rng(3);
  for (const ConvCase& s : kConvCases) {
    const int pad = (s.ksize - 1) / 2;
    ASSERT_EQ(math::same_pad(s.ksize), pad);
    const size_t xs = static_cast<size_t>(s.n * s.h * s.w * s.c);
    const int64_t width = math::conv_cols_width(s.c, s.ksize);
    ASSERT_EQ(width, s.ksize * s.ksize * s.c);
    const int64_t rows = static_cast<int64_t>(s.n) * s.h * s.w;
    const std::vector<double> x = random_values(xs, rng);
    const std::vector<double> wt = random_values(static_cast<size_t>(width * s.k), rng);
    std::vector<double> cols(static_cast<size_t>(rows * width));
    for (int64_t i = 0; i < rows * width; ++i) {
      cols[static_cast<size_t>(i)] = math::im2col_value(x.data(), i, s.h, s.w, s.c, s.ksize);
    }
    for (int img = 0; img < s.n; ++img) {
      for (int oy = 0; oy < s.h; ++oy) {
        for (int ox = 0; ox < s.w; ++ox) {
          for (int co = 0; co < s.k; ++co) {
            double direct = 0, via_cols = 0;
            for (int ky = 0; ky < s.ksize; ++ky) {
              for (int kx = 0; kx < s.ksize; ++kx) {
                for (int ci = 0; ci < s.c; ++ci) {
                  const double wv =
                      wt[static_cast<size_t>(((ky * s.ksize + kx) * s.c + ci) * s.k + co)];
                  direct += padded(x, s, img, oy + ky - pad, ox + kx - pad, ci) * wv;
                }
              }
            }
            const int64_t r = (static_cast<int64_t>(img) * s.h + oy) * s.w + ox;
            for (int64_t q = 0; q < width; ++q) {
              via_cols +=
                  cols[static_cast<size_t>(r * width + q)] * wt[static_cast<size_t>(q * s.k + co)];
            }
            ASSERT_NEAR(via_cols, direct, 1e-12)
                << "n=" << s.n << " h=" << s.h << " w=" << s.w << " c=" << s.c
                << " ksize=" << s.ksize << " at img=" << img << " oy=" << oy << " ox=" << ox;
          }
        }
      }
    }
  }
}

TEST(SharedMath, Col2imGatherEqualsScatterAddAndIsTheAdjoint) {
  std::mt19937 rng(5);
  for (const ConvCase& s : kConvCases) {
    const int pad = (s.ksize - 1) / 2;
    const int64_t width = math::conv_cols_width(s.c, s.ksize);
    const int64_t rows = static_cast<int64_t>(s.n) * s.h * s.w;
    const size_t xs = static_cast<size_t>(s.n * s.h * s.w * s.c);
    const std::vector<double> dcols = random_values(static_cast<size_t>(rows * width), rng);
    // Scatter-add from the definition: cols[r, (ky,kx,ci)] came from x[img, oy+ky-pad, ...].
    std::vector<double> scatter(xs, 0.0);
    for (int img = 0; img < s.n; ++img) {
      for (int oy = 0; oy < s.h; ++oy) {
        for (int ox = 0; ox < s.w; ++ox) {
          for (int ky = 0; ky < s.ksize; ++ky) {
            for (int kx = 0; kx < s.ksize; ++kx) {
              for (int ci = 0; ci < s.c; ++ci) {
                const int iy = oy + ky - pad, ix = ox + kx - pad;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                const size_t r = static_cast<size_t>((img * s.h + oy) * s.w + ox);
                const size_t q = static_cast<size_t>((ky * s.ksize + kx) * s.c + ci);
                scatter[static_cast<size_t>(((img * s.h + iy) * s.w + ix) * s.c + ci)] +=
                    dcols[r * static_cast<size_t>(width) + q];
              }
            }
          }
        }
      }
    }
    std::vector<double> gather(xs);
    for (size_t i = 0; i < xs; ++i) {
      gather[i] = math::col2im_value(dcols.data(), static_cast<int64_t>(i), s.h, s.w, s.c, s.ksize);
      ASSERT_NEAR(gather[i], scatter[i], 1e-12) << "i=" << i << " ksize=" << s.ksize;
    }
    // <im2col(x), dcols> == <x, col2im(dcols)>
    const std::vector<double> x = random_values(xs, rng);
    double lhs = 0, rhs = 0;
    for (int64_t i = 0; i < rows * width; ++i) {
      lhs +=
          math::im2col_value(x.data(), i, s.h, s.w, s.c, s.ksize) * dcols[static_cast<size_t>(i)];
    }
    for (size_t i = 0; i < xs; ++i) rhs += x[i] * gather[i];
    EXPECT_NEAR(lhs, rhs, 1e-10);
  }
}

struct PoolCase {
  int n, h, w, c;
};
const PoolCase kPoolCases[] = {{1, 1, 1, 1}, {1, 2, 2, 1}, {2, 3, 5, 3}, {1, 7, 7, 2},
                               {3, 4, 1, 2}, {1, 6, 9, 1}, {2, 8, 8, 5}};

TEST(SharedMath, MaxPoolMatchesNaiveWindowsWithTiesToFirst) {
  std::mt19937 rng(9);
  for (const PoolCase& s : kPoolCases) {
    const int oh = s.h / 2, ow = s.w / 2;
    const size_t xs = static_cast<size_t>(s.n * s.h * s.w * s.c);
    const std::vector<float> x = tied_values(xs, rng);
    std::vector<int32_t> argmax(static_cast<size_t>(s.n * oh * ow * s.c), -1);
    std::vector<float> dy(argmax.size());
    for (size_t i = 0; i < dy.size(); ++i) dy[i] = 1.0f + static_cast<float>(i);
    std::vector<float> want_dx(xs, 0.0f);
    for (int img = 0; img < s.n; ++img) {
      for (int oy = 0; oy < oh; ++oy) {
        for (int ox = 0; ox < ow; ++ox) {
          for (int ci = 0; ci < s.c; ++ci) {
            // naive: scan the window rows then columns, keep the first maximum
            int64_t best = -1;
            for (int dy_ = 0; dy_ < 2; ++dy_) {
              for (int dx_ = 0; dx_ < 2; ++dx_) {
                const int64_t idx = ((img * s.h + 2 * oy + dy_) * s.w + 2 * ox + dx_) * s.c + ci;
                if (best < 0 || x[static_cast<size_t>(idx)] > x[static_cast<size_t>(best)]) {
                  best = idx;
                }
              }
            }
            const int64_t o = ((img * oh + oy) * ow + ox) * s.c + ci;
            int64_t got = -1;
            const float y = math::maxpool2x2_value(x.data(), o, s.h, s.w, s.c, &got);
            ASSERT_EQ(got, best) << "o=" << o;
            ASSERT_EQ(y, x[static_cast<size_t>(best)]);
            argmax[static_cast<size_t>(o)] = static_cast<int32_t>(got);
            want_dx[static_cast<size_t>(best)] += dy[static_cast<size_t>(o)];
            for (int j = 0; j < 4; ++j) {
              EXPECT_EQ(math::pool_window_of(math::pool_window_source(o, j, s.h, s.w, s.c), s.h,
                                             s.w, s.c),
                        o);
            }
          }
        }
      }
    }
    int64_t in_windows = 0;
    for (size_t i = 0; i < xs; ++i) {
      const int64_t ii = static_cast<int64_t>(i);
      if (math::pool_window_of(ii, s.h, s.w, s.c) >= 0) ++in_windows;
      ASSERT_EQ(math::maxpool2x2_grad(dy.data(), argmax.data(), ii, s.h, s.w, s.c), want_dx[i])
          << "i=" << i << " h=" << s.h << " w=" << s.w;
    }
    EXPECT_EQ(in_windows, 4 * static_cast<int64_t>(argmax.size()));
  }
}

// Column-major GEMM with BLAS semantics, written from the BLAS definition; it also checks the
// argument rules that cuBLAS enforces (lda >= max(1, rows of the stored operand), ...).
void blas_sgemm(bool transa, bool transb, int m, int n, int k, const double* a, int lda,
                const double* b, int ldb, double* c, int ldc) {
  ASSERT_GE(lda, std::max(1, transa ? k : m));
  ASSERT_GE(ldb, std::max(1, transb ? n : k));
  ASSERT_GE(ldc, std::max(1, m));
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        const double av = transa ? a[p + i * lda] : a[i + p * lda];
        const double bv = transb ? b[j + p * ldb] : b[p + j * ldb];
        s += av * bv;
      }
      c[i + j * ldc] = s;
    }
  }
}

TEST(SharedMath, RowMajorGemmMapsOntoColumnMajorBlas) {
  std::mt19937 rng(13);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (int m : {1, 2, 5}) {
        for (int n : {1, 3, 4}) {
          for (int k : {1, 2, 7}) {
            // stored row-major: A [m,k] or [k,m]; B [k,n] or [n,k]
            const std::vector<double> a = random_values(static_cast<size_t>(m * k), rng);
            const std::vector<double> b = random_values(static_cast<size_t>(k * n), rng);
            auto at = [&](int i, int p) {
              return ta ? a[static_cast<size_t>(p * m + i)] : a[static_cast<size_t>(i * k + p)];
            };
            auto bt = [&](int p, int j) {
              return tb ? b[static_cast<size_t>(j * k + p)] : b[static_cast<size_t>(p * n + j)];
            };
            const math::ColumnMajorGemm g = math::row_major_gemm(ta, tb, m, n, k);
            std::vector<double> c(static_cast<size_t>(m * n), std::nan(""));
            blas_sgemm(g.trans_first, g.trans_second, g.m, g.n, g.k, b.data(), g.ld_first, a.data(),
                       g.ld_second, c.data(), g.ldc);
            for (int i = 0; i < m; ++i) {
              for (int j = 0; j < n; ++j) {
                double want = 0;
                for (int p = 0; p < k; ++p) want += at(i, p) * bt(p, j);
                ASSERT_NEAR(c[static_cast<size_t>(i * n + j)], want, 1e-12)
                    << "ta=" << ta << " tb=" << tb << " m=" << m << " n=" << n << " k=" << k;
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace pstrain
