// Checkpoints from the training loops' side (docs/checkpoints.md): the flags' settings, the
// chief's schedule of SAVE requests and its index, and `pstrain train`'s own save and restore
// in the same format (one shard, ps-0-of-1).
//
// Contract
// - ChiefCheckpointer (worker 0 of a distributed job): after_step() is called after every
//   step with the steps each PS served. It asks every PS, ahead of time, to save at the next
//   multiple of save_steps (SAVE with that step; the PS writes its shard between two updates
//   when it gets there), or, when save_secs have passed since the last checkpoint, at the step
//   after the newest one it saw. Once every PS has reached the step it collects the shards'
//   names, sizes and checksums, writes the index and the `checkpoint` state file into its own
//   --checkpoint_dir and applies retention (checkpoint/checkpoint.h). save_final() saves
//   every PS's current state at the end of training or on a stop signal. It never blocks
//   training on a PS's save: a save that is not due yet is only scheduled.
//   A PS that cannot save (no --checkpoint_dir, a write error) turns the checkpointer off
//   with one warning; training carries on.
// - LocalCheckpointer (`pstrain train`): restore() loads the newest complete checkpoint into
//   the parameters and optimizer slots and returns its step (0: none); save() writes the
//   shard, the index and the state file. Both use the placement of the model on one PS, so
//   the files are those of a one-PS job.
// - A checkpoint of another model, layout or optimizer is refused with an invalid-argument
//   error saying what differs (exit 2).
// Thread-safety: one thread (the training loop's); ChiefCheckpointer uses the loop's PsClient.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "kernels/variable.h"
#include "ps/client.h"
#include "ps/placement.h"
#include "ps/training_config.h"
#include "runtime/base/status.h"
#include "worker/checkpoint_options.h"

namespace pstrain {

// The index of a checkpoint at `step` whose shards are `shards`.
checkpoint::CheckpointIndex make_index(int64_t step, std::vector<checkpoint::ShardFileInfo> shards,
                                       const Placement& placement,
                                       const std::vector<VariableSpec>& variables,
                                       const JobTrainingConfig& config);

class ChiefCheckpointer {
 public:
  ChiefCheckpointer(CheckpointOptions options, PsClient& client, const Placement& placement,
                    const std::vector<VariableSpec>& variables, JobTrainingConfig config);
  void after_step(const PsSteps& steps);
  // Saves every PS's state at `step` or later (each PS's current state) and writes the index.
  Status save_final(int64_t step);
  int64_t last_saved_step() const { return last_saved_; }

 private:
  using Clock = std::chrono::steady_clock;
  // Sends SAVE(target) to the PS still missing; writes the index once all have answered.
  Status collect();
  void disable(const Status& why);

  CheckpointOptions options_;
  PsClient& client_;
  const Placement& placement_;
  const std::vector<VariableSpec>& variables_;
  JobTrainingConfig config_;
  bool enabled_;
  std::optional<int64_t> target_;  // the step the servers were asked to save at
  std::vector<std::optional<checkpoint::ShardFileInfo>> shards_;
  int64_t last_saved_ = -1;
  Clock::time_point last_time_ = Clock::now();
};

class LocalCheckpointer {
 public:
  LocalCheckpointer(CheckpointOptions options, const std::vector<VariableSpec>& variables,
                    JobTrainingConfig config);
  // Fills `params` and `slots` (optimizer_slot_count spans, each as long as params) from the
  // newest complete checkpoint; returns its step, 0 when there is none.
  Result<int64_t> restore(std::span<float> params, std::span<const std::span<float>> slots);
  // Whether a save is due after `step` (by steps or seconds).
  bool due(int64_t step) const;
  Status save(int64_t step, std::span<const float> params,
              std::span<const std::span<const float>> slots);

 private:
  using Clock = std::chrono::steady_clock;
  CheckpointOptions options_;
  const std::vector<VariableSpec>& variables_;
  Placement placement_;
  JobTrainingConfig config_;
  int64_t last_saved_ = -1;
  Clock::time_point last_time_ = Clock::now();
};

}  // namespace pstrain
