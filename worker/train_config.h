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
  int cpu_threads = 0;   // <= 0: all cores
  // --checkpoint_dir and when to save: `pstrain train` and the chief of a distributed job.
  CheckpointOptions checkpoint = CheckpointOptions();
};

// Checks ranges (positive steps and batch, learning rate > 0, ...); errors name the flag.
Status validate(const TrainConfig& c);

}  // namespace pstrain
