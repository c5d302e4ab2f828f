#include "ps/ps_metrics.h"

#include <string>
#include <utility>

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace pstrain {

using metrics::family;
using metrics::Labels;
using metrics::sample;
using prometheus::MetricType;

namespace {

Labels with(Labels labels, const std::string& name, const std::string& value) {
  labels[name] = value;
  return labels;
}

}  // namespace

PsMetrics::PsMetrics(int ps_index)
    : labels_{{"role", "ps"}, {"task", std::to_string(ps_index)}},
      snapshot_(std::make_shared<metrics::PublishedSnapshot<PsMetricsSnapshot>>()),
      registry_(std::make_shared<prometheus::Registry>()) {
  // The loop's state is read only through the published snapshot: the collectable holds the
  // snapshot (shared), not this object, so a scrape racing the PS's exit reads valid memory.
  auto snapshot = snapshot_;
  const Labels labels = labels_;
  snapshot_families_ = std::make_shared<metrics::SnapshotCollectable>([snapshot, labels] {
    const PsMetricsSnapshot s = snapshot->read();
    const wire::PsStats& st = s.stats;
    std::vector<prometheus::MetricFamily> out;
    auto gauge = [&](const char* name, const char* help, double v) {
      out.push_back(family(name, help, MetricType::Gauge));
      sample(out.back(), v, labels);
    };
    auto counter = [&](const char* name, const char* help, double v) {
      out.push_back(family(name, help, MetricType::Counter));
      sample(out.back(), v, labels);
    };
    gauge("pstrain_ps_global_step", "The global step of this parameter server's variables.",
          static_cast<double>(st.global_step()));
    gauge("pstrain_ps_train_steps", "Global steps the job trains (0 before INIT).",
          static_cast<double>(st.train_steps()));
    gauge("pstrain_ps_initialized", "1 once the chief initialised the variables.",
          st.initialized() ? 1 : 0);
    counter("pstrain_ps_gradients_applied_total", "Gradients that went into an update.",
            static_cast<double>(s.store.gradients_applied));
    counter("pstrain_ps_updates_total", "Optimizer updates applied (step advances).",
            static_cast<double>(s.store.updates));
    out.push_back(family("pstrain_ps_gradients_dropped_total",
                         "Gradients dropped, by reason (sync: stale, duplicate, future or "
                         "late; async staleness: stale; any mode: non_finite, NaN or Inf).",
                         MetricType::Counter));
    sample(out.back(), static_cast<double>(s.store.stale), with(labels, "reason", "stale"));
    sample(out.back(), static_cast<double>(s.store.duplicate), with(labels, "reason", "duplicate"));
    sample(out.back(), static_cast<double>(s.store.future), with(labels, "reason", "future"));
    sample(out.back(), static_cast<double>(s.store.late), with(labels, "reason", "late"));
    sample(out.back(), static_cast<double>(s.store.non_finite),
           with(labels, "reason", "non_finite"));
    counter("pstrain_ps_messages_received_total", "Messages received and decoded.",
            static_cast<double>(s.messages_in));
    counter("pstrain_ps_messages_sent_total", "Messages sent.",
            static_cast<double>(s.messages_out));
    out.push_back(family("pstrain_ps_messages_rejected_total",
                         "Messages refused: malformed (dropped), foreign (another job or "
                         "protocol version, ignored), unauthenticated (connections without "
                         "the job's key, refused in the CURVE handshake) or identity (another "
                         "process claiming a live worker's index; also counted as malformed).",
                         MetricType::Counter));
    sample(out.back(), static_cast<double>(st.bad_messages()), with(labels, "reason", "malformed"));
    sample(out.back(), static_cast<double>(st.foreign_messages()),
           with(labels, "reason", "foreign"));
    sample(out.back(), static_cast<double>(st.unauthenticated()),
           with(labels, "reason", "unauthenticated"));
    sample(out.back(), static_cast<double>(s.identity_refused), with(labels, "reason", "identity"));
    gauge("pstrain_ps_connections", "Connections open to this parameter server.",
          static_cast<double>(st.connections()));
    counter("pstrain_ps_connections_evicted_total",
            "Connections closed by the cap on their number (those never heard from first, "
            "then the least recently heard; never a worker's).",
            static_cast<double>(st.connections_evicted()));
    counter("pstrain_ps_replies_dropped_total",
            "Replies dropped because the connection's send queue was full (a peer that does "
            "not read its replies).",
            static_cast<double>(s.replies_dropped));
    counter("pstrain_ps_received_bytes_total", "Header and tensor bytes received.",
            static_cast<double>(st.bytes_received()));
    counter("pstrain_ps_sent_bytes_total", "Header and tensor bytes sent.",
            static_cast<double>(st.bytes_sent()));

    int by_state[5] = {0, 0, 0, 0, 0};
    int parked = 0;
    for (const wire::PsWorker& w : st.workers()) {
      const int state = static_cast<int>(w.state());
      if (state >= 0 && state < 5) ++by_state[state];
      parked += w.parked_pulls();
    }
    out.push_back(family("pstrain_ps_workers", "Workers of the job, by state.", MetricType::Gauge));
    sample(out.back(), by_state[wire::PsWorker::NOT_SEEN], with(labels, "state", "not_seen"));
    sample(out.back(), by_state[wire::PsWorker::CONNECTED], with(labels, "state", "connected"));
    sample(out.back(), by_state[wire::PsWorker::DONE], with(labels, "state", "done"));
    sample(out.back(), by_state[wire::PsWorker::LOST], with(labels, "state", "lost"));
    gauge("pstrain_ps_parked_pulls", "PULLs waiting (for INIT, the next step or the slowest).",
          parked);
    gauge("pstrain_ps_gradients_pending", "Sync: fresh gradients held for the current step.",
          st.gradients_pending());
    gauge("pstrain_ps_replicas_to_aggregate",
          "Gradients that complete a step now (1 in async mode).", st.replicas_to_aggregate());
    gauge("pstrain_ps_parameter_bytes", "Bytes of the variables this PS holds.",
          static_cast<double>(st.parameter_bytes()));
    out.push_back(family("pstrain_ps_worker_gradients_total",
                         "Gradients each worker pushed to this PS.", MetricType::Counter));
    for (const wire::PsWorker& w : st.workers()) {
      sample(out.back(), static_cast<double>(w.gradients()),
             with(labels, "worker", std::to_string(w.index())));
    }
    out.push_back(family("pstrain_ps_worker_seconds_since_seen",
                         "Seconds since each worker's last message (-1: never seen).",
                         MetricType::Gauge));
    for (const wire::PsWorker& w : st.workers()) {
      sample(out.back(),
             w.ms_since_seen() < 0 ? -1.0 : static_cast<double>(w.ms_since_seen()) / 1000.0,
             with(labels, "worker", std::to_string(w.index())));
    }
    return out;
  });
  step_seconds_ = &prometheus::BuildHistogram()
                       .Name("pstrain_ps_step_seconds")
                       .Help("Time between global-step advances on this parameter server.")
                       .Register(*registry_)
                       .Add(labels_, prometheus::Histogram::BucketBoundaries{
                                         0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2,
                                         0.5, 1, 2, 5, 10});
}

PsMetrics::~PsMetrics() = default;

void PsMetrics::publish(PsMetricsSnapshot snapshot) {
  snapshot_->publish(std::move(snapshot));
  last_publish_ = std::chrono::steady_clock::now();
}

void PsMetrics::on_step(int64_t global_step) {
  const auto now = std::chrono::steady_clock::now();
  if (last_step_ >= 0 && global_step > last_step_) {
    const int64_t advanced = global_step - last_step_;
    const double each = std::chrono::duration<double>(now - last_step_time_).count() /
                        static_cast<double>(advanced);
    for (int64_t i = 0; i < advanced && i < 1000; ++i) step_seconds_->Observe(each);
  }
  if (last_step_ < 0 || global_step != last_step_) {
    last_step_ = global_step;
    last_step_time_ = now;
  }
}

std::vector<std::shared_ptr<prometheus::Collectable>> PsMetrics::collectables() const {
  return {snapshot_families_, registry_};
}

}  // namespace pstrain
