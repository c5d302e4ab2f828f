// launch_local_job with fake tasks (shell scripts standing in for pstrain): the environment and
// arguments each task gets, the summary, failure and cancellation handling. The real binary is
// exercised by tests/integration/launch_test.cc.
#include "runtime/job/launcher.h"

#include <gtest/gtest.h>

#include "tests/temp_dir.h"

#include <sys/stat.h>
#include <unistd.h>
#include <thread>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/base/files.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;

class LauncherTest : public ::testing::Test {
 protected:
  void SetUp() override { ::unsetenv("AZ_BATCHAI_NUM_GPUS"); }
  // Writes an executable shell script standing in for the pstrain binary.
  std::string script(const std::string& body) {
    const std::string p = dir_ + "/fake-pstrain.sh";
    {
      std::ofstream f(p);
      f << "#!/bin/sh\n" << body;
    }
    EXPECT_EQ(::chmod(p.c_str(), 0755), 0);
    return p;
  }
  LaunchOptions options(const std::string& binary) {
    LaunchOptions o;
    o.pstrain_binary = binary;
    o.job_dir = dir_ + "/job";
    o.stop_grace = std::chrono::milliseconds(5000);
    o.poll_interval = std::chrono::milliseconds(20);
    return o;
  }
  static std::string contents(const std::string& p) {
    auto text = read_file(p);
    return text.ok() ? *text : std::string("<unreadable " + p + ">");
  }
  // The value of `NAME=` in a task's output (its `env` dump), or nullopt.
  static std::optional<std::string> env_line(const std::string& out, const std::string& name) {
    std::istringstream is(out);
    for (std::string line; std::getline(is, line);) {
      if (line.rfind(name + "=", 0) == 0) return line.substr(name.size() + 1);
    }
    return std::nullopt;
  }
  static nlohmann::json summary_json(const LaunchSummary& s) {
    auto text = read_file(s.summary_path);
    EXPECT_TRUE(text.ok()) << s.summary_path;
    return nlohmann::json::parse(text.ok() ? *text : "{}");
  }
  static const LaunchedTask* task(const LaunchSummary& s, const std::string& name) {
    for (const auto& t : s.tasks) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }
  static std::string state_of(const LaunchSummary& s, const std::string& name) {
    const LaunchedTask* t = task(s, name);
    return t != nullptr ? t->state : "<no task " + name + ">";
  }
  static int restarts_of(const LaunchSummary& s, const std::string& name) {
    const LaunchedTask* t = task(s, name);
    return t != nullptr ? t->restarts : -1;
  }

  testing_util::TempDir tmp_{"pstrain_launcher"};
  std::string dir_ = tmp_.path();
};

// Prints its arguments and cluster environment; workers write a final status file (through a
// temporary and a rename, as pstrain does); the chief reports an accuracy.
constexpr const char* kReportingTask = R"(
echo "ARGS: $*"
env | grep -E '^(AZ_BATCHAI_|TF_CONFIG=|PSTRAIN_STATUS_FILE=)'
if [ -n "$PSTRAIN_STATUS_FILE" ]; then
  {
    printf '{"task":"worker","index":%s,"state":"done","global_step":7,"train_steps":7,' "$AZ_BATCHAI_TASK_INDEX"
    printf '"examples_per_second":100.5,"loss":0.25'
    if [ "$AZ_BATCHAI_TASK_INDEX" = 0 ]; then printf ',"test_accuracy":0.875'; fi
    printf '}\n'
  } > "$PSTRAIN_STATUS_FILE.tmp"
  mv "$PSTRAIN_STATUS_FILE.tmp" "$PSTRAIN_STATUS_FILE"
fi
exit 0
)";

