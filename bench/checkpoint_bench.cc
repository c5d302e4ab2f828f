// What a checkpoint costs a parameter server (issue "Checkpoints and recovery"): the time to
// copy its shard out of the store (shard_from_store) and write it (safetensors, CRC-32, fsync,
// rename: checkpoint::write_shard), for the MLP and the CNN with Adam's two slots, one PS.
//
//   BM_WriteShard/model:M   M = 0 (MLP, 318 KB of parameters) or 1 (CNN, 13 MB); counters:
//                           file_MB (the shard's size), bytes_per_second (of the file).
//
// The job-level slowdown (a checkpoint every 100 steps against none) is bench/checkpoint_cost.sh.
// Run: build/bench/pstrain_bench_checkpoint [--benchmark_repetitions=3]
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kernels/model.h"
#include "ps/checkpoint_io.h"
#include "ps/placement.h"

namespace pstrain {
namespace {

void BM_WriteShard(benchmark::State& state) {
  const std::string model = state.range(0) == 0 ? "mlp" : "cnn";
  auto vars = Model::describe(ModelOptions{model});
  if (!vars.ok()) {
    state.SkipWithError(vars.status().to_string().c_str());
    return;
  }
  const Placement placement = place_variables(*vars, 1);
  JobTrainingConfig config;
  config.model = model;
  config.optimizer.kind = OptimizerKind::kAdam;
  config.train_steps = 1000;
  config.layout_hash = model_layout_hash(placement, model);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<ChunkInit> chunks;
  for (const Chunk& c : placement.chunks) {
    ChunkInit ci{c.key, std::vector<float>(static_cast<size_t>(c.count))};
    for (float& x : ci.values) x = normal(rng);
    chunks.push_back(std::move(ci));
  }
  ShardStore store;
  Status st = store.initialize(config.optimizer, {false, 1, config.train_steps}, std::move(chunks));
  if (!st.ok()) {
    state.SkipWithError(st.to_string().c_str());
    return;
  }
  std::string dir = (std::filesystem::temp_directory_path() / "pstrain-ckpt-bench-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("cannot make a temporary directory");
    return;
  }
  uint64_t bytes = 0;
  for (auto _ : state) {
    auto written = checkpoint::write_shard(dir, shard_from_store(store, config, 0, 1));
    if (!written.ok()) {
      state.SkipWithError(written.status().to_string().c_str());
      break;
    }
    bytes = written->bytes;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.counters["file_MB"] = static_cast<double>(bytes) / 1e6;
}
BENCHMARK(BM_WriteShard)
    ->ArgName("model")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pstrain

BENCHMARK_MAIN();
