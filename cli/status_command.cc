// `pstrain status`: how a job is doing, from its job directory (the files `pstrain launch`
// writes) or by asking its parameter servers (STATUS, ps/status_query.h).
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "ps/status_query.h"
#include "runtime/base/files.h"
#include "runtime/job/cluster.h"
#include "runtime/job/task_env.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;

struct TaskView {
  std::string name;  // "ps-0", "wk-1"
  std::optional<WorkerStatus> status;
  std::optional<double> age_s;  // since the status file was last written
  std::string exit;             // summary.json's "status" of the task ("" when unknown)
  bool silent = false;
  bool slow = false;
};

// Sort "ps-*" before "wk-*", then by index.
bool task_less(const std::string& a, const std::string& b) {
  auto key = [](const std::string& n) {
    const auto dash = n.rfind('-');
    int idx = 0;
    if (dash != std::string::npos) idx = std::atoi(n.c_str() + dash + 1);
    return std::pair{n.substr(0, dash), idx};
  };
  return key(a) < key(b);
}

// Seconds since `path` was last modified; nullopt when it cannot be read.
std::optional<double> age_of(const fs::path& path) {
  std::error_code ec;
  const auto t = fs::last_write_time(path, ec);
  if (ec) return std::nullopt;
  const auto age = fs::file_time_type::clock::now() - t;
  return std::max(0.0, std::chrono::duration<double>(age).count());
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

int job_dir_status(const StatusCommandFlags& f, std::FILE* out) {
  const fs::path dir = f.job_dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::fprintf(stderr, "%s is not a directory: give a job directory (pstrain launch --job_dir)\n",
                 f.job_dir.c_str());
    return kExitUsage;
  }
  std::map<std::string, TaskView, decltype(&task_less)> tasks(&task_less);
  auto task = [&](const std::string& name) -> TaskView& {
    TaskView& t = tasks[name];
    t.name = name;
    return t;
  };
  bool has_status_file = false;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    auto strip = [&](const std::string& prefix, const std::string& suffix) -> std::string {
      if (file.size() > prefix.size() + suffix.size() && file.rfind(prefix, 0) == 0 &&
          file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0)
        return file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
      return "";
    };
    if (std::string name = strip("status-", ".json"); !name.empty()) {
      has_status_file = true;
      TaskView& t = task(name);
      auto text = read_file(entry.path().string());
      if (text.ok()) t.status = parse_worker_status(*text);
      t.age_s = age_of(entry.path());
    } else if (std::string n1 = strip("stderr-", ".txt"); !n1.empty()) {
      task(n1);
    } else if (std::string n2 = strip("stdout-", ".txt"); !n2.empty()) {
      task(n2);
    }
  }
  nlohmann::json summary;
  const fs::path summary_path = dir / "summary.json";
  if (fs::exists(summary_path, ec)) {
    auto text = read_file(summary_path.string());
    if (text.ok()) summary = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (summary.is_discarded() || !summary.is_object()) summary = nlohmann::json();
  }
  if (!has_status_file && !summary.is_object()) {
    std::fprintf(stderr,
                 "%s is not a job directory: it has no status-*.json and no summary.json "
                 "(pstrain launch writes them)\n",
                 f.job_dir.c_str());
    return kExitUsage;
  }
  if (summary.is_object() && summary.contains("tasks") && summary["tasks"].is_array()) {
    for (const auto& tj : summary["tasks"]) {
      if (!tj.is_object() || !tj.contains("name") || !tj["name"].is_string()) continue;
      TaskView& t = task(tj["name"].get<std::string>());
      if (tj.contains("status") && tj["status"].is_string()) t.exit = tj["status"];
    }
  }
  const bool finished = summary.is_object();
  std::string state = "running (no summary.json yet)";
  if (finished && summary.contains("state") && summary["state"].is_string())
    state = summary["state"].get<std::string>();

  // Job figures: the workers' highest global step, their train_steps, the sum of their rates.
  int64_t global_step = 0, train_steps = 0, max_local = 0;
  double rate = 0;
  int reporting = 0;
  for (auto& [name, t] : tasks) {
    if (!t.status) continue;
    global_step = std::max(global_step, t.status->global_step);
    train_steps = std::max(train_steps, t.status->train_steps);
    max_local = std::max(max_local, t.status->local_step);
    ++reporting;
  }
  std::vector<std::string> problems;
  for (auto& [name, t] : tasks) {
    if (!t.status) continue;
    const bool active = t.status->state != "done" && t.exit.empty();
    if (active && t.age_s && *t.age_s > f.silent_s) {
      t.silent = true;
      problems.push_back(name + " is silent: its status file was last written " +
                         fmt("%.0f", *t.age_s) + " s ago (hung or dead? see stderr-" + name +
                         ".txt)");
    }
    const int64_t behind = max_local - t.status->local_step;
    if (active && reporting > 1 && behind >= 10 && behind * 4 > max_local) {
      t.slow = true;
      problems.push_back(name + " is slow: local step " + std::to_string(t.status->local_step) +
                         ", the fastest worker is at " + std::to_string(max_local));
    }
  }
  // The workers training now (a silent worker's last rate is no longer true).
  for (const auto& [name, t] : tasks) {
    if (t.status && t.status->state != "done" && !t.silent) rate += t.status->examples_per_second;
  }
  if (finished && summary.contains("error") && summary["error"].is_string())
    problems.push_back("job error: " + summary["error"].get<std::string>());
  if (finished) {
    if (summary.contains("global_step") && summary["global_step"].is_number_integer())
      global_step = std::max(global_step, summary["global_step"].get<int64_t>());
    if (summary.contains("train_steps") && summary["train_steps"].is_number_integer())
      train_steps = std::max(train_steps, summary["train_steps"].get<int64_t>());
    if (summary.contains("examples_per_second") && summary["examples_per_second"].is_number())
      rate = summary["examples_per_second"].get<double>();
  }

  if (f.json) {
    nlohmann::json j = {{"job_dir", fs::absolute(dir).string()},
                        {"state", finished ? state : "running"},
                        {"summary", finished},
                        {"global_step", global_step},
                        {"train_steps", train_steps},
                        {"examples_per_second", rate},
                        {"problems", problems}};
    nlohmann::json tj = nlohmann::json::array();
    for (const auto& [name, t] : tasks) {
      nlohmann::json e = {{"name", name}, {"silent", t.silent}, {"slow", t.slow}};
      if (t.status) {
        e["state"] = t.status->state;
        e["local_step"] = t.status->local_step;
        e["global_step"] = t.status->global_step;
        e["train_steps"] = t.status->train_steps;
        e["examples_per_second"] = t.status->examples_per_second;
        e["loss"] = t.status->loss ? nlohmann::json(*t.status->loss) : nlohmann::json();
        if (t.status->test_accuracy) e["test_accuracy"] = *t.status->test_accuracy;
      } else {
        e["state"] = nullptr;
      }
      e["status_age_s"] = t.age_s ? nlohmann::json(*t.age_s) : nlohmann::json();
      e["exit"] = t.exit.empty() ? nlohmann::json() : nlohmann::json(t.exit);
      tj.push_back(std::move(e));
    }
    j["tasks"] = std::move(tj);
    std::fprintf(out, "%s\n", j.dump(2).c_str());
    return kExitOk;
  }

  std::fprintf(out, "job %s: %s\n", fs::absolute(dir).string().c_str(), state.c_str());
  std::string progress = "global step " + std::to_string(global_step);
  if (train_steps > 0) {
    progress += " of " + std::to_string(train_steps) +
                fmt(" (%.0f%%)",
                    100.0 * static_cast<double>(global_step) / static_cast<double>(train_steps));
  }
  std::fprintf(out, "%s, %s examples/s\n", progress.c_str(), fmt("%.1f", rate).c_str());
  std::fprintf(out, "%-6s %-11s %8s %8s %9s %11s %10s  %s\n", "task", "state", "local", "global",
               "loss", "examples/s", "updated", "exit");
  for (const auto& [name, t] : tasks) {
    const std::string st = t.status ? t.status->state : "-";
    const std::string local = t.status ? std::to_string(t.status->local_step) : "-";
    const std::string global = t.status ? std::to_string(t.status->global_step) : "-";
    const std::string loss = t.status && t.status->loss ? fmt("%.4f", *t.status->loss) : "-";
    const std::string eps = t.status ? fmt("%.1f", t.status->examples_per_second) : "-";
    const std::string upd = t.age_s ? fmt("%.0f s ago", *t.age_s) : "-";
    std::string exit = t.exit.empty() ? (finished ? "-" : "(not known from files)") : t.exit;
    if (t.silent) exit += " SILENT";
    if (t.slow) exit += " SLOW";
    std::fprintf(out, "%-6s %-11s %8s %8s %9s %11s %10s  %s\n", name.c_str(), st.c_str(),
                 local.c_str(), global.c_str(), loss.c_str(), eps.c_str(), upd.c_str(),
                 exit.c_str());
  }
  if (problems.empty()) {
    std::fprintf(out, "no problem seen\n");
  } else {
    for (const auto& p : problems) std::fprintf(out, "problem: %s\n", p.c_str());
  }
  return kExitOk;
}

