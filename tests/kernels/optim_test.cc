// Optimizer updates against values worked out by hand (TensorFlow 1.x formulas, see
// kernels/optim.h), plus the name parsing and slot bookkeeping.
#include "kernels/optim.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "kernels/cpu/flush_denormals.h"
#include "kernels/optim_math.h"

namespace pstrain {
namespace {

// Float results vs double hand arithmetic.
void expect_values(const std::vector<float>& got, const std::vector<double>& want,
                   const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-6 * std::max(1.0, std::abs(want[i])))
        << what << "[" << i << "]";
  }
}

TEST(OptimTest, AllFiniteFindsEveryNanAndInfinityWhereverItIs) {
  using Limits = std::numeric_limits<float>;
  EXPECT_TRUE(all_finite({}));
  // The extremes of the finite floats are finite: largest, smallest normal, denormal, -0.
  std::vector<float> v = {Limits::max(),        -Limits::max(), Limits::min(),
                          Limits::denorm_min(), -0.0f,          1.0f};
  EXPECT_TRUE(all_finite(v));
  // Blocks of 4096 values: a bad value first, last, on a block boundary and in a short tail.
  v.assign(3 * 4096 + 17, 0.5f);
  ASSERT_TRUE(all_finite(v));
  for (const float bad : {Limits::quiet_NaN(), -Limits::quiet_NaN(), Limits::signaling_NaN(),
                          Limits::infinity(), -Limits::infinity()}) {
    for (const size_t at : {size_t{0}, size_t{4095}, size_t{4096}, size_t{8191}, v.size() - 1}) {
      v[at] = bad;
      EXPECT_FALSE(all_finite(v)) << bad << " at " << at;
      // Only a span that covers it sees it.
      EXPECT_TRUE(all_finite(std::span<const float>(v).first(at))) << bad << " at " << at;
      v[at] = 0.5f;
    }
  }
}

TEST(OptimTest, Sgd) {
  std::vector<float> p = {1.0f, -2.0f, 0.5f};
  const std::vector<float> g = {0.5f, -1.0f, 2.0f};
  // lr 0.1: p -= 0.1 * g = p - [0.05, -0.1, 0.2]
  sgd_update(p, g, 0.1f);
  expect_values(p, {0.95, -1.9, 0.3}, "sgd step 1");
  sgd_update(p, g, 0.1f);
  expect_values(p, {0.9, -1.8, 0.1}, "sgd step 2");
}

TEST(OptimTest, Momentum) {
  std::vector<float> p = {1.0f, -2.0f};
  std::vector<float> a = {0.0f, 0.0f};
  // lr 0.1, momentum 0.9.
  // step 1, g = [0.5, -1]: a = 0.9*0 + g = [0.5, -1]; p -= 0.1*a -> [0.95, -1.9]
  momentum_update(p, std::vector<float>{0.5f, -1.0f}, a, 0.1f, 0.9f);
  expect_values(a, {0.5, -1.0}, "momentum accum 1");
  expect_values(p, {0.95, -1.9}, "momentum step 1");
  // step 2, g = [1, 2]: a = [0.45 + 1, -0.9 + 2] = [1.45, 1.1]; p -= [0.145, 0.11]
  momentum_update(p, std::vector<float>{1.0f, 2.0f}, a, 0.1f, 0.9f);
  expect_values(a, {1.45, 1.1}, "momentum accum 2");
  expect_values(p, {0.805, -2.01}, "momentum step 2");
  // step 3, g = [-0.5, 0.25]: a = [1.305 - 0.5, 0.99 + 0.25] = [0.805, 1.24];
  // p -= [0.0805, 0.124] -> [0.7245, -2.134]
  momentum_update(p, std::vector<float>{-0.5f, 0.25f}, a, 0.1f, 0.9f);
  expect_values(a, {0.805, 1.24}, "momentum accum 3");
  expect_values(p, {0.7245, -2.134}, "momentum step 3");
}

