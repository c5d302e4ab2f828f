// The evaluations both training loops run at the end: the model's current parameters on every
// example of the test set (and of the validation split held out of the training data), in
// batches of at most `eval_batch`, reported as an EvalReport (worker/training_sink.h: accuracy
// and mean cross-entropy) for the parameters' global step `step`.
// Thread-safety: uses the model's Ops; one call at a time per model.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/model.h"
#include "worker/data.h"
#include "worker/training_sink.h"

namespace pstrain {

EvalReport evaluate_test_set(Model& model, const Dataset& test, int eval_batch, int64_t step);
// The same for any data set, reported as `split` ("validation", ...); accuracy and the mean
// softmax cross-entropy.
EvalReport evaluate_split(Model& model, const Dataset& data, const std::string& split,
                          int eval_batch, int64_t step);

}  // namespace pstrain
