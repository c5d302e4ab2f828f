// --transport: the main job's shape (1 PS + 2 workers, sync, an MLP of 32 hidden units, CPU) as
// real processes on 127.0.0.1, once with both workers on TCP (sending each layer's gradients
// during backward: --overlap) and once with worker 0 on the PS's Unix socket (ipc, with
// --nooverlap) and worker 1 on TCP: the PS says which connection came over which, and the two
// runs end at the same step with exactly the same test accuracy (the bytes on either path are the
// same); the same with worker 0 on shared memory (shm), and with both on it. A PS killed with
// SIGKILL leaves no socket name behind: one started again on the same port listens on both at
// once. A job on shared memory killed with SIGKILL leaves nothing in /dev/shm (its segments
// are memfds, which it did map while it ran). Every process is waited for with a deadline.
#include <gtest/gtest.h>

#include "tests/temp_dir.h"

#include <chrono>
#include <filesystem>
#include <regex>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

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

struct JobRun {
  bool ok = false;
  double accuracy = -1;
  long ps_step = -1;
  std::string ps_log;
  std::string chief_log;
};

// Whether the abstract Unix socket `name` ("@pstrain/...") is listed in /proc/net/unix.
bool abstract_socket_listed(const std::string& name) {
  return read_all("/proc/net/unix").find(" " + name + "\n") != std::string::npos;
}

// Polls /proc/net/unix (kernel state, not a synchronisation) until `name` is `listed` or the
// deadline passes; whether it got there.
bool wait_listed(const std::string& name, bool listed, std::chrono::seconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (abstract_socket_listed(name) == listed) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return abstract_socket_listed(name) == listed;
}

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(testing_util::kFashionMnist)) {
      GTEST_SKIP() << testing_util::kFashionMnist << " is missing: install dataset-fashion-mnist";
    }
  }

  JobRun run_job(const std::string& tag, const std::string& t0, const std::string& t1,
                 const std::string& chief_flag = "") {
    JobRun run;
    auto ports = pick_free_tcp_ports(3);
    EXPECT_TRUE(ports.ok()) << ports.status().to_string();
    if (!ports.ok()) return run;
    auto addr = [&](size_t i) { return "127.0.0.1:" + std::to_string((*ports)[i]); };
    // 32 hidden units: the paths, not the model, are under test (four jobs; under ThreadSanitizer
    // a 100-unit layer took 145 s of the 200 s deadline).
    const std::vector<std::string> common = {
        "--ps_hosts=" + addr(0), "--worker_hosts=" + addr(1) + "," + addr(2),
        "--sync_replicas",       "--model=mlp",
        "--hidden_units=32",     "--train_steps=" + std::to_string(kSteps),
        "--num_gpus=0",          "--cpu_threads=1",
        "--log_every=100"};
    const std::vector<std::string> names = {tag + "-ps0", tag + "-wk0", tag + "-wk1"};
    std::vector<std::vector<std::string>> argvs;
    for (size_t i = 0; i < 3; ++i) {
      std::vector<std::string> argv = testing_util::one_ps_task_argv(i);
      argv.insert(argv.end(), common.begin(), common.end());
      if (i == 1) argv.push_back("--transport=" + t0);
      if (i == 1 && !chief_flag.empty()) argv.push_back(chief_flag);
      if (i == 2) argv.push_back("--transport=" + t1);
      if (i == 1) argv.push_back("--summary_json=" + (dir_ / (names[i] + ".json")).string());
      argvs.push_back(std::move(argv));
    }
    run.ok = testing_util::run_tasks_to_success(dir_, names, argvs, kDeadline);
    run.ps_log = read_all(dir_ / (names[0] + ".err"));
    run.chief_log = read_all(dir_ / (names[1] + ".err"));
    std::smatch m;
    const std::string ps_out = read_all(dir_ / (names[0] + ".out"));
    if (std::regex_search(ps_out, m, std::regex(R"(global step (\d+),)"))) {
      run.ps_step = std::stol(m[1]);
    }
    const auto j = nlohmann::json::parse(read_all(dir_ / (names[1] + ".json")), nullptr, false);
    if (!j.is_discarded() && j.contains("test_accuracy")) {
      run.accuracy = j.at("test_accuracy").get<double>();
    }
    return run;
  }

  // A PS and one worker on 127.0.0.1 that train until they are killed (logs `tag`-ps0 and
  // `tag`-wk0 in dir_), `extra` flags given to both; empty (a failure recorded) when one could
  // not start.
  std::vector<Subprocess> start_until_killed(const std::string& tag,
                                             const std::vector<std::string>& extra) {
    std::vector<Subprocess> procs;
    auto ports = pick_free_tcp_ports(2);
    EXPECT_TRUE(ports.ok()) << ports.status().to_string();
    if (!ports.ok()) return procs;
    const std::string ps = "127.0.0.1:" + std::to_string((*ports)[0]);
    const std::string wk = "127.0.0.1:" + std::to_string((*ports)[1]);
    for (size_t i = 0; i < 2; ++i) {
      std::vector<std::string> argv = testing_util::one_ps_task_argv(i == 0 ? 0 : 1);
      argv.insert(argv.end(), {"--ps_hosts=" + ps, "--worker_hosts=" + wk, "--num_gpus=0",
                               "--cpu_threads=1", "--train_steps=1000000"});
      argv.insert(argv.end(), extra.begin(), extra.end());
      auto p = Subprocess::spawn(
          testing_util::task_options(dir_, tag + (i == 0 ? "-ps0" : "-wk0"), argv));
      EXPECT_TRUE(p.ok()) << p.status().to_string();
      if (!p.ok()) {
        for (Subprocess& q : procs) q.kill();
        return {};
      }
      procs.push_back(std::move(p).value());
    }
    return procs;
  }

  testing_util::TempDir tmp_{"pstrain_transport", /*keep_on_failure=*/true};
  fs::path dir_ = tmp_.path();
};

