// The train step: forward, backward and the optimizer update of the MLP and the CNN at batch
// 100 and 512, on the CPU backend and (when built with CUDA and a GPU is present) on the GPU.
// The batch stays in the backend's memory, as a framework benchmark keeps it on the device;
// each benchmark iteration runs 10 steps and then waits for the backend, so the time is the
// throughput of back-to-back steps. bench/torch_step.py measures PyTorch eager the same way.
//
//   BM_Step/<model>/batch:<n>/gpu:<0|1>   time per 10 steps; counter step_ms = per step
// Run: build/bench/pstrain_bench_step --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <random>

#include "kernels/model.h"
#include "worker/backend.h"

namespace pstrain {
namespace {

constexpr int kStepsPerIteration = 10;

void BM_Step(benchmark::State& state, const std::string& model_name) {
  const int batch = static_cast<int>(state.range(0));
  const bool gpu = state.range(1) != 0;
  auto backend = select_backend(gpu ? 1 : 0, 0, /*tf32=*/false);
  if (!backend.ok()) {
    state.SkipWithError(backend.status().to_string().c_str());
    return;
  }
  if (gpu && backend->ops->device() != Device::kCuda) {
    state.SkipWithError(("no GPU: " + backend->warning).c_str());
    return;
  }
  Ops& ops = *backend->ops;
  ModelOptions mo;
  mo.name = model_name;
  auto created = Model::create(mo, ops);
  if (!created.ok()) {
    state.SkipWithError(created.status().to_string().c_str());
    return;
  }
  Model& m = **created;
  const std::vector<float> init = m.initial_parameters(1);
  ops.copy_to_device(m.parameters().raw(), init.data(), init.size() * sizeof(float));
  std::vector<Tensor> slots = {ops.alloc({m.num_parameters()}), ops.alloc({m.num_parameters()})};
  const std::vector<float> zeros(static_cast<size_t>(m.num_parameters()), 0.f);
  for (Tensor& t : slots) ops.copy_to_device(t.raw(), zeros.data(), zeros.size() * sizeof(float));
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> pixel(0.f, 1.f);
  std::uniform_int_distribution<int32_t> label(0, 9);
  std::vector<float> images(static_cast<size_t>(batch) * 784);
  for (float& v : images) v = pixel(gen);
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int32_t& v : labels) v = label(gen);
  m.upload_batch(images, labels, batch);
  OptimizerConfig adam;
  int64_t t = 0;
  auto step = [&] {
    m.forward_backward(batch);
    ops.optimizer_update(adam, m.parameters().f32(), m.gradients().f32(), slots[0].f32(),
                         slots[1].f32(), m.num_parameters(), ++t);
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: allocations, cuBLAS handles, caches
  ops.synchronize();
  for (auto _ : state) {
    for (int i = 0; i < kStepsPerIteration; ++i) step();
    ops.synchronize();
  }
  state.counters["step_ms"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kStepsPerIteration / 1000.0,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["examples_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kStepsPerIteration * batch,
                         benchmark::Counter::kIsRate);
  state.SetLabel(ops.description());
}

void register_all() {
  for (const char* model : {"mlp", "cnn"}) {
    for (int gpu : {0, 1}) {
      if (gpu == 1 && !cuda_backend_built()) continue;
      benchmark::RegisterBenchmark((std::string("BM_Step/") + model).c_str(), BM_Step,
                                   std::string(model))
          ->ArgNames({"batch", "gpu"})
          ->Args({100, gpu})
          ->Args({512, gpu})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace
}  // namespace pstrain

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  pstrain::register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
