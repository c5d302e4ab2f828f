// CpuOps (float, through the Ops interface, with the Eigen convolution: oneDNN's is checked in
// onednn_conv_test.cc) and the double kernel templates against naive direct loops written
// here, on random inputs. Outputs are NaN-poisoned before every call, so
// an element an op forgets to write fails the comparison.
#include <gtest/gtest.h>

#include "tests/kernels/kernel_cases.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/dense.h"
#include "kernels/cpu/maxpool.h"
#include "kernels/cpu/relu.h"
#include "kernels/cpu/softmax_xent.h"
#include "kernels/ops.h"

namespace pstrain {
namespace {

using DVec = std::vector<double>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

DVec random_vec(size_t count, uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> mag(0.1, 1.0);
  std::bernoulli_distribution neg(0.5);
  DVec v(count);
  for (double& x : v) x = scale * (neg(gen) ? -mag(gen) : mag(gen));
  return v;
}

// A host tensor of the Ops backend holding `v` rounded to float.
Tensor to_tensor(Ops& ops, const DVec& v) {
  Tensor t = ops.alloc({static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.f32()[i] = static_cast<float>(v[i]);
  return t;
}
// v rounded to float and back, so the double references see the float op's exact inputs.
DVec rounded(const DVec& v) {
  DVec r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = static_cast<float>(v[i]);
  return r;
}
Tensor poisoned(Ops& ops, size_t count) {
  Tensor t = ops.alloc({static_cast<int64_t>(count)});
  std::fill_n(t.f32(), count, kNaN);
  return t;
}
DVec poisoned_d(size_t count) { return DVec(count, std::numeric_limits<double>::quiet_NaN()); }

// Every element within rel * max(1, max |want|) of want (NaN fails).
template <typename G>
void expect_close(const G* got, const DVec& want, double rel, const std::string& what) {
  double scale = 1;
  for (double w : want) scale = std::max(scale, std::abs(w));
  const double tol = rel * scale;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= tol)) {
      if (bad++ == 0) first = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << want.size()
                     << " elements differ; first at " << first << ": got "
                     << (want.empty() ? 0.0 : static_cast<double>(got[first])) << ", want "
                     << (want.empty() ? 0.0 : want[first]) << " (tolerance " << tol << ")";
}
void expect_close(const Tensor& got, const DVec& want, double rel, const std::string& what) {
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.size()) << what;
  expect_close(got.f32(), want, rel, what);
}

constexpr double kFloatTol = 2e-5;    // float op vs double reference, relative to max |ref|
constexpr double kDoubleTol = 1e-12;  // double template vs naive double loops

// --- naive references ---------------------------------------------------------------------

void naive_dense(const DVec& x, const DVec& w, const DVec& b, int n, int in, int out, DVec& y) {
  y.assign(static_cast<size_t>(n) * out, 0);
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) {
      double s = b[o];
      for (int j = 0; j < in; ++j) s += x[i * in + j] * w[j * out + o];
      y[i * out + o] = s;
    }
}

void naive_dense_backward(const DVec& x, const DVec& w, const DVec& dy, int n, int in, int out,
                          DVec& dx, DVec& dw, DVec& db) {
  dx.assign(static_cast<size_t>(n) * in, 0);
  dw.assign(static_cast<size_t>(in) * out, 0);
  db.assign(out, 0);
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) {
      db[o] += dy[i * out + o];
      for (int j = 0; j < in; ++j) {
        dx[i * in + j] += dy[i * out + o] * w[j * out + o];
        dw[j * out + o] += x[i * in + j] * dy[i * out + o];
      }
    }
}

