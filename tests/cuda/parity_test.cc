// The CUDA backend (make_cuda_ops) against the CPU reference backend (make_cpu_ops), op by op,
// on fresh random inputs (never zeros, new values for every shape), odd shapes and the models'
// real shapes, with every output poisoned (NaN, or -7 for int32) before each run so that an
// element an op fails to write shows up.
//
// Tolerance. For an output that is a sum of K products, float32 rounding bounds the error of
// either backend by about K * eps * sum|terms| (and typically sqrt(K) * eps * sum|terms|). So
// each element's error is divided by its magnitude scale sum|terms|, which the CPU backend
// itself computes by running the same op on |inputs|, and the largest such relative error must
// be <= 8 * eps * sqrt(K) (eps = FLT_EPSILON = 2^-23). Softmax cross-entropy (exp, log and a
// sum of k terms, logits in [-4, 4]) gets 32 * eps * sqrt(K). With TF32 on, each product's inputs
// are rounded to 10 mantissa bits, adding up to 2^-9 * sum|terms|: the TF32 tests allow
// 2^-9 + 8 * eps * sqrt(K). ReLU, max-pool and count_correct must match exactly.
//
// Every comparison prints "PARITY op=<name> shape=<dims> max_rel_err=<x> tol=<t>" and records
// the same as a test property. Without a usable GPU every test that needs one is skipped with
// the reason from query_gpus().
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_query.h"
#include "kernels/ops.h"

namespace pstrain {
namespace {

constexpr double kEps = FLT_EPSILON;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int32_t kIntPoison = -7;

double fp32_tol(int64_t k) {
  return 8.0 * kEps * std::sqrt(static_cast<double>(std::max<int64_t>(k, 1)));
}
double softmax_tol(int64_t k) {
  return 32.0 * kEps * std::sqrt(static_cast<double>(std::max<int64_t>(k, 1)));
}
double tf32_tol(int64_t k) { return std::ldexp(1.0, -9) + fp32_tol(k); }

std::vector<float> abs_of(std::vector<float> v) {
  for (float& x : v) x = std::fabs(x);
  return v;
}

struct ErrorStat {
  double max_rel = 0;
  int64_t worst = -1;
};

// max_i |got_i - ref_i| / scale_i; a non-finite value on either side counts as infinite error.
ErrorStat relative_error(const std::vector<float>& got, const std::vector<float>& ref,
                         const std::vector<float>& scale) {
  ErrorStat s;
  if (got.size() != ref.size() || got.size() != scale.size()) {
    s.max_rel = std::numeric_limits<double>::infinity();
    return s;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    double e;
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) {
      e = std::numeric_limits<double>::infinity();
    } else {
      const double diff = std::fabs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
      e = diff == 0 ? 0
                    : diff / std::max(static_cast<double>(scale[i]), static_cast<double>(FLT_MIN));
    }
    if (s.worst < 0 || e > s.max_rel) {
      s.max_rel = e;
      s.worst = static_cast<int64_t>(i);
    }
  }
  return s;
}

// Skips the calling test (from SetUp) when no GPU is usable; the reason comes from query_gpus().
class ParityTest : public ::testing::Test {
 protected:
  virtual bool use_tf32() const { return false; }

  void SetUp() override {
    const cuda::GpuQuery q = cuda::query_gpus();
    if (q.gpus.empty()) GTEST_SKIP() << "no usable CUDA GPU: " << q.error;
    Result<std::unique_ptr<Ops>> gpu = make_cuda_ops(0, use_tf32());
    ASSERT_TRUE(gpu.ok()) << "a GPU is present but the CUDA backend failed to start: "
                          << gpu.status().to_string();
    gpu_ = std::move(gpu).value();
    cpu_ = make_cpu_ops(0);
    std::printf("PARITY_DEVICE %s | %s\n", gpu_->description().c_str(),
                cpu_->description().c_str());
  }

