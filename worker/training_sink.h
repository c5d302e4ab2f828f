// TrainingSink: the one interface through which a training loop reports what happens, so the
// loop knows nothing of where reports go. Both loops use it: a distributed worker
// (worker_task.h) and `pstrain train` (local_train.h).
//
// Contract: a loop calls begin() once, step() after every local step, training_end() once when
// the loop stops, evaluation() for every evaluation (zero or more times, after training_end()
// for the final one), and finish() last; a loop that fails part-way stops calling. Every
// report carries values the loop already computed (means, rates), so sinks only format and
// store. Sinks must not throw; a sink that cannot write (a full disk) warns once and carries
// on, since losing a report must not stop training.
//
// Implementations here: the stdout lines of mnist_replica's worker (WorkerLinesSink), the live
// progress line of `pstrain train` (ProgressLineSink), the launcher's status file
// (StatusFileSink, schema in runtime/job/task_env.h), the summary (SummarySink), and a fan-out
// (SinkList); Prometheus metrics are worker/metrics_sink.h, TensorBoard event files
// worker/tensorboard_sink.h. Checkpoint and TensorBoard event writers plug in as further sinks.
// Thread-safety: a sink is called from the training loop's thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/optim.h"
#include "kernels/variable.h"
#include "runtime/base/progress.h"
#include "runtime/job/task_env.h"

namespace pstrain {

struct TrainingBegin {
  std::string model;
  std::string backend;
  int64_t num_parameters = 0;
  int64_t train_steps = 0;  // global steps to train
  int batch_size = 0;
  int task_index = 0;  // the worker's index (0 for `pstrain train`)
  bool chief = true;   // evaluates at the end
  // For sinks that summarise the model (TensorBoard): its variables, the optimizer (its
  // learning rate at a step: learning_rate_at(optimizer, global_step)), the
  // batches one global step aggregates (sync: replicas_to_aggregate; else 1), and a function
  // that copies the current parameters and the last step's gradients to the host (empty
  // function: not available). Called only between step() reports, from the loop's thread.
  std::vector<VariableSpec> variables;
  OptimizerConfig optimizer;
  int batches_per_global_step = 1;
  std::function<void(std::vector<float>* parameters, std::vector<float>* gradients)> read_tensors;
};

struct StepReport {
  int64_t local_step = 0;   // steps this process computed, from 1
  int64_t global_step = 0;  // the job's step after this one was applied (local: = local_step)
  float loss = 0;           // this step's training loss
  double mean_loss = 0;     // mean over the recent steps (RecentMean's window)
  double examples_per_second = 0;  // this process's, since training began
  double elapsed_seconds = 0;      // since training began
  // Distributed workers only (0 in `pstrain train`): totals since the task started.
  uint64_t bytes_sent = 0;         // to the parameter servers
  uint64_t bytes_received = 0;     // from them
  int64_t gradients_rejected = 0;  // pushes a PS dropped as stale or late
};

struct TrainingEnd {
  int64_t local_steps = 0;
  int64_t global_step = 0;
  double train_seconds = 0;
  double examples_per_second = 0;
  double final_loss = 0;  // mean over the last steps (RecentMean's window)
};

struct EvalReport {
  std::string split = "test";  // which data set was evaluated
  int64_t global_step = 0;     // the parameters' step
  int64_t correct = 0;
  int64_t count = 0;
  double cross_entropy = 0;  // mean softmax cross-entropy over the examples
  double accuracy() const {
    return count > 0 ? static_cast<double>(correct) / static_cast<double>(count) : 0.0;
  }
};

class TrainingSink {
 public:
  virtual ~TrainingSink() = default;
  virtual void begin(const TrainingBegin&) {}
  virtual void step(const StepReport&) {}
  virtual void training_end(const TrainingEnd&) {}
  virtual void evaluation(const EvalReport&) {}
  virtual void finish() {}
  // After begin(): true when step() or training_end() may call TrainingBegin::read_tensors
  // (then a loop keeps the parameters the last step computed on until step() returns: the
  // pull's overlap, worker/overlap_pull.h, is off).
  virtual bool reads_tensors() const { return false; }
};

// Passes every report to each sink in order. The sinks must outlive the list.
class SinkList : public TrainingSink {
 public:
  SinkList() = default;
  explicit SinkList(std::vector<TrainingSink*> sinks) : sinks_(std::move(sinks)) {}
  void add(TrainingSink* sink) { sinks_.push_back(sink); }
  void begin(const TrainingBegin& r) override;
  void step(const StepReport& r) override;
  void training_end(const TrainingEnd& r) override;
  void evaluation(const EvalReport& r) override;
  void finish() override;
  bool reads_tensors() const override;

