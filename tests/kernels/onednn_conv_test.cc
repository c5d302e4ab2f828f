// oneDNN's conv2d (CpuOps made with CpuConv::kOnednn, kernels/cpu/onednn_conv.h) against the
// Eigen reference (the kernels/cpu/conv2d.h templates, run in double) on fresh random inputs
// (a new seed every run, printed on failure), odd shapes included: batch 1 and 3, h/w 7 and
// 28 (square and not), c 1/3/32, k 5/17/64, ksize 1/3/5, on 1 and 2 threads.
//
// Tolerance: every element within kRel of the sum of the absolute values of the terms that
// make it (the same convolution run on |x|, |w|, |b|, |dy|), which bounds float rounding
// whatever the cancellation; observed errors are well under it (see the test's output).
// Determinism, as asserted below: the same inputs twice give the same bits, and so do 1 and 2
// threads (OnednnConv splits the batch into image groups fixed by the problem size, runs each
// single-threaded on the kernels' pool and adds the groups' weight gradients in group order).
// Skipped when the build has no oneDNN (PSTRAIN_ONEDNN=OFF).
#include <gtest/gtest.h>

#include "tests/kernels/kernel_cases.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"
#if PSTRAIN_HAVE_ONEDNN
#include "kernels/cpu/onednn_conv.h"
#endif

namespace pstrain {
namespace {

using DVec = std::vector<double>;
using FVec = std::vector<float>;

// Relative to the sum of |terms| of each output element.
constexpr double kRel = 1e-5;

#define SKIP_WITHOUT_ONEDNN()                                                          \
  do {                                                                                 \
    if (!cpu_ops_have_onednn()) {                                                      \
      GTEST_SKIP() << "built without oneDNN (PSTRAIN_ONEDNN=OFF): nothing to compare"; \
    }                                                                                  \
  } while (false)

uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

// Inputs of one case, as float (what the op sees) and as the double it rounds to.
struct Inputs {
  Inputs(const Conv2dDims& dims, uint32_t seed) : d(dims) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    auto fill = [&](FVec& v, size_t count) {
      v.resize(count);
      for (float& e : v) e = u(gen);
    };
    fill(x, static_cast<size_t>(d.n) * d.h * d.w * d.c);
    fill(w, static_cast<size_t>(d.ksize) * d.ksize * d.c * d.k);
    fill(b, static_cast<size_t>(d.k));
    fill(dy, static_cast<size_t>(d.n) * d.h * d.w * d.k);
  }
  Conv2dDims d;
  FVec x, w, b, dy;
};

struct Outputs {
  FVec y, dx, dw, db;
};
struct DOutputs {
  DVec y, dx, dw, db;
};

DVec to_double(const FVec& v, bool abs) {
  DVec r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = abs ? std::abs(double{v[i]}) : double{v[i]};
  return r;
}

// The Eigen reference in double, on the inputs or on their absolute values.
DOutputs reference(const Inputs& in, bool abs) {
  const Conv2dDims& d = in.d;
  const DVec x = to_double(in.x, abs), w = to_double(in.w, abs), b = to_double(in.b, abs);
  const DVec dy = to_double(in.dy, abs);
  DOutputs o{DVec(in.dy.size()), DVec(in.x.size()), DVec(in.w.size()), DVec(in.b.size())};
  DVec work(std::max<size_t>(cpu::conv2d_workspace_floats(d), 1));
  cpu::conv2d_forward(x.data(), w.data(), b.data(), o.y.data(), work.data(), d);
  cpu::conv2d_backward(x.data(), w.data(), dy.data(), o.dx.data(), o.dw.data(), o.db.data(),
                       work.data(), d);
  return o;
}

// Forward and backward through `ops`, outputs NaN-poisoned first.
Outputs run(Ops& ops, const Inputs& in) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Outputs o{FVec(in.dy.size(), nan), FVec(in.x.size(), nan), FVec(in.w.size(), nan),
            FVec(in.b.size(), nan)};
  FVec work(std::max<size_t>(ops.conv2d_workspace_floats(in.d), 1), nan);
  ops.conv2d_forward(in.x.data(), in.w.data(), in.b.data(), o.y.data(), work.data(), in.d);
  ops.conv2d_backward(in.x.data(), in.w.data(), in.dy.data(), o.dx.data(), o.dw.data(), o.db.data(),
                      work.data(), in.d);
  return o;
}

