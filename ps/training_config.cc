#include "ps/training_config.h"

#include <utility>

#include "ps/wire_optimizer.h"

namespace pstrain {
namespace {

// Field names as the wire and the flags spell them.
constexpr const char* kMomentum = "momentum";
constexpr const char* kBeta1 = "adam_beta1";
constexpr const char* kBeta2 = "adam_beta2";
constexpr const char* kEpsilon = "adam_epsilon";
constexpr const char* kAccumulator = "adagrad_initial_accumulator";

}  // namespace

wire::TrainingConfig JobTrainingConfig::to_wire() const {
  wire::TrainingConfig w;
  w.set_model(model);
  w.set_optimizer(optimizer_to_wire(optimizer.kind));
  w.set_learning_rate(optimizer.learning_rate);
  w.set_momentum(optimizer.momentum);
  w.set_adam_beta1(optimizer.beta1);
  w.set_adam_beta2(optimizer.beta2);
  w.set_adam_epsilon(optimizer.epsilon);
  w.set_adagrad_initial_accumulator(optimizer.initial_accumulator);
  w.set_sync_replicas(sync_replicas);
  w.set_replicas_to_aggregate(replicas_to_aggregate);
  w.set_staleness(staleness);
  w.set_train_steps(train_steps);
  w.set_num_workers(num_workers);
  w.set_layout_hash(layout_hash);
  const LrSchedule& l = optimizer.schedule;
  switch (l.kind) {
    case LrScheduleKind::kConstant:
      w.set_lr_schedule(wire::LR_CONSTANT);
      break;
    case LrScheduleKind::kExponential:
      w.set_lr_schedule(wire::LR_EXPONENTIAL);
      break;
    case LrScheduleKind::kPiecewise:
      w.set_lr_schedule(wire::LR_PIECEWISE);
      break;
  }
  w.set_lr_decay_steps(l.decay_steps);
  w.set_lr_decay_rate(l.decay_rate);
  w.set_lr_staircase(l.staircase);
  if (l.kind == LrScheduleKind::kPiecewise) {
    for (int i = 0; i < l.num_boundaries; ++i) {
      w.add_lr_boundaries(l.boundaries[static_cast<size_t>(i)]);
    }
    for (int i = 0; i <= l.num_boundaries; ++i) w.add_lr_values(l.values[static_cast<size_t>(i)]);
  }
  return w;
}

Result<JobTrainingConfig> JobTrainingConfig::from_wire(const wire::TrainingConfig& w) {
  const auto context = [](const Status& st) { return st.with_context("INIT's training config"); };
  const std::pair<bool, const char*> sent[] = {{w.has_momentum(), kMomentum},
                                               {w.has_adam_beta1(), kBeta1},
                                               {w.has_adam_beta2(), kBeta2},
                                               {w.has_adam_epsilon(), kEpsilon},
                                               {w.has_adagrad_initial_accumulator(), kAccumulator}};
  for (const auto& [has, name] : sent) {
    if (!has) {
      return context(invalid_argument(
          std::string("no ") + name +
          ": the chief runs an older pstrain; run the same pstrain on every task"));
    }
  }
  JobTrainingConfig c;
  auto kind = optimizer_from_wire(w.optimizer());
  if (!kind.ok()) return context(kind.status());
  c.optimizer.kind = *kind;
  c.optimizer.learning_rate = w.learning_rate();
  c.optimizer.momentum = w.momentum();
  c.optimizer.beta1 = w.adam_beta1();
  c.optimizer.beta2 = w.adam_beta2();
  c.optimizer.epsilon = w.adam_epsilon();
  c.optimizer.initial_accumulator = w.adagrad_initial_accumulator();
  c.model = w.model();
  c.sync_replicas = w.sync_replicas();
  c.replicas_to_aggregate = w.replicas_to_aggregate();
  c.staleness = w.staleness();
  c.train_steps = w.train_steps();
  c.num_workers = w.num_workers();
  c.layout_hash = w.layout_hash();
  LrSchedule& l = c.optimizer.schedule;
  switch (w.lr_schedule()) {
    case wire::LR_CONSTANT:
      l.kind = LrScheduleKind::kConstant;
      break;
    case wire::LR_EXPONENTIAL:
      l.kind = LrScheduleKind::kExponential;
      break;
    case wire::LR_PIECEWISE:
      l.kind = LrScheduleKind::kPiecewise;
      break;
    default:
      return context(invalid_argument("lr_schedule " + std::to_string(w.lr_schedule()) +
                                      " is unknown: run the same pstrain on every task"));
  }
  l.decay_steps = w.lr_decay_steps();
  l.decay_rate = w.lr_decay_rate();
  l.staircase = w.lr_staircase();
  if (l.kind == LrScheduleKind::kPiecewise) {
    if (w.lr_boundaries_size() < 1 || w.lr_boundaries_size() > kMaxLrBoundaries ||
        w.lr_values_size() != w.lr_boundaries_size() + 1) {
      return context(invalid_argument(
          "a piecewise schedule needs 1 to " + std::to_string(kMaxLrBoundaries) +
          " lr_boundaries and one lr_value more, got " + std::to_string(w.lr_boundaries_size()) +
          " and " + std::to_string(w.lr_values_size())));
    }
    l.num_boundaries = w.lr_boundaries_size();
    for (int i = 0; i < l.num_boundaries; ++i) {
      l.boundaries[static_cast<size_t>(i)] = w.lr_boundaries(i);
    }
    for (int i = 0; i <= l.num_boundaries; ++i) l.values[static_cast<size_t>(i)] = w.lr_values(i);
  }
  if (Status st = c.validate(); !st.ok()) return context(st);
  return c;
}

Status JobTrainingConfig::validate() const {
  if (model.empty()) return invalid_argument("model must name the model (e.g. mlp), got none");
  PSTRAIN_RETURN_IF_ERROR(check_optimizer_config(optimizer, ""));
  if (num_workers < 1) {
    return invalid_argument("num_workers must be at least 1, got " + std::to_string(num_workers));
  }
  if (replicas_to_aggregate < 1) {
    return invalid_argument("replicas_to_aggregate must be at least 1, got " +
                            std::to_string(replicas_to_aggregate));
  }
  if (sync_replicas && replicas_to_aggregate > num_workers) {
    return invalid_argument("replicas_to_aggregate must be at most the " +
                            std::to_string(num_workers) + " workers, got " +
                            std::to_string(replicas_to_aggregate));
  }
  if (staleness < 0) {
    return invalid_argument("staleness must be 0 (unbounded) or more, got " +
                            std::to_string(staleness));
  }
  if (sync_replicas && staleness != 0) {
    return invalid_argument(
        "staleness must be 0 with sync_replicas (it bounds asynchronous "
        "training), got " +
        std::to_string(staleness));
  }
  if (train_steps <= 0) {
    return invalid_argument("train_steps must be positive, got " + std::to_string(train_steps));
  }
  return {};
}

std::string JobTrainingConfig::describe() const {
  const OptimizerConfig& o = optimizer;
  std::string s = model + ", " + optimizer_name(o.kind) + " lr " + float_string(o.learning_rate);
  switch (o.kind) {
    case OptimizerKind::kSgd:
      break;
    case OptimizerKind::kMomentum:
      s += " momentum " + float_string(o.momentum);
      break;
    case OptimizerKind::kAdam:
      s += " beta1 " + float_string(o.beta1) + " beta2 " + float_string(o.beta2) + " epsilon " +
           float_string(o.epsilon);
      break;
    case OptimizerKind::kAdagrad:
      s += " initial accumulator " + float_string(o.initial_accumulator);
      break;
  }
  s += describe_lr_schedule(o.schedule);
  const std::string workers =
      std::to_string(num_workers) + (num_workers == 1 ? " worker" : " workers");
  if (sync_replicas) {
    s +=
        ", sync, " + std::to_string(replicas_to_aggregate) + " replicas to aggregate of " + workers;
  } else {
    s += staleness > 0 ? ", async, staleness " + std::to_string(staleness) : ", async";
    s += ", " + workers;
  }
  return s + ", " + std::to_string(train_steps) + " steps";
}

}  // namespace pstrain
