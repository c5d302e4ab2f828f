// One PS and one synchronous worker reproduce `pstrain train` exactly: the real binary, run
// both ways with the same seed and non-default optimizer hyper-parameters, must end with the
// same test accuracy and the same final loss (the mean of the last 100 training losses, to the
// last bit). This holds only if every hyper-parameter reaches the PS (INIT), the sync mean of
// one gradient is that gradient, Adam's step count starts at 1 on both sides, worker 0 of 1
// reads the batches in `pstrain train`'s order and both start from the same parameters.
// Every run is a Subprocess waited on with a deadline (killed and failed at the deadline).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/job/process.h"
#include "tests/integration/paths.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

using testing_util::kFashionMnist;
using testing_util::kPstrain;

class PsParityTest : public ::testing::Test {
 protected:
  // Runs `pstrain args...` to completion within `timeout`; `name` names its output files.
  ExitStatus run(const std::string& name, const std::vector<std::string>& args, seconds timeout) {
    SubprocessOptions o;
    o.argv = {kPstrain};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stdout_path = tmp_ / (name + "-stdout.txt");
    o.stderr_path = tmp_ / (name + "-stderr.txt");
    o.stdin_from_dev_null = true;
    o.kill_on_parent_death = true;
    auto p = Subprocess::spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().message();
    if (!p.ok()) return {};
    auto st = p->wait_for(timeout);
    if (!st.ok()) {
      ADD_FAILURE() << "pstrain " << name << " did not finish in time: " << st.status().message()
                    << "\n"
                    << text(o.stderr_path);
      return p->kill();
    }
    return *st;
  }
  static std::string text(const std::string& path) {
    auto t = read_file(path);
    return t.ok() ? *t : std::string("<cannot read " + path + ">");
  }
  static nlohmann::json json_file(const std::string& path) {
    auto t = read_file(path);
    EXPECT_TRUE(t.ok()) << "cannot read " << path;
    const auto j = nlohmann::json::parse(t.ok() ? *t : "{}", nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << path << " is not JSON";
    return j.is_discarded() ? nlohmann::json::object() : j;
  }

  // `pstrain train` and a 1 PS x 1 worker synchronous `pstrain launch` with `optimizer_flags`;
  // the PS's INIT log line must name the optimizer as `ps_says`.
  void expect_same_result(const std::string& name, const std::vector<std::string>& optimizer_flags,
                          const std::string& ps_says) {
    SCOPED_TRACE(name);
    // 100 steps: the chief's final loss is then the mean of every step's loss. 32 hidden
    // units: the parity does not depend on the model's size, and the sanitizer builds train
    // it in a fraction of the time.
    std::vector<std::string> common = {"--train_steps", "100", "--hidden_units", "32",
                                       "--cpu_threads", "1",   "--num_gpus",     "0",
                                       "--seed",        "7"};
    common.insert(common.end(), optimizer_flags.begin(), optimizer_flags.end());

    std::vector<std::string> train = {"train", "--summary_json", tmp_ / (name + "-train.json")};
    train.insert(train.end(), common.begin(), common.end());
    const ExitStatus t = run(name + "-train", train, seconds(120));
    ASSERT_EQ(t, ExitStatus::exited(0)) << t.to_string() << "\n"
                                        << text(tmp_ / (name + "-train-stderr.txt"));

    const std::string job_dir = tmp_ / (name + "-job");
    std::vector<std::string> launch = {"launch", "--ps",      "1",     "--workers",
                                       "1",      "--job_dir", job_dir, "--sync_replicas"};
    launch.insert(launch.end(), common.begin(), common.end());
    const ExitStatus l = run(name + "-launch", launch, seconds(180));
    ASSERT_EQ(l, ExitStatus::exited(0)) << l.to_string() << "\n"
                                        << text(tmp_ / (name + "-launch-stderr.txt"));

    const auto local = json_file(tmp_ / (name + "-train.json"));
    const auto job = json_file(job_dir + "/summary.json");
    ASSERT_TRUE(local.contains("test_accuracy")) << local.dump(2);
    ASSERT_TRUE(job.contains("test_accuracy")) << job.dump(2);
    EXPECT_EQ(job.value("global_step", 0), 100) << job.dump(2);
    EXPECT_EQ(job["test_accuracy"].get<double>(), local["test_accuracy"].get<double>())
        << "1 PS x 1 sync worker and pstrain train disagree";
    // Stronger than the accuracy: the chief's mean of its last 100 losses (its final status
    // file, docs/launch.md) equals `pstrain train`'s final_loss bit for bit.
    const auto chief = json_file(job_dir + "/status-wk-0.json");
    EXPECT_EQ(chief.value("state", ""), "done") << chief.dump();
    ASSERT_TRUE(chief.contains("loss") && local.contains("final_loss"));
    EXPECT_EQ(chief["loss"].get<double>(), local["final_loss"].get<double>());
    // The PS got the hyper-parameters (its INIT log line names them).
    const std::string ps_log = text(job_dir + "/stderr-ps-0.txt");
    EXPECT_NE(ps_log.find("initialised by the chief: mlp, " + ps_says +
                          ", sync, 1 replicas to aggregate of 1 worker, 100 steps"),
              std::string::npos)
        << ps_log;
  }

  testing_util::TempDir tmp_{"pstrain_ps_parity"};
};

TEST_F(PsParityTest, MomentumWithNonDefaultMomentum) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  expect_same_result("momentum", {"--optimizer", "momentum", "--momentum", "0.5"},
                     "momentum lr 0.01 momentum 0.5");
}

TEST_F(PsParityTest, AdamWithNonDefaultBeta1) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  expect_same_result("adam", {"--optimizer", "adam", "--adam_beta1", "0.8"},
                     "adam lr 0.01 beta1 0.8 beta2 0.999 epsilon 1e-08");
}

TEST_F(PsParityTest, AdagradWithNonDefaultAccumulator) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  expect_same_result(
      "adagrad",
      {"--optimizer", "adagrad", "--learning_rate", "0.05", "--adagrad_initial_accumulator", "0.5"},
      "adagrad lr 0.05 initial accumulator 0.5");
}

}  // namespace
}  // namespace pstrain
