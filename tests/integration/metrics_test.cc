// --metrics_port: a real PS and a real worker process on 127.0.0.1 serve Prometheus metrics,
// scraped with curl (a real HTTP client) while the job trains; bad and busy ports exit 2.
// Every wait has a deadline; the processes are killed if they overstay.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "runtime/job/process.h"
#include "runtime/wire/transport.h"
#include "tests/integration/paths.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(90);

using testing_util::read_all;

// curl's output for `url` (empty when it failed).
std::string curl(const std::string& url) {
  const std::string cmd = "curl -sS --max-time 5 '" + url + "' 2>&1";
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  return rc == 0 ? out : "";
}

// The value of the series whose line starts with `series` (name and labels as Prometheus
// prints them), or NaN.
double value_of(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nan("");
}

// Polls `what` (without a fixed sleep between tries beyond a short pause) until it holds or the
// deadline passes.
bool eventually(const std::function<bool()>& what, Clock::time_point deadline) {
  while (Clock::now() < deadline) {
    if (what()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return what();
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(testing_util::kFashionMnist)) {
      GTEST_SKIP() << testing_util::kFashionMnist << " is missing: install dataset-fashion-mnist";
    }
    ASSERT_EQ(std::system("curl --version >/dev/null 2>&1"), 0)
        << "curl is missing: run scripts/setup.sh (it installs Debian's curl)";
  }

  Subprocess start(const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> argv = {testing_util::kPstrain};
    argv.insert(argv.end(), args.begin(), args.end());
    const SubprocessOptions o =
        testing_util::task_options(dir_, name, argv, {{"PSTRAIN_METRICS_PORT", std::nullopt}});
    auto p = Subprocess::spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    return std::move(p).value();
  }

  // The metrics URL the task logged ("... metrics at http://127.0.0.1:P/metrics"); empty when
  // the task exited first or the deadline passed.
  std::string url_of(const std::string& name, Subprocess& task, Clock::time_point deadline) {
    std::string url;
    eventually(
        [&] {
          std::smatch m;
          const std::string err = read_all(dir_ / (name + ".err"));
          if (std::regex_search(err, m, std::regex(R"(metrics at (http://\S+/metrics))"))) {
            url = m[1];
          }
          return !url.empty() || task.poll().has_value();  // found, or it exited without
        },
        deadline);
    return url;
  }

  testing_util::TempDir tmp_{"pstrain_metrics", /*keep_on_failure=*/true};
  fs::path dir_ = tmp_.path();
};