TEST_F(LauncherTest, TasksGetBatchAiEnvironmentAndTfConfig) {
  LaunchOptions o = options(script(kReportingTask));
  o.num_ps = 1;
  o.num_workers = 2;
  o.training_flags = {"--train_steps", "7", "--sync_replicas"};
  o.num_gpus = 0;
  o.sync_replicas = true;
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kSucceeded) << s->error;
  ASSERT_EQ(s->tasks.size(), 3u);
  EXPECT_EQ(s->tasks[0].name, "ps-0");
  EXPECT_EQ(s->tasks[1].name, "wk-0");
  EXPECT_EQ(s->tasks[2].name, "wk-1");

  std::vector<std::string> ps_hosts, worker_hosts;
  for (const auto& t : s->tasks) {
    ASSERT_TRUE(t.exit.has_value()) << t.name;
    EXPECT_TRUE(t.exit->success()) << t.name << " " << t.exit->to_string();
    EXPECT_EQ(t.address.rfind("127.0.0.1:", 0), 0u) << t.address;
    (t.job == "ps" ? ps_hosts : worker_hosts).push_back(t.address);
  }
  EXPECT_NE(worker_hosts[0], worker_hosts[1]);

  for (const auto& t : s->tasks) {
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.stdout_path, s->job_dir + "/stdout-" + t.name + ".txt");
    EXPECT_EQ(t.stderr_path, s->job_dir + "/stderr-" + t.name + ".txt");
    EXPECT_TRUE(fs::exists(t.stderr_path));
    const std::string out = contents(t.stdout_path);
    // Arguments: the job name, the user's flags as given, a job id; never the cluster flags.
    const std::string args =
        "ARGS: --job_name=" + t.job + " --train_steps 7 --sync_replicas --job_id=";
    EXPECT_NE(out.find(args), std::string::npos) << out;
    EXPECT_EQ(out.find("--task_index"), std::string::npos) << out;
    EXPECT_EQ(out.find("--ps_hosts"), std::string::npos) << out;
    EXPECT_EQ(out.find("--worker_hosts"), std::string::npos) << out;
    EXPECT_NE(out.find("--job_id=" + s->job_id + " "), std::string::npos) << out;
    // Each of the 2 workers gets its share of this machine's cores.
    const unsigned share = std::max(1u, std::max(1u, std::thread::hardware_concurrency()) / 2);
    EXPECT_NE(out.find(" --cpu_threads=" + std::to_string(share) + "\n"), std::string::npos) << out;

    EXPECT_EQ(env_line(out, "AZ_BATCHAI_PS_HOSTS"), ps_hosts[0]);
    EXPECT_EQ(env_line(out, "AZ_BATCHAI_WORKER_HOSTS"), worker_hosts[0] + "," + worker_hosts[1]);
    EXPECT_EQ(env_line(out, "AZ_BATCHAI_TASK_INDEX"), std::to_string(t.index));
    EXPECT_EQ(env_line(out, "AZ_BATCHAI_NUM_GPUS"), "0");
    EXPECT_EQ(env_line(out, "AZ_BATCHAI_STDOUTERR_DIR"), s->job_dir);
    EXPECT_EQ(env_line(out, "AZ_BATCHAI_JOB_NAME"), "job");
    if (t.job == "worker") {
      EXPECT_EQ(env_line(out, "PSTRAIN_STATUS_FILE"), s->job_dir + "/status-" + t.name + ".json");
    } else {
      EXPECT_EQ(env_line(out, "PSTRAIN_STATUS_FILE"), std::nullopt);
    }
    const auto tf = env_line(out, "TF_CONFIG");
    ASSERT_TRUE(tf.has_value()) << out;
    const auto j = nlohmann::json::parse(*tf);
    EXPECT_EQ(j["cluster"]["ps"], nlohmann::json(ps_hosts));
    EXPECT_EQ(j["cluster"]["worker"], nlohmann::json(worker_hosts));
    EXPECT_EQ(j["task"]["type"], t.job);
    EXPECT_EQ(j["task"]["index"], t.index);
    EXPECT_EQ(j["environment"], "cloud");
  }

  // Numbers come from the workers' final status files.
  EXPECT_EQ(s->global_step, 7);
  EXPECT_EQ(s->train_steps, 7);
  ASSERT_TRUE(s->test_accuracy.has_value());
  EXPECT_DOUBLE_EQ(*s->test_accuracy, 0.875);
  EXPECT_DOUBLE_EQ(s->examples_per_second, 201.0);
  EXPECT_TRUE(s->failed_task.empty());

  const auto j = summary_json(*s);
  EXPECT_EQ(j["state"], "succeeded");
  EXPECT_EQ(j["num_ps"], 1);
  EXPECT_EQ(j["num_workers"], 2);
  EXPECT_EQ(j["sync_replicas"], true);
  EXPECT_EQ(j["config"], nlohmann::json({"--train_steps", "7", "--sync_replicas"}));
  EXPECT_EQ(j["global_step"], 7);
  EXPECT_DOUBLE_EQ(j["test_accuracy"].get<double>(), 0.875);
  EXPECT_DOUBLE_EQ(j["examples_per_second"].get<double>(), 201.0);
  EXPECT_GE(j["wall_seconds"].get<double>(), 0.0);
  ASSERT_EQ(j["tasks"].size(), 3u);
  EXPECT_EQ(j["tasks"][2]["name"], "wk-1");
  EXPECT_EQ(j["tasks"][2]["job"], "worker");
  EXPECT_EQ(j["tasks"][2]["index"], 1);
  EXPECT_EQ(j["tasks"][2]["exit_code"], 0);
  EXPECT_EQ(j["tasks"][2]["address"], worker_hosts[1]);
  EXPECT_EQ(j["tasks"][2]["stdout"], s->job_dir + "/stdout-wk-1.txt");

  const std::string text = describe_launch(*s);
  EXPECT_NE(text.find("succeeded"), std::string::npos) << text;
  EXPECT_NE(text.find("0.8750"), std::string::npos) << text;
  EXPECT_NE(text.find(s->summary_path), std::string::npos) << text;
  // Fits an 80-column terminal (the summary path aside, which is as long as the user made it).
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("summary: ", 0) != 0) {
      EXPECT_LE(line.size(), 80u) << line;
    }
  }
}

