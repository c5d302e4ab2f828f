// Finite-difference gradient checks of every CPU kernel's backward pass, in double precision.
// Each check builds a scalar L = sum(y * r) (r random) or the loss itself, perturbs one input
// element at a time by +-h, and compares (L(+h) - L(-h)) / 2h with the analytic gradient from
// the backward kernel given dy = r.
#include <gtest/gtest.h>

#include "tests/kernels/kernel_cases.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/dense.h"
#include "kernels/cpu/maxpool.h"
#include "kernels/cpu/relu.h"
#include "kernels/cpu/softmax_xent.h"

namespace pstrain::cpu {
namespace {

using Vec = std::vector<double>;

// Random values with magnitude in [0.1, 1] and a random sign: never zero, never near a ReLU
// kink (h below is far smaller than 0.1).
Vec random_vec(size_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> mag(0.1, 1.0);
  std::bernoulli_distribution neg(0.5);
  Vec v(count);
  for (double& x : v) x = neg(gen) ? -mag(gen) : mag(gen);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}

// Compares analytic gradient `grad` of loss() with respect to `var` against central
// differences with step h. Relative error |a - n| / max(|a|, |n|, 1e-3) must stay below tol.
void check_gradient(const std::string& what, Vec& var, const Vec& grad,
                    const std::function<double()>& loss, double h = 1e-3, double tol = 1e-6) {
  ASSERT_EQ(var.size(), grad.size()) << what;
  double worst = 0;
  size_t worst_i = 0;
  double any_nonzero = 0;
  for (size_t i = 0; i < var.size(); ++i) {
    const double saved = var[i];
    var[i] = saved + h;
    const double lp = loss();
    var[i] = saved - h;
    const double lm = loss();
    var[i] = saved;
    const double numeric = (lp - lm) / (2 * h);
    const double err =
        std::abs(grad[i] - numeric) / std::max({std::abs(grad[i]), std::abs(numeric), 1e-3});
    any_nonzero = std::max(any_nonzero, std::abs(numeric));
    if (!(err <= worst)) {  // also taken for NaN
      worst = std::isnan(err) ? INFINITY : err;
      worst_i = i;
    }
  }
  EXPECT_LE(worst, tol) << what << ": worst relative error at element " << worst_i << ", analytic "
                        << grad[worst_i];
  EXPECT_GT(any_nonzero, 0.0) << what << ": the loss does not depend on this input at all";
}

TEST(GradcheckTest, Dense) {
  const int n = 3, in = 5, out = 4;
  Vec x = random_vec(n * in, 1), w = random_vec(in * out, 2), b = random_vec(out, 3);
  const Vec r = random_vec(n * out, 4);
  Vec y(n * out);
  auto loss = [&] {
    dense_forward(x.data(), w.data(), b.data(), y.data(), n, in, out);
    return dot(y, r);
  };
  Vec dx(n * in), dw(in * out), db(out);
  dense_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), n, in, out);
  check_gradient("dense dx", x, dx, loss);
  check_gradient("dense dw", w, dw, loss);
  check_gradient("dense db", b, db, loss);
}

TEST(GradcheckTest, Relu) {
  const int64_t count = 17;
  Vec x = random_vec(count, 5);
  const Vec r = random_vec(count, 6);
  Vec y(count);
  auto loss = [&] {
    relu_forward(x.data(), y.data(), count);
    return dot(y, r);
  };
  loss();
  Vec dx(count);
  relu_backward(y.data(), r.data(), dx.data(), count);
  check_gradient("relu dx", x, dx, loss);
}

class ConvGradcheckTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGradcheckTest, DxDwDb) {
  const Conv2dDims d = GetParam().d;
  const size_t xs = static_cast<size_t>(d.n) * d.h * d.w * d.c;
  const size_t ys = static_cast<size_t>(d.n) * d.h * d.w * d.k;
  const size_t ws = static_cast<size_t>(d.ksize) * d.ksize * d.c * d.k;
  Vec x = random_vec(xs, 10), w = random_vec(ws, 11), b = random_vec(d.k, 12);
  const Vec r = random_vec(ys, 13);
  Vec y(ys), work(conv2d_workspace_floats(d));
  auto loss = [&] {
    conv2d_forward(x.data(), w.data(), b.data(), y.data(), work.data(), d);
    return dot(y, r);
  };
  Vec dx(xs), dw(ws), db(d.k);
  conv2d_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), work.data(), d);
  check_gradient("conv2d dx", x, dx, loss);
  check_gradient("conv2d dw", w, dw, loss);
  check_gradient("conv2d db", b, db, loss);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvGradcheckTest,
                         ::testing::Values(ConvCase{{2, 5, 4, 1, 1, 3}, "single_channel_3x3"},
                                           ConvCase{{2, 5, 7, 3, 2, 5}, "odd_5x5"},
                                           ConvCase{{1, 3, 3, 2, 3, 5}, "kernel_larger_than_image"},
                                           ConvCase{{2, 4, 5, 2, 3, 1}, "pointwise_1x1"},
                                           ConvCase{{3, 6, 6, 4, 5, 5}, "square_c4_k5"}),
                         [](const ::testing::TestParamInfo<ConvCase>& p) {
                           return std::string(p.param.name);
                         });

// Distinct values 0.01 apart in random order, so no perturbation of h = 1e-3 changes an argmax.
Vec distinct_vec(size_t count, uint32_t seed) {
  Vec v(count);
  for (size_t i = 0; i < count; ++i) v[i] = 0.01 * (static_cast<double>(i) + 1) - 0.3;
  std::mt19937 gen(seed);
  std::shuffle(v.begin(), v.end(), gen);
  for (double& e : v) e = e == 0 ? 0.005 : e;
  return v;
}

class MaxpoolGradcheckTest : public ::testing::TestWithParam<PoolCase> {};

TEST_P(MaxpoolGradcheckTest, Dx) {
  const PoolDims d = GetParam().d;
  const size_t xs = static_cast<size_t>(d.n) * d.h * d.w * d.c;
  const size_t ys = static_cast<size_t>(d.n) * d.out_h() * d.out_w() * d.c;
  Vec x = distinct_vec(xs, 20);
  const Vec r = random_vec(ys, 21);
  Vec y(ys);
  std::vector<int32_t> argmax(ys);
  auto loss = [&] {
    maxpool2x2_forward(x.data(), y.data(), argmax.data(), d);
    return dot(y, r);
  };
  loss();
  Vec dx(xs);
  maxpool2x2_backward(r.data(), argmax.data(), dx.data(), d);
  check_gradient("maxpool dx", x, dx, loss);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MaxpoolGradcheckTest,
                         ::testing::Values(PoolCase{{1, 4, 4, 2}}, PoolCase{{2, 5, 7, 3}},
                                           PoolCase{{2, 3, 2, 1}}));

TEST(GradcheckTest, SoftmaxXent) {
  const int n = 4, k = 5;
  Vec logits = random_vec(n * k, 30);
  for (double& l : logits) l *= 3;
  const std::vector<int32_t> labels = {2, 0, 4, 1};
  Vec dlogits(n * k), scratch(n * k);
  double loss = 0;
  auto loss_fn = [&] {
    double l = 0;
    softmax_xent(logits.data(), labels.data(), scratch.data(), &l, n, k);
    return l;
  };
  softmax_xent(logits.data(), labels.data(), dlogits.data(), &loss, n, k);
  EXPECT_GT(loss, 0.0);
  check_gradient("softmax_xent dlogits", logits, dlogits, loss_fn, 1e-5);
}

}  // namespace
}  // namespace pstrain::cpu
