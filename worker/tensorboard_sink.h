// TensorBoardSink: a training loop's TensorBoard event files (runtime/events/event_writer.h),
// as tf.train.MonitoredTrainingSession's summary hooks write them for mnist_replica's jobs.
//
// Contract
// - The job's events go to `log_dir` itself, written by the chief (begin().chief) and by
//   `pstrain train`: every `summary_every` local steps (TensorFlow's save_summaries_steps; 0:
//   none between), at the first and at the last, the scalars `loss` (the recent mean training
//   loss), `learning_rate`, `global_step/sec` and `examples/sec` (global steps/s x batch x
//   batches per global step), and a histogram of every variable (its name: `hid_w`, ...) and of
//   its gradient (`gradients/<name>`); after each evaluation `accuracy/<split>` and
//   `cross_entropy/<split>` (`test`, `validation`).
// - With `per_worker` (distributed workers), each worker also writes its own scalars into
//   `log_dir/worker-<index>/`: `loss` (this step's) and `examples/sec` (this process's), at the
//   same steps.
// - Files are opened at begin() and each event is flushed as written, so TensorBoard shows a
//   running job. A write error (a full disk) is logged once and the sink goes quiet: losing a
//   summary never stops training.
// Thread-safety: the training loop's thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/events/event_writer.h"
#include "worker/training_sink.h"

namespace pstrain {

class TensorBoardSink : public TrainingSink {
 public:
  TensorBoardSink(std::string log_dir, bool per_worker, int summary_every);
  ~TensorBoardSink() override;

  void begin(const TrainingBegin& r) override;
  void step(const StepReport& r) override;
  void training_end(const TrainingEnd& r) override;
  void evaluation(const EvalReport& r) override;
  // The job's histograms (the chief's, `pstrain train`'s) read the tensors.
  bool reads_tensors() const override { return job_ != nullptr; }

 private:
  void write_scalars(const StepReport& r);
  void write_histograms(int64_t global_step);
  bool due(int64_t local_step) const;
  // Logs the first failure and closes the writers.
  void failed(const Status& st);

  std::string log_dir_;
  bool per_worker_;
  int summary_every_;
  TrainingBegin begin_;
  std::unique_ptr<events::EventWriter> job_;     // the chief's / train's: log_dir
  std::unique_ptr<events::EventWriter> worker_;  // log_dir/worker-<i>
  StepReport last_;
  bool have_last_ = false;
  int64_t last_histogram_step_ = -1;
  int64_t rate_step_ = 0;    // global step at the last scalars
  double rate_seconds_ = 0;  // elapsed seconds at the last scalars
  std::vector<float> parameters_, gradients_;
};

}  // namespace pstrain
