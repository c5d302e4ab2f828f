// `pstrain launch` end to end: the real binary launching real PS and worker processes.
// Every run is bounded: the launcher is a Subprocess waited on with a deadline, killed (its
// tasks die with it: they get SIGKILL when the launcher dies) and failed at the deadline.
#include <gtest/gtest.h>

#include <unistd.h>
#include "tests/temp_dir.h"
#include "tests/tiny_mnist.h"

#include <chrono>
#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>
#include "runtime/base/files.h"
#include "runtime/job/process.h"
#include "runtime/job/task_env.h"
#include "tests/integration/paths.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

using testing_util::kFashionMnist;
using testing_util::kPstrain;

class LaunchTest : public ::testing::Test {
 protected:
  void SetUp() override { job_dir_ = dir_ + "/job"; }

  Result<Subprocess> start_launch(const std::vector<std::string>& args) {
    SubprocessOptions o;
    o.argv = {kPstrain, "launch"};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stdout_path = dir_ + "/launch-stdout.txt";
    o.stderr_path = dir_ + "/launch-stderr.txt";
    o.stdin_from_dev_null = true;
    o.kill_on_parent_death = true;
    return Subprocess::spawn(o);
  }
  // Runs `pstrain launch args...` to completion within `timeout`; kills it and fails the test
  // at the deadline.
  ExitStatus run_launch(const std::vector<std::string>& args, seconds timeout) {
    auto p = start_launch(args);
    EXPECT_TRUE(p.ok()) << p.status().message();
    if (!p.ok()) return {};
    return finish(*p, timeout);
  }
  ExitStatus finish(Subprocess& p, seconds timeout) {
    auto st = p.wait_for(timeout);
    if (!st.ok()) {
      ADD_FAILURE() << "pstrain launch did not finish in time: " << st.status().message()
                    << "\nstderr:\n"
                    << text(dir_ + "/launch-stderr.txt");
      return p.kill();
    }
    return *st;
  }
  static std::string text(const std::string& path) {
    auto t = read_file(path);
    return t.ok() ? *t : std::string("<cannot read " + path + ">");
  }
  nlohmann::json summary() const {
    auto t = read_file(job_dir_ + "/summary.json");
    EXPECT_TRUE(t.ok()) << "no summary.json in " << job_dir_;
    const auto j = nlohmann::json::parse(t.ok() ? *t : "{}", nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "summary.json is not JSON";
    return j.is_discarded() ? nlohmann::json::object() : j;
  }
  std::string logs() const { return text(dir_ + "/launch-stderr.txt"); }
  void cancel_a_running_job(int signal);
  ExitStatus kill_worker_during(int index, const std::vector<std::string>& extra);
  // Everything the launcher printed, stdout then stderr.
  std::string output() const {
    return text(dir_ + "/launch-stdout.txt") + text(dir_ + "/launch-stderr.txt");
  }
  // A valid data directory (raw IDX files) of `train` training and 2 test examples, 28x28.
  std::string tiny_data_dir(int train) const {
    const std::string d = dir_ + "/tiny-data";
    fs::create_directories(d);
    return testing_util::tiny_mnist_dir(d, train);
  }
  static int count(const std::string& haystack, const std::string& needle) {
    int n = 0;
    for (size_t at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + 1)) {
      ++n;
    }
    return n;
  }

  testing_util::TempDir tmp_{"pstrain_launch"};
  std::string dir_ = tmp_.path();
  std::string job_dir_;
};