TEST(OptimTest, Adam) {
  std::vector<float> p = {1.0f, -1.0f};
  std::vector<float> m = {0.0f, 0.0f}, v = {0.0f, 0.0f};
  const float lr = 0.1f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  // step 1, g = [0.5, -2]:
  //   m = 0.1 g = [0.05, -0.2];  v = 0.001 g^2 = [0.00025, 0.004]
  //   lr_1 = 0.1 * sqrt(1 - 0.999) / (1 - 0.9) = sqrt(0.001) = 0.0316227766
  //   m / sqrt(v) = [0.05 / 0.0158113883, -0.2 / 0.0632455532] = [3.16227766, -3.16227766]
  //   so the step is lr * sign(g) (up to eps): p = [0.9, -0.9]
  adam_update(p, std::vector<float>{0.5f, -2.0f}, m, v, lr, b1, b2, eps, 1);
  expect_values(m, {0.05, -0.2}, "adam m 1");
  expect_values(v, {0.00025, 0.004}, "adam v 1");
  const double lr1 = std::sqrt(0.001);
  expect_values(p,
                {1.0 - lr1 * 0.05 / (std::sqrt(0.00025) + 1e-8),
                 -1.0 + lr1 * 0.2 / (std::sqrt(0.004) + 1e-8)},
                "adam step 1");
  EXPECT_NEAR(p[0], 0.9, 1e-6);
  EXPECT_NEAR(p[1], -0.9, 1e-6);
  // step 2, g = [0.5, 1]:
  //   m = 0.9 m + 0.1 g = [0.045 + 0.05, -0.18 + 0.1] = [0.095, -0.08]
  //   v = 0.999 v + 0.001 g^2 = [0.00024975 + 0.00025, 0.003996 + 0.001] = [0.00049975, 0.004996]
  //   lr_2 = 0.1 * sqrt(1 - 0.999^2) / (1 - 0.9^2) = 0.1 * sqrt(0.001999) / 0.19 = 0.0235316725
  //   p = [0.9 - lr_2 * 0.095 / sqrt(0.00049975), -0.9 + lr_2 * 0.08 / sqrt(0.004996)]
  //     = [0.9 - 0.1, -0.9 + 0.0266337]  (0.0235316725 * 4.2495917, 0.0235316725 * 1.1318237)
  adam_update(p, std::vector<float>{0.5f, 1.0f}, m, v, lr, b1, b2, eps, 2);
  expect_values(m, {0.095, -0.08}, "adam m 2");
  expect_values(v, {0.00049975, 0.004996}, "adam v 2");
  const double lr2 = 0.1 * std::sqrt(0.001999) / 0.19;
  EXPECT_NEAR(lr2, 0.0235316725, 1e-9);
  // adam_step_size sees the float hyperparameters (0.999f is not 0.999 exactly).
  const double b1f = b1, b2f = b2, lrf = lr;
  EXPECT_NEAR(adam_step_size(lr, b1, b2, 2), lrf * std::sqrt(1 - b2f * b2f) / (1 - b1f * b1f),
              1e-9);
  EXPECT_NEAR(adam_step_size(lr, b1, b2, 3),
              lrf * std::sqrt(1 - b2f * b2f * b2f) / (1 - b1f * b1f * b1f), 1e-9);
  expect_values(p,
                {0.9 - lr2 * 0.095 / (std::sqrt(0.00049975) + 1e-8),
                 -0.9 + lr2 * 0.08 / (std::sqrt(0.004996) + 1e-8)},
                "adam step 2");
  EXPECT_NEAR(p[0], 0.8, 1e-6);
  EXPECT_NEAR(p[1], -0.9 + 0.0266337, 1e-6);
}