TEST_F(TransportTest, AWorkerOnTheUnixSocketAndOneOnTcpTrainExactlyAsTwoOnTcp) {
  const JobRun tcp = run_job("tcp", "tcp", "tcp");
  ASSERT_TRUE(tcp.ok);
  EXPECT_EQ(tcp.ps_step, kSteps);
  EXPECT_NE(tcp.ps_log.find("worker 0 connected over tcp"), std::string::npos) << tcp.ps_log;
  EXPECT_NE(tcp.ps_log.find("worker 1 connected over tcp"), std::string::npos) << tcp.ps_log;
  ASSERT_GT(tcp.accuracy, 0.7);  // the chief evaluated: the job learned
  // --overlap (the default): over TCP each layer's gradients go out during backward.
  EXPECT_NE(tcp.chief_log.find("while backward computes the layers before (--overlap)"),
            std::string::npos)
      << tcp.chief_log;
  // ... and the next step's forward starts on the first layers' parameters as they come.
  EXPECT_NE(tcp.chief_log.find("starts each step's forward on the first layers' parameters "
                               "while the rest arrive (--overlap"),
            std::string::npos)
      << tcp.chief_log;

  // The chief without overlap: its whole gradient goes after backward, as the same bytes.
  const JobRun mixed = run_job("mixed", "ipc", "tcp", "--nooverlap");
  ASSERT_TRUE(mixed.ok);
  EXPECT_EQ(mixed.ps_step, kSteps);
  EXPECT_NE(mixed.ps_log.find("worker 0 connected over ipc"), std::string::npos) << mixed.ps_log;
  EXPECT_NE(mixed.ps_log.find("worker 1 connected over tcp"), std::string::npos) << mixed.ps_log;
  EXPECT_NE(mixed.chief_log.find("connecting over ipc://@pstrain/127.0.0.1:"), std::string::npos)
      << mixed.chief_log;
  EXPECT_EQ(mixed.chief_log.find("--overlap"), std::string::npos) << mixed.chief_log;
  // Two workers' gradients are averaged in either order to the same bits: the runs agree.
  EXPECT_EQ(mixed.accuracy, tcp.accuracy);

  const JobRun shm_tcp = run_job("shm-tcp", "shm", "tcp");
  ASSERT_TRUE(shm_tcp.ok);
  EXPECT_EQ(shm_tcp.ps_step, kSteps);
  EXPECT_NE(shm_tcp.ps_log.find("worker 0 connected over ipc"), std::string::npos);
  EXPECT_NE(shm_tcp.ps_log.find("worker 0 sends its tensors through shared memory"),
            std::string::npos)
      << shm_tcp.ps_log;
  EXPECT_NE(shm_tcp.ps_log.find("worker 1 connected over tcp"), std::string::npos);
  EXPECT_EQ(shm_tcp.ps_log.find("worker 1 sends its tensors through shared memory"),
            std::string::npos);
  EXPECT_NE(shm_tcp.chief_log.find("tensors through shared memory"), std::string::npos)
      << shm_tcp.chief_log;
  EXPECT_EQ(shm_tcp.accuracy, tcp.accuracy);

  const JobRun shm = run_job("shm", "shm", "shm");
  ASSERT_TRUE(shm.ok);
  EXPECT_EQ(shm.ps_step, kSteps);
  EXPECT_NE(shm.ps_log.find("worker 1 sends its tensors through shared memory"), std::string::npos)
      << shm.ps_log;
  // One PS: backward writes into the segment and the PS answers into it (ps/client.h).
  EXPECT_NE(shm.chief_log.find("parameters live in the shared memory of the PS"), std::string::npos)
      << shm.chief_log;
  EXPECT_EQ(shm.accuracy, tcp.accuracy);
}

