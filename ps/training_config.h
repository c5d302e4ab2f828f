// JobTrainingConfig: the job-wide training settings a parameter server needs (the optimizer
// with every hyper-parameter, sync/async aggregation, train_steps, the number of workers, the
// model name and the variable layout's hash), and the one conversion to and from the wire's
// TrainingConfig, which the chief sends every PS in INIT.
//
// Contract
// - to_wire() writes every field; from_wire(to_wire(c)) gives back c exactly (the
//   hyper-parameters are float32 on both sides).
// - from_wire() checks what came from the network and never aborts: an unknown optimizer, a
//   hyper-parameter the chief did not send (an older pstrain), a learning rate that is not a
//   finite number > 0, an Adam beta outside [0, 1), a negative epsilon, a non-positive Adagrad
//   accumulator, replicas_to_aggregate < 1 (or, sync, more than the workers), a negative
//   staleness (or any with sync), train_steps <= 0, num_workers < 1 or no model name give an
//   invalid-argument error naming the field, what it must be and what it got.
// - validate() applies the same checks to a config built in the process (the chief's client
//   checks before it sends).
// Thread-safety: a value; the functions are pure.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/optim.h"
#include "runtime/base/status.h"
#include "runtime/wire/proto/pstrain.pb.h"

namespace pstrain {

struct JobTrainingConfig {
  std::string model;          // --model: "mlp" or "cnn" (the PS logs and keeps it)
  OptimizerConfig optimizer;  // kind, learning rate and every hyper-parameter
  bool sync_replicas = false;
  int replicas_to_aggregate = 1;  // sync: gradients averaged per step (1..num_workers)
  int staleness = 0;              // async: bounded staleness, 0 = off; always 0 when sync
  int64_t train_steps = 0;        // global steps
  int num_workers = 1;
  uint64_t layout_hash = 0;  // placement and model fingerprint (HELLO and INIT)

  wire::TrainingConfig to_wire() const;
  static Result<JobTrainingConfig> from_wire(const wire::TrainingConfig& w);
  Status validate() const;
  // One line for logs, e.g. "mlp, adam lr 0.01 beta1 0.9 beta2 0.999 epsilon 1e-08, sync, 2
  // replicas to aggregate of 2 workers, 200 steps" or "..., async, staleness 2, 2 workers,
  // ..." (only the chosen optimizer's hyper-parameters).
  std::string describe() const;
};

}  // namespace pstrain
