#include "worker/tensorboard_sink.h"

#include <span>
#include <utility>

#include "runtime/base/log.h"

namespace pstrain {

TensorBoardSink::TensorBoardSink(std::string log_dir, bool per_worker, int summary_every)
    : log_dir_(std::move(log_dir)), per_worker_(per_worker), summary_every_(summary_every) {}

bool TensorBoardSink::due(int64_t local_step) const {
  return local_step == 1 || (summary_every_ > 0 && local_step % summary_every_ == 0);
}

TensorBoardSink::~TensorBoardSink() = default;

void TensorBoardSink::failed(const Status& st) {
  PSTRAIN_LOG(WARNING) << "TensorBoard events stop: " << st.message();
  job_.reset();
  worker_.reset();
}

void TensorBoardSink::begin(const TrainingBegin& r) {
  begin_ = r;
  if (r.chief) {
    auto w = events::EventWriter::open(log_dir_);
    if (!w.ok()) return failed(w.status());
    job_ = std::move(w).value();
    PSTRAIN_LOG(INFO) << "TensorBoard events: " << job_->path();
  }
  if (per_worker_) {
    auto w = events::EventWriter::open(log_dir_ + "/worker-" + std::to_string(r.task_index));
    if (!w.ok()) return failed(w.status());
    worker_ = std::move(w).value();
  }
}

void TensorBoardSink::write_scalars(const StepReport& r) {
  if (worker_) {
    Status st = worker_->scalar("loss", r.global_step, r.loss);
    if (st.ok()) st = worker_->scalar("examples/sec", r.global_step, r.examples_per_second);
    if (!st.ok()) return failed(st);
  }
  if (job_) {
    const double dt = r.elapsed_seconds - rate_seconds_;
    const double steps_per_second =
        dt > 0 ? static_cast<double>(r.global_step - rate_step_) / dt : 0.0;
    rate_step_ = r.global_step;
    rate_seconds_ = r.elapsed_seconds;
    Status st = job_->scalar("loss", r.global_step, r.mean_loss);
    if (st.ok())
      st = job_->scalar("learning_rate", r.global_step,
                        learning_rate_at(begin_.optimizer, r.global_step));
    if (st.ok()) st = job_->scalar("global_step/sec", r.global_step, steps_per_second);
    if (st.ok()) {
      st = job_->scalar("examples/sec", r.global_step,
                        steps_per_second * begin_.batch_size * begin_.batches_per_global_step);
    }
    if (!st.ok()) return failed(st);
  }
}

void TensorBoardSink::write_histograms(int64_t global_step) {
  if (!job_ || !begin_.read_tensors || global_step == last_histogram_step_) return;
  last_histogram_step_ = global_step;
  begin_.read_tensors(&parameters_, &gradients_);
  for (const VariableSpec& v : begin_.variables) {
    const auto offset = static_cast<size_t>(v.offset);
    const auto n = static_cast<size_t>(v.numel());
    if (offset + n > parameters_.size() || offset + n > gradients_.size()) continue;
    auto written = job_->histogram(v.name, global_step,
                                   std::span<const float>(parameters_).subspan(offset, n));
    if (written.ok()) {
      written = job_->histogram("gradients/" + v.name, global_step,
                                std::span<const float>(gradients_).subspan(offset, n));
    }
    if (!written.ok()) return failed(written.status());
  }
}

void TensorBoardSink::step(const StepReport& r) {
  if (!job_ && !worker_) return;
  last_ = r;
  have_last_ = true;
  if (due(r.local_step)) {
    write_scalars(r);
    write_histograms(r.global_step);
  }
}

void TensorBoardSink::training_end(const TrainingEnd&) {
  if (!have_last_) return;
  if (!due(last_.local_step)) {
    write_scalars(last_);
    write_histograms(last_.global_step);
  }
}

void TensorBoardSink::evaluation(const EvalReport& r) {
  if (!job_) return;
  Status st = job_->scalar("accuracy/" + r.split, r.global_step, r.accuracy());
  if (st.ok()) st = job_->scalar("cross_entropy/" + r.split, r.global_step, r.cross_entropy);
  if (!st.ok()) failed(st);
}

}  // namespace pstrain
