#include "ps/ps_task.h"

#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <string>

#include "runtime/base/log.h"
#include "runtime/base/sched.h"
#include "runtime/job/process.h"
#include "runtime/metrics/metrics.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

std::atomic<ParameterServer*> g_server{nullptr};
std::atomic<int> g_stop_signal{0};

extern "C" void stop_server_on_signal(int sig) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, sig);
  if (ParameterServer* s = g_server.load()) s->request_stop();
}

// SIGTERM, SIGINT and SIGHUP stop `server` while this lives; the previous handlers come back
// after.
class StopOnSignals {
 public:
  explicit StopOnSignals(ParameterServer* server) {
    g_stop_signal.store(0);
    g_server.store(server);
    struct sigaction sa {};
    sa.sa_handler = stop_server_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGHUP, &sa, &old_hup_);
  }
  ~StopOnSignals() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGHUP, &old_hup_, nullptr);
    g_server.store(nullptr);
  }
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;

 private:
  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
  struct sigaction old_hup_ {};
};

}  // namespace

Result<std::unique_ptr<PsListener>> bind_ps_listener(const std::string& host, int ps_index,
                                                     const JobKeys* keys) {
  auto l = std::make_unique<PsListener>();
  PSTRAIN_ASSIGN_OR_RETURN(l->bound, bind_ps_socket(l->ctx, host, 0, ps_index, keys));
  l->port = l->bound.port;
  return l;
}

Result<PsTaskSummary> run_ps_task(const PsTaskOptions& o, std::FILE* out,
                                  std::unique_ptr<PsListener> listener) {
  // Every thread of a PS moves messages or applies them in microseconds: all of them (those
  // started from here on inherit it) ask for short time slices, so that a step's push is taken
  // while workers on the same cores compute (runtime/base/sched.h).
  const Status short_slices = request_time_slice(kMessageThreadSlice);
  const int num_ps = static_cast<int>(o.cluster.ps.size());
  if (o.task_index < 0 || o.task_index >= num_ps) {
    return invalid_argument("ps task index " + std::to_string(o.task_index) +
                            " is outside the cluster's " + std::to_string(num_ps) +
                            " parameter server(s)");
  }
  {
    // A task whose own address is not this machine would bind all interfaces and wait for
    // workers that connect elsewhere: say so at once (exit 2).
    std::string warning;
    PSTRAIN_RETURN_IF_ERROR(check_own_address(o.cluster.ps[static_cast<size_t>(o.task_index)].host,
                                              "ps " + std::to_string(o.task_index), &warning));
    if (!warning.empty()) PSTRAIN_LOG(WARNING) << warning;
  }
  {
    // Every connection holds a file descriptor: with the soft limit (often 1,024) a crowd of
    // idle connections would leave no room for the job's workers.
    rlimit nofile{};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
      const rlim_t before = nofile.rlim_cur;
      nofile.rlim_cur = nofile.rlim_max;
      if (::setrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        PSTRAIN_LOG(INFO) << "ps " << o.task_index << ": open files limit raised from " << before
                          << " to " << nofile.rlim_cur << " (the hard limit)";
      }
    }
  }
  PSTRAIN_LOG(INFO) << "ps " << o.task_index << ": its threads "
                    << (short_slices.ok()
                            ? "ask for " + std::to_string(kMessageThreadSlice.count()) +
                                  " us time slices (they run ahead of computing threads on "
                                  "shared cores)"
                            : "keep the kernel's default time slices: " + short_slices.message());
  ServerOptions so;
  so.ps_index = o.task_index;
  so.num_workers = static_cast<int>(o.cluster.workers.size());
  const HostPort& me = o.cluster.ps[static_cast<size_t>(o.task_index)];
  so.host = me.host;
  so.port = me.port;
  so.job_id = o.job_id;
  so.heartbeat_timeout = o.heartbeat_timeout;
  so.startup_timeout = o.startup_timeout;
  so.num_ps = num_ps;
  so.checkpoint_dir = o.checkpoint_dir;
  so.keep_checkpoint_max = o.keep_checkpoint_max;
  so.keys = o.keys;
  if (!o.keys && !is_loopback_host(me.host)) {
    PSTRAIN_LOG(WARNING) << "ps " << o.task_index << " listens on " << me.to_string()
                         << " (all interfaces) without a job secret: anyone who can reach the "
                            "port can read the model, push gradients or end the job; give "
                            "every task --secret_file FILE (docs/security.md)";
  }
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  std::unique_ptr<PsMetrics> metrics;
  if (o.metrics_port >= 0) {
    auto started = metrics::MetricsServer::start(o.metrics_host, o.metrics_port);
    if (!started.ok()) return started.status();
    metrics_server = std::move(started).value();
    metrics = std::make_unique<PsMetrics>(o.task_index);
    for (auto& c : metrics->collectables()) metrics_server->add(c);
    so.metrics = metrics.get();
    PSTRAIN_LOG(INFO) << "ps " << o.task_index << " metrics at " << metrics_server->url();
  }
  zmq::context_t ctx(kIoThreads);
  auto server = listener ? ParameterServer::create(std::move(listener->bound), so)
                         : ParameterServer::create(ctx, so);
  // Whatever stops the server from starting is the cluster's or the flags' doing.
  if (!server.ok()) return invalid_argument(server.status().message());

  Result<ServerSummary> served = [&] {
    StopOnSignals signals(server->get());
    return (*server)->serve();
  }();
  PsTaskSummary summary;
  summary.task_index = o.task_index;
  if (!served.ok()) {
    const int sig = g_stop_signal.load();
    if (served.status().code() != StatusCode::kCancelled || sig == 0) return served.status();
    summary.stop_signal = sig;
    summary.config = (*server)->training_config();
    // A scheduler's preemption: keep this PS's state (complete as a checkpoint in a PS's own
    // directory; in a shared one, only the chief's index completes a checkpoint).
    auto saved = (*server)->save_on_stop();
    if (!saved.ok()) {
      std::fprintf(out, "ps %d could not save its shard: %s\n", o.task_index,
                   saved.status().message().c_str());
    } else if (saved->has_value()) {
      std::fprintf(out, "ps %d saved %s (global step %lld)\n", o.task_index, (*saved)->file.c_str(),
                   static_cast<long long>((*saved)->step));
    }
    std::fprintf(out, "ps %d stopped by %s\n", o.task_index, signal_name(sig).c_str());
    std::fflush(out);
    return summary;
  }
  summary.server = std::move(served).value();
  summary.config = (*server)->training_config();
  const wire::PsStats& st = summary.server.stats;
  std::fprintf(
      out,
      "ps %d done: global step %lld, %lld gradients applied, %lld dropped (stale or late), "
      "%lld malformed and %lld foreign messages ignored\n",
      o.task_index, static_cast<long long>(summary.server.final_step),
      static_cast<long long>(st.gradients_applied()),
      static_cast<long long>(st.stale_gradients_dropped()),
      static_cast<long long>(st.bad_messages()), static_cast<long long>(st.foreign_messages()));
  if (!summary.server.workers_lost.empty()) {
    std::string lost;
    for (int w : summary.server.workers_lost)
      lost += (lost.empty() ? "" : ", ") + std::to_string(w);
    std::fprintf(out, "ps %d: worker(s) %s were lost before the end; the others finished\n",
                 o.task_index, lost.c_str());
  }
  std::fflush(out);
  return summary;
}

}  // namespace pstrain
