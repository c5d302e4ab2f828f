// A trained model read back from a checkpoint directory (docs/checkpoints.md): the model's
// options, its variables and their values in the flat layout of kernels/model.h, without the
// optimizer's slots. What `pstrain eval`, `pstrain predict` and `pstrain export` start from.
//
// Contract
// - load_trained_model(dir, "") reads the newest complete checkpoint of `dir` (torn newer ones
//   are skipped, each reported in `skipped`); with `checkpoint` it reads that one: a prefix
//   ("model.ckpt-200", relative to `dir` or a path) or its index file
//   ("model.ckpt-200.index.json"). `dir` may be empty when `checkpoint` is a path.
// - Every shard the index lists is verified (size, CRC-32, safetensors) and every element of
//   the model's flat parameter vector must come from exactly one chunk; the model (mlp or cnn)
//   and the MLP's hidden width come from the index. A missing directory or checkpoint is
//   kNotFound, a torn or inconsistent one kDataLoss or kInvalidArgument, each naming the file.
//   Nothing here aborts on bad bytes.
// Thread-safety: functions over values and files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/model.h"
#include "kernels/variable.h"
#include "runtime/base/status.h"

namespace pstrain {

struct TrainedModel {
  ModelOptions options;                 // name, hidden_units (28x28 images, 10 classes)
  std::vector<VariableSpec> variables;  // Model::describe(options)
  std::vector<float> parameters;        // the flat vector, variables at their offsets
  int64_t step = 0;                     // the checkpoint's global step
  std::string checkpoint;               // the checkpoint's path prefix ("D/model.ckpt-200")
  std::vector<std::string> skipped;     // newer torn checkpoints passed over, with the reason

  // The values of variable `name` (empty span when there is none).
  std::vector<float> values(const std::string& name) const;
};

Result<TrainedModel> load_trained_model(const std::string& dir, const std::string& checkpoint);

}  // namespace pstrain
