// The local launcher behind `pstrain launch`: runs a whole distributed job (N parameter
// servers + M workers) as processes on this machine, as Batch AI or a scheduler would on a
// cluster, watches it, stops it, and reports.
//
// Contract
// - launch_local_job is plan, spawn, monitor, summarize: it validates the options, gathers the
//   facts (the binary, free ports, the job directory, a fresh job id, the core count), plans
//   every task with the pure plan_launch (runtime/job/launch_plan.h: argv, environment, log
//   and status paths), spawns the planned tasks, monitors them until the job is over, and
//   summarizes (LaunchSummary, summary.json).
// - Picks N+M free loopback ports and starts every task (PS tasks first, then workers) as
//   `<pstrain_binary> --job_name=ps|worker <training_flags...> [--job_id=<random>]
//   [--cpu_threads=<cores / workers, at least 1>]`: the cluster reaches the task only through
//   its environment, set as Batch AI sets it (AZ_BATCHAI_PS_HOSTS, AZ_BATCHAI_WORKER_HOSTS,
//   AZ_BATCHAI_TASK_INDEX, AZ_BATCHAI_JOB_NAME, AZ_BATCHAI_STDOUTERR_DIR, AZ_BATCHAI_NUM_GPUS
//   only when `num_gpus` is set) and as Azure ML sets TF_CONFIG; workers also get
//   PSTRAIN_STATUS_FILE=<job_dir>/status-wk-<i>.json. A fresh random --job_id is added unless
//   training_flags already has one, so leftovers of an earlier job on the same ports are
//   ignored; --cpu_threads likewise, so the tasks share the machine's cores. Each task runs in
//   its own process group with stdin from /dev/null and stdout/stderr in
//   <job_dir>/stdout-ps-0.txt, stderr-ps-0.txt, stdout-wk-0.txt, ...; each gets SIGKILL if the
//   launcher's thread dies.
// - Monitors about every `poll_interval`: child exits (never blocking), the workers' status
//   files (missing or unparsable ones are skipped), and one live progress line on `progress`
//   (fitted to a terminal's width; ended on the job's final figures).
// - A task that exits 2 (a configuration error) fails the job at once. Another that exits
//   non-zero or by a signal is started again (same command line, its output appended) while it
//   has restarts left (`max_restarts` each); a worker other than the chief whose restarts are
//   spent is left behind and the others go on (the PS tasks, once they declare it lost, exit
//   0 when the others finished): each is a line in `warnings` and on `progress`. Otherwise
//   the job fails as soon as any task exits non-zero or by a signal: the other tasks are
//   stopped (SIGTERM to the workers, then to the PS tasks, each group with `stop_grace` to
//   exit, then SIGKILL); the first failed task and the last lines of its stderr are named in
//   `error` (and printed on `progress`). When every worker has exited 0, the PS tasks must
//   exit by themselves within `ps_exit_timeout`, else they are killed and the job fails.
//   `*cancel` turning true (a signal handler) stops every task the same way and the job is
//   cancelled; `error` names the signal (*cancel_signal) and nothing is printed on
//   `progress` (describe_launch reports it once).
// - Each task's final state is recorded (LaunchedTask::state from its exit, task_state;
//   reported_state from a worker's status file).
// - <job_dir>/summary.json (keys in the order docs/launch.md lists) is written atomically at
//   the end, whatever the outcome, once the job directory exists, and also to
//   `summary_json` if set. Errors before any task starts (bad options, no job directory, no
//   free ports) are returned as a Status and start nothing. A task that cannot be started fails
//   the job (`error` says why) and stops the tasks started before it. Every started process is
//   reaped before launch_local_job returns.
// Thread-safety: one launch per thread; `cancel` may be set from any thread or a signal
// handler.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/job/process.h"

