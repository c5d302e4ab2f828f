// PsMetrics: a parameter server's Prometheus metrics (served by runtime/metrics' MetricsServer
// when the PS task is given --metrics_port).
//
// Contract
// - The server loop (ps/server.h) publishes a snapshot of its counters and state (the PsStats
//   that STATUS carries, the shard store's drop reasons, messages in and out) at most every
//   100 ms and when it stops, and calls on_step() after every message; scrapes read the latest
//   snapshot, so a scrape never touches the loop's state and costs the loop nothing.
// - Series (every one labelled role="ps", task="<index>"):
//   pstrain_ps_global_step, pstrain_ps_train_steps, pstrain_ps_initialized,
//   pstrain_ps_gradients_applied_total, pstrain_ps_updates_total,
//   pstrain_ps_gradients_dropped_total{reason=stale|duplicate|future|late|non_finite},
//   pstrain_ps_messages_received_total, pstrain_ps_messages_sent_total,
//   pstrain_ps_messages_rejected_total{reason=malformed|foreign|unauthenticated|identity},
//   pstrain_ps_replies_dropped_total (a slow reader's full send queue),
//   pstrain_ps_connections, pstrain_ps_connections_evicted_total (the cap on connections),
//   pstrain_ps_received_bytes_total, pstrain_ps_sent_bytes_total,
//   pstrain_ps_workers{state=not_seen|connected|done|lost}, pstrain_ps_parked_pulls and
//   pstrain_ps_gradients_pending (queue depths), pstrain_ps_replicas_to_aggregate,
//   pstrain_ps_parameter_bytes, per worker pstrain_ps_worker_gradients_total{worker} and
//   pstrain_ps_worker_seconds_since_seen{worker} (-1: never seen), and the histogram
//   pstrain_ps_step_seconds (time between global-step advances).
// Thread-safety: publish() and on_step() from the server's thread; collectables() are read by
// the metrics server's threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include <prometheus/collectable.h>

#include "ps/shard_store.h"
#include "runtime/metrics/metrics.h"
#include "runtime/wire/message.h"

namespace prometheus {
class Histogram;
class Registry;
}  // namespace prometheus

namespace pstrain {

struct PsMetricsSnapshot {
  wire::PsStats stats;
  StoreCounters store;
  uint64_t messages_in = 0;
  uint64_t messages_out = 0;
  uint64_t identity_refused = 0;  // messages of another process for a live worker's index
  uint64_t replies_dropped = 0;   // replies to a connection whose send queue was full
};

class PsMetrics {
 public:
  explicit PsMetrics(int ps_index);
  ~PsMetrics();
  PsMetrics(const PsMetrics&) = delete;
  PsMetrics& operator=(const PsMetrics&) = delete;

  void publish(PsMetricsSnapshot snapshot);
  // The global step after a message was handled: an advance observes the time since the
  // previous one (divided evenly when several steps passed at once).
  void on_step(int64_t global_step);
  // When the last snapshot was published (steady clock), for the loop's 100 ms pacing.
  std::chrono::steady_clock::time_point last_publish() const { return last_publish_; }
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables() const;

 private:
  std::vector<prometheus::MetricFamily> collect() const;

  metrics::Labels labels_;
  std::shared_ptr<metrics::PublishedSnapshot<PsMetricsSnapshot>> snapshot_;
  std::shared_ptr<metrics::SnapshotCollectable> snapshot_families_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Histogram* step_seconds_ = nullptr;
  int64_t last_step_ = -1;
  std::chrono::steady_clock::time_point last_step_time_;
  std::chrono::steady_clock::time_point last_publish_;
};

}  // namespace pstrain
