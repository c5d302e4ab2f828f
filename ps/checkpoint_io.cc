#include "ps/checkpoint_io.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <utility>

#include "ps/placement.h"
#include "runtime/base/log.h"

namespace pstrain {
namespace {

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016" PRIx64, v);
  return buf;
}

// "hid_w/4970" -> ("hid_w", 4970); nullopt when the key does not end in "/<digits>".
std::optional<std::pair<std::string, int64_t>> split_chunk_key(const std::string& key) {
  const size_t slash = key.rfind('/');
  if (slash == std::string::npos || slash + 1 >= key.size() || key.size() - slash > 19) {
    return std::nullopt;
  }
  int64_t start = 0;
  for (size_t i = slash + 1; i < key.size(); ++i) {
    if (key[i] < '0' || key[i] > '9') return std::nullopt;
    start = start * 10 + (key[i] - '0');
  }
  return std::make_pair(key.substr(0, slash), start);
}

// The chunks of a one-PS shard as the placement that wrote them (in their order, offsets
// cumulative), or nullopt when they do not tile each variable from its element 0.
std::optional<std::vector<Chunk>> one_ps_layout(const checkpoint::ShardData& shard) {
  std::vector<Chunk> chunks;
  int64_t offset = 0;
  int64_t next_start = 0;
  std::string variable;
  int index = -1;
  for (const checkpoint::ShardChunk& c : shard.chunks) {
    auto parsed = split_chunk_key(c.key);
    if (!parsed) return std::nullopt;
    if (parsed->first != variable || index < 0) {
      if (parsed->second != 0) return std::nullopt;
      variable = parsed->first;
      ++index;
      next_start = 0;
    }
    if (parsed->second != next_start) return std::nullopt;
    const auto count = static_cast<int64_t>(c.values.size());
    chunks.push_back(Chunk{c.key, index, offset, count, 0});
    offset += count;
    next_start += count;
  }
  return chunks;
}

}  // namespace

bool merge_split_chunks(checkpoint::ShardData& shard) {
  if (shard.num_ps != 1 || shard.chunks.empty()) return false;
  const std::optional<std::vector<Chunk>> old_layout = one_ps_layout(shard);
  if (!old_layout) return false;
  Placement old_placement;
  old_placement.hash = placement_hash(1, *old_layout);
  // Only a shard that its own chunks describe completely (its hash agrees) is rewritten.
  if (model_layout_hash(old_placement, shard.model) != shard.layout_hash) return false;
  std::vector<checkpoint::ShardChunk> merged;
  std::vector<Chunk> layout;
  for (size_t i = 0; i < shard.chunks.size(); ++i) {
    const Chunk& old = (*old_layout)[i];
    checkpoint::ShardChunk& c = shard.chunks[i];
    if (merged.empty() || layout.back().variable != old.variable) {
      layout.push_back(
          Chunk{split_chunk_key(c.key)->first + "/0", old.variable, old.flat_offset, 0, 0});
      merged.push_back(checkpoint::ShardChunk{layout.back().key, {}, {}});
      merged.back().slots.resize(c.slots.size());
    }
    checkpoint::ShardChunk& m = merged.back();
    if (m.slots.size() != c.slots.size()) return false;
    m.values.insert(m.values.end(), c.values.begin(), c.values.end());
    for (size_t k = 0; k < c.slots.size(); ++k) {
      m.slots[k].insert(m.slots[k].end(), c.slots[k].begin(), c.slots[k].end());
    }
    layout.back().count += old.count;
  }
  if (merged.size() == shard.chunks.size()) return false;  // nothing was split
  Placement placement;
  placement.hash = placement_hash(1, layout);
  const uint64_t hash = model_layout_hash(placement, shard.model);
  PSTRAIN_LOG(INFO) << "the checkpoint's " << shard.chunks.size() << " chunks (an older split) are "
                    << merged.size() << " chunks, one per variable, as this version lays them out";
  shard.chunks = std::move(merged);
  shard.layout_hash = hash;
  if (shard.training_config.is_object() && shard.training_config.contains("layout_hash")) {
    shard.training_config["layout_hash"] = hex64(hash);
  }
  return true;
}