// Direct convolution: for each output (b, y, x, k), sum over (ky, kx, c) of the SAME-padded
// input times HWIO weights; backward by the same index map.
struct NaiveConv {
  Conv2dDims d;
  size_t xi(int b, int y, int x, int c) const {
    return ((static_cast<size_t>(b) * d.h + y) * d.w + x) * d.c + c;
  }
  size_t yi(int b, int y, int x, int k) const {
    return ((static_cast<size_t>(b) * d.h + y) * d.w + x) * d.k + k;
  }
  size_t wi(int ky, int kx, int c, int k) const {
    return ((static_cast<size_t>(ky) * d.ksize + kx) * d.c + c) * d.k + k;
  }
  template <typename F>
  void each(F f) const {  // f(x index, w index, y index) for every in-bounds tap
    const int p = d.ksize / 2;
    for (int b = 0; b < d.n; ++b)
      for (int oy = 0; oy < d.h; ++oy)
        for (int ox = 0; ox < d.w; ++ox)
          for (int ky = 0; ky < d.ksize; ++ky)
            for (int kx = 0; kx < d.ksize; ++kx) {
              const int iy = oy + ky - p, ix = ox + kx - p;
              if (iy < 0 || iy >= d.h || ix < 0 || ix >= d.w) continue;
              for (int c = 0; c < d.c; ++c)
                for (int k = 0; k < d.k; ++k)
                  f(xi(b, iy, ix, c), wi(ky, kx, c, k), yi(b, oy, ox, k));
            }
  }
  void forward(const DVec& x, const DVec& w, const DVec& b, DVec& y) const {
    y.assign(static_cast<size_t>(d.n) * d.h * d.w * d.k, 0);
    for (size_t i = 0; i < y.size(); ++i) y[i] = b[i % d.k];
    each([&](size_t xi, size_t wi, size_t yi) { y[yi] += x[xi] * w[wi]; });
  }
  void backward(const DVec& x, const DVec& w, const DVec& dy, DVec& dx, DVec& dw, DVec& db) const {
    dx.assign(x.size(), 0);
    dw.assign(w.size(), 0);
    db.assign(d.k, 0);
    for (size_t i = 0; i < dy.size(); ++i) db[i % d.k] += dy[i];
    each([&](size_t xi, size_t wi, size_t yi) {
      dx[xi] += dy[yi] * w[wi];
      dw[wi] += x[xi] * dy[yi];
    });
  }
};

class CpuOpsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Ops> ops_ = make_cpu_ops(0, CpuConv::kEigen);
};

TEST_F(CpuOpsTest, DescribesItself) {
  EXPECT_EQ(ops_->device(), Device::kCpu);
  const std::string desc = ops_->description();
  EXPECT_EQ(desc.rfind("cpu (Eigen ", 0), 0u) << desc;
  EXPECT_NE(desc.find("thread"), std::string::npos) << desc;
  EXPECT_NE(make_cpu_ops(1, CpuConv::kEigen)->description().find(", 1 thread)"), std::string::npos);
  ops_ = make_cpu_ops(0, CpuConv::kEigen);  // restore all threads for the other tests
}

TEST_F(CpuOpsTest, AllocAndCopiesRoundTrip) {
  Tensor dev = ops_->alloc({3, 2});
  Tensor host = ops_->alloc_host({3, 2});
  Tensor back = ops_->alloc_host({3, 2});
  ASSERT_EQ(dev.numel(), 6);
  ASSERT_EQ(dev.device(), Device::kCpu);
  for (int i = 0; i < 6; ++i) host.f32()[i] = 1.5f * static_cast<float>(i) - 2.0f;
  ops_->copy_to_device(dev.raw(), host.raw(), host.bytes());
  std::fill_n(back.f32(), 6, kNaN);
  ops_->copy_to_host(back.raw(), dev.raw(), dev.bytes());
  ops_->synchronize();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back.f32()[i], 1.5f * static_cast<float>(i) - 2.0f);
  Tensor labels = ops_->alloc({4}, DType::kInt32);
  EXPECT_EQ(labels.dtype(), DType::kInt32);
}

struct DenseCase {
  int n, in, out;
};

class DenseTest : public CpuOpsTest, public ::testing::WithParamInterface<DenseCase> {};

