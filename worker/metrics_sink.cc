#include "worker/metrics_sink.h"

#include <utility>

namespace pstrain {

namespace {

prometheus::Counter* counter(prometheus::Registry& r, const char* name, const char* help,
                             const std::map<std::string, std::string>& labels) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(labels);
}

prometheus::Gauge* gauge(prometheus::Registry& r, const char* name, const char* help,
                         const std::map<std::string, std::string>& labels) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add(labels);
}

}  // namespace

MetricsSink::MetricsSink(const std::string& role, int task)
    : registry_(std::make_shared<prometheus::Registry>()),
      labels_{{"role", role}, {"task", std::to_string(task)}} {
  prometheus::Registry& r = *registry_;
  steps_ =
      counter(r, "pstrain_worker_steps_total", "Training steps this process computed.", labels_);
  examples_ =
      counter(r, "pstrain_worker_examples_total", "Training examples this process used.", labels_);
  global_step_ = gauge(r, "pstrain_worker_global_step", "The job's global step.", labels_);
  train_steps_ = gauge(r, "pstrain_worker_train_steps", "Global steps the job trains.", labels_);
  loss_ = gauge(r, "pstrain_worker_loss", "Training loss of the last step.", labels_);
  mean_loss_ =
      gauge(r, "pstrain_worker_mean_loss", "Mean training loss of the recent steps.", labels_);
  examples_per_second_ = gauge(r, "pstrain_worker_examples_per_second",
                               "This process's training examples per second.", labels_);
  sent_bytes_ = counter(r, "pstrain_worker_sent_bytes_total",
                        "Bytes sent to the parameter servers.", labels_);
  received_bytes_ = counter(r, "pstrain_worker_received_bytes_total",
                            "Bytes received from the parameter servers.", labels_);
  rejected_ = counter(r, "pstrain_worker_gradients_rejected_total",
                      "Gradients a parameter server dropped as stale or late.", labels_);
  step_seconds_ = &prometheus::BuildHistogram()
                       .Name("pstrain_worker_step_seconds")
                       .Help("Wall time of one training step (pull, compute, push).")
                       .Register(r)
                       .Add(labels_, prometheus::Histogram::BucketBoundaries{
                                         0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2,
                                         0.5, 1, 2, 5, 10});
  accuracy_ = &prometheus::BuildGauge()
                   .Name("pstrain_worker_accuracy")
                   .Help("Accuracy of the last evaluation, by data split.")
                   .Register(r);
}

MetricsSink::~MetricsSink() = default;

std::shared_ptr<prometheus::Collectable> MetricsSink::collectable() const { return registry_; }

void MetricsSink::begin(const TrainingBegin& r) {
  batch_size_ = r.batch_size;
  train_steps_->Set(static_cast<double>(r.train_steps));
}

void MetricsSink::step(const StepReport& r) {
  steps_->Increment();
  examples_->Increment(batch_size_);
  global_step_->Set(static_cast<double>(r.global_step));
  loss_->Set(r.loss);
  mean_loss_->Set(r.mean_loss);
  examples_per_second_->Set(r.examples_per_second);
  if (r.bytes_sent >= last_sent_)
    sent_bytes_->Increment(static_cast<double>(r.bytes_sent - last_sent_));
  if (r.bytes_received >= last_received_) {
    received_bytes_->Increment(static_cast<double>(r.bytes_received - last_received_));
  }
  if (r.gradients_rejected >= last_rejected_) {
    rejected_->Increment(static_cast<double>(r.gradients_rejected - last_rejected_));
  }
  last_sent_ = r.bytes_sent;
  last_received_ = r.bytes_received;
  last_rejected_ = r.gradients_rejected;
  if (r.elapsed_seconds >= last_elapsed_) step_seconds_->Observe(r.elapsed_seconds - last_elapsed_);
  last_elapsed_ = r.elapsed_seconds;
}

void MetricsSink::evaluation(const EvalReport& r) {
  auto labels = labels_;
  labels["split"] = r.split;
  accuracy_->Add(labels).Set(r.accuracy());
}

}  // namespace pstrain
