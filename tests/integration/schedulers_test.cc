// Jobs launched the ways rank-based schedulers launch them, with the real pieces: Open MPI's
// mpirun (Debian's openmpi-bin), a ps-lite/BytePS-style DMLC launch (scheduler, server and
// workers as processes with DMLC_* set), and tasks that never come. Each task finds the others
// through the rendezvous (runtime/job/rendezvous.h); nothing is given a host list. The
// accuracy is compared with the same job given by flags. Every process is waited for with a
// deadline and killed if it overstays. A missing mpirun fails the test (it never passes
// silently): scripts/setup.sh installs it.
#include <gtest/gtest.h>

#include "tests/integration/paths.h"
#include "tests/temp_dir.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "runtime/job/process.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using Env = std::map<std::string, std::optional<std::string>>;
constexpr auto kDeadline = std::chrono::seconds(90);

using testing_util::read_all;

struct Task {
  std::string name;
  std::vector<std::string> argv;  // argv[0]: the program
  Env env;
};

struct Finished {
  std::string name;
  ExitStatus status;
  std::string out, err;
  std::chrono::duration<double> took{};
};

double accuracy(const std::string& out) {
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(test accuracy = ([0-9.]+))"))) {
    return std::stod(m[1]);
  }
  return -1;
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

class SchedulersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(testing_util::kFashionMnist)) {
      GTEST_SKIP() << testing_util::kFashionMnist << " is missing: install dataset-fashion-mnist";
    }
  }

  // Starts one task, its output in dir_/<name>.out and .err.
  Result<Subprocess> start(const Task& t) {
    return Subprocess::spawn(testing_util::task_options(dir_, t.name, t.argv, t.env));
  }

  // Starts every task, waits for all with one deadline, kills leftovers.
  std::vector<Finished> run(const std::vector<Task>& tasks,
                            std::chrono::seconds deadline_in = kDeadline) {
    std::vector<Subprocess> procs;
    const auto start_time = Subprocess::Clock::now();
    for (const Task& t : tasks) {
      auto p = start(t);
      EXPECT_TRUE(p.ok()) << p.status().to_string();
      if (p.ok()) procs.push_back(std::move(p).value());
    }
    const auto deadline = start_time + deadline_in;
    std::vector<Finished> done;
    for (size_t i = 0; i < procs.size(); ++i) {
      auto st = procs[i].wait_until(deadline);
      Finished f{tasks[i].name, st.ok() ? *st : procs[i].kill(), "", "", {}};
      if (!st.ok()) ADD_FAILURE() << tasks[i].name << " did not finish in time: killed";
      f.took = Subprocess::Clock::now() - start_time;
      f.out = read_all(dir_ / (tasks[i].name + ".out"));
      f.err = read_all(dir_ / (tasks[i].name + ".err"));
      done.push_back(std::move(f));
    }
    return done;
  }

  static void expect_all_succeeded(const std::vector<Finished>& done) {
    for (const Finished& f : done) {
      EXPECT_TRUE(f.status.success()) << f.name << " " << f.status.to_string() << "\n--- stderr\n"
                                      << f.err << "\n--- stdout\n"
                                      << f.out;
    }
  }

  std::vector<std::string> pstrain(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {testing_util::kPstrain};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), training_.begin(), training_.end());
    return argv;
  }

  // The same job (1 ps, 2 workers) given by flags: the accuracy to match.
  double flags_accuracy() {
    auto ports = pick_free_tcp_ports(3);
    EXPECT_TRUE(ports.ok()) << ports.status().to_string();
    if (!ports.ok()) return -1;
    const std::string ps = "--ps_hosts=127.0.0.1:" + std::to_string((*ports)[0]);
    const std::string workers = "--worker_hosts=127.0.0.1:" + std::to_string((*ports)[1]) +
                                ",127.0.0.1:" + std::to_string((*ports)[2]);
    auto done =
        run({{"flags_ps0", pstrain({"--job_name=ps", "--task_index=0", ps, workers}), {}},
             {"flags_wk0", pstrain({"--job_name=worker", "--task_index=0", ps, workers}), {}},
             {"flags_wk1", pstrain({"--job_name=worker", "--task_index=1", ps, workers}), {}}});
    expect_all_succeeded(done);
    return accuracy(done[1].out);
  }

  void expect_like_flags(double got, const std::string& what) {
    static const double want = flags_accuracy();  // once per test binary run
    EXPECT_GT(want, 0.7) << "the flags job";
    EXPECT_GT(got, 0.7) << what;
    EXPECT_LT(std::fabs(got - want), 0.02)
        << what << " reached " << got << ", the flags job " << want;
  }

  testing_util::TempDir tmp_{"pstrain_sched", /*keep_on_failure=*/true};
  fs::path dir_ = tmp_.path();
  const std::vector<std::string> training_ = {
      "--num_gpus=0",
      "--cpu_threads=1",
      "--log_every=50",
      "--seed=7",
      "--train_steps=100",
      "--sync_replicas",
      std::string("--data_dir=") + testing_util::kFashionMnist};
};