TEST_F(LaunchTest, SyncJobSucceeds) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  const ExitStatus st =
      run_launch({"--ps", "1", "--workers", "2", "--sync_replicas", "--train_steps", "60",
                  "--num_gpus", "0", "--job_dir", job_dir_},
                 seconds(240));
  ASSERT_EQ(st, ExitStatus::exited(0)) << st.to_string() << "\n" << logs();

  const auto j = summary();
  EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump(2);
  EXPECT_EQ(j.value("num_ps", 0), 1);
  EXPECT_EQ(j.value("num_workers", 0), 2);
  EXPECT_EQ(j.value("sync_replicas", false), true);
  EXPECT_EQ(j.value("global_step", 0), 60);
  // The launcher's own flags are not passed on.
  EXPECT_EQ(j["config"],
            nlohmann::json({"--sync_replicas", "--train_steps", "60", "--num_gpus", "0"}));
  ASSERT_TRUE(j.contains("test_accuracy") && j["test_accuracy"].is_number()) << j.dump(2);
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.5);
  EXPECT_GT(j.value("examples_per_second", 0.0), 0.0);
  EXPECT_GT(j.value("wall_seconds", 0.0), 0.0);
  ASSERT_EQ(j["tasks"].size(), 3u) << j.dump(2);
  for (const auto& t : j["tasks"]) {
    const std::string name = t.value("name", "");
    EXPECT_EQ(t.value("exit_code", -1), 0) << name << ": " << t.dump();
    EXPECT_TRUE(fs::exists(t.value("stdout", ""))) << name;
    EXPECT_TRUE(fs::exists(t.value("stderr", ""))) << name;
  }
  for (const char* name : {"stdout-ps-0.txt", "stderr-ps-0.txt", "stdout-wk-0.txt",
                           "stderr-wk-0.txt", "stdout-wk-1.txt", "stderr-wk-1.txt"}) {
    EXPECT_TRUE(fs::exists(job_dir_ + "/" + name)) << name;
  }
  const std::string chief = text(job_dir_ + "/stdout-wk-0.txt");
  EXPECT_NE(chief.find("test accuracy"), std::string::npos) << chief;
  // Each worker's metrics file: step records, and for the chief the evaluations, whose test
  // accuracy is the job's; the chart drawn from them.
  for (const char* name : {"wk-0", "wk-1"}) {
    std::istringstream lines(text(job_dir_ + "/metrics-" + name + ".jsonl"));
    int steps = 0;
    std::optional<double> test_accuracy;
    for (std::string line; std::getline(lines, line);) {
      auto r = parse_metrics_line(line);
      ASSERT_TRUE(r.has_value()) << name << ": " << line;
      if (r->kind == "step") ++steps;
      if (r->kind == "eval" && r->split == "test") test_accuracy = r->accuracy;
    }
    EXPECT_GE(steps, 2) << name;  // the first step and the last
    if (std::string(name) == "wk-0") {
      ASSERT_TRUE(test_accuracy.has_value());
      EXPECT_NEAR(*test_accuracy, j["test_accuracy"].get<double>(), 1e-4);
    } else {
      EXPECT_FALSE(test_accuracy.has_value());  // only the chief evaluates
    }
  }
  const std::string chart = text(job_dir_ + "/chart.svg");
  EXPECT_EQ(chart.rfind("<?xml", 0), 0u) << chart.substr(0, 200);
  // wk-0's and wk-1's loss; the chief's test and validation accuracy.
  EXPECT_EQ(count(chart, "<polyline"), 4);
  const std::string out = text(dir_ + "/launch-stdout.txt");
  EXPECT_NE(out.find("succeeded"), std::string::npos) << out;
  EXPECT_NE(out.find("summary.json"), std::string::npos) << out;
}

TEST_F(LaunchTest, FailingWorkersFailTheJobAndStopThePs) {
  // One training example for two workers: worker 1 has none to train on and fails.
  const ExitStatus st =
      run_launch({"--ps", "1", "--workers", "2", "--train_steps", "10", "--num_gpus", "0",
                  "--data_dir=" + tiny_data_dir(1), "--validation_size=0", "--job_dir", job_dir_},
                 seconds(120));
  ASSERT_EQ(st, ExitStatus::exited(1)) << st.to_string() << "\n" << logs();
  const auto j = summary();
  EXPECT_EQ(j.value("state", ""), "failed") << j.dump(2);
  const std::string failed = j.value("failed_task", "");
  EXPECT_EQ(failed, "wk-1") << j.dump(2);
  EXPECT_NE(logs().find(failed), std::string::npos) << logs();
  EXPECT_NE(logs().find("none to train on"), std::string::npos) << logs();  // the stderr tail
  EXPECT_EQ(j["tasks"][2].value("state", ""), "failed") << j.dump(2);
  EXPECT_EQ(j["tasks"][2].value("reported_state", ""), "failed") << j.dump(2);
  ASSERT_EQ(j["tasks"].size(), 3u) << j.dump(2);
  for (const auto& t : j["tasks"]) {
    // Every task was reaped: an exit code or a signal is recorded.
    EXPECT_TRUE(t.contains("exit_code") || t.contains("signal")) << t.dump();
  }
  const auto& ps = j["tasks"][0];
  EXPECT_EQ(ps.value("name", ""), "ps-0");
  EXPECT_FALSE(ps.contains("exit_code") && ps["exit_code"] == 0)
      << "the PS cannot have succeeded: " << ps.dump();
}