// A gradient of 1e-20 (its square 1e-40 is a subnormal float32) and a slot value below FLT_MIN
// left over from decay: TensorFlow's CPU kernels flush both to zero, and so do ours, whatever
// the caller's mode; on normal values the results are the plain arithmetic's (the tests above).
TEST(OptimTest, SubnormalsAreFlushedToZeroAsTensorFlowDoes) {
  using Limits = std::numeric_limits<float>;
  const float tiny = Limits::min() / 4;  // subnormal
  ASSERT_NE(tiny, 0.0f);
  ASSERT_EQ(std::fpclassify(tiny), FP_SUBNORMAL);
#if defined(__SSE__)
  const unsigned caller_mode = _mm_getcsr();
#endif
  for (const bool caller_flushes : {false, true}) {
    std::optional<cpu::FlushDenormals> caller;
    if (caller_flushes) caller.emplace();
    std::vector<float> p = {1.0f, 2.0f}, m = {0.0f, tiny}, v = {0.0f, 0.0f};
    // m[0] = 0.1 * 1e-20 is normal; v[0] = 0.001 * 1e-40 would be subnormal: 0.
    // m[1] = 0.9 * tiny + 0.1 * 0 reads tiny as 0: 0.
    adam_update(p, std::vector<float>{1e-20f, 0.0f}, m, v, 0.1f, 0.9f, 0.999f, 1e-8f, 5);
    EXPECT_FLOAT_EQ(m[0], 1e-21f) << "caller flushes: " << caller_flushes;
    EXPECT_EQ(v[0], 0.0f) << "caller flushes: " << caller_flushes;
    EXPECT_EQ(m[1], 0.0f) << "caller flushes: " << caller_flushes;
    EXPECT_EQ(p[1], 2.0f) << "caller flushes: " << caller_flushes;
    std::vector<float> q = {1.0f}, a = {tiny};
    momentum_update(q, std::vector<float>{0.0f}, a, 0.1f, 0.9f);
    EXPECT_EQ(a[0], 0.0f) << "caller flushes: " << caller_flushes;
    EXPECT_EQ(q[0], 1.0f) << "caller flushes: " << caller_flushes;
    // Normal inputs, results FLT_MIN (normal) and 0.5 FLT_MIN (subnormal: 0).
    std::vector<float> r = {tiny * 8, tiny * 6};
    sgd_update(r, std::vector<float>{tiny * 4, tiny * 4}, 1.0f);
    EXPECT_EQ(r[0], Limits::min()) << "caller flushes: " << caller_flushes;
    EXPECT_EQ(r[1], 0.0f) << "caller flushes: " << caller_flushes;
  }
#if defined(__SSE__)
  // The caller's mode is as it was (the guard's destructor restored it each time); the low 6
  // bits are sticky exception flags (inexact results set one), not the mode.
  EXPECT_EQ(_mm_getcsr() & ~0x3Fu, caller_mode & ~0x3Fu);
  // A value computed here, outside the updates, keeps its subnormal result.
  volatile float half_min = Limits::min();
  EXPECT_EQ(std::fpclassify(half_min / 2), FP_SUBNORMAL);
#endif
}

// The update threads flush too: a span large enough to be split over them (each piece is
// applied on whichever thread claims it), with a subnormal moment everywhere.
TEST(OptimTest, ParallelUpdatesFlushSubnormalsOnEveryThread) {
  const float tiny = std::numeric_limits<float>::min() / 4;
  const size_t n = 3 * kParallelUpdateMinValues + 5;
  OptimizerConfig config;
  config.kind = OptimizerKind::kAdam;
  config.learning_rate = 0.1f;
  std::vector<float> p(n, 1.0f), g(n, 0.0f), m(n, tiny), v(n, 0.0f);
  apply_update_parallel(config, p, g, m, v, 1);
  EXPECT_EQ(std::count(m.begin(), m.end(), 0.0f), static_cast<std::ptrdiff_t>(n));
  EXPECT_EQ(std::count(p.begin(), p.end(), 1.0f), static_cast<std::ptrdiff_t>(n));
}

