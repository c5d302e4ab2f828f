// The parameter-server task of a distributed job: what `pstrain --job_name=ps` runs (beside
// worker/worker_task.h for workers).
//
// Contract
// - Serves PS task `task_index` of `cluster` on its host:port (ps/server.h) until every worker
//   has said DONE or is lost, or a signal stops it: SIGTERM, SIGINT and SIGHUP call
//   request_stop() while run_ps_task() runs (the previous handlers are restored before it
//   returns).
// - With metrics_port >= 0 it serves Prometheus metrics (ps/ps_metrics.h) on
//   metrics_host:metrics_port while the server runs and logs their URL ("ps N metrics at
//   http://..."); a port that cannot be bound is kInvalidArgument.
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
#include <memory>
#include <optional>
#include <string>

#include "ps/server.h"
#include "ps/training_config.h"
#include "runtime/base/status.h"
#include "runtime/job/cluster.h"
#include "runtime/wire/transport.h"

namespace pstrain {

struct PsTaskOptions {
  ClusterSpec cluster;
  int task_index = 0;  // which of cluster.ps this task serves
  uint64_t job_id = 0;
  std::chrono::milliseconds heartbeat_timeout{30000};  // --heartbeat_timeout_s
  std::chrono::milliseconds startup_timeout{600000};   // --startup_timeout_s
  int metrics_port = -1;  // --metrics_port: Prometheus metrics on it (0: a free port; -1: off)
  std::string metrics_host = "127.0.0.1";  // --metrics_host: the address they are served on
  // --checkpoint_dir: restore at INIT, shards on SAVE (ps/server.h); empty: none.
  std::string checkpoint_dir = std::string();
  int keep_checkpoint_max = 5;  // --keep_checkpoint_max: own shards kept
  // --secret_file's keys (runtime/wire/security.h): CURVE + ZAP; nullptr: open port (a
  // warning when it is not a loopback address).
  std::shared_ptr<const JobKeys> keys = nullptr;
};

struct PsTaskSummary {
  int task_index = 0;
  ServerSummary server;
  std::optional<JobTrainingConfig> config;  // what the chief sent in INIT (empty: never came)
  int stop_signal = 0;                      // the signal that stopped the server (0: none)
};

// A PS socket bound before the cluster is known: under a rank-based scheduler the task binds
// port 0, reports the port to the rendezvous (runtime/job/rendezvous.h) and then serves on it.
struct PsListener {
  zmq::context_t ctx{kIoThreads};  // first: destroyed last
  PsSocket bound = PsSocket();
  int port = 0;
};
// Binds a PS service socket on `host`'s interface (loopback hosts: loopback only) at port 0;
// with `keys`, as a CURVE server (ps/server.h, bind_ps_socket).
Result<std::unique_ptr<PsListener>> bind_ps_listener(const std::string& host, int ps_index,
                                                     const JobKeys* keys = nullptr);

// With `listener`, serves on it instead of binding the cluster's address for this task.
Result<PsTaskSummary> run_ps_task(const PsTaskOptions& options, std::FILE* out,
                                  std::unique_ptr<PsListener> listener = nullptr);

}  // namespace pstrain