std::optional<std::string> env_value(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int ps_status(const StatusCommandFlags& f, std::FILE* out) {
  std::string ps_text = f.ps_hosts;
  if (ps_text.empty()) ps_text = env_value(task_env::kPsHosts).value_or("");
  auto ps = parse_host_list(ps_text);
  if (!ps.ok()) {
    std::fprintf(stderr, "--ps_hosts: %s\n", ps.status().message().c_str());
    return kExitUsage;
  }
  // A job with a secret answers only its own clients (docs/security.md).
  SecurityFlags security = f.security;
  if (security.secret_file.empty()) security.secret_file = env_value(kSecretFileEnv).value_or("");
  auto keys = load_security(security);
  if (!keys.ok()) {
    std::fprintf(stderr, "%s\n", keys.status().message().c_str());
    return kExitUsage;
  }
  uint64_t job_id = 0;
  if (f.job_id.empty() && *keys) {
    job_id = (*keys)->job_id;  // the job id comes from the secret
  } else if (!f.job_id.empty()) {
    try {
      size_t used = 0;
      job_id = std::stoull(f.job_id, &used, 0);
      if (used != f.job_id.size()) job_id = 0;
    } catch (const std::exception&) {
      job_id = 0;
    }
    if (job_id == 0) {
      std::fprintf(stderr, "--job_id=%s is not a non-zero 64-bit number\n", f.job_id.c_str());
      return kExitUsage;
    }
  } else {
    std::string wk_text = f.worker_hosts;
    if (wk_text.empty()) wk_text = env_value(task_env::kWorkerHosts).value_or("");
    if (wk_text.empty()) {
      std::fprintf(stderr,
                   "give --job_id (as the job was started with) or --worker_hosts (the job id "
                   "is derived from --ps_hosts and --worker_hosts when the job had no "
                   "--job_id)\n");
      return kExitUsage;
    }
    auto workers = parse_host_list(wk_text);
    if (!workers.ok()) {
      std::fprintf(stderr, "--worker_hosts: %s\n", workers.status().message().c_str());
      return kExitUsage;
    }
    job_id = derive_job_id(ClusterSpec{*ps, *workers});
  }
  if (!(f.timeout_s >= 0.01 && f.timeout_s <= 3600)) {
    std::fprintf(stderr, "--timeout_s=%g is out of range: give seconds between 0.01 and 3600\n",
                 f.timeout_s);
    return kExitUsage;
  }
  zmq::context_t ctx{1};
  const auto answers = query_ps_status(
      ctx, *ps, job_id, std::chrono::milliseconds(static_cast<int64_t>(f.timeout_s * 1000)),
      keys->get());
  std::vector<std::string> silent;
  for (const auto& a : answers)
    if (!a.answered)
      silent.push_back("ps " + std::to_string(a.ps) + " (" + a.address.to_string() + ")");

  if (f.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& a : answers) {
      nlohmann::json e = {{"ps", a.ps},
                          {"address", a.address.to_string()},
                          {"answered", a.answered},
                          {"summary", describe_ps_progress(a)}};
      if (!a.answered) {
        e["error"] = a.error;
      } else {
        const wire::PsStats& s = a.stats;
        e["initialized"] = s.initialized();
        e["global_step"] = s.global_step();
        e["train_steps"] = s.train_steps();
        e["sync_replicas"] = s.sync_replicas();
        e["replicas_to_aggregate"] = s.replicas_to_aggregate();
        e["gradients_pending"] = s.gradients_pending();
        e["gradients_applied"] = s.gradients_applied();
        e["stale_gradients_dropped"] = s.stale_gradients_dropped();
        e["bad_messages"] = s.bad_messages();
        e["foreign_messages"] = s.foreign_messages();
        e["unauthenticated"] = s.unauthenticated();
        e["non_finite_gradients"] = s.non_finite_gradients();
        e["connections"] = s.connections();
        e["connections_evicted"] = s.connections_evicted();
        e["num_workers"] = s.num_workers();
        e["workers_done"] = s.workers_done();
        e["workers_lost"] = s.workers_lost();
        nlohmann::json ws = nlohmann::json::array();
        for (const wire::PsWorker& w : s.workers()) {
          ws.push_back({{"index", w.index()},
                        {"state", ps_worker_state_name(w.state())},
                        {"ms_since_seen", w.ms_since_seen()},
                        {"gradients", w.gradients()},
                        {"parked_pulls", w.parked_pulls()},
                        {"pending_gradient", w.pending_gradient()}});
        }
        e["workers"] = std::move(ws);
      }
      arr.push_back(std::move(e));
    }
    nlohmann::json j = {{"job_id", job_id}, {"all_answered", silent.empty()}, {"ps", arr}};
    std::fprintf(out, "%s\n", j.dump(2).c_str());
  } else {
    for (const auto& a : answers) {
      std::fprintf(out, "%s\n", describe_ps_progress(a).c_str());
      if (!a.answered) continue;
      const wire::PsStats& s = a.stats;
      std::fprintf(out,
                   "  initialised %s, gradients applied %lld, dropped %lld, workers done %d of "
                   "%d\n",
                   s.initialized() ? "yes" : "no", static_cast<long long>(s.gradients_applied()),
                   static_cast<long long>(s.stale_gradients_dropped()), s.workers_done(),
                   s.num_workers());
      for (const wire::PsWorker& w : s.workers()) {
        std::string line =
            "  worker " + std::to_string(w.index()) + ": " + ps_worker_state_name(w.state());
        if (w.ms_since_seen() >= 0)
          line += ", last message " + fmt("%.1f", static_cast<double>(w.ms_since_seen()) / 1000) +
                  " s ago";
        line += ", " + std::to_string(w.gradients()) + " gradients";
        if (w.pending_gradient()) line += ", gradient for this step held";
        if (w.parked_pulls() > 0) line += ", waiting in a pull";
        std::fprintf(out, "%s\n", line.c_str());
      }
    }
    if (!silent.empty()) {
      std::string names;
      for (size_t i = 0; i < silent.size(); ++i) names += (i ? ", " : "") + silent[i];
      std::fprintf(out, "%zu of %zu parameter servers did not answer: %s\n", silent.size(),
                   answers.size(), names.c_str());
    }
  }
  return silent.empty() ? kExitOk : kExitFailure;
}

}  // namespace