TEST(OptimTest, Adagrad) {
  OptimizerConfig config;
  config.kind = OptimizerKind::kAdagrad;
  ASSERT_EQ(optimizer_slot_initial_value(config), 0.1f);
  std::vector<float> p = {1.0f, -1.0f};
  std::vector<float> a = {0.1f, 0.1f};
  // lr 0.1. step 1, g = [0.3, -0.4]: a = 0.1 + g^2 = [0.19, 0.26]
  //   p = [1 - 0.1 * 0.3 / sqrt(0.19), -1 + 0.1 * 0.4 / sqrt(0.26)]
  //     = [1 - 0.0688247, -1 + 0.0784465]
  adagrad_update(p, std::vector<float>{0.3f, -0.4f}, a, 0.1f);
  expect_values(a, {0.19, 0.26}, "adagrad accum 1");
  expect_values(p, {1 - 0.03 / std::sqrt(0.19), -1 + 0.04 / std::sqrt(0.26)}, "adagrad step 1");
  EXPECT_NEAR(p[0], 1 - 0.0688247, 1e-6);
  // step 2, g = [0.3, 0.2]: a = [0.19 + 0.09, 0.26 + 0.04] = [0.28, 0.30]
  //   p -= [0.03 / sqrt(0.28), 0.02 / sqrt(0.30)] = [0.0566947, 0.0365148]
  const double p0 = p[0], p1 = p[1];
  adagrad_update(p, std::vector<float>{0.3f, 0.2f}, a, 0.1f);
  expect_values(a, {0.28, 0.30}, "adagrad accum 2");
  expect_values(p, {p0 - 0.03 / std::sqrt(0.28), p1 - 0.02 / std::sqrt(0.30)}, "adagrad step 2");
  EXPECT_NEAR(p0 - p[0], 0.0566947, 1e-6);
}

TEST(OptimTest, ApplyUpdateDispatchesWithConfig) {
  const std::vector<float> g = {0.5f, -2.0f};
  OptimizerConfig config;
  config.learning_rate = 0.1f;
  // SGD: p = [1, -1] - 0.1 * [0.5, -2] = [0.95, -0.8]
  config.kind = OptimizerKind::kSgd;
  std::vector<float> p = {1.0f, -1.0f};
  apply_update(config, p, g, {}, {}, 1);
  expect_values(p, {0.95, -0.8}, "apply sgd");
  // Momentum 0.9 from a = 0: first step equals SGD.
  config.kind = OptimizerKind::kMomentum;
  p = {1.0f, -1.0f};
  std::vector<float> s0 = {0.0f, 0.0f}, s1 = {0.0f, 0.0f};
  apply_update(config, p, g, s0, {}, 1);
  expect_values(p, {0.95, -0.8}, "apply momentum");
  expect_values(s0, {0.5, -2.0}, "apply momentum accum");
  // Adam, t = 1: a step of lr * sign(g).
  config.kind = OptimizerKind::kAdam;
  p = {1.0f, -1.0f};
  s0 = {0.0f, 0.0f};
  apply_update(config, p, g, s0, s1, 1);
  expect_values(p, {0.9, -0.9}, "apply adam");
  expect_values(s1, {0.00025, 0.004}, "apply adam v");
  // Adagrad from 0.1: a = [0.35, 4.1]; p -= 0.1 * g / sqrt(a)
  config.kind = OptimizerKind::kAdagrad;
  p = {1.0f, -1.0f};
  s0 = {0.1f, 0.1f};
  apply_update(config, p, g, s0, {}, 1);
  expect_values(p, {1 - 0.05 / std::sqrt(0.35), -1 + 0.2 / std::sqrt(4.1)}, "apply adagrad");
}