// The names in /dev/shm (empty when there is no such directory).
std::set<std::string> dev_shm_names() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/dev/shm", ec)) {
    names.insert(e.path().filename().string());
  }
  return names;
}

TEST_F(TransportTest, AJobOnSharedMemoryKilledWithSigkillLeavesNothingInDevShm) {
  const std::set<std::string> before = dev_shm_names();
  std::vector<Subprocess> procs = start_until_killed("kill", {"--transport=shm"});
  ASSERT_EQ(procs.size(), 2u);
  // Wait (polling the PS's log, with a deadline) until the PS has mapped the worker's segment.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool mapped = false;
  while (!mapped && std::chrono::steady_clock::now() < deadline) {
    mapped = read_all(dir_ / "kill-ps0.err").find("sends its tensors through shared memory") !=
             std::string::npos;
    if (!mapped) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(mapped) << read_all(dir_ / "kill-ps0.err") << read_all(dir_ / "kill-wk0.err");
  // Both processes map it, as a memfd: it has no name in /dev/shm.
  for (Subprocess& p : procs) {
    const std::string maps = read_all("/proc/" + std::to_string(p.pid()) + "/maps");
    EXPECT_NE(maps.find("/memfd:pstrain-shm"), std::string::npos) << "pid " << p.pid();
  }
  EXPECT_EQ(dev_shm_names(), before);
  for (Subprocess& p : procs) {
    const ExitStatus killed = p.kill();
    EXPECT_FALSE(killed.success()) << killed.to_string();
  }
  EXPECT_EQ(dev_shm_names(), before);
}

// Each thread of process `pid`: its name and the time slice the kernel gives it (se.slice in
// /proc/PID/task/TID/sched, ns; -1 where the kernel does not show it).
std::vector<std::tuple<long, std::string, long>> thread_slices(int pid) {
  std::vector<std::tuple<long, std::string, long>> out;
  const fs::path tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  for (const auto& t : fs::directory_iterator(tasks, ec)) {
    std::string name = read_all(t.path() / "comm");
    if (!name.empty() && name.back() == '\n') name.pop_back();
    long slice = -1;
    std::smatch m;
    const std::string sched = read_all(t.path() / "sched");
    if (std::regex_search(sched, m, std::regex(R"(se\.slice\s*:\s*(\d+))"))) {
      slice = std::stol(m[1]);
    }
    out.emplace_back(std::stol(t.path().filename().string()), name, slice);
  }
  return out;
}

// runtime/base/sched.h: on cores a PS shares with its workers, every thread of the PS and the
// workers' ZeroMQ I/O threads ask for short time slices; the thread that computes keeps the
// kernel's default (a 100 us slice for it made the main job slower).
TEST_F(TransportTest, ThePsAndTheWorkersMessageThreadsAskForShortSlicesTheComputingOneDoesNot) {
  std::vector<Subprocess> procs = start_until_killed("slice", {"--log_every=100000"});
  ASSERT_EQ(procs.size(), 2u);
  // Until the worker says how its threads are scheduled (it connected: its I/O threads run),
  // polling its log with a deadline.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::string wk_log;
  while (std::chrono::steady_clock::now() < deadline) {
    wk_log = read_all(dir_ / "slice-wk0.err");
    if (wk_log.find("its message threads") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string ps_log = read_all(dir_ / "slice-ps0.err");
  ASSERT_NE(wk_log.find("its message threads"), std::string::npos) << wk_log;
  if (ps_log.find("keep the kernel's default time slices") != std::string::npos) {
    for (Subprocess& p : procs) p.kill();
    GTEST_SKIP() << "this kernel takes no time-slice requests: " << ps_log;
  }
  EXPECT_NE(ps_log.find("its threads ask for 100 us time slices"), std::string::npos) << ps_log;
  const long kShort = 100000;
  const auto ps_threads = thread_slices(procs[0].pid());
  ASSERT_GE(ps_threads.size(), 3u);  // main, ZeroMQ's I/O threads and reaper
  for (const auto& [tid, name, slice] : ps_threads) {
    EXPECT_EQ(slice, kShort) << "ps thread " << tid << " (" << name << ")";
  }
  int io_threads = 0;
  for (const auto& [tid, name, slice] : thread_slices(procs[1].pid())) {
    if (name.rfind("ZMQbg/IO/", 0) == 0) {
      ++io_threads;
      EXPECT_EQ(slice, kShort) << "worker I/O thread " << tid << " (" << name << ")";
    }
    if (tid == procs[1].pid()) {
      EXPECT_NE(slice, kShort) << "the worker's computing thread";
      EXPECT_GT(slice, 0);
    }
  }
  EXPECT_EQ(io_threads, kIoThreads);
  for (Subprocess& p : procs) p.kill();
}

TEST_F(TransportTest, APsKilledWithSigkillLeavesNoSocketNameAndRestartsOnTheSamePort) {
  auto ports = pick_free_tcp_ports(2);
  ASSERT_TRUE(ports.ok()) << ports.status().to_string();
  const std::string ps = "127.0.0.1:" + std::to_string((*ports)[0]);
  const std::string name = "@pstrain/" + ps;
  ASSERT_FALSE(abstract_socket_listed(name));
  std::vector<std::string> argv = testing_util::one_ps_task_argv(0);
  argv.insert(argv.end(),
              {"--ps_hosts=" + ps, "--worker_hosts=127.0.0.1:" + std::to_string((*ports)[1]),
               "--num_gpus=0"});
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto p =
        Subprocess::spawn(testing_util::task_options(dir_, "ps-" + std::to_string(round), argv));
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    EXPECT_TRUE(wait_listed(name, true, std::chrono::seconds(30)))
        << name << " never listened\n"
        << read_all(dir_ / ("ps-" + std::to_string(round) + ".err"));
    const ExitStatus killed = p->kill();
    EXPECT_FALSE(killed.success()) << killed.to_string();
    EXPECT_TRUE(wait_listed(name, false, std::chrono::seconds(10)))
        << name << " is still listed after the PS was killed";
  }
}

}  // namespace
}  // namespace pstrain
