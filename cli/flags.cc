#include "cli/flags.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "runtime/base/log.h"
#include "runtime/wire/transport.h"

namespace pstrain {

CLI::Option* add_bool_flag(CLI::App& app, const std::string& name, bool& value,
                           const std::string& help) {
  return app.add_flag("--" + name + ",!--no" + name, value, help);
}

void add_training_flags(CLI::App& app, TrainFlagValues& v) {
  TrainConfig& c = v.config;
  app.add_option("--model", v.model, "Model: mlp or cnn")
      ->capture_default_str()
      ->group(kModelGroup);
  add_int_option(app, "--hidden_units", c.model.hidden_units, "Units of the MLP's hidden layer")
      ->capture_default_str()
      ->group(kModelGroup);
  add_int_option(app, "--train_steps", c.train_steps, "Number of (global) training steps")
      ->capture_default_str()
      ->group(kTrainingGroup);
  add_int_option(app, "--batch_size", c.batch_size, "Training batch size")
      ->capture_default_str()
      ->group(kTrainingGroup);
  app.add_option("--learning_rate", v.learning_rate, "Learning rate")
      ->capture_default_str()
      ->group(kTrainingGroup);
  app.add_option("--optimizer", v.optimizer, "Optimizer: adam, sgd, momentum or adagrad")
      ->capture_default_str()
      ->group(kTrainingGroup);
  OptimizerConfig& o = c.optimizer;
  app.add_option("--momentum", o.momentum,
                 "Momentum optimizer: decay of the accumulated gradient (pstrain's default; "
                 "TensorFlow's MomentumOptimizer has none)")
      ->default_str(float_string(o.momentum))
      ->group(kTrainingGroup);
  app.add_option("--adam_beta1", o.beta1, "Adam: decay of the first-moment estimate, in [0, 1)")
      ->default_str(float_string(o.beta1))
      ->group(kTrainingGroup);
  app.add_option("--adam_beta2", o.beta2, "Adam: decay of the second-moment estimate, in [0, 1)")
      ->default_str(float_string(o.beta2))
      ->group(kTrainingGroup);
  app.add_option("--adam_epsilon", o.epsilon, "Adam: epsilon added to the denominator")
      ->default_str(float_string(o.epsilon))
      ->group(kTrainingGroup);
  app.add_option("--adagrad_initial_accumulator", o.initial_accumulator,
                 "Adagrad: starting value of the accumulators, > 0")
      ->default_str(float_string(o.initial_accumulator))
      ->group(kTrainingGroup);
  LrSchedule& l = o.schedule;
  app.add_option("--lr_schedule", v.lr_schedule,
                 "Learning-rate schedule over the global step: constant, exponential "
                 "(tf.train.exponential_decay) or piecewise (tf.train.piecewise_constant)")
      ->capture_default_str()
      ->group(kTrainingGroup);
  add_int_option(app, "--lr_decay_steps", l.decay_steps,
                 "Exponential schedule: steps per factor of --lr_decay_rate")
      ->capture_default_str()
      ->group(kTrainingGroup);
  app.add_option("--lr_decay_rate", l.decay_rate,
                 "Exponential schedule: learning_rate * rate^(step / lr_decay_steps)")
      ->default_str(float_string(l.decay_rate))
      ->group(kTrainingGroup);
  add_bool_flag(app, "lr_staircase", l.staircase,
                "Exponential schedule: decay in whole steps of --lr_decay_steps")
      ->group(kTrainingGroup);
  app.add_option("--lr_boundaries", v.lr_boundaries,
                 "Piecewise schedule: global steps where the rate changes, e.g. 2000,4000")
      ->group(kTrainingGroup);
  app.add_option("--lr_values", v.lr_values,
                 "Piecewise schedule: one rate more than --lr_boundaries, e.g. 0.01,0.003,0.001 "
                 "(--learning_rate is not used)")
      ->group(kTrainingGroup);
  add_int_option(app, "--seed", c.seed, "Random seed (initialisation and data order)")
      ->capture_default_str()
      ->group(kTrainingGroup);
  app.add_option("--data_dir", c.data_dir, "Directory with the four MNIST IDX files (raw or .gz)")
      ->capture_default_str()
      ->group(kOutputGroup);
  add_int_option(app, "--num_gpus", c.num_gpus,
                 "GPUs per machine; task i uses GPU i % num_gpus; 0 = CPU")
      ->capture_default_str()
      ->group(kClusterGroup);
  add_bool_flag(app, "tf32", c.tf32, "Use TF32 tensor-core math for GPU matrix products")
      ->group(kOwnGroup);
  add_int_option(app, "--eval_batch", c.eval_batch, "Batch size of the test-set evaluation")
      ->capture_default_str()
      ->group(kOwnGroup);
  add_int_option(app, "--eval_every", c.eval_every,
                 "Evaluate the validation and test sets every N global steps during training "
                 "(the chief; 0: only at the end)")
      ->capture_default_str()
      ->group(kTrainingGroup);
  add_int_option(app, "--validation_size", c.validation_size,
                 "Training examples held out for validation (the first N, as mnist_replica's "
                 "input reader); their cross-entropy is printed after training")
      ->capture_default_str()
      ->group(kTrainingGroup);
  add_int_option(app, "--cpu_threads", c.cpu_threads, "Threads of the CPU backend (0 = all cores)")
      ->capture_default_str()
      ->group(kOwnGroup);
  add_checkpoint_flags(app, c.checkpoint);
  // Later wins, as in TensorFlow (and so a flag after a --flagfile overrides the file's).
  for (CLI::Option* opt : app.get_options()) {
    opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }
}

MemoryEstimate estimate_memory(const TrainConfig& c) {
  const double pixels = static_cast<double>(c.model.image_rows) * c.model.image_cols;
  const double classes = c.model.classes;
  const double batch = std::max<double>(c.batch_size, c.eval_batch);
  MemoryEstimate m;
  double params = 0, per_example = 0;  // floats
  if (c.model.name == "cnn") {
    // conv 5x5x1x32, conv 5x5x32x64, dense 7*7*64 x 1024, dense 1024 x classes.
    params = 5 * 5 * 32 + 32 + 5 * 5 * 32 * 64 + 64 + pixels / 16 * 64 * 1024 + 1024 +
             1024 * classes + classes;
    per_example = pixels * (1 + 32 * 2 + 8 + 64 * 2 / 4.0 * 2) + 1024 * 2 + classes * 2;
  } else {
    const double h = c.model.hidden_units;
    params = pixels * h + h + h * classes + classes;
    per_example = pixels + 3 * h + 3 * classes;
  }
  m.model_bytes = params * 4 /* parameters, gradients, two optimizer slots */ * sizeof(float);
  m.batch_bytes = batch * per_example * 2 /* values and gradients */ * sizeof(float);
  return m;
}

namespace {

std::string bytes_string(double b) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (b >= 1024 && u < 6) {
    b /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

}  // namespace

Status check_memory(const TrainConfig& c, double available_bytes) {
  if (available_bytes <= 0) {
    available_bytes =
        static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  }
  const MemoryEstimate m = estimate_memory(c);
  if (m.model_bytes + m.batch_bytes <= available_bytes) return {};
  std::string flag;
  if (m.model_bytes >= m.batch_bytes) {
    flag = "--hidden_units=" + std::to_string(c.model.hidden_units) + " needs about " +
           bytes_string(m.model_bytes) + " for the model (parameters, gradients, optimizer)";
  } else if (c.batch_size >= c.eval_batch) {
    flag = "--batch_size=" + std::to_string(c.batch_size) + " needs about " +
           bytes_string(m.batch_bytes) + " for one batch";
  } else {
    flag = "--eval_batch=" + std::to_string(c.eval_batch) + " needs about " +
           bytes_string(m.batch_bytes) + " for one evaluation batch";
  }
  return invalid_argument(flag + "; this machine has " + bytes_string(available_bytes) +
                          " of memory");
}

namespace {

// "2000,4000" -> {2000, 4000}; an error names the flag and the item.
template <typename T>
Result<std::vector<T>> parse_list(const std::string& text, const std::string& flag) {
  std::vector<T> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    T value{};
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size()) {
      return invalid_argument(flag + "=" + text + ": '" + item + "' is not a number (give " +
                              "comma-separated numbers, e.g. " +
                              (std::is_integral_v<T> ? "2000,4000" : "0.01,0.003,0.001") + ")");
    }
    out.push_back(value);
    start = comma + 1;
  }
  return out;
}

Status finish_lr_schedule(const TrainFlagValues& v, LrSchedule& l) {
  PSTRAIN_ASSIGN_OR_RETURN(l.kind, parse_lr_schedule(v.lr_schedule));
  const bool piecewise = l.kind == LrScheduleKind::kPiecewise;
  if (!piecewise && (!v.lr_boundaries.empty() || !v.lr_values.empty())) {
    return invalid_argument("--lr_boundaries and --lr_values belong to --lr_schedule=piecewise");
  }
  if (l.kind == LrScheduleKind::kExponential && l.decay_steps <= 0) {
    return invalid_argument("--lr_schedule=exponential needs --lr_decay_steps > 0 (e.g. 1000)");
  }
  if (!piecewise) return {};
  if (v.lr_boundaries.empty() || v.lr_values.empty()) {
    return invalid_argument(
        "--lr_schedule=piecewise needs --lr_boundaries and --lr_values (e.g. "
        "--lr_boundaries=2000,4000 --lr_values=0.01,0.003,0.001)");
  }
  PSTRAIN_ASSIGN_OR_RETURN(auto boundaries,
                           parse_list<int64_t>(v.lr_boundaries, "--lr_boundaries"));
  PSTRAIN_ASSIGN_OR_RETURN(auto values, parse_list<float>(v.lr_values, "--lr_values"));
  if (boundaries.size() > static_cast<size_t>(kMaxLrBoundaries)) {
    return invalid_argument("--lr_boundaries holds " + std::to_string(boundaries.size()) +
                            " steps, at most " + std::to_string(kMaxLrBoundaries) + " are allowed");
  }
  if (values.size() != boundaries.size() + 1) {
    return invalid_argument("--lr_values needs one rate more than --lr_boundaries has steps (" +
                            std::to_string(boundaries.size() + 1) + "), got " +
                            std::to_string(values.size()));
  }
  l.num_boundaries = static_cast<int>(boundaries.size());
  std::copy(boundaries.begin(), boundaries.end(), l.boundaries.begin());
  std::copy(values.begin(), values.end(), l.values.begin());
  return {};
}

}  // namespace

