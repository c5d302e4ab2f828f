#include "worker/worker_task.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <thread>
#include <utility>

#include "kernels/model.h"
#include "ps/placement.h"
#include "runtime/base/hash.h"
#include "runtime/base/log.h"
#include "runtime/base/sched.h"
#include "runtime/wire/transport.h"
#include "worker/backend.h"
#include "worker/checkpointer.h"
#include "worker/data.h"
#include "worker/evaluate.h"
#include "worker/overlap_pull.h"
#include "worker/overlap_push.h"
#include "worker/recent_mean.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The next step's batch, gathered while the servers compute this step's update
// (PsClient::WhileWaiting): copying the batch's examples out of the data set is a tenth of
// an MLP step that the worker would otherwise spend before its forward. Into the host buffers;
// uploaded into the model too when `model` is set (--overlap's pull, whose forward starts on it
// as the parameters arrive, and which is not used when the model's buffers are needed after
// the push: an evaluation uploads its own batches).
struct GatherAhead final : PsClient::WhileWaiting {
  BatchSource* source = nullptr;
  int batch = 0;
  std::span<float> images;
  std::span<int32_t> labels;
  Model* model = nullptr;
  bool gathered = false;

  void run() override {
    source->next(batch, images, labels);
    if (model != nullptr) model->upload_batch(images, labels, batch);
    gathered = true;
  }
};

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

namespace {

// One worker's run, in the order run_worker_task calls its phases: prepare (data, backend,
// model, placement), join (connect, HELLO, the chief's INIT), train (the loop), finish (the
// chief's final pull, DONE, evaluation). Every phase reports through `sink_`.
//
// The chief's duties (periodic checkpoints, evaluation during and after training, the final
// checkpoint) pass to the lowest live worker when the chief is lost: every other worker asks
// PS 0 about the workers every kChiefWatchEvery, and the one with the lowest index among those
// CONNECTED acts as the chief while worker 0 is LOST; it hands the duties back when worker 0
// is CONNECTED again (restarted). INIT stays the chief's alone (the variables exist by then).
class WorkerRun {
 public:
  WorkerRun(const WorkerTaskOptions& o, TrainingSink& user_sink)
      : o_(o),
        sink_({&user_sink, &summary_}),
        num_workers_(static_cast<int>(o.cluster.workers.size())),
        num_ps_(static_cast<int>(o.cluster.ps.size())),
        chief_(o.task_index == 0),
        acting_chief_(chief_) {}

  Status prepare();
  Status join();
  Status train();
  Status finish();
  WorkerTaskSummary summary() const;
  // The chief's evaluation of the validation split and the test set at global step `step`.
  void evaluate_splits(int64_t step);
  bool stop_requested() const { return o_.stop != nullptr && o_.stop->load() != 0; }

 private:
  int replicas() const {
    return o_.replicas_to_aggregate > 0 ? o_.replicas_to_aggregate : num_workers_;
  }
  // A worker other than the chief: takes the chief's duties over while the chief is lost and
  // this is the lowest live worker, hands them back when the chief is back (see above).
  // `now`: ask even if the last look was less than kChiefWatchEvery ago.
  void watch_chief(bool now = false);
  // After training, a worker other than the chief: waits until the chief is DONE, or LOST
  // (then the lowest live worker takes its duties over), at most the reply timeout + 2 s.
  // A chief that died in the last seconds of training is thus still replaced.
  void wait_for_chief();

  const WorkerTaskOptions& o_;
  SummarySink summary_;
  SinkList sink_;
  const int num_workers_;
  const int num_ps_;
  const bool chief_;
  bool acting_chief_;  // the chief, or the worker standing in for a lost one
  std::chrono::steady_clock::time_point next_chief_watch_{};
  JobTrainingConfig job_config_;  // for a checkpointer made when taking the duties over

