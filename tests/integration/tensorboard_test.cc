// --log_dir: the event files of `pstrain train` and of a 1 PS + 2 workers job, read back by
// TensorBoard's own EventAccumulator (tests/integration/read_events.py, in the test venv that
// scripts/test-venv.sh makes), and a record with a bad CRC rejected by TensorBoard itself.
// Every process is waited for with a deadline.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/job/process.h"
#include "runtime/wire/transport.h"
#include "tests/integration/paths.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

using testing_util::read_all;

using testing_util::test_python;

class TensorBoardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(testing_util::kFashionMnist)) {
      GTEST_SKIP() << testing_util::kFashionMnist << " is missing: install dataset-fashion-mnist";
    }
    ASSERT_TRUE(fs::exists(test_python()))
        << test_python() << " is missing: run scripts/test-venv.sh (it makes the test venv "
        << "with tensorboard), or set PSTRAIN_VENV";
  }

  // Runs the tasks (each: name, args), all with one deadline; returns their exit statuses.
  std::vector<ExitStatus> run(
      const std::vector<std::pair<std::string, std::vector<std::string>>>& tasks) {
    std::vector<Subprocess> procs;
    for (const auto& [name, args] : tasks) {
      SubprocessOptions o;
      o.argv = {testing_util::kPstrain};
      o.argv.insert(o.argv.end(), args.begin(), args.end());
      testing_util::clear_cluster_variables(o.env);
      o.stdout_path = (dir_ / (name + ".out")).string();
      o.stderr_path = (dir_ / (name + ".err")).string();
      o.stdin_from_dev_null = true;
      o.kill_on_parent_death = true;
      auto p = Subprocess::spawn(o);
      EXPECT_TRUE(p.ok()) << p.status().to_string();
      if (p.ok()) procs.push_back(std::move(p).value());
    }
    const auto deadline = Clock::now() + std::chrono::seconds(150);
    std::vector<ExitStatus> out;
    for (size_t i = 0; i < procs.size(); ++i) {
      auto st = procs[i].wait_until(deadline);
      out.push_back(st.ok() ? *st : procs[i].kill());
      EXPECT_TRUE(st.ok()) << tasks[i].first << " did not finish in time: killed";
    }
    return out;
  }

  // What TensorBoard's EventAccumulator reads from `logdir`.
  json read_events(const fs::path& logdir) {
    const fs::path out = dir_ / "events.json";
    const std::string cmd = test_python() + " " + PSTRAIN_TEST_SOURCE_DIR +
                            "/tests/integration/read_events.py '" + logdir.string() + "' > '" +
                            out.string() + "' 2> '" + (dir_ / "events.err").string() + "'";
    const int rc = std::system(cmd.c_str());
    EXPECT_EQ(rc, 0) << cmd << "\n" << read_all(dir_ / "events.err");
    if (rc != 0) return json::object();
    return json::parse(read_all(out), nullptr, /*allow_exceptions=*/false);
  }

  static double printed_accuracy(const std::string& out) {
    std::smatch m;
    if (std::regex_search(out, m, std::regex(R"(test accuracy = ([0-9.]+))"))) {
      return std::stod(m[1]);
    }
    return -1;
  }

  static std::vector<int64_t> steps_of(const json& series) {
    std::vector<int64_t> steps;
    for (const auto& e : series) steps.push_back(e[0].get<int64_t>());
    return steps;
  }

  testing_util::TempDir tmp_{"pstrain_tb", /*keep_on_failure=*/true};
  fs::path dir_ = tmp_.path();
};

