// A process's footprint: a parameter server and a CPU worker (real processes on 127.0.0.1)
// never map the CUDA libraries, even in a build with the CUDA backend (it is a plugin that
// only a task using a GPU loads, kernels/cuda/plugin.h), and a PS stays under the peak
// resident memory docs/benchmarks.md states. Where the CUDA backend is built, `pstrain
// devices` loads the plugin, and a missing plugin is named with the way to point at it.
// Every wait has a deadline; the processes are killed if they overstay.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/job/process.h"
#include "runtime/wire/transport.h"
#include "tests/integration/paths.h"
#include "tests/temp_dir.h"
#include "worker/backend.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing_util::read_all;

// The PS's peak resident set for the MLP, in MiB: docs/benchmarks.md ("Footprint") states it.
constexpr long kPsPeakMiB = 64;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;  // shadow memory: resident sizes mean nothing here
#else
constexpr bool kSanitized = false;
#endif

// The lines of /proc/<pid>/maps that name a CUDA library or the plugin.
std::string cuda_mappings(pid_t pid) {
  std::string hits;
  std::istringstream maps(read_all("/proc/" + std::to_string(pid) + "/maps"));
  for (std::string line; std::getline(maps, line);) {
    if (line.find("libcublas") != std::string::npos ||
        line.find("libcudart") != std::string::npos ||
        line.find("libcuda.so") != std::string::npos ||
        line.find("pstrain-cuda") != std::string::npos) {
      hits += line + "\n";
    }
  }
  return hits;
}

// VmHWM (peak resident set) of a running process, in KiB; -1 when unreadable.
long peak_resident_kib(pid_t pid) {
  std::istringstream status(read_all("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

class FootprintTest : public ::testing::Test {
 protected:
  Subprocess start(const std::string& name, std::vector<std::string> args,
                   std::map<std::string, std::optional<std::string>> env = {}) {
    std::vector<std::string> argv = {testing_util::kPstrain};
    argv.insert(argv.end(), args.begin(), args.end());
    const SubprocessOptions o = testing_util::task_options(dir_, name, argv, std::move(env));
    auto p = Subprocess::spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    return std::move(p).value();
  }

  // Waits until `name`.err holds `text`; false when the task exited first or 90 s passed.
  bool wait_for_line(const std::string& name, Subprocess& task, const std::string& text) {
    const auto deadline = Clock::now() + std::chrono::seconds(90);
    while (Clock::now() < deadline) {
      if (read_all(dir_ / (name + ".err")).find(text) != std::string::npos) return true;
      if (task.poll().has_value()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  testing_util::TempDir tmp_{"pstrain_footprint", /*keep_on_failure=*/true};
  fs::path dir_ = tmp_.path();
};

TEST_F(FootprintTest, PsAndCpuWorkerNeverMapCudaAndThePsStaysSmall) {
  if (!fs::is_directory(testing_util::kFashionMnist)) {
    GTEST_SKIP() << testing_util::kFashionMnist << " is missing: install dataset-fashion-mnist";
  }
  auto ports = pick_free_tcp_ports(2);
  ASSERT_TRUE(ports.ok()) << ports.status().to_string();
  const std::vector<std::string> cluster = {
      "--ps_hosts=127.0.0.1:" + std::to_string((*ports)[0]),
      "--worker_hosts=127.0.0.1:" + std::to_string((*ports)[1]),
      "--num_gpus=0",
      "--cpu_threads=1",
      "--train_steps=1000000",
      "--log_every=1000"};
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.end(), cluster.begin(), cluster.end());
    return a;
  };
  Subprocess ps = start("ps0", with({"--job_name=ps", "--task_index=0"}));
  Subprocess wk = start("wk0", with({"--job_name=worker", "--task_index=0"}));
  ASSERT_TRUE(wait_for_line("wk0", wk, "chief initialised the variables"))
      << read_all(dir_ / "wk0.err") << read_all(dir_ / "ps0.err");
  // Training is under way: the worker chose its backend and the PS holds the model.
  EXPECT_EQ(cuda_mappings(ps.pid()), "");
  EXPECT_EQ(cuda_mappings(wk.pid()), "");
  const long ps_peak = peak_resident_kib(ps.pid());
  const long wk_peak = peak_resident_kib(wk.pid());
  ASSERT_GT(ps_peak, 0);
  ASSERT_GT(wk_peak, 0);
  std::printf("peak resident: ps %ld KiB, cpu worker %ld KiB%s\n", ps_peak, wk_peak,
              kSanitized ? " (sanitizer build)" : "");
  if (!kSanitized) {
    EXPECT_LT(ps_peak, kPsPeakMiB * 1024) << "see docs/benchmarks.md, Footprint";
  }
  ASSERT_TRUE(wk.terminate().ok());
  ASSERT_TRUE(ps.terminate().ok());
  for (Subprocess* p : {&wk, &ps}) {
    EXPECT_TRUE(p->wait_until(Clock::now() + std::chrono::seconds(60)).ok())
        << "did not stop on SIGTERM";
  }
}

TEST_F(FootprintTest, DevicesLoadsThePluginAndNamesAMissingOne) {
  if (!cuda_backend_built()) GTEST_SKIP() << "built without the CUDA backend: no plugin to load";
  Subprocess version = start("version", {"--version"});
  auto st = version.wait_until(Clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, ExitStatus::exited(0));
  EXPECT_NE(read_all(dir_ / "version.out").find("CUDA backend: built (pstrain-cuda.so, loaded"),
            std::string::npos)
      << read_all(dir_ / "version.out");

  Subprocess devices = start("devices", {"devices"});
  st = devices.wait_until(Clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, ExitStatus::exited(0));
  const std::string out = read_all(dir_ / "devices.out");
  EXPECT_NE(out.find("/lib/pstrain/pstrain-cuda.so; runtime "), std::string::npos) << out;
  EXPECT_NE(out.find("GPUs:"), std::string::npos) << out;

  const std::string missing = (dir_ / "nowhere" / "pstrain-cuda.so").string();
  Subprocess lost = start("lost", {"devices"}, {{"PSTRAIN_CUDA_PLUGIN", missing}});
  st = lost.wait_until(Clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, ExitStatus::exited(0));
  const std::string said = read_all(dir_ / "lost.out");
  EXPECT_NE(said.find("looked for " + missing), std::string::npos) << said;
  EXPECT_NE(said.find("PSTRAIN_CUDA_PLUGIN"), std::string::npos) << said;
}

}  // namespace
}  // namespace pstrain