  TrainTestData data_;
  BackendChoice backend_;
  ModelOptions model_options_;
  std::unique_ptr<Model> model_;
  Placement placement_;
  zmq::context_t ctx_{kIoThreads};
  std::unique_ptr<PsClient> client_;                 // after ctx_: closed before the context
  std::unique_ptr<ChiefCheckpointer> checkpointer_;  // chief with --checkpoint_dir
  Tensor params_;                                    // host copy of the pulled parameters
  int64_t global_ = 0;
  int64_t rejected_ = 0;
};

Status WorkerRun::prepare() {
  if (o_.sync_replicas && replicas() > num_workers_) {
    return invalid_argument("--replicas_to_aggregate=" + std::to_string(replicas()) +
                            " is more than the " + std::to_string(num_workers_) +
                            " workers of the cluster");
  }
  PSTRAIN_ASSIGN_OR_RETURN(data_, load_data_dir(o_.train.data_dir));
  PSTRAIN_RETURN_IF_ERROR(hold_out_validation(data_, o_.train.validation_size));
  PSTRAIN_ASSIGN_OR_RETURN(
      backend_,
      select_backend(o_.train.num_gpus, o_.device_slot >= 0 ? o_.device_slot : o_.task_index,
                     o_.train.tf32, o_.train.cpu_threads));
  if (!backend_.warning.empty()) PSTRAIN_LOG(WARNING) << backend_.warning;
  model_options_ = o_.train.model;
  model_options_.image_rows = data_.train.rows;
  model_options_.image_cols = data_.train.cols;
  PSTRAIN_ASSIGN_OR_RETURN(model_, Model::create(model_options_, *backend_.ops));
  placement_ = place_variables(model_->variables(), num_ps_);
  return {};
}

Status WorkerRun::join() {
  const uint64_t layout = model_layout_hash(placement_, model_options_.name);
  ClientOptions co = o_.client;
  co.worker = o_.task_index;
  co.job_id = o_.job_id;
  co.stop = o_.stop;  // a signal ends a wait for a silent PS (--ps_restart_timeout_s) at once
  // The threads that connecting starts (ZeroMQ's I/O threads) move messages: they ask for short
  // time slices so that a reply is taken while a worker on the same cores computes; this
  // thread, which computes, goes back to the default (runtime/base/sched.h).
  const Status short_slices = request_time_slice(kMessageThreadSlice);
  Result<std::unique_ptr<PsClient>> connected =
      PsClient::connect(ctx_, o_.cluster.ps, placement_, co);
  if (short_slices.ok()) {
    const Status back = request_time_slice(std::chrono::nanoseconds(0));
    if (!back.ok()) PSTRAIN_LOG(WARNING) << "the worker's time slice: " << back.message();
  }
  PSTRAIN_ASSIGN_OR_RETURN(client_, std::move(connected));
  PSTRAIN_LOG(INFO) << "worker " << o_.task_index << ": its message threads "
                    << (short_slices.ok()
                            ? "ask for " + std::to_string(kMessageThreadSlice.count()) +
                                  " us time slices, the computing ones keep the default"
                            : "keep the kernel's default time slices: " + short_slices.message());
  PSTRAIN_LOG(INFO) << "worker " << o_.task_index << (chief_ ? " (chief)" : "") << ": "
                    << model_options_.name << " with " << model_->num_parameters()
                    << " parameters in " << placement_.chunks.size() << " chunks over " << num_ps_
                    << " ps; " << backend_.ops->description()
                    << "; waiting for the parameter servers";
  PSTRAIN_ASSIGN_OR_RETURN(bool initialized, client_->hello(layout));
  client_->start_heartbeats();
  job_config_ = JobTrainingConfig{.model = model_options_.name,
                                  .optimizer = o_.train.optimizer,
                                  .sync_replicas = o_.sync_replicas,
                                  .replicas_to_aggregate = replicas(),
                                  .staleness = o_.sync_replicas ? 0 : o_.staleness,
                                  .train_steps = o_.train.train_steps,
                                  .num_workers = num_workers_,
                                  .layout_hash = layout};
  if (chief_ && !initialized) {
    PSTRAIN_RETURN_IF_ERROR(client_->init(job_config_, model_->initial_parameters(o_.train.seed)));
    PSTRAIN_LOG(INFO) << "chief initialised the variables on " << num_ps_ << " ps";
  }
  if (chief_ && o_.train.checkpoint.enabled()) {
    checkpointer_ = std::make_unique<ChiefCheckpointer>(o_.train.checkpoint, *client_, placement_,
                                                        model_->variables(), job_config_);
  }
  return {};
}

void WorkerRun::watch_chief(bool now_anyway) {
  constexpr auto kChiefWatchEvery = std::chrono::seconds(1);
  if (chief_ || num_workers_ < 2) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_chief_watch_ && !now_anyway) return;
  next_chief_watch_ = now + kChiefWatchEvery;
  Result<wire::PsStats> st = client_->status(0);
  if (!st.ok() || st->workers_size() != num_workers_) return;  // asked again later
  const auto state = [&](int i) { return st->workers(i).state(); };
  int lowest_live = -1;
  for (int i = 0; i < num_workers_; ++i) {
    if (state(i) == wire::PsWorker::CONNECTED) {
      lowest_live = i;
      break;
    }
  }
  const bool chief_lost = state(0) == wire::PsWorker::LOST;
  if (!acting_chief_ && chief_lost && lowest_live == o_.task_index) {
    acting_chief_ = true;
    PSTRAIN_LOG(WARNING) << "worker " << o_.task_index
                         << " takes over the chief's duties (worker 0 was lost): "
                         << (o_.train.checkpoint.enabled() ? "checkpoints, " : "")
                         << "evaluation and the final summary";
    if (o_.train.checkpoint.enabled()) {
      checkpointer_ = std::make_unique<ChiefCheckpointer>(o_.train.checkpoint, *client_, placement_,
                                                          model_->variables(), job_config_);
    }
  } else if (acting_chief_ && state(0) == wire::PsWorker::CONNECTED) {
    acting_chief_ = false;
    checkpointer_.reset();
    PSTRAIN_LOG(INFO) << "worker " << o_.task_index
                      << " hands the chief's duties back: worker 0 is back";
  }
}