Result<TrainConfig> finish_training_flags(const TrainFlagValues& v) {
  TrainConfig c = v.config;
  c.model.name = v.model;
  PSTRAIN_ASSIGN_OR_RETURN(c.optimizer.kind, parse_optimizer(v.optimizer));
  c.optimizer.learning_rate = v.learning_rate;
  PSTRAIN_RETURN_IF_ERROR(finish_lr_schedule(v, c.optimizer.schedule));
  PSTRAIN_RETURN_IF_ERROR(check_optimizer_config(c.optimizer, "--"));
  if (c.model.name != "mlp" && c.model.name != "cnn") {
    return invalid_argument("--model=" + c.model.name + " is not a model: use mlp or cnn");
  }
  PSTRAIN_RETURN_IF_ERROR(validate(c));
  if (c.model.hidden_units <= 0) {
    return invalid_argument("--hidden_units must be positive, got " +
                            std::to_string(c.model.hidden_units));
  }
  PSTRAIN_RETURN_IF_ERROR(check_memory(c));
  return c;
}

void add_output_flags(CLI::App& app, std::string& checkpoint_dir, std::string& log_dir,
                      int& log_every) {
  app.add_option("--checkpoint_dir", checkpoint_dir, "Checkpoint directory (created)")
      ->group(kOutputGroup);
  app.add_option("--log_dir", log_dir, "TensorBoard log directory (created)")->group(kOutputGroup);
  add_int_option(app, "--log_every", log_every,
                 "Print mnist_replica's step line every N local steps (pstrain train: its "
                 "progress line)")
      ->capture_default_str()
      ->group(kOutputGroup);
}

