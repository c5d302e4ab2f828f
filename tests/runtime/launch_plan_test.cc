// plan_launch (runtime/job/launch_plan.h): every task's command line, environment and paths,
// from fixed facts (no processes, no ports, no clock). launcher_test.cc checks that the
// launcher hands these to real processes.
#include "runtime/job/launch_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/job/task_env.h"

namespace pstrain {
namespace {

using Env = std::map<std::string, std::optional<std::string>>;

const std::vector<std::string> kPsHosts = {"127.0.0.1:5001", "127.0.0.1:5002"};
const std::vector<std::string> kWorkerHosts = {"127.0.0.1:6001", "127.0.0.1:6002",
                                               "127.0.0.1:6003"};

// 2 ps + 3 workers on fixed ports, with training flags in a deliberate (non-sorted) order.
LaunchOptions two_ps_three_workers() {
  LaunchOptions o;
  o.num_ps = 2;
  o.num_workers = 3;
  o.training_flags = {"--train_steps", "50", "--sync_replicas", "--model=cnn"};
  return o;
}

LaunchFacts facts() {
  LaunchFacts f;
  f.job_dir = "/jobs/job-1";
  f.binary = "/opt/pstrain/bin/pstrain";
  f.ports = {5001, 5002, 6001, 6002, 6003};
  f.job_id = "1234567";
  f.cpu_cores = 16;
  return f;
}

LaunchPlan plan_or_die(const LaunchOptions& o, const LaunchFacts& f) {
  auto p = plan_launch(o, f);
  EXPECT_TRUE(p.ok()) << p.status().message();
  return p.ok() ? *p : LaunchPlan{};
}

// "/d/status-wk-0.json" -> "/d/metrics-wk-0.jsonl"; nullopt stays nullopt.
std::optional<std::string> metrics_file_of(const std::optional<std::string>& status_file) {
  if (!status_file) return std::nullopt;
  std::string s = *status_file;
  s.replace(s.rfind("status-"), 7, "metrics-");
  return s + "l";
}

// The environment every task of the 2 ps + 3 workers plan gets, for task `job`/`index`.
Env expected_env(const std::string& job, int index, std::optional<std::string> status_file,
                 std::optional<std::string> num_gpus) {
  const nlohmann::json tf = {{"cluster", {{"ps", kPsHosts}, {"worker", kWorkerHosts}}},
                             {"task", {{"type", job}, {"index", index}}},
                             {"environment", "cloud"}};
  return {{task_env::kPsHosts, "127.0.0.1:5001,127.0.0.1:5002"},
          {task_env::kWorkerHosts, "127.0.0.1:6001,127.0.0.1:6002,127.0.0.1:6003"},
          {task_env::kTaskIndex, std::to_string(index)},
          {task_env::kJobName, "job-1"},
          {task_env::kStdoutErrDir, "/jobs/job-1"},
          {task_env::kNumGpus, num_gpus},
          {task_env::kTfConfig, tf.dump()},
          {task_env::kStatusFile, status_file},
          // Workers append their metrics beside their status file: metrics-<name>.jsonl.
          {task_env::kMetricsFile, metrics_file_of(status_file)}};
}

TEST(LaunchPlanTest, TwoPsThreeWorkersNamesAddressesAndPaths) {
  const LaunchPlan plan = plan_or_die(two_ps_three_workers(), facts());
  EXPECT_EQ(plan.job_id, "1234567");
  EXPECT_EQ(plan.ps_hosts, kPsHosts);
  EXPECT_EQ(plan.worker_hosts, kWorkerHosts);
  ASSERT_EQ(plan.tasks.size(), 5u);
  // PS tasks first, then workers; each on its port in the order given.
  const std::vector<std::string> names = {"ps-0", "ps-1", "wk-0", "wk-1", "wk-2"};
  const std::vector<std::string> jobs = {"ps", "ps", "worker", "worker", "worker"};
  const std::vector<int> indexes = {0, 1, 0, 1, 2};
  const std::vector<std::string> addresses = {kPsHosts[0], kPsHosts[1], kWorkerHosts[0],
                                              kWorkerHosts[1], kWorkerHosts[2]};
  for (size_t i = 0; i < plan.tasks.size(); ++i) {
    const PlannedTask& t = plan.tasks[i];
    SCOPED_TRACE(names[i]);
    EXPECT_EQ(t.name, names[i]);
    EXPECT_EQ(t.job, jobs[i]);
    EXPECT_EQ(t.is_worker(), jobs[i] == "worker");
    EXPECT_EQ(t.index, indexes[i]);
    EXPECT_EQ(t.address, addresses[i]);
    EXPECT_EQ(t.stdout_path, "/jobs/job-1/stdout-" + names[i] + ".txt");
    EXPECT_EQ(t.stderr_path, "/jobs/job-1/stderr-" + names[i] + ".txt");
    EXPECT_EQ(t.status_path, t.is_worker() ? "/jobs/job-1/status-" + names[i] + ".json" : "");
    EXPECT_EQ(t.metrics_path, t.is_worker() ? "/jobs/job-1/metrics-" + names[i] + ".jsonl" : "");
  }
}

TEST(LaunchPlanTest, TwoPsThreeWorkersArgvExactly) {
  const LaunchPlan plan = plan_or_die(two_ps_three_workers(), facts());
  ASSERT_EQ(plan.tasks.size(), 5u);
  for (const PlannedTask& t : plan.tasks) {
    SCOPED_TRACE(t.name);
    // The training flags as given, in order; a job id; 16 cores / 3 workers = 5 threads each.
    const std::vector<std::string> argv = {
        "/opt/pstrain/bin/pstrain", "--job_name=" + t.job, "--train_steps",    "50",
        "--sync_replicas",          "--model=cnn",         "--job_id=1234567", "--cpu_threads=5"};
    EXPECT_EQ(t.argv, argv);
  }
}

TEST(LaunchPlanTest, TwoPsThreeWorkersEnvironmentExactly) {
  const LaunchPlan plan = plan_or_die(two_ps_three_workers(), facts());
  ASSERT_EQ(plan.tasks.size(), 5u);
  for (const PlannedTask& t : plan.tasks) {
    SCOPED_TRACE(t.name);
    // No --num_gpus: AZ_BATCHAI_NUM_GPUS is unset (nullopt), not inherited; PS tasks get no
    // status file (unset too).
    const std::optional<std::string> status =
        t.is_worker() ? std::optional<std::string>("/jobs/job-1/status-" + t.name + ".json")
                      : std::nullopt;
    EXPECT_EQ(t.env, expected_env(t.job, t.index, status, std::nullopt));
  }
}

TEST(LaunchPlanTest, TfConfigNamesEachTasksTypeAndIndex) {
  const LaunchPlan plan = plan_or_die(two_ps_three_workers(), facts());
  ASSERT_EQ(plan.tasks.size(), 5u);
  for (const PlannedTask& t : plan.tasks) {
    SCOPED_TRACE(t.name);
    const auto it = t.env.find(task_env::kTfConfig);
    ASSERT_NE(it, t.env.end());
    ASSERT_TRUE(it->second.has_value());
    const auto j = nlohmann::json::parse(*it->second, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << *it->second;
    EXPECT_EQ(j["cluster"]["ps"], nlohmann::json(kPsHosts));
    EXPECT_EQ(j["cluster"]["worker"], nlohmann::json(kWorkerHosts));
    EXPECT_EQ(j["task"]["type"], t.is_worker() ? "worker" : "ps");
    EXPECT_EQ(j["task"]["index"], t.index);
    EXPECT_EQ(j["environment"], "cloud");
  }
}

TEST(LaunchPlanTest, NumGpusIsSetOnlyWhenGiven) {
  LaunchOptions o = two_ps_three_workers();
  o.num_gpus = 0;  // given, even as 0
  for (const PlannedTask& t : plan_or_die(o, facts()).tasks) {
    EXPECT_EQ(t.env.at(task_env::kNumGpus), std::optional<std::string>("0")) << t.name;
  }
  o.num_gpus = 2;
  for (const PlannedTask& t : plan_or_die(o, facts()).tasks) {
    EXPECT_EQ(t.env.at(task_env::kNumGpus), std::optional<std::string>("2")) << t.name;
  }
  o.num_gpus.reset();
  for (const PlannedTask& t : plan_or_die(o, facts()).tasks) {
    ASSERT_EQ(t.env.count(task_env::kNumGpus), 1u) << t.name;  // present, to unset it
    EXPECT_EQ(t.env.at(task_env::kNumGpus), std::nullopt) << t.name;
  }
}

TEST(LaunchPlanTest, UsersJobIdAndCpuThreadsAreKeptAndNoneAdded) {
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--job_id=42", "--cpu_threads=3"},
        std::vector<std::string>{"--cpu_threads", "3", "--job_id", "42"}}) {
    LaunchOptions o = two_ps_three_workers();
    o.training_flags = flags;
    const LaunchPlan plan = plan_or_die(o, facts());
    EXPECT_EQ(plan.job_id, "");  // the summary's job_id: empty when the user gave one
    ASSERT_EQ(plan.tasks.size(), 5u);
    for (const PlannedTask& t : plan.tasks) {
      std::vector<std::string> argv = {"/opt/pstrain/bin/pstrain", "--job_name=" + t.job};
      argv.insert(argv.end(), flags.begin(), flags.end());
      EXPECT_EQ(t.argv, argv) << t.name;
    }
  }
}

TEST(LaunchPlanTest, MetricsPortIsOnePortPerTaskInPlanOrder) {
  LaunchOptions o = two_ps_three_workers();
  o.metrics_port = 9100;
  const LaunchPlan plan = plan_or_die(o, facts());
  ASSERT_EQ(plan.tasks.size(), 5u);
  for (size_t i = 0; i < plan.tasks.size(); ++i) {
    EXPECT_EQ(plan.tasks[i].argv.back(), "--metrics_port=" + std::to_string(9100 + i))
        << plan.tasks[i].name;
  }
  o.metrics_port = 0;  // each task picks a free port of its own
  for (const PlannedTask& t : plan_or_die(o, facts()).tasks) {
    EXPECT_EQ(t.argv.back(), "--metrics_port=0") << t.name;
  }
  o.metrics_port = -1;  // off: no flag at all
  for (const PlannedTask& t : plan_or_die(o, facts()).tasks) {
    for (const std::string& a : t.argv) EXPECT_EQ(a.rfind("--metrics_port", 0), std::string::npos);
  }
  o.metrics_port = 65533;  // 5 tasks need 65533..65537
  auto p = plan_launch(o, facts());
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("--metrics_port=65533"), std::string::npos)
      << p.status().message();
}