Status WorkerRun::train() {
  Ops& ops = *backend_.ops;
  const int64_t count = model_->num_parameters();
  params_ = ops.alloc_host({count});
  // One PS through shared memory (the main job on one machine) and the CPU backend: backward
  // writes the gradients into the segment's request region and the PS writes the parameters
  // into its reply region, so the client copies neither (ps/client.h, flat_in_shm()).
  if (const PsClient::FlatInShm shm = client_->flat_in_shm();
      !shm.gradients.empty() && model_->gradients().device() == Device::kCpu) {
    const auto view = [&](std::span<float> s) {
      return Tensor(Device::kCpu, DType::kFloat32, {count},
                    std::shared_ptr<void>(shm.owner, s.data()));
    };
    PSTRAIN_RETURN_IF_ERROR(model_->use_gradient_buffer(view(shm.gradients)));
    params_ = view(shm.parameters);
    PSTRAIN_LOG(INFO) << "worker " << o_.task_index
                      << ": gradients and parameters live in the shared memory of the PS (no copy)";
  }
  // The gradients pushed: the model's own buffer where it is host memory (the CPU backend:
  // no copy), a pinned host copy of it otherwise.
  Tensor grads =
      model_->gradients().device() == Device::kCpu ? model_->gradients() : ops.alloc_host({count});
  const bool grads_are_the_models = grads.raw() == model_->gradients().raw();
  // --overlap: backward tells which layers' gradients are final, and they go to the servers
  // that they travel to (TCP, the Unix socket) while backward computes the layers before.
  OverlapPush parts;
  bool overlap = o_.overlap && grads_are_the_models;
  if (overlap) {
    bool any_travels = false;
    for (int i = 0; i < num_ps_; ++i) any_travels |= client_->transport_of(i) != Transport::kShm;
    overlap = any_travels;
  }
  if (overlap) {
    PSTRAIN_LOG(INFO) << "worker " << o_.task_index << ": sends each layer's gradients ("
                      << o_.client.min_push_part_bytes / 1024
                      << " KiB or more at a time) while backward computes the layers before "
                         "(--overlap)";
    PSTRAIN_LOG(INFO) << "worker " << o_.task_index
                      << ": starts each step's forward on the first layers' parameters while the "
                         "rest arrive (--overlap; not on steps after which it evaluates or writes "
                         "TensorBoard histograms)";
  }
  const int batch = o_.train.batch_size;
  Tensor images = ops.alloc_host({batch, data_.train.pixels()});
  Tensor labels = ops.alloc_host({batch}, DType::kInt32);
  BatchSource source(data_.train, o_.task_index, num_workers_, o_.train.seed);
  if (source.shard_size() == 0) {
    return invalid_argument("the training set in " + o_.train.data_dir + " has " +
                            std::to_string(data_.train.count) + " examples, fewer than the " +
                            std::to_string(num_workers_) + " workers: worker " +
                            std::to_string(o_.task_index) + " has none to train on");
  }
  const std::span<int32_t> label_span(labels.i32(), static_cast<size_t>(batch));
  GatherAhead gather;
  gather.source = &source;
  gather.batch = batch;
  gather.images = images.host_f32();
  gather.labels = label_span;

  RecentMean recent;
  // The same vectors every step (the steady state allocates nothing: client.h).
  PsSteps min_steps(static_cast<size_t>(num_ps_), 0);
  PsSteps steps(static_cast<size_t>(num_ps_), 0);
  PsSteps next_steps(static_cast<size_t>(num_ps_), 0);
  // --overlap, the pull's half: the next batch is uploaded once the push is out, and forward
  // runs on it layer by layer as the parameters come (worker/overlap_pull.h).
  OverlapPull ahead;
  bool batch_uploaded = false;
  if (overlap) {
    parts.client = client_.get();
    parts.grads = grads.host_f32();
    parts.steps = &steps;
    parts.owner = grads.memory();
    ahead.model = model_.get();
    ahead.pulled = &params_;
    ahead.batch = batch;
  }
  bool prefetched = false;  // params_ holds the next step's parameters, served at next_steps
  int64_t local_steps = 0;
  TrainingBegin begin;
  begin.model = model_options_.name;
  begin.backend = ops.description();
  begin.num_parameters = count;
  begin.train_steps = o_.train.train_steps;
  begin.batch_size = batch;
  begin.task_index = o_.task_index;
  begin.chief = chief_;
  begin.variables = model_->variables();
  begin.optimizer = o_.train.optimizer;
  begin.batches_per_global_step = o_.sync_replicas ? replicas() : 1;
  begin.read_tensors = [&](std::vector<float>* p, std::vector<float>* g) {
    // The parameters this step computed on (the model's: params_ may hold the next step's
    // already, pulled along with the push) and its gradient (on the host).
    p->resize(static_cast<size_t>(count));
    ops.copy_to_host(p->data(), model_->parameters().raw(), p->size() * sizeof(float));
    ops.synchronize();
    const std::span<const float> gradient = grads.host_f32();
    g->assign(gradient.begin(), gradient.end());
  };
  sink_.begin(begin);
  const auto start = Clock::now();
  bool stopped = false;
  int64_t last_eval = 0;
  while (true) {
    if (stop_requested()) {
      stopped = true;
      break;
    }
    // The parameters came with the last push's answer (push_pull), or are pulled now.
    if (prefetched) {
      std::swap(steps, next_steps);
      prefetched = false;
    } else {
      Result<PsSteps> pulled = client_->pull(params_.host_f32(), min_steps);
      if (!pulled.ok() && stop_requested()) {
        stopped = true;
        break;
      }
      PSTRAIN_RETURN_IF_ERROR(pulled.status());
      steps = *std::move(pulled);
    }
    // Training is over once every PS reached the last step. The PS tasks' steps may differ
    // by one (each completes a step on its own gradients), and one still a step behind needs
    // this worker's gradient: stopping as soon as PS 0 is done could leave it short of fresh
    // gradients in sync mode, with every worker gone.
    global_ = *std::min_element(steps.begin(), steps.end());
    if (local_steps == 0 && global_ > 0) {
      // Not only after a restore: in an asynchronous job the workers that start later find
      // the others' steps.
      PSTRAIN_LOG(INFO) << "worker " << o_.task_index << ": joins at global step " << global_
                        << " (the parameter servers restored a checkpoint, or other workers "
                           "trained before this one)";
    }
    watch_chief();
    if (checkpointer_) checkpointer_->after_step(steps);
    if (global_ >= o_.train.train_steps) break;
    // What the pull's overlap copied is in the model already (0 without it).
    const int64_t have = std::exchange(ahead.copied, 0);
    ops.copy_to_device(model_->parameters().f32() + have, params_.f32() + have,
                       static_cast<size_t>(count - have) * sizeof(float));
    if (!std::exchange(batch_uploaded, false)) {
      // (Gathered during the last push's wait, unless it was the first step.)
      if (!std::exchange(gather.gathered, false)) {
        source.next(batch, images.host_f32(), label_span);
      }
      model_->upload_batch(images.host_f32(), label_span, batch);
    }
    model_->forward_backward(batch, overlap ? &parts : nullptr);
    if (!grads_are_the_models) {
      ops.copy_to_host(grads.raw(), model_->gradients().raw(), grads.bytes());
    }
    const float loss = model_->read_loss();  // synchronizes: grads are on the host now
    if (!std::isfinite(loss)) {
      return failed_precondition("training diverged: loss is " + std::to_string(loss) +
                                 " at global step " + std::to_string(global_) +
                                 "; lower --learning_rate");
    }
    // Sync: next, each PS's step after the one it served (their steps may differ by one).
    if (o_.sync_replicas) {
      for (size_t i = 0; i < steps.size(); ++i) min_steps[i] = steps[i] + 1;
    }
    // The pull's overlap, unless this step's parameters are still needed after the push (the
    // chief's evaluation, TensorBoard's histograms): the next batch goes up once the push is
    // out, and forward starts on it as the parameters arrive.
    const bool pull_ahead =
        overlap && !(acting_chief_ && o_.train.eval_every > 0) && !sink_.reads_tensors();
    gather.model = pull_ahead ? model_.get() : nullptr;
    // The push, and the next step's pull in the same round trip; the next batch is gathered
    // while the servers compute.
    Result<PushResult> push_result =
        client_->push_pull(grads.host_f32(), steps, grads.memory(), params_.host_f32(), min_steps,
                           next_steps, pull_ahead ? &ahead : nullptr, &gather);
    if (!push_result.ok() && stop_requested()) {
      stopped = true;
      break;
    }
    PSTRAIN_ASSIGN_OR_RETURN(PushResult pushed, std::move(push_result));
    if (pull_ahead && gather.gathered) {
      batch_uploaded = true;
      gather.gathered = false;
    }
    prefetched = pushed.pulled;
    // Not pulled whole: pull() fetches them again, and forward starts afresh.
    if (pull_ahead && !pushed.pulled) ahead.restarted();
    ++local_steps;
    if (!pushed.accepted) ++rejected_;
    global_ = pushed.global_step;
    recent.add(loss);
    const double secs = seconds_since(start);
    sink_.step({.local_step = local_steps,
                .global_step = global_,
                .loss = loss,
                .mean_loss = recent.mean(),
                .examples_per_second = static_cast<double>(local_steps) * batch / secs,
                .elapsed_seconds = secs,
                .bytes_sent = client_->bytes_sent(),
                .bytes_received = client_->bytes_received(),
                .gradients_rejected = rejected_});
    if (acting_chief_ && o_.train.eval_every > 0 && global_ < o_.train.train_steps &&
        global_ / o_.train.eval_every > last_eval / o_.train.eval_every) {
      // The parameters this step computed on are still the model's: evaluate them.
      last_eval = global_;
      evaluate_splits(*std::min_element(steps.begin(), steps.end()));
    }
  }
  const double train_seconds = seconds_since(start);
  sink_.training_end(
      {.local_steps = local_steps,
       .global_step = global_,
       .train_seconds = train_seconds,
       .examples_per_second =
           train_seconds > 0 ? static_cast<double>(local_steps) * batch / train_seconds : 0.0,
       .final_loss = recent.mean()});
  if (stopped) {
    client_->set_stop(nullptr);  // the final save waits for its replies
    if (checkpointer_) {
      // A scheduler's preemption: keep what was learned (each PS's current state).
      Status st = checkpointer_->save_final(global_);
      if (!st.ok()) PSTRAIN_LOG(WARNING) << "no final checkpoint: " << st.message();
    }
    client_->stop_heartbeats();
    return cancelled("training stopped on request at global step " + std::to_string(global_) +
                     " after " + std::to_string(local_steps) + " local steps");
  }
  return {};
}

