// The test-set evaluation both training loops run at the end: the model's current parameters
// on every example of `test`, in batches of at most `eval_batch`, reported as an EvalReport
// (worker/training_sink.h) for the parameters' global step `step`.
// Thread-safety: uses the model's Ops; one call at a time per model.
#pragma once

#include <cstdint>

#include "kernels/model.h"
#include "worker/data.h"
#include "worker/training_sink.h"

namespace pstrain {

EvalReport evaluate_test_set(Model& model, const Dataset& test, int eval_batch, int64_t step);

}  // namespace pstrain
