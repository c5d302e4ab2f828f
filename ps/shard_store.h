// ShardStore: the variables one parameter server holds, and how gradients update them.
//
// Contract
// - Holds the chunks the chief sent in INIT (key, values) with their optimizer slots.
// - Async: every gradient is applied as it arrives; the step counts applications.
// - Sync (SyncReplicasOptimizer): a gradient carries the step it was computed at. Older than
//   the current step: dropped and counted as stale. A second gradient from the same worker for
//   the same step: dropped and counted. When `replicas` fresh gradients have arrived, their
//   mean is applied and the step advances by one.
// - Gradients may arrive as float16 or bfloat16 (GradientView::format): they are widened to
//   float32 first, so the non-finite check, the aggregation and the update are float32 and a
//   16-bit gradient is applied exactly as its widened float32 values would be.
// - Once the step reaches train_steps, further gradients are dropped (counted as late).
// - Parameters are shared with in-flight sends through shared_ptr: an update never writes a
//   buffer that a send still references (copy on write), so a reader never sees a torn
//   update.
// Thread-safety: not thread-safe; the PS event loop owns it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "kernels/optim.h"
#include "runtime/base/status.h"
#include "runtime/wire/half.h"

namespace pstrain {

struct AggregationConfig {
  bool sync = false;
  int replicas_to_aggregate = 1;  // sync only
  int64_t train_steps = 0;
};

struct ChunkInit {
  std::string key;
  std::vector<float> values;
};

// One chunk's gradient as received, or a range of it: `count` raw little-endian values of
// `format` (float32, or float16/bfloat16 from a worker with --compress), alignment not assumed,
// for the chunk's values [offset, offset + count) (a large push striped over several
// connections comes in ranges). 16-bit values are widened to float32 (exactly) before
// anything else looks at them.
struct GradientView {
  const std::byte* data = nullptr;
  int64_t count = 0;
  FloatFormat format = FloatFormat::kFloat32;
  int64_t offset = 0;
  // The caller has already found every value finite (bytes it holds and nobody writes: a
  // part of a PUSH checked while the others were on their way; 16-bit values widen to finite
  // ones); push() skips its NaN/Inf check of this entry. false: push() checks it.
  bool known_finite = false;
};

enum class PushOutcome {
  kApplied,      // async: applied; sync: this gradient completed a step
  kAccumulated,  // sync: stored, waiting for more replicas
  kStale,        // sync: computed at an older step; dropped
  kDuplicate,    // sync: this worker already contributed to the step; dropped
  kFuture,       // sync: computed at a step not reached yet (a confused client); dropped
  kLate,         // training already reached train_steps; dropped
  kNonFinite,    // holds NaN or Inf; dropped whatever the mode (nothing of it is applied)
};
const char* push_outcome_name(PushOutcome o);

struct StoreCounters {
  int64_t gradients_applied = 0;  // gradients that went into an update
  int64_t updates = 0;            // optimizer applications (= step advances)
  int64_t stale = 0;
  int64_t duplicate = 0;
  int64_t future = 0;
  int64_t late = 0;
  int64_t non_finite = 0;
};

class ShardStore {
 public:
  bool initialized() const { return initialized_; }
  // Fails if already initialised, a key repeats, or a chunk is empty.
  Status initialize(const OptimizerConfig& optimizer, const AggregationConfig& aggregation,
                    std::vector<ChunkInit> chunks);

  // Initialises from a checkpoint: like initialize(), then each chunk's optimizer slots
  // (`slots[i]` holds optimizer_slot_count(optimizer.kind) vectors as long as chunk i) and the
  // step are restored. Errors name the chunk whose slots do not fit.
  Status restore(const OptimizerConfig& optimizer, const AggregationConfig& aggregation,
                 std::vector<ChunkInit> chunks, std::vector<std::vector<std::vector<float>>> slots,
                 int64_t step);

  // Takes a new optimizer configuration of the same kind (learning rate, hyper-parameters)
  // and aggregation (train_steps, replicas) while keeping values, slots, step and the
  // gradients held for the current step: a restarted job's chief may change them.
  Status reconfigure(const OptimizerConfig& optimizer, const AggregationConfig& aggregation);