TEST_F(LauncherTest, UserJobIdIsKeptAndParentNumGpusIsNotLeaked) {
  ASSERT_EQ(::setenv("AZ_BATCHAI_NUM_GPUS", "7", 1), 0);
  LaunchOptions o = options(script(kReportingTask));
  o.num_ps = 2;
  o.num_workers = 1;
  o.training_flags = {"--job_id=42", "--cpu_threads=3"};
  auto s = launch_local_job(o, nullptr);
  ::unsetenv("AZ_BATCHAI_NUM_GPUS");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kSucceeded) << s->error;
  ASSERT_EQ(s->tasks.size(), 3u);
  EXPECT_EQ(s->tasks[1].name, "ps-1");
  const std::string out = contents(s->tasks[1].stdout_path);
  // The user's job id and thread count are kept, and no others are added; the launcher's
  // fresh job secret is (docs/security.md).
  EXPECT_NE(out.find("ARGS: --job_name=ps --job_id=42 --cpu_threads=3 --secret_file=" + s->job_dir +
                     "/secret\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(env_line(out, "AZ_BATCHAI_NUM_GPUS"), std::nullopt) << out;
  EXPECT_EQ(env_line(out, "AZ_BATCHAI_TASK_INDEX"), "1");
}

TEST_F(LauncherTest, AFailedChiefStopsTheRest) {
  // wk-0, the chief, fails at once (no restarts); the others would run for a minute.
  LaunchOptions o = options(script(R"(
if [ "$AZ_BATCHAI_TASK_INDEX" = 0 ] && [ -n "$PSTRAIN_STATUS_FILE" ]; then
  echo "some earlier line" >&2
  echo "E cannot read the training data" >&2
  exit 3
fi
exec sleep 60
)"));
  o.num_ps = 1;
  o.num_workers = 2;
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kFailed);
  EXPECT_EQ(s->failed_task, "wk-0");
  EXPECT_NE(s->error.find("wk-0"), std::string::npos) << s->error;
  EXPECT_NE(s->error.find("exited with code 3"), std::string::npos) << s->error;
  EXPECT_NE(s->error.find(s->job_dir + "/stderr-wk-0.txt"), std::string::npos) << s->error;
  EXPECT_EQ(s->error.find('\n'), std::string::npos) << s->error;
  EXPECT_EQ(s->failed_task_stderr,
            std::vector<std::string>({"some earlier line", "E cannot read the training data"}));
  for (const char* name : {"ps-0", "wk-1"}) {
    const LaunchedTask* t = task(*s, name);
    ASSERT_NE(t, nullptr);
    ASSERT_TRUE(t->exit.has_value()) << name;
    EXPECT_EQ(*t->exit, ExitStatus::signaled(SIGTERM)) << name << " " << t->exit->to_string();
  }
  const auto j = summary_json(*s);
  EXPECT_EQ(j["state"], "failed");
  EXPECT_EQ(j["failed_task"], "wk-0");
  EXPECT_EQ(j["failed_task_stderr"][1], "E cannot read the training data");
  EXPECT_EQ(j["tasks"][1]["exit_code"], 3);
  EXPECT_EQ(j["tasks"][0]["signal"], SIGTERM);
  EXPECT_EQ(j["tasks"][0]["signal_name"], "SIGTERM");
  EXPECT_TRUE(j["test_accuracy"].is_null());
  EXPECT_NE(describe_launch(*s).find("failed"), std::string::npos);
}

TEST_F(LauncherTest, ABackupWorkerThatFailsIsLeftBehindAndTheJobGoesOn) {
  LaunchOptions o = options(script(R"(
if [ "$AZ_BATCHAI_TASK_INDEX" = 1 ] && [ -n "$PSTRAIN_STATUS_FILE" ]; then exit 3; fi
sleep 0.5
)"));
  o.num_ps = 1;
  o.num_workers = 2;
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kSucceeded) << s->error;
  EXPECT_EQ(state_of(*s, "wk-1"), "failed");
  EXPECT_EQ(state_of(*s, "wk-0"), "succeeded");
  EXPECT_EQ(state_of(*s, "ps-0"), "succeeded");
  ASSERT_EQ(s->warnings.size(), 1u);
  EXPECT_EQ(s->warnings[0], "wk-1 exited with code 3; the job went on without it (see " +
                                s->job_dir + "/stderr-wk-1.txt)");
  EXPECT_NE(describe_launch(*s).find("1 warning"), std::string::npos) << describe_launch(*s);
  const auto j = summary_json(*s);
  EXPECT_EQ(j["warnings"][0], s->warnings[0]);
}

TEST_F(LauncherTest, MaxRestartsStartsAFailedTaskAgainWithItsOutputAppended) {
  // wk-1's first run fails; its second (a marker file says which) succeeds.
  LaunchOptions o = options(script(R"(
if [ "$AZ_BATCHAI_TASK_INDEX" = 1 ] && [ -n "$PSTRAIN_STATUS_FILE" ]; then
  if [ ! -e "$AZ_BATCHAI_STDOUTERR_DIR/wk-1-ran" ]; then
    touch "$AZ_BATCHAI_STDOUTERR_DIR/wk-1-ran"
    echo "first run" >&2
    exit 1
  fi
  echo "second run" >&2
fi
sleep 0.5
)"));
  o.num_ps = 1;
  o.num_workers = 2;
  o.max_restarts = 2;
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kSucceeded) << s->error;
  const LaunchedTask* wk1 = task(*s, "wk-1");
  ASSERT_NE(wk1, nullptr);
  EXPECT_EQ(wk1->state, "succeeded");
  EXPECT_EQ(wk1->restarts, 1);
  EXPECT_EQ(restarts_of(*s, "wk-0"), 0);
  EXPECT_EQ(s->warnings, std::vector<std::string>{"wk-1 exited with code 1; restarted (1 of 2)"});
  EXPECT_EQ(contents(wk1->stderr_path), "first run\nsecond run\n");
  EXPECT_EQ(summary_json(*s)["tasks"][2]["restarts"], 1);
}

TEST_F(LauncherTest, AConfigurationErrorIsNeverRestarted) {
  LaunchOptions o = options(script(R"(
if [ "$AZ_BATCHAI_TASK_INDEX" = 1 ] && [ -n "$PSTRAIN_STATUS_FILE" ]; then exit 2; fi
exec sleep 60
)"));
  o.num_ps = 1;
  o.num_workers = 2;
  o.max_restarts = 3;
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kFailed);
  EXPECT_EQ(s->failed_task, "wk-1");
  EXPECT_EQ(restarts_of(*s, "wk-1"), 0);
  EXPECT_TRUE(s->warnings.empty());
}

TEST_F(LauncherTest, ATaskIgnoringSigtermIsKilledAfterTheGrace) {
  // The worker fails once the PS ignores SIGTERM (bounded wait for the PS's marker file).
  LaunchOptions o = options(script(R"(
if [ -n "$PSTRAIN_STATUS_FILE" ]; then
  i=0
  while [ ! -e "$AZ_BATCHAI_STDOUTERR_DIR/ps-ignores-sigterm" ] && [ $i -lt 3000 ]; do
    sleep 0.01; i=$((i+1))
  done
  exit 1
fi
trap '' TERM
touch "$AZ_BATCHAI_STDOUTERR_DIR/ps-ignores-sigterm"
exec sleep 60
)"));
  o.num_ps = 1;
  o.num_workers = 1;
  o.stop_grace = std::chrono::milliseconds(200);
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kFailed);
  EXPECT_EQ(s->failed_task, "wk-0");
  ASSERT_TRUE(s->tasks[0].exit.has_value());
  EXPECT_EQ(*s->tasks[0].exit, ExitStatus::signaled(SIGKILL));
}

TEST_F(LauncherTest, APsThatDoesNotExitAfterTheWorkersIsKilled) {
  LaunchOptions o = options(script(R"(
if [ -n "$PSTRAIN_STATUS_FILE" ]; then exit 0; fi
exec sleep 60
)"));
  o.num_ps = 1;
  o.num_workers = 2;
  o.ps_exit_timeout = std::chrono::milliseconds(200);
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kFailed);
  EXPECT_EQ(s->failed_task, "ps-0");
  EXPECT_NE(s->error.find("did not exit"), std::string::npos) << s->error;
  ASSERT_TRUE(s->tasks[0].exit.has_value());
  EXPECT_EQ(*s->tasks[0].exit, ExitStatus::signaled(SIGKILL));
  EXPECT_TRUE(s->tasks[1].exit->success());
  EXPECT_TRUE(s->tasks[2].exit->success());
}

TEST_F(LauncherTest, ATaskThatCannotStartStopsTheTasksStartedBeforeIt) {
  // wk-0's stderr file cannot be created (a directory is in the way): ps-0 is already running
  // when wk-0 fails to start, and must be stopped; no worker starts.
  LaunchOptions o = options(script("exec sleep 60\n"));
  o.num_ps = 1;
  o.num_workers = 2;
  ASSERT_TRUE(make_directories(o.job_dir + "/stderr-wk-0.txt", "test").ok());
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kFailed);
  EXPECT_EQ(s->failed_task, "wk-0");
  EXPECT_EQ(s->error.rfind("cannot start wk-0: ", 0), 0u) << s->error;
  ASSERT_EQ(s->tasks.size(), 3u);
  EXPECT_TRUE(s->tasks[0].started);
  ASSERT_TRUE(s->tasks[0].exit.has_value());
  EXPECT_EQ(*s->tasks[0].exit, ExitStatus::signaled(SIGTERM)) << s->tasks[0].exit->to_string();
  for (size_t i : {1u, 2u}) {
    EXPECT_FALSE(s->tasks[i].started) << s->tasks[i].name;
    EXPECT_FALSE(s->tasks[i].exit.has_value()) << s->tasks[i].name;
  }
  const auto j = summary_json(*s);
  EXPECT_EQ(j["state"], "failed");
  EXPECT_EQ(j["tasks"][1]["status"], "not started");
}

