// JobTrainingConfig: every field survives the trip through wire::TrainingConfig, and from_wire
// refuses each invalid value a peer could send with an error naming it.
#include "ps/training_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace pstrain {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Every field differs from its default (and from the other fields' values).
JobTrainingConfig sync_config() {
  JobTrainingConfig c;
  c.model = "cnn";
  c.optimizer.kind = OptimizerKind::kMomentum;
  c.optimizer.learning_rate = 0.125f;
  c.optimizer.momentum = 0.5f;
  c.optimizer.beta1 = 0.8f;
  c.optimizer.beta2 = 0.99f;
  c.optimizer.epsilon = 1e-6f;
  c.optimizer.initial_accumulator = 0.25f;
  c.sync_replicas = true;
  c.replicas_to_aggregate = 3;
  c.train_steps = 12345678901;
  c.num_workers = 5;
  c.layout_hash = 0xfedcba9876543210u;
  return c;
}

void expect_same(const JobTrainingConfig& got, const JobTrainingConfig& want) {
  EXPECT_EQ(got.model, want.model);
  EXPECT_EQ(got.optimizer.kind, want.optimizer.kind);
  EXPECT_EQ(got.optimizer.learning_rate, want.optimizer.learning_rate);
  EXPECT_EQ(got.optimizer.momentum, want.optimizer.momentum);
  EXPECT_EQ(got.optimizer.beta1, want.optimizer.beta1);
  EXPECT_EQ(got.optimizer.beta2, want.optimizer.beta2);
  EXPECT_EQ(got.optimizer.epsilon, want.optimizer.epsilon);
  EXPECT_EQ(got.optimizer.initial_accumulator, want.optimizer.initial_accumulator);
  EXPECT_EQ(got.sync_replicas, want.sync_replicas);
  EXPECT_EQ(got.replicas_to_aggregate, want.replicas_to_aggregate);
  EXPECT_EQ(got.staleness, want.staleness);
  EXPECT_EQ(got.train_steps, want.train_steps);
  EXPECT_EQ(got.num_workers, want.num_workers);
  EXPECT_EQ(got.layout_hash, want.layout_hash);
  EXPECT_TRUE(got.optimizer.schedule == want.optimizer.schedule);
}

TEST(JobTrainingConfig, LearningRateSchedulesRoundTripAndBadOnesAreRefused) {
  JobTrainingConfig c = sync_config();
  LrSchedule& l = c.optimizer.schedule;
  l.kind = LrScheduleKind::kExponential;
  l.decay_steps = 700;
  l.decay_rate = 0.75f;
  l.staircase = true;
  auto back = JobTrainingConfig::from_wire(c.to_wire());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  expect_same(*back, c);
  EXPECT_NE(c.describe().find("exponential decay 0.75 every 700 steps (staircase)"),
            std::string::npos)
      << c.describe();
  l = LrSchedule{};
  l.kind = LrScheduleKind::kPiecewise;
  l.num_boundaries = 2;
  l.boundaries = {100, 250};
  l.values = {0.5f, 0.25f, 0.125f};
  back = JobTrainingConfig::from_wire(c.to_wire());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  expect_same(*back, c);
  EXPECT_NE(c.describe().find("piecewise lr 0.5 to step 100, 0.25 to step 250, then 0.125"),
            std::string::npos)
      << c.describe();
  // From the network: too many boundaries, a value missing, an unknown kind, decreasing steps.
  wire::TrainingConfig w = c.to_wire();
  for (int i = 0; i < 20; ++i) w.add_lr_boundaries(1000 + i);
  EXPECT_FALSE(JobTrainingConfig::from_wire(w).ok());
  w = c.to_wire();
  w.mutable_lr_values()->RemoveLast();
  EXPECT_FALSE(JobTrainingConfig::from_wire(w).ok());
  w = c.to_wire();
  w.set_lr_schedule(static_cast<wire::LrSchedule>(7));
  EXPECT_FALSE(JobTrainingConfig::from_wire(w).ok());
  w = c.to_wire();
  w.set_lr_boundaries(1, 50);
  auto refused = JobTrainingConfig::from_wire(w);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("lr_boundaries"), std::string::npos);
}

