// PsClient with ClientOptions::compression against a real PS task on 127.0.0.1: the push
// travels as 16-bit frames (the byte counter shows it) and the PS applies exactly the widened
// values, push after push (the client reuses its 16-bit buffer once ZeroMQ released it).
#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <future>
#include <random>
#include <vector>

#include "ps/client.h"
#include "ps/ps_task.h"
#include "runtime/wire/half.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

using std::chrono::milliseconds;
constexpr uint64_t kJob = 92;
// Two chunks: 8192 values (16 KiB in 16 bits: kZeroCopyMinBytes, sent zero-copy) and 1808.
constexpr size_t kCount = 10000;
constexpr int kSteps = 3;

void run_job(FloatFormat format) {
  SCOPED_TRACE(compression_name(format));
  PsTaskOptions o;
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok()) << port.status().to_string();
  o.cluster.ps = {HostPort{"127.0.0.1", *port}};
  o.cluster.workers = {HostPort{"127.0.0.1", 1}};
  o.job_id = kJob;
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  auto task = std::async(std::launch::async, [&] { return run_ps_task(o, out); });

  zmq::context_t ctx(1);
  const Placement p = place_variables({{"w", {static_cast<int64_t>(kCount)}, 0, {}}}, 1,
                                      /*max_chunk_elements=*/8192);
  ClientOptions co;
  co.worker = 0;
  co.job_id = kJob;
  co.connect_timeout = milliseconds(10000);
  co.reply_timeout = milliseconds(10000);
  co.compression = format;
  auto client = PsClient::connect(ctx, o.cluster.ps, p, co);
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  PsClient& w0 = **client;
  ASSERT_TRUE(w0.hello(p.hash).ok());
  JobTrainingConfig config;
  config.model = "mlp";
  config.optimizer.kind = OptimizerKind::kSgd;
  config.optimizer.learning_rate = 1.0f;
  config.train_steps = kSteps;
  config.layout_hash = p.hash;
  std::vector<float> expected(kCount, 0.5f);
  ASSERT_TRUE(w0.init(config, expected).ok());

  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.f, 0.1f);
  std::vector<float> params(kCount), grads(kCount);
  for (int step = 0; step < kSteps; ++step) {
    auto s = w0.pull(params, step);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    for (size_t j = 0; j < kCount; ++j) {
      ASSERT_EQ(std::bit_cast<uint32_t>(params[j]), std::bit_cast<uint32_t>(expected[j]))
          << "step " << step << " element " << j;
    }
    for (float& g : grads) g = dist(rng);
    const uint64_t before = w0.bytes_sent();
    ASSERT_TRUE(w0.push(grads, *s, nullptr).ok());
    const uint64_t sent = w0.bytes_sent() - before;
    EXPECT_GE(sent, 2 * kCount);
    EXPECT_LT(sent, 2 * kCount + 512) << "the gradient did not travel in 16 bits";
    // What the PS applies: SGD with learning rate 1 on the widened 16-bit values.
    std::vector<uint16_t> words(kCount);
    narrow_floats(format, grads, words);
    std::vector<float> widened(kCount);
    widen_halves(format, reinterpret_cast<const std::byte*>(words.data()), widened);
    for (size_t j = 0; j < kCount; ++j) expected[j] -= 1.0f * widened[j];
  }
  auto last = w0.pull(params, kSteps);
  ASSERT_TRUE(last.ok()) << last.status().to_string();
  for (size_t j = 0; j < kCount; ++j) {
    ASSERT_EQ(std::bit_cast<uint32_t>(params[j]), std::bit_cast<uint32_t>(expected[j])) << j;
  }
  ASSERT_TRUE(w0.done().ok());
  ASSERT_EQ(task.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "the PS task did not exit once its only worker was done";
  auto summary = task.get();
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->server.final_step, kSteps);
  std::fclose(out);
}

TEST(CompressClient, Bf16PushesAreAppliedAsTheirWidenedValues) { run_job(FloatFormat::kBFloat16); }
TEST(CompressClient, Fp16PushesAreAppliedAsTheirWidenedValues) { run_job(FloatFormat::kFloat16); }

}  // namespace
}  // namespace pstrain