// Starts a job, waits (bounded) until both workers train, sends `signal` to the launcher.
void LaunchTest::cancel_a_running_job(int signal) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  auto p = start_launch({"--ps", "1", "--workers", "2", "--train_steps", "1000000", "--num_gpus",
                         "0", "--job_dir", job_dir_});
  ASSERT_TRUE(p.ok()) << p.status().message();
  // Wait (bounded) until both workers report training, then interrupt the launcher.
  const auto deadline = std::chrono::steady_clock::now() + seconds(120);
  bool running = false;
  while (!running && p->running() && std::chrono::steady_clock::now() < deadline) {
    running = true;
    for (const char* status : {"/status-wk-0.json", "/status-wk-1.json"}) {
      auto t = read_file(job_dir_ + status);
      running = running && t.ok() && t->find("\"running\"") != std::string::npos;
    }
    if (!running) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    p->poll();
  }
  ASSERT_TRUE(running) << "the chief never reported training\n" << logs();
  ASSERT_EQ(::kill(p->pid(), signal), 0);
  const ExitStatus st = finish(*p, seconds(60));
  EXPECT_EQ(st, ExitStatus::exited(130)) << st.to_string() << "\n" << logs();
  const auto j = summary();
  EXPECT_EQ(j.value("state", ""), "cancelled") << j.dump(2);
  EXPECT_EQ(j.value("error", ""),
            "interrupted by " + signal_name(signal) + ": every task was stopped");
  ASSERT_EQ(j["tasks"].size(), 3u) << j.dump(2);
  for (const auto& t : j["tasks"]) {
    // Stopped on request, not failed: the PS and the workers exit 143 on the launcher's SIGTERM.
    EXPECT_EQ(t.value("state", ""), "stopped") << t.dump();
    EXPECT_EQ(t["exit_code"], 143) << t.dump();
    if (t.value("job", "") == "worker") {
      EXPECT_EQ(t.value("reported_state", ""), "cancelled") << t.dump();
    }
  }
  for (const char* status : {"/status-wk-0.json", "/status-wk-1.json"}) {
    const std::string st_text = text(job_dir_ + status);
    EXPECT_NE(st_text.find("\"cancelled\""), std::string::npos) << status << ": " << st_text;
  }
  // Reported once, as a cancel: no failure, no error in the PS log.
  const std::string out = output();
  EXPECT_EQ(count(out, "cancelled"), 1) << out;
  EXPECT_EQ(out.find("fail"), std::string::npos) << out;
  EXPECT_EQ(text(job_dir_ + "/stderr-ps-0.txt").find("\nE "), std::string::npos)
      << text(job_dir_ + "/stderr-ps-0.txt");
}

// The pid of the running task whose status file is `status_path` (its environment names it:
// PSTRAIN_STATUS_FILE), or -1.
pid_t pid_of_task(const std::string& status_path) {
  const std::string wanted = std::string("PSTRAIN_STATUS_FILE=") + status_path;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto env = read_file(entry.path().string() + "/environ");
    if (!env.ok()) continue;
    std::string_view rest = *env;
    while (!rest.empty()) {
      const size_t end = rest.find('\0');
      if (rest.substr(0, end) == wanted) return static_cast<pid_t>(std::stol(name));
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end + 1);
    }
  }
  return -1;
}

// Starts a job with `extra` flags, waits (bounded) until worker `index` has trained a few
// steps, and kills it with SIGKILL. Returns the launcher's exit.
ExitStatus LaunchTest::kill_worker_during(int index, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--ps",
                                   "1",
                                   "--workers",
                                   "2",
                                   "--num_gpus",
                                   "0",
                                   "--train_steps",
                                   "600",
                                   "--heartbeat_timeout_s=2",
                                   "--job_dir",
                                   job_dir_};
  args.insert(args.end(), extra.begin(), extra.end());
  auto p = start_launch(args);
  EXPECT_TRUE(p.ok()) << p.status().message();
  if (!p.ok()) return {};
  const std::string status = job_dir_ + "/status-wk-" + std::to_string(index) + ".json";
  const auto deadline = std::chrono::steady_clock::now() + seconds(120);
  pid_t victim = -1;
  while (victim < 0 && p->running() && std::chrono::steady_clock::now() < deadline) {
    auto t = read_file(status);
    if (t.ok() && t->find("\"running\"") != std::string::npos) victim = pid_of_task(status);
    if (victim < 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    p->poll();
  }
  EXPECT_GT(victim, 0) << "worker " << index << " never reported training\n" << logs();
  if (victim > 0) {
    EXPECT_EQ(::kill(victim, SIGKILL), 0);
  }
  return finish(*p, seconds(180));
}