TEST(LaunchPlanTest, OnlyTheExactFlagNameCountsAsGiven) {
  LaunchOptions o = two_ps_three_workers();
  o.training_flags = {"--job_identity=x", "--cpu_threads_extra=1"};
  const LaunchPlan plan = plan_or_die(o, facts());
  EXPECT_EQ(plan.job_id, "1234567");
  ASSERT_FALSE(plan.tasks.empty());
  EXPECT_EQ(
      plan.tasks[0].argv,
      std::vector<std::string>({"/opt/pstrain/bin/pstrain", "--job_name=ps", "--job_identity=x",
                                "--cpu_threads_extra=1", "--job_id=1234567", "--cpu_threads=5"}));
}

TEST(LaunchPlanTest, CpuThreadsAreTheWorkersShareOfTheCores) {
  LaunchOptions o = two_ps_three_workers();
  o.training_flags.clear();
  for (const auto& [cores, threads] : std::vector<std::pair<unsigned, std::string>>{
           {16, "5"}, {3, "1"}, {2, "1"}, {1, "1"}, {0, "1"}, {64, "21"}}) {
    LaunchFacts f = facts();
    f.cpu_cores = cores;
    const LaunchPlan plan = plan_or_die(o, f);
    ASSERT_FALSE(plan.tasks.empty());
    EXPECT_EQ(plan.tasks.back().argv.back(), "--cpu_threads=" + threads) << cores << " cores";
  }
}

