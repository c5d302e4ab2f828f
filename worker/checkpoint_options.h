// CheckpointOptions: when and where checkpoints are written (worker/checkpointer.h,
// docs/checkpoints.md). Thread-safety: a value.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/base/status.h"

namespace pstrain {

// --checkpoint_dir, --save_checkpoint_steps, --save_checkpoint_secs, --keep_checkpoint_max.
struct CheckpointOptions {
  std::string dir = std::string();  // empty: no checkpoints
  int64_t save_steps = 0;           // every N global steps (0: off)
  int64_t save_secs = 600;          // every N seconds (0: off); TensorFlow's default
  int keep_max = 5;                 // newest complete checkpoints kept (0: all)
  bool enabled() const { return !dir.empty(); }
};
// Errors name the flag (negative values).
Status validate(const CheckpointOptions& o);

}  // namespace pstrain
