// Checkpoints of real jobs: the pstrain binary as 1 PS + 2 workers on 127.0.0.1 with a
// --checkpoint_dir. Every wait has a deadline; progress is watched through the files the
// processes write (checkpoint indexes, worker lines), never through fixed sleeps.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "runtime/job/process.h"
#include "runtime/wire/transport.h"
#include "tests/checkpoint/python_reader.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(150);
constexpr const char* kDataDir = "/usr/share/datasets/fashion-mnist";

std::string read_all(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Polls `ready` every 20 ms until it holds or `deadline` passes; returns whether it held.
template <typename F>
bool wait_for(F ready, Clock::time_point deadline) {
  while (Clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return ready();
}

class CheckpointJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(kDataDir)) GTEST_SKIP() << kDataDir << " is missing";
    auto ports = pick_free_tcp_ports(3);
    ASSERT_TRUE(ports.ok()) << ports.status().to_string();
    for (int p : *ports) addr_.push_back("127.0.0.1:" + std::to_string(p));
    ckpt_ = dir_ / "ckpt";
  }

  // The three tasks' argv after the binary: ps 0, worker 0 (chief), worker 1.
  Subprocess start(const std::string& name, bool ps, int index,
                   const std::vector<std::string>& extra) {
    SubprocessOptions o;
    o.argv = {std::string(PSTRAIN_BINARY_DIR) + "/cli/pstrain",
              std::string("--job_name=") + (ps ? "ps" : "worker"),
              "--task_index=" + std::to_string(index),
              "--ps_hosts=" + addr_[0],
              "--worker_hosts=" + addr_[1] + "," + addr_[2],
              "--num_gpus=0",
              "--cpu_threads=1",
              "--log_every=10",
              "--sync_replicas",
              "--hidden_units=16",
              "--batch_size=20",
              "--checkpoint_dir=" + ckpt_};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    for (const char* v : {"TF_CONFIG", "AZ_BATCHAI_PS_HOSTS", "AZ_BATCHAI_WORKER_HOSTS",
                          "AZ_BATCHAI_TASK_INDEX", "AZ_BATCHAI_NUM_GPUS"}) {
      o.env.try_emplace(v, std::nullopt);
    }
    o.stdout_path = dir_ / (name + ".out");
    o.stderr_path = dir_ / (name + ".err");
    o.stdin_from_dev_null = true;
    o.kill_on_parent_death = true;
    auto p = Subprocess::spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    return std::move(p).value();
  }
  std::vector<Subprocess> start_job(const std::string& run, const std::vector<std::string>& extra) {
    std::vector<Subprocess> p;
    p.push_back(start(run + "_ps0", true, 0, extra));
    p.push_back(start(run + "_wk0", false, 0, extra));
    p.push_back(start(run + "_wk1", false, 1, extra));
    return p;
  }
  std::string logs(const std::string& run) {
    std::string s;
    for (const char* t : {"_ps0", "_wk0", "_wk1"}) {
      s += "--- " + run + t + " stderr\n" + read_all(dir_ / (run + t + ".err"));
      s += "--- " + run + t + " stdout\n" + read_all(dir_ / (run + t + ".out"));
    }
    return s;
  }
  std::optional<checkpoint::CheckpointIndex> latest() {
    auto r = checkpoint::find_latest_complete(ckpt_);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? r->latest : std::nullopt;
  }

  testing_util::TempDir dir_{"pstrain_ckpt_job", /*keep_on_failure=*/true};
  std::vector<std::string> addr_;
  std::string ckpt_;
};