  // Uniform in [lo, hi), never exactly 0, fresh for every call.
  std::vector<float> random(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) {
      do {
        x = dist(rng_);
      } while (x == 0.0f);
    }
    return v;
  }
  // Values from a few non-zero levels, so that ties (max-pool, argmax) are common.
  std::vector<float> tied(int64_t n) {
    static const float kLevels[] = {-1.5f, -0.25f, 0.5f, 2.0f};
    std::uniform_int_distribution<int> pick(0, 3);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = kLevels[pick(rng_)];
    return v;
  }
  std::vector<int32_t> random_labels(int n, int k) {
    std::uniform_int_distribution<int32_t> pick(0, k - 1);
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int32_t& x : v) x = pick(rng_);
    return v;
  }

  // The same contents on both backends.
  struct Pair {
    Tensor cpu, gpu;
  };
  template <typename T>
  Tensor upload_to(Ops& ops, const std::vector<T>& v, DType dtype) {
    Tensor t = ops.alloc({static_cast<int64_t>(v.size())}, dtype);
    ops.copy_to_device(t.raw(), v.data(), v.size() * sizeof(T));
    ops.synchronize();
    return t;
  }
  Pair upload(const std::vector<float>& v) {
    return {upload_to(*cpu_, v, DType::kFloat32), upload_to(*gpu_, v, DType::kFloat32)};
  }
  Pair upload(const std::vector<int32_t>& v) {
    return {upload_to(*cpu_, v, DType::kInt32), upload_to(*gpu_, v, DType::kInt32)};
  }
  Pair poisoned(int64_t n) { return upload(std::vector<float>(static_cast<size_t>(n), kNaN)); }
  Pair poisoned_i32(int64_t n) {
    return upload(std::vector<int32_t>(static_cast<size_t>(n), kIntPoison));
  }
  Tensor poisoned_on(Ops& ops, int64_t n) {
    return upload_to(ops, std::vector<float>(static_cast<size_t>(n), kNaN), DType::kFloat32);
  }
  template <typename T = float>
  std::vector<T> fetch(Ops& ops, const Tensor& t) {
    std::vector<T> v(static_cast<size_t>(t.numel()));
    ops.copy_to_host(v.data(), t.raw(), v.size() * sizeof(T));
    ops.synchronize();
    return v;
  }
  std::vector<float> fetch_cpu(const Pair& p) { return fetch(*cpu_, p.cpu); }
  std::vector<float> fetch_gpu(const Pair& p) { return fetch(*gpu_, p.gpu); }

  void report(const std::string& op_name, const std::string& shape, const ErrorStat& s,
              double limit, const std::vector<float>& got, const std::vector<float>& ref) {
    const std::string op = op_name + (use_tf32() ? ".tf32" : "");
    char value[64];
    std::snprintf(value, sizeof(value), "%.3e", s.max_rel);
    std::printf("PARITY op=%s shape=%s max_rel_err=%s tol=%.3e\n", op.c_str(), shape.c_str(), value,
                limit);
    std::fflush(stdout);
    // Property names become XML attribute names: letters, digits, '_' and '.' only.
    std::string key = op + "__" + shape;
    for (char& ch : key) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.') ch = '_';
    }
    RecordProperty(key, value);
    const size_t w = static_cast<size_t>(std::max<int64_t>(s.worst, 0));
    EXPECT_LE(s.max_rel, limit) << op << " " << shape << ": worst element " << s.worst
                                << " gpu=" << (w < got.size() ? got[w] : kNaN)
                                << " cpu=" << (w < ref.size() ? ref[w] : kNaN);
  }
  void expect_close(const std::string& op, const std::string& shape, const std::vector<float>& got,
                    const std::vector<float>& ref, const std::vector<float>& scale, double limit) {
    report(op, shape, relative_error(got, ref, scale), limit, got, ref);
  }
  void expect_equal(const std::string& op, const std::string& shape, const std::vector<float>& got,
                    const std::vector<float>& ref) {
    std::vector<float> scale(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) scale[i] = std::fabs(ref[i]);
    report(op, shape, relative_error(got, ref, scale), 0.0, got, ref);
  }

  double tol(int64_t k) const { return use_tf32() ? tf32_tol(k) : fp32_tol(k); }

  void check_dense(int n, int in, int out);
  void check_conv(const Conv2dDims& d);

  std::unique_ptr<Ops> cpu_, gpu_;
  std::mt19937 rng_{20240611};
};

class ParityTf32Test : public ParityTest {
 protected:
  bool use_tf32() const override { return true; }
};

