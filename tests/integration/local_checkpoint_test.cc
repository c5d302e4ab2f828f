// `pstrain train` with --checkpoint_dir (worker/local_train.h): for every optimizer, a run
// stopped and resumed from its checkpoint ends with the same parameters and optimizer slots,
// bit for bit, as an uninterrupted run; a stop request writes a final checkpoint; a
// checkpoint of another model is refused. Real Fashion-MNIST (skipped without it).
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "tests/temp_dir.h"
#include "worker/data.h"
#include "worker/local_train.h"

namespace pstrain {
namespace {

class LocalCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::is_directory(kDefaultDataDir)) {
      GTEST_SKIP() << kDefaultDataDir << " is missing: install dataset-fashion-mnist";
    }
    auto d = load_data_dir(kDefaultDataDir);
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    data_ = std::move(d).value();
  }
  static TrainConfig config(OptimizerKind kind, int64_t steps, const std::string& dir) {
    TrainConfig c;
    c.model.hidden_units = 16;
    c.batch_size = 20;
    c.optimizer.kind = kind;
    c.train_steps = steps;
    c.num_gpus = 0;
    c.cpu_threads = 1;
    c.checkpoint.dir = dir;
    c.checkpoint.save_steps = 0;
    c.checkpoint.save_secs = 0;
    return c;
  }
  Result<TrainSummary> train(const TrainConfig& c, const std::atomic<int>* stop = nullptr) {
    auto ops = make_cpu_ops(1);
    TrainingSink none;
    return train_locally(c, data_, *ops, none, stop);
  }
  TrainTestData data_;
};

TEST_F(LocalCheckpointTest, AResumedRunEqualsAnUninterruptedOneForEveryOptimizer) {
  for (const OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum,
                                   OptimizerKind::kAdam, OptimizerKind::kAdagrad}) {
    const std::string name = optimizer_name(kind);
    testing_util::TempDir resumed("pstrain_local_resumed"), straight("pstrain_local_straight");
    ASSERT_TRUE(train(config(kind, 30, resumed.path())).ok()) << name;
    auto second = train(config(kind, 50, resumed.path()));
    ASSERT_TRUE(second.ok()) << name << ": " << second.status().message();
    ASSERT_TRUE(train(config(kind, 50, straight.path())).ok()) << name;
    auto a = checkpoint::read_shard(resumed / checkpoint::shard_file_name(50, 0, 1));
    auto b = checkpoint::read_shard(straight / checkpoint::shard_file_name(50, 0, 1));
    ASSERT_TRUE(a.ok() && b.ok()) << name;
    EXPECT_TRUE(std::filesystem::exists(resumed / checkpoint::index_file_name(30))) << name;
    EXPECT_EQ(a->step, 50);
    ASSERT_EQ(a->chunks.size(), b->chunks.size());
    for (size_t i = 0; i < a->chunks.size(); ++i) {
      const auto& x = a->chunks[i];
      const auto& y = b->chunks[i];
      ASSERT_EQ(x.values.size(), y.values.size());
      EXPECT_EQ(std::memcmp(x.values.data(), y.values.data(), x.values.size() * 4), 0)
          << name << ": " << x.key;
      ASSERT_EQ(x.slots.size(), y.slots.size());
      for (size_t k = 0; k < x.slots.size(); ++k) {
        EXPECT_EQ(std::memcmp(x.slots[k].data(), y.slots[k].data(), x.slots[k].size() * 4), 0)
            << name << ": slot " << k << " of " << x.key;
      }
    }
  }
}

TEST_F(LocalCheckpointTest, AStopRequestWritesAFinalCheckpoint) {
  testing_util::TempDir dir("pstrain_local_stop");
  // Stops once 25 steps were taken (the stop flag is read between two steps).
  struct StopAt : TrainingSink {
    std::atomic<int>* flag = nullptr;
    void step(const StepReport& r) override {
      if (r.global_step == 25) flag->store(SIGTERM);
    }
  };
  std::atomic<int> stop{0};
  StopAt sink;
  sink.flag = &stop;
  auto ops = make_cpu_ops(1);
  auto r = train_locally(config(OptimizerKind::kAdam, 1000, dir.path()), data_, *ops, sink, &stop);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
  auto latest = checkpoint::find_latest_complete(dir.path());
  ASSERT_TRUE(latest.ok() && latest->latest.has_value());
  EXPECT_EQ(latest->latest->step, 25);
}

TEST_F(LocalCheckpointTest, ACheckpointOfAnotherModelIsRefused) {
  testing_util::TempDir dir("pstrain_local_other");
  ASSERT_TRUE(train(config(OptimizerKind::kAdam, 5, dir.path())).ok());
  TrainConfig other = config(OptimizerKind::kAdam, 10, dir.path());
  other.model.hidden_units = 17;
  auto r = train(other);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("layout"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace pstrain