nlohmann::json training_config_json(const JobTrainingConfig& c) {
  const OptimizerConfig& o = c.optimizer;
  const LrSchedule& l = o.schedule;
  nlohmann::json schedule = {{"kind", lr_schedule_name(l.kind)}};
  if (l.kind == LrScheduleKind::kExponential) {
    schedule["decay_steps"] = l.decay_steps;
    schedule["decay_rate"] = l.decay_rate;
    schedule["staircase"] = l.staircase;
  } else if (l.kind == LrScheduleKind::kPiecewise) {
    const auto n = static_cast<size_t>(l.num_boundaries);
    schedule["boundaries"] = std::vector<int64_t>(l.boundaries.begin(), l.boundaries.begin() + n);
    schedule["values"] = std::vector<float>(l.values.begin(), l.values.begin() + n + 1);
  }
  return {{"model", c.model},
          {"optimizer", optimizer_name(o.kind)},
          {"learning_rate", o.learning_rate},
          {"momentum", o.momentum},
          {"adam_beta1", o.beta1},
          {"adam_beta2", o.beta2},
          {"adam_epsilon", o.epsilon},
          {"adagrad_initial_accumulator", o.initial_accumulator},
          {"sync_replicas", c.sync_replicas},
          {"replicas_to_aggregate", c.replicas_to_aggregate},
          {"staleness", c.staleness},
          {"train_steps", c.train_steps},
          {"num_workers", c.num_workers},
          {"layout_hash", hex64(c.layout_hash)},
          {"lr_schedule", schedule}};
}