// A job saves every 20 steps; kill -9 of every task mid-way; the same command line with more
// --train_steps resumes from the newest complete checkpoint and applies only the steps after
// it. Python's safetensors reads the shards and finds, bit for bit, what pstrain reads.
TEST_F(CheckpointJobTest, KilledJobResumesFromTheLatestCheckpoint) {
  const std::vector<std::string> first = {"--train_steps=100000", "--save_checkpoint_steps=20",
                                          "--keep_checkpoint_max=3"};
  std::vector<Subprocess> job = start_job("run1", first);
  const auto deadline = Clock::now() + kDeadline;
  const bool reached = wait_for(
      [&] {
        auto l = latest();
        return l && l->step >= 80;
      },
      deadline);
  for (Subprocess& p : job) p.kill();  // kill -9, in the middle of training
  ASSERT_TRUE(reached) << "no checkpoint at step >= 80 in time\n" << logs("run1");
  const std::optional<checkpoint::CheckpointIndex> saved = latest();
  ASSERT_TRUE(saved.has_value());
  const int64_t step = saved->step;
  EXPECT_EQ(step % 20, 0);
  ASSERT_EQ(saved->shards.size(), 1u);
  EXPECT_EQ(saved->shards[0].file, "model.ckpt-" + std::to_string(step) + ".ps-0-of-1.safetensors");
  EXPECT_EQ(saved->model, "mlp");
  EXPECT_FALSE(saved->chunks.empty());
  // kill -9 may land between writing a new index and removing the oldest: one more than
  // --keep_checkpoint_max may be left; the relaunch's clean end below keeps exactly the bound.
  const auto count_indexes = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(ckpt_)) {
      n += checkpoint::parse_index_file_name(e.path().filename().string()).has_value();
    }
    return n;
  };
  const int indexes = count_indexes();
  EXPECT_LE(indexes, 3 + 1) << "--keep_checkpoint_max=3, killed mid-way";
  EXPECT_GE(indexes, 2);
  auto state = checkpoint::CheckpointState::parse(read_all(fs::path(ckpt_) / "checkpoint"), "st");
  ASSERT_TRUE(state.ok()) << state.status().message();

  // Python's safetensors reads the shard: every tensor equals what pstrain reads, bit for bit.
  const std::string shard_path = (fs::path(ckpt_) / saved->shards[0].file).string();
  auto ours = checkpoint::read_shard(shard_path);
  ASSERT_TRUE(ours.ok()) << ours.status().message();
  EXPECT_EQ(ours->optimizer, "adam");
  ASSERT_TRUE(fs::exists(checkpoint::test_python()))
      << checkpoint::test_python() << " is missing: run scripts/test-venv.sh";
  auto py = checkpoint::read_with_python({shard_path});
  ASSERT_TRUE(py.ok()) << py.status().message();
  const nlohmann::json& tensors = (*py)[shard_path]["tensors"];
  EXPECT_EQ(tensors.size(), 1 + ours->chunks.size() * 3);  // values, Adam, Adam_1; the step
  EXPECT_EQ(tensors["global_step"]["hex"], checkpoint::hex_of(&step, sizeof step));
  for (const checkpoint::ShardChunk& c : ours->chunks) {
    EXPECT_EQ(tensors[c.key]["hex"], checkpoint::hex_of(c.values.data(), c.values.size() * 4));
    EXPECT_EQ(tensors[c.key + "/Adam"]["hex"],
              checkpoint::hex_of(c.slots[0].data(), c.slots[0].size() * 4));
    EXPECT_EQ(tensors[c.key + "/Adam_1"]["hex"],
              checkpoint::hex_of(c.slots[1].data(), c.slots[1].size() * 4));
  }

  // Relaunch on the same directory: it resumes at `step` and runs 40 more steps only.
  std::vector<std::string> second = first;
  second[0] = "--train_steps=" + std::to_string(step + 40);
  std::vector<Subprocess> again = start_job("run2", second);
  const auto deadline2 = Clock::now() + kDeadline;
  for (Subprocess& p : again) {
    auto st = p.wait_until(deadline2);
    ASSERT_TRUE(st.ok() && st->success()) << "relaunch failed\n" << logs("run2");
  }
  const std::string ps_err = read_all(dir_ / "run2_ps0.err");
  EXPECT_NE(ps_err.find("resumed from " + shard_path + " at global step " + std::to_string(step)),
            std::string::npos)
      << ps_err;
  const std::string ps_out = read_all(dir_ / "run2_ps0.out");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(ps_out, m, std::regex(R"(global step (\d+), (\d+) gradients)")))
      << ps_out;
  EXPECT_EQ(std::stol(m[1]), step + 40);
  EXPECT_EQ(std::stol(m[2]), 80) << "sync, 2 workers: 2 gradients per step, 40 steps";
  EXPECT_NE(read_all(dir_ / "run2_wk0.err").find("joins at global step " + std::to_string(step)),
            std::string::npos);
  const std::optional<checkpoint::CheckpointIndex> final_ckpt = latest();
  ASSERT_TRUE(final_ckpt.has_value());
  EXPECT_EQ(final_ckpt->step, step + 40) << "the end of training is saved";
  EXPECT_LE(count_indexes(), 3) << "--keep_checkpoint_max=3 after a clean end";
}