namespace pstrain {

struct LaunchOptions {
  int num_ps = 1;
  int num_workers = 2;
  // Empty: jobs/job-YYYYMMDD-HHMMSS under the current directory (a suffix -2, -3, ... if it
  // exists). A given directory is created if missing; an existing one is reused (its old
  // status and summary files are removed first).
  std::string job_dir;
  std::string pstrain_binary;               // empty: this executable
  std::vector<std::string> training_flags;  // passed to every task as given
  std::optional<int> num_gpus;              // the user's --num_gpus (-> AZ_BATCHAI_NUM_GPUS)
  bool sync_replicas = false;               // recorded in the summary
  std::string host = "127.0.0.1";           // loopback address of every task
  std::chrono::milliseconds ps_exit_timeout{60000};
  std::chrono::milliseconds stop_grace{5000};
  std::chrono::milliseconds poll_interval{200};
  const std::atomic<bool>* cancel = nullptr;
  // The signal that set *cancel (0: none or unknown), named in the summary's `error`.
  const std::atomic<int>* cancel_signal = nullptr;
  // Recorded in the summary: pstrain's version and the model the tasks train.
  std::string pstrain_version;
  std::string model;
  // Another path the job's summary.json is written to (the user's --summary_json); empty: only
  // <job_dir>/summary.json.
  std::string summary_json;
  // The user's --metrics_port (-1: off): task i of the plan (PS tasks first) serves its
  // metrics on metrics_port + i, or each on a free port of its own with 0.
  int metrics_port = -1;  // How many times each task that fails (exits non-zero or is killed by a
                          // signal the launcher
  // did not send) is started again with the same command line, as torchrun's --max_restarts.
  int max_restarts = 0;
};

enum class LaunchState { kSucceeded, kFailed, kCancelled };
const char* launch_state_name(LaunchState s);  // "succeeded", "failed", "cancelled"

struct LaunchedTask {
  std::string name;  // "ps-0", "wk-1"
  std::string job;   // "ps" or "worker"
  int index = 0;
  std::string address;  // "127.0.0.1:PORT"
  bool started = false;
  std::optional<ExitStatus> exit;  // set for every started task when the launch returns
  // How it ended (task_state): "succeeded", "stopped", "killed", "failed" or "not started".
  std::string state;
  // Workers: the state in its status file when the launch returns ("done", "cancelled",
  // "failed", ...; empty if it never wrote one). Empty for PS tasks.
  std::string reported_state;
  std::string stdout_path, stderr_path;
  int restarts = 0;  // times it was started again after failing (LaunchOptions::max_restarts)
};

// A task's final state from how it ended: "succeeded" (exit 0), "stopped" (a stop signal,
// SIGINT, SIGTERM or SIGHUP, killed it or it exited 128 + that signal, as pstrain's tasks do
// when they stop on one), "killed" (SIGKILL), "failed" (any other exit), "not started".
std::string task_state(const std::optional<ExitStatus>& exit, bool started);

// summary.json's "summary_version": raised when a field changes meaning or goes away (new
// fields may be added at the same version).
inline constexpr int kSummaryVersion = 1;

struct LaunchSummary {
  LaunchState state = LaunchState::kFailed;
  std::string pstrain_version;  // LaunchOptions::pstrain_version
  std::string start_time;       // when the launch began, ISO 8601 UTC ("2026-11-30T10:12:45Z")
  std::string model;            // LaunchOptions::model
  std::string job_dir;          // absolute
  std::string summary_path;     // <job_dir>/summary.json
  std::string job_id;
  std::vector<LaunchedTask> tasks;
  std::vector<std::string> config;  // the training flags passed to every task
  int num_ps = 0;
  int num_workers = 0;
  bool sync_replicas = false;
  int64_t global_step = 0;              // the workers' highest, from their last status
  int64_t train_steps = 0;              // from the workers' status (0: never reported)
  std::optional<double> final_loss;     // the chief's last reported loss (its status file)
  std::optional<double> test_accuracy;  // the chief's, from its final status
  double examples_per_second = 0;       // sum of the workers' final rates
  double wall_seconds = 0;
  std::string failed_task;  // name of the first task that failed, if any
  std::string error;        // why the job failed or was cancelled, one line (empty on success)
  std::vector<std::string> failed_task_stderr;  // the last lines of the failed task's stderr
  // A line for each task restarted or left behind on the way (the job may still succeed).
  std::vector<std::string> warnings;

  // The summary.json text: keys in a fixed order, the one docs/launch.md lists them in.
  std::string to_json() const;
};

Result<LaunchSummary> launch_local_job(const LaunchOptions& options, std::FILE* progress);

// A few human lines: state, wall time, accuracy, examples/s, where the summary is.
std::string describe_launch(const LaunchSummary& summary);

}  // namespace pstrain