TEST_P(DenseTest, ForwardBackwardMatchNaive) {
  const auto [n, in, out] = GetParam();
  const DVec x = rounded(random_vec(n * in, 1)), w = rounded(random_vec(in * out, 2));
  const DVec b = rounded(random_vec(out, 3)), dy = rounded(random_vec(n * out, 4));
  DVec y_ref, dx_ref, dw_ref, db_ref;
  naive_dense(x, w, b, n, in, out, y_ref);
  naive_dense_backward(x, w, dy, n, in, out, dx_ref, dw_ref, db_ref);

  // double template vs naive
  DVec y = poisoned_d(y_ref.size()), dx = poisoned_d(dx_ref.size());
  DVec dw = poisoned_d(dw_ref.size()), db = poisoned_d(out);
  cpu::dense_forward(x.data(), w.data(), b.data(), y.data(), n, in, out);
  cpu::dense_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), n, in, out);
  expect_close(y.data(), y_ref, kDoubleTol, "double y");
  expect_close(dx.data(), dx_ref, kDoubleTol, "double dx");
  expect_close(dw.data(), dw_ref, kDoubleTol, "double dw");
  expect_close(db.data(), db_ref, kDoubleTol, "double db");

  // float CpuOps vs the double template's results
  Tensor tx = to_tensor(*ops_, x), tw = to_tensor(*ops_, w), tb = to_tensor(*ops_, b);
  Tensor tdy = to_tensor(*ops_, dy);
  Tensor ty = poisoned(*ops_, y.size()), tdx = poisoned(*ops_, dx.size());
  Tensor tdw = poisoned(*ops_, dw.size()), tdb = poisoned(*ops_, db.size());
  ops_->dense_forward(tx.f32(), tw.f32(), tb.f32(), ty.f32(), n, in, out);
  ops_->dense_backward(tx.f32(), tw.f32(), tdy.f32(), tdx.f32(), tdw.f32(), tdb.f32(), n, in, out);
  expect_close(ty, y, kFloatTol, "float y");
  expect_close(tdx, dx, kFloatTol, "float dx");
  expect_close(tdw, dw, kFloatTol, "float dw");
  expect_close(tdb, db, kFloatTol, "float db");

  // dx == nullptr skips dx and still writes dw and db.
  std::fill_n(tdw.f32(), tdw.numel(), kNaN);
  std::fill_n(tdb.f32(), tdb.numel(), kNaN);
  ops_->dense_backward(tx.f32(), tw.f32(), tdy.f32(), nullptr, tdw.f32(), tdb.f32(), n, in, out);
  expect_close(tdw, dw, kFloatTol, "float dw without dx");
  expect_close(tdb, db, kFloatTol, "float db without dx");
}

INSTANTIATE_TEST_SUITE_P(Shapes, DenseTest,
                         ::testing::Values(DenseCase{1, 1, 1}, DenseCase{7, 13, 5},
                                           DenseCase{100, 784, 100}, DenseCase{33, 10, 129}));

TEST_F(CpuOpsTest, ReluForwardBackwardAndInPlace) {
  const int64_t count = 1001;
  const DVec x = rounded(random_vec(count, 5)), dy = rounded(random_vec(count, 6));
  Tensor tx = to_tensor(*ops_, x), tdy = to_tensor(*ops_, dy);
  Tensor ty = poisoned(*ops_, count), tdx = poisoned(*ops_, count);
  ops_->relu_forward(tx.f32(), ty.f32(), count);
  ops_->relu_backward(ty.f32(), tdy.f32(), tdx.f32(), count);
  DVec y_ref(count), dx_ref(count);
  for (int64_t i = 0; i < count; ++i) {
    y_ref[i] = x[i] > 0 ? x[i] : 0;
    dx_ref[i] = x[i] > 0 ? dy[i] : 0;
  }
  expect_close(ty, y_ref, 0, "relu y");
  expect_close(tdx, dx_ref, 0, "relu dx");
  ops_->relu_forward(tx.f32(), tx.f32(), count);  // in place
  expect_close(tx, y_ref, 0, "relu y in place");
  ops_->relu_backward(tx.f32(), tdy.f32(), tdy.f32(), count);
  expect_close(tdy, dx_ref, 0, "relu dx in place");
}