TEST_F(SchedulersTest, OpenMpiThreeRanksOnePs) {
  ASSERT_TRUE(on_path("mpirun")) << "mpirun is not installed: install openmpi-bin "
                                    "(scripts/setup.sh does)";
  std::vector<std::string> argv = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3"};
  const auto p = pstrain({"--num_ps", "1"});
  argv.insert(argv.end(), p.begin(), p.end());
  auto done = run({{"mpirun", argv, {}}});
  expect_all_succeeded(done);
  const std::string& out = done[0].out;
  const std::string& err = done[0].err;
  EXPECT_NE(out.find("ps 0 done: global step 100"), std::string::npos) << out;
  EXPECT_NE(err.find("Open MPI: worker 0 from Open MPI (OMPI_COMM_WORLD_RANK=1, --num_ps=1)"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("rendezvous: all 3 tasks arrived"), std::string::npos) << err;
  expect_like_flags(accuracy(out), "mpirun -np 3");
}

TEST_F(SchedulersTest, DmlcSchedulerServerAndTwoWorkers) {
  auto port = pick_free_tcp_port();  // the root port a ps-lite launch script chooses
  ASSERT_TRUE(port.ok()) << port.status().to_string();
  const Env common = {{"DMLC_PS_ROOT_URI", "127.0.0.1"},
                      {"DMLC_PS_ROOT_PORT", std::to_string(*port)},
                      {"DMLC_NUM_SERVER", "1"},
                      {"DMLC_NUM_WORKER", "2"}};
  auto role = [&](const std::string& r) {
    Env e = common;
    e["DMLC_ROLE"] = r;
    return e;
  };
  // Workers first: the order of arrival does not matter.
  auto done = run({{"worker_a", pstrain({}), role("worker")},
                   {"worker_b", pstrain({}), role("worker")},
                   {"server", pstrain({}), role("server")},
                   // The scheduler as ps-lite scripts often start it: no flags at all.
                   {"scheduler", {testing_util::kPstrain}, role("scheduler")}});
  expect_all_succeeded(done);
  EXPECT_NE(done[3].err.find("rendezvous: all 3 tasks arrived"), std::string::npos) << done[3].err;
  EXPECT_NE(done[2].out.find("ps 0 done: global step 100"), std::string::npos) << done[2].out;
  const double a = accuracy(done[0].out), b = accuracy(done[1].out);
  EXPECT_TRUE((a > 0) != (b > 0)) << "exactly one worker is the chief and evaluates";
  expect_like_flags(std::max(a, b), "the DMLC launch");
}

// With a job secret the rendezvous is CURVE-encrypted: a task without the secret is refused at
// once (exit 2, saying why) and takes no slot; the job's own tasks run the job.
TEST_F(SchedulersTest, DmlcWithASecretATaskWithoutItIsRefusedTheJobRuns) {
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok()) << port.status().to_string();
  const std::string secret = (dir_ / "secret").string();
  {
    std::ofstream f(secret, std::ios::binary);
    std::ifstream random("/dev/urandom", std::ios::binary);
    std::string bytes(32, '\0');
    random.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f << bytes;
  }
  fs::permissions(secret, fs::perms::owner_read | fs::perms::owner_write,
                  fs::perm_options::replace);
  auto role = [&](const std::string& r, bool with_secret) {
    Env e = {{"DMLC_PS_ROOT_URI", "127.0.0.1"},
             {"DMLC_PS_ROOT_PORT", std::to_string(*port)},
             {"DMLC_NUM_SERVER", "1"},
             {"DMLC_NUM_WORKER", "1"},
             {"DMLC_ROLE", r}};
    if (with_secret) e["PSTRAIN_SECRET_FILE"] = secret;
    return e;
  };
  // The scheduler first, with the intruder alone: the job cannot complete without its own
  // tasks, so the rendezvous is up while the intruder tries.
  auto scheduler = start({"scheduler", {testing_util::kPstrain}, role("scheduler", true)});
  ASSERT_TRUE(scheduler.ok()) << scheduler.status().to_string();
  auto intruder = run({{"intruder", pstrain({}), role("worker", false)}}, std::chrono::seconds(60));
  ASSERT_EQ(intruder.size(), 1u);
  EXPECT_EQ(intruder[0].status, ExitStatus::exited(2)) << intruder[0].status.to_string() << "\n"
                                                       << intruder[0].err;
  EXPECT_NE(intruder[0].err.find("requires the job's secret"), std::string::npos)
      << intruder[0].err;
  EXPECT_LT(intruder[0].took, std::chrono::seconds(30));
  // It took no slot: the job's own tasks run the job.
  auto job = run({{"server", pstrain({}), role("server", true)},
                  {"worker", pstrain({}), role("worker", true)}});
  expect_all_succeeded(job);
  EXPECT_NE(job[0].out.find("ps 0 done: global step 100"), std::string::npos) << job[0].out;
  auto st = scheduler->wait_until(Subprocess::Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_EQ(*st, ExitStatus::exited(0));
  const std::string scheduler_err = read_all(dir_ / "scheduler.err");
  EXPECT_NE(scheduler_err.find("CURVE-encrypted, only tasks holding the job's secret get in"),
            std::string::npos)
      << scheduler_err;
}

TEST_F(SchedulersTest, ARankThatNeverComesIsNamedAndEveryTaskExits1) {
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok()) << port.status().to_string();
  auto rank = [](int r) {
    return Env{{"OMPI_COMM_WORLD_RANK", std::to_string(r)}, {"OMPI_COMM_WORLD_SIZE", "4"}};
  };
  const std::vector<std::string> args = {
      "--num_ps=1", "--rendezvous=127.0.0.1:" + std::to_string(*port), "--rendezvous_timeout_s=3"};
  // Rank 3 (worker 2) never starts.
  auto done = run({{"rank0", pstrain(args), rank(0)},
                   {"rank1", pstrain(args), rank(1)},
                   {"rank2", pstrain(args), rank(2)}},
                  std::chrono::seconds(30));
  for (const Finished& f : done) {
    EXPECT_EQ(f.status, ExitStatus::exited(1)) << f.name << "\n" << f.err;
    EXPECT_NE(f.err.find("missing: rank 3 (worker 2)"), std::string::npos) << f.name << "\n"
                                                                           << f.err;
    EXPECT_NE(f.err.find("3 of 4 arrived"), std::string::npos) << f.name << "\n" << f.err;
    EXPECT_LT(f.took.count(), 15) << f.name << " did not give up by the deadline";
  }
}

