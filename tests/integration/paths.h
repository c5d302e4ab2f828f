// What the integration tests that run the real binary share: the pstrain executable of this
// build tree, the Debian data set's directory (tests skip when it is not installed), the
// variables a test clears so that its own environment does not leak into the tasks' cluster
// resolution, the test venv's Python, reading a task's output file, and starting a job's tasks
// and waiting for them.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "runtime/job/process.h"

namespace pstrain::testing_util {

inline constexpr const char* kPstrain = PSTRAIN_BINARY_DIR "/cli/pstrain";
inline constexpr const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

// Every variable a cluster reader reads (runtime/job/cluster.h), schedulers' included.
inline constexpr const char* kClusterVariables[] = {"TF_CONFIG",
                                                    "AZ_BATCHAI_PS_HOSTS",
                                                    "AZ_BATCHAI_WORKER_HOSTS",
                                                    "AZ_BATCHAI_TASK_INDEX",
                                                    "AZ_BATCHAI_NUM_GPUS",
                                                    "SLURM_PROCID",
                                                    "SLURM_NTASKS",
                                                    "SLURM_JOB_ID",
                                                    "SLURM_STEP_NODELIST",
                                                    "SLURM_JOB_NODELIST",
                                                    "SLURM_LOCALID",
                                                    "SLURMD_NODENAME",
                                                    "OMPI_COMM_WORLD_RANK",
                                                    "OMPI_COMM_WORLD_SIZE",
                                                    "OMPI_COMM_WORLD_LOCAL_RANK",
                                                    "PMI_RANK",
                                                    "PMI_SIZE",
                                                    "DMLC_ROLE",
                                                    "DMLC_PS_ROOT_URI",
                                                    "DMLC_PS_ROOT_PORT",
                                                    "DMLC_NUM_SERVER",
                                                    "DMLC_NUM_WORKER",
                                                    "DMLC_WORKER_ID",
                                                    "DMLC_NODE_HOST",
                                                    "PSTRAIN_NUM_PS",
                                                    "PSTRAIN_RENDEZVOUS"};

// Unsets (nullopt, as SubprocessOptions::env takes it) every cluster variable `env` does not set
// itself.
inline void clear_cluster_variables(std::map<std::string, std::optional<std::string>>& env) {
  for (const char* v : kClusterVariables) env.try_emplace(v, std::nullopt);
}

// How the integration tests start a task: `argv` with the cluster variables cleared (besides
// what `env` sets), stdout and stderr into <dir>/<name>.out and .err, stdin from /dev/null,
// killed if the test dies.
inline SubprocessOptions task_options(const std::filesystem::path& dir, const std::string& name,
                                      std::vector<std::string> argv,
                                      std::map<std::string, std::optional<std::string>> env = {}) {
  SubprocessOptions o;
  o.argv = std::move(argv);
  o.env = std::move(env);
  clear_cluster_variables(o.env);
  o.stdout_path = (dir / (name + ".out")).string();
  o.stderr_path = (dir / (name + ".err")).string();
  o.stdin_from_dev_null = true;
  o.kill_on_parent_death = true;
  return o;
}

// The Python of the test venv (scripts/test-venv.sh): $PSTRAIN_VENV/bin/python, else the
// build's PSTRAIN_TEST_VENV.
inline std::string test_python() {
  const char* env = std::getenv("PSTRAIN_VENV");
  return std::string(env != nullptr && *env != '\0' ? env : PSTRAIN_TEST_VENV) + "/bin/python";
}

// The first words of task i of a job with one PS: `pstrain --job_name=ps --task_index=0` for
// i = 0, `pstrain --job_name=worker --task_index=<i-1>` after.
inline std::vector<std::string> one_ps_task_argv(size_t i) {
  return {kPstrain, i == 0 ? "--job_name=ps" : "--job_name=worker",
          "--task_index=" + std::to_string(i == 0 ? 0 : i - 1)};
}

// The whole file ("" when it cannot be read).
inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Starts one process per argv (named names[i]: task_options) and waits for all of them until
// `within` has passed, killing any that overstays. True when every one exited 0; each that did
// not is a test failure that names it and holds its stderr.
inline bool run_tasks_to_success(const std::filesystem::path& dir,
                                 const std::vector<std::string>& names,
                                 const std::vector<std::vector<std::string>>& argvs,
                                 std::chrono::seconds within) {
  std::vector<Subprocess> procs;
  for (size_t i = 0; i < argvs.size(); ++i) {
    auto p = Subprocess::spawn(task_options(dir, names.at(i), argvs[i]));
    EXPECT_TRUE(p.ok()) << names.at(i) << ": " << p.status().to_string();
    if (!p.ok()) return false;
    procs.push_back(std::move(p).value());
  }
  const auto deadline = Subprocess::Clock::now() + within;
  bool ok = true;
  for (size_t i = 0; i < procs.size(); ++i) {
    auto st = procs[i].wait_until(deadline);
    const ExitStatus status = st.ok() ? *st : procs[i].kill();
    if (!status.success()) {
      ok = false;
      ADD_FAILURE() << names[i] << " " << status.to_string() << "\n--- stderr\n"
                    << read_all(dir / (names[i] + ".err"));
    }
  }
  return ok;
}

}  // namespace pstrain::testing_util