TEST_F(LaunchTest, ABackupWorkerKilledLeavesTheJobToSucceedWithAWarning) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  const ExitStatus st = kill_worker_during(1, {});
  ASSERT_EQ(st, ExitStatus::exited(0)) << st.to_string() << "\n" << logs();
  const auto j = summary();
  EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump(2);
  ASSERT_EQ(j["tasks"].size(), 3u) << j.dump(2);
  EXPECT_EQ(j["tasks"][0].value("state", ""), "succeeded") << j.dump(2);  // the PS
  EXPECT_EQ(j["tasks"][1].value("state", ""), "succeeded") << j.dump(2);  // the chief
  EXPECT_EQ(j["tasks"][2].value("state", ""), "killed") << j.dump(2);
  ASSERT_EQ(j["warnings"].size(), 1u) << j.dump(2);
  EXPECT_NE(j["warnings"][0].get<std::string>().find(
                "wk-1 killed by signal 9 (SIGKILL); the job went on"),
            std::string::npos)
      << j.dump(2);
  EXPECT_EQ(j.value("global_step", 0), 600) << j.dump(2);
  EXPECT_NE(output().find("the job went on without it"), std::string::npos) << output();
  EXPECT_NE(text(job_dir_ + "/stdout-ps-0.txt").find("worker(s) 1 were lost"), std::string::npos)
      << text(job_dir_ + "/stdout-ps-0.txt");
}

TEST_F(LaunchTest, MaxRestartsStartsAKilledWorkerAgainAndItRejoins) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  const ExitStatus st = kill_worker_during(1, {"--max_restarts", "1"});
  ASSERT_EQ(st, ExitStatus::exited(0)) << st.to_string() << "\n" << logs();
  const auto j = summary();
  EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump(2);
  ASSERT_EQ(j["tasks"].size(), 3u) << j.dump(2);
  for (const auto& t : j["tasks"]) EXPECT_EQ(t.value("state", ""), "succeeded") << t.dump();
  EXPECT_EQ(j["tasks"][2].value("restarts", -1), 1) << j.dump(2);
  EXPECT_EQ(j["tasks"][1].value("restarts", -1), 0) << j.dump(2);
  ASSERT_EQ(j["warnings"].size(), 1u) << j.dump(2);
  EXPECT_NE(j["warnings"][0].get<std::string>().find(
                "wk-1 killed by signal 9 (SIGKILL); restarted (1 of 1)"),
            std::string::npos)
      << j.dump(2);
  // The second run joined the job and finished it: its status file says so, and its stderr
  // holds both runs (appended).
  EXPECT_EQ(j["tasks"][2].value("reported_state", ""), "done") << j.dump(2);
  EXPECT_EQ(count(text(job_dir_ + "/stderr-wk-1.txt"), "worker 1 in a cluster"), 2)
      << text(job_dir_ + "/stderr-wk-1.txt");
}

// The chief killed for good: the job goes on; worker 1 takes over its duties once the PS
// declares it lost (the final checkpoint, the evaluation), and the job succeeds with a warning.
TEST_F(LaunchTest, AChiefKilledForGoodLeavesItsDutiesToTheLowestLiveWorker) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  const std::string ckpt = job_dir_ + "/ckpt";
  const ExitStatus st = kill_worker_during(0, {"--sync_replicas", "--checkpoint_dir", ckpt});
  ASSERT_EQ(st, ExitStatus::exited(0)) << st.to_string() << "\n" << logs();
  const auto j = summary();
  EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump(2);
  ASSERT_EQ(j["tasks"].size(), 3u) << j.dump(2);
  EXPECT_EQ(j["tasks"][1].value("state", ""), "killed") << j.dump(2);
  EXPECT_EQ(j["tasks"][2].value("state", ""), "succeeded") << j.dump(2);
  ASSERT_EQ(j["warnings"].size(), 1u) << j.dump(2);
  EXPECT_NE(j["warnings"][0].get<std::string>().find(
                "wk-0 killed by signal 9 (SIGKILL); the job went on without it (the lowest live "
                "worker takes over the chief's duties"),
            std::string::npos)
      << j.dump(2);
  EXPECT_EQ(j.value("global_step", 0), 600) << j.dump(2);
  ASSERT_TRUE(j["test_accuracy"].is_number()) << j.dump(2);
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.5) << j.dump(2);
  const std::string wk1 = text(job_dir_ + "/stderr-wk-1.txt");
  EXPECT_NE(wk1.find("worker 1 takes over the chief's duties (worker 0 was lost)"),
            std::string::npos)
      << wk1;
  // The final checkpoint is the acting chief's: at the last step.
  EXPECT_NE(text(ckpt + "/checkpoint").find("model.ckpt-600"), std::string::npos)
      << text(ckpt + "/checkpoint") << "\n"
      << wk1;
}

