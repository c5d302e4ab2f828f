// Push + pull through a real parameter server: one worker (PsClient) and one PS
// (ParameterServer on its own thread) over tcp://127.0.0.1, for 4 MB and 40 MB of parameters.
//
//   BM_PushPull/MB:N   one iteration = push N MB of gradients (zero copy) + pull N MB of
//                      parameters back; bytes/s counts both directions (2 N MB).
//   BM_Memcpy/MB:N     memcpy of N MB in the same binary, the memory-bandwidth yardstick.
//
// The PS applies plain SGD to every gradient (async mode), so each iteration includes the
// optimizer pass over N MB as a real step would.
// Run: build/bench/pstrain_bench_ps [--benchmark_filter=...] [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include "bench/memcpy_bench.h"

#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "ps/client.h"
#include "ps/placement.h"
#include "ps/server.h"

namespace pstrain {
namespace {

constexpr int64_t kMB = 1000 * 1000;

void BM_PushPull(benchmark::State& state) {
  const int64_t bytes = state.range(0) * kMB;
  const int64_t count = bytes / 4;
  zmq::context_t ctx(2);
  ServerOptions so;
  so.host = "127.0.0.1";
  so.port = 0;
  so.job_id = 42;
  so.num_workers = 1;
  auto server = ParameterServer::create(ctx, so);
  if (!server.ok()) {
    state.SkipWithError(server.status().to_string().c_str());
    return;
  }
  std::thread serving([&] { (void)(*server)->serve(); });

  std::vector<VariableSpec> vars = {{"w", {count}, 0, {}}};
  const Placement placement = place_variables(vars, 1);
  ClientOptions co;
  co.worker = 0;
  co.job_id = 42;
  auto client = PsClient::connect(ctx, {HostPort{"127.0.0.1", (*server)->port()}}, placement, co);
  if (!client.ok()) {
    state.SkipWithError(client.status().to_string().c_str());
    (*server)->request_stop();
    serving.join();
    return;
  }
  std::vector<float> params(static_cast<size_t>(count));
  std::iota(params.begin(), params.end(), 0.f);
  std::vector<float> grads(static_cast<size_t>(count), 1e-6f);
  JobTrainingConfig config;
  config.model = "bench";
  config.optimizer.kind = OptimizerKind::kSgd;
  config.optimizer.learning_rate = 1e-3f;
  config.train_steps = int64_t{1} << 40;
  config.num_workers = 1;
  Status st = (*client)->hello(0).status();
  if (st.ok()) st = (*client)->init(config, params);
  if (!st.ok()) {
    state.SkipWithError(st.to_string().c_str());
    (*server)->request_stop();
    serving.join();
    return;
  }
  PsSteps steps(1, 0);
  for (auto _ : state) {
    auto pushed = (*client)->push(grads, steps, nullptr);
    auto pulled = (*client)->pull(params, 0);
    if (!pushed.ok() || !pulled.ok()) {
      state.SkipWithError("push or pull failed");
      break;
    }
    steps = *pulled;
  }
  state.SetBytesProcessed(state.iterations() * 2 * bytes);
  state.counters["chunks"] = static_cast<double>(placement.chunks.size());
  (void)(*client)->done();
  serving.join();
}
BENCHMARK(BM_PushPull)
    ->ArgName("MB")
    ->Arg(4)
    ->Arg(40)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pstrain

BENCHMARK_MAIN();
