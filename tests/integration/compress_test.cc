// --compress (16-bit gradients): the main job's shape (1 PS + 2 workers, sync, an MLP of 32
// hidden units, CPU) as real processes on 127.0.0.1, once with float32 gradients and once with each
// 16-bit format: the same steps complete, the accuracy stays close to float32's, and the workers
// send about half the bytes per push (their --summary_json counters, which count what the PS
// receives from them). Every process is waited for with a deadline and killed if it overstays.
#include <gtest/gtest.h>

#include "tests/temp_dir.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "runtime/job/process.h"
#include "runtime/wire/transport.h"
#include "tests/integration/paths.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using testing_util::read_all;
constexpr auto kDeadline = std::chrono::seconds(200);
constexpr int kSteps = 300;

struct JobFigures {
  bool ok = false;
  double accuracy = -1;
  uint64_t bytes_sent = 0;      // both workers, to the PS
  uint64_t bytes_received = 0;  // both workers, from the PS
  int64_t local_steps = 0;      // both workers: one push each
  long ps_step = -1;
};

class CompressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(testing_util::kFashionMnist)) {
      GTEST_SKIP() << testing_util::kFashionMnist << " is missing: install dataset-fashion-mnist";
    }
  }

  // Runs 1 PS + 2 workers with `--compress=<compress>`; the figures of the run.
  JobFigures run_job(const std::string& compress) {
    JobFigures fig;
    auto ports = pick_free_tcp_ports(3);
    EXPECT_TRUE(ports.ok()) << ports.status().to_string();
    if (!ports.ok()) return fig;
    auto addr = [&](size_t i) { return "127.0.0.1:" + std::to_string((*ports)[i]); };
    // 32 hidden units: three jobs; under ThreadSanitizer the 100-unit layer took 123 s.
    const std::vector<std::string> common = {
        "--ps_hosts=" + addr(0), "--worker_hosts=" + addr(1) + "," + addr(2),
        "--sync_replicas",       "--model=mlp",
        "--hidden_units=32",     "--train_steps=" + std::to_string(kSteps),
        "--num_gpus=0",          "--cpu_threads=1",
        "--log_every=100",       "--compress=" + compress};
    std::vector<std::string> names = {compress + "-ps0", compress + "-wk0", compress + "-wk1"};
    std::vector<std::vector<std::string>> argvs;
    for (size_t i = 0; i < 3; ++i) {
      std::vector<std::string> argv = testing_util::one_ps_task_argv(i);
      argv.insert(argv.end(), common.begin(), common.end());
      if (i > 0) argv.push_back("--summary_json=" + (dir_ / (names[i] + ".json")).string());
      argvs.push_back(std::move(argv));
    }
    fig.ok = testing_util::run_tasks_to_success(dir_, names, argvs, kDeadline);
    if (!fig.ok) return fig;
    std::smatch m;
    const std::string ps_out = read_all(dir_ / (names[0] + ".out"));
    if (std::regex_search(ps_out, m, std::regex(R"(global step (\d+),)"))) {
      fig.ps_step = std::stol(m[1]);
    }
    for (size_t i = 1; i < 3; ++i) {
      const auto j = nlohmann::json::parse(read_all(dir_ / (names[i] + ".json")), nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << names[i] << ".json is not JSON";
      if (j.is_discarded()) continue;
      fig.bytes_sent += j.at("bytes_sent").get<uint64_t>();
      fig.bytes_received += j.at("bytes_received").get<uint64_t>();
      fig.local_steps += j.at("local_steps").get<int64_t>();
      if (j.contains("test_accuracy")) fig.accuracy = j.at("test_accuracy").get<double>();
    }
    return fig;
  }

  testing_util::TempDir tmp_{"pstrain_compress", /*keep_on_failure=*/true};
  fs::path dir_ = tmp_.path();
};

TEST_F(CompressTest, SixteenBitGradientsHalveThePushBytesAndKeepTheAccuracy) {
  const JobFigures fp32 = run_job("none");
  ASSERT_TRUE(fp32.ok);
  EXPECT_EQ(fp32.ps_step, kSteps);
  ASSERT_GT(fp32.local_steps, 0);
  ASSERT_GT(fp32.accuracy, 0.7);  // the chief evaluated: the job learned
  for (const std::string compress : {"bf16", "fp16"}) {
    SCOPED_TRACE(compress);
    const JobFigures half = run_job(compress);
    ASSERT_TRUE(half.ok);
    EXPECT_EQ(half.ps_step, kSteps);
    ASSERT_GT(half.local_steps, 0);
    // The worker's bytes out are the PS's bytes in from it: pushes (the gradients, halved)
    // plus pull requests and the rest (headers only). Per push, about half.
    const double per_push_fp32 = static_cast<double>(fp32.bytes_sent) / fp32.local_steps;
    const double per_push_half = static_cast<double>(half.bytes_sent) / half.local_steps;
    const double ratio = per_push_half / per_push_fp32;
    std::printf(
        "--compress=%s: %.0f bytes out per step (float32 %.0f, ratio %.3f), accuracy "
        "%.4f (float32 %.4f)\n",
        compress.c_str(), per_push_half, per_push_fp32, ratio, half.accuracy, fp32.accuracy);
    EXPECT_GT(ratio, 0.45) << per_push_half << " vs " << per_push_fp32 << " bytes per step";
    EXPECT_LT(ratio, 0.55) << per_push_half << " vs " << per_push_fp32 << " bytes per step";
    // Pulls stay float32: about the same bytes per step come back.
    const double pulled_fp32 = static_cast<double>(fp32.bytes_received) / fp32.local_steps;
    const double pulled_half = static_cast<double>(half.bytes_received) / half.local_steps;
    EXPECT_GT(pulled_half / pulled_fp32, 0.8);
    EXPECT_LT(pulled_half / pulled_fp32, 1.25);
    // Accuracy: the issue's goal is within 0.5 points of float32 on the main job (2000 steps,
    // docs/benchmarks.md). After only 300 steps the model is still moving fast and rounding
    // one gradient shifts the whole trajectory, so the job is compared within 1.5 points
    // (measured: 0.2 to 0.3 in the Release build, 0.6 to 0.7 in the sanitizer build, whose
    // float32 arithmetic differs; the float32 run itself is deterministic).
    EXPECT_LT(std::fabs(half.accuracy - fp32.accuracy), 0.015)
        << half.accuracy << " vs float32 " << fp32.accuracy;
  }
}

TEST_F(CompressTest, AValueThatIsNotAChoiceExitsWithUsageNamingTheChoices) {
  for (const std::vector<std::string>& words :
       {std::vector<std::string>{testing_util::kPstrain, "--job_name=worker", "--task_index=0",
                                 "--compress=int8"},
        std::vector<std::string>{testing_util::kPstrain, "launch", "--ps=1", "--workers=1",
                                 "--compress", "fp32"}}) {
    auto p = Subprocess::spawn(testing_util::task_options(dir_, "bad", words));
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    auto st = p->wait_until(Subprocess::Clock::now() + std::chrono::seconds(60));
    const ExitStatus status = st.ok() ? *st : p->kill();
    EXPECT_EQ(status, ExitStatus::exited(2)) << status.to_string();
    const std::string err = read_all(dir_ / "bad.err");
    EXPECT_NE(err.find("--compress"), std::string::npos) << err;
    EXPECT_NE(err.find("fp16"), std::string::npos) << err;
    EXPECT_NE(err.find("bf16"), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace pstrain
