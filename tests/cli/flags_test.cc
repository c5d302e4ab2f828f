// Command-line parsing: mnist_replica's flags, TensorFlow-style booleans, exit codes.
#include "cli/flags.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "cli/cli.h"
#include "cli/commands.h"
#include "worker/data.h"

namespace pstrain {
namespace {

// Parses `args` (without the program name) into a fresh role-flag set.
struct Parsed {
  CLI::App app{"test"};
  RoleFlags flags;
  Parsed() { add_role_flags(app, flags); }
  void parse(std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());  // CLI11 takes them last-first
    app.parse(args);
  }
};

TEST(Flags, MnistReplicaDefaults) {
  Parsed p;
  p.parse({});
  const TrainConfig& c = p.flags.train.config;
  EXPECT_EQ(c.train_steps, 200);
  EXPECT_EQ(c.batch_size, 100);
  EXPECT_EQ(c.model.hidden_units, 100);
  EXPECT_EQ(c.num_gpus, 1);
  EXPECT_FLOAT_EQ(p.flags.train.learning_rate, 0.01f);
  EXPECT_EQ(p.flags.train.optimizer, "adam");
  EXPECT_FALSE(p.flags.sync_replicas);
  EXPECT_EQ(p.flags.replicas_to_aggregate, 0);
  EXPECT_EQ(p.flags.job_name_opt->count(), 0u);
}

TEST(Flags, EqualsAndSpaceFormsBothWork) {
  Parsed p;
  p.parse({"--train_steps", "500", "--batch_size=64", "--learning_rate", "0.5", "--ps_hosts=a:1",
           "--worker_hosts", "b:2,c:3", "--task_index=1"});
  EXPECT_EQ(p.flags.train.config.train_steps, 500);
  EXPECT_EQ(p.flags.train.config.batch_size, 64);
  EXPECT_FLOAT_EQ(p.flags.train.learning_rate, 0.5f);
  EXPECT_EQ(p.flags.ps_hosts, "a:1");
  EXPECT_EQ(p.flags.worker_hosts, "b:2,c:3");
  EXPECT_EQ(p.flags.task_index, 1);
  EXPECT_EQ(p.flags.task_index_opt->count(), 1u);
}

TEST(Flags, BooleansTakeTensorFlowForms) {
  const std::pair<std::vector<std::string>, bool> cases[] = {
      {{"--sync_replicas"}, true},
      {{"--sync_replicas=true"}, true},
      {{"--sync_replicas=True"}, true},
      {{"--sync_replicas=1"}, true},
      {{"--sync_replicas=false"}, false},
      {{"--sync_replicas=False"}, false},
      {{"--sync_replicas=0"}, false},
      {{"--nosync_replicas"}, false},
      {{"--sync_replicas", "--nosync_replicas"}, false},
  };
  for (const auto& [args, expected] : cases) {
    Parsed p;
    p.parse(args);
    EXPECT_EQ(p.flags.sync_replicas, expected) << args[0];
  }
}

TEST(Flags, UnknownFlagIsAnError) {
  Parsed p;
  EXPECT_THROW(p.parse({"--train_stepz=5"}), CLI::ParseError);
}

TEST(Flags, BatchAiCommandLineParses) {
  // DESIGN.md's Batch AI command line, with the variables expanded as the shell would.
  Parsed p;
  p.parse({"--job_name=worker", "--num_gpus=1", "--train_steps", "10000",
           "--checkpoint_dir=/out/model", "--log_dir=/out/tb", "--data_dir=/in/data",
           "--ps_hosts=10.0.0.4:2222", "--worker_hosts=10.0.0.5:2222,10.0.0.6:2222",
           "--task_index=0"});
  EXPECT_EQ(p.flags.job_name, "worker");
  EXPECT_EQ(p.flags.train.config.train_steps, 10000);
  EXPECT_EQ(p.flags.checkpoint_dir, "/out/model");
  EXPECT_EQ(p.flags.log_dir, "/out/tb");
  EXPECT_EQ(p.flags.train.config.data_dir, "/in/data");
}

TEST(Flags, ConversionErrorsNameTheFlag) {
  TrainFlagValues v;
  v.model = "resnet";
  auto r = finish_training_flags(v);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--model"), std::string::npos);
  TrainFlagValues w;
  w.optimizer = "rmsprop";
  r = finish_training_flags(w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("adam"), std::string::npos);
  TrainFlagValues x;
  x.config.train_steps = 0;
  r = finish_training_flags(x);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--train_steps"), std::string::npos);
}

TEST(Flags, OptimizerHyperParametersHaveTensorFlowDefaults) {
  Parsed p;
  p.parse({});
  auto c = finish_training_flags(p.flags.train);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->optimizer.momentum, 0.9f);
  EXPECT_EQ(c->optimizer.beta1, 0.9f);
  EXPECT_EQ(c->optimizer.beta2, 0.999f);
  EXPECT_EQ(c->optimizer.epsilon, 1e-8f);
  EXPECT_EQ(c->optimizer.initial_accumulator, 0.1f);
  const std::string help = p.app.help();
  for (const char* shown :
       {"--momentum FLOAT=0.9", "--adam_beta1 FLOAT=0.9", "--adam_beta2 FLOAT=0.999",
        "--adam_epsilon FLOAT=1e-08", "--adagrad_initial_accumulator FLOAT=0.1"}) {
    EXPECT_NE(help.find(shown), std::string::npos) << shown << " in\n" << help;
  }
}

