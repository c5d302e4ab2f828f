// `pstrain train`'s training loop on the real Fashion-MNIST data (skipped when the Debian
// package dataset-fashion-mnist is not installed).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "worker/data.h"
#include "worker/local_train.h"

namespace pstrain {
namespace {

// Records every report, to check the order of the loop's calls.
struct RecordingSink : TrainingSink {
  std::vector<std::string> calls;
  std::vector<StepReport> steps;
  std::vector<EvalReport> evals;
  void begin(const TrainingBegin&) override { calls.push_back("begin"); }
  void step(const StepReport& r) override {
    if (steps.empty()) calls.push_back("step");
    steps.push_back(r);
  }
  void training_end(const TrainingEnd&) override { calls.push_back("training_end"); }
  void evaluation(const EvalReport& r) override {
    calls.push_back("evaluation");
    evals.push_back(r);
  }
  void finish() override { calls.push_back("finish"); }
};

TEST(LocalTraining, MlpReachesEightyPercentOnFashionMnist) {
  if (!std::filesystem::is_directory(kDefaultDataDir)) {
    GTEST_SKIP() << kDefaultDataDir << " is missing: install dataset-fashion-mnist";
  }
  auto data = load_data_dir(kDefaultDataDir);
  ASSERT_TRUE(data.ok()) << data.status().to_string();
  TrainConfig c;  // mnist_replica's defaults: Adam 0.01, batch 100, 100 hidden units
  c.train_steps = 600;
  c.num_gpus = 0;
  c.cpu_threads = 1;
  auto ops = make_cpu_ops(1);
  RecordingSink sink;
  auto summary = train_locally(c, *data, *ops, sink);
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(sink.calls,
            (std::vector<std::string>{"begin", "step", "training_end", "evaluation", "finish"}));
  ASSERT_EQ(sink.steps.size(), 600u);
  for (size_t i = 0; i < sink.steps.size(); ++i) {
    EXPECT_EQ(sink.steps[i].local_step, static_cast<int64_t>(i + 1));
    EXPECT_EQ(sink.steps[i].global_step, static_cast<int64_t>(i + 1));
  }
  EXPECT_LT(sink.steps.back().loss, sink.steps.front().loss);
  ASSERT_EQ(sink.evals.size(), 1u);
  EXPECT_EQ(sink.evals[0].count, 10000);
  EXPECT_DOUBLE_EQ(sink.evals[0].accuracy(), summary->test_accuracy);
  EXPECT_GE(summary->test_accuracy, 0.80);
  EXPECT_EQ(summary->steps, 600);
  EXPECT_EQ(summary->test_examples, 10000);
  EXPECT_GT(summary->examples_per_second, 0.0);
  EXPECT_LT(summary->final_loss, 1.0);  // started near ln(10) = 2.3
  const auto j = summary->to_json();
  EXPECT_EQ(j.at("model"), "mlp");
  EXPECT_DOUBLE_EQ(j.at("test_accuracy").get<double>(), summary->test_accuracy);
}

TEST(LocalTraining, BadHyperParametersAreErrorsNamingTheFlag) {
  TrainTestData empty;
  auto ops = make_cpu_ops(1);
  RecordingSink progress;
  TrainConfig c;
  c.batch_size = 0;
  auto r = train_locally(c, empty, *ops, progress);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--batch_size"), std::string::npos);
  TrainConfig d;
  d.optimizer.learning_rate = -1;
  r = train_locally(d, empty, *ops, progress);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--learning_rate"), std::string::npos);
  EXPECT_TRUE(progress.calls.empty());  // nothing reported before the configuration is valid
}

}  // namespace
}  // namespace pstrain
