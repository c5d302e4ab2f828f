#include "cli/flags.h"

#include "runtime/base/log.h"

namespace pstrain {

CLI::Option* add_bool_flag(CLI::App& app, const std::string& name, bool& value,
                           const std::string& help) {
  return app.add_flag("--" + name + ",!--no" + name, value, help);
}

void add_training_flags(CLI::App& app, TrainFlagValues& v) {
  TrainConfig& c = v.config;
  app.add_option("--model", v.model, "Model: mlp or cnn")->capture_default_str();
  app.add_option("--hidden_units", c.model.hidden_units, "Units of the MLP's hidden layer")
      ->capture_default_str();
  app.add_option("--train_steps", c.train_steps, "Number of (global) training steps")
      ->capture_default_str();
  app.add_option("--batch_size", c.batch_size, "Training batch size")->capture_default_str();
  app.add_option("--learning_rate", v.learning_rate, "Learning rate")->capture_default_str();
  app.add_option("--optimizer", v.optimizer, "Optimizer: adam, sgd, momentum or adagrad")
      ->capture_default_str();
  OptimizerConfig& o = c.optimizer;
  app.add_option("--momentum", o.momentum,
                 "Momentum optimizer: decay of the accumulated gradient (pstrain's default; "
                 "TensorFlow's MomentumOptimizer has none)")
      ->default_str(float_string(o.momentum));
  app.add_option("--adam_beta1", o.beta1, "Adam: decay of the first-moment estimate, in [0, 1)")
      ->default_str(float_string(o.beta1));
  app.add_option("--adam_beta2", o.beta2, "Adam: decay of the second-moment estimate, in [0, 1)")
      ->default_str(float_string(o.beta2));
  app.add_option("--adam_epsilon", o.epsilon, "Adam: epsilon added to the denominator")
      ->default_str(float_string(o.epsilon));
  app.add_option("--adagrad_initial_accumulator", o.initial_accumulator,
                 "Adagrad: starting value of the accumulators, > 0")
      ->default_str(float_string(o.initial_accumulator));
  app.add_option("--seed", c.seed, "Random seed (initialisation and data order)")
      ->capture_default_str();
  app.add_option("--data_dir", c.data_dir, "Directory with the four MNIST IDX files (raw or .gz)")
      ->capture_default_str();
  app.add_option("--num_gpus", c.num_gpus,
                 "GPUs per machine; task i uses GPU i % num_gpus; 0 = CPU")
      ->capture_default_str();
  add_bool_flag(app, "tf32", c.tf32, "Use TF32 tensor-core math for GPU matrix products");
  app.add_option("--eval_batch", c.eval_batch, "Batch size of the test-set evaluation")
      ->capture_default_str();
  app.add_option("--cpu_threads", c.cpu_threads, "Threads of the CPU backend (0 = all cores)")
      ->capture_default_str();
}

Result<TrainConfig> finish_training_flags(const TrainFlagValues& v) {
  TrainConfig c = v.config;
  c.model.name = v.model;
  PSTRAIN_ASSIGN_OR_RETURN(c.optimizer.kind, parse_optimizer(v.optimizer));
  c.optimizer.learning_rate = v.learning_rate;
  PSTRAIN_RETURN_IF_ERROR(check_optimizer_config(c.optimizer, "--"));
  if (c.model.name != "mlp" && c.model.name != "cnn") {
    return invalid_argument("--model=" + c.model.name + " is not a model: use mlp or cnn");
  }
  PSTRAIN_RETURN_IF_ERROR(validate(c));
  return c;
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
      ->default_str("info");
}

}  // namespace pstrain