TEST_F(SchedulersTest, BadSchedulerValuesExit2NamingThem) {
  struct Case {
    Env env;
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "3"}, {"SLURM_STEP_NODELIST", "node[01-"}},
       {"--num_ps=1"},
       "SLURM_STEP_NODELIST: hostlist \"node[01-\""},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "3"}, {"SLURM_STEP_NODELIST", "n1"}},
       {},
       "give --num_ps N"},
      {{{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "3"}},
       {"--num_ps=1"},
       "OMPI_COMM_WORLD_RANK=\"5\" is not an integer from 0 to 2"},
      {{{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}}, {"--num_ps=2"}, "leaves no worker"},
      {{{"DMLC_ROLE", "boss"}}, {}, "DMLC_ROLE=\"boss\" is not scheduler, server or worker"},
      {{{"DMLC_ROLE", "worker"}, {"DMLC_NUM_SERVER", "1"}, {"DMLC_NUM_WORKER", "2"}},
       {},
       "DMLC_PS_ROOT_URI is not set"},
      {{{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "3"}},
       {"--num_ps=1", "--job_name=worker"},
       "--job_name=worker (flags) disagrees with Open MPI (OMPI_COMM_WORLD_RANK=0, --num_ps=1)"},
      {{}, {"--num_ps=1"}, "no rank-based scheduler's variables are set"},
      {{{"PSTRAIN_NUM_PS", "1"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}},
       {"--rendezvous=nohost"},
       "--rendezvous: \"nohost\" is not host:port"},
  };
  std::vector<Task> tasks;
  for (size_t i = 0; i < cases.size(); ++i) {
    tasks.push_back({"case" + std::to_string(i), pstrain(cases[i].args), cases[i].env});
  }
  auto done = run(tasks, std::chrono::seconds(30));
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(done[i].status, ExitStatus::exited(2)) << i << "\n" << done[i].err;
    EXPECT_NE(done[i].err.find(cases[i].message), std::string::npos)
        << "case " << i << ": expected \"" << cases[i].message << "\" in\n"
        << done[i].err;
  }
}

