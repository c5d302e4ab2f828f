// Command-line flags shared by pstrain's commands, declared once with CLI11.
//
// Flags follow TensorFlow's conventions (mnist_replica.py's names and defaults): `--name=value`
// and `--name value` both work; a boolean takes `--name`, `--name=true|false|True|False|1|0`
// and `--noname`. An unknown flag is an error. Thread-safety: parse on one thread.
#pragma once

#include <charconv>
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
// --cpu_threads, and add_checkpoint_flags()'s) to `app`. The optimizer's hyper-parameters have
// TensorFlow's names and defaults (kernels/optim.h); they go straight into config.optimizer.
void add_training_flags(CLI::App& app, TrainFlagValues& v);
// Converts and validates (every hyper-parameter, see check_optimizer_config); errors name the
// flag.
Result<TrainConfig> finish_training_flags(const TrainFlagValues& v);

// Help groups (--help lists the flags under these headings).
inline constexpr const char* kClusterGroup = "Cluster";
inline constexpr const char* kTrainingGroup = "Training";
inline constexpr const char* kModelGroup = "Model";
inline constexpr const char* kOutputGroup = "Data and output";
inline constexpr const char* kOwnGroup = "pstrain's own";

// Bytes a process needs for `c`'s model (parameters, gradients, optimizer slots) and for one
// batch of activations (the larger of --batch_size and the evaluation batch), estimated.
struct MemoryEstimate {
  double model_bytes = 0;
  double batch_bytes = 0;
};
MemoryEstimate estimate_memory(const TrainConfig& c);
// Refuses a config whose estimate is over `available_bytes` (default: the machine's physical
// memory), naming the flag that asks for most of it and the bytes.
Status check_memory(const TrainConfig& c, double available_bytes = 0);

// A validator that rejects an integer that does not fit T (CLI11 would saturate
// 99999999999999999999 to the largest value), naming the value and T's range.
template <typename T>
CLI::Validator fits_integer() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        T v{};
        const char* b = s.data();
        if (!s.empty() && s[0] == '+') ++b;
        const auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
        if (ec == std::errc::result_out_of_range) {
          return s + " is out of range: at most " + std::to_string(std::numeric_limits<T>::max()) +
                 " and at least " + std::to_string(std::numeric_limits<T>::min());
        }
        return "";
      },
      "");
}
// An integer option with the range check.
template <typename T>
CLI::Option* add_int_option(CLI::App& app, const std::string& name, T& value,
                            const std::string& help) {
  return app.add_option(name, value, help)->check(fits_integer<T>());
}

// A boolean flag in TensorFlow style: --name, --name=true|false|1|0, --noname.
CLI::Option* add_bool_flag(CLI::App& app, const std::string& name, bool& value,
                           const std::string& help);

// --checkpoint_dir, --log_dir (created by the command) and --log_every (progress every N
// steps), shared by role processes and `pstrain train`.
void add_output_flags(CLI::App& app, std::string& checkpoint_dir, std::string& log_dir,
                      int& log_every);

// --save_checkpoint_steps, --save_checkpoint_secs, --keep_checkpoint_max (TensorFlow's names
// and defaults; worker/checkpointer.h). --checkpoint_dir comes from add_output_flags.
void add_checkpoint_flags(CLI::App& app, CheckpointOptions& o);

// --log_level (debug|info|warning|error).
void add_log_level_flag(CLI::App& app);

}  // namespace pstrain
