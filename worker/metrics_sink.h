// MetricsSink: a training loop's Prometheus metrics (served by runtime/metrics' MetricsServer
// when a worker or `pstrain train` is given --metrics_port).
//
// Contract: the sink updates prometheus-cpp counters, gauges and a histogram as reports arrive,
// so a scrape from the metrics server's threads always reads consistent values without
// touching the loop. Series (labelled role="worker"|"train", task="<index>"):
//   pstrain_worker_steps_total, pstrain_worker_examples_total, pstrain_worker_global_step,
//   pstrain_worker_train_steps, pstrain_worker_loss (this step), pstrain_worker_mean_loss
//   (recent mean), pstrain_worker_examples_per_second, pstrain_worker_sent_bytes_total,
//   pstrain_worker_received_bytes_total, pstrain_worker_gradients_rejected_total,
//   pstrain_worker_accuracy{split}, and the histogram pstrain_worker_step_seconds.
// Thread-safety: the reports come from the training loop's thread; prometheus-cpp's metrics are
// safe to read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "worker/training_sink.h"

namespace pstrain {

class MetricsSink : public TrainingSink {
 public:
  // role: "worker" or "train"; task: the worker's index.
  MetricsSink(const std::string& role, int task);
  ~MetricsSink() override;
  std::shared_ptr<prometheus::Collectable> collectable() const;

  void begin(const TrainingBegin& r) override;
  void step(const StepReport& r) override;
  void evaluation(const EvalReport& r) override;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::map<std::string, std::string> labels_;
  prometheus::Counter* steps_;
  prometheus::Counter* examples_;
  prometheus::Gauge* global_step_;
  prometheus::Gauge* train_steps_;
  prometheus::Gauge* loss_;
  prometheus::Gauge* mean_loss_;
  prometheus::Gauge* examples_per_second_;
  prometheus::Counter* sent_bytes_;
  prometheus::Counter* received_bytes_;
  prometheus::Counter* rejected_;
  prometheus::Histogram* step_seconds_;
  prometheus::Family<prometheus::Gauge>* accuracy_;
  int batch_size_ = 0;
  double last_elapsed_ = 0;
  uint64_t last_sent_ = 0;
  uint64_t last_received_ = 0;
  int64_t last_rejected_ = 0;
};

}  // namespace pstrain