TEST(LaunchPlanTest, HostAndJobDirComeFromTheInputs) {
  LaunchOptions o = two_ps_three_workers();
  o.host = "10.0.0.7";
  LaunchFacts f = facts();
  f.job_dir = "/tmp/x/my-job";
  const LaunchPlan plan = plan_or_die(o, f);
  ASSERT_EQ(plan.tasks.size(), 5u);
  EXPECT_EQ(plan.tasks[4].address, "10.0.0.7:6003");
  EXPECT_EQ(plan.tasks[4].env.at(task_env::kJobName), std::optional<std::string>("my-job"));
  EXPECT_EQ(plan.tasks[4].env.at(task_env::kStdoutErrDir),
            std::optional<std::string>("/tmp/x/my-job"));
  EXPECT_EQ(plan.tasks[4].env.at(task_env::kWorkerHosts),
            std::optional<std::string>("10.0.0.7:6001,10.0.0.7:6002,10.0.0.7:6003"));
  EXPECT_EQ(plan.tasks[4].status_path, "/tmp/x/my-job/status-wk-2.json");
}

TEST(LaunchPlanTest, SamePlanForTheSameInputs) {
  const LaunchPlan a = plan_or_die(two_ps_three_workers(), facts());
  const LaunchPlan b = plan_or_die(two_ps_three_workers(), facts());
  ASSERT_EQ(a.tasks.size(), 5u);
  EXPECT_EQ(a, b);
  // ... and a different job id or port is a different plan (the comparison can fail).
  LaunchFacts other = facts();
  other.job_id = "7654321";
  EXPECT_NE(plan_or_die(two_ps_three_workers(), other), a);
  other = facts();
  other.ports[4] = 6004;
  EXPECT_NE(plan_or_die(two_ps_three_workers(), other), a);
}