TEST_F(LauncherTest, CancelStopsEveryTask) {
  LaunchOptions o = options(script("exec sleep 60\n"));
  std::atomic<bool> cancel{true};  // as if Ctrl-C came right after the tasks started
  o.cancel = &cancel;
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kCancelled);
  ASSERT_EQ(s->tasks.size(), 3u);
  for (const auto& t : s->tasks) {
    EXPECT_TRUE(t.started) << t.name;
    ASSERT_TRUE(t.exit.has_value()) << t.name;
    EXPECT_EQ(*t.exit, ExitStatus::signaled(SIGTERM)) << t.name;
  }
  EXPECT_EQ(summary_json(*s)["state"], "cancelled");
}

TEST_F(LauncherTest, MalformedStatusFilesAreIgnored) {
  LaunchOptions o = options(script(R"(
if [ -n "$PSTRAIN_STATUS_FILE" ]; then printf '{"state": "runn' > "$PSTRAIN_STATUS_FILE"; fi
exit 0
)"));
  o.num_workers = 1;
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kSucceeded) << s->error;
  EXPECT_FALSE(s->test_accuracy.has_value());
  EXPECT_EQ(s->global_step, 0);
  EXPECT_EQ(s->examples_per_second, 0.0);
}

TEST_F(LauncherTest, StaleFilesOfAnEarlierRunInTheJobDirAreRemoved) {
  LaunchOptions o = options(script("exit 0\n"));  // writes no status file
  o.num_workers = 1;
  ASSERT_TRUE(make_directories(o.job_dir, "test").ok());
  {
    std::ofstream f(o.job_dir + "/status-wk-0.json");
    f << R"({"state":"done","global_step":99,"test_accuracy":0.99})"
      << "\n";
  }
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kSucceeded) << s->error;
  EXPECT_FALSE(s->test_accuracy.has_value());
  EXPECT_EQ(s->global_step, 0);
}

