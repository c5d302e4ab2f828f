// The PS's side of checkpoints: its shard of a checkpoint from the ShardStore it holds, and
// back (the file format is checkpoint/checkpoint.h's; docs/checkpoints.md).
//
// Contract
// - shard_from_store() copies every chunk's values and optimizer slots, the step, the model,
//   the layout hash and the whole training config (training_config_json()).
// - find_ps_shard() picks this PS's shard of the newest complete checkpoint in `dir` (index
//   present, every shard present with the recorded size and checksum and parsing); torn newer
//   checkpoints are skipped and their faults returned in `skipped`. A directory without any
//   index (a PS's own directory when the tasks share none) falls back to this PS's newest shard
//   file that parses. Nothing found is not an error.
// - A one-PS shard written with the older default split (a variable in several chunks:
//   "w/0", "w/4970", ...) is merged into one chunk per variable ("w/0") with the layout hash
//   today's placement gives (merge_split_chunks(), applied by find_ps_shard()), so checkpoints
//   of earlier versions resume. Only a shard whose chunks tile each variable and agree with
//   its own layout hash is rewritten; any other is left for check_restorable() to refuse.
// - check_restorable() compares a shard with the config the chief sent in INIT: a different
//   model, layout hash, number of parameter servers or optimizer (its slots) is an
//   invalid-argument error saying what differs and how to start afresh.
// - restore_store() initialises a ShardStore from a shard (values, slots, step) under the
//   chief's config (learning rate, train_steps and aggregation are the new job's).
// Thread-safety: functions over values; the caller owns the store.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "ps/shard_store.h"
#include "ps/training_config.h"
#include "runtime/base/status.h"

namespace pstrain {

nlohmann::json training_config_json(const JobTrainingConfig& c);

// The config training_config_json() wrote (a shard's __metadata__), checked with validate();
// an error names the field.
Result<JobTrainingConfig> training_config_from_json(const nlohmann::json& j);

checkpoint::ShardData shard_from_store(const ShardStore& store, const JobTrainingConfig& config,
                                       int ps_index, int num_ps);

struct FoundShard {
  std::optional<checkpoint::ShardData> shard;
  std::string file;                  // its path
  std::vector<std::string> skipped;  // newer torn checkpoints and why
};
Result<FoundShard> find_ps_shard(const std::string& dir, int ps_index, int num_ps);

// See the contract; returns whether the shard was rewritten.
bool merge_split_chunks(checkpoint::ShardData& shard);

Status check_restorable(const checkpoint::ShardData& shard, const JobTrainingConfig& config,
                        int num_ps, const std::string& file);

Status restore_store(ShardStore& store, checkpoint::ShardData shard,
                     const JobTrainingConfig& config);

}  // namespace pstrain