// apply_update_parallel() leaves parameters and slots exactly as apply_update() does, for
// every optimizer, in one piece and split across the update threads (a ragged last piece),
// and with `out` writes every updated value there at any alignment, with plain or
// non-temporal stores; apply_mean_update_parallel() and accumulate_parallel() likewise.
TEST(OptimTest, ApplyUpdateParallelIsApplyUpdateAndCopiesTheResult) {
  const size_t small = 20'011;  // a few blocks and a ragged end, one piece
  const size_t large = 2 * kParallelUpdateMinValues + 13;
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum, OptimizerKind::kAdam,
                             OptimizerKind::kAdagrad}) {
    OptimizerConfig config;
    config.kind = kind;
    config.learning_rate = 0.05f;
    for (size_t n : {size_t{1}, small, large}) {
      std::vector<float> g(n), p(n);
      for (size_t i = 0; i < n; ++i) {
        g[i] = std::sin(static_cast<float>(i) * 0.37f);
        p[i] = std::cos(static_cast<float>(i) * 0.11f);
      }
      const int slots = optimizer_slot_count(kind);
      const float init = optimizer_slot_initial_value(config);
      std::vector<float> a0(slots > 0 ? n : 0, init), a1(slots > 1 ? n : 0, init);
      std::vector<float> want = p, w0 = a0, w1 = a1;
      apply_update(config, want, g, w0, w1, 3);
      const std::string what =
          std::string(optimizer_name(kind)) + ", " + std::to_string(n) + " values";
      {
        std::vector<float> got = p, s0 = a0, s1 = a1;
        apply_update_parallel(config, got, g, s0, s1, 3);
        EXPECT_EQ(got, want) << what << ", no copy";
        EXPECT_EQ(s0, w0) << what << ", no copy";
        EXPECT_EQ(s1, w1) << what << ", no copy";
      }
      {
        // The sync step's form: the sum of gradients, scaled, applied, then cleared; the sum
        // built with accumulate_parallel from zeros.
        std::vector<float> sum(n, 0.f), twice(n);
        for (size_t i = 0; i < n; ++i) twice[i] = 2.f * g[i] + 0.25f;
        accumulate_parallel(sum, twice);
        accumulate_parallel(sum, g);
        std::vector<float> mean(n);
        for (size_t i = 0; i < n; ++i) mean[i] = ((0.f + twice[i]) + g[i]) * (1.f / 3.f);
        std::vector<float> want_mean = p, m0 = a0, m1 = a1;
        apply_update(config, want_mean, mean, m0, m1, 3);
        std::vector<float> got = p, s0 = a0, s1 = a1;
        std::vector<std::byte> out(n * sizeof(float));
        apply_mean_update_parallel(config, got, sum, 1.f / 3.f, s0, s1, 3, out.data(), n > small);
        std::vector<float> copied(n);
        std::memcpy(copied.data(), out.data(), out.size());
        EXPECT_EQ(got, want_mean) << what << ", mean of a sum";
        EXPECT_EQ(copied, want_mean) << what << ", mean of a sum";
        EXPECT_EQ(s0, m0) << what << ", mean of a sum";
        EXPECT_EQ(s1, m1) << what << ", mean of a sum";
        EXPECT_EQ(sum, std::vector<float>(n, 0.f)) << what << ": the sum is cleared";
      }
      for (bool streaming : {false, true}) {
        for (size_t misalign : {size_t{0}, size_t{3}}) {
          std::vector<float> got = p, s0 = a0, s1 = a1;
          std::vector<std::byte> out(n * sizeof(float) + 16, std::byte{0x7f});
          apply_update_parallel(config, got, g, s0, s1, 3, out.data() + misalign, streaming);
          std::vector<float> copied(n);
          std::memcpy(copied.data(), out.data() + misalign, n * sizeof(float));
          const std::string how = what + ", out misaligned by " + std::to_string(misalign) +
                                  (streaming ? ", non-temporal" : ", plain stores");
          EXPECT_EQ(got, want) << how;
          EXPECT_EQ(copied, want) << how;
          EXPECT_EQ(s0, w0) << how;
          EXPECT_EQ(s1, w1) << how;
          EXPECT_EQ(out[misalign + n * sizeof(float)], std::byte{0x7f}) << how << ": wrote past";
          EXPECT_EQ(misalign == 0 ? std::byte{0x7f} : out[0], std::byte{0x7f}) << how;
        }
      }
    }
  }
}

// all_finite_parallel() finds a NaN or infinity in any piece of a span split across the
// update threads (first, middle, last value) and says true when there is none.
TEST(OptimTest, AllFiniteParallelFindsABadValueInAnyPiece) {
  const size_t n = 3 * kParallelUpdateMinValues + 5;
  std::vector<float> x(n, 1.5f);
  EXPECT_TRUE(all_finite_parallel(x));
  for (size_t at : {size_t{0}, n / 2, n - 1}) {
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
      std::vector<float> y = x;
      y[at] = bad;
      EXPECT_FALSE(all_finite_parallel(y)) << bad << " at " << at << " of " << n;
    }
  }
  std::vector<float> small = {1.f, std::numeric_limits<float>::infinity()};
  EXPECT_FALSE(all_finite_parallel(small));
}