// Random inputs for conv dims `d` (seeds from `seed` on) and the naive loops' results.
struct ConvReference {
  ConvReference(const Conv2dDims& dims, uint32_t seed)
      : d(dims),
        xs(static_cast<size_t>(d.n) * d.h * d.w * d.c),
        ys(static_cast<size_t>(d.n) * d.h * d.w * d.k),
        ws(static_cast<size_t>(d.ksize) * d.ksize * d.c * d.k),
        x(rounded(random_vec(xs, seed))),
        w(rounded(random_vec(ws, seed + 1))),
        b(rounded(random_vec(static_cast<size_t>(d.k), seed + 2))),
        dy(rounded(random_vec(ys, seed + 3))) {
    const NaiveConv naive{d};
    naive.forward(x, w, b, y);
    naive.backward(x, w, dy, dx, dw, db);
  }
  Conv2dDims d;
  size_t xs, ys, ws;
  DVec x, w, b, dy;
  DVec y, dx, dw, db;  // the naive loops' outputs
};

// The float tensors of one conv run through an Ops backend.
struct ConvRun {
  Tensor tx, tw, tb, tdy, ty, tdx, tdw, tdb, twork;
};

// Forward and backward of `r`'s case through `ops`, outputs and workspace poisoned first (the
// workspace again between the passes), checked against the naive results.
ConvRun run_float_conv(Ops& ops, const ConvReference& r) {
  const Conv2dDims& d = r.d;
  ConvRun t{to_tensor(ops, r.x),
            to_tensor(ops, r.w),
            to_tensor(ops, r.b),
            to_tensor(ops, r.dy),
            poisoned(ops, r.ys),
            poisoned(ops, r.xs),
            poisoned(ops, r.ws),
            poisoned(ops, static_cast<size_t>(d.k)),
            poisoned(ops, std::max<size_t>(ops.conv2d_workspace_floats(d), 1))};
  ops.conv2d_forward(t.tx.f32(), t.tw.f32(), t.tb.f32(), t.ty.f32(), t.twork.f32(), d);
  std::fill_n(t.twork.f32(), t.twork.numel(), kNaN);
  ops.conv2d_backward(t.tx.f32(), t.tw.f32(), t.tdy.f32(), t.tdx.f32(), t.tdw.f32(), t.tdb.f32(),
                      t.twork.f32(), d);
  expect_close(t.ty, r.y, kFloatTol, "float y");
  expect_close(t.tdx, r.dx, kFloatTol, "float dx");
  expect_close(t.tdw, r.dw, kFloatTol, "float dw");
  expect_close(t.tdb, r.db, kFloatTol, "float db");
  return t;
}

class ConvTest : public CpuOpsTest, public ::testing::WithParamInterface<ConvCase> {};

TEST_P(ConvTest, ForwardBackwardMatchDirectConvolution) {
  const Conv2dDims d = GetParam().d;
  const ConvReference r(d, 7);

  const size_t work_size = cpu::conv2d_workspace_floats(d);
  DVec y = poisoned_d(r.ys), dx = poisoned_d(r.xs), dw = poisoned_d(r.ws);
  DVec db = poisoned_d(static_cast<size_t>(d.k)), work = poisoned_d(work_size);
  cpu::conv2d_forward(r.x.data(), r.w.data(), r.b.data(), y.data(), work.data(), d);
  std::fill(work.begin(), work.end(), std::numeric_limits<double>::quiet_NaN());
  cpu::conv2d_backward(r.x.data(), r.w.data(), r.dy.data(), dx.data(), dw.data(), db.data(),
                       work.data(), d);
  expect_close(y.data(), r.y, kDoubleTol, "double y");
  expect_close(dx.data(), r.dx, kDoubleTol, "double dx");
  expect_close(dw.data(), r.dw, kDoubleTol, "double dw");
  expect_close(db.data(), r.db, kDoubleTol, "double db");

  ASSERT_EQ(ops_->conv2d_workspace_floats(d), work_size);
  ConvRun t = run_float_conv(*ops_, r);

  // dx == nullptr skips dx and still writes dw and db.
  std::fill_n(t.tdw.f32(), t.tdw.numel(), kNaN);
  std::fill_n(t.tdb.f32(), t.tdb.numel(), kNaN);
  std::fill_n(t.tdx.f32(), t.tdx.numel(), 7.0f);
  ops_->conv2d_backward(t.tx.f32(), t.tw.f32(), t.tdy.f32(), nullptr, t.tdw.f32(), t.tdb.f32(),
                        t.twork.f32(), d);
  expect_close(t.tdw, r.dw, kFloatTol, "float dw without dx");
  expect_close(t.tdb, r.db, kFloatTol, "float db without dx");
  EXPECT_EQ(t.tdx.f32()[0], 7.0f);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvTest,
                         ::testing::Values(ConvCase{{2, 7, 5, 1, 3, 5}, "c1_odd"},
                                           ConvCase{{3, 6, 9, 3, 4, 3}, "c3_k4_3x3"},
                                           ConvCase{{2, 2, 3, 2, 2, 5}, "kernel_larger_than_image"},
                                           ConvCase{{2, 5, 4, 3, 2, 1}, "pointwise_1x1"},
                                           ConvCase{{4, 28, 28, 1, 32, 5}, "cnn_conv1"}),
                         [](const ::testing::TestParamInfo<ConvCase>& p) {
                           return std::string(p.param.name);
                         });