TEST(LaunchPlanTest, BadInputIsAnErrorNotACrash) {
  LaunchOptions o = two_ps_three_workers();
  LaunchFacts f = facts();
  f.ports.pop_back();  // 4 ports for 5 tasks
  EXPECT_EQ(plan_launch(o, f).status().code(), StatusCode::kInvalidArgument);
  f = facts();
  f.ports.push_back(7000);  // 6 for 5
  EXPECT_EQ(plan_launch(o, f).status().code(), StatusCode::kInvalidArgument);
  for (int port : {0, -1, 65536}) {
    f = facts();
    f.ports[2] = port;
    EXPECT_EQ(plan_launch(o, f).status().code(), StatusCode::kInvalidArgument) << port;
  }
  f = facts();
  f.binary.clear();
  EXPECT_EQ(plan_launch(o, f).status().code(), StatusCode::kInvalidArgument);
  f = facts();
  f.job_dir.clear();
  EXPECT_EQ(plan_launch(o, f).status().code(), StatusCode::kInvalidArgument);

  o.num_ps = 0;
  auto no_ps = plan_launch(o, facts());
  EXPECT_EQ(no_ps.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_ps.status().message().find("--ps=0"), std::string::npos);
  o = two_ps_three_workers();
  o.num_workers = -1;
  auto no_workers = plan_launch(o, facts());
  EXPECT_EQ(no_workers.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_workers.status().message().find("--workers=-1"), std::string::npos);
  EXPECT_TRUE(check_launch_shape(two_ps_three_workers()).ok());
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

TEST(LaunchPlanTest, TheLaunchersSecretFileGoesToEveryTaskUnlessTheFlagsCarryOne) {
  LaunchOptions o = two_ps_three_workers();
  LaunchFacts f = facts();
  f.secret_file = "/tmp/x/job/secret";
  const LaunchPlan plan = plan_or_die(o, f);
  for (const PlannedTask& t : plan.tasks) {
    EXPECT_EQ(std::count(t.argv.begin(), t.argv.end(), "--secret_file=/tmp/x/job/secret"), 1)
        << t.name;
  }
  o.training_flags.push_back("--secret_file=/shared/s");
  const LaunchPlan given = plan_or_die(o, f);
  for (const PlannedTask& t : given.tasks) {
    EXPECT_EQ(std::count(t.argv.begin(), t.argv.end(), "--secret_file=/tmp/x/job/secret"), 0)
        << t.name;
  }
}

}  // namespace
}  // namespace pstrain
