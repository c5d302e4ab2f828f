// The optimizer's name on the wire (wire::TrainingConfig, sent by the chief in INIT) and back:
// one mapping for both directions, used by ps/training_config.h (which converts the whole
// config). Thread-safety: pure functions.
#pragma once

#include "kernels/optim.h"
#include "runtime/base/status.h"
#include "runtime/wire/proto/pstrain.pb.h"

namespace pstrain {

wire::Optimizer optimizer_to_wire(OptimizerKind kind);
// An error for OPTIMIZER_INVALID or a value outside the enum (bytes from a peer).
Result<OptimizerKind> optimizer_from_wire(wire::Optimizer o);

}  // namespace pstrain