// The thread counts the kernels split work over: each test below is large enough that the
// ops use every thread, and results must match the naive loops for any count.
class ThreadsTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { ops_ = make_cpu_ops(GetParam(), CpuConv::kEigen); }
  void TearDown() override { make_cpu_ops(0, CpuConv::kEigen); }
  std::unique_ptr<Ops> ops_;
};

// The CNN's second layer: the patch matrix is larger than the workspace, so each thread
// unrolls several blocks of rows, blocks cross image boundaries and the last one is partial.
TEST_P(ThreadsTest, ConvSeveralBlocks) {
  const Conv2dDims d{30, 14, 14, 32, 64, 5};
  const int64_t block = cpu::conv2d_block_rows(d);
  ASSERT_LT(block * cpu::conv2d_workspace_slots(d), int64_t{d.n} * d.h * d.w);
  ASSERT_LT(block, int64_t{d.n} * d.h * d.w / cpu::kConv2dBackwardGroups);
  ASSERT_NE(block % (d.h * d.w), 0);
  run_float_conv(*ops_, ConvReference(d, 11));
}

TEST_P(ThreadsTest, DenseModelShapes) {
  // The first two are large enough for several workers (cpu::kDenseMinFlopsPerWorker).
  for (const auto& [n, in, out] :
       {DenseCase{512, 784, 100}, DenseCase{100, 1200, 330}, DenseCase{100, 784, 100},
        DenseCase{100, 1024, 10}, DenseCase{100, 100, 1000}}) {
    SCOPED_TRACE(std::to_string(in) + " -> " + std::to_string(out));
    const DVec x = rounded(random_vec(n * in, 21)), w = rounded(random_vec(in * out, 22));
    const DVec b = rounded(random_vec(out, 23)), dy = rounded(random_vec(n * out, 24));
    DVec y_ref, dx_ref, dw_ref, db_ref;
    naive_dense(x, w, b, n, in, out, y_ref);
    naive_dense_backward(x, w, dy, n, in, out, dx_ref, dw_ref, db_ref);
    Tensor tx = to_tensor(*ops_, x), tw = to_tensor(*ops_, w), tb = to_tensor(*ops_, b);
    Tensor tdy = to_tensor(*ops_, dy);
    Tensor ty = poisoned(*ops_, y_ref.size()), tdx = poisoned(*ops_, dx_ref.size());
    Tensor tdw = poisoned(*ops_, dw_ref.size()), tdb = poisoned(*ops_, out);
    ops_->dense_forward(tx.f32(), tw.f32(), tb.f32(), ty.f32(), n, in, out);
    ops_->dense_backward(tx.f32(), tw.f32(), tdy.f32(), tdx.f32(), tdw.f32(), tdb.f32(), n, in,
                         out);
    expect_close(ty, y_ref, kFloatTol, "float y");
    expect_close(tdx, dx_ref, kFloatTol, "float dx");
    expect_close(tdw, dw_ref, kFloatTol, "float dw");
    expect_close(tdb, db_ref, kFloatTol, "float db");
  }
}

