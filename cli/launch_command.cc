// `pstrain launch`: parses the launcher's flags and the training flags it passes through, then
// checks the data, then runs runtime/job/launcher.h's launch_local_job with SIGINT, SIGTERM and
// SIGHUP turned into a clean stop.
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "runtime/base/log.h"
#include "runtime/job/launcher.h"
#include "worker/data.h"

namespace pstrain {
namespace {

constexpr int kExitCancelled = 130;

std::atomic<bool> g_cancel{false};
std::atomic<int> g_cancel_signal{0};

extern "C" void cancel_launch_on_signal(int sig) {
  int none = 0;
  g_cancel_signal.compare_exchange_strong(none, sig);
  g_cancel.store(true);
}

// The launcher's own flags (each takes one value); everything else goes to the tasks.
// --summary_json is the job's summary (the launcher writes it), never passed to the tasks,
// which would overwrite each other's; --metrics_port is given to each task as its own port
// (runtime/job/launch_plan.h).
const char* const kLauncherFlags[] = {
    "--ps",           "--workers",      "--job_dir",     "--pstrain_binary", "--ps_exit_timeout_s",
    "--summary_json", "--metrics_port", "--max_restarts"};

// `args` minus the launcher's own flags and their values, in the user's order and spelling.
// CLI11 has already parsed `args`, so a launcher flag given as "--name" is followed by its
// value.
std::vector<std::string> training_flags_of(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    bool own = false;
    for (const char* name : kLauncherFlags) {
      const std::string n = name;
      if (args[i] == n) {
        own = true;
        ++i;  // its value
        break;
      }
      if (args[i].rfind(n + "=", 0) == 0) {
        own = true;
        break;
      }
    }
    if (!own) out.push_back(args[i]);
  }
  return out;
}

// SIGINT, SIGTERM and SIGHUP (the terminal went away) cancel the job while this lives: the
// launcher stops every task and reports. The previous handlers come back after.
class SignalsToCancel {
 public:
  SignalsToCancel() {
    g_cancel.store(false);
    g_cancel_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = cancel_launch_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a signal ends the monitor's nap at once
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~SignalsToCancel() {
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  SignalsToCancel(const SignalsToCancel&) = delete;
  SignalsToCancel& operator=(const SignalsToCancel&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> old_{};
};

}  // namespace

namespace {

// The launcher's parser: its own flags, the training flags it passes through, and the cluster
// flags (accepted by the parser only to be rejected with a clear message, hidden from help).
struct LaunchParser {
  CLI::App app{
      "Run a distributed job on this machine: --ps parameter servers and --workers workers, "
      "each a `pstrain --job_name=ps|worker` process with its cluster in AZ_BATCHAI_* and "
      "TF_CONFIG (as Batch AI sets them). Training flags are passed to every task. Logs, "
      "status files and summary.json go to the job directory.",
      "pstrain launch"};
  LaunchOptions o;
  double ps_exit_timeout_s = 60;
  RoleFlags role;
  std::vector<std::pair<CLI::Option*, const char*>> cluster_flags;

  LaunchParser() {
    const char* group = "Launch";
    add_int_option(app, "--ps", o.num_ps, "Number of parameter servers")
        ->capture_default_str()
        ->group(group);
    add_int_option(app, "--workers", o.num_workers, "Number of workers")
        ->capture_default_str()
        ->group(group);
    app.add_option("--job_dir", o.job_dir,
                   "Job directory (default: jobs/job-YYYYMMDD-HHMMSS under the current directory)")
        ->group(group);
    app.add_option("--pstrain_binary", o.pstrain_binary,
                   "The pstrain executable each task runs (default: this one)")
        ->group(group);
    add_int_option(app, "--max_restarts", o.max_restarts,
                   "Times each task that fails is started again (0: a failed PS or chief fails "
                   "the job; another worker is left behind and the rest go on)")
        ->capture_default_str()
        ->check(CLI::Range(0, 1000))
        ->group(group);
    app.add_option("--ps_exit_timeout_s", ps_exit_timeout_s,
                   "After every worker finished, how long the PS tasks get to exit by themselves")
        ->capture_default_str()
        ->group(group);
    add_role_flags(app, role);
    cluster_flags = {{role.job_name_opt, "--job_name"},
                     {role.task_index_opt, "--task_index"},
                     {role.ps_hosts_opt, "--ps_hosts"},
                     {role.worker_hosts_opt, "--worker_hosts"}};
    for (const auto& [opt, name] : cluster_flags) opt->group("");
    add_flagfile_option(app);
    add_log_level_flag(app);
    app.allow_extras();
  }
};

}  // namespace

std::string launch_command_help() {
  LaunchParser p;
  return p.app.help();
}

int run_launch_command(const std::vector<std::string>& args) {
  LaunchParser p;
  CLI::App& app = p.app;
  LaunchOptions& o = p.o;
  RoleFlags& role = p.role;
  double& ps_exit_timeout_s = p.ps_exit_timeout_s;
  const auto& cluster_flags = p.cluster_flags;

  if (std::optional<int> code = parse_command_words(app, args)) return *code;
  if (std::string m = leftover_message(app, app.remaining()); !m.empty()) {
    std::fprintf(stderr, "pstrain launch: %s\n", m.c_str());
    return kExitUsage;
  }

  for (const auto& [opt, name] : cluster_flags) {
    if (opt->count() > 0) {
      PSTRAIN_LOG(ERROR) << "pstrain launch sets the cluster itself (each task gets "
                            "--job_name=ps|worker and its cluster in AZ_BATCHAI_* and TF_CONFIG): "
                            "remove "
                         << name << "; size the job with --ps and --workers";
      return kExitUsage;
    }
  }
  // The tasks inherit the environment and read the same PSTRAIN_* variables themselves, so a
  // cluster variable would override the cluster the launcher gives each task: refused.
  for (const char* var :
       {"PSTRAIN_JOB_NAME", "PSTRAIN_TASK_INDEX", "PSTRAIN_PS_HOSTS", "PSTRAIN_WORKER_HOSTS"}) {
    const char* value = std::getenv(var);
    if (value != nullptr && *value != '\0') {
      PSTRAIN_LOG(ERROR) << var << " is set: pstrain launch sets each task's cluster itself "
                         << "and the variable would override it; unset " << var;
      return kExitUsage;
    }
  }
  // The launcher's own flags and the training flags from PSTRAIN_* too.
  if (Status st =
          apply_environment(app, {"--job_name", "--task_index", "--ps_hosts", "--worker_hosts"});
      !st.ok()) {
    PSTRAIN_LOG(ERROR) << st.message();
    return kExitUsage;
  }
  auto config = finish_training_flags(role.train);
  if (!config.ok()) {
    PSTRAIN_LOG(ERROR) << config.status().message();
    return kExitUsage;
  }
  if (role.sync_replicas && role.replicas_to_aggregate > o.num_workers) {
    PSTRAIN_LOG(ERROR) << "--replicas_to_aggregate=" << role.replicas_to_aggregate
                       << " is more than --workers=" << o.num_workers;
    return kExitUsage;
  }
  if (!(ps_exit_timeout_s >= 0.1 && ps_exit_timeout_s <= 7 * 24 * 3600.0)) {
    PSTRAIN_LOG(ERROR) << "--ps_exit_timeout_s must be between 0.1 and 604800 seconds";
    return kExitUsage;
  }
  if (Status st = check_role_flags(role); !st.ok()) {
    PSTRAIN_LOG(ERROR) << st.message();
    return kExitUsage;
  }
  // Check the data before starting anything: a bad --data_dir is a usage error (exit 2), not
  // a job that fails after every task started.
  auto data = check_data_dir(config->data_dir);
  if (!data.ok()) {
    PSTRAIN_LOG(ERROR) << data.status().message();
    return kExitUsage;
  }
  if (role.download_only) {
    // Nothing to train: the data is there and valid, which is all --download_only asks.
    std::printf("data ok: %s\n", data->c_str());
    std::fflush(stdout);
    return kExitOk;
  }
  o.ps_exit_timeout = std::chrono::milliseconds(static_cast<int64_t>(ps_exit_timeout_s * 1000));
  if (role.num_gpus_opt->count() > 0) o.num_gpus = role.train.config.num_gpus;
  o.sync_replicas = role.sync_replicas;
  o.training_flags = training_flags_of(args);
  o.cancel = &g_cancel;
  o.cancel_signal = &g_cancel_signal;
  o.pstrain_version = PSTRAIN_VERSION;
  o.model = config->model.name;
  o.summary_json = role.summary_json;
  o.metrics_port = role.metrics.port;

  SignalsToCancel signals;
  auto summary = launch_local_job(o, stderr);
  if (!summary.ok()) {
    PSTRAIN_LOG(ERROR) << summary.status().message();
    return summary.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  std::fputs(describe_launch(*summary).c_str(), stdout);
  std::fflush(stdout);
  switch (summary->state) {
    case LaunchState::kSucceeded:
      return kExitOk;
    case LaunchState::kCancelled:
      return kExitCancelled;
    case LaunchState::kFailed:
      break;
  }
  return kExitFailure;
}

}  // namespace pstrain
