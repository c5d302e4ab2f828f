// Command-line flags shared by pstrain's commands, declared once with CLI11.
//
// Flags follow TensorFlow's conventions (mnist_replica.py's names and defaults): `--name=value`
// and `--name value` both work; a boolean takes `--name`, `--name=true|false|True|False|1|0`
// and `--noname`. An unknown flag is an error. Thread-safety: parse on one thread.
#pragma once

#include <charconv>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "runtime/metrics/metrics.h"
#include "runtime/wire/half.h"
#include "runtime/wire/security.h"
#include "worker/metrics_sink.h"
#include "worker/train_config.h"

namespace pstrain {

// Values CLI11 writes into before they are converted into a TrainConfig.
struct TrainFlagValues {
  std::string model = "mlp";
  std::string optimizer = "adam";
  float learning_rate = 0.01f;
  std::string lr_schedule = "constant";
  std::string lr_boundaries;  // comma-separated steps
  std::string lr_values;      // comma-separated rates
  TrainConfig config;
};

// Adds the training flags (--model, --hidden_units, --train_steps, --batch_size,
// --learning_rate, --optimizer, --momentum, --adam_beta1, --adam_beta2, --adam_epsilon,
// --adagrad_initial_accumulator, the learning-rate schedule (--lr_schedule, --lr_decay_steps,
// --lr_decay_rate, --lr_staircase, --lr_boundaries, --lr_values), --seed, --data_dir, --num_gpus,
// --tf32, --eval_batch,
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

// --metrics_port and --metrics_host: Prometheus metrics over HTTP (runtime/metrics/metrics.h);
// --metrics_file: the loop's metrics as JSON lines (worker/training_sink.h MetricsFileSink).
struct MetricsFlags {
  int port = -1;  // -1: off; 0: a free port (its URL is logged)
  std::string host = "127.0.0.1";
  std::string file;  // --metrics_file: JSON lines of the training loop (MetricsFileSink)
};
void add_metrics_flags(CLI::App& app, MetricsFlags& f);
// The metrics of a training loop: the server of --metrics_port and a MetricsSink served by it,
// both empty when the flag is off. `role` is "worker" or "train". Logs the URL.
struct TrainingMetrics {
  std::unique_ptr<metrics::MetricsServer> server;
  std::unique_ptr<MetricsSink> sink;
};
Result<TrainingMetrics> start_training_metrics(const MetricsFlags& f, const std::string& role,
                                               int task);

// --secret_file FILE (or PSTRAIN_SECRET_FILE=FILE, applied as the flag): the job secret
// (runtime/wire/security.h, docs/security.md). The file's path travels, never the secret.
struct SecurityFlags {
  std::string secret_file =
      std::string();  // empty: no secret (open ports, as TensorFlow's ps/worker)
};
void add_security_flags(CLI::App& app, SecurityFlags& f);
// The job's keys from --secret_file, nullptr when none was given (or "none"); a bad file (missing,
// shorter than 32 bytes, readable by group or others) is kInvalidArgument naming it and the fix.
Result<std::shared_ptr<const JobKeys>> load_security(const SecurityFlags& f);

// --summary_every N: TensorBoard scalars and histograms every N steps
// (worker/tensorboard_sink.h); 0: only at the first and the last.
void add_summary_every_flag(CLI::App& app, int& summary_every);

// --compress none|fp16|bf16 (role processes and `pstrain launch`, which passes it to each
// task): how a worker's gradients travel (ClientOptions::compression). A value that is not a
// choice is a parse error naming the choices (exit 2).
void add_compress_flag(CLI::App& app, std::string& compress);
// --transport auto|tcp|ipc|shm (role processes and `pstrain launch`): how a worker reaches each
// parameter server (ClientOptions::transport, runtime/wire/transport.h); a value that is not a
// choice is refused by CLI11 with the choices.
void add_transport_flag(CLI::App& app, std::string& transport);

// --flagfile FILE, listed in each command's help (cli/args.h expand_flagfiles reads the files
// before any command parses its words).
void add_flagfile_option(CLI::App& app);

// --save_checkpoint_steps, --save_checkpoint_secs, --keep_checkpoint_max (TensorFlow's names
// and defaults; worker/checkpointer.h). --checkpoint_dir comes from add_output_flags.
void add_checkpoint_flags(CLI::App& app, CheckpointOptions& o);

// --log_level (debug|info|warning|error).
void add_log_level_flag(CLI::App& app);

}  // namespace pstrain