TEST_F(LaunchTest, CtrlCCancelsTheJob) { cancel_a_running_job(SIGINT); }
TEST_F(LaunchTest, SighupCancelsTheJobLikeSigterm) { cancel_a_running_job(SIGHUP); }

TEST_F(LaunchTest, BadDataDirExits2AndStartsNothing) {
  EXPECT_EQ(run_launch({"--data_dir=/nonexistent", "--num_gpus", "0", "--job_dir", job_dir_},
                       seconds(60)),
            ExitStatus::exited(2));
  EXPECT_NE(logs().find("/nonexistent"), std::string::npos) << logs();
  EXPECT_FALSE(fs::exists(job_dir_));
}

TEST_F(LaunchTest, DownloadOnlyChecksTheDataAndStartsNothing) {
  const std::string data = tiny_data_dir(4);
  EXPECT_EQ(
      run_launch({"--download_only", "--data_dir=" + data, "--job_dir", job_dir_}, seconds(60)),
      ExitStatus::exited(0));
  const std::string out = text(dir_ + "/launch-stdout.txt");
  EXPECT_EQ(out.rfind("data ok: " + data, 0), 0u) << out;
  EXPECT_EQ(out.find("job"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(job_dir_));
}

TEST_F(LaunchTest, SummaryJsonIsTheJobsSummary) {
  // A job that fails fast (one example for two workers) still has a summary.
  const std::string path = dir_ + "/my-summary.json";
  const ExitStatus st =
      run_launch({"--train_steps", "10", "--num_gpus", "0", "--data_dir=" + tiny_data_dir(1),
                  "--validation_size=0", "--summary_json", path, "--job_dir", job_dir_},
                 seconds(120));
  EXPECT_EQ(st, ExitStatus::exited(1)) << st.to_string() << "\n" << logs();
  EXPECT_EQ(text(path), text(job_dir_ + "/summary.json"));
  const auto j = summary();
  EXPECT_EQ(j.value("summary_version", 0), 1);
  for (const auto& flag : j["config"]) EXPECT_NE(flag, "--summary_json") << j.dump(2);
  for (const char* name : {"stdout-wk-0.txt", "stderr-wk-0.txt"}) {
    EXPECT_EQ(text(job_dir_ + "/" + name).find("summary_json"), std::string::npos) << name;
  }
}

TEST_F(LaunchTest, ClusterFlagsAreRejected) {
  for (const char* flag : {"--job_name=ps", "--task_index=1", "--ps_hosts=localhost:1",
                           "--worker_hosts=localhost:2"}) {
    const ExitStatus st = run_launch({flag, "--job_dir", job_dir_}, seconds(60));
    EXPECT_EQ(st, ExitStatus::exited(2)) << flag;
    const std::string name = std::string(flag).substr(0, std::string(flag).find('='));
    EXPECT_NE(logs().find("remove " + name), std::string::npos) << logs();
  }
  EXPECT_FALSE(fs::exists(job_dir_));  // nothing was started
}

TEST_F(LaunchTest, BadUsageExits2) {
  EXPECT_EQ(run_launch({"--no_such_flag"}, seconds(60)), ExitStatus::exited(2));
  EXPECT_EQ(run_launch({"--model=rnn", "--job_dir", job_dir_}, seconds(60)), ExitStatus::exited(2));
  EXPECT_EQ(run_launch({"--workers", "0", "--job_dir", job_dir_}, seconds(60)),
            ExitStatus::exited(2));
  EXPECT_EQ(run_launch({"--pstrain_binary", dir_ + "/missing", "--job_dir", job_dir_}, seconds(60)),
            ExitStatus::exited(2));
  EXPECT_FALSE(fs::exists(job_dir_));
  EXPECT_EQ(run_launch({"--help"}, seconds(60)), ExitStatus::exited(0));
  const std::string help = text(dir_ + "/launch-stdout.txt");
  EXPECT_NE(help.find("--workers"), std::string::npos) << help;
  EXPECT_NE(help.find("--train_steps"), std::string::npos) << help;
}

}  // namespace
}  // namespace pstrain
