// Google Benchmark of the CPU backend's kernels at the shapes the models run (batch 100), plus
// a large square GEMM through the kernels' own path (dense_forward) as the machine's ceiling,
// and Eigen's OpenMP-threaded GEMM beside it for comparison.
//
// Counters: "GFLOP/s" (GEMM-type ops count 2 flops per multiply-add; element-wise ops count a
// nominal 1 flop per element they compute, for comparison only) and bytes_per_second (the
// bytes each op must read and write at least). Times are wall-clock (the kernels run on the
// thread pool). --threads=N sets the pool size (default: all cores).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/ops.h"
#include "kernels/optim.h"

namespace pstrain {

constexpr int kBatch = 100;

int g_threads = 0;  // --threads=N (0: all cores)

Ops& ops() {
  static std::unique_ptr<Ops> o = make_cpu_ops(g_threads);
  return *o;
}

Tensor random_tensor(Shape shape, uint32_t seed) {
  Tensor t = ops().alloc(std::move(shape));
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(gen);
  return t;
}

Tensor random_labels(int n, int k) {
  Tensor t = ops().alloc({n}, DType::kInt32);
  for (int i = 0; i < n; ++i) t.i32()[i] = (i * 7) % k;
  return t;
}

void set_counters(benchmark::State& state, double flops, double bytes) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

// --- dense: args (in, out) -----------------------------------------------------------------
void BM_DenseForward(benchmark::State& state) {
  const int in = static_cast<int>(state.range(0)), out = static_cast<int>(state.range(1));
  Tensor x = random_tensor({kBatch, in}, 1), w = random_tensor({in, out}, 2);
  Tensor b = random_tensor({out}, 3), y = ops().alloc({kBatch, out});
  for (auto _ : state) {
    ops().dense_forward(x.f32(), w.f32(), b.f32(), y.f32(), kBatch, in, out);
    benchmark::DoNotOptimize(y.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * kBatch * in * out, 4.0 * (x.numel() + w.numel() + y.numel()));
}

// arg 2: whether dx is computed (the first layer of a model skips it).
void BM_DenseBackward(benchmark::State& state) {
  const int in = static_cast<int>(state.range(0)), out = static_cast<int>(state.range(1));
  const bool with_dx = state.range(2) != 0;
  Tensor x = random_tensor({kBatch, in}, 1), w = random_tensor({in, out}, 2);
  Tensor dy = random_tensor({kBatch, out}, 3), dx = ops().alloc({kBatch, in});
  Tensor dw = ops().alloc({in, out}), db = ops().alloc({out});
  for (auto _ : state) {
    ops().dense_backward(x.f32(), w.f32(), dy.f32(), with_dx ? dx.f32() : nullptr, dw.f32(),
                         db.f32(), kBatch, in, out);
    benchmark::DoNotOptimize(dw.f32());
    benchmark::ClobberMemory();
  }
  const double gemm = 2.0 * kBatch * in * out;
  set_counters(state, (with_dx ? 2 : 1) * gemm + 1.0 * kBatch * out,
               4.0 * (x.numel() + 2 * w.numel() + dy.numel() + (with_dx ? dx.numel() : 0)));
}

// --- relu: arg count -----------------------------------------------------------------------
void BM_ReluForward(benchmark::State& state) {
  const int64_t count = state.range(0);
  Tensor x = random_tensor({count}, 4), y = ops().alloc({count});
  for (auto _ : state) {
    ops().relu_forward(x.f32(), y.f32(), count);
    benchmark::DoNotOptimize(y.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, static_cast<double>(count), 8.0 * static_cast<double>(count));
}

void BM_ReluBackward(benchmark::State& state) {
  const int64_t count = state.range(0);
  Tensor y = random_tensor({count}, 4), dy = random_tensor({count}, 5);
  Tensor dx = ops().alloc({count});
  for (auto _ : state) {
    ops().relu_backward(y.f32(), dy.f32(), dx.f32(), count);
    benchmark::DoNotOptimize(dx.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, static_cast<double>(count), 12.0 * static_cast<double>(count));
}

// --- conv2d 5x5: args (h, w, c, k, with_dx) ------------------------------------------------
Conv2dDims conv_dims(const benchmark::State& state) {
  Conv2dDims d;
  d.n = kBatch;
  d.h = static_cast<int>(state.range(0));
  d.w = static_cast<int>(state.range(1));
  d.c = static_cast<int>(state.range(2));
  d.k = static_cast<int>(state.range(3));
  d.ksize = 5;
  return d;
}

double conv_gemm_flops(const Conv2dDims& d) {
  return 2.0 * d.n * d.h * d.w * d.k * d.ksize * d.ksize * d.c;
}

void BM_Conv2dForward(benchmark::State& state) {
  const Conv2dDims d = conv_dims(state);
  Tensor x = random_tensor({d.n, d.h, d.w, d.c}, 6);
  Tensor w = random_tensor({d.ksize, d.ksize, d.c, d.k}, 7), b = random_tensor({d.k}, 8);
  Tensor y = ops().alloc({d.n, d.h, d.w, d.k});
  Tensor work = ops().alloc({static_cast<int64_t>(ops().conv2d_workspace_floats(d))});
  for (auto _ : state) {
    ops().conv2d_forward(x.f32(), w.f32(), b.f32(), y.f32(), work.f32(), d);
    benchmark::DoNotOptimize(y.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, conv_gemm_flops(d), 4.0 * (x.numel() + w.numel() + y.numel()));
  state.counters["workspace_MiB"] = 4.0 * static_cast<double>(work.numel()) / (1 << 20);
}

void BM_Conv2dBackward(benchmark::State& state) {
  const Conv2dDims d = conv_dims(state);
  const bool with_dx = state.range(4) != 0;
  Tensor x = random_tensor({d.n, d.h, d.w, d.c}, 6);
  Tensor w = random_tensor({d.ksize, d.ksize, d.c, d.k}, 7);
  Tensor dy = random_tensor({d.n, d.h, d.w, d.k}, 8), dx = ops().alloc({d.n, d.h, d.w, d.c});
  Tensor dw = ops().alloc({d.ksize, d.ksize, d.c, d.k}), db = ops().alloc({d.k});
  Tensor work = ops().alloc({static_cast<int64_t>(ops().conv2d_workspace_floats(d))});
  for (auto _ : state) {
    ops().conv2d_backward(x.f32(), w.f32(), dy.f32(), with_dx ? dx.f32() : nullptr, dw.f32(),
                          db.f32(), work.f32(), d);
    benchmark::DoNotOptimize(dw.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, (with_dx ? 2 : 1) * conv_gemm_flops(d),
               4.0 * (x.numel() + 2 * w.numel() + dy.numel() + (with_dx ? dx.numel() : 0)));
}

// --- maxpool 2x2: args (h, w, c) -----------------------------------------------------------
PoolDims pool_dims(const benchmark::State& state) {
  PoolDims d;
  d.n = kBatch;
  d.h = static_cast<int>(state.range(0));
  d.w = static_cast<int>(state.range(1));
  d.c = static_cast<int>(state.range(2));
  return d;
}

void BM_MaxpoolForward(benchmark::State& state) {
  const PoolDims d = pool_dims(state);
  Tensor x = random_tensor({d.n, d.h, d.w, d.c}, 9);
  Tensor y = ops().alloc({d.n, d.out_h(), d.out_w(), d.c});
  Tensor arg = ops().alloc({d.n, d.out_h(), d.out_w(), d.c}, DType::kInt32);
  for (auto _ : state) {
    ops().maxpool2x2_forward(x.f32(), y.f32(), arg.i32(), d);
    benchmark::DoNotOptimize(y.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, 3.0 * static_cast<double>(y.numel()), 4.0 * (x.numel() + 2 * y.numel()));
}

void BM_MaxpoolBackward(benchmark::State& state) {
  const PoolDims d = pool_dims(state);
  Tensor x = random_tensor({d.n, d.h, d.w, d.c}, 9);
  Tensor y = ops().alloc({d.n, d.out_h(), d.out_w(), d.c});
  Tensor arg = ops().alloc({d.n, d.out_h(), d.out_w(), d.c}, DType::kInt32);
  ops().maxpool2x2_forward(x.f32(), y.f32(), arg.i32(), d);
  Tensor dy = random_tensor({d.n, d.out_h(), d.out_w(), d.c}, 10);
  Tensor dx = ops().alloc({d.n, d.h, d.w, d.c});
  for (auto _ : state) {
    ops().maxpool2x2_backward(dy.f32(), arg.i32(), dx.f32(), d);
    benchmark::DoNotOptimize(dx.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, static_cast<double>(dy.numel()), 4.0 * (dx.numel() + 2 * dy.numel()));
}

// --- softmax cross-entropy: arg classes -----------------------------------------------------
void BM_SoftmaxXent(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  Tensor logits = random_tensor({kBatch, k}, 11), dlogits = ops().alloc({kBatch, k});
  Tensor loss = ops().alloc({1});
  Tensor labels = random_labels(kBatch, k);
  for (auto _ : state) {
    ops().softmax_xent(logits.f32(), labels.i32(), dlogits.f32(), loss.f32(), kBatch, k);
    benchmark::DoNotOptimize(loss.f32());
    benchmark::ClobberMemory();
  }
  // max, subtract+exp, sum, scale: a nominal 4 flops per logit.
  set_counters(state, 4.0 * kBatch * k, 4.0 * (2 * logits.numel() + kBatch));
}

// --- the ceiling: a large square GEMM through the kernels' own path (dense_forward: Eigen
// single-threaded per chunk on the pool), and for comparison Eigen's OpenMP-threaded GEMM ----
void BM_Gemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Tensor a = random_tensor({n, n}, 12), b = random_tensor({n, n}, 13), c = ops().alloc({n, n});
  Tensor bias = random_tensor({n}, 14);
  for (auto _ : state) {
    ops().dense_forward(a.f32(), b.f32(), bias.f32(), c.f32(), n, n, n);
    benchmark::DoNotOptimize(c.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * n * n * n, 4.0 * 3 * n * n);
}

void BM_GemmEigenThreaded(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Tensor a = random_tensor({n, n}, 12), b = random_tensor({n, n}, 13), c = ops().alloc({n, n});
  const cpu::ConstMatMap<float> am(a.f32(), n, n), bm(b.f32(), n, n);
  cpu::MatMap<float> cm(c.f32(), n, n);
  Eigen::setNbThreads(cpu::num_threads());
  for (auto _ : state) {
    cm.noalias() = am * bm;
    benchmark::DoNotOptimize(c.f32());
    benchmark::ClobberMemory();
  }
  Eigen::setNbThreads(1);
  set_counters(state, 2.0 * n * n * n, 4.0 * 3 * n * n);
}

// MLP (784 -> 100 -> 10) and CNN (conv 5x5 x32, pool, conv 5x5 x64, pool, 3136 -> 1024 -> 10).
BENCHMARK(BM_DenseForward)
    ->Args({784, 100})
    ->Args({100, 10})
    ->Args({3136, 1024})
    ->Args({1024, 10})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DenseBackward)
    ->Args({784, 100, 0})
    ->Args({100, 10, 1})
    ->Args({3136, 1024, 1})
    ->Args({1024, 10, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReluForward)
    ->Arg(kBatch * 100)
    ->Arg(kBatch * 28 * 28 * 32)
    ->Arg(kBatch * 1024)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReluBackward)
    ->Arg(kBatch * 100)
    ->Arg(kBatch * 28 * 28 * 32)
    ->Arg(kBatch * 1024)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Conv2dForward)
    ->Args({28, 28, 1, 32})
    ->Args({14, 14, 32, 64})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Conv2dBackward)
    ->Args({28, 28, 1, 32, 0})
    ->Args({14, 14, 32, 64, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MaxpoolForward)
    ->Args({28, 28, 32})
    ->Args({14, 14, 64})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MaxpoolBackward)
    ->Args({28, 28, 32})
    ->Args({14, 14, 64})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SoftmaxXent)->Arg(10)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Gemm)->Arg(1024)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmEigenThreaded)->Arg(1024)->UseRealTime()->Unit(benchmark::kMillisecond);

// --- optimizer update (kernels/optim.h apply_update, what a PS runs per gradient and a local
// `pstrain train` per step): arg 0 = the kind (0 SGD, 1 momentum, 2 Adam, 3 Adagrad), arg 1 =
// elements (79,510: the MLP's parameters), arg 2 = percent of the elements whose gradient is
// 1e-20, as where a weight's input is (nearly) always zero: Adam's second moment, its square
// times 0.001, is a subnormal float, which the updates flush to zero
// (kernels/cpu/flush_denormals.h; Adagrad's accumulator starts at 0.1 and stays normal). One
// thread, as on a PS. bytes_per_second counts the parameters, gradient and slots read and
// written.
void BM_OptimizerUpdate(benchmark::State& state) {
  const auto kind = static_cast<OptimizerKind>(state.range(0));
  const auto n = static_cast<size_t>(state.range(1));
  const auto tiny_percent = static_cast<size_t>(state.range(2));
  OptimizerConfig config;
  config.kind = kind;
  config.learning_rate = 1e-3f;
  std::vector<float> p(n, 0.5f), g(n), s0(n, optimizer_slot_initial_value(config)), s1(n, 0.f);
  for (size_t i = 0; i < n; ++i) {
    g[i] = i % 100 < tiny_percent ? 1e-20f : static_cast<float>(i % 97) * 1e-3f - 0.04f;
  }
  int64_t t = 1;
  for (auto _ : state) {
    apply_update(config, p, g, s0, s1, t++);
    benchmark::DoNotOptimize(p.data());
    benchmark::ClobberMemory();
  }
  const int slots = kind == OptimizerKind::kAdam ? 2 : kind == OptimizerKind::kSgd ? 0 : 1;
  set_counters(state, static_cast<double>(n),
               static_cast<double>(n * sizeof(float) * (3 + 2 * static_cast<size_t>(slots))));
}
BENCHMARK(BM_OptimizerUpdate)
    ->ArgNames({"kind", "n", "tiny_pct"})
    ->ArgsProduct({{0, 1, 2, 3}, {79510}, {0, 25}})
    ->Unit(benchmark::kMicrosecond);

// --- a PS's SGD update of one chunk with its reply written as it goes (kernels/optim.h
// apply_update_parallel with `out`): arg 0 = MB of parameters, arg 1 = 0 for one thread
// (apply_update, then a memcpy of the result: what a PS did before), 1 for
// apply_update_parallel (pieces on the update threads, non-temporal stores from 8 MB).
// bytes_per_second counts the parameters and gradient read, the parameters and reply written.
void BM_PsUpdateAndReply(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0)) * (size_t{1} << 20) / sizeof(float);
  const bool parallel = state.range(1) != 0;
  OptimizerConfig config;
  config.kind = OptimizerKind::kSgd;
  config.learning_rate = 1e-3f;
  std::vector<float> p(n, 0.5f), g(n), reply(n);
  for (size_t i = 0; i < n; ++i) g[i] = static_cast<float>(i % 97) * 1e-3f - 0.04f;
  for (auto _ : state) {
    if (parallel) {
      apply_update_parallel(config, p, g, {}, {}, 1, reinterpret_cast<std::byte*>(reply.data()),
                            n * sizeof(float) >= kStreamingCopyMinBytes);
    } else {
      apply_update(config, p, g, {}, {}, 1);
      std::memcpy(reply.data(), p.data(), n * sizeof(float));
    }
    benchmark::DoNotOptimize(reply.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, static_cast<double>(n), static_cast<double>(n * sizeof(float) * 4));
}
BENCHMARK(BM_PsUpdateAndReply)
    ->ArgNames({"MB", "parallel"})
    ->ArgsProduct({{4, 40}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace pstrain

// Google Benchmark's main, plus --threads=N (default: all cores) for the kernels' pool.
int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg.starts_with("--threads=")) {
      pstrain::g_threads = std::atoi(argv[i] + 10);
    } else {
      args.push_back(argv[i]);
    }
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  benchmark::AddCustomContext("pstrain_kernels", pstrain::ops().description());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