TEST_F(MetricsTest, PsAndWorkerServeTheirCountersWhileTraining) {
  auto ports = pick_free_tcp_ports(3);
  ASSERT_TRUE(ports.ok()) << ports.status().to_string();
  // Two workers in the cluster but only worker 0 started: worker 1 stays "not seen", and the PS
  // keeps serving (it waits for it) however fast worker 0 is.
  const std::vector<std::string> cluster = {
      "--ps_hosts=127.0.0.1:" + std::to_string((*ports)[0]),
      "--worker_hosts=127.0.0.1:" + std::to_string((*ports)[1]) +
          ",127.0.0.1:" + std::to_string((*ports)[2]),
      "--num_gpus=0",
      "--cpu_threads=1",
      "--train_steps=1000000",
      "--log_every=1000",
      "--metrics_port=0"};
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.end(), cluster.begin(), cluster.end());
    return a;
  };
  Subprocess ps = start("ps0", with({"--job_name=ps", "--task_index=0"}));
  Subprocess wk = start("wk0", with({"--job_name=worker", "--task_index=0"}));
  const auto deadline = Clock::now() + kDeadline;
  const std::string ps_url = url_of("ps0", ps, deadline);
  const std::string wk_url = url_of("wk0", wk, deadline);
  ASSERT_FALSE(ps_url.empty()) << read_all(dir_ / "ps0.err");
  ASSERT_FALSE(wk_url.empty()) << read_all(dir_ / "wk0.err");

  std::string wk_text, ps_text;
  EXPECT_TRUE(eventually(
      [&] {
        wk_text = curl(wk_url);
        return value_of(wk_text, R"(pstrain_worker_steps_total{role="worker",task="0"})") >= 50;
      },
      deadline))
      << wk_text << read_all(dir_ / "wk0.err");
  EXPECT_TRUE(eventually(
      [&] {
        ps_text = curl(ps_url);
        return value_of(ps_text, R"(pstrain_ps_gradients_applied_total{role="ps",task="0"})") >= 50;
      },
      deadline))
      << ps_text << read_all(dir_ / "ps0.err");

  const std::string ps_labels = R"({role="ps",task="0"})";
  EXPECT_GE(value_of(ps_text, "pstrain_ps_global_step" + ps_labels), 50);
  EXPECT_EQ(value_of(ps_text, "pstrain_ps_train_steps" + ps_labels), 1000000);
  EXPECT_EQ(value_of(ps_text, "pstrain_ps_initialized" + ps_labels), 1);
  EXPECT_GT(value_of(ps_text, "pstrain_ps_received_bytes_total" + ps_labels), 50 * 4 * 79510.0);
  EXPECT_GT(value_of(ps_text, "pstrain_ps_sent_bytes_total" + ps_labels), 50 * 4 * 79510.0);
  // Every gradient came in a message of its own (a PUSH, with the next pull along).
  EXPECT_GE(value_of(ps_text, "pstrain_ps_messages_received_total" + ps_labels),
            value_of(ps_text, "pstrain_ps_gradients_applied_total" + ps_labels));
  EXPECT_EQ(
      value_of(ps_text,
               R"(pstrain_ps_messages_rejected_total{reason="malformed",role="ps",task="0"})"),
      0);
  EXPECT_EQ(
      value_of(ps_text, R"(pstrain_ps_gradients_dropped_total{reason="stale",role="ps",task="0"})"),
      0);
  EXPECT_EQ(value_of(ps_text, R"(pstrain_ps_workers{role="ps",state="connected",task="0"})"), 1);
  EXPECT_EQ(value_of(ps_text, R"(pstrain_ps_workers{role="ps",state="not_seen",task="0"})"), 1);
  EXPECT_EQ(value_of(ps_text, R"(pstrain_ps_workers{role="ps",state="lost",task="0"})"), 0);
  EXPECT_FALSE(std::isnan(value_of(ps_text, "pstrain_ps_parked_pulls" + ps_labels)));
  EXPECT_GE(value_of(ps_text, "pstrain_ps_step_seconds_count" + ps_labels), 49);
  EXPECT_GE(
      value_of(ps_text, R"(pstrain_ps_worker_gradients_total{role="ps",task="0",worker="0"})"), 50);
  EXPECT_EQ(
      value_of(ps_text, R"(pstrain_ps_worker_seconds_since_seen{role="ps",task="0",worker="1"})"),
      -1);

  const std::string wk_labels = R"({role="worker",task="0"})";
  EXPECT_GE(value_of(wk_text, "pstrain_worker_global_step" + wk_labels), 50);
  EXPECT_EQ(value_of(wk_text, "pstrain_worker_examples_total" + wk_labels),
            100 * value_of(wk_text, "pstrain_worker_steps_total" + wk_labels));
  const double loss = value_of(wk_text, "pstrain_worker_loss" + wk_labels);
  EXPECT_TRUE(std::isfinite(loss) && loss > 0) << loss;
  EXPECT_GT(value_of(wk_text, "pstrain_worker_examples_per_second" + wk_labels), 0);
  EXPECT_GT(value_of(wk_text, "pstrain_worker_sent_bytes_total" + wk_labels), 50 * 4 * 79510.0);
  EXPECT_GT(value_of(wk_text, "pstrain_worker_received_bytes_total" + wk_labels), 50 * 4 * 79510.0);
  EXPECT_GE(value_of(wk_text, "pstrain_worker_step_seconds_count" + wk_labels), 50);

  ASSERT_TRUE(wk.terminate().ok());
  ASSERT_TRUE(ps.terminate().ok());
  for (Subprocess* p : {&wk, &ps}) {
    auto st = p->wait_until(Clock::now() + std::chrono::seconds(30));
    ASSERT_TRUE(st.ok()) << "did not stop on SIGTERM";
    EXPECT_EQ(*st, ExitStatus::exited(128 + 15)) << st->to_string();
  }
}

TEST_F(MetricsTest, APortOutOfRangeOrInUseExitsWithUsage) {
  // Out of range: refused by the flag's check, before anything starts.
  Subprocess bad = start("bad", {"train", "--metrics_port=70000", "--train_steps=1"});
  auto st = bad.wait_until(Clock::now() + kDeadline);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, ExitStatus::exited(2));
  EXPECT_NE(read_all(dir_ / "bad.err").find("--metrics_port"), std::string::npos)
      << read_all(dir_ / "bad.err");

  // In use: a PS holds the port; `pstrain train` asked for the same one names it.
  auto ports = pick_free_tcp_ports(2);
  ASSERT_TRUE(ports.ok());
  Subprocess ps =
      start("ps0", {"--job_name=ps", "--task_index=0",
                    "--ps_hosts=127.0.0.1:" + std::to_string((*ports)[0]),
                    "--worker_hosts=127.0.0.1:" + std::to_string((*ports)[1]), "--metrics_port=0"});
  const std::string url = url_of("ps0", ps, Clock::now() + kDeadline);
  ASSERT_FALSE(url.empty()) << read_all(dir_ / "ps0.err");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(url, m, std::regex(R"(:(\d+)/metrics)")));
  Subprocess busy =
      start("busy", {"train", "--metrics_port=" + m[1].str(), "--train_steps=1", "--num_gpus=0"});
  st = busy.wait_until(Clock::now() + kDeadline);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, ExitStatus::exited(2)) << read_all(dir_ / "busy.err");
  const std::string err = read_all(dir_ / "busy.err");
  EXPECT_NE(err.find("cannot serve metrics on 127.0.0.1:" + m[1].str()), std::string::npos) << err;
  ASSERT_TRUE(ps.terminate().ok());
  EXPECT_TRUE(ps.wait_until(Clock::now() + std::chrono::seconds(30)).ok());
}

}  // namespace
}  // namespace pstrain
