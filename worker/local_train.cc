#include "worker/local_train.h"

#include <chrono>
#include <cmath>

#include "kernels/model.h"
#include "runtime/base/log.h"
#include "worker/evaluate.h"
#include "worker/recent_mean.h"

namespace pstrain {

nlohmann::json TrainSummary::to_json() const {
  return {
      {"model", model},
      {"backend", backend},
      {"optimizer", optimizer},
      {"steps", steps},
      {"batch_size", batch_size},
      {"num_parameters", num_parameters},
      {"final_loss", final_loss},
      {"test_accuracy", test_accuracy},
      {"test_examples", test_examples},
      {"train_seconds", train_seconds},
      {"wall_seconds", wall_seconds},
      {"examples_per_second", examples_per_second},
  };
}

Result<TrainSummary> train_locally(const TrainConfig& config, const TrainTestData& data, Ops& ops,
                                   TrainingSink& user_sink) {
  PSTRAIN_RETURN_IF_ERROR(validate(config));
  using Clock = std::chrono::steady_clock;
  const auto wall_start = Clock::now();

  ModelOptions mo = config.model;
  mo.image_rows = data.train.rows;
  mo.image_cols = data.train.cols;
  PSTRAIN_ASSIGN_OR_RETURN(auto model, Model::create(mo, ops));
  const int64_t count = model->num_parameters();

  // Parameters and optimizer slots live in the backend's memory for the whole run.
  const std::vector<float> init = model->initial_parameters(config.seed);
  ops.copy_to_device(model->parameters().raw(), init.data(), init.size() * sizeof(float));
  const int slots = optimizer_slot_count(config.optimizer.kind);
  std::vector<Tensor> slot_tensors;
  const std::vector<float> slot_init(static_cast<size_t>(count),
                                     optimizer_slot_initial_value(config.optimizer));
  for (int i = 0; i < slots; ++i) {
    slot_tensors.push_back(ops.alloc({count}));
    ops.copy_to_device(slot_tensors.back().raw(), slot_init.data(), slot_init.size() * 4);
  }
  float* slot0 = slots > 0 ? slot_tensors[0].f32() : nullptr;
  float* slot1 = slots > 1 ? slot_tensors[1].f32() : nullptr;

  const int batch = config.batch_size;
  const int64_t features = data.train.pixels();
  Tensor images = ops.alloc_host({batch, features});
  Tensor labels = ops.alloc_host({batch}, DType::kInt32);
  BatchSource source(data.train, 0, 1, config.seed);

  PSTRAIN_LOG(INFO) << "training " << mo.name << " (" << count << " parameters) on "
                    << ops.description() << ": " << config.train_steps << " steps of batch "
                    << batch << ", " << optimizer_name(config.optimizer.kind) << " lr "
                    << config.optimizer.learning_rate;

  SummarySink summary;
  SinkList sink({&user_sink, &summary});
  TrainingBegin begin;
  begin.model = mo.name;
  begin.backend = ops.description();
  begin.num_parameters = count;
  begin.train_steps = config.train_steps;
  begin.batch_size = batch;
  begin.variables = model->variables();
  begin.learning_rate = config.optimizer.learning_rate;
  begin.read_tensors = [&](std::vector<float>* p, std::vector<float>* g) {
    p->resize(static_cast<size_t>(count));
    g->resize(static_cast<size_t>(count));
    ops.copy_to_host(p->data(), model->parameters().raw(), p->size() * sizeof(float));
    ops.copy_to_host(g->data(), model->gradients().raw(), g->size() * sizeof(float));
    ops.synchronize();
  };
  sink.begin(begin);
  auto evaluate_splits = [&](int64_t at) {
    if (data.validation.count > 0) {
      sink.evaluation(evaluate_split(*model, data.validation, "validation", config.eval_batch, at));
    }
    sink.evaluation(evaluate_test_set(*model, data.test, config.eval_batch, at));
  };
  RecentMean recent;
  const auto train_start = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - train_start).count(); };
  for (int64_t step = 1; step <= config.train_steps; ++step) {
    source.next(batch, images.host_f32(),
                std::span<int32_t>(labels.i32(), static_cast<size_t>(batch)));
    model->upload_batch(images.host_f32(),
                        std::span<const int32_t>(labels.i32(), static_cast<size_t>(batch)), batch);
    model->forward_backward(batch);
    ops.optimizer_update(config.optimizer, model->parameters().f32(), model->gradients().f32(),
                         slot0, slot1, count, step);
    const float loss = model->read_loss();  // synchronizes: the batch buffers are free again
    if (!std::isfinite(loss)) {
      return failed_precondition("training diverged: loss is " + std::to_string(loss) +
                                 " at step " + std::to_string(step) + "; lower --learning_rate");
    }
    recent.add(loss);
    const double secs = seconds();
    sink.step({.local_step = step,
               .global_step = step,
               .loss = loss,
               .mean_loss = recent.mean(),
               .examples_per_second = static_cast<double>(step) * batch / secs,
               .elapsed_seconds = secs});
    if (config.eval_every > 0 && step % config.eval_every == 0 && step < config.train_steps) {
      evaluate_splits(step);
    }
  }
  const double train_secs = seconds();
  sink.training_end(
      {.local_steps = config.train_steps,
       .global_step = config.train_steps,
       .train_seconds = train_secs,
       .examples_per_second = static_cast<double>(config.train_steps) * batch / train_secs,
       .final_loss = recent.mean()});

  evaluate_splits(config.train_steps);
  sink.finish();

  const TrainingRecord& r = summary.record();
  TrainSummary s;
  s.model = mo.name;
  s.backend = ops.description();
  s.optimizer = optimizer_name(config.optimizer.kind);
  s.steps = config.train_steps;
  s.batch_size = batch;
  s.num_parameters = count;
  s.final_loss = r.final_loss;
  s.test_examples = data.test.count;
  s.test_accuracy = r.test ? r.test->accuracy() : 0.0;
  s.train_seconds = r.train_seconds;
  s.examples_per_second = r.examples_per_second;
  s.wall_seconds = std::chrono::duration<double>(Clock::now() - wall_start).count();
  return s;
}

}  // namespace pstrain
