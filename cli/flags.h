// Command-line flags shared by pstrain's commands, declared once with CLI11.
//
// Flags follow TensorFlow's conventions (mnist_replica.py's names and defaults): `--name=value`
// and `--name value` both work; a boolean takes `--name`, `--name=true|false|True|False|1|0`
// and `--noname`. An unknown flag is an error. Thread-safety: parse on one thread.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "worker/train_config.h"

namespace pstrain {

// Values CLI11 writes into before they are converted into a TrainConfig.
struct TrainFlagValues {
  std::string model = "mlp";
  std::string optimizer = "adam";
  float learning_rate = 0.01f;
  TrainConfig config;
};

// Adds the training flags (--model, --hidden_units, --train_steps, --batch_size,
// --learning_rate, --optimizer, --momentum, --adam_beta1, --adam_beta2, --adam_epsilon,
// --adagrad_initial_accumulator, --seed, --data_dir, --num_gpus, --tf32, --eval_batch,
// --cpu_threads) to `app`. The optimizer's hyper-parameters have TensorFlow's names and
// defaults (kernels/optim.h); they go straight into config.optimizer.
void add_training_flags(CLI::App& app, TrainFlagValues& v);
// Converts and validates (every hyper-parameter, see check_optimizer_config); errors name the
// flag.
Result<TrainConfig> finish_training_flags(const TrainFlagValues& v);

// A boolean flag in TensorFlow style: --name, --name=true|false|1|0, --noname.
CLI::Option* add_bool_flag(CLI::App& app, const std::string& name, bool& value,
                           const std::string& help);

// --log_level (debug|info|warning|error).
void add_log_level_flag(CLI::App& app);

}  // namespace pstrain
