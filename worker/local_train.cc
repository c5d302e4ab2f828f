#include "worker/local_train.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "kernels/model.h"
#include "runtime/base/log.h"
#include "worker/checkpointer.h"
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
                                   TrainingSink& user_sink, const std::atomic<int>* stop) {
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

  // Checkpoints: the files of a one-PS job (worker/checkpointer.h).
  LocalCheckpointer checkpointer(config.checkpoint, model->variables(),
                                 JobTrainingConfig{.model = mo.name,
                                                   .optimizer = config.optimizer,
                                                   .sync_replicas = false,
                                                   .replicas_to_aggregate = 1,
                                                   .staleness = 0,
                                                   .train_steps = config.train_steps,
                                                   .num_workers = 1,
                                                   .layout_hash = 0});
  std::vector<float> host_params(static_cast<size_t>(count));
  std::vector<std::vector<float>> host_slots(static_cast<size_t>(slots),
                                             std::vector<float>(static_cast<size_t>(count)));
  int64_t first_step = 1;
  if (config.checkpoint.enabled()) {
    host_params = init;
    std::vector<std::span<float>> slot_spans;
    for (auto& h : host_slots) {
      h = slot_init;
      slot_spans.emplace_back(h);
    }
    PSTRAIN_ASSIGN_OR_RETURN(int64_t restored, checkpointer.restore(host_params, slot_spans));
    if (restored > 0) {
      ops.copy_to_device(model->parameters().raw(), host_params.data(), host_params.size() * 4);
      for (int i = 0; i < slots; ++i) {
        ops.copy_to_device(slot_tensors[static_cast<size_t>(i)].raw(),
                           host_slots[static_cast<size_t>(i)].data(), host_params.size() * 4);
      }
      first_step = restored + 1;
      PSTRAIN_LOG(INFO) << "resuming from the checkpoint of step " << restored << " in "
                        << config.checkpoint.dir;
      // The batches continue where they stopped, so a resumed run equals an uninterrupted one.
      for (int64_t i = 0; i < std::min(restored, config.train_steps); ++i) {
        source.next(batch, images.host_f32(),
                    std::span<int32_t>(labels.i32(), static_cast<size_t>(batch)));
      }
    }
  }
  // Copies the parameters and slots to the host and writes a checkpoint of `step`.
  const auto save = [&](int64_t step) {
    ops.copy_to_host(host_params.data(), model->parameters().raw(), host_params.size() * 4);
    std::vector<std::span<const float>> slot_spans;
    for (int i = 0; i < slots; ++i) {
      ops.copy_to_host(host_slots[static_cast<size_t>(i)].data(),
                       slot_tensors[static_cast<size_t>(i)].raw(), host_params.size() * 4);
      slot_spans.emplace_back(host_slots[static_cast<size_t>(i)]);
    }
    Status st = checkpointer.save(step, host_params, slot_spans);
    if (!st.ok()) PSTRAIN_LOG(WARNING) << "checkpoint of step " << step << ": " << st.message();
  };

  PSTRAIN_LOG(INFO) << "training " << mo.name << " (" << count << " parameters) on "
                    << ops.description() << ": " << config.train_steps << " steps of batch "
                    << batch << ", " << optimizer_name(config.optimizer.kind) << " lr "
                    << config.optimizer.learning_rate
                    << describe_lr_schedule(config.optimizer.schedule);

  SummarySink summary;
  SinkList sink({&user_sink, &summary});
  TrainingBegin begin;
  begin.model = mo.name;
  begin.backend = ops.description();
  begin.num_parameters = count;
  begin.train_steps = config.train_steps;
  begin.batch_size = batch;
  begin.variables = model->variables();
  begin.optimizer = config.optimizer;
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
  int64_t last_step = first_step - 1;
  for (int64_t step = first_step; step <= config.train_steps; ++step) {
    if (stop != nullptr && stop->load() != 0) {
      save(last_step);
      return cancelled("training stopped on request at step " + std::to_string(last_step));
    }
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
               .examples_per_second = static_cast<double>(step - first_step + 1) * batch / secs,
               .elapsed_seconds = secs});
    last_step = step;
    if (step < config.train_steps && checkpointer.due(step)) save(step);
    if (config.eval_every > 0 && step % config.eval_every == 0 && step < config.train_steps) {
      evaluate_splits(step);
    }
  }
  const int64_t trained = std::max<int64_t>(0, config.train_steps - first_step + 1);  // this run's
  if (config.checkpoint.enabled() && trained > 0) save(config.train_steps);
  const double train_secs = seconds();
  sink.training_end(
      {.local_steps = trained,
       .global_step = config.train_steps,
       .train_seconds = train_secs,
       .examples_per_second = trained > 0 ? static_cast<double>(trained) * batch / train_secs : 0.0,
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