TEST_P(ThreadsTest, ReluAndColumnSumsLarge) {
  const int64_t rows = 3001, cols = 97;  // 291K elements: above the per-thread minimum
  const DVec x = rounded(random_vec(rows * cols, 25)), dy = rounded(random_vec(rows * cols, 26));
  Tensor tx = to_tensor(*ops_, x), tdy = to_tensor(*ops_, dy);
  Tensor ty = poisoned(*ops_, x.size()), tdx = poisoned(*ops_, x.size());
  ops_->relu_forward(tx.f32(), ty.f32(), rows * cols);
  ops_->relu_backward(ty.f32(), tdy.f32(), tdx.f32(), rows * cols);
  DVec y_ref(x.size()), dx_ref(x.size()), sums_ref(cols, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    y_ref[i] = x[i] > 0 ? x[i] : 0;
    dx_ref[i] = x[i] > 0 ? dy[i] : 0;
    sums_ref[i % cols] += x[i];
  }
  expect_close(ty, y_ref, 0, "relu y");
  expect_close(tdx, dx_ref, 0, "relu dx");
  std::vector<float> sums(cols, kNaN);
  cpu::column_sums(tx.f32(), rows, cols, sums.data());
  expect_close(sums.data(), sums_ref, 1e-6, "column sums");
}

// Chunks depend only on the problem size and sums across chunks are added in chunk order, so
// every thread count gives bitwise the same results.
TEST_P(ThreadsTest, ResultsDoNotDependOnThreadCount) {
  const Conv2dDims d{12, 14, 14, 8, 16, 5};
  const int n = 400, in = 300, out = 200;  // dense large enough for 2+ workers
  const size_t xs = static_cast<size_t>(d.n) * d.h * d.w * d.c;
  const size_t ys = static_cast<size_t>(d.n) * d.h * d.w * d.k;
  const size_t ws = static_cast<size_t>(d.ksize) * d.ksize * d.c * d.k;
  auto run_all = [&](Ops& ops) {
    Tensor x = to_tensor(ops, random_vec(xs, 31)), w = to_tensor(ops, random_vec(ws, 32));
    Tensor b = to_tensor(ops, random_vec(d.k, 33)), dy = to_tensor(ops, random_vec(ys, 34));
    Tensor dx = poisoned(ops, xs), dw = poisoned(ops, ws), db = poisoned(ops, d.k);
    Tensor y = poisoned(ops, ys), work = poisoned(ops, ops.conv2d_workspace_floats(d));
    ops.conv2d_forward(x.f32(), w.f32(), b.f32(), y.f32(), work.f32(), d);
    ops.conv2d_backward(x.f32(), w.f32(), dy.f32(), dx.f32(), dw.f32(), db.f32(), work.f32(), d);
    Tensor fx = to_tensor(ops, random_vec(n * in, 35)),
           fw = to_tensor(ops, random_vec(in * out, 36));
    Tensor fdy = to_tensor(ops, random_vec(n * out, 37)), fb = to_tensor(ops, random_vec(out, 38));
    Tensor fy = poisoned(ops, n * out);
    Tensor fdx = poisoned(ops, n * in), fdw = poisoned(ops, in * out), fdb = poisoned(ops, out);
    ops.dense_forward(fx.f32(), fw.f32(), fb.f32(), fy.f32(), n, in, out);
    ops.dense_backward(fx.f32(), fw.f32(), fdy.f32(), fdx.f32(), fdw.f32(), fdb.f32(), n, in, out);
    std::vector<float> all;
    for (const Tensor* t : {&y, &dx, &dw, &db, &fy, &fdx, &fdw, &fdb}) {
      all.insert(all.end(), t->f32(), t->f32() + t->numel());
    }
    return all;
  };
  const std::vector<float> here = run_all(*ops_);
  const std::vector<float> one = run_all(*make_cpu_ops(1, CpuConv::kEigen));
  ops_ = make_cpu_ops(GetParam(), CpuConv::kEigen);
  ASSERT_EQ(here.size(), one.size());
  size_t differ = 0;
  for (size_t i = 0; i < here.size(); ++i) differ += std::memcmp(&here[i], &one[i], 4) != 0;
  EXPECT_EQ(differ, 0u);
}

INSTANTIATE_TEST_SUITE_P(Counts, ThreadsTest, ::testing::Values(1, 2, 3),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return std::to_string(p.param) + "_threads";
                         });