void add_checkpoint_flags(CLI::App& app, CheckpointOptions& o) {
  add_int_option(app, "--save_checkpoint_steps", o.save_steps,
                 "Save a checkpoint every N global steps into --checkpoint_dir (0: off)")
      ->capture_default_str()
      ->group(kOutputGroup);
  add_int_option(app, "--save_checkpoint_secs", o.save_secs,
                 "Save a checkpoint every N seconds into --checkpoint_dir (0: off)")
      ->capture_default_str()
      ->group(kOutputGroup);
  add_int_option(app, "--keep_checkpoint_max", o.keep_max,
                 "Keep the newest N complete checkpoints (0: all)")
      ->capture_default_str()
      ->group(kOutputGroup);
}

void add_log_level_flag(CLI::App& app) {
  app.add_option_function<std::string>(
         "--log_level",
         [](const std::string& s) {
           LogLevel level;
           if (!parse_log_level(s, &level)) {
             throw CLI::ValidationError("--log_level",
                                        "'" + s + "' is not one of debug, info, warning, error");
           }
           set_log_level(level);
         },
         "Log level: debug, info, warning or error")
      ->default_str("info")
      ->group(kOwnGroup);
}

void add_summary_every_flag(CLI::App& app, int& summary_every) {
  add_int_option(app, "--summary_every", summary_every,
                 "With --log_dir: TensorBoard scalars and histograms every N steps (0: only at "
                 "the first and the last)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->group(kOutputGroup);
}

namespace {

// A CLI11 check by one of the parse_* functions (Result<T> parse(std::string_view)): its error
// message is CLI11's; `choices` is what --help shows.
template <typename Parse>
CLI::Validator parsed_by(Parse parse, std::string choices) {
  return CLI::Validator(
      [parse](std::string& value) -> std::string {
        auto parsed = parse(value);
        return parsed.ok() ? std::string() : parsed.status().message();
      },
      std::move(choices));
}

}  // namespace

void add_compress_flag(CLI::App& app, std::string& compress) {
  app.add_option("--compress", compress,
                 "How workers send gradients: none (float32), fp16 or bf16 (16 bits, rounded "
                 "to nearest even; the parameter servers update in float32)")
      ->capture_default_str()
      ->check(parsed_by(parse_compression, "none|fp16|bf16"))
      ->group(kTrainingGroup);
}

void add_transport_flag(CLI::App& app, std::string& transport) {
  app.add_option("--transport", transport,
                 "How workers reach the parameter servers: tcp, ipc (a Unix socket; the "
                 "server must run on this machine), shm (the Unix socket for headers, shared "
                 "memory for tensors) or auto (shm to a server on this machine, tcp to the "
                 "others)")
      ->capture_default_str()
      ->check(parsed_by(parse_transport, "auto|tcp|ipc|shm"))
      ->group(kTrainingGroup);
}

void add_flagfile_option(CLI::App& app) {
  app.add_option("--flagfile",
                 "Read flags from FILE, one --name=value a line (as absl/gflags flagfiles); "
                 "every flag also comes from a PSTRAIN_<NAME> variable (PSTRAIN_TRAIN_STEPS=300); "
                 "flags given on the command line win")
      ->type_name("FILE")
      ->group(kOwnGroup);
}

void add_metrics_flags(CLI::App& app, MetricsFlags& f) {
  add_int_option(app, "--metrics_port", f.port,
                 "Serve Prometheus metrics over HTTP on this port (0: a free one, logged; "
                 "default: off)")
      ->check(CLI::Range(0, 65535).description(""))
      ->group(kOutputGroup);
  app.add_option("--metrics_host", f.host,
                 "Address the metrics are served on (default 127.0.0.1; 0.0.0.0 for every "
                 "interface, so that a Prometheus on another machine can scrape them)")
      ->group(kOutputGroup);
  app.add_option("--metrics_file", f.file,
                 "Append the training loop's metrics to this file as JSON lines (step, loss, "
                 "examples/s every --summary_every steps; each evaluation)")
      ->group(kOutputGroup);
}

void add_security_flags(CLI::App& app, SecurityFlags& f) {
  app.add_option("--secret_file", f.secret_file,
                 "The job secret: a file of 32+ random bytes, mode 0600, the same for every task "
                 "(head -c 32 /dev/urandom > F; chmod 600 F). Connections are then encrypted and "
                 "only the job's tasks get in (docs/security.md); 'none': no secret (pstrain "
                 "launch otherwise makes one per job)")
      ->group(kOwnGroup);
}

Result<std::shared_ptr<const JobKeys>> load_security(const SecurityFlags& f) {
  // "none": no secret, said explicitly (pstrain launch then makes none either).
  if (f.secret_file.empty() || f.secret_file == "none") return std::shared_ptr<const JobKeys>();
  auto keys = load_job_keys(f.secret_file);
  if (!keys.ok()) return keys.status();
  return std::shared_ptr<const JobKeys>(std::make_shared<JobKeys>(std::move(keys).value()));
}

Result<TrainingMetrics> start_training_metrics(const MetricsFlags& f, const std::string& role,
                                               int task) {
  TrainingMetrics m;
  if (f.port < 0) return m;
  PSTRAIN_ASSIGN_OR_RETURN(m.server, metrics::MetricsServer::start(f.host, f.port));
  m.sink = std::make_unique<MetricsSink>(role, task);
  m.server->add(m.sink->collectable());
  PSTRAIN_LOG(INFO) << role << " " << task << " metrics at " << m.server->url();
  return m;
}

}  // namespace pstrain