int run_status_command(const std::vector<std::string>& args, std::FILE* out) {
  StatusCommandFlags f;
  CLI::App app{
      "Show how a job is doing: `pstrain status JOB_DIR` reads the files `pstrain launch` "
      "writes; `pstrain status --ps_hosts=h:p,...` asks every parameter server (STATUS).\n"
      "Exit codes: 0 ok, 1 a parameter server did not answer, 2 bad usage or not a job "
      "directory.",
      "pstrain status"};
  app.add_option("job_dir", f.job_dir, "A job directory (pstrain launch --job_dir)");
  app.add_option("--ps_hosts", f.ps_hosts,
                 "Ask these parameter servers (default: $AZ_BATCHAI_PS_HOSTS)");
  app.add_option("--worker_hosts", f.worker_hosts,
                 "The job's workers, to derive its job id as the tasks do (default: "
                 "$AZ_BATCHAI_WORKER_HOSTS)");
  app.add_option("--job_id", f.job_id,
                 "The job id the job was started with (pstrain launch "
                 "picks one: see summary.json)");
  app.add_option("--timeout_s", f.timeout_s, "How long to wait for the servers' answers")
      ->capture_default_str();
  app.add_option("--silent_s", f.silent_s,
                 "JOB_DIR: a worker whose status file is older than this is silent")
      ->capture_default_str();
  app.add_flag("--json", f.json, "Machine-readable output");
  add_security_flags(app, f.security);
  if (std::optional<int> code = parse_command_words(app, args)) return *code;
  const bool ps_mode = !f.ps_hosts.empty() || !f.worker_hosts.empty() || !f.job_id.empty();
  if (!f.job_dir.empty() && ps_mode) {
    std::fprintf(stderr, "give either a job directory or --ps_hosts, not both\n");
    return kExitUsage;
  }
  if (!f.job_dir.empty()) return job_dir_status(f, out);
  if (ps_mode || env_value(task_env::kPsHosts)) return ps_status(f, out);
  std::fprintf(stderr, "%s\n", app.help().c_str());
  std::fprintf(stderr, "give a job directory or --ps_hosts\n");
  return kExitUsage;
}

}  // namespace pstrain