Result<JobTrainingConfig> training_config_from_json(const nlohmann::json& j) {
  JobTrainingConfig c;
  std::string optimizer, hash;
  try {
    c.model = j.at("model").get<std::string>();
    optimizer = j.at("optimizer").get<std::string>();
    c.optimizer.learning_rate = j.at("learning_rate").get<float>();
    c.optimizer.momentum = j.at("momentum").get<float>();
    c.optimizer.beta1 = j.at("adam_beta1").get<float>();
    c.optimizer.beta2 = j.at("adam_beta2").get<float>();
    c.optimizer.epsilon = j.at("adam_epsilon").get<float>();
    c.optimizer.initial_accumulator = j.at("adagrad_initial_accumulator").get<float>();
    c.sync_replicas = j.at("sync_replicas").get<bool>();
    c.replicas_to_aggregate = j.at("replicas_to_aggregate").get<int>();
    c.staleness = j.at("staleness").get<int>();
    c.train_steps = j.at("train_steps").get<int64_t>();
    c.num_workers = j.at("num_workers").get<int>();
    hash = j.at("layout_hash").get<std::string>();
    // Absent in checkpoints of earlier builds: a constant learning rate.
    if (j.contains("lr_schedule")) {
      const nlohmann::json& s = j.at("lr_schedule");
      auto kind = parse_lr_schedule(s.at("kind").get<std::string>());
      if (!kind.ok()) return data_loss("training_config: " + kind.status().message());
      LrSchedule& l = c.optimizer.schedule;
      l.kind = *kind;
      if (l.kind == LrScheduleKind::kExponential) {
        l.decay_steps = s.at("decay_steps").get<int64_t>();
        l.decay_rate = s.at("decay_rate").get<float>();
        l.staircase = s.at("staircase").get<bool>();
      } else if (l.kind == LrScheduleKind::kPiecewise) {
        const auto boundaries = s.at("boundaries").get<std::vector<int64_t>>();
        const auto values = s.at("values").get<std::vector<float>>();
        if (boundaries.empty() || boundaries.size() > static_cast<size_t>(kMaxLrBoundaries) ||
            values.size() != boundaries.size() + 1) {
          return data_loss("training_config: lr_schedule needs 1 to " +
                           std::to_string(kMaxLrBoundaries) + " boundaries and one value more");
        }
        l.num_boundaries = static_cast<int>(boundaries.size());
        std::copy(boundaries.begin(), boundaries.end(), l.boundaries.begin());
        std::copy(values.begin(), values.end(), l.values.begin());
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return data_loss(std::string("training_config: a field is missing or of the wrong type (") +
                     e.what() + ")");
  }
  PSTRAIN_ASSIGN_OR_RETURN(c.optimizer.kind, parse_optimizer(optimizer));
  try {
    size_t used = 0;
    c.layout_hash = std::stoull(hash, &used, 16);
    if (used != hash.size()) throw std::invalid_argument(hash);
  } catch (const std::exception&) {
    return data_loss("training_config: layout_hash \"" + hash + "\" is not 0x<hex>");
  }
  PSTRAIN_RETURN_IF_ERROR(c.validate());
  return c;
}

checkpoint::ShardData shard_from_store(const ShardStore& store, const JobTrainingConfig& config,
                                       int ps_index, int num_ps) {
  checkpoint::ShardData s;
  s.step = store.step();
  s.ps_index = ps_index;
  s.num_ps = num_ps;
  s.model = config.model;
  s.layout_hash = config.layout_hash;
  s.optimizer = optimizer_name(config.optimizer.kind);
  s.training_config = training_config_json(config);
  const int slots = optimizer_slot_count(config.optimizer.kind);
  s.chunks.reserve(store.num_chunks());
  for (size_t i = 0; i < store.num_chunks(); ++i) {
    checkpoint::ShardChunk c;
    c.key = store.key(i);
    c.values = *store.values(i);
    for (int k = 0; k < slots; ++k) c.slots.push_back(store.slot(i, k));
    s.chunks.push_back(std::move(c));
  }
  return s;
}

Result<FoundShard> find_ps_shard(const std::string& dir, int ps_index, int num_ps) {
  namespace fs = std::filesystem;
  FoundShard found;
  PSTRAIN_ASSIGN_OR_RETURN(checkpoint::ScanResult scan, checkpoint::find_latest_complete(dir));
  found.skipped = scan.skipped;
  if (scan.latest) {
    const checkpoint::CheckpointIndex& index = *scan.latest;
    if (index.num_ps != num_ps) {
      return invalid_argument(dir + "/" + checkpoint::index_file_name(index.step) +
                              " was written by a job with " + std::to_string(index.num_ps) +
                              " parameter server(s), this cluster has " + std::to_string(num_ps) +
                              "; use another --checkpoint_dir to start afresh");
    }
    for (const checkpoint::ShardFileInfo& s : index.shards) {
      if (s.ps_index != ps_index) continue;
      found.file = (fs::path(dir) / s.file).string();
      PSTRAIN_ASSIGN_OR_RETURN(checkpoint::ShardData shard, checkpoint::read_shard(found.file));
      merge_split_chunks(shard);
      found.shard = std::move(shard);
      return found;
    }
    return data_loss(dir + "/" + checkpoint::index_file_name(index.step) +
                     " lists no shard for parameter server " + std::to_string(ps_index));
  }
  if (!found.skipped.empty()) return found;  // indexes exist but none is complete
  // No index at all: a directory of this PS's own (tasks without a shared directory).
  PSTRAIN_ASSIGN_OR_RETURN(std::vector<checkpoint::CheckpointListing> listing,
                           checkpoint::list_checkpoints(dir));
  for (auto it = listing.rbegin(); it != listing.rend(); ++it) {
    const std::string path =
        (fs::path(dir) / checkpoint::shard_file_name(it->step, ps_index, num_ps)).string();
    std::error_code ec;
    if (!fs::exists(path, ec)) continue;
    auto shard = checkpoint::read_shard(path);
    if (!shard.ok()) {
      found.skipped.push_back(checkpoint::checkpoint_prefix(it->step) + ": " +
                              shard.status().message());
      continue;
    }
    found.file = path;
    found.shard = std::move(shard).value();
    merge_split_chunks(*found.shard);
    return found;
  }
  return found;
}

Status check_restorable(const checkpoint::ShardData& shard, const JobTrainingConfig& config,
                        int num_ps, const std::string& file) {
  const std::string fresh = "; use another --checkpoint_dir (or empty this one) to start afresh";
  if (shard.model != config.model) {
    return invalid_argument("the checkpoint " + file + " holds model '" + shard.model +
                            "', the flags ask for '" + config.model + "'" + fresh);
  }
  if (shard.num_ps != num_ps) {
    return invalid_argument("the checkpoint " + file + " was written by " +
                            std::to_string(shard.num_ps) + " parameter server(s), this job has " +
                            std::to_string(num_ps) + fresh);
  }
  if (shard.layout_hash != config.layout_hash) {
    return invalid_argument("the checkpoint " + file + " has variable layout " +
                            hex64(shard.layout_hash) + ", the flags give " +
                            hex64(config.layout_hash) + " (another --hidden_units or model shape)" +
                            fresh);
  }
  if (shard.optimizer != optimizer_name(config.optimizer.kind)) {
    return invalid_argument(
        "the checkpoint " + file + " holds " + shard.optimizer +
        " slots, the flags ask for --optimizer=" + optimizer_name(config.optimizer.kind) + fresh);
  }
  return {};
}

Status restore_store(ShardStore& store, checkpoint::ShardData shard,
                     const JobTrainingConfig& config) {
  const AggregationConfig agg{config.sync_replicas, config.replicas_to_aggregate,
                              config.train_steps};
  std::vector<ChunkInit> chunks;
  std::vector<std::vector<std::vector<float>>> slots;
  for (checkpoint::ShardChunk& c : shard.chunks) {
    ChunkInit ci;
    ci.key = std::move(c.key);
    ci.values = std::move(c.values);
    chunks.push_back(std::move(ci));
    slots.push_back(std::move(c.slots));
  }
  return store.restore(config.optimizer, agg, std::move(chunks), std::move(slots), shard.step);
}

}  // namespace pstrain
