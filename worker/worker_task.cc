#include "worker/worker_task.h"

#include <chrono>
#include <cmath>

#include "kernels/model.h"
#include "ps/placement.h"
#include "runtime/base/hash.h"
#include "runtime/base/log.h"
#include "worker/backend.h"
#include "worker/data.h"
#include "worker/recent_mean.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

uint64_t layout_hash(const Placement& p, const ModelOptions& m) {
  // The placement hash covers names, shapes (through chunk sizes) and PS assignment; mix in
  // the model name so an MLP and a CNN with equal chunking never match.
  return Fnv1a().add_int(static_cast<int64_t>(p.hash)).add(m.name).value();
}

}  // namespace

nlohmann::json WorkerTaskSummary::to_json() const {
  nlohmann::json j = {{"task_index", task_index},
                      {"backend", backend},
                      {"local_steps", local_steps},
                      {"global_step", global_step},
                      {"rejected_gradients", rejected_gradients},
                      {"final_loss", final_loss},
                      {"train_seconds", train_seconds},
                      {"examples_per_second", examples_per_second},
                      {"bytes_sent", bytes_sent},
                      {"bytes_received", bytes_received}};
  if (evaluated) j["test_accuracy"] = test_accuracy;
  return j;
}

Result<WorkerTaskSummary> run_worker_task(const WorkerTaskOptions& o, TrainingSink& user_sink) {
  PSTRAIN_RETURN_IF_ERROR(validate(o.train));
  const int num_workers = static_cast<int>(o.cluster.workers.size());
  const int num_ps = static_cast<int>(o.cluster.ps.size());
  const bool chief = o.task_index == 0;
  int replicas = o.replicas_to_aggregate > 0 ? o.replicas_to_aggregate : num_workers;
  if (o.sync_replicas && replicas > num_workers) {
    return invalid_argument("--replicas_to_aggregate=" + std::to_string(replicas) +
                            " is more than the " + std::to_string(num_workers) +
                            " workers of the cluster");
  }
  SummarySink summary;
  SinkList sink({&user_sink, &summary});

  PSTRAIN_ASSIGN_OR_RETURN(TrainTestData data, load_data_dir(o.train.data_dir));
  PSTRAIN_ASSIGN_OR_RETURN(
      BackendChoice backend,
      select_backend(o.train.num_gpus, o.task_index, o.train.tf32, o.train.cpu_threads));
  if (!backend.warning.empty()) PSTRAIN_LOG(WARNING) << backend.warning;
  Ops& ops = *backend.ops;

  ModelOptions mo = o.train.model;
  mo.image_rows = data.train.rows;
  mo.image_cols = data.train.cols;
  PSTRAIN_ASSIGN_OR_RETURN(auto model, Model::create(mo, ops));
  const Placement placement = place_variables(model->variables(), num_ps);
  const uint64_t layout = layout_hash(placement, mo);
  const int64_t count = model->num_parameters();

  zmq::context_t ctx(1);
  ClientOptions co = o.client;
  co.worker = o.task_index;
  co.job_id = o.job_id;
  PSTRAIN_ASSIGN_OR_RETURN(auto client, PsClient::connect(ctx, o.cluster.ps, placement, co));
  PSTRAIN_LOG(INFO) << "worker " << o.task_index << (chief ? " (chief)" : "") << ": " << mo.name
                    << " with " << count << " parameters in " << placement.chunks.size()
                    << " chunks over " << num_ps << " ps; " << ops.description()
                    << "; waiting for the parameter servers";
  PSTRAIN_ASSIGN_OR_RETURN(bool initialized, client->hello(layout));
  client->start_heartbeats();
  if (chief && !initialized) {
    const JobTrainingConfig config{.model = mo.name,
                                   .optimizer = o.train.optimizer,
                                   .sync_replicas = o.sync_replicas,
                                   .replicas_to_aggregate = replicas,
                                   .staleness = o.sync_replicas ? 0 : o.staleness,
                                   .train_steps = o.train.train_steps,
                                   .num_workers = num_workers,
                                   .layout_hash = layout};
    PSTRAIN_RETURN_IF_ERROR(client->init(config, model->initial_parameters(o.train.seed)));
    PSTRAIN_LOG(INFO) << "chief initialised the variables on " << num_ps << " ps";
  }

  Tensor params = ops.alloc_host({count});
  Tensor grads = ops.alloc_host({count});
  const int batch = o.train.batch_size;
  Tensor images = ops.alloc_host({batch, data.train.pixels()});
  Tensor labels = ops.alloc_host({batch}, DType::kInt32);
  BatchSource source(data.train, o.task_index, num_workers, o.train.seed);
  if (source.shard_size() == 0) {
    return invalid_argument("the training set in " + o.train.data_dir + " has " +
                            std::to_string(data.train.count) + " examples, fewer than the " +
                            std::to_string(num_workers) + " workers: worker " +
                            std::to_string(o.task_index) + " has none to train on");
  }
  const std::span<int32_t> label_span(labels.i32(), static_cast<size_t>(batch));

  RecentMean recent;
  PsSteps min_steps(static_cast<size_t>(num_ps), 0);
  int64_t global = 0;
  int64_t local_steps = 0;
  int64_t rejected = 0;
  sink.begin({.model = mo.name,
              .backend = ops.description(),
              .num_parameters = count,
              .train_steps = o.train.train_steps,
              .batch_size = batch,
              .task_index = o.task_index,
              .chief = chief});
  const auto start = Clock::now();
  while (true) {
    PSTRAIN_ASSIGN_OR_RETURN(PsSteps steps, client->pull(params.host_f32(), min_steps));
    global = steps[0];
    if (global >= o.train.train_steps) break;
    ops.copy_to_device(model->parameters().raw(), params.raw(), params.bytes());
    source.next(batch, images.host_f32(), label_span);
    model->upload_batch(images.host_f32(), label_span, batch);
    model->forward_backward(batch);
    ops.copy_to_host(grads.raw(), model->gradients().raw(), grads.bytes());
    const float loss = model->read_loss();  // synchronizes: grads are on the host now
    if (!std::isfinite(loss)) {
      return failed_precondition("training diverged: loss is " + std::to_string(loss) +
                                 " at global step " + std::to_string(global) +
                                 "; lower --learning_rate");
    }
    PSTRAIN_ASSIGN_OR_RETURN(PushResult pushed,
                             client->push(grads.host_f32(), steps, grads.memory()));
    ++local_steps;
    if (!pushed.accepted) ++rejected;
    global = pushed.global_step;
    if (o.sync_replicas) {
      // Next, each PS's step after the one it served (their steps may differ by one).
      for (size_t i = 0; i < steps.size(); ++i) min_steps[i] = steps[i] + 1;
    }
    recent.add(loss);
    const double secs = seconds_since(start);
    sink.step({.local_step = local_steps,
               .global_step = global,
               .loss = loss,
               .mean_loss = recent.mean(),
               .examples_per_second = static_cast<double>(local_steps) * batch / secs,
               .elapsed_seconds = secs});
  }
  const double train_seconds = seconds_since(start);
  sink.training_end(
      {.local_steps = local_steps,
       .global_step = global,
       .train_seconds = train_seconds,
       .examples_per_second =
           train_seconds > 0 ? static_cast<double>(local_steps) * batch / train_seconds : 0.0,
       .final_loss = recent.mean()});

  int64_t final_step = global;
  if (chief) {
    // Wait until every worker's last gradient is in, then evaluate those parameters.
    PSTRAIN_ASSIGN_OR_RETURN(PsSteps final_steps,
                             client->pull(params.host_f32(), o.train.train_steps));
    final_step = final_steps[0];
    ops.copy_to_device(model->parameters().raw(), params.raw(), params.bytes());
  }
  Status done = client->done();
  client->stop_heartbeats();
  if (!done.ok())
    PSTRAIN_LOG(WARNING) << "could not tell every ps this worker is done: " << done.message();

  if (chief) {
    EvalReport eval;
    eval.global_step = final_step;
    eval.count = data.test.count;
    eval.correct =
        model->count_correct(data.test.images, data.test.labels,
                             std::min<int>(o.train.eval_batch, static_cast<int>(data.test.count)));
    sink.evaluation(eval);
  }
  sink.finish();

  const TrainingRecord& r = summary.record();
  WorkerTaskSummary s;
  s.task_index = o.task_index;
  s.backend = ops.description();
  s.local_steps = r.local_steps;
  s.global_step = r.global_step;
  s.rejected_gradients = rejected;
  s.final_loss = r.final_loss;
  s.train_seconds = r.train_seconds;
  s.examples_per_second = r.examples_per_second;
  s.evaluated = r.test.has_value();
  s.test_accuracy = r.test ? r.test->accuracy() : 0.0;
  s.bytes_sent = client->bytes_sent();
  s.bytes_received = client->bytes_received();
  return s;
}

}  // namespace pstrain