std::string dense_shape(int n, int in, int out) {
  return "n:" + std::to_string(n) + ",in:" + std::to_string(in) + ",out:" + std::to_string(out);
}

void ParityTest::check_dense(int n, int in, int out) {
  const std::string shape = dense_shape(n, in, out);
  const std::vector<float> x = random(int64_t{n} * in), w = random(int64_t{in} * out),
                           b = random(out), dy = random(int64_t{n} * out);
  const Pair X = upload(x), W = upload(w), B = upload(b), DY = upload(dy);
  const Pair AX = upload(abs_of(x)), AW = upload(abs_of(w)), AB = upload(abs_of(b)),
             ADY = upload(abs_of(dy));

  // forward
  Pair Y = poisoned(int64_t{n} * out);
  cpu_->dense_forward(X.cpu.f32(), W.cpu.f32(), B.cpu.f32(), Y.cpu.f32(), n, in, out);
  gpu_->dense_forward(X.gpu.f32(), W.gpu.f32(), B.gpu.f32(), Y.gpu.f32(), n, in, out);
  Tensor YS = poisoned_on(*cpu_, int64_t{n} * out);
  cpu_->dense_forward(AX.cpu.f32(), AW.cpu.f32(), AB.cpu.f32(), YS.f32(), n, in, out);
  expect_close("dense_forward", shape, fetch_gpu(Y), fetch_cpu(Y), fetch(*cpu_, YS), tol(in + 1));

  // backward, with dx
  Pair DX = poisoned(int64_t{n} * in), DW = poisoned(int64_t{in} * out), DB = poisoned(out);
  cpu_->dense_backward(X.cpu.f32(), W.cpu.f32(), DY.cpu.f32(), DX.cpu.f32(), DW.cpu.f32(),
                       DB.cpu.f32(), n, in, out);
  gpu_->dense_backward(X.gpu.f32(), W.gpu.f32(), DY.gpu.f32(), DX.gpu.f32(), DW.gpu.f32(),
                       DB.gpu.f32(), n, in, out);
  Tensor DXS = poisoned_on(*cpu_, int64_t{n} * in), DWS = poisoned_on(*cpu_, int64_t{in} * out),
         DBS = poisoned_on(*cpu_, out);
  cpu_->dense_backward(AX.cpu.f32(), AW.cpu.f32(), ADY.cpu.f32(), DXS.f32(), DWS.f32(), DBS.f32(),
                       n, in, out);
  const std::vector<float> dw_scale = fetch(*cpu_, DWS), db_scale = fetch(*cpu_, DBS);
  expect_close("dense_backward.dx", shape, fetch_gpu(DX), fetch_cpu(DX), fetch(*cpu_, DXS),
               tol(out));
  expect_close("dense_backward.dw", shape, fetch_gpu(DW), fetch_cpu(DW), dw_scale, tol(n));
  expect_close("dense_backward.db", shape, fetch_gpu(DB), fetch_cpu(DB), db_scale, tol(n));

  // backward without dx (a first layer)
  Pair DW2 = poisoned(int64_t{in} * out), DB2 = poisoned(out);
  gpu_->dense_backward(X.gpu.f32(), W.gpu.f32(), DY.gpu.f32(), nullptr, DW2.gpu.f32(),
                       DB2.gpu.f32(), n, in, out);
  expect_close("dense_backward_nodx.dw", shape, fetch_gpu(DW2), fetch_cpu(DW), dw_scale, tol(n));
  expect_close("dense_backward_nodx.db", shape, fetch_gpu(DB2), fetch_cpu(DB), db_scale, tol(n));
}

std::string conv_shape(const Conv2dDims& d) {
  return "n:" + std::to_string(d.n) + ",h:" + std::to_string(d.h) + ",w:" + std::to_string(d.w) +
         ",c:" + std::to_string(d.c) + ",k:" + std::to_string(d.k) +
         ",ksize:" + std::to_string(d.ksize);
}

