// `pstrain train`'s training loop on the real Fashion-MNIST data (skipped when the Debian
// package dataset-fashion-mnist is not installed).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "worker/data.h"
#include "worker/local_train.h"

namespace pstrain {
namespace {

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
  auto summary = train_locally(c, *data, *ops, stderr);
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
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
  TrainConfig c;
  c.batch_size = 0;
  auto r = train_locally(c, empty, *ops, stderr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--batch_size"), std::string::npos);
  TrainConfig d;
  d.optimizer.learning_rate = -1;
  r = train_locally(d, empty, *ops, stderr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--learning_rate"), std::string::npos);
}

}  // namespace
}  // namespace pstrain