TEST(Flags, OptimizerHyperParametersParse) {
  Parsed p;
  p.parse({"--optimizer=momentum", "--momentum", "0.5", "--adam_beta1=0.8", "--adam_beta2", "0.99",
           "--adam_epsilon=1e-6", "--adagrad_initial_accumulator", "0.25"});
  auto c = finish_training_flags(p.flags.train);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->optimizer.kind, OptimizerKind::kMomentum);
  EXPECT_EQ(c->optimizer.momentum, 0.5f);
  EXPECT_EQ(c->optimizer.beta1, 0.8f);
  EXPECT_EQ(c->optimizer.beta2, 0.99f);
  EXPECT_EQ(c->optimizer.epsilon, 1e-6f);
  EXPECT_EQ(c->optimizer.initial_accumulator, 0.25f);
  // Edge values that are allowed.
  Parsed q;
  q.parse({"--momentum=0", "--adam_beta1=0", "--adam_beta2=0", "--adam_epsilon=0"});
  EXPECT_TRUE(finish_training_flags(q.flags.train).ok());
}

TEST(Flags, LearningRateSchedulesParse) {
  Parsed p;
  p.parse({"--lr_schedule=exponential", "--lr_decay_steps", "1000", "--lr_decay_rate=0.9",
           "--lr_staircase"});
  auto c = finish_training_flags(p.flags.train);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->optimizer.schedule.kind, LrScheduleKind::kExponential);
  EXPECT_EQ(c->optimizer.schedule.decay_steps, 1000);
  EXPECT_EQ(c->optimizer.schedule.decay_rate, 0.9f);
  EXPECT_TRUE(c->optimizer.schedule.staircase);
  Parsed q;
  q.parse(
      {"--lr_schedule=piecewise", "--lr_boundaries=2000,4000", "--lr_values", "0.01,0.003,0.001"});
  c = finish_training_flags(q.flags.train);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  const LrSchedule& l = c->optimizer.schedule;
  ASSERT_EQ(l.num_boundaries, 2);
  EXPECT_EQ(l.boundaries[0], 2000);
  EXPECT_EQ(l.boundaries[1], 4000);
  EXPECT_EQ(l.values[0], 0.01f);
  EXPECT_EQ(l.values[2], 0.001f);
  // The default is TensorFlow's (and mnist_replica's): a constant rate.
  Parsed d;
  d.parse({});
  c = finish_training_flags(d.flags.train);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->optimizer.schedule.kind, LrScheduleKind::kConstant);
}

