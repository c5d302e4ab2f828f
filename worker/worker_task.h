// A worker task of a distributed job: mnist_replica's worker, over pstrain's parameter
// servers.
//
// Contract: pulls parameters, computes gradients on its shard of the training data, pushes
// them to every PS, and repeats until the global step reaches train_steps. Worker 0 is the
// chief: it initialises the variables on the PS tasks (the others wait for that event), and at
// the end evaluates the final parameters on the test set. Every worker tells the PS tasks it is
// done before returning, so they exit by themselves. Progress, the end of training and the
// evaluation are reported to `sink` (worker/training_sink.h: mnist_replica's stdout lines,
// the launcher's status file, ... as the caller composes them); the returned summary is built
// from the same reports. A stop request (WorkerTaskOptions::stop) ends training between two
// steps with kCancelled.
// Thread-safety: one call per process.
#pragma once

#include <atomic>
#include <string>

#include <nlohmann/json.hpp>

#include "ps/client.h"
#include "runtime/base/status.h"
#include "runtime/job/cluster.h"
#include "worker/train_config.h"
#include "worker/training_sink.h"

namespace pstrain {

struct WorkerTaskOptions {
  TrainConfig train;
  bool sync_replicas = false;
  int replicas_to_aggregate = 0;  // 0: the number of workers
  int staleness = 0;              // async: at most this many steps ahead of the slowest; 0 off
  ClusterSpec cluster;
  int task_index = 0;
  // The GPU is device_slot % num_gpus; -1: task_index (a scheduler's local rank, e.g.
  // SLURM_LOCALID, when it gives one).
  int device_slot = -1;
  uint64_t job_id = 0;
  ClientOptions client;  // worker and job_id are filled in from the fields above
  // --overlap: push each layer's gradients during backward (PsClient::push_part) where they
  // travel (TCP, the Unix socket), on the CPU backend, and start the next step's forward on
  // the first layers' parameters while the rest arrive (worker/overlap_pull.h).
  bool overlap = true;
  // Turning non-zero (a signal handler stores the signal's number) stops training between two
  // steps: run_worker_task then returns kCancelled, after training_end() but without
  // finish(), so the caller records the final state ("cancelled").
  const std::atomic<int>* stop = nullptr;
};

struct WorkerTaskSummary {
  int task_index = 0;
  std::string backend;
  int64_t local_steps = 0;
  int64_t global_step = 0;
  int64_t rejected_gradients = 0;  // pushes a PS dropped (stale or late)
  double final_loss = 0;           // mean over this worker's last 100 steps
  double train_seconds = 0;
  double examples_per_second = 0;  // this worker's
  bool evaluated = false;          // chief only
  double test_accuracy = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;

  nlohmann::json to_json() const;
};

Result<WorkerTaskSummary> run_worker_task(const WorkerTaskOptions& options, TrainingSink& sink);

}  // namespace pstrain
