// Checkpoint files: naming, shard contents, the index, the TensorFlow-style `checkpoint` state
// file, finding the latest complete checkpoint, retention and listing. The one place that knows
// the on-disk layout (docs/checkpoints.md); the PS (ps/checkpoint_io.h), the chief and
// `pstrain train` go through it.
//
// Files in a checkpoint directory, for global step S and n parameter servers:
//   model.ckpt-S.ps-I-of-N.safetensors  one per PS (I = 0..n-1): that PS's chunks and their
//                                       optimizer slots, the step, the training config
//   model.ckpt-S.index.json             written last by the chief: the checkpoint exists once
//                                       this file does
//   checkpoint                          TensorFlow's state file naming the latest checkpoints
//
// Contract
// - Every file is written to a temporary name, fsynced and renamed (runtime/base/files.h), so
//   a reader sees a whole file or none.
// - A checkpoint is complete when its index parses and every shard it lists is present, has
//   the recorded size and CRC-32, and parses as safetensors. find_latest_complete() returns
//   the newest complete one and reports every newer one it skipped with the reason (file and
//   fault); it never aborts on bad bytes.
// - finalize_checkpoint() writes the index, then the state file, then applies retention:
//   older checkpoints are deleted only after a newer one is complete.
// - Tensor names in a shard: the chunk key for the values ("hid_w/0"), "<key>/<slot>" for each
//   optimizer slot (TensorFlow's slot names: Momentum, Adam and Adam_1, Adagrad), and
//   "global_step" (I64 scalar). __metadata__ holds format, global_step, ps_index, num_ps,
//   model, layout_hash, optimizer, slots and training_config (JSON).
// Thread-safety: functions over values and files; callers must not write the same directory
// from two threads at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.h"
#include "runtime/base/status.h"

namespace pstrain::checkpoint {

inline constexpr const char* kFormat = "pstrain-checkpoint-1";
inline constexpr const char* kStateFile = "checkpoint";

std::string checkpoint_prefix(int64_t step);  // "model.ckpt-S"
std::string shard_file_name(int64_t step, int ps_index, int num_ps);
std::string index_file_name(int64_t step);
// The step of an index file name, or nullopt when `name` is not one.
std::optional<int64_t> parse_index_file_name(const std::string& name);
struct ShardName {
  int64_t step = 0;
  int ps_index = 0;
  int num_ps = 0;
};
std::optional<ShardName> parse_shard_file_name(const std::string& name);

// Slot names of an optimizer by its name ("sgd", "momentum", "adam", "adagrad"); empty for an
// unknown name.
std::vector<std::string> slot_names(const std::string& optimizer);

// CRC-32 (zlib's polynomial) of bytes, for the index's checksums.
uint32_t crc32_of(std::string_view bytes);

// What one PS saves.
struct ShardChunk {
  std::string key;
  std::vector<float> values;
  std::vector<std::vector<float>> slots;  // one per slot name, each as long as values
};
struct ShardData {
  int64_t step = 0;
  int ps_index = 0;
  int num_ps = 1;
  std::string model;
  uint64_t layout_hash = 0;
  std::string optimizer;           // names the slots (slot_names())
  nlohmann::json training_config;  // the whole config, as JSON
  std::vector<ShardChunk> chunks;
};

// A written shard as the index records it.
struct ShardFileInfo {
  std::string file;  // base name in the directory
  int ps_index = 0;
  int64_t step = 0;
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};

std::string encode_shard(const ShardData& shard);
// Writes `dir`/shard_file_name(...) atomically.
Result<ShardFileInfo> write_shard(const std::string& dir, const ShardData& shard);
// Reads and checks a shard: format, ps index and count, optimizer slots; every chunk with its
// slots (in file order). Errors name the file.
Result<ShardData> read_shard(const std::string& path);
Result<ShardData> decode_shard(std::string bytes, const std::string& what);

struct IndexChunk {
  std::string key;
  std::string variable;
  int ps = 0;
  int64_t flat_offset = 0;
  int64_t elements = 0;
};

struct CheckpointIndex {
  int64_t step = 0;
  double time = 0;  // seconds since the epoch when the index was written
  std::string model;
  uint64_t layout_hash = 0;
  int num_ps = 1;
  nlohmann::json training_config;  // includes the optimizer and its hyper-parameters
  std::vector<ShardFileInfo> shards;
  std::vector<IndexChunk> chunks;

  std::string to_json() const;
  static Result<CheckpointIndex> parse(const std::string& text, const std::string& what);
};

// TensorFlow's `checkpoint` file (a text proto of CheckpointState).
struct CheckpointState {
  std::string model_checkpoint_path;                    // e.g. "model.ckpt-200"
  std::vector<std::string> all_model_checkpoint_paths;  // oldest first
  std::string encode() const;
  static Result<CheckpointState> parse(const std::string& text, const std::string& what);
};

// Writes the index (the checkpoint becomes complete), the state file, then deletes the
// checkpoints older than the newest `keep_max` complete ones (0: keep all) and stray shards
// of steps older than the oldest kept one. `removed` gets the deleted files' names.
Status finalize_checkpoint(const std::string& dir, CheckpointIndex index, int keep_max,
                           std::vector<std::string>* removed = nullptr);

// Checks that every shard of `index` in `dir` is present, of the recorded size and checksum,
// and parses. The error names the file and the fault.
Status verify_checkpoint(const std::string& dir, const CheckpointIndex& index);

struct ScanResult {
  std::optional<CheckpointIndex> latest;  // the newest complete checkpoint
  std::vector<std::string> skipped;       // "model.ckpt-S: <reason>" for each newer torn one
};
// A missing or empty directory is no checkpoint (not an error).
Result<ScanResult> find_latest_complete(const std::string& dir);

struct CheckpointListing {
  int64_t step = 0;
  double time = 0;  // from the index; 0 when none
  bool has_index = false;
  int shards_expected = 0;  // from the index (or the shard names)
  int shards_present = 0;
  int64_t variables = 0;  // distinct variables in the index
  int64_t chunks = 0;
  uint64_t bytes = 0;  // present shard files
  bool complete = false;
  std::string problem;  // why not complete
};
// Every checkpoint step found in `dir` (indexes and stray shards), oldest first.
Result<std::vector<CheckpointListing>> list_checkpoints(const std::string& dir);

}  // namespace pstrain::checkpoint
