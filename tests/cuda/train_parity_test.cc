// A few steps of MLP and CNN training on the GPU against the CPU reference: same initial
// parameters, same batches, same optimizer; the losses must agree step by step.
//
// Tolerance: relative 1e-3 per step. Float32 GEMMs summed in different orders differ by about
// 1e-6 relative per step; the differences compound through the updates of five Adam steps, and
// 1e-3 leaves room for that while any wiring error (a wrong gradient, a stale buffer) moves the
// loss by far more after the first update.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_query.h"
#include "kernels/model.h"

namespace pstrain {
namespace {

std::vector<float> run(Ops& ops, const ModelOptions& mo, const std::vector<float>& images,
                       const std::vector<int32_t>& labels, int batch, int steps) {
  auto created = Model::create(mo, ops);
  EXPECT_TRUE(created.ok());
  Model& m = **created;
  const std::vector<float> init = m.initial_parameters(3);
  ops.copy_to_device(m.parameters().raw(), init.data(), init.size() * sizeof(float));
  OptimizerConfig adam;  // Adam, lr 0.01: mnist_replica's
  std::vector<Tensor> slots = {ops.alloc({m.num_parameters()}), ops.alloc({m.num_parameters()})};
  const std::vector<float> zeros(static_cast<size_t>(m.num_parameters()), 0.f);
  for (Tensor& t : slots) ops.copy_to_device(t.raw(), zeros.data(), zeros.size() * 4);
  const int64_t features = static_cast<int64_t>(mo.image_rows) * mo.image_cols;
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    const size_t off = static_cast<size_t>(step) * static_cast<size_t>(batch);
    m.upload_batch(std::span<const float>(images).subspan(off * static_cast<size_t>(features),
                                                          static_cast<size_t>(batch * features)),
                   std::span<const int32_t>(labels).subspan(off, static_cast<size_t>(batch)),
                   batch);
    m.forward_backward(batch);
    ops.optimizer_update(adam, m.parameters().f32(), m.gradients().f32(), slots[0].f32(),
                         slots[1].f32(), m.num_parameters(), step + 1);
    losses.push_back(m.read_loss());
  }
  return losses;
}

void check(const std::string& model) {
  const cuda::GpuQuery q = cuda::query_gpus();
  if (q.gpus.empty()) GTEST_SKIP() << "no usable CUDA GPU: " << q.error;
  auto gpu = make_cuda_ops(0, false);
  ASSERT_TRUE(gpu.ok()) << gpu.status().to_string();
  auto cpu = make_cpu_ops(0);
  ModelOptions mo;
  mo.name = model;
  const int batch = 64, steps = 5;
  std::mt19937 gen(17);
  std::uniform_real_distribution<float> pixel(0.f, 1.f);
  std::uniform_int_distribution<int32_t> label(0, 9);
  std::vector<float> images(static_cast<size_t>(batch * steps * 784));
  for (float& v : images) v = pixel(gen);
  std::vector<int32_t> labels(static_cast<size_t>(batch * steps));
  for (int32_t& v : labels) v = label(gen);
  const auto on_cpu = run(*cpu, mo, images, labels, batch, steps);
  const auto on_gpu = run(**gpu, mo, images, labels, batch, steps);
  ASSERT_EQ(on_cpu.size(), on_gpu.size());
  for (size_t i = 0; i < on_cpu.size(); ++i) {
    std::printf("TRAIN_PARITY model=%s step=%zu cpu_loss=%.6f gpu_loss=%.6f rel=%.2e\n",
                model.c_str(), i + 1, on_cpu[i], on_gpu[i],
                std::fabs(on_cpu[i] - on_gpu[i]) / std::fabs(on_cpu[i]));
    EXPECT_NEAR(on_gpu[i], on_cpu[i], 1e-3 * std::fabs(on_cpu[i])) << model << " step " << i + 1;
  }
  // The losses moved: the steps trained something (a frozen model would pass trivially).
  EXPECT_NE(on_cpu.front(), on_cpu.back());
}

TEST(GpuTraining, MlpLossesMatchCpu) { check("mlp"); }
TEST(GpuTraining, CnnLossesMatchCpu) { check("cnn"); }

}  // namespace
}  // namespace pstrain