void ParityTest::check_conv(const Conv2dDims& d) {
  const std::string shape = conv_shape(d);
  const int64_t xs = int64_t{d.n} * d.h * d.w * d.c, ys = int64_t{d.n} * d.h * d.w * d.k;
  const int64_t ws = int64_t{d.ksize} * d.ksize * d.c * d.k;
  const std::vector<float> x = random(xs), w = random(ws), b = random(d.k), dy = random(ys);
  const Pair X = upload(x), W = upload(w), B = upload(b), DY = upload(dy);
  const Pair AX = upload(abs_of(x)), AW = upload(abs_of(w)), AB = upload(abs_of(b)),
             ADY = upload(abs_of(dy));
  // Each backend's own workspace; the GPU's starts poisoned (im2col must write padding zeros).
  Tensor cpu_ws = cpu_->alloc({static_cast<int64_t>(cpu_->conv2d_workspace_floats(d))});
  Tensor gpu_ws = poisoned_on(*gpu_, static_cast<int64_t>(gpu_->conv2d_workspace_floats(d)));
  ASSERT_EQ(gpu_->conv2d_workspace_floats(d),
            static_cast<size_t>(int64_t{d.n} * d.h * d.w * d.ksize * d.ksize * d.c));

  Pair Y = poisoned(ys);
  cpu_->conv2d_forward(X.cpu.f32(), W.cpu.f32(), B.cpu.f32(), Y.cpu.f32(), cpu_ws.f32(), d);
  gpu_->conv2d_forward(X.gpu.f32(), W.gpu.f32(), B.gpu.f32(), Y.gpu.f32(), gpu_ws.f32(), d);
  Tensor YS = poisoned_on(*cpu_, ys);
  cpu_->conv2d_forward(AX.cpu.f32(), AW.cpu.f32(), AB.cpu.f32(), YS.f32(), cpu_ws.f32(), d);
  const int64_t k_fwd = int64_t{d.ksize} * d.ksize * d.c + 1;
  expect_close("conv2d_forward", shape, fetch_gpu(Y), fetch_cpu(Y), fetch(*cpu_, YS), tol(k_fwd));

  gpu_ws = poisoned_on(*gpu_, static_cast<int64_t>(gpu_->conv2d_workspace_floats(d)));
  Pair DX = poisoned(xs), DW = poisoned(ws), DB = poisoned(d.k);
  cpu_->conv2d_backward(X.cpu.f32(), W.cpu.f32(), DY.cpu.f32(), DX.cpu.f32(), DW.cpu.f32(),
                        DB.cpu.f32(), cpu_ws.f32(), d);
  gpu_->conv2d_backward(X.gpu.f32(), W.gpu.f32(), DY.gpu.f32(), DX.gpu.f32(), DW.gpu.f32(),
                        DB.gpu.f32(), gpu_ws.f32(), d);
  Tensor DXS = poisoned_on(*cpu_, xs), DWS = poisoned_on(*cpu_, ws), DBS = poisoned_on(*cpu_, d.k);
  cpu_->conv2d_backward(AX.cpu.f32(), AW.cpu.f32(), ADY.cpu.f32(), DXS.f32(), DWS.f32(), DBS.f32(),
                        cpu_ws.f32(), d);
  const int64_t pixels = int64_t{d.n} * d.h * d.w;
  const std::vector<float> dw_scale = fetch(*cpu_, DWS), db_scale = fetch(*cpu_, DBS);
  expect_close("conv2d_backward.dx", shape, fetch_gpu(DX), fetch_cpu(DX), fetch(*cpu_, DXS),
               tol(int64_t{d.ksize} * d.ksize * d.k));
  expect_close("conv2d_backward.dw", shape, fetch_gpu(DW), fetch_cpu(DW), dw_scale, tol(pixels));
  expect_close("conv2d_backward.db", shape, fetch_gpu(DB), fetch_cpu(DB), db_scale, tol(pixels));

  // without dx (the first conv layer)
  Pair DW2 = poisoned(ws), DB2 = poisoned(d.k);
  gpu_->conv2d_backward(X.gpu.f32(), W.gpu.f32(), DY.gpu.f32(), nullptr, DW2.gpu.f32(),
                        DB2.gpu.f32(), gpu_ws.f32(), d);
  expect_close("conv2d_backward_nodx.dw", shape, fetch_gpu(DW2), fetch_cpu(DW), dw_scale,
               tol(pixels));
  expect_close("conv2d_backward_nodx.db", shape, fetch_gpu(DB2), fetch_cpu(DB), db_scale,
               tol(pixels));
}

