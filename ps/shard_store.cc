#include "ps/shard_store.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <unordered_set>

namespace pstrain {

const char* push_outcome_name(PushOutcome o) {
  switch (o) {
    case PushOutcome::kApplied:
      return "applied";
    case PushOutcome::kAccumulated:
      return "accumulated";
    case PushOutcome::kStale:
      return "stale";
    case PushOutcome::kDuplicate:
      return "duplicate";
    case PushOutcome::kFuture:
      return "future";
    case PushOutcome::kNonFinite:
      return "non-finite";
    case PushOutcome::kLate:
      return "late";
  }
  return "unknown";
}

Status ShardStore::initialize(const OptimizerConfig& optimizer,
                              const AggregationConfig& aggregation, std::vector<ChunkInit> chunks) {
  if (initialized_) return failed_precondition("variables are already initialised");
  if (aggregation.sync && aggregation.replicas_to_aggregate < 1) {
    return invalid_argument("replicas_to_aggregate must be at least 1, got " +
                            std::to_string(aggregation.replicas_to_aggregate));
  }
  std::unordered_set<std::string> seen;
  for (const ChunkInit& c : chunks) {
    if (c.values.empty()) return invalid_argument("chunk '" + c.key + "' is empty");
    if (!seen.insert(c.key).second) return invalid_argument("chunk '" + c.key + "' repeats");
  }
  optimizer_ = optimizer;
  aggregation_ = aggregation;
  replicas_ = aggregation.sync ? aggregation.replicas_to_aggregate : 1;
  const int slots = optimizer_slot_count(optimizer.kind);
  const float slot_init = optimizer_slot_initial_value(optimizer);
  chunks_.clear();
  for (ChunkInit& c : chunks) {
    ChunkState s;
    s.key = std::move(c.key);
    const size_t n = c.values.size();
    s.params = std::make_shared<Values>();
    s.params->data = std::move(c.values);
    if (slots > 0) s.slot0.assign(n, slot_init);
    if (slots > 1) s.slot1.assign(n, slot_init);
    if (aggregation.sync) s.accum.assign(n, 0.f);
    chunks_.push_back(std::move(s));
  }
  chunk_offsets_.clear();
  uint64_t offset = 0;
  for (const ChunkState& c : chunks_) {
    chunk_offsets_.push_back(offset);
    offset += c.params->data.size() * sizeof(float);
  }
  through_bytes_ = offset;
  step_ = 0;
  initialized_ = true;
  return {};
}

Status ShardStore::restore(const OptimizerConfig& optimizer, const AggregationConfig& aggregation,
                           std::vector<ChunkInit> chunks,
                           std::vector<std::vector<std::vector<float>>> slots, int64_t step) {
  if (initialized_) return failed_precondition("variables are already initialised");
  const size_t nslots = static_cast<size_t>(optimizer_slot_count(optimizer.kind));
  if (slots.size() != chunks.size()) {
    return invalid_argument("the checkpoint has slots for " + std::to_string(slots.size()) +
                            " chunks, values for " + std::to_string(chunks.size()));
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (slots[i].size() != nslots) {
      return invalid_argument("chunk '" + chunks[i].key + "' has " +
                              std::to_string(slots[i].size()) + " optimizer slots, " +
                              optimizer_name(optimizer.kind) + " needs " + std::to_string(nslots));
    }
    for (const std::vector<float>& sl : slots[i]) {
      if (sl.size() != chunks[i].values.size()) {
        return invalid_argument("chunk '" + chunks[i].key + "' has a slot of " +
                                std::to_string(sl.size()) + " values for " +
                                std::to_string(chunks[i].values.size()) + " parameters");
      }
    }
  }
  if (step < 0) return invalid_argument("a restored step must not be negative");
  PSTRAIN_RETURN_IF_ERROR(initialize(optimizer, aggregation, std::move(chunks)));
  for (size_t i = 0; i < chunks_.size(); ++i) {
    if (nslots > 0) chunks_[i].slot0 = std::move(slots[i][0]);
    if (nslots > 1) chunks_[i].slot1 = std::move(slots[i][1]);
  }
  step_ = step;
  return {};
}

Status ShardStore::reconfigure(const OptimizerConfig& optimizer,
                               const AggregationConfig& aggregation) {
  if (!initialized_) return failed_precondition("nothing to reconfigure before initialisation");
  if (optimizer.kind != optimizer_.kind) {
    return invalid_argument(std::string("the variables carry ") + optimizer_name(optimizer_.kind) +
                            " slots; --optimizer=" + optimizer_name(optimizer.kind) +
                            " cannot take them over");
  }
  if (aggregation.sync != aggregation_.sync) {
    return invalid_argument("--sync_replicas cannot change while the variables are held");
  }
  if (aggregation.sync && aggregation.replicas_to_aggregate < 1) {
    return invalid_argument("replicas_to_aggregate must be at least 1");
  }
  optimizer_ = optimizer;
  aggregation_ = aggregation;
  replicas_ = aggregation.sync ? aggregation.replicas_to_aggregate : 1;
  return {};
}

Status ShardStore::check_layout(std::span<const std::string> keys,
                                std::span<const int64_t> counts) const {
  if (keys.size() != chunks_.size() || counts.size() != chunks_.size()) {
    return invalid_argument("message has " + std::to_string(keys.size()) +
                            " chunks, this parameter server holds " +
                            std::to_string(chunks_.size()));
  }
  for (size_t i = 0; i < chunks_.size(); ++i) {
    if (keys[i] != chunks_[i].key || counts[i] != count(i)) {
      return invalid_argument("chunk " + std::to_string(i) + " is '" + keys[i] + "' with " +
                              std::to_string(counts[i]) + " elements, expected '" + chunks_[i].key +
                              "' with " + std::to_string(count(i)));
    }
  }
  return {};
}

void ShardStore::set_replicas(int replicas) { replicas_ = std::max(1, replicas); }

uint64_t ShardStore::parameter_bytes() const {
  uint64_t b = 0;
  for (const auto& c : chunks_) b += c.params->data.size() * sizeof(float);
  return b;
}

std::shared_ptr<const std::vector<float>> ShardStore::values(size_t i) const {
  std::shared_ptr<Values> v = chunks_[i].params;
  v->readers.fetch_add(1, std::memory_order_relaxed);
  const std::vector<float>* data = &v->data;
  return std::shared_ptr<const std::vector<float>>(
      data, [v](const std::vector<float>*) { v->readers.fetch_sub(1, std::memory_order_release); });
}

std::vector<float>& ShardStore::writable(ChunkState& c) {
  // A send in flight still reads these values: give the update its own buffer.
  if (c.params->readers.load(std::memory_order_acquire) > 0) {
    auto fresh = std::make_shared<Values>();
    fresh->data = c.params->data;
    c.params = std::move(fresh);
  }
  return c.params->data;
}

void ShardStore::apply(ChunkState& c, std::span<const float> grad, std::byte* out) {
  std::vector<float>& p = writable(c);
  apply_update_parallel(optimizer_, p, grad, c.slot0, c.slot1, step_ + 1, out,
                        through_bytes_ >= kStreamingCopyMinBytes);
}

std::byte* ShardStore::through_at(WriteThrough* through, size_t i) const {
  if (through == nullptr || through->bytes.size() < through_bytes_) return nullptr;
  return through->bytes.data() + chunk_offsets_[i];
}

std::span<const float> ShardStore::as_floats(const GradientView& g, std::vector<float>& scratch) {
  if (g.format != FloatFormat::kFloat32) {
    scratch.resize(static_cast<size_t>(g.count));
    widen_halves(g.format, g.data, scratch);
    return scratch;
  }
  if (reinterpret_cast<uintptr_t>(g.data) % alignof(float) == 0) {
    return {reinterpret_cast<const float*>(g.data), static_cast<size_t>(g.count)};
  }
  scratch.resize(static_cast<size_t>(g.count));
  std::memcpy(scratch.data(), g.data, scratch.size() * sizeof(float));
  return scratch;
}

PushOutcome ShardStore::push(int worker, int64_t step, std::span<const GradientView> grads,
                             WriteThrough* through) {
  if (step_ >= aggregation_.train_steps) {
    ++counters_.late;
    return PushOutcome::kLate;
  }
  bool finite = true;
  for (size_t i = 0; i < chunks_.size() && finite; ++i) {
    finite = all_finite_parallel(as_floats(grads[i], scratch_));
  }
  if (!finite) {
    ++counters_.non_finite;
    // Sync: the worker abstains from this step, so the step goes on with the others instead
    // of waiting for a gradient that will not come.
    if (aggregation_.sync && step == step_ && contributors_.count(worker) == 0 &&
        abstained_.count(worker) == 0) {
      abstained_.insert(worker);
      if (static_cast<int>(contributors_.size() + abstained_.size()) >= replicas_) {
        apply_pending(through);
      }
    }
    return PushOutcome::kNonFinite;
  }
  if (!aggregation_.sync) {
    for (size_t i = 0; i < chunks_.size(); ++i) {
      apply(chunks_[i], as_floats(grads[i], scratch_), through_at(through, i));
    }
    if (through_at(through, 0) != nullptr) through->written = true;
    ++step_;
    ++counters_.gradients_applied;
    ++counters_.updates;
    return PushOutcome::kApplied;
  }
  if (step < step_) {
    ++counters_.stale;
    return PushOutcome::kStale;
  }
  if (step > step_) {
    ++counters_.future;
    return PushOutcome::kFuture;
  }
  if (contributors_.count(worker) != 0 || abstained_.count(worker) != 0) {
    ++counters_.duplicate;
    return PushOutcome::kDuplicate;
  }
  for (size_t i = 0; i < chunks_.size(); ++i) {
    accumulate_parallel(chunks_[i].accum, as_floats(grads[i], scratch_));
  }
  contributors_.insert(worker);
  if (static_cast<int>(contributors_.size() + abstained_.size()) < replicas_) {
    return PushOutcome::kAccumulated;
  }
  apply_pending(through);
  return PushOutcome::kApplied;
}

bool ShardStore::complete_pending() {
  if (!aggregation_.sync || (contributors_.empty() && abstained_.empty()) ||
      static_cast<int>(contributors_.size() + abstained_.size()) < replicas_ ||
      step_ >= aggregation_.train_steps) {
    return false;
  }
  apply_pending(nullptr);
  return true;
}

void ShardStore::apply_pending(WriteThrough* through) {
  if (!contributors_.empty()) {
    const float scale = 1.0f / static_cast<float>(contributors_.size());
    for (size_t i = 0; i < chunks_.size(); ++i) {
      ChunkState& c = chunks_[i];
      apply_mean_update_parallel(optimizer_, writable(c), c.accum, scale, c.slot0, c.slot1,
                                 step_ + 1, through_at(through, i),
                                 through_bytes_ >= kStreamingCopyMinBytes);
    }
    if (through_at(through, 0) != nullptr) through->written = true;
    counters_.gradients_applied += static_cast<int64_t>(contributors_.size());
    ++counters_.updates;
  }
  // (Every replica abstained with a non-finite gradient: the step passes without an update.)
  contributors_.clear();
  abstained_.clear();
  ++step_;
}

}  // namespace pstrain
