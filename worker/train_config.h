// TrainConfig: the training hyper-parameters shared by `pstrain train`, role processes and
// the launcher. Defaults are mnist_replica.py's.
// Thread-safety: a value.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/model.h"
#include "kernels/optim.h"
#include "worker/checkpoint_options.h"
#include "worker/data.h"

namespace pstrain {

// mnist_replica's input reader holds out 5000 training examples for validation.
inline constexpr int64_t kDefaultValidationSize = 5000;

struct TrainConfig {
  ModelOptions model;         // --model, --hidden_units
  OptimizerConfig optimizer;  // --optimizer, --learning_rate
  int64_t train_steps = 200;  // global steps
  int batch_size = 100;
  uint64_t seed = 1;
  std::string data_dir = kDefaultDataDir;
  int num_gpus = 1;
  bool tf32 = false;
  int eval_batch = 500;  // batch size of test-set evaluation
  // Training examples held out for validation (worker/data.h hold_out_validation), as
  // mnist_replica's input reader: its cross-entropy is printed after training.
  int64_t validation_size = kDefaultValidationSize;
  // The chief (and `pstrain train`) evaluates the validation and test sets every this many
  // global steps during training, besides at the end (0: only at the end).
  int64_t eval_every = 0;
  int cpu_threads = 0;  // <= 0: all cores
  // --checkpoint_dir and when to save: `pstrain train` and the chief of a distributed job.
  CheckpointOptions checkpoint = CheckpointOptions();
};

// Checks ranges (positive steps and batch, learning rate > 0, ...); errors name the flag.
Status validate(const TrainConfig& c);

}  // namespace pstrain