struct DenseCase {
  int n, in, out;
};
// Odd sizes, then the MLP (784->100->10 at batch 100) and CNN (3136->1024->10) layers.
const DenseCase kDenseCases[] = {{1, 1, 1},      {7, 33, 255},      {33, 1001, 7},
                                 {255, 7, 1001}, {1, 255, 33},      {100, 784, 100},
                                 {100, 100, 10}, {100, 3136, 1024}, {100, 1024, 10}};

Conv2dDims conv_dims(int n, int h, int w, int c, int k, int ksize) {
  Conv2dDims d;
  d.n = n;
  d.h = h;
  d.w = w;
  d.c = c;
  d.k = k;
  d.ksize = ksize;
  return d;
}
// Odd sizes (1x1 images, images smaller than the kernel, other odd kernel sizes), then the CNN's
// conv layers 28x28x1->32 and 14x14x32->64 at batch 100.
const Conv2dDims kConvCases[] = {
    conv_dims(1, 1, 1, 1, 1, 5),      conv_dims(2, 7, 5, 3, 4, 5),
    conv_dims(1, 33, 1, 2, 7, 5),     conv_dims(3, 9, 11, 5, 33, 3),
    conv_dims(2, 6, 7, 7, 1, 1),      conv_dims(1, 3, 4, 2, 3, 7),
    conv_dims(100, 28, 28, 1, 32, 5), conv_dims(100, 14, 14, 32, 64, 5)};

TEST_F(ParityTest, Dense) {
  for (const DenseCase& c : kDenseCases) check_dense(c.n, c.in, c.out);
}

TEST_F(ParityTest, Conv2d) {
  for (const Conv2dDims& d : kConvCases) check_conv(d);
}

TEST_F(ParityTf32Test, DenseAndConvWithTf32) {
  EXPECT_NE(gpu_->description().find("TF32 on"), std::string::npos) << gpu_->description();
  for (const DenseCase& c :
       {DenseCase{7, 33, 255}, DenseCase{100, 784, 100}, DenseCase{100, 3136, 1024}}) {
    check_dense(c.n, c.in, c.out);
  }
  for (const Conv2dDims& d : {conv_dims(2, 7, 5, 3, 4, 5), conv_dims(100, 28, 28, 1, 32, 5),
                              conv_dims(100, 14, 14, 32, 64, 5)}) {
    check_conv(d);
  }
}

TEST_F(ParityTest, Relu) {
  for (int64_t count : {int64_t{1}, int64_t{7}, int64_t{33}, int64_t{255}, int64_t{1001},
                        int64_t{100} * 100, int64_t{100} * 28 * 28 * 32, int64_t{1000003}}) {
    const std::string shape = "count:" + std::to_string(count);
    const std::vector<float> x = random(count), dy = random(count);
    const Pair X = upload(x), DY = upload(dy);
    Pair Y = poisoned(count);
    cpu_->relu_forward(X.cpu.f32(), Y.cpu.f32(), count);
    gpu_->relu_forward(X.gpu.f32(), Y.gpu.f32(), count);
    const std::vector<float> y_cpu = fetch_cpu(Y);
    expect_equal("relu_forward", shape, fetch_gpu(Y), y_cpu);

    Pair DX = poisoned(count);
    cpu_->relu_backward(Y.cpu.f32(), DY.cpu.f32(), DX.cpu.f32(), count);
    gpu_->relu_backward(Y.gpu.f32(), DY.gpu.f32(), DX.gpu.f32(), count);
    expect_equal("relu_backward", shape, fetch_gpu(DX), fetch_cpu(DX));

    // in place: y == x, then dx == dy
    Pair Z = upload(x);
    gpu_->relu_forward(Z.gpu.f32(), Z.gpu.f32(), count);
    expect_equal("relu_forward_inplace", shape, fetch_gpu(Z), y_cpu);
    Pair G = upload(dy);
    gpu_->relu_backward(Y.gpu.f32(), G.gpu.f32(), G.gpu.f32(), count);
    expect_equal("relu_backward_inplace", shape, fetch_gpu(G), fetch_cpu(DX));
  }
}