// Slurm, with the real daemons: tests/integration/slurm/start-slurm.sh starts munged,
// slurmctld and slurmd for one node in a temporary directory (root needed); then `srun -n 3`
// and an sbatch script each run the job. Where the daemons cannot start, the test fails with
// the script's reason.
TEST_F(SchedulersTest, SlurmSrunAndSbatch) {
  const fs::path slurm_dir = dir_ / "slurm";
  const std::string scripts = std::string(PSTRAIN_TEST_SOURCE_DIR) + "/tests/integration/slurm";
  auto started = run({{"start-slurm", {scripts + "/start-slurm.sh", slurm_dir.string()}, {}}},
                     std::chrono::seconds(60));
  struct StopSlurm {
    std::string script, dir;
    ~StopSlurm() {
      SubprocessOptions o;
      o.argv = {script, dir};
      o.stdin_from_dev_null = true;
      auto p = Subprocess::spawn(o);
      if (p.ok() && !p->wait_until(Subprocess::Clock::now() + std::chrono::seconds(40)).ok()) {
        p->kill();
      }
    }
  } stop{scripts + "/stop-slurm.sh", slurm_dir.string()};
  ASSERT_TRUE(started[0].status.success()) << "the Slurm daemons did not start:\n"
                                           << started[0].err << started[0].out;
  const std::string conf = (slurm_dir / "slurm.conf").string();
  const Env env = {{"SLURM_CONF", conf}};

  std::vector<std::string> srun = {"srun", "--overcommit", "-n", "3"};
  const auto p = pstrain({"--num_ps", "1"});
  srun.insert(srun.end(), p.begin(), p.end());
  auto done = run({{"srun", srun, env}});
  expect_all_succeeded(done);
  EXPECT_NE(done[0].out.find("ps 0 done: global step 100"), std::string::npos) << done[0].out;
  EXPECT_NE(done[0].err.find("Slurm: worker 1 from Slurm (SLURM_PROCID=2, --num_ps=1)"),
            std::string::npos)
      << done[0].err;
  const double srun_accuracy = accuracy(done[0].out);

  const fs::path script = dir_ / "job.sbatch";
  {
    std::ofstream f(script);
    f << "#!/bin/bash\n"
      << "#SBATCH --ntasks=3\n"
      << "#SBATCH --overcommit\n"
      << "#SBATCH --output=" << (dir_ / "sbatch-job.out").string() << "\n"
      << "#SBATCH --error=" << (dir_ / "sbatch-job.err").string() << "\n"
      << "srun";
    for (const std::string& a : p) f << " '" << a << "'";
    f << "\n";
  }
  auto batch = run({{"sbatch", {"sbatch", "--wait", script.string()}, env}});
  expect_all_succeeded(batch);
  const std::string job_out = read_all(dir_ / "sbatch-job.out");
  const std::string job_err = read_all(dir_ / "sbatch-job.err");
  EXPECT_NE(job_out.find("ps 0 done: global step 100"), std::string::npos)
      << job_out << "\n--- stderr\n"
      << job_err;
  expect_like_flags(srun_accuracy, "srun -n 3");
  expect_like_flags(accuracy(job_out), "the sbatch job");
}

}  // namespace
}  // namespace pstrain