void WorkerRun::wait_for_chief() {
  if (chief_ || num_workers_ < 2) return;
  const auto deadline =
      std::chrono::steady_clock::now() + o_.client.reply_timeout + std::chrono::seconds(2);
  while (!acting_chief_ && !stop_requested() && std::chrono::steady_clock::now() < deadline) {
    Result<wire::PsStats> st = client_->status(0);
    if (st.ok() && st->workers_size() == num_workers_) {
      const auto chief = st->workers(0).state();
      if (chief == wire::PsWorker::DONE) return;
      if (chief == wire::PsWorker::LOST) {
        watch_chief(/*now=*/true);
        return;
      }
    }
    // Polling another process's state, bounded by the deadline above.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Status WorkerRun::finish() {
  Ops& ops = *backend_.ops;
  int64_t final_step = global_;
  wait_for_chief();
  if (acting_chief_) {
    // Wait until every worker's last gradient is in, then evaluate those parameters.
    PSTRAIN_ASSIGN_OR_RETURN(PsSteps final_steps,
                             client_->pull(params_.host_f32(), o_.train.train_steps));
    final_step = final_steps[0];
    ops.copy_to_device(model_->parameters().raw(), params_.raw(), params_.bytes());
    if (checkpointer_) {
      Status st = checkpointer_->save_final(final_step);
      if (!st.ok()) PSTRAIN_LOG(WARNING) << "no final checkpoint: " << st.message();
    }
  }
  Status done = client_->done();
  client_->stop_heartbeats();
  if (!done.ok()) {
    PSTRAIN_LOG(WARNING) << "could not tell every ps this worker is done: " << done.message();
  }
  if (acting_chief_) {
    // mnist_replica's validation cross-entropy first, then the test set.
    if (data_.validation.count > 0) {
      sink_.evaluation(
          evaluate_split(*model_, data_.validation, "validation", o_.train.eval_batch, final_step));
    }
    sink_.evaluation(evaluate_test_set(*model_, data_.test, o_.train.eval_batch, final_step));
  }
  sink_.finish();
  return {};
}

void WorkerRun::evaluate_splits(int64_t step) {
  // mnist_replica's validation cross-entropy first, then the test set.
  if (data_.validation.count > 0) {
    sink_.evaluation(
        evaluate_split(*model_, data_.validation, "validation", o_.train.eval_batch, step));
  }
  sink_.evaluation(evaluate_test_set(*model_, data_.test, o_.train.eval_batch, step));
}

WorkerTaskSummary WorkerRun::summary() const {
  const TrainingRecord& r = summary_.record();
  WorkerTaskSummary s;
  s.task_index = o_.task_index;
  s.backend = backend_.ops->description();
  s.local_steps = r.local_steps;
  s.global_step = r.global_step;
  s.rejected_gradients = rejected_;
  s.final_loss = r.final_loss;
  s.train_seconds = r.train_seconds;
  s.examples_per_second = r.examples_per_second;
  s.evaluated = r.test.has_value();
  s.test_accuracy = r.test ? r.test->accuracy() : 0.0;
  s.bytes_sent = client_->bytes_sent();
  s.bytes_received = client_->bytes_received();
  return s;
}

}  // namespace

Result<WorkerTaskSummary> run_worker_task(const WorkerTaskOptions& o, TrainingSink& sink) {
  PSTRAIN_RETURN_IF_ERROR(validate(o.train));
  if (o.task_index >= 0 && o.task_index < static_cast<int>(o.cluster.workers.size())) {
    std::string warning;
    PSTRAIN_RETURN_IF_ERROR(
        check_own_address(o.cluster.workers[static_cast<size_t>(o.task_index)].host,
                          "worker " + std::to_string(o.task_index), &warning));
    if (!warning.empty()) PSTRAIN_LOG(WARNING) << warning;
  }
  WorkerRun run(o, sink);
  PSTRAIN_RETURN_IF_ERROR(run.prepare());
  PSTRAIN_RETURN_IF_ERROR(run.join());
  PSTRAIN_RETURN_IF_ERROR(run.train());
  PSTRAIN_RETURN_IF_ERROR(run.finish());
  return run.summary();
}

}  // namespace pstrain
