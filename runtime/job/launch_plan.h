// The plan of a local launch (runtime/job/launcher.h): what each task of the job gets (name,
// address, command line, environment, log and status-file paths), worked out before anything
// starts.
//
// Contract
// - plan_launch is a pure function of its arguments: no I/O, no clock, no randomness and no
//   process state (environment, working directory, core count). What the launcher has to find
//   out first (the job directory, the free ports, a fresh job id, the binary, the number of
//   cores) comes in as LaunchFacts. Equal inputs give equal plans.
// - Tasks: the `num_ps` PS tasks ps-0, ps-1, ... first, then the `num_workers` workers wk-0,
//   wk-1, ...; the i-th task of the plan listens on `<host>:<ports[i]>`.
// - argv: `<binary> --job_name=ps|worker <training_flags as given, in order>`, then
//   `--job_id=<facts.job_id>` unless the training flags carry --job_id (as "--job_id" or
//   "--job_id=..."), then `--secret_file=<facts.secret_file>` when it is not empty and the
//   training flags carry no --secret_file, then `--cpu_threads=<max(1, cores / num_workers)>`
//   unless they carry --cpu_threads (the tasks share this machine's cores), then
//   `--metrics_port=<p>` when options.metrics_port >= 0: options.metrics_port + i for the i-th task
//   of the plan (0 for every task with 0: each picks a free port); a port beyond 65535 is an
//   InvalidArgument.
// - env (runtime/job/task_env.h; overrides of the launcher's environment: a value sets the
//   variable, nullopt unsets it so the launcher's own value never leaks): AZ_BATCHAI_PS_HOSTS,
//   AZ_BATCHAI_WORKER_HOSTS (comma-separated), AZ_BATCHAI_TASK_INDEX, AZ_BATCHAI_JOB_NAME (the
//   job directory's name), AZ_BATCHAI_STDOUTERR_DIR (the job directory), AZ_BATCHAI_NUM_GPUS
//   (set only when options.num_gpus is), TF_CONFIG ({"cluster": {"ps": [...], "worker":
//   [...]}, "task": {"type": "ps"|"worker", "index": i}, "environment": "cloud"}) and
//   PSTRAIN_STATUS_FILE and PSTRAIN_METRICS_FILE (set for workers only).
// - Paths: <job_dir>/stdout-<name>.txt, <job_dir>/stderr-<name>.txt and, for workers,
//   <job_dir>/status-<name>.json and <job_dir>/metrics-<name>.jsonl.
// - Bad input is an InvalidArgument Status, never a crash: fewer than 1 PS or 1 worker, a port
//   count other than num_ps + num_workers, a port outside 1..65535, an empty binary or job
//   directory.
// Thread-safety: pure functions on values.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/job/launcher.h"

namespace pstrain {

// What the launcher found out before planning.
struct LaunchFacts {
  std::string job_dir;     // absolute, without a trailing '/'
  std::string binary;      // the pstrain executable every task runs
  std::vector<int> ports;  // num_ps + num_workers free ports: the PS tasks', then the workers'
  std::string job_id;      // added as --job_id unless the training flags carry one
  unsigned cpu_cores = 1;  // this machine's cores (0 counts as 1)
  // The job secret the launcher made (docs/security.md); empty: none (the tasks then use the
  // flags' or PSTRAIN_SECRET_FILE's, if any).
  std::string secret_file = std::string();
};

struct PlannedTask {
  std::string name;  // "ps-0", "wk-1"
  std::string job;   // "ps" or "worker"
  int index = 0;
  std::string address;  // "<host>:<port>"
  std::vector<std::string> argv;
  std::map<std::string, std::optional<std::string>> env;  // as SubprocessOptions::env
  std::string stdout_path, stderr_path;
  std::string status_path;   // workers only; empty for PS tasks
  std::string metrics_path;  // workers only: their MetricsRecords (task_env.h)

  bool is_worker() const { return job == "worker"; }
  bool operator==(const PlannedTask&) const = default;
};

struct LaunchPlan {
  std::string job_id;  // the --job_id added to every task; empty when the flags carry one
  std::vector<std::string> ps_hosts, worker_hosts;
  std::vector<PlannedTask> tasks;  // PS tasks first, then workers

  bool operator==(const LaunchPlan&) const = default;
};

// The checks on the job's shape that need no I/O (at least 1 PS and 1 worker), worded for
// the user's --ps/--workers flags.
Status check_launch_shape(const LaunchOptions& options);

Result<LaunchPlan> plan_launch(const LaunchOptions& options, const LaunchFacts& facts);

}  // namespace pstrain