TEST_F(TensorBoardTest, TheLearningRateScalarFollowsTheSchedule) {
  const fs::path logdir = dir_ / "logs";
  auto st = run({{"train",
                  {"train", "--num_gpus=0", "--cpu_threads=1", "--train_steps=200",
                   "--summary_every=50", "--lr_schedule=piecewise", "--lr_boundaries=75,120",
                   "--lr_values=0.01,0.004,0.001", "--log_dir=" + logdir.string()}}});
  ASSERT_TRUE(st[0].success()) << read_all(dir_ / "train.err");
  const json ev = read_events(logdir);
  ASSERT_TRUE(ev.contains("scalars") && ev["scalars"].contains("learning_rate")) << ev.dump();
  const json& lr = ev["scalars"]["learning_rate"];
  ASSERT_EQ(steps_of(lr), (std::vector<int64_t>{1, 50, 100, 150, 200}));
  const float want[] = {0.01f, 0.01f, 0.004f, 0.001f, 0.001f};
  for (size_t i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(lr[i][1].get<float>(), want[i]) << i;
  // The run's description names the schedule.
  EXPECT_NE(read_all(dir_ / "train.err").find("piecewise"), std::string::npos)
      << read_all(dir_ / "train.err");
}

TEST_F(TensorBoardTest, TrainWritesScalarsHistogramsAndAccuracy) {
  const fs::path logdir = dir_ / "logs";
  auto st = run({{"train",
                  {"train", "--num_gpus=0", "--cpu_threads=1", "--train_steps=200",
                   "--summary_every=50", "--eval_every=100", "--log_dir=" + logdir.string()}}});
  ASSERT_TRUE(st[0].success()) << read_all(dir_ / "train.err");
  const json ev = read_events(logdir);
  ASSERT_TRUE(ev.contains("scalars")) << ev.dump();
  const json& sc = ev["scalars"];
  for (const char* tag : {"loss", "learning_rate", "global_step/sec", "examples/sec"}) {
    ASSERT_TRUE(sc.contains(tag)) << tag << " missing: " << ev.dump();
    EXPECT_EQ(steps_of(sc[tag]), (std::vector<int64_t>{1, 50, 100, 150, 200})) << tag;
  }
  for (const auto& e : sc["learning_rate"]) EXPECT_FLOAT_EQ(e[1].get<float>(), 0.01f);
  // The loss goes down, and each value is a finite, positive cross-entropy.
  EXPECT_LT(sc["loss"].back()[1].get<double>(), sc["loss"].front()[1].get<double>());
  ASSERT_TRUE(sc.contains("accuracy/test"));
  // --eval_every=100: once during training, once at the end; the end's is the one printed.
  EXPECT_EQ(steps_of(sc["accuracy/test"]), (std::vector<int64_t>{100, 200}));
  EXPECT_NEAR(sc["accuracy/test"].back()[1].get<double>(),
              printed_accuracy(read_all(dir_ / "train.out")), 5e-5);
  // The validation split (the first 5000 training examples) and both cross-entropies.
  for (const char* tag :
       {"accuracy/validation", "cross_entropy/validation", "cross_entropy/test"}) {
    ASSERT_TRUE(sc.contains(tag)) << tag << " missing: " << ev.dump();
    EXPECT_EQ(steps_of(sc[tag]), (std::vector<int64_t>{100, 200})) << tag;
  }
  const double xent = sc["cross_entropy/validation"].back()[1].get<double>();
  EXPECT_GT(xent, 0.1);
  EXPECT_LT(xent, 2.0);
  EXPECT_LT(xent, sc["loss"].front()[1].get<double>());  // trained: below the first step's loss

  const json& hi = ev["histograms"];
  // The MLP's variables (hidden 100): hid_w 784x100, hid_b 100, sm_w 100x10, sm_b 10.
  const std::map<std::string, double> sizes = {
      {"hid_w", 78400}, {"hid_b", 100}, {"sm_w", 1000}, {"sm_b", 10}};
  for (const auto& [name, size] : sizes) {
    for (const std::string& tag : {name, "gradients/" + name}) {
      ASSERT_TRUE(hi.contains(tag)) << tag << " missing: " << hi.dump().substr(0, 400);
      EXPECT_EQ(steps_of(hi[tag]), (std::vector<int64_t>{1, 50, 100, 150, 200})) << tag;
      for (const auto& h : hi[tag]) {
        EXPECT_EQ(h[1].get<double>(), size) << tag;  // num
        EXPECT_EQ(h[5].get<double>(), size) << tag;  // every value in a bucket
        EXPECT_LE(h[2].get<double>(), h[3].get<double>()) << tag;
      }
    }
  }
}

TEST_F(TensorBoardTest, RecordWithABadCrcIsRejectedByTensorBoard) {
  const fs::path logdir = dir_ / "logs";
  auto st = run({{"train",
                  {"train", "--num_gpus=0", "--cpu_threads=1", "--train_steps=20",
                   "--summary_every=0", "--log_dir=" + logdir.string()}}});
  ASSERT_TRUE(st[0].success()) << read_all(dir_ / "train.err");
  ASSERT_TRUE(read_events(logdir)["scalars"].contains("cross_entropy/test"));
  // The last record is the test evaluation's cross-entropy: change one byte of its data (the
  // data CRC is the file's last 4 bytes) and TensorBoard must drop it.
  fs::path file;
  for (const auto& e : fs::directory_iterator(logdir)) file = e.path();
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-6, std::ios::end);
  char c = 0;
  f.read(&c, 1);
  f.seekp(-6, std::ios::end);
  c = static_cast<char>(c ^ 0x5A);
  f.write(&c, 1);
  f.close();
  const json ev = read_events(logdir);
  EXPECT_FALSE(ev["scalars"].contains("cross_entropy/test")) << ev.dump();
  // The records before it are kept.
  EXPECT_TRUE(ev["scalars"].contains("accuracy/test")) << ev.dump();
  EXPECT_TRUE(ev["scalars"].contains("loss")) << ev.dump();
}