TEST(JobTrainingConfig, SyncConfigRoundTripsEveryField) {
  const JobTrainingConfig c = sync_config();
  ASSERT_TRUE(c.validate().ok()) << c.validate().to_string();
  const wire::TrainingConfig w = c.to_wire();
  // The wire form itself, field by field.
  EXPECT_EQ(w.model(), "cnn");
  EXPECT_EQ(w.optimizer(), wire::MOMENTUM);
  EXPECT_EQ(w.learning_rate(), 0.125f);
  ASSERT_TRUE(w.has_momentum() && w.has_adam_beta1() && w.has_adam_beta2() &&
              w.has_adam_epsilon() && w.has_adagrad_initial_accumulator());
  EXPECT_EQ(w.momentum(), 0.5f);
  EXPECT_EQ(w.adam_beta1(), 0.8f);
  EXPECT_EQ(w.adam_beta2(), 0.99f);
  EXPECT_EQ(w.adam_epsilon(), 1e-6f);
  EXPECT_EQ(w.adagrad_initial_accumulator(), 0.25f);
  EXPECT_TRUE(w.sync_replicas());
  EXPECT_EQ(w.replicas_to_aggregate(), 3);
  EXPECT_EQ(w.staleness(), 0);
  EXPECT_EQ(w.train_steps(), 12345678901);
  EXPECT_EQ(w.num_workers(), 5);
  EXPECT_EQ(w.layout_hash(), 0xfedcba9876543210u);
  // And back, through bytes as on the network.
  wire::TrainingConfig parsed;
  ASSERT_TRUE(parsed.ParseFromString(w.SerializeAsString()));
  auto back = JobTrainingConfig::from_wire(parsed);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  expect_same(*back, c);
}

TEST(JobTrainingConfig, AsyncConfigRoundTripsStalenessAndEveryOptimizer) {
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum, OptimizerKind::kAdam,
                             OptimizerKind::kAdagrad}) {
    JobTrainingConfig c = sync_config();
    c.optimizer.kind = kind;
    c.sync_replicas = false;
    c.replicas_to_aggregate = 7;  // async: not bounded by the workers (unused)
    c.staleness = 4;
    auto back = JobTrainingConfig::from_wire(c.to_wire());
    ASSERT_TRUE(back.ok()) << optimizer_name(kind) << ": " << back.status().to_string();
    expect_same(*back, c);
  }
}

TEST(JobTrainingConfig, FromWireRefusesEachInvalidValueNamingIt) {
  struct Case {
    const char* what;
    std::function<void(wire::TrainingConfig&)> spoil;
    const char* named;  // the error must contain this
  };
  const std::vector<Case> cases = {
      {"no optimizer", [](auto& w) { w.set_optimizer(wire::OPTIMIZER_INVALID); }, "optimizer"},
      {"unknown optimizer", [](auto& w) { w.set_optimizer(static_cast<wire::Optimizer>(99)); },
       "99"},
      {"zero learning rate", [](auto& w) { w.set_learning_rate(0.f); }, "learning_rate"},
      {"negative learning rate", [](auto& w) { w.set_learning_rate(-0.1f); }, "learning_rate"},
      {"NaN learning rate", [](auto& w) { w.set_learning_rate(kNaN); }, "learning_rate"},
      {"infinite learning rate", [](auto& w) { w.set_learning_rate(kInf); }, "learning_rate"},
      {"negative momentum", [](auto& w) { w.set_momentum(-0.5f); }, "momentum"},
      {"NaN momentum", [](auto& w) { w.set_momentum(kNaN); }, "momentum"},
      {"infinite momentum", [](auto& w) { w.set_momentum(kInf); }, "momentum"},
      {"beta1 of 1", [](auto& w) { w.set_adam_beta1(1.f); }, "adam_beta1"},
      {"negative beta1", [](auto& w) { w.set_adam_beta1(-0.1f); }, "adam_beta1"},
      {"NaN beta1", [](auto& w) { w.set_adam_beta1(kNaN); }, "adam_beta1"},
      {"beta2 above 1", [](auto& w) { w.set_adam_beta2(1.5f); }, "adam_beta2"},
      {"NaN beta2", [](auto& w) { w.set_adam_beta2(kNaN); }, "adam_beta2"},
      {"negative epsilon", [](auto& w) { w.set_adam_epsilon(-1e-9f); }, "adam_epsilon"},
      {"infinite epsilon", [](auto& w) { w.set_adam_epsilon(kInf); }, "adam_epsilon"},
      {"zero accumulator", [](auto& w) { w.set_adagrad_initial_accumulator(0.f); },
       "adagrad_initial_accumulator"},
      {"negative accumulator", [](auto& w) { w.set_adagrad_initial_accumulator(-0.1f); },
       "adagrad_initial_accumulator"},
      {"NaN accumulator", [](auto& w) { w.set_adagrad_initial_accumulator(kNaN); },
       "adagrad_initial_accumulator"},
      {"no momentum sent", [](auto& w) { w.clear_momentum(); }, "momentum"},
      {"no beta1 sent", [](auto& w) { w.clear_adam_beta1(); }, "adam_beta1"},
      {"no beta2 sent", [](auto& w) { w.clear_adam_beta2(); }, "adam_beta2"},
      {"no epsilon sent", [](auto& w) { w.clear_adam_epsilon(); }, "adam_epsilon"},
      {"no accumulator sent", [](auto& w) { w.clear_adagrad_initial_accumulator(); },
       "adagrad_initial_accumulator"},
      {"zero replicas", [](auto& w) { w.set_replicas_to_aggregate(0); }, "replicas_to_aggregate"},
      {"negative replicas", [](auto& w) { w.set_replicas_to_aggregate(-2); },
       "replicas_to_aggregate"},
      {"more replicas than workers", [](auto& w) { w.set_replicas_to_aggregate(6); },
       "replicas_to_aggregate"},
      {"staleness with sync", [](auto& w) { w.set_staleness(2); }, "staleness"},
      {"negative staleness",
       [](auto& w) {
         w.set_sync_replicas(false);
         w.set_staleness(-1);
       },
       "staleness"},
      {"zero train steps", [](auto& w) { w.set_train_steps(0); }, "train_steps"},
      {"negative train steps", [](auto& w) { w.set_train_steps(-5); }, "train_steps"},
      {"no workers", [](auto& w) { w.set_num_workers(0); }, "num_workers"},
      {"no model", [](auto& w) { w.clear_model(); }, "model"},
  };
  for (const Case& c : cases) {
    wire::TrainingConfig w = sync_config().to_wire();
    ASSERT_TRUE(JobTrainingConfig::from_wire(w).ok());
    c.spoil(w);
    auto r = JobTrainingConfig::from_wire(w);
    ASSERT_FALSE(r.ok()) << c.what << " was accepted";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.what;
    const std::string& m = r.status().message();
    EXPECT_NE(m.find(c.named), std::string::npos) << c.what << ": " << m;
    EXPECT_EQ(m.rfind("INIT's training config: ", 0), 0u) << c.what << ": " << m;
  }
}