TEST(Flags, BadLearningRateSchedulesSayWhatToDo) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--lr_schedule=cosine"}, "constant, exponential or piecewise"},
      {{"--lr_schedule=exponential"}, "needs --lr_decay_steps > 0"},
      {{"--lr_schedule=piecewise"}, "needs --lr_boundaries and --lr_values"},
      {{"--lr_schedule=piecewise", "--lr_boundaries=10,x", "--lr_values=1,2,3"}, "'x' is not"},
      {{"--lr_schedule=piecewise", "--lr_boundaries=10", "--lr_values=1,2,3"}, "one rate more"},
      {{"--lr_schedule=piecewise", "--lr_boundaries=20,10", "--lr_values=1,2,3"},
       "increasing order"},
      {{"--lr_boundaries=10", "--lr_values=1,2"}, "belong to --lr_schedule=piecewise"},
  };
  for (const auto& [args, expect] : cases) {
    Parsed p;
    p.parse(args);
    auto c = finish_training_flags(p.flags.train);
    ASSERT_FALSE(c.ok()) << args[0] << " was accepted";
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(expect), std::string::npos) << c.status().message();
  }
}

TEST(Flags, BadOptimizerHyperParametersNameTheFlag) {
  const std::pair<std::string, std::string> cases[] = {
      {"--momentum=-0.1", "--momentum"},
      {"--momentum=inf", "--momentum"},
      {"--momentum=nan", "--momentum"},
      {"--adam_beta1=1", "--adam_beta1"},
      {"--adam_beta1=-0.5", "--adam_beta1"},
      {"--adam_beta2=1.5", "--adam_beta2"},
      {"--adam_epsilon=-1e-8", "--adam_epsilon"},
      {"--adagrad_initial_accumulator=0", "--adagrad_initial_accumulator"},
      {"--adagrad_initial_accumulator=-1", "--adagrad_initial_accumulator"},
      {"--learning_rate=inf", "--learning_rate"},
  };
  for (const auto& [arg, flag] : cases) {
    Parsed p;
    p.parse({arg});
    auto c = finish_training_flags(p.flags.train);
    ASSERT_FALSE(c.ok()) << arg << " was accepted";
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << arg;
    EXPECT_EQ(c.status().message().rfind(flag + " must be", 0), 0u)
        << arg << ": " << c.status().message();
  }
  Parsed p;
  EXPECT_THROW(p.parse({"--adam_beta2=high"}), CLI::ParseError);
}

int cli(std::vector<std::string> args) {
  args.insert(args.begin(), "pstrain");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return run_cli(static_cast<int>(argv.size()), argv.data());
}

TEST(Cli, ExitCodes) {
  EXPECT_EQ(cli({"--bogus"}), kExitUsage);
  EXPECT_EQ(cli({"--download_only", "--data_dir=/nonexistent/pstrain"}), kExitUsage);
  EXPECT_EQ(cli({"--job_name=chief", "--task_index=0"}), kExitUsage);
  EXPECT_EQ(cli({"--job_name=worker", "--task_index=5", "--ps_hosts=localhost:1",
                 "--worker_hosts=localhost:2"}),
            kExitUsage);
  EXPECT_EQ(cli({"--version"}), kExitOk);
  EXPECT_EQ(cli({"--job_name=worker", "--task_index=0", "--sync_replicas", "--staleness=2"}),
            kExitUsage);
  EXPECT_EQ(cli({"--job_name=worker", "--task_index=0", "--staleness=-1"}), kExitUsage);
  EXPECT_EQ(cli({"--job_name=worker", "--task_index=0", "--push_stripes=0"}), kExitUsage);
  EXPECT_EQ(cli({"--job_name=worker", "--task_index=0", "--push_stripes=17"}), kExitUsage);
  EXPECT_EQ(cli({"--job_name=worker", "--task_index=0", "--adam_beta1=2"}), kExitUsage);
  EXPECT_EQ(cli({"train", "--momentum=-1"}), kExitUsage);
  // A flag before the command word would be ignored by the command: refused instead.
  EXPECT_EQ(cli({"--train_steps=5", "train"}), kExitUsage);
  if (std::filesystem::is_directory(kDefaultDataDir)) {
    EXPECT_EQ(cli({"--download_only"}), kExitOk);
  }
}

}  // namespace
}  // namespace pstrain