TEST_F(TensorBoardTest, DistributedJobChiefWritesTheJobEachWorkerItsOwn) {
  auto ports = pick_free_tcp_ports(3);
  ASSERT_TRUE(ports.ok());
  const fs::path logdir = dir_ / "logs";
  const std::vector<std::string> common = {
      "--ps_hosts=127.0.0.1:" + std::to_string((*ports)[0]),
      "--worker_hosts=127.0.0.1:" + std::to_string((*ports)[1]) +
          ",127.0.0.1:" + std::to_string((*ports)[2]),
      "--num_gpus=0",
      "--cpu_threads=1",
      "--train_steps=200",
      "--sync_replicas",
      "--log_every=20",
      "--summary_every=100",
      "--eval_every=100",
      "--log_dir=" + logdir.string()};
  auto args = [&](std::vector<std::string> a) {
    a.insert(a.end(), common.begin(), common.end());
    return a;
  };
  auto st = run({{"ps0", args({"--job_name=ps", "--task_index=0"})},
                 {"wk0", args({"--job_name=worker", "--task_index=0",
                               "--metrics_file=" + (dir_ / "m0.jsonl").string()})},
                 {"wk1", args({"--job_name=worker", "--task_index=1",
                               "--metrics_file=" + (dir_ / "m1.jsonl").string()})}});
  for (size_t i = 0; i < st.size(); ++i) EXPECT_TRUE(st[i].success()) << i << st[i].to_string();

  const json job = read_events(logdir);
  ASSERT_TRUE(job.contains("scalars")) << job.dump();
  for (const char* tag :
       {"loss", "learning_rate", "global_step/sec", "examples/sec", "accuracy/test"}) {
    EXPECT_TRUE(job["scalars"].contains(tag)) << tag << " missing: " << job.dump();
  }
  ASSERT_TRUE(job["scalars"].contains("accuracy/test"));
  // --eval_every=100: the chief evaluated during training (at the step its parameters were
  // pulled at, 100 or just after) and at the end; its first printed accuracy is the first.
  ASSERT_EQ(job["scalars"]["accuracy/test"].size(), 2u) << job.dump();
  EXPECT_GE(job["scalars"]["accuracy/test"][0][0].get<int64_t>(), 99);
  EXPECT_LT(job["scalars"]["accuracy/test"][0][0].get<int64_t>(), 200);
  EXPECT_EQ(job["scalars"]["accuracy/test"][1][0], 200);
  EXPECT_NEAR(job["scalars"]["accuracy/test"][0][1].get<double>(),
              printed_accuracy(read_all(dir_ / "wk0.out")), 5e-5);
  // The chief's stdout has mnist_replica's validation line with the value in the event file.
  std::smatch m;
  const std::string out0 = read_all(dir_ / "wk0.out");
  ASSERT_TRUE(std::regex_search(
      out0, m, std::regex(R"(After 200 training step\(s\), validation cross entropy = (\S+)\n)")))
      << out0;
  ASSERT_TRUE(job["scalars"].contains("cross_entropy/validation"));
  EXPECT_NEAR(job["scalars"]["cross_entropy/validation"].back()[1].get<double>(), std::stod(m[1]),
              1e-5 * std::stod(m[1]));
  EXPECT_TRUE(job["histograms"].contains("hid_w"));
  EXPECT_TRUE(job["histograms"].contains("gradients/sm_b"));
  // The values TensorBoard shows are those of the metrics files, step for step: the job's
  // `loss` is the chief's mean loss, each worker's `loss` its step's loss.
  auto metrics_file = [&](int w) {
    std::vector<json> steps;
    std::istringstream lines(read_all(dir_ / (w == 0 ? "m0.jsonl" : "m1.jsonl")));
    for (std::string line; std::getline(lines, line);) {
      json r = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (r.is_object() && r.contains("kind") && r.at("kind") == "step") steps.push_back(r);
    }
    return steps;
  };
  const std::vector<json> chief_steps = metrics_file(0);
  ASSERT_EQ(chief_steps.size(), job["scalars"]["loss"].size());
  for (size_t i = 0; i < chief_steps.size(); ++i) {
    EXPECT_EQ(job["scalars"]["loss"][i][0], chief_steps[i].at("global_step"));
    EXPECT_FLOAT_EQ(job["scalars"]["loss"][i][1].get<float>(),
                    static_cast<float>(chief_steps[i].at("mean_loss").get<double>()));
  }
  for (int w = 0; w < 2; ++w) {
    const json mine = read_events(logdir / ("worker-" + std::to_string(w)));
    const std::vector<json> steps = metrics_file(w);
    ASSERT_TRUE(mine["scalars"].contains("loss"));
    ASSERT_EQ(steps.size(), mine["scalars"]["loss"].size()) << w;
    for (size_t i = 0; i < steps.size(); ++i) {
      EXPECT_EQ(mine["scalars"]["loss"][i][0], steps[i].at("global_step")) << w;
      EXPECT_FLOAT_EQ(mine["scalars"]["loss"][i][1].get<float>(),
                      static_cast<float>(steps[i].at("loss").get<double>()))
          << w;
    }
    ASSERT_TRUE(mine.contains("scalars")) << w;
    EXPECT_TRUE(mine["scalars"].contains("loss")) << w << mine.dump();
    EXPECT_TRUE(mine["scalars"].contains("examples/sec")) << w << mine.dump();
    EXPECT_FALSE(mine["scalars"].contains("accuracy/test")) << w;  // the chief's, in logdir
    EXPECT_TRUE(mine["histograms"].empty()) << w;
  }
}

}  // namespace
}  // namespace pstrain