TEST(OptimTest, CopyParallelCopiesEveryByteAndNothingPastTheEnd) {
  const size_t threshold = kParallelUpdateMinValues * sizeof(float);
  // Below the threshold (one memcpy), at it, and several 1 MB pieces with a ragged end, to a
  // destination at an odd offset.
  for (size_t bytes : {size_t{0}, size_t{13}, threshold - 1, threshold, 3 * threshold + 7}) {
    std::vector<std::byte> src(bytes);
    for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<std::byte>((i * 131 + 7) % 251);
    constexpr size_t kGuard = 64;
    std::vector<std::byte> dst(bytes + 2 * kGuard + 1, std::byte{0xEE});
    copy_parallel(dst.data() + kGuard + 1, src.data(), bytes);
    EXPECT_TRUE(std::equal(src.begin(), src.end(), dst.begin() + kGuard + 1)) << bytes;
    EXPECT_TRUE(std::all_of(dst.begin(), dst.begin() + kGuard + 1,
                            [](std::byte b) { return b == std::byte{0xEE}; }))
        << "written before the start, " << bytes << " bytes";
    EXPECT_TRUE(std::all_of(dst.end() - kGuard, dst.end(),
                            [](std::byte b) { return b == std::byte{0xEE}; }))
        << "written past the end, " << bytes << " bytes";
  }
}

TEST(OptimTest, NamesSlotsAndParsing) {
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum, OptimizerKind::kAdam,
                             OptimizerKind::kAdagrad}) {
    auto parsed = parse_optimizer(optimizer_name(kind));
    ASSERT_TRUE(parsed.ok()) << optimizer_name(kind);
    EXPECT_EQ(*parsed, kind);
  }
  auto upper = parse_optimizer("ADAM");
  ASSERT_TRUE(upper.ok());
  EXPECT_EQ(*upper, OptimizerKind::kAdam);
  auto mixed = parse_optimizer("AdaGrad");
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ(*mixed, OptimizerKind::kAdagrad);

  EXPECT_EQ(optimizer_slot_count(OptimizerKind::kSgd), 0);
  EXPECT_EQ(optimizer_slot_count(OptimizerKind::kMomentum), 1);
  EXPECT_EQ(optimizer_slot_count(OptimizerKind::kAdam), 2);
  EXPECT_EQ(optimizer_slot_count(OptimizerKind::kAdagrad), 1);
  OptimizerConfig config;
  config.kind = OptimizerKind::kAdam;
  EXPECT_EQ(optimizer_slot_initial_value(config), 0.0f);
  config.kind = OptimizerKind::kMomentum;
  EXPECT_EQ(optimizer_slot_initial_value(config), 0.0f);
}

