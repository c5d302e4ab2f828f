#include "runtime/job/launch_plan.h"

#include <algorithm>
#include <cstddef>

#include <nlohmann/json.hpp>

#include "runtime/job/task_env.h"

namespace pstrain {
namespace {

bool has_flag(const std::vector<std::string>& flags, const std::string& name) {
  return std::any_of(flags.begin(), flags.end(), [&](const std::string& f) {
    return f == name || f.rfind(name + "=", 0) == 0;
  });
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

// The last component of `dir` ("job" for "/tmp/x/job" and "/tmp/x/job/").
std::string dir_name(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const size_t slash = dir.rfind('/');
  return slash == std::string::npos ? dir : dir.substr(slash + 1);
}

Status check_facts(const LaunchOptions& o, const LaunchFacts& f) {
  const size_t n = static_cast<size_t>(o.num_ps) + static_cast<size_t>(o.num_workers);
  if (f.ports.size() != n) {
    return invalid_argument("the launch plan needs " + std::to_string(n) + " ports (" +
                            std::to_string(o.num_ps) + " ps + " + std::to_string(o.num_workers) +
                            " workers), got " + std::to_string(f.ports.size()));
  }
  for (int port : f.ports) {
    if (port < 1 || port > 65535) {
      return invalid_argument("the launch plan got port " + std::to_string(port) +
                              ", outside 1..65535");
    }
  }
  if (f.binary.empty()) return invalid_argument("the launch plan needs the pstrain binary");
  if (f.job_dir.empty()) return invalid_argument("the launch plan needs the job directory");
  return Status();
}

// The arguments after --job_name, the same for every task.
std::vector<std::string> common_flags(const LaunchOptions& o, const LaunchFacts& f,
                                      const std::string& job_id) {
  std::vector<std::string> flags = o.training_flags;
  if (!job_id.empty()) flags.push_back("--job_id=" + job_id);
  if (!f.secret_file.empty() && !has_flag(o.training_flags, "--secret_file")) {
    flags.push_back("--secret_file=" + f.secret_file);
  }
  if (!has_flag(o.training_flags, "--cpu_threads")) {
    // The tasks share this machine's cores: give each worker its share (the parameter
    // servers mostly wait on sockets) instead of letting every task use them all.
    const unsigned cores = std::max(1u, f.cpu_cores);
    const unsigned share = std::max(1u, cores / static_cast<unsigned>(o.num_workers));
    flags.push_back("--cpu_threads=" + std::to_string(share));
  }
  return flags;
}

std::map<std::string, std::optional<std::string>> task_environment(const LaunchOptions& o,
                                                                   const LaunchFacts& f,
                                                                   const LaunchPlan& plan,
                                                                   const PlannedTask& t) {
  const nlohmann::json cluster = {{"ps", plan.ps_hosts}, {"worker", plan.worker_hosts}};
  std::map<std::string, std::optional<std::string>> env;
  env[task_env::kPsHosts] = join(plan.ps_hosts, ",");
  env[task_env::kWorkerHosts] = join(plan.worker_hosts, ",");
  env[task_env::kTaskIndex] = std::to_string(t.index);
  env[task_env::kJobName] = dir_name(f.job_dir);
  env[task_env::kStdoutErrDir] = f.job_dir;
  env[task_env::kNumGpus] =
      o.num_gpus ? std::optional<std::string>(std::to_string(*o.num_gpus)) : std::nullopt;
  env[task_env::kTfConfig] = nlohmann::json{
      {"cluster", cluster},
      {"task", {{"type", t.job}, {"index", t.index}}},
      {"environment", "cloud"}}.dump();
  env[task_env::kStatusFile] =
      t.is_worker() ? std::optional<std::string>(t.status_path) : std::nullopt;
  env[task_env::kMetricsFile] =
      t.is_worker() ? std::optional<std::string>(t.metrics_path) : std::nullopt;
  return env;
}

}  // namespace

Status check_launch_shape(const LaunchOptions& o) {
  if (o.num_ps < 1) {
    return invalid_argument("--ps=" + std::to_string(o.num_ps) +
                            ": need at least 1 parameter server");
  }
  if (o.num_workers < 1) {
    return invalid_argument("--workers=" + std::to_string(o.num_workers) +
                            ": need at least 1 worker");
  }
  return Status();
}

Result<LaunchPlan> plan_launch(const LaunchOptions& o, const LaunchFacts& f) {
  PSTRAIN_RETURN_IF_ERROR(check_launch_shape(o));
  PSTRAIN_RETURN_IF_ERROR(check_facts(o, f));

  LaunchPlan plan;
  if (!has_flag(o.training_flags, "--job_id")) plan.job_id = f.job_id;
  for (size_t i = 0; i < f.ports.size(); ++i) {
    const bool worker = i >= static_cast<size_t>(o.num_ps);
    (worker ? plan.worker_hosts : plan.ps_hosts)
        .push_back(o.host + ":" + std::to_string(f.ports[i]));
  }
  const std::vector<std::string> flags = common_flags(o, f, plan.job_id);
  if (o.metrics_port > 0 && o.metrics_port + f.ports.size() - 1 > 65535) {
    return invalid_argument("--metrics_port=" + std::to_string(o.metrics_port) + ": the job's " +
                            std::to_string(f.ports.size()) + " tasks serve their metrics on " +
                            std::to_string(o.metrics_port) +
                            " and the ports after it, beyond "
                            "65535; pick a lower port");
  }
  for (size_t i = 0; i < f.ports.size(); ++i) {
    PlannedTask t;
    const bool worker = i >= static_cast<size_t>(o.num_ps);
    const size_t index = worker ? i - static_cast<size_t>(o.num_ps) : i;
    t.job = worker ? "worker" : "ps";
    t.index = static_cast<int>(index);
    t.name = std::string(worker ? "wk" : "ps") + "-" + std::to_string(index);
    t.address = worker ? plan.worker_hosts[index] : plan.ps_hosts[index];
    t.argv = {f.binary, "--job_name=" + t.job};
    t.argv.insert(t.argv.end(), flags.begin(), flags.end());
    if (o.metrics_port >= 0) {
      const int port = o.metrics_port == 0 ? 0 : o.metrics_port + static_cast<int>(i);
      t.argv.push_back("--metrics_port=" + std::to_string(port));
    }
    t.stdout_path = f.job_dir + "/stdout-" + t.name + ".txt";
    t.stderr_path = f.job_dir + "/stderr-" + t.name + ".txt";
    if (worker) {
      t.status_path = f.job_dir + "/status-" + t.name + ".json";
      t.metrics_path = f.job_dir + "/metrics-" + t.name + ".jsonl";
    }
    t.env = task_environment(o, f, plan, t);
    plan.tasks.push_back(std::move(t));
  }
  return plan;
}

}  // namespace pstrain