TEST_F(LauncherTest, DefaultJobDirIsTimestampedUnderJobs) {
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir_);
  LaunchOptions o = options(script("exit 0\n"));
  o.job_dir.clear();
  o.num_workers = 1;
  auto a = launch_local_job(o, nullptr);
  auto b = launch_local_job(o, nullptr);
  fs::current_path(old_cwd);
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_NE(a->job_dir, b->job_dir);
  for (const auto& s : {*a, *b}) {
    EXPECT_EQ(fs::path(s.job_dir).parent_path(), fs::path(dir_) / "jobs");
    EXPECT_EQ(fs::path(s.job_dir).filename().string().rfind("job-", 0), 0u) << s.job_dir;
    EXPECT_TRUE(fs::exists(s.summary_path));
  }
}

TEST_F(LauncherTest, BadOptionsStartNothing) {
  LaunchOptions o = options(dir_ + "/no-such-pstrain");
  auto s = launch_local_job(o, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("no-such-pstrain"), std::string::npos);
  EXPECT_FALSE(fs::exists(o.job_dir));

  o = options(script("exit 0\n"));
  o.num_ps = 0;
  EXPECT_EQ(launch_local_job(o, nullptr).status().code(), StatusCode::kInvalidArgument);
  o.num_ps = 1;
  o.num_workers = 0;
  EXPECT_EQ(launch_local_job(o, nullptr).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(o.job_dir));
}