TEST(JobTrainingConfig, ErrorsSayWhatTheValueMustBeAndWhatCame) {
  wire::TrainingConfig w = sync_config().to_wire();
  w.set_adam_beta1(1.5f);
  auto r = JobTrainingConfig::from_wire(w);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "INIT's training config: adam_beta1 must be in [0, 1), got 1.5");
  w = sync_config().to_wire();
  w.clear_adam_epsilon();
  r = JobTrainingConfig::from_wire(w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("older pstrain"), std::string::npos) << r.status().message();
}

TEST(JobTrainingConfig, ValidateChecksAConfigBuiltInProcess) {
  JobTrainingConfig c = sync_config();
  EXPECT_TRUE(c.validate().ok());
  c.optimizer.beta2 = 1.f;
  EXPECT_NE(c.validate().message().find("adam_beta2"), std::string::npos);
  EXPECT_FALSE(JobTrainingConfig{}.validate().ok());  // no model, no steps
}

TEST(JobTrainingConfig, DescribeNamesTheChosenOptimizersHyperParameters) {
  JobTrainingConfig c = sync_config();
  c.model = "mlp";
  c.replicas_to_aggregate = 2;
  c.num_workers = 2;
  c.train_steps = 200;
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.learning_rate = 0.01f;
  c.optimizer.beta1 = 0.9f;
  c.optimizer.beta2 = 0.999f;
  c.optimizer.epsilon = 1e-8f;
  EXPECT_EQ(c.describe(),
            "mlp, adam lr 0.01 beta1 0.9 beta2 0.999 epsilon 1e-08, sync, 2 replicas to aggregate "
            "of 2 workers, 200 steps");
  c.optimizer.kind = OptimizerKind::kMomentum;
  c.sync_replicas = false;
  c.staleness = 3;
  EXPECT_EQ(c.describe(),
            "mlp, momentum lr 0.01 momentum 0.5, async, staleness 3, 2 workers, 200 steps");
  c.optimizer.kind = OptimizerKind::kAdagrad;
  c.staleness = 0;
  c.num_workers = 1;
  EXPECT_EQ(c.describe(),
            "mlp, adagrad lr 0.01 initial accumulator 0.25, async, 1 worker, 200 steps");
  c.optimizer.kind = OptimizerKind::kSgd;
  EXPECT_EQ(c.describe(), "mlp, sgd lr 0.01, async, 1 worker, 200 steps");
}

}  // namespace
}  // namespace pstrain
