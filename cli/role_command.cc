#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "cli/cli.h"
#include "cli/commands.h"
#include "ps/client.h"
#include "ps/ps_task.h"
#include "runtime/base/allocator.h"
#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/job/cluster.h"
#include "runtime/job/process.h"
#include "runtime/job/rendezvous.h"
#include "runtime/job/task_env.h"
#include "worker/data.h"
#include "worker/tensorboard_sink.h"
#include "worker/worker_task.h"

namespace pstrain {
namespace {

std::chrono::milliseconds seconds_flag(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

// The signal that asked a worker to stop (0: none yet).
std::atomic<int> g_worker_stop{0};

extern "C" void stop_worker_on_signal(int sig) {
  int none = 0;
  g_worker_stop.compare_exchange_strong(none, sig);
}

// SIGTERM, SIGINT and SIGHUP ask the worker to stop between two steps while this lives (the
// previous handlers come back after). SA_RESTART: blocking calls go on; the loop looks at the
// flag between steps.
class WorkerStopOnSignals {
 public:
  WorkerStopOnSignals() {
    g_worker_stop.store(0);
    struct sigaction sa {};
    sa.sa_handler = stop_worker_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~WorkerStopOnSignals() {
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  WorkerStopOnSignals(const WorkerStopOnSignals&) = delete;
  WorkerStopOnSignals& operator=(const WorkerStopOnSignals&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGTERM, SIGINT, SIGHUP};
  std::array<struct sigaction, 3> old_{};
};

}  // namespace

Status check_role_flags(const RoleFlags& f) {
  if (f.staleness < 0) {
    return invalid_argument("--staleness must be 0 (unbounded) or more, got " +
                            std::to_string(f.staleness));
  }
  if (f.staleness > 0 && f.sync_replicas) {
    return invalid_argument(
        "--staleness bounds asynchronous training; synchronous training (--sync_replicas) "
        "never runs ahead: drop one of the two");
  }
  if (f.log_every <= 0) {
    return invalid_argument("--log_every must be positive, got " + std::to_string(f.log_every));
  }
  if (f.replicas_to_aggregate < 0) {
    return invalid_argument("--replicas_to_aggregate must be positive, got " +
                            std::to_string(f.replicas_to_aggregate));
  }
  constexpr double kMax = 7 * 24 * 3600.0;  // timeouts: a week is far beyond any sensible wait
  for (const auto& [value, flag] : {std::pair{f.heartbeat_timeout_s, "--heartbeat_timeout_s"},
                                    std::pair{f.startup_timeout_s, "--startup_timeout_s"},
                                    std::pair{f.connect_timeout_s, "--connect_timeout_s"}}) {
    if (!(value >= 0.1 && value <= kMax)) {
      return invalid_argument(std::string(flag) + "=" + std::to_string(value) +
                              " is out of range: give seconds between 0.1 and 604800");
    }
  }
  if (f.push_stripes < 1 || f.push_stripes > static_cast<int>(kMaxPushStripes)) {
    return invalid_argument("--push_stripes must be between 1 (one connection) and " +
                            std::to_string(kMaxPushStripes) + ", got " +
                            std::to_string(f.push_stripes));
  }
  if (auto format = parse_compression(f.compress); !format.ok()) return format.status();
  if (auto t = parse_transport(f.transport); !t.ok()) return t.status();
  if (!(f.ps_restart_timeout_s >= 0 && f.ps_restart_timeout_s <= kMax)) {
    return invalid_argument("--ps_restart_timeout_s=" + std::to_string(f.ps_restart_timeout_s) +
                            " is out of range: give seconds between 0 (off) and 604800");
  }
  return {};
}

namespace {

Result<uint64_t> job_id_of(const RoleFlags& f, const ClusterSpec& cluster, const JobKeys* keys) {
  // With a secret the job id comes from it, so the host list no longer gives it away.
  if (f.job_id.empty()) return keys != nullptr ? keys->job_id : derive_job_id(cluster);
  try {
    size_t used = 0;
    const uint64_t id = std::stoull(f.job_id, &used, 0);
    if (used == f.job_id.size() && id != 0) return id;
  } catch (const std::exception&) {
  }
  return invalid_argument("--job_id=" + f.job_id + " is not a non-zero 64-bit number");
}

int run_ps(const RoleFlags& f, const ResolvedTask& task, uint64_t job_id,
           std::unique_ptr<PsListener> listener, std::shared_ptr<const JobKeys> keys) {
  PsTaskOptions o;
  o.keys = std::move(keys);
  o.cluster = task.cluster;
  o.task_index = task.task_index;
  o.job_id = job_id;
  o.heartbeat_timeout = seconds_flag(f.heartbeat_timeout_s);
  o.startup_timeout = seconds_flag(f.startup_timeout_s);
  o.metrics_port = f.metrics.port;
  o.metrics_host = f.metrics.host;
  o.checkpoint_dir = f.checkpoint_dir;
  o.keep_checkpoint_max = f.train.config.checkpoint.keep_max;
  auto summary = run_ps_task(o, stdout, std::move(listener));
  if (!summary.ok()) {
    PSTRAIN_LOG(ERROR) << summary.status().message();
    // A server that cannot start is a configuration error (cli.h: exit 2).
    return summary.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  if (summary->stop_signal != 0) {
    // A stop on request, not an error: exit 128 + the signal (130 SIGINT, 143 SIGTERM, 129
    // SIGHUP), which the launcher counts as "stopped" (docs/launch.md).
    PSTRAIN_LOG(INFO) << "stopped by " << signal_name(summary->stop_signal);
    return 128 + summary->stop_signal;
  }
  return kExitOk;
}

int run_worker(const RoleFlags& f, const TrainConfig& config, const ResolvedTask& task,
               uint64_t job_id, int device_slot, std::shared_ptr<const JobKeys> keys) {
  WorkerTaskOptions o;
  o.client.keys = std::move(keys);
  o.train = config;
  o.train.num_gpus = task.num_gpus;
  o.train.checkpoint.dir = f.checkpoint_dir;
  o.sync_replicas = f.sync_replicas;
  o.replicas_to_aggregate = f.replicas_to_aggregate;
  o.staleness = f.staleness;
  o.cluster = task.cluster;
  o.task_index = task.task_index;
  o.device_slot = device_slot;
  o.job_id = job_id;
  o.client.connect_timeout = seconds_flag(f.connect_timeout_s);
  o.client.ps_restart_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(f.ps_restart_timeout_s * 1000));
  o.client.reply_timeout = seconds_flag(f.heartbeat_timeout_s);
  // check_role_flags has refused a --compress that is not a choice.
  if (auto format = parse_compression(f.compress); format.ok()) o.client.compression = *format;
  if (auto t = parse_transport(f.transport); t.ok()) o.client.transport = *t;
  o.overlap = f.overlap;
  o.client.push_stripes = f.push_stripes;
  const char* status_path = std::getenv(task_env::kStatusFile);
  WorkerLinesSink lines(stdout, f.log_every);
  StatusFileSink status(status_path ? status_path : "", task.task_index, config.train_steps);
  SinkList sinks({&lines, &status});
  auto metrics = start_training_metrics(f.metrics, "worker", task.task_index);
  if (!metrics.ok()) {
    status.end("failed");
    PSTRAIN_LOG(ERROR) << metrics.status().message();
    return kExitUsage;
  }
  if (metrics->sink) sinks.add(metrics->sink.get());
  // The launcher asks for the metrics file through the environment; the flag wins.
  const char* metrics_env = std::getenv(task_env::kMetricsFile);
  MetricsFileSink metrics_file(
      !f.metrics.file.empty() ? f.metrics.file : (metrics_env ? metrics_env : ""), f.summary_every);
  sinks.add(&metrics_file);
  std::unique_ptr<TensorBoardSink> tensorboard;
  if (!f.log_dir.empty()) {
    tensorboard =
        std::make_unique<TensorBoardSink>(f.log_dir, /*per_worker=*/true, f.summary_every);
    sinks.add(tensorboard.get());
  }
  o.stop = &g_worker_stop;
  WorkerStopOnSignals signals;
  auto summary = run_worker_task(o, sinks);
  if (const int sig = g_worker_stop.load();
      !summary.ok() && summary.status().code() == StatusCode::kCancelled && sig != 0) {
    // A stop on request, not an error: the status file says "cancelled" and the exit code is
    // 128 + the signal, which the launcher counts as "stopped" (docs/launch.md).
    status.end("cancelled");
    PSTRAIN_LOG(INFO) << "worker " << task.task_index << ": stopped by " << signal_name(sig) << ": "
                      << summary.status().message();
    return 128 + sig;
  }
  if (!summary.ok()) {
    status.end("failed");
    PSTRAIN_LOG(ERROR) << "worker " << task.task_index << ": " << summary.status().message();
    // A bad flag or a missing data directory is a configuration error (cli.h: exit 2).
    const StatusCode code = summary.status().code();
    return code == StatusCode::kInvalidArgument || code == StatusCode::kNotFound ? kExitUsage
                                                                                 : kExitFailure;
  }
  if (!f.summary_json.empty()) {
    Status st = write_file_atomically(f.summary_json, summary->to_json().dump(2) + "\n");
    if (!st.ok()) {
      PSTRAIN_LOG(ERROR) << "cannot write --summary_json: " << st.message();
      return kExitFailure;
    }
  }
  return kExitOk;
}

}  // namespace

void add_role_flags(CLI::App& app, RoleFlags& f) {
  f.job_name_opt = app.add_option("--job_name", f.job_name, "Role of this task: ps or worker")
                       ->group(kClusterGroup);
  f.task_index_opt =
      add_int_option(app, "--task_index", f.task_index, "Index of the task in its job")
          ->group(kClusterGroup);
  f.ps_hosts_opt = app.add_option("--ps_hosts", f.ps_hosts,
                                  "Comma-separated host:port of the parameter servers "
                                  "(default localhost:2222)")
                       ->group(kClusterGroup);
  f.worker_hosts_opt = app.add_option("--worker_hosts", f.worker_hosts,
                                      "Comma-separated host:port of the workers "
                                      "(default localhost:2223,localhost:2224)")
                           ->group(kClusterGroup);
  add_training_flags(app, f.train);
  f.num_gpus_opt = app.get_option("--num_gpus");
  add_bool_flag(app, "existing_servers", f.existing_servers,
                "Accepted for mnist_replica compatibility (servers are always pstrain's)")
      ->group(kClusterGroup);
  add_bool_flag(app, "sync_replicas", f.sync_replicas,
                "Aggregate gradients synchronously (SyncReplicasOptimizer semantics)")
      ->group(kTrainingGroup);
  add_int_option(app, "--replicas_to_aggregate", f.replicas_to_aggregate,
                 "Gradients per synchronous step (default: the number of workers)")
      ->group(kTrainingGroup);
  add_int_option(app, "--staleness", f.staleness,
                 "Asynchronous training: no worker runs more than this many steps ahead of the "
                 "slowest (0 = unbounded)")
      ->capture_default_str()
      ->group(kTrainingGroup);
  add_bool_flag(app, "download_only", f.download_only, "Only check the data, then exit")
      ->group(kOutputGroup);
  add_output_flags(app, f.checkpoint_dir, f.log_dir, f.log_every);
  add_summary_every_flag(app, f.summary_every);
  add_metrics_flags(app, f.metrics);
  app.add_option("--output_dir", f.output_dir, "Output directory (created)")->group(kOutputGroup);
  app.add_option("--summary_json", f.summary_json, "Write this task's JSON summary here")
      ->group(kOutputGroup);
  app.add_option("--job_id", f.job_id,
                 "Job id carried by every message (default: derived from the cluster)")
      ->group(kOwnGroup);
  app.add_option("--heartbeat_timeout_s", f.heartbeat_timeout_s,
                 "A peer silent for this long is lost")
      ->capture_default_str()
      ->group(kOwnGroup);
  app.add_option("--startup_timeout_s", f.startup_timeout_s,
                 "A PS gives up on a worker that never connects within this time")
      ->capture_default_str()
      ->group(kOwnGroup);
  app.add_option("--connect_timeout_s", f.connect_timeout_s,
                 "A worker gives up reaching a PS after this time")
      ->capture_default_str()
      ->group(kOwnGroup);
  f.num_ps_opt = add_int_option(app, "--num_ps", f.num_ps,
                                "Under Slurm, mpirun (ranks): ranks 0..N-1 are parameter servers, "
                                "the rest workers (docs/schedulers.md)")
                     ->group(kClusterGroup);
  f.rendezvous_opt = app.add_option("--rendezvous", f.rendezvous,
                                    "host:port of the rendezvous that rank 0 (or the DMLC "
                                    "scheduler) serves (default: see docs/schedulers.md)")
                         ->group(kClusterGroup);
  app.add_option("--rendezvous_timeout_s", f.rendezvous_timeout_s,
                 "Every task exits 1 naming the missing ranks if the rendezvous is not complete "
                 "by then")
      ->capture_default_str()
      ->group(kClusterGroup);
  app.add_option("--ps_restart_timeout_s", f.ps_restart_timeout_s,
                 "A worker keeps asking a PS that stopped answering for this long (it may be "
                 "restarted from its checkpoint); 0: give up after --heartbeat_timeout_s")
      ->capture_default_str()
      ->group(kOwnGroup);
  add_security_flags(app, f.security);
  add_compress_flag(app, f.compress);
  add_transport_flag(app, f.transport);
  add_bool_flag(app, "overlap", f.overlap,
                "On by default: workers send each layer's gradients (64 KiB or more at a time) "
                "to servers reached over TCP or a Unix socket as soon as backward has produced "
                "them, while it computes the layers before, and start the next step's forward "
                "on the first layers' parameters while the rest arrive (CPU backend); "
                "--nooverlap: all after backward, forward once all are in")
      ->capture_default_str()
      ->group(kTrainingGroup);
  app.add_option("--push_stripes", f.push_stripes,
                 "Workers send a push of 1 MiB or more to a PS reached over TCP over up to "
                 "this many connections to it, in stripes of 512 KiB or more (1 to 16; 1: one "
                 "connection)")
      ->capture_default_str()
      ->group(kOwnGroup);
  for (CLI::Option* opt : app.get_options()) {
    opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }
}

namespace {
using Keys = std::shared_ptr<const JobKeys>;
int run_resolved_task(const RoleFlags& f, const TrainConfig& config, const ResolvedTask& task,
                      std::unique_ptr<PsListener> listener, int device_slot, const Keys& keys);
int run_rank_task(const RoleFlags& f, const TrainConfig& config, const ClusterFlags& cf,
                  const RankTask& rt, const Keys& keys);
}  // namespace

int run_role_command(const RoleFlags& f) {
  auto config = finish_training_flags(f.train);
  if (!config.ok()) {
    PSTRAIN_LOG(ERROR) << config.status().message();
    return kExitUsage;
  }
  if (f.download_only) {
    auto checked = check_data_dir(config->data_dir);
    if (!checked.ok()) {
      PSTRAIN_LOG(ERROR) << checked.status().message();
      return kExitUsage;
    }
    std::printf("data ok: %s\n", checked->c_str());
    return kExitOk;
  }
  ClusterFlags cf;
  if (f.job_name_opt->count()) cf.job_name = f.job_name;
  if (f.ps_hosts_opt->count()) cf.ps_hosts = f.ps_hosts;
  if (f.worker_hosts_opt->count()) cf.worker_hosts = f.worker_hosts;
  if (f.task_index_opt->count()) cf.task_index = f.task_index;
  if (f.num_gpus_opt->count()) cf.num_gpus = f.train.config.num_gpus;
  Status timeouts = check_role_flags(f);
  if (!timeouts.ok()) {
    PSTRAIN_LOG(ERROR) << timeouts.message();
    return kExitUsage;
  }
  auto keys = load_security(f.security);
  if (!keys.ok()) {
    PSTRAIN_LOG(ERROR) << keys.status().message();
    return kExitUsage;
  }
  RankFlags rf;
  if (f.num_ps_opt->count()) rf.num_ps = f.num_ps;
  if (f.rendezvous_opt->count()) rf.rendezvous = f.rendezvous;
  auto rank = resolve_rank_task(cf, rf, process_environment());
  if (!rank.ok()) {
    PSTRAIN_LOG(ERROR) << rank.status().message();
    return kExitUsage;
  }
  if (*rank) return run_rank_task(f, *config, cf, **rank, *keys);
  auto task = resolve_task(cf, process_environment());
  if (!task.ok()) {
    PSTRAIN_LOG(ERROR) << task.status().message();
    return kExitUsage;
  }
  return run_resolved_task(f, *config, *task, nullptr, -1, *keys);
}

namespace {

int run_resolved_task(const RoleFlags& f, const TrainConfig& config, const ResolvedTask& task,
                      std::unique_ptr<PsListener> listener, int device_slot, const Keys& keys) {
  auto job_id = job_id_of(f, task.cluster, keys.get());
  if (!job_id.ok()) {
    PSTRAIN_LOG(ERROR) << job_id.status().message();
    return kExitUsage;
  }
  set_log_tag(std::string(job_name_string(task.job)) + "/" + std::to_string(task.task_index));
  PSTRAIN_LOG(INFO) << describe_task(task);
  for (const auto& note : task.notes) PSTRAIN_LOG(INFO) << note;
  if (keys) {
    PSTRAIN_LOG(INFO) << "job secret from " << keys->secret_file
                      << ": connections are CURVE-encrypted and authenticated"
                      << (f.job_id.empty() ? "; the job id comes from the secret" : "");
  }
  for (const auto& [dir, flag] :
       {std::pair{f.checkpoint_dir, "--checkpoint_dir"}, std::pair{f.log_dir, "--log_dir"},
        std::pair{f.output_dir, "--output_dir"}}) {
    Status st = make_directories(dir, flag);
    if (!st.ok()) {
      PSTRAIN_LOG(ERROR) << st.message();
      return kExitUsage;
    }
  }
  // Both roles receive tensors in buffers ZeroMQ allocates per message: keep their pages.
  if (!keep_large_buffers_mapped()) {
    PSTRAIN_LOG(WARNING) << "glibc refused the allocator settings for large messages "
                            "(runtime/base/allocator.h): transfers of large tensors run slower";
  }
  if (task.job == JobName::kPs) return run_ps(f, task, *job_id, std::move(listener), keys);
  return run_worker(f, config, task, *job_id, device_slot, keys);
}

// Under a rank-based scheduler: serve the rendezvous (rank 0, DMLC scheduler), bind this task's
// port, register, then run as the task the rendezvous confirmed.
int run_rank_task(const RoleFlags& f, const TrainConfig& config, const ClusterFlags& cf,
                  const RankTask& rt, const Keys& keys) {
  PSTRAIN_LOG(INFO) << describe_rank_task(rt);
  if (!(f.rendezvous_timeout_s >= 0.1 && f.rendezvous_timeout_s <= 7 * 24 * 3600.0)) {
    PSTRAIN_LOG(ERROR) << "--rendezvous_timeout_s=" << f.rendezvous_timeout_s
                       << " is out of range: give seconds between 0.1 and 604800";
    return kExitUsage;
  }
  RendezvousOptions ro;
  ro.address = rt.rendezvous;
  ro.num_ps = rt.num_ps;
  ro.num_workers = rt.num_workers;
  ro.ranked = rt.rank.has_value();
  ro.deadline = seconds_flag(f.rendezvous_timeout_s);
  ro.keys = keys;
  std::unique_ptr<RendezvousServer> server;
  if (rt.serves_rendezvous) {
    auto created = RendezvousServer::create(ro);
    if (!created.ok()) {
      PSTRAIN_LOG(ERROR) << "cannot serve the rendezvous at " << rt.rendezvous.to_string()
                         << " (from " << rt.rendezvous_source
                         << "): " << created.status().message();
      return kExitUsage;
    }
    server = std::move(created).value();
  }
  if (rt.rendezvous_only) {
    Status served = server->serve();
    if (!served.ok()) {
      PSTRAIN_LOG(ERROR) << served.message();
      return kExitFailure;
    }
    return kExitOk;
  }
  Status server_status;
  std::thread server_thread;
  if (server) server_thread = std::thread([&] { server_status = server->serve(); });
  // Bind this task's port first (port 0), so the rendezvous hears the port actually held.
  std::unique_ptr<PsListener> listener;
  std::optional<PortReservation> reservation;
  int port = 0;
  Status bound;
  if (rt.job == JobName::kPs) {
    auto l = bind_ps_listener(rt.host, std::max(rt.task_index, 0), keys.get());
    if (l.ok()) {
      listener = std::move(l).value();
      port = listener->port;
    } else {
      bound = l.status();
    }
  } else {
    auto r = PortReservation::bind(rt.host);
    if (r.ok()) {
      reservation.emplace(std::move(r).value());
      port = reservation->port();
    } else {
      bound = r.status();
    }
  }
  Result<RendezvousResult> got =
      bound.ok() ? rendezvous_register(ro, rt.job, rt.task_index, HostPort{rt.host, port})
                 : Result<RendezvousResult>(bound);
  if (server_thread.joinable()) server_thread.join();
  if (!got.ok()) {
    PSTRAIN_LOG(ERROR) << got.status().message();
    return got.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  auto task = resolve_task(
      rank_cluster_readers(rendezvous_reader(rt, got->cluster, got->job, got->task_index)), cf,
      process_environment());
  if (!task.ok()) {
    PSTRAIN_LOG(ERROR) << task.status().message();
    return kExitUsage;
  }
  return run_resolved_task(f, config, *task, std::move(listener), rt.local_rank.value_or(-1), keys);
}

}  // namespace

}  // namespace pstrain
