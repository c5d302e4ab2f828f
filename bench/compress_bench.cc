// --compress's conversions (runtime/wire/half.h): float32 -> fp16/bf16 on a worker's push and
// back on the PS, in bytes of float32 per second, over the MLP's gradient (79,510 values) and
// 4 M values (16 MB, beyond the caches). Compare with memcpy of the same float32 bytes.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "runtime/wire/half.h"

namespace pstrain {
namespace {

std::vector<float> gradient(size_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.f, 0.01f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void set_rate(benchmark::State& state, size_t n) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(n * sizeof(float)));
}

void BM_Narrow(benchmark::State& state, FloatFormat format) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<float> src = gradient(n);
  std::vector<uint16_t> dst(n);
  for (auto _ : state) {
    narrow_floats(format, src, dst);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_rate(state, n);
}

void BM_Widen(benchmark::State& state, FloatFormat format) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<float> g = gradient(n);
  std::vector<uint16_t> words(n);
  narrow_floats(format, g, words);
  // As on the PS: the words sit in a network frame, read from an odd address.
  std::vector<std::byte> frame(2 * n + 1);
  std::memcpy(frame.data() + 1, words.data(), 2 * n);
  std::vector<float> dst(n);
  for (auto _ : state) {
    widen_halves(format, frame.data() + 1, dst);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_rate(state, n);
}

void BM_MemcpyFloat32(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<float> src = gradient(n);
  std::vector<float> dst(n);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), n * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_rate(state, n);
}

constexpr int64_t kMlp = 79510;
constexpr int64_t kLarge = int64_t{1} << 22;
BENCHMARK_CAPTURE(BM_Narrow, fp16, FloatFormat::kFloat16)->Arg(kMlp)->Arg(kLarge);
BENCHMARK_CAPTURE(BM_Narrow, bf16, FloatFormat::kBFloat16)->Arg(kMlp)->Arg(kLarge);
BENCHMARK_CAPTURE(BM_Widen, fp16, FloatFormat::kFloat16)->Arg(kMlp)->Arg(kLarge);
BENCHMARK_CAPTURE(BM_Widen, bf16, FloatFormat::kBFloat16)->Arg(kMlp)->Arg(kLarge);
BENCHMARK(BM_MemcpyFloat32)->Arg(kMlp)->Arg(kLarge);

}  // namespace
}  // namespace pstrain

BENCHMARK_MAIN();