class MaxpoolTest : public CpuOpsTest, public ::testing::WithParamInterface<PoolCase> {};

TEST_P(MaxpoolTest, ForwardBackwardMatchNaive) {
  const PoolDims d = GetParam().d;
  const size_t xs = static_cast<size_t>(d.n) * d.h * d.w * d.c;
  const size_t ys = static_cast<size_t>(d.n) * d.out_h() * d.out_w() * d.c;
  const DVec x = rounded(random_vec(xs, 15)), dy = rounded(random_vec(ys, 16));
  DVec y_ref(ys), dx_ref(xs, 0);
  std::vector<int32_t> arg_ref(ys);
  size_t o = 0;
  for (int b = 0; b < d.n; ++b)
    for (int oy = 0; oy < d.out_h(); ++oy)
      for (int ox = 0; ox < d.out_w(); ++ox)
        for (int c = 0; c < d.c; ++c, ++o) {
          size_t best = 0;
          bool first = true;
          for (int wy = 0; wy < 2; ++wy)
            for (int wx = 0; wx < 2; ++wx) {
              const size_t i =
                  ((static_cast<size_t>(b) * d.h + 2 * oy + wy) * d.w + 2 * ox + wx) * d.c + c;
              if (first || x[i] > x[best]) best = i;
              first = false;
            }
          y_ref[o] = x[best];
          arg_ref[o] = static_cast<int32_t>(best);
          dx_ref[best] += dy[o];
        }
  Tensor tx = to_tensor(*ops_, x), tdy = to_tensor(*ops_, dy);
  Tensor ty = poisoned(*ops_, ys), tdx = poisoned(*ops_, xs);
  Tensor targ = ops_->alloc({static_cast<int64_t>(ys)}, DType::kInt32);
  std::fill_n(targ.i32(), ys, -1);
  ops_->maxpool2x2_forward(tx.f32(), ty.f32(), targ.i32(), d);
  ops_->maxpool2x2_backward(tdy.f32(), targ.i32(), tdx.f32(), d);
  expect_close(ty, y_ref, 0, "maxpool y");
  expect_close(tdx, dx_ref, 0, "maxpool dx");
  EXPECT_EQ(std::vector<int32_t>(targ.i32(), targ.i32() + ys), arg_ref);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MaxpoolTest,
                         ::testing::Values(PoolCase{{2, 4, 6, 3}}, PoolCase{{3, 5, 7, 2}},
                                           PoolCase{{1, 1, 4, 1}}, PoolCase{{10, 28, 28, 32}}));

TEST_F(CpuOpsTest, MaxpoolTiesGoToFirstInRowMajorOrder) {
  const PoolDims d{1, 2, 4, 1};
  // window 0 (columns 0-1): all equal -> index 0 (top-left);
  // window 1 (columns 2-3): top-right (3) and bottom-left (6) tie at 5 -> 3.
  Tensor x = ops_->alloc({8});
  const float vals[8] = {1, 1, 2, 5, 1, 1, 5, 4};
  std::copy_n(vals, 8, x.f32());
  Tensor y = poisoned(*ops_, 2);
  Tensor arg = ops_->alloc({2}, DType::kInt32);
  ops_->maxpool2x2_forward(x.f32(), y.f32(), arg.i32(), d);
  EXPECT_EQ(arg.i32()[0], 0);
  EXPECT_EQ(arg.i32()[1], 3);
  EXPECT_EQ(y.f32()[0], 1.0f);
  EXPECT_EQ(y.f32()[1], 5.0f);
}