TEST_F(ParityTest, OptimizerUpdate) {
  // Three updates (t = 1, 2, 3) of every optimizer from non-zero slots; parameters and slots
  // compared element-wise (the same PSTRAIN_HD step functions run on both sides; FMA
  // contraction on the GPU may differ by an ulp or two per operation).
  const std::pair<OptimizerKind, const char*> kinds[] = {{OptimizerKind::kSgd, "sgd"},
                                                         {OptimizerKind::kMomentum, "momentum"},
                                                         {OptimizerKind::kAdam, "adam"},
                                                         {OptimizerKind::kAdagrad, "adagrad"}};
  for (const auto& [kind, kind_name] : kinds) {
    for (int64_t count : {int64_t{1}, int64_t{7}, int64_t{1001}, int64_t{79510}}) {
      const std::string shape = "count:" + std::to_string(count);
      OptimizerConfig config;
      config.kind = kind;
      config.learning_rate = 0.01f;
      const std::vector<float> p0 = random(count);
      const std::vector<float> s0 = random(count, 0.1f, 1.0f);  // positive: valid for all
      Pair P = upload(p0);
      Pair S0 = upload(s0);
      Pair S1 = upload(random(count, 0.1f, 1.0f));
      // Scale of the slot: what its terms can add up to (the slot may cancel towards 0).
      std::vector<float> slot_scale(s0);
      for (int64_t t = 1; t <= 3; ++t) {
        const std::vector<float> g = random(count);
        for (size_t i = 0; i < g.size(); ++i)
          slot_scale[i] += std::fabs(g[i]) * (1 + std::fabs(g[i]));
        const Pair G = upload(g);
        cpu_->optimizer_update(config, P.cpu.f32(), G.cpu.f32(), S0.cpu.f32(), S1.cpu.f32(), count,
                               t);
        gpu_->optimizer_update(config, P.gpu.f32(), G.gpu.f32(), S0.gpu.f32(), S1.gpu.f32(), count,
                               t);
      }
      const std::vector<float> ref = fetch_cpu(P);
      std::vector<float> scale(ref.size());
      for (size_t i = 0; i < ref.size(); ++i) scale[i] = std::fabs(ref[i]) + std::fabs(p0[i]);
      expect_close(std::string("optimizer_") + kind_name, shape, fetch_gpu(P), ref, scale,
                   16 * kEps);
      if (optimizer_slot_count(kind) > 0) {
        expect_close(std::string("optimizer_") + kind_name + "_slot0", shape, fetch_gpu(S0),
                     fetch_cpu(S0), slot_scale, 16 * kEps);
      }
    }
  }
}

struct PoolCase {
  int n, h, w, c;
};
// Odd sizes (no complete window, odd last row/column), then the CNN's 28x28x32 and 14x14x64.
const PoolCase kPoolCases[] = {{1, 1, 1, 1},   {1, 2, 2, 1}, {3, 7, 5, 33},     {2, 33, 1, 3},
                               {1, 255, 3, 1}, {2, 9, 8, 7}, {100, 28, 28, 32}, {100, 14, 14, 64}};

TEST_F(ParityTest, MaxPool) {
  for (bool ties : {false, true}) {
    for (const PoolCase& c : kPoolCases) {
      PoolDims d;
      d.n = c.n;
      d.h = c.h;
      d.w = c.w;
      d.c = c.c;
      const std::string shape = std::string(ties ? "ties," : "") + "n:" + std::to_string(d.n) +
                                ",h:" + std::to_string(d.h) + ",w:" + std::to_string(d.w) +
                                ",c:" + std::to_string(d.c);
      const int64_t xs = int64_t{d.n} * d.h * d.w * d.c;
      const int64_t ys = int64_t{d.n} * d.out_h() * d.out_w() * d.c;
      const Pair X = upload(ties ? tied(xs) : random(xs));
      Pair Y = poisoned(ys);
      Pair A = poisoned_i32(ys);
      cpu_->maxpool2x2_forward(X.cpu.f32(), Y.cpu.f32(), A.cpu.i32(), d);
      gpu_->maxpool2x2_forward(X.gpu.f32(), Y.gpu.f32(), A.gpu.i32(), d);
      expect_equal("maxpool2x2_forward", shape, fetch_gpu(Y), fetch_cpu(Y));
      const std::vector<int32_t> a_cpu = fetch<int32_t>(*cpu_, A.cpu);
      const std::vector<int32_t> a_gpu = fetch<int32_t>(*gpu_, A.gpu);
      int64_t argmax_mismatches = 0;
      for (size_t i = 0; i < a_cpu.size(); ++i) argmax_mismatches += a_cpu[i] != a_gpu[i];
      std::printf("PARITY op=maxpool2x2_forward.argmax shape=%s max_rel_err=%s tol=0\n",
                  shape.c_str(), argmax_mismatches == 0 ? "0" : "inf");
      EXPECT_EQ(argmax_mismatches, 0) << shape;

      const Pair DY = upload(random(ys));
      Pair DX = poisoned(xs);
      cpu_->maxpool2x2_backward(DY.cpu.f32(), A.cpu.i32(), DX.cpu.f32(), d);
      gpu_->maxpool2x2_backward(DY.gpu.f32(), A.gpu.i32(), DX.gpu.f32(), d);
      expect_equal("maxpool2x2_backward", shape, fetch_gpu(DX), fetch_cpu(DX));
    }
  }
}

