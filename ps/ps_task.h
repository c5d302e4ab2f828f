// The parameter-server task of a distributed job: what `pstrain --job_name=ps` runs (beside
// worker/worker_task.h for workers).
//
// Contract
// - Serves PS task `task_index` of `cluster` on its host:port (ps/server.h) until every worker
//   has said DONE or is lost, or a signal stops it: SIGTERM, SIGINT and SIGHUP call
//   request_stop() while run_ps_task() runs (the previous handlers are restored before it
//   returns).
// - On success prints one line to `out`: "ps N done: global step S, A gradients applied,
//   D dropped (stale or late), M malformed and F foreign messages ignored".
// - A stop by one of those signals first writes this PS's shard of its current state into
//   checkpoint_dir (when given and initialised; "ps N saved FILE (global step S)" on `out`).
// - A stop by one of those signals is not an error: the summary has `stop_signal` set (its
//   `server` is empty) and "ps N stopped by SIGTERM" is printed to `out`. The caller exits
//   with 128 + the signal (cli/role_command.cc), as a process killed by it would report.
// - Errors: kInvalidArgument when the server cannot start (a task index outside the cluster,
//   an address that cannot be bound or is in use: a configuration problem, the message says
//   which); otherwise the server's error: kUnavailable when workers were lost.
// Thread-safety: one call at a time per process (signal handlers are process-wide).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "ps/server.h"
#include "ps/training_config.h"
#include "runtime/base/status.h"
#include "runtime/job/cluster.h"

namespace pstrain {

struct PsTaskOptions {
  ClusterSpec cluster;
  int task_index = 0;  // which of cluster.ps this task serves
  uint64_t job_id = 0;
  std::chrono::milliseconds heartbeat_timeout{30000};  // --heartbeat_timeout_s
  std::chrono::milliseconds startup_timeout{600000};   // --startup_timeout_s
  // --checkpoint_dir: restore at INIT, shards on SAVE (ps/server.h); empty: none.
  std::string checkpoint_dir = std::string();
  int keep_checkpoint_max = 5;  // --keep_checkpoint_max: own shards kept
};

struct PsTaskSummary {
  int task_index = 0;
  ServerSummary server;
  std::optional<JobTrainingConfig> config;  // what the chief sent in INIT (empty: never came)
  int stop_signal = 0;                      // the signal that stopped the server (0: none)
};

Result<PsTaskSummary> run_ps_task(const PsTaskOptions& options, std::FILE* out);

}  // namespace pstrain