// SIGTERM to the chief (a scheduler's preemption) writes a final checkpoint before it exits
// 143; a job whose flags describe another model is then refused with exit 2.
TEST_F(CheckpointJobTest, SigtermToTheChiefWritesAFinalCheckpoint) {
  std::vector<Subprocess> job = start_job(
      "run1", {"--train_steps=100000", "--save_checkpoint_steps=0", "--save_checkpoint_secs=0"});
  const auto deadline = Clock::now() + kDeadline;
  const bool trained = wait_for(
      [&] {
        return read_all(dir_ / "run1_wk0.out").find("Worker 0: training step 30 done") !=
               std::string::npos;
      },
      deadline);
  ASSERT_TRUE(trained) << logs("run1");
  // The global step the chief saw after its 30th step (in sync mode it may be behind the local
  // step: the other worker's gradient completes the step, and a late gradient is dropped).
  std::smatch seen;
  const std::string chief_out = read_all(dir_ / "run1_wk0.out");
  ASSERT_TRUE(std::regex_search(
      chief_out, seen, std::regex(R"(Worker 0: training step 30 done \(global step: (\d+)\))")))
      << chief_out;
  const long seen_step = std::stol(seen[1]);
  EXPECT_GT(seen_step, 0);
  EXPECT_FALSE(latest().has_value()) << "no periodic saves were asked for";
  ASSERT_TRUE(job[1].terminate().ok());
  auto chief = job[1].wait_until(deadline);
  ASSERT_TRUE(chief.ok());
  EXPECT_EQ(*chief, ExitStatus::exited(128 + SIGTERM)) << logs("run1");
  job[2].kill();
  const std::optional<checkpoint::CheckpointIndex> saved = latest();
  ASSERT_TRUE(saved.has_value()) << logs("run1");
  EXPECT_GE(saved->step, seen_step) << "the final checkpoint holds what the chief had seen";
  // SIGTERM to the PS: it writes its own shard of its current state, then exits 143.
  ASSERT_TRUE(job[0].terminate().ok());
  auto ps_exit = job[0].wait_until(deadline);
  ASSERT_TRUE(ps_exit.ok());
  EXPECT_EQ(*ps_exit, ExitStatus::exited(128 + SIGTERM)) << logs("run1");
  std::smatch m;
  const std::string ps_out = read_all(dir_ / "run1_ps0.out");
  ASSERT_TRUE(std::regex_search(ps_out, m, std::regex(R"(ps 0 saved (\S+) \(global step (\d+)\))")))
      << logs("run1");
  EXPECT_TRUE(fs::exists(fs::path(ckpt_) / m[1].str())) << m[1];
  EXPECT_GE(std::stol(m[2]), saved->step);

  // The same directory with another --hidden_units: refused, saying what differs.
  std::vector<Subprocess> other = start_job("run2", {"--train_steps=100000", "--hidden_units=24"});
  auto ps = other[0].wait_until(Clock::now() + kDeadline);
  auto wk0 = other[1].wait_until(Clock::now() + kDeadline);
  other[2].kill();
  ASSERT_TRUE(ps.ok() && wk0.ok());
  EXPECT_EQ(*ps, ExitStatus::exited(2)) << logs("run2");
  EXPECT_EQ(*wk0, ExitStatus::exited(2)) << logs("run2");
  EXPECT_NE(read_all(dir_ / "run2_wk0.err").find("variable layout"), std::string::npos)
      << logs("run2");
}

// kill -9 of the PS in the middle of a sync job, then the same command line again: it
// resumes from its newest checkpoint, the workers keep asking it (--ps_restart_timeout_s)
// and follow it back to that step, and the job finishes normally, redoing only the steps
// after the checkpoint.
TEST_F(CheckpointJobTest, AKilledPsRestartedFromItsCheckpointRejoinsTheJob) {
  const std::vector<std::string> flags = {"--train_steps=3000", "--save_checkpoint_steps=50",
                                          "--heartbeat_timeout_s=3"};
  std::vector<Subprocess> job = start_job("run1", flags);
  const auto deadline = Clock::now() + kDeadline;
  const bool reached = wait_for(
      [&] {
        auto l = latest();
        return l && l->step >= 200;
      },
      deadline);
  job[0].kill();
  ASSERT_TRUE(reached) << logs("run1");
  const std::optional<checkpoint::CheckpointIndex> saved = latest();
  ASSERT_TRUE(saved.has_value());
  ASSERT_LT(saved->step, 3000) << "the job finished before the PS was killed";
  Subprocess ps = start("run2_ps0", true, 0, flags);
  for (Subprocess* p : {&job[1], &job[2], &ps}) {
    auto st = p->wait_until(deadline);
    ASSERT_TRUE(st.ok()) << logs("run1") << "--- restarted ps\n" << read_all(dir_ / "run2_ps0.err");
    EXPECT_TRUE(st->success()) << st->to_string() << "\n"
                               << logs("run1") << read_all(dir_ / "run2_ps0.err");
  }
  const std::string ps_err = read_all(dir_ / "run2_ps0.err");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(ps_err, m, std::regex(R"(resumed from \S+ at global step (\d+))")))
      << ps_err;
  const long resumed = std::stol(m[1]);
  EXPECT_GE(resumed, saved->step);
  EXPECT_EQ(resumed % 50, 0);
  const std::string ps_out = read_all(dir_ / "run2_ps0.out");
  ASSERT_TRUE(std::regex_search(ps_out, m, std::regex(R"(global step (\d+), (\d+) gradients)")))
      << ps_out;
  EXPECT_EQ(std::stol(m[1]), 3000);
  EXPECT_EQ(std::stol(m[2]), (3000 - resumed) * 2) << "2 gradients per step after the restore";
  EXPECT_NE(read_all(dir_ / "run1_wk1.err").find("ps/0 at " + addr_[0] + " was restarted"),
            std::string::npos)
      << logs("run1");
  const std::string chief = read_all(dir_ / "run1_wk0.out");
  ASSERT_TRUE(std::regex_search(chief, m, std::regex(R"(test accuracy = ([0-9.]+))"))) << chief;
  EXPECT_GT(std::stod(m[1]), 0.7);
}

}  // namespace
}  // namespace pstrain