  // `grads` covers every chunk in chunk order: one entry per chunk, or a chunk in several
  // ranges back to back (offsets ascending from 0), as check_layout() accepts them (the caller
  // checks first). Ranges of one chunk are updated in parallel on the update threads, to the
  // same values as the whole chunk. A gradient holding NaN or Inf anywhere is dropped whole
  // (kNonFinite, counted) before anything of it is applied or accumulated.
  //
  // `through` (optional): where the values an update of this push produces are also written,
  // block by block while in cache (kernels/optim.h apply_update_parallel): every chunk's
  // float32 values back to back in chunk order, the layout of a PS's packed shared-memory
  // reply (runtime/wire/message.h), which then needs no copy of its own. push() sets
  // `through->written` when this push updated the parameters (async, or the gradient that
  // completed a sync step) and `through->bytes` holds them all (parameter_bytes()); the bytes
  // must not overlap the gradients. Otherwise it leaves them unwritten.
  struct WriteThrough {
    std::span<std::byte> bytes;
    bool written = false;
  };
  // `progress` (optional, asynchronous training only): the update goes through the values in
  // order, every chunk's laid end to end, in steps of at most `step_values`, and after each
  // step calls `done(n)`: the first n values are final (the values() of their chunks hold
  // them; later ranges of those vectors are still being written). Only once the whole
  // gradient passed the NaN/Inf check; never for a dropped one. The last call has n = every
  // value. Same values as without it. Not with `through` (then nothing is called).
  struct UpdateProgress {
    uint64_t step_values = 0;
    std::function<void(uint64_t)> done;
  };
  PushOutcome push(int worker, int64_t step, std::span<const GradientView> grads,
                   WriteThrough* through = nullptr, const UpdateProgress* progress = nullptr);
  // Checks that (keys, counts) match the chunks held, one entry per chunk; the error names the
  // first mismatch.
  Status check_layout(std::span<const std::string> keys, std::span<const int64_t> counts) const;
  // The same for entries that are ranges [offsets[i], offsets[i] + counts[i]) of the chunk
  // keys[i] names: they must tile every chunk, in chunk order, each chunk's ranges ascending
  // and back to back (a chunk whole is one range from 0).
  Status check_layout(std::span<const std::string> keys, std::span<const int64_t> offsets,
                      std::span<const int64_t> counts) const;

  int64_t step() const { return step_; }
  bool finished() const { return initialized_ && step_ >= aggregation_.train_steps; }
  // Sync: how many fresh gradients complete a step (lowered when workers are lost).
  int replicas() const { return replicas_; }
  void set_replicas(int replicas);
  // Sync: applies the pending step if it already has `replicas` gradients (after
  // set_replicas lowered the number). Returns true when the step advanced.
  bool complete_pending();
  int pending() const { return static_cast<int>(contributors_.size()); }
  // Sync: whether `worker`'s gradient for the current step is held.
  bool has_pending(int worker) const { return contributors_.count(worker) > 0; }

  size_t num_chunks() const { return chunks_.size(); }
  const std::string& key(size_t i) const { return chunks_[i].key; }
  int64_t count(size_t i) const { return static_cast<int64_t>(chunks_[i].params->data.size()); }
  // The current values of chunk i; the pointer keeps them unchanged while it lives.
  std::shared_ptr<const std::vector<float>> values(size_t i) const;
  // Optimizer slot k (< optimizer_slot_count) of chunk i, for checkpoints.
  const std::vector<float>& slot(size_t i, int k) const {
    return k == 0 ? chunks_[i].slot0 : chunks_[i].slot1;
  }
  const OptimizerConfig& optimizer() const { return optimizer_; }
  uint64_t parameter_bytes() const;
  const StoreCounters& counters() const { return counters_; }

 private:
  // A chunk's parameters and the number of values() handles that still read them (sends in
  // flight). Each handle's release is a release-store that writable()'s acquire-load pairs
  // with, so an update never overwrites bytes a sender may still read.
  struct Values {
    std::vector<float> data;
    std::atomic<int> readers{0};
  };
  struct ChunkState {
    std::string key;
    std::shared_ptr<Values> params;
    std::vector<float> slot0, slot1;
    std::vector<float> accum;  // sync: sum of this step's fresh gradients
  };
  std::vector<float>& writable(ChunkState& c);
  // The chunk of each entry of a push's `grads` (view_chunk_), which tile the chunks in order.
  void map_views(std::span<const GradientView> grads);
  // Runs body(i) for every entry of `grads`: in order, or as tasks on the update threads when
  // a chunk came in several ranges, none of them large enough to be split (each is then
  // done on one thread; a large one is split by the update itself).
  template <typename Body>
  void for_each_view(std::span<const GradientView> grads, const Body& body);
  void apply_pending(WriteThrough* through);
  // The place of chunk i's values in a WriteThrough's bytes; null when there is none or the
  // bytes cannot hold every chunk.
  std::byte* through_at(WriteThrough* through, size_t i) const;
  static std::span<const float> as_floats(const GradientView& g, std::vector<float>& scratch);

  bool initialized_ = false;
  OptimizerConfig optimizer_;
  AggregationConfig aggregation_;
  int replicas_ = 1;
  int64_t step_ = 0;
  std::vector<ChunkState> chunks_;
  std::set<int> contributors_;      // sync: workers whose gradient for step_ is accumulated
  std::set<int> abstained_;         // sync: workers whose gradient for step_ was non-finite
  std::vector<size_t> view_chunk_;  // push(): the chunk of each entry
  std::vector<std::span<const float>> view_floats_;  // ... its values as float32
  std::vector<std::vector<float>> view_scratch_;     // ... where those were widened or aligned
  std::vector<uint64_t> chunk_offsets_;              // byte offset of each chunk in a WriteThrough
  uint64_t through_bytes_ = 0;                       // ... and the bytes of all of them
  StoreCounters counters_;
};

}  // namespace pstrain