TEST_F(CpuOpsTest, SoftmaxXentMatchesNaive) {
  const int n = 9, k = 10;
  const DVec logits = rounded(random_vec(n * k, 17, 4.0));
  std::vector<int32_t> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = (i * 7) % k;
  double loss_ref = 0;
  DVec dl_ref(n * k);
  for (int i = 0; i < n; ++i) {
    double z = 0;  // direct formula: fine for |logits| <= 4
    for (int j = 0; j < k; ++j) z += std::exp(logits[i * k + j]);
    loss_ref += -std::log(std::exp(logits[i * k + labels[i]]) / z) / n;
    for (int j = 0; j < k; ++j)
      dl_ref[i * k + j] = (std::exp(logits[i * k + j]) / z - (j == labels[i] ? 1 : 0)) / n;
  }
  Tensor tl = to_tensor(*ops_, logits), tdl = poisoned(*ops_, n * k), tloss = poisoned(*ops_, 1);
  Tensor tlab = ops_->alloc({n}, DType::kInt32);
  std::copy(labels.begin(), labels.end(), tlab.i32());
  ops_->softmax_xent(tl.f32(), tlab.i32(), tdl.f32(), tloss.f32(), n, k);
  ops_->synchronize();
  EXPECT_NEAR(tloss.f32()[0], loss_ref, 1e-5 * loss_ref);
  expect_close(tdl, dl_ref, 1e-6, "dlogits");

  double loss_d = std::numeric_limits<double>::quiet_NaN();
  DVec dl_d = poisoned_d(n * k);
  cpu::softmax_xent(logits.data(), labels.data(), dl_d.data(), &loss_d, n, k);
  EXPECT_NEAR(loss_d, loss_ref, 1e-12 * loss_ref);
  expect_close(dl_d.data(), dl_ref, 1e-14, "double dlogits");
}

TEST_F(CpuOpsTest, SoftmaxXentStableForHugeLogits) {
  const int n = 2, k = 3;
  // Row 0: [1e4, 1e4 - 1, 1e4 - 2], label 2: loss = log(1 + e^-1 + e^-2) + 2.
  // Row 1: [-1e4, 0, 1e4], label 2: loss = log(1 + e^-1e4 + e^-2e4) ~= 0.
  const float vals[6] = {1e4f, 1e4f - 1, 1e4f - 2, -1e4f, 0, 1e4f};
  Tensor tl = ops_->alloc({6}), tdl = poisoned(*ops_, 6), tloss = poisoned(*ops_, 1);
  std::copy_n(vals, 6, tl.f32());
  Tensor tlab = ops_->alloc({2}, DType::kInt32);
  tlab.i32()[0] = 2;
  tlab.i32()[1] = 2;
  ops_->softmax_xent(tl.f32(), tlab.i32(), tdl.f32(), tloss.f32(), n, k);
  const double row0 = std::log(1 + std::exp(-1.0) + std::exp(-2.0)) + 2;
  ASSERT_TRUE(std::isfinite(tloss.f32()[0]));
  EXPECT_NEAR(tloss.f32()[0], row0 / 2, 1e-5);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(std::isfinite(tdl.f32()[i])) << i;
  const double z = 1 + std::exp(-1.0) + std::exp(-2.0);  // softmax row 0: [1, e^-1, e^-2] / z
  EXPECT_NEAR(tdl.f32()[0], (1 / z) / 2, 1e-6);
  EXPECT_NEAR(tdl.f32()[2], (std::exp(-2.0) / z - 1) / 2, 1e-6);
  EXPECT_NEAR(tdl.f32()[5], 0.0, 1e-6);  // softmax ~ 1 at the label
}

TEST_F(CpuOpsTest, CountCorrectUsesFirstMaximum) {
  const int n = 5, k = 3;
  const float vals[15] = {
      0.1f, 0.9f, 0.3f,  // argmax 1, label 1: correct
      2.0f, 2.0f, 1.0f,  // tie 0/1 -> 0, label 1: wrong
      2.0f, 2.0f, 1.0f,  // tie 0/1 -> 0, label 0: correct
      -5.f, -4.f, -3.f,  // argmax 2, label 2: correct
      7.0f, 1.0f, 7.5f,  // argmax 2, label 0: wrong
  };
  const int32_t labels[5] = {1, 1, 0, 2, 0};
  Tensor tl = ops_->alloc({15}), tlab = ops_->alloc({5}, DType::kInt32);
  std::copy_n(vals, 15, tl.f32());
  std::copy_n(labels, 5, tlab.i32());
  EXPECT_EQ(ops_->count_correct(tl.f32(), tlab.i32(), n, k), 3);
  EXPECT_EQ(ops_->count_correct(tl.f32(), tlab.i32(), 1, k), 1);
}

}  // namespace
}  // namespace pstrain