struct SoftmaxCase {
  int n, k;
};
const SoftmaxCase kSoftmaxCases[] = {{1, 1},   {7, 10},   {100, 10},  {33, 1001},
                                     {255, 7}, {1, 1001}, {1001, 33}, {10000, 10}};

TEST_F(ParityTest, SoftmaxXent) {
  for (const SoftmaxCase& c : kSoftmaxCases) {
    const std::string shape = "n:" + std::to_string(c.n) + ",k:" + std::to_string(c.k);
    const int64_t size = int64_t{c.n} * c.k;
    const std::vector<float> logits = random(size, -4.0f, 4.0f);
    const std::vector<int32_t> labels = random_labels(c.n, c.k);
    const Pair L = upload(logits), Y = upload(labels);
    Pair D = poisoned(size), LOSS = poisoned(1);
    cpu_->softmax_xent(L.cpu.f32(), Y.cpu.i32(), D.cpu.f32(), LOSS.cpu.f32(), c.n, c.k);
    gpu_->softmax_xent(L.gpu.f32(), Y.gpu.i32(), D.gpu.f32(), LOSS.gpu.f32(), c.n, c.k);

    // Magnitude scales, in double on the host: dlogits_j ~ (p_j + onehot_j) / n, the loss
    // ~ mean of |log(sum)| + |x_label - max|.
    std::vector<float> d_scale(static_cast<size_t>(size));
    double loss_scale = 0;
    for (int i = 0; i < c.n; ++i) {
      const float* row = logits.data() + int64_t{i} * c.k;
      const double m = *std::max_element(row, row + c.k);
      double sum = 0;
      for (int j = 0; j < c.k; ++j) sum += std::exp(row[j] - m);
      const int label = labels[static_cast<size_t>(i)];
      for (int j = 0; j < c.k; ++j) {
        d_scale[static_cast<size_t>(int64_t{i} * c.k + j)] =
            static_cast<float>((std::exp(row[j] - m) / sum + (j == label ? 1.0 : 0.0)) / c.n);
      }
      loss_scale += (std::fabs(std::log(sum)) + std::fabs(row[label] - m)) / c.n;
    }
    expect_close("softmax_xent.dlogits", shape, fetch_gpu(D), fetch_cpu(D), d_scale,
                 softmax_tol(c.k));
    expect_close("softmax_xent.loss", shape, fetch_gpu(LOSS), fetch_cpu(LOSS),
                 {static_cast<float>(loss_scale)}, softmax_tol(std::max(c.n, c.k)));
  }
}

