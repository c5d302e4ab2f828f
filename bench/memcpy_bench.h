// BM_Memcpy/MB:N: a memcpy of N MB (4 and 40), the memory-bandwidth yardstick that the
// transport and parameter-server benchmarks report beside their own figures in the same run.
// Include from exactly one .cc of a benchmark binary.
#pragma once

#include <benchmark/benchmark.h>

#include <cstring>
#include <numeric>
#include <vector>

namespace pstrain::bench {

inline void BM_Memcpy(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0)) * 1000 * 1000;
  std::vector<float> src(bytes / sizeof(float));
  std::iota(src.begin(), src.end(), 0.0f);
  std::vector<float> dst(src.size(), -1.0f);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_Memcpy)->ArgName("MB")->Arg(4)->Arg(40)->Unit(benchmark::kMillisecond);

}  // namespace pstrain::bench