TEST_F(LauncherTest, SummaryJsonHasItsKeysInTheDocumentedOrder) {
  LaunchOptions o = options(script(kReportingTask));
  o.training_flags = {"--train_steps", "7"};
  o.pstrain_version = "9.8.7";
  o.model = "cnn";
  o.summary_json = dir_ + "/my-summary.json";
  auto s = launch_local_job(o, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ(s->state, LaunchState::kSucceeded) << s->error;
  const std::string text = contents(s->summary_path);
  EXPECT_EQ(contents(o.summary_json), text);  // the job's summary, also at --summary_json
  const auto j = nlohmann::ordered_json::parse(text);
  std::vector<std::string> keys;
  for (const auto& [key, value] : j.items()) keys.push_back(key);
  const std::vector<std::string> expected = {
      "summary_version", "state",       "error",        "failed_task",   "failed_task_stderr",
      "pstrain_version", "start_time",  "wall_seconds", "job_dir",       "job_id",
      "model",           "num_ps",      "num_workers",  "sync_replicas", "config",
      "global_step",     "train_steps", "final_loss",   "test_accuracy", "examples_per_second",
      "tasks",           "warnings"};
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(j["summary_version"], kSummaryVersion);
  EXPECT_EQ(j["pstrain_version"], "9.8.7");
  EXPECT_EQ(j["model"], "cnn");
  EXPECT_TRUE(j["error"].is_null());
  EXPECT_EQ(j["final_loss"], 0.25);  // the chief's status file
  EXPECT_EQ(j["test_accuracy"], 0.875);
  // "2026-11-30T10:12:45Z"
  const std::string start = j["start_time"];
  ASSERT_EQ(start.size(), 20u) << start;
  EXPECT_EQ(start[4], '-');
  EXPECT_EQ(start[10], 'T');
  EXPECT_EQ(start[19], 'Z');
  std::vector<std::string> task_keys;
  for (const auto& [key, value] : j["tasks"][1].items()) task_keys.push_back(key);
  EXPECT_EQ(task_keys,
            (std::vector<std::string>{"name", "job", "index", "address", "started", "state",
                                      "reported_state", "status", "exit_code", "signal",
                                      "signal_name", "stdout", "stderr", "restarts"}));
  EXPECT_EQ(j["tasks"][0]["state"], "succeeded");
  EXPECT_TRUE(j["tasks"][0]["reported_state"].is_null());  // a PS has no status file
  EXPECT_EQ(j["tasks"][1]["reported_state"], "done");
}

TEST_F(LauncherTest, ACancelStopsTheWorkersFirstAndRecordsEveryTasksState) {
  // Workers record "cancelled" and exit 143 on SIGTERM, as pstrain's do; the PS exits 143 too.
  // A worker checks that the PS is still up when it stops (the launcher stops workers first).
  LaunchOptions o = options(script(R"(
stop() {
  if [ -e "$AZ_BATCHAI_STDOUTERR_DIR/ps-up" ]; then s=cancelled; else s=ps-gone; fi
  printf '{"state":"%s"}' "$s" > "$PSTRAIN_STATUS_FILE.tmp"
  mv "$PSTRAIN_STATUS_FILE.tmp" "$PSTRAIN_STATUS_FILE"
  exit 143
}
if [ -n "$PSTRAIN_STATUS_FILE" ]; then
  trap stop TERM
  printf '{"state":"running"}' > "$PSTRAIN_STATUS_FILE"
else
  trap 'rm -f "$AZ_BATCHAI_STDOUTERR_DIR/ps-up"; exit 143' TERM
  touch "$AZ_BATCHAI_STDOUTERR_DIR/ps-up"
fi
while :; do sleep 0.05; done
)"));
  std::atomic<bool> cancel{false};
  std::atomic<int> signal{0};
  o.cancel = &cancel;
  o.cancel_signal = &signal;
  std::thread canceller([&] {
    // Cancel once both workers report running (bounded by a deadline).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      const bool up =
          contents(o.job_dir + "/status-wk-0.json").find("running") != std::string::npos &&
          contents(o.job_dir + "/status-wk-1.json").find("running") != std::string::npos &&
          fs::exists(o.job_dir + "/ps-up");
      if (up) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    signal.store(SIGINT);
    cancel.store(true);
  });
  auto s = launch_local_job(o, nullptr);
  canceller.join();
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kCancelled);
  EXPECT_EQ(s->error, "interrupted by SIGINT: every task was stopped");
  ASSERT_EQ(s->tasks.size(), 3u);
  for (const auto& t : s->tasks) {
    ASSERT_TRUE(t.exit.has_value()) << t.name;
    EXPECT_EQ(*t.exit, ExitStatus::exited(143)) << t.name << " " << t.exit->to_string();
    EXPECT_EQ(t.state, "stopped") << t.name;
  }
  EXPECT_EQ(s->tasks[1].reported_state, "cancelled");
  EXPECT_EQ(s->tasks[2].reported_state, "cancelled");
  const auto j = summary_json(*s);
  EXPECT_EQ(j["state"], "cancelled");
  EXPECT_EQ(j["tasks"][1]["reported_state"], "cancelled");
}

TEST_F(LauncherTest, ACancelIsReportedOnceAndNotAsAFailure) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  LaunchOptions o = options(script("exec sleep 60\n"));
  std::atomic<bool> cancel{true};
  o.cancel = &cancel;
  auto s = launch_local_job(o, out);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->state, LaunchState::kCancelled);
  std::rewind(out);
  std::string text;
  for (int c; (c = std::fgetc(out)) != EOF;) text += static_cast<char>(c);
  std::fclose(out);
  // The launcher's own output says nothing of a failure; describe_launch says "cancelled" once.
  EXPECT_EQ(text.find("cancelled"), std::string::npos) << text;
  EXPECT_EQ(text.find("fail"), std::string::npos) << text;
  const std::string described = describe_launch(*s);
  EXPECT_EQ(described.find("cancelled"), described.rfind("cancelled")) << described;
  EXPECT_EQ(described.rfind("job cancelled after ", 0), 0u) << described;
}

