#include "worker/checkpointer.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "ps/checkpoint_io.h"
#include "runtime/base/log.h"

namespace pstrain {
namespace {

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Status validate(const CheckpointOptions& o) {
  if (o.save_steps < 0) {
    return invalid_argument("--save_checkpoint_steps must be >= 0 (0: off), got " +
                            std::to_string(o.save_steps));
  }
  if (o.save_secs < 0) {
    return invalid_argument("--save_checkpoint_secs must be >= 0 (0: off), got " +
                            std::to_string(o.save_secs));
  }
  if (o.keep_max < 0) {
    return invalid_argument("--keep_checkpoint_max must be >= 0 (0: keep all), got " +
                            std::to_string(o.keep_max));
  }
  return {};
}

checkpoint::CheckpointIndex make_index(int64_t step, std::vector<checkpoint::ShardFileInfo> shards,
                                       const Placement& placement,
                                       const std::vector<VariableSpec>& variables,
                                       const JobTrainingConfig& config) {
  checkpoint::CheckpointIndex x;
  x.step = step;
  x.time = unix_seconds();
  x.model = config.model;
  x.layout_hash = config.layout_hash;
  x.num_ps = placement.num_ps;
  x.training_config = training_config_json(config);
  x.shards = std::move(shards);
  for (const Chunk& c : placement.chunks) {
    x.chunks.push_back({.key = c.key,
                        .variable = variables[static_cast<size_t>(c.variable)].name,
                        .ps = c.ps,
                        .flat_offset = c.flat_offset,
                        .elements = c.count});
  }
  return x;
}

// --- the chief -----------------------------------------------------------------------------

ChiefCheckpointer::ChiefCheckpointer(CheckpointOptions options, PsClient& client,
                                     const Placement& placement,
                                     const std::vector<VariableSpec>& variables,
                                     JobTrainingConfig config)
    : options_(std::move(options)),
      client_(client),
      placement_(placement),
      variables_(variables),
      config_(std::move(config)),
      enabled_(options_.enabled()) {}

void ChiefCheckpointer::disable(const Status& why) {
  PSTRAIN_LOG(WARNING) << "checkpoints are off for the rest of this run: " << why.message();
  enabled_ = false;
  target_.reset();
}

void ChiefCheckpointer::after_step(const PsSteps& steps) {
  if (!enabled_ || steps.empty()) return;
  const int64_t lo = *std::min_element(steps.begin(), steps.end());
  const int64_t hi = *std::max_element(steps.begin(), steps.end());
  std::optional<int64_t> want;
  if (options_.save_steps > 0) want = (hi / options_.save_steps + 1) * options_.save_steps;
  if (options_.save_secs > 0 &&
      Clock::now() - last_time_ >= std::chrono::seconds(options_.save_secs)) {
    want = want ? std::min(*want, hi + 1) : hi + 1;
  }
  // The end of training has its own save (save_final).
  if (want && *want >= config_.train_steps) want.reset();
  if (want && (!target_ || *want < *target_)) {
    target_ = want;
    shards_.assign(static_cast<size_t>(placement_.num_ps), std::nullopt);
    if (Status st = collect(); !st.ok()) disable(st);
    return;
  }
  if (target_ && lo >= *target_) {
    if (Status st = collect(); !st.ok()) disable(st);
  }
}

Status ChiefCheckpointer::collect() {
  std::vector<int> missing;
  for (int i = 0; i < placement_.num_ps; ++i) {
    if (!shards_[static_cast<size_t>(i)]) missing.push_back(i);
  }
  PSTRAIN_ASSIGN_OR_RETURN(auto saved, client_.save(missing, *target_));
  for (size_t k = 0; k < missing.size(); ++k) {
    if (!saved[k]) continue;
    const SavedShard& s = *saved[k];
    shards_[static_cast<size_t>(missing[k])] = checkpoint::ShardFileInfo{
        .file = s.file, .ps_index = s.ps, .step = s.step, .bytes = s.bytes, .crc32 = s.crc32};
  }
  if (std::any_of(shards_.begin(), shards_.end(), [](const auto& s) { return !s.has_value(); })) {
    return {};  // scheduled; asked again once every PS reached the step
  }
  std::vector<checkpoint::ShardFileInfo> shards;
  for (auto& s : shards_) shards.push_back(std::move(*s));
  const int64_t step = *target_;
  std::vector<std::string> removed;
  PSTRAIN_RETURN_IF_ERROR(checkpoint::finalize_checkpoint(
      options_.dir, make_index(step, std::move(shards), placement_, variables_, config_),
      options_.keep_max, &removed));
  PSTRAIN_LOG(INFO) << "chief: checkpoint " << checkpoint::checkpoint_prefix(step)
                    << " complete in " << options_.dir << " (" << placement_.num_ps << " shard(s)"
                    << (removed.empty()
                            ? ""
                            : ", " + std::to_string(removed.size()) + " older file(s) deleted")
                    << ")";
  last_saved_ = step;
  last_time_ = Clock::now();
  target_.reset();
  return {};
}

Status ChiefCheckpointer::save_final(int64_t step) {
  if (!enabled_) return {};
  if (last_saved_ >= step) return {};
  target_ = step;
  shards_.assign(static_cast<size_t>(placement_.num_ps), std::nullopt);
  Status st = collect();
  if (!st.ok()) {
    enabled_ = false;
    return st;
  }
  if (target_) {
    target_.reset();
    return failed_precondition("a parameter server did not write its shard of step " +
                               std::to_string(step));
  }
  return {};
}

// --- pstrain train -------------------------------------------------------------------------

LocalCheckpointer::LocalCheckpointer(CheckpointOptions options,
                                     const std::vector<VariableSpec>& variables,
                                     JobTrainingConfig config)
    : options_(std::move(options)),
      variables_(variables),
      placement_(place_variables(variables, 1)),
      config_(std::move(config)) {
  config_.layout_hash = model_layout_hash(placement_, config_.model);
}

Result<int64_t> LocalCheckpointer::restore(std::span<float> params,
                                           std::span<const std::span<float>> slots) {
  if (!options_.enabled()) return int64_t{0};
  PSTRAIN_ASSIGN_OR_RETURN(checkpoint::ScanResult scan,
                           checkpoint::find_latest_complete(options_.dir));
  for (const std::string& why : scan.skipped) {
    PSTRAIN_LOG(WARNING) << "skipping a torn checkpoint in " << options_.dir << ": " << why;
  }
  if (!scan.latest) return int64_t{0};
  const checkpoint::CheckpointIndex& index = *scan.latest;
  const std::string index_path = options_.dir + "/" + checkpoint::index_file_name(index.step);
  if (index.num_ps != 1) {
    return invalid_argument(index_path + " was written by a job with " +
                            std::to_string(index.num_ps) +
                            " parameter servers; `pstrain train` resumes one-PS checkpoints "
                            "only: use another --checkpoint_dir");
  }
  const std::string file = options_.dir + "/" + index.shards[0].file;
  PSTRAIN_ASSIGN_OR_RETURN(checkpoint::ShardData shard, checkpoint::read_shard(file));
  merge_split_chunks(shard);  // a checkpoint of an earlier version's 16-chunk split
  PSTRAIN_RETURN_IF_ERROR(check_restorable(shard, config_, 1, file));
  if (shard.chunks.size() != placement_.chunks.size()) {
    return invalid_argument(file + " holds " + std::to_string(shard.chunks.size()) +
                            " chunks, the model has " + std::to_string(placement_.chunks.size()));
  }
  for (size_t i = 0; i < shard.chunks.size(); ++i) {
    const Chunk& c = placement_.chunks[i];
    const checkpoint::ShardChunk& sc = shard.chunks[i];
    if (sc.key != c.key || static_cast<int64_t>(sc.values.size()) != c.count ||
        sc.slots.size() != slots.size()) {
      return invalid_argument(file + ": chunk '" + sc.key + "' does not match the model's '" +
                              c.key + "'");
    }
    const auto at = static_cast<size_t>(c.flat_offset);
    std::copy(sc.values.begin(), sc.values.end(), params.begin() + static_cast<ptrdiff_t>(at));
    for (size_t k = 0; k < slots.size(); ++k) {
      std::copy(sc.slots[k].begin(), sc.slots[k].end(),
                slots[k].begin() + static_cast<ptrdiff_t>(at));
    }
  }
  last_saved_ = shard.step;
  return shard.step;
}

bool LocalCheckpointer::due(int64_t step) const {
  if (!options_.enabled()) return false;
  if (options_.save_steps > 0 && step % options_.save_steps == 0) return true;
  return options_.save_secs > 0 &&
         Clock::now() - last_time_ >= std::chrono::seconds(options_.save_secs);
}

Status LocalCheckpointer::save(int64_t step, std::span<const float> params,
                               std::span<const std::span<const float>> slots) {
  if (!options_.enabled() || step == last_saved_) return {};
  checkpoint::ShardData s;
  s.step = step;
  s.ps_index = 0;
  s.num_ps = 1;
  s.model = config_.model;
  s.layout_hash = config_.layout_hash;
  s.optimizer = optimizer_name(config_.optimizer.kind);
  s.training_config = training_config_json(config_);
  for (const Chunk& c : placement_.chunks) {
    checkpoint::ShardChunk sc;
    sc.key = c.key;
    const auto b = static_cast<size_t>(c.flat_offset), n = static_cast<size_t>(c.count);
    const auto values = params.subspan(b, n);
    sc.values.assign(values.begin(), values.end());
    for (const std::span<const float>& slot : slots) {
      const auto part = slot.subspan(b, n);
      sc.slots.emplace_back(part.begin(), part.end());
    }
    s.chunks.push_back(std::move(sc));
  }
  PSTRAIN_ASSIGN_OR_RETURN(checkpoint::ShardFileInfo info,
                           checkpoint::write_shard(options_.dir, s));
  PSTRAIN_RETURN_IF_ERROR(checkpoint::finalize_checkpoint(
      options_.dir, make_index(step, {info}, placement_, variables_, config_), options_.keep_max));
  PSTRAIN_LOG(DEBUG) << "checkpoint " << checkpoint::checkpoint_prefix(step) << " written to "
                     << options_.dir;
  last_saved_ = step;
  last_time_ = Clock::now();
  return {};
}

}  // namespace pstrain
