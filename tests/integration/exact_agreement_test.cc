// Exact agreement: one PS and one worker training synchronously reproduce `pstrain train` with
// the same seed bit for bit: the same loss at every step and the same test accuracy, for each of
// the four optimizers with non-default hyper-parameters. The CPU kernels give the same bits for
// any thread count, so the worker runs two threads and `pstrain train` one. This proves that the
// wire carries the whole training configuration and that the two loops see the same batches.
// Skipped when the Debian package dataset-fashion-mnist is not installed.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <ostream>
#include <string>
#include <vector>

#include "ps/server.h"
#include "worker/backend.h"
#include "worker/data.h"
#include "worker/local_train.h"
#include "worker/worker_task.h"

namespace pstrain {

// gtest names each case by its optimizer instead of printing the struct's bytes.
void PrintTo(const OptimizerConfig& c, std::ostream* os) { *os << optimizer_name(c.kind); }

namespace {

using std::chrono::milliseconds;

struct Recorded : TrainingSink {
  std::vector<float> losses;
  std::optional<EvalReport> test;
  void step(const StepReport& r) override { losses.push_back(r.loss); }
  void evaluation(const EvalReport& r) override { test = r; }
};

class ExactAgreement : public ::testing::TestWithParam<OptimizerConfig> {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::is_directory(kDefaultDataDir)) return;
    auto d = load_data_dir(kDefaultDataDir);
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    // What `pstrain train` and every worker do: hold out the validation split.
    ASSERT_TRUE(hold_out_validation(*d, kDefaultValidationSize).ok());
    data_ = new TrainTestData(std::move(d).value());
  }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }
  static TrainTestData* data_;
};
TrainTestData* ExactAgreement::data_ = nullptr;

TrainConfig config_for(const OptimizerConfig& optimizer) {
  TrainConfig c;
  c.optimizer = optimizer;
  c.train_steps = 120;
  c.batch_size = 50;
  c.seed = 7;
  c.num_gpus = 0;
  c.eval_batch = 1000;
  return c;
}

// One PS on its own thread and one synchronous worker in this thread, over 127.0.0.1.
Recorded train_distributed(const TrainConfig& config) {
  zmq::context_t ctx(1);
  ServerOptions so;
  so.host = "127.0.0.1";
  so.port = 0;
  so.num_workers = 1;
  so.job_id = 4242;
  so.heartbeat_timeout = milliseconds(30000);
  so.startup_timeout = milliseconds(60000);
  auto server = ParameterServer::create(ctx, so);
  EXPECT_TRUE(server.ok()) << server.status().to_string();
  if (!server.ok()) return {};
  auto served = std::async(std::launch::async, [&] { return (*server)->serve(); });

  WorkerTaskOptions o;
  o.train = config;
  o.train.cpu_threads = 2;
  o.sync_replicas = true;
  o.cluster.ps = {HostPort{"127.0.0.1", (*server)->port()}};
  o.cluster.workers = {HostPort{"127.0.0.1", 1}};  // this worker's own address is not bound
  o.task_index = 0;
  o.job_id = so.job_id;
  o.client.connect_timeout = milliseconds(20000);
  o.client.reply_timeout = milliseconds(30000);
  Recorded r;
  auto summary = run_worker_task(o, r);
  EXPECT_TRUE(summary.ok()) << summary.status().to_string();
  if (served.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    (*server)->request_stop();
    ADD_FAILURE() << "the parameter server did not exit after the worker said DONE";
  }
  auto ps = served.get();
  EXPECT_TRUE(ps.ok()) << ps.status().to_string();
  if (ps.ok()) {
    EXPECT_EQ(ps->final_step, config.train_steps);
  }
  return r;
}

TEST_P(ExactAgreement, OnePsOneSyncWorkerReproducesLocalTrainingBitForBit) {
  if (data_ == nullptr) GTEST_SKIP() << kDefaultDataDir << " is missing";
  const TrainConfig config = config_for(GetParam());

  Recorded local;
  auto ops = make_cpu_ops(1);
  auto summary = train_locally(config, *data_, *ops, local);
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();

  const Recorded dist = train_distributed(config);
  ASSERT_EQ(local.losses.size(), static_cast<size_t>(config.train_steps));
  ASSERT_EQ(dist.losses.size(), local.losses.size());
  for (size_t i = 0; i < local.losses.size(); ++i) {
    // Bitwise: EXPECT_EQ on floats compares exactly.
    ASSERT_EQ(dist.losses[i], local.losses[i]) << "first difference at step " << i + 1;
  }
  ASSERT_TRUE(local.test && dist.test);
  EXPECT_EQ(dist.test->correct, local.test->correct);
  EXPECT_EQ(dist.test->count, local.test->count);
  EXPECT_EQ(dist.test->global_step, config.train_steps);
  // Training moved the parameters: the loss fell (a run that never updated would agree too).
  EXPECT_LT(local.losses.back(), local.losses.front());
}

OptimizerConfig optimizer(OptimizerKind kind, float lr) {
  OptimizerConfig c;
  c.kind = kind;
  c.learning_rate = lr;
  return c;
}

std::vector<OptimizerConfig> optimizers() {
  OptimizerConfig sgd = optimizer(OptimizerKind::kSgd, 0.05f);
  OptimizerConfig momentum = optimizer(OptimizerKind::kMomentum, 0.02f);
  momentum.momentum = 0.5f;
  OptimizerConfig adam = optimizer(OptimizerKind::kAdam, 0.005f);
  adam.beta1 = 0.8f;
  adam.beta2 = 0.99f;
  adam.epsilon = 1e-4f;
  OptimizerConfig adagrad = optimizer(OptimizerKind::kAdagrad, 0.05f);
  adagrad.initial_accumulator = 0.3f;
  return {sgd, momentum, adam, adagrad};
}

INSTANTIATE_TEST_SUITE_P(FourOptimizers, ExactAgreement, ::testing::ValuesIn(optimizers()),
                         [](const ::testing::TestParamInfo<OptimizerConfig>& param) {
                           return std::string(optimizer_name(param.param.kind));
                         });

}  // namespace
}  // namespace pstrain