TEST(TaskStateTest, FromHowTheTaskEnded) {
  EXPECT_EQ(task_state(std::nullopt, false), "not started");
  EXPECT_EQ(task_state(ExitStatus::exited(0), true), "succeeded");
  EXPECT_EQ(task_state(ExitStatus::exited(1), true), "failed");
  EXPECT_EQ(task_state(ExitStatus::exited(2), true), "failed");
  EXPECT_EQ(task_state(ExitStatus::exited(130), true), "stopped");
  EXPECT_EQ(task_state(ExitStatus::exited(143), true), "stopped");
  EXPECT_EQ(task_state(ExitStatus::exited(129), true), "stopped");
  EXPECT_EQ(task_state(ExitStatus::exited(137), true), "failed");
  EXPECT_EQ(task_state(ExitStatus::signaled(SIGTERM), true), "stopped");
  EXPECT_EQ(task_state(ExitStatus::signaled(SIGINT), true), "stopped");
  EXPECT_EQ(task_state(ExitStatus::signaled(SIGKILL), true), "killed");
  EXPECT_EQ(task_state(ExitStatus::signaled(SIGSEGV), true), "failed");
}

TEST(LaunchStateTest, Names) {
  EXPECT_STREQ(launch_state_name(LaunchState::kSucceeded), "succeeded");
  EXPECT_STREQ(launch_state_name(LaunchState::kFailed), "failed");
  EXPECT_STREQ(launch_state_name(LaunchState::kCancelled), "cancelled");
}

}  // namespace
}  // namespace pstrain
