// Prometheus metrics over HTTP: what `--metrics_port` serves on every task.
//
// Contract
// - MetricsServer::start(host, port) listens on host:port (port 0: a free port, read it back
//   with port()) and answers GET /metrics in Prometheus's text exposition format, from its own
//   threads (prometheus-cpp's Exposer on civetweb). An address that cannot be bound is
//   kInvalidArgument naming it and the flag (--metrics_port). Destroying it stops serving.
// - What it serves are Collectables added with add(): prometheus::Registry objects holding
//   counters, gauges and histograms updated as things happen, and SnapshotCollectable objects
//   whose families a function builds at each scrape from a snapshot the task published.
// - Names follow Prometheus's conventions (pstrain_<role>_<what>[_total|_seconds|_bytes]);
//   every series carries the task's constant labels (role, task).
// - family()/sample() build families for SnapshotCollectable functions in one place.
// Thread-safety: add() and the scrape threads may run concurrently; a SnapshotCollectable's
// function runs on a scrape thread and must do its own locking (see PublishedSnapshot).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "runtime/base/status.h"

namespace prometheus {
class Exposer;
}

namespace pstrain::metrics {

using Labels = std::map<std::string, std::string>;

class MetricsServer {
 public:
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& host, int port);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }
  // http://host:port/metrics
  std::string url() const;
  // Serves `c` from now on and keeps it alive as long as the server.
  void add(std::shared_ptr<prometheus::Collectable> c);

 private:
  MetricsServer(std::string host, int port, std::unique_ptr<prometheus::Exposer> exposer);
  std::string host_;
  int port_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::mutex mutex_;
  std::vector<std::shared_ptr<prometheus::Collectable>> kept_;
};

// Families computed by `collect` at each scrape.
class SnapshotCollectable : public prometheus::Collectable {
 public:
  using CollectFn = std::function<std::vector<prometheus::MetricFamily>()>;
  explicit SnapshotCollectable(CollectFn collect) : collect_(std::move(collect)) {}
  std::vector<prometheus::MetricFamily> Collect() const override { return collect_(); }

 private:
  CollectFn collect_;
};

// A value one thread publishes and scrape threads read: the latest copy, under a mutex.
template <typename T>
class PublishedSnapshot {
 public:
  void publish(T value) {
    std::lock_guard<std::mutex> lock(mutex_);
    value_ = std::move(value);
  }
  T read() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return value_;
  }

 private:
  mutable std::mutex mutex_;
  T value_{};
};

// An empty family; add samples with sample().
prometheus::MetricFamily family(const std::string& name, const std::string& help,
                                prometheus::MetricType type);
// Appends one sample (a counter's or gauge's value) with `labels` to `f`.
void sample(prometheus::MetricFamily& f, double value, const Labels& labels = {});

}  // namespace pstrain::metrics
