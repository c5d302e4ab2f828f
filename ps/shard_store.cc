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
  return check_layout(keys, {}, counts);
}

Status ShardStore::check_layout(std::span<const std::string> keys, std::span<const int64_t> offsets,
                                std::span<const int64_t> counts) const {
  const auto mismatch = [&] {
    return invalid_argument("message has " + std::to_string(keys.size()) +
                            " chunks, this parameter server holds " +
                            std::to_string(chunks_.size()));
  };
  if (counts.size() != keys.size() || (!offsets.empty() && offsets.size() != keys.size())) {
    return mismatch();
  }
  size_t v = 0;
  for (size_t i = 0; i < chunks_.size(); ++i) {
    const int64_t n = count(i);
    for (int64_t at = 0; at < n; at += counts[v++]) {
      if (v == keys.size()) return mismatch();
      const int64_t from = offsets.empty() ? 0 : offsets[v];
      // A whole chunk, or a range that starts where the last one ended.
      if (keys[v] != chunks_[i].key || from != at || counts[v] <= 0 ||
          (from == 0 && counts[v] != n && offsets.empty()) || counts[v] > n - at) {
        const std::string range = from == 0 ? "" : " from element " + std::to_string(from);
        return invalid_argument("chunk " + std::to_string(i) + " is '" + keys[v] + "' with " +
                                std::to_string(counts[v]) + " elements" + range + ", expected '" +
                                chunks_[i].key + "' with " + std::to_string(n - at) + " elements" +
                                (at == 0 ? "" : " from element " + std::to_string(at)));
      }
    }
  }
  if (v != keys.size()) return mismatch();
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

void ShardStore::map_views(std::span<const GradientView> grads) {
  view_chunk_.resize(grads.size());
  size_t c = 0;
  int64_t at = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (at >= count(c)) {
      ++c;
      at = 0;
    }
    PSTRAIN_CHECK(c < chunks_.size());
    view_chunk_[i] = c;
    at += grads[i].count;
  }
  if (view_floats_.size() < grads.size()) {
    view_floats_.resize(grads.size());
    view_scratch_.resize(grads.size());
  }
}

template <typename Body>
void ShardStore::for_each_view(std::span<const GradientView> grads, const Body& body) {
  const bool ranges = grads.size() > chunks_.size();
  const bool small = std::all_of(grads.begin(), grads.end(), [](const GradientView& g) {
    return static_cast<size_t>(g.count) < kParallelUpdateMinValues;
  });
  if (ranges && small) {
    run_update_tasks(grads.size(), [&](size_t i) { body(i); });
    return;
  }
  for (size_t i = 0; i < grads.size(); ++i) body(i);
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
                             WriteThrough* through, const UpdateProgress* progress) {
  if (step_ >= aggregation_.train_steps) {
    ++counters_.late;
    return PushOutcome::kLate;
  }
  // Each entry as float32 (16-bit values widened once, here, for the check and the update).
  map_views(grads);
  std::atomic<bool> finite{true};
  for_each_view(grads, [&](size_t i) {
    view_floats_[i] = as_floats(grads[i], view_scratch_[i]);
    if (!grads[i].known_finite && finite.load(std::memory_order_relaxed) &&
        !all_finite_parallel(view_floats_[i])) {
      finite.store(false, std::memory_order_relaxed);
    }
  });
  if (!finite.load()) {
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
  const auto range = [&](std::vector<float>& v, size_t i) {
    return v.empty() ? std::span<float>()
                     : std::span<float>(v).subspan(static_cast<size_t>(grads[i].offset),
                                                   static_cast<size_t>(grads[i].count));
  };
  if (!aggregation_.sync) {
    // (Copies on write here, once per chunk, before any range of it is updated.)
    for (ChunkState& c : chunks_) writable(c);
    const bool streaming = through_bytes_ >= kStreamingCopyMinBytes;
    if (progress != nullptr && progress->step_values > 0 && progress->done &&
        through_at(through, 0) == nullptr) {
      // In order, in steps, telling the caller after each (the same elementwise update).
      const uint64_t step_values = progress->step_values;
      uint64_t before = 0;  // values of the chunks before this entry's
      size_t chunk = 0;
      for (size_t i = 0; i < grads.size(); ++i) {
        for (; chunk < view_chunk_[i]; ++chunk) before += static_cast<uint64_t>(count(chunk));
        ChunkState& c = chunks_[view_chunk_[i]];
        const auto offset = static_cast<uint64_t>(grads[i].offset);
        const auto n = static_cast<uint64_t>(grads[i].count);
        for (uint64_t from = 0; from < n;) {
          // Steps end where the caller's do: at multiples of step_values of all the values.
          const uint64_t at = before + offset + from;
          const uint64_t to = std::min(n, from + (step_values - at % step_values));
          const auto sub = [&](std::vector<float>& v) {
            return v.empty() ? std::span<float>()
                             : std::span<float>(v).subspan(static_cast<size_t>(offset + from),
                                                           static_cast<size_t>(to - from));
          };
          apply_update_parallel(
              optimizer_, sub(c.params->data),
              view_floats_[i].subspan(static_cast<size_t>(from), static_cast<size_t>(to - from)),
              sub(c.slot0), sub(c.slot1), step_ + 1, nullptr, streaming);
          from = to;
          progress->done(before + offset + from);
        }
      }
    } else {
      for_each_view(grads, [&](size_t i) {
        ChunkState& c = chunks_[view_chunk_[i]];
        std::byte* out = through_at(through, view_chunk_[i]);
        if (out != nullptr) out += static_cast<size_t>(grads[i].offset) * sizeof(float);
        apply_update_parallel(optimizer_, range(c.params->data, i), view_floats_[i],
                              range(c.slot0, i), range(c.slot1, i), step_ + 1, out, streaming);
      });
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
  for_each_view(grads, [&](size_t i) {
    accumulate_parallel(range(chunks_[view_chunk_[i]].accum, i), view_floats_[i]);
  });
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