 private:
  std::vector<TrainingSink*> sinks_;
};

// mnist_replica's worker lines on `out`, exactly as mnist_replica.py prints them (%f times are
// seconds since the epoch, as Python's time.time()), flushed as written:
//   "Training begins @ %f"
//   "%f: Worker %d: training step %d done (global step: %d)"   every `log_every` local steps
//   "Training ends @ %f"
//   "Training elapsed time: %f s"
//   "After %d training step(s), validation cross entropy = %g" for a "validation" evaluation
// and pstrain's own lines after them:
//   "Worker %d: %d local steps, global step %d"                 after "Training elapsed time"
//   "After %d training step(s), test accuracy = %.4f (%d/%d)"   for a "test" evaluation
// log_every <= 0 prints no step lines.
class WorkerLinesSink : public TrainingSink {
 public:
  WorkerLinesSink(std::FILE* out, int log_every) : out_(out), log_every_(log_every) {}
  void begin(const TrainingBegin& r) override;
  void step(const StepReport& r) override;
  void training_end(const TrainingEnd& r) override;
  void evaluation(const EvalReport& r) override;

 private:
  std::FILE* out_;
  int log_every_;
  int task_index_ = 0;
};

// `pstrain train`'s live line on `out` ("step 120/200  loss 0.5123  81234 examples/s"): in
// place on a terminal, a line every few seconds in a log (runtime/base/progress.h); ended at
// training_end().
class ProgressLineSink : public TrainingSink {
 public:
  explicit ProgressLineSink(std::FILE* out) : out_(out), line_(out) {}
  void begin(const TrainingBegin& r) override { train_steps_ = r.train_steps; }
  void step(const StepReport& r) override;
  void training_end(const TrainingEnd&) override {
    line_.finish();
    ended_ = true;
  }
  // An evaluation during training (--eval_every) gets a line of its own; the final ones are
  // the command's to print.
  void evaluation(const EvalReport& r) override;

 private:
  std::FILE* out_;
  ProgressLine line_;
  int64_t train_steps_ = 0;
  bool ended_ = false;
};

// Appends the loop's metrics as JSON lines to `path` (MetricsRecord, runtime/job/task_env.h):
// a "step" record at the first local step, every `every` local steps (as TensorBoardSink, so
// the values match its events) and at the last; an "eval" record for each evaluation. The file
// is created (truncated) at begin() and each line is flushed. A write error warns once and the
// sink goes quiet. Empty path: writes nothing.
class MetricsFileSink : public TrainingSink {
 public:
  MetricsFileSink(std::string path, int every) : path_(std::move(path)), every_(every) {}
  ~MetricsFileSink() override;
  void begin(const TrainingBegin& r) override;
  void step(const StepReport& r) override;
  void training_end(const TrainingEnd& r) override;
  void evaluation(const EvalReport& r) override;

 private:
  bool due(int64_t local_step) const {
    return local_step == 1 || (every_ > 0 && local_step % every_ == 0);
  }
  void write_step(const StepReport& r);
  void write(const MetricsRecord& r);

  std::string path_;
  int every_;
  int index_ = 0;
  std::FILE* file_ = nullptr;
  std::optional<StepReport> last_;
  double last_elapsed_ = 0;
};

// Keeps the launcher's status file (runtime/job/task_env.h) up to date: "starting" when
// constructed, "running" with the step, loss and rate at most about once a second,
// "evaluating" after training on the chief, "done" at finish(). A loop that does not finish
// leaves the last state; its caller records the final one with end() ("cancelled" when a
// signal stopped training, "failed" on an error). Empty path: writes nothing.
class StatusFileSink : public TrainingSink {
 public:
  StatusFileSink(std::string path, int task_index, int64_t train_steps);
  void begin(const TrainingBegin& r) override;
  void step(const StepReport& r) override;
  void training_end(const TrainingEnd& r) override;
  void evaluation(const EvalReport& r) override;
  void finish() override;
  // Writes `state` as the final one, with the last figures reported.
  void end(const std::string& state);

 private:
  void write(bool force);

  std::string path_;
  WorkerStatus status_;
  bool chief_ = true;
  std::chrono::steady_clock::time_point last_{};
  bool warned_ = false;
};

// What a training run did, as its summary reports it.
struct TrainingRecord {
  int64_t local_steps = 0;
  int64_t global_step = 0;  // the highest seen (the chief's final evaluation included)
  double final_loss = 0;
  double train_seconds = 0;
  double examples_per_second = 0;
  std::optional<EvalReport> test;  // the last test-set evaluation
};

class SummarySink : public TrainingSink {
 public:
  void step(const StepReport& r) override;
  void training_end(const TrainingEnd& r) override;
  void evaluation(const EvalReport& r) override;
  const TrainingRecord& record() const { return record_; }

 private:
  TrainingRecord record_;
};

}  // namespace pstrain
