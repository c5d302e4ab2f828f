// What the integration tests that run the real binary share: the pstrain executable of this
// build tree, the Debian data set's directory (tests skip when it is not installed), the
// variables a test clears so that its own environment does not leak into the tasks' cluster
// resolution, the test venv's Python, and reading a task's output file.
#pragma once

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

// The whole file ("" when it cannot be read).
inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace pstrain::testing_util