TEST_F(ParityTest, CountCorrect) {
  for (const SoftmaxCase& c : kSoftmaxCases) {
    for (bool ties : {false, true}) {
      const std::string shape = std::string(ties ? "ties," : "") + "n:" + std::to_string(c.n) +
                                ",k:" + std::to_string(c.k);
      const int64_t size = int64_t{c.n} * c.k;
      const std::vector<float> logits = ties ? tied(size) : random(size);
      std::vector<int32_t> labels = random_labels(c.n, c.k);
      int64_t want = 0;
      for (int i = 0; i < c.n; ++i) {
        const float* row = logits.data() + int64_t{i} * c.k;
        const int first = static_cast<int>(std::max_element(row, row + c.k) - row);
        if (i % 2 == 0) labels[static_cast<size_t>(i)] = first;  // half the rows correct
        want += labels[static_cast<size_t>(i)] == first;
      }
      const Pair L = upload(logits), Y = upload(labels);
      const int64_t got_cpu = cpu_->count_correct(L.cpu.f32(), Y.cpu.i32(), c.n, c.k);
      const int64_t got_gpu = gpu_->count_correct(L.gpu.f32(), Y.gpu.i32(), c.n, c.k);
      std::printf("PARITY op=count_correct shape=%s max_rel_err=%s tol=0\n", shape.c_str(),
                  got_gpu == got_cpu ? "0" : "inf");
      EXPECT_EQ(got_gpu, got_cpu) << shape;
      EXPECT_EQ(got_gpu, want) << shape;
    }
  }
}

TEST_F(ParityTest, BackendBasics) {
  EXPECT_EQ(gpu_->device(), Device::kCuda);
  const std::string desc = gpu_->description();
  EXPECT_EQ(desc.rfind("cuda:0 ", 0), 0u) << desc;
  EXPECT_NE(desc.find("TF32 off"), std::string::npos) << desc;

  // Pinned host memory round trip, exact.
  const std::vector<float> v = random(1001);
  Tensor host = gpu_->alloc_host({1001});
  EXPECT_EQ(host.device(), Device::kCpu);
  std::memcpy(host.raw(), v.data(), host.bytes());
  Tensor dev = gpu_->alloc({1001});
  EXPECT_EQ(dev.device(), Device::kCuda);
  gpu_->copy_to_device(dev.raw(), host.raw(), host.bytes());
  Tensor back = gpu_->alloc_host({1001});
  std::memset(back.raw(), 0, back.bytes());
  gpu_->copy_to_host(back.raw(), dev.raw(), dev.bytes());
  gpu_->synchronize();
  EXPECT_EQ(std::memcmp(back.raw(), v.data(), back.bytes()), 0);

  // Empty tensors and zero sizes are fine.
  Tensor empty = gpu_->alloc({0});
  EXPECT_EQ(empty.numel(), 0);
  gpu_->copy_to_device(empty.raw(), v.data(), 0);
  gpu_->relu_forward(empty.f32(), empty.f32(), 0);
  Tensor labels = gpu_->alloc({0}, DType::kInt32);
  EXPECT_EQ(gpu_->count_correct(empty.f32(), labels.i32(), 0, 10), 0);
  gpu_->synchronize();

  // Tensors outlive their backend.
  gpu_.reset();
  dev = Tensor();
  SUCCEED();
}

// --- no GPU needed -------------------------------------------------------------------------

TEST(CudaBackend, FactoryReportsUnusableDevicesAsStatus) {
  const cuda::GpuQuery q = cuda::query_gpus();
  for (int device : {-1, static_cast<int>(q.gpus.size()), 1000}) {
    Result<std::unique_ptr<Ops>> r = make_cuda_ops(device, false);
    EXPECT_FALSE(r.ok()) << "device " << device;
    EXPECT_FALSE(r.status().message().empty());
  }
  if (q.gpus.empty()) {
    Result<std::unique_ptr<Ops>> r = make_cuda_ops(0, false);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(r.status().message().find(q.error), std::string::npos) << r.status().message();
  }
}

TEST(CudaBackend, CheckMacrosThrowCudaErrorNamingTheCall) {
  try {
    PSTRAIN_CUDA_CHECK(cudaErrorInvalidValue);
    ADD_FAILURE() << "no throw";
  } catch (const CudaError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("parity_test.cc:"), std::string::npos) << what;
    EXPECT_NE(what.find("cudaErrorInvalidValue"), std::string::npos) << what;
  }
  try {
    PSTRAIN_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
    ADD_FAILURE() << "no throw";
  } catch (const CudaError& e) {
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(PSTRAIN_CUDA_CHECK(cudaSuccess));
  EXPECT_NO_THROW(PSTRAIN_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
}

}  // namespace
}  // namespace pstrain