// Largest |got - want| / scale seen by expect_within (printed once per test).
double g_worst = 0;

void expect_within(const FVec& got, const DVec& want, const DVec& scale, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(double{got[i]} - want[i]);
    const double bound = kRel * scale[i] + 1e-30;
    g_worst = std::max(g_worst, err / bound * kRel);
    if (!(err <= bound) && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << want.size() << " elements off; first at "
                     << first << ": got " << got[first] << ", want " << want[first] << " (bound "
                     << kRel * scale[first] << ")";
}

void expect_matches(const Outputs& o, const DOutputs& ref, const DOutputs& abs) {
  expect_within(o.y, ref.y, abs.y, "y");
  expect_within(o.dx, ref.dx, abs.dx, "dx");
  expect_within(o.dw, ref.dw, abs.dw, "dw");
  expect_within(o.db, ref.db, abs.db, "db");
}

size_t count_differing(const FVec& a, const FVec& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

class OnednnConvTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(OnednnConvTest, MatchesEigenReferenceOnOneAndTwoThreads) {
  SKIP_WITHOUT_ONEDNN();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const Inputs in(GetParam().d, seed);
  const DOutputs ref = reference(in, false), abs = reference(in, true);
  g_worst = 0;
  for (int threads : {1, 2}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    auto ops = make_cpu_ops(threads, CpuConv::kOnednn);
    ASSERT_NE(ops->description().find("oneDNN"), std::string::npos) << ops->description();
    EXPECT_EQ(ops->conv2d_workspace_floats(in.d), 0u);
    const Outputs o = run(*ops, in);
    expect_matches(o, ref, abs);

    // Without dx: dx left alone, dw and db still written.
    Outputs o2{FVec(), FVec(in.x.size(), 7.0f),
               FVec(in.w.size(), std::numeric_limits<float>::quiet_NaN()),
               FVec(in.b.size(), std::numeric_limits<float>::quiet_NaN())};
    ops->conv2d_backward(in.x.data(), in.w.data(), in.dy.data(), nullptr, o2.dw.data(),
                         o2.db.data(), nullptr, in.d);
    expect_within(o2.dw, ref.dw, abs.dw, "dw without dx");
    expect_within(o2.db, ref.db, abs.db, "db without dx");
    EXPECT_EQ(count_differing(o2.dx, FVec(in.x.size(), 7.0f)), 0u);
  }
  std::printf("worst error / sum|terms|: %.2e (bound %.0e)\n", g_worst, kRel);
}

TEST_P(OnednnConvTest, SameBitsTwiceAndOnOneAndTwoThreads) {
  SKIP_WITHOUT_ONEDNN();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const Inputs in(GetParam().d, seed);
  auto one = make_cpu_ops(1, CpuConv::kOnednn);
  auto two = make_cpu_ops(2, CpuConv::kOnednn);
  const Outputs a1 = run(*one, in), a2 = run(*two, in);
  const Outputs b1 = run(*one, in), b2 = run(*two, in);
  for (const auto& [x, y, what] :
       {std::tuple{&a1, &b1, "1 thread twice"}, std::tuple{&a2, &b2, "2 threads twice"}}) {
    EXPECT_EQ(count_differing(x->y, y->y), 0u) << what << ": y";
    EXPECT_EQ(count_differing(x->dx, y->dx), 0u) << what << ": dx";
    EXPECT_EQ(count_differing(x->dw, y->dw), 0u) << what << ": dw";
    EXPECT_EQ(count_differing(x->db, y->db), 0u) << what << ": db";
  }
  EXPECT_EQ(count_differing(a1.y, a2.y), 0u) << "1 vs 2 threads: y";
  EXPECT_EQ(count_differing(a1.dx, a2.dx), 0u) << "1 vs 2 threads: dx";
  EXPECT_EQ(count_differing(a1.dw, a2.dw), 0u) << "1 vs 2 threads: dw";
  EXPECT_EQ(count_differing(a1.db, a2.db), 0u) << "1 vs 2 threads: db";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, OnednnConvTest,
    ::testing::Values(ConvCase{{1, 7, 7, 1, 5, 5}, "n1_7x7_c1_k5_5x5"},
                      ConvCase{{3, 7, 7, 3, 17, 3}, "n3_7x7_c3_k17_3x3"},
                      ConvCase{{1, 28, 28, 32, 64, 5}, "n1_28x28_c32_k64_5x5"},
                      ConvCase{{3, 28, 28, 1, 32, 5}, "cnn_conv1_n3"},
                      ConvCase{{3, 14, 14, 32, 64, 5}, "cnn_conv2_n3"},
                      ConvCase{{3, 7, 28, 3, 64, 1}, "n3_7x28_c3_k64_1x1"},
                      ConvCase{{1, 28, 7, 32, 5, 3}, "n1_28x7_c32_k5_3x3"},
                      ConvCase{{3, 7, 7, 32, 17, 5}, "n3_7x7_c32_k17_5x5"},
                      ConvCase{{1, 7, 7, 3, 64, 1}, "n1_7x7_c3_k64_1x1"},
                      ConvCase{{3, 28, 28, 3, 5, 3}, "n3_28x28_c3_k5_3x3"},
                      ConvCase{{1, 7, 28, 1, 17, 1}, "n1_7x28_c1_k17_1x1"},
                      ConvCase{{3, 7, 7, 1, 64, 3}, "n3_7x7_c1_k64_3x3"},
                      ConvCase{{3, 28, 28, 32, 17, 1}, "n3_28x28_c32_k17_1x1"},
                      ConvCase{{2, 3, 3, 2, 3, 5}, "kernel_larger_than_image"},
                      // several image groups of unequal size (OnednnConv splits the batch)
                      ConvCase{{9, 28, 28, 1, 32, 5}, "cnn_conv1_n9_groups"},
                      ConvCase{{17, 14, 14, 32, 64, 5}, "cnn_conv2_n17_groups"}),
    [](const ::testing::TestParamInfo<ConvCase>& p) { return std::string(p.param.name); });

// A training step's shapes create their primitives once: later calls reuse them.
TEST(OnednnConv, PrimitivesAreCachedPerShape) {
  SKIP_WITHOUT_ONEDNN();
#if PSTRAIN_HAVE_ONEDNN
  cpu::OnednnConv conv(2);
  const Inputs a({3, 14, 14, 8, 16, 5}, fresh_seed()), b({3, 7, 7, 16, 8, 3}, fresh_seed());
  FVec y(a.dy.size()), dx(a.x.size()), dw(a.w.size()), db(a.b.size());
  for (int step = 0; step < 3; ++step) {
    conv.forward(a.x.data(), a.w.data(), a.b.data(), y.data(), a.d);
    conv.backward(a.x.data(), a.w.data(), a.dy.data(), dx.data(), dw.data(), db.data(), a.d);
    EXPECT_EQ(conv.cached_shapes(), 1);
  }
  FVec y2(b.dy.size());
  conv.forward(b.x.data(), b.w.data(), b.b.data(), y2.data(), b.d);
  conv.forward(a.x.data(), a.w.data(), a.b.data(), y.data(), a.d);
  EXPECT_EQ(conv.cached_shapes(), 2);
  EXPECT_NE(cpu::OnednnConv::version().find("oneDNN "), std::string::npos);
#endif
}

// PSTRAIN_CPU_CONV picks the default convolution; the Eigen reference stays reachable.
TEST(OnednnConv, EnvironmentChoosesTheDefaultConvolution) {
  SKIP_WITHOUT_ONEDNN();
  ASSERT_EQ(unsetenv("PSTRAIN_CPU_CONV"), 0);
  EXPECT_NE(make_cpu_ops(1)->description().find("oneDNN"), std::string::npos);
  ASSERT_EQ(setenv("PSTRAIN_CPU_CONV", "eigen", 1), 0);
  EXPECT_EQ(make_cpu_ops(1)->description().find("oneDNN"), std::string::npos);
  ASSERT_EQ(setenv("PSTRAIN_CPU_CONV", "onednn", 1), 0);
  EXPECT_NE(make_cpu_ops(1)->description().find("oneDNN"), std::string::npos);
  ASSERT_EQ(setenv("PSTRAIN_CPU_CONV", "bogus", 1), 0);  // reported, default kept
  EXPECT_NE(make_cpu_ops(1)->description().find("oneDNN"), std::string::npos);
  ASSERT_EQ(unsetenv("PSTRAIN_CPU_CONV"), 0);
}

}  // namespace
}  // namespace pstrain