TEST(OptimTest, ParseErrorsNameTheAcceptedValues) {
  for (const char* bad : {"rmsprop", "", "adam ", "sgdd"}) {
    auto r = parse_optimizer(bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "'";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    const std::string& msg = r.status().message();
    EXPECT_NE(msg.find(std::string("'") + bad + "'"), std::string::npos) << msg;
    for (const char* ok : {"sgd", "momentum", "adam", "adagrad"}) {
      EXPECT_NE(msg.find(ok), std::string::npos) << msg;
    }
  }
}

TEST(OptimTest, LearningRateSchedulesGiveTheHandWorkedValues) {
  OptimizerConfig c;
  c.learning_rate = 0.1f;
  EXPECT_EQ(learning_rate_at(c, 0), 0.1f);
  EXPECT_EQ(learning_rate_at(c, 123456), 0.1f);
  // Exponential: 0.1 * 0.5^(step / 100).
  c.schedule.kind = LrScheduleKind::kExponential;
  c.schedule.decay_steps = 100;
  c.schedule.decay_rate = 0.5f;
  EXPECT_FLOAT_EQ(learning_rate_at(c, 0), 0.1f);
  EXPECT_FLOAT_EQ(learning_rate_at(c, 50), 0.070710678f);  // 0.1 / sqrt(2)
  EXPECT_FLOAT_EQ(learning_rate_at(c, 100), 0.05f);
  EXPECT_FLOAT_EQ(learning_rate_at(c, 250), 0.017677670f);  // 0.1 * 0.5^2.5
  c.schedule.staircase = true;
  EXPECT_FLOAT_EQ(learning_rate_at(c, 50), 0.1f);
  EXPECT_FLOAT_EQ(learning_rate_at(c, 199), 0.05f);
  EXPECT_FLOAT_EQ(learning_rate_at(c, 250), 0.025f);
  // Piecewise (tf.train.piecewise_constant): 1.0 up to step 100 inclusive, 0.5 up to 200, 0.1.
  c.schedule = LrSchedule{};
  c.schedule.kind = LrScheduleKind::kPiecewise;
  c.schedule.num_boundaries = 2;
  c.schedule.boundaries = {100, 200};
  c.schedule.values = {1.0f, 0.5f, 0.1f};
  EXPECT_EQ(learning_rate_at(c, 0), 1.0f);
  EXPECT_EQ(learning_rate_at(c, 100), 1.0f);
  EXPECT_EQ(learning_rate_at(c, 101), 0.5f);
  EXPECT_EQ(learning_rate_at(c, 200), 0.5f);
  EXPECT_EQ(learning_rate_at(c, 201), 0.1f);
  // apply_update uses the rate of the step before the update (t - 1): SGD p -= lr * g.
  c.kind = OptimizerKind::kSgd;
  std::vector<float> p = {1.0f, 1.0f};
  const std::vector<float> g = {1.0f, 2.0f};
  apply_update(c, p, g, {}, {}, /*t=*/101);  // step 100: rate 1.0
  EXPECT_EQ(p, (std::vector<float>{0.0f, -1.0f}));
  apply_update(c, p, g, {}, {}, /*t=*/102);  // step 101: rate 0.5
  EXPECT_EQ(p, (std::vector<float>{-0.5f, -2.0f}));
}

TEST(OptimTest, BadSchedulesAreRefusedNamingTheFlag) {
  const auto message = [](const OptimizerConfig& c) {
    const Status st = check_optimizer_config(c, "--");
    return st.ok() ? std::string("ok") : st.message();
  };
  OptimizerConfig c;
  c.schedule.kind = LrScheduleKind::kExponential;
  EXPECT_EQ(message(c).rfind("--lr_decay_steps must be > 0", 0), 0u) << message(c);
  c.schedule.decay_steps = 10;
  c.schedule.decay_rate = 0.f;
  EXPECT_EQ(message(c).rfind("--lr_decay_rate must be", 0), 0u) << message(c);
  c.schedule.decay_rate = 0.9f;
  EXPECT_EQ(message(c), "ok");
  c.schedule = LrSchedule{};
  c.schedule.kind = LrScheduleKind::kPiecewise;
  EXPECT_EQ(message(c).rfind("--lr_boundaries must hold", 0), 0u) << message(c);
  c.schedule.num_boundaries = 2;
  c.schedule.boundaries = {200, 100};
  c.schedule.values = {1.f, 0.5f, 0.1f};
  EXPECT_EQ(message(c).rfind("--lr_boundaries must be steps >= 0 in increasing order", 0), 0u)
      << message(c);
  c.schedule.boundaries = {100, 200};
  c.schedule.values = {1.f, 0.5f, -0.1f};
  EXPECT_EQ(message(c).rfind("--lr_values must be", 0), 0u) << message(c);
  c.schedule.values = {1.f, 0.5f, 0.1f};
  EXPECT_EQ(message(c), "ok");
  EXPECT_EQ(parse_lr_schedule("Exponential").value(), LrScheduleKind::kExponential);
  auto bad = parse_lr_schedule("cosine");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("constant, exponential or piecewise"), std::string::npos);
}

}  // namespace
}  // namespace pstrain
