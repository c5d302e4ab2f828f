#include "runtime/job/launcher.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/base/files.h"
#include "runtime/base/progress.h"
#include "runtime/job/task_env.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr int kStderrTailLines = 12;

struct Task {
  LaunchedTask info;
  bool worker = false;
  std::string status_path;  // workers only
  std::optional<Subprocess> proc;

  bool running() const { return proc.has_value() && proc->running(); }
};

// What a worker's status file said last (runtime/job/task_env.h).
struct WorkerProgress : WorkerStatus {
  bool seen = false;
};

std::string absolute_dir(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  if (ec) p = dir;
  p = p.lexically_normal();
  if (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
  return p.string();
}

std::string timestamped_name() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "job-%Y%m%d-%H%M%S", &tm);
  return buf;
}

Result<std::string> make_job_dir(const std::string& requested) {
  if (!requested.empty()) {
    PSTRAIN_RETURN_IF_ERROR(make_directories(requested, "--job_dir"));
    return absolute_dir(requested);
  }
  PSTRAIN_RETURN_IF_ERROR(make_directories("jobs", "the launcher's jobs directory"));
  const std::string base = "jobs/" + timestamped_name();
  for (int i = 1; i <= 1000; ++i) {
    const std::string candidate = i == 1 ? base : base + "-" + std::to_string(i);
    if (::mkdir(candidate.c_str(), 0755) == 0) return absolute_dir(candidate);
    if (errno != EEXIST) {
      return unavailable("cannot create the job directory " + candidate + ": " +
                         std::strerror(errno) + " (or pass --job_dir)");
    }
  }
  return unavailable("cannot create a job directory under jobs/: " + base +
                     "-2 ... -1000 all exist (pass --job_dir)");
}

// An existing --job_dir may hold files of an earlier run that the monitor would misread.
void remove_stale_files(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool status = name.rfind("status-wk-", 0) == 0 && name.ends_with(".json");
    if (status || name == "summary.json") fs::remove(entry.path(), ec);
  }
}

bool has_flag(const std::vector<std::string>& flags, const std::string& name) {
  return std::any_of(flags.begin(), flags.end(), [&](const std::string& f) {
    return f == name || f.rfind(name + "=", 0) == 0;
  });
}

std::string random_job_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return std::to_string(id);
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

// Reads a status file; a missing, partial or malformed one leaves `p` as it was.
void read_progress(const std::string& path, WorkerProgress& p) {
  auto text = read_file(path);
  if (!text.ok()) return;
  std::optional<WorkerStatus> status = parse_worker_status(*text);
  if (!status) return;
  static_cast<WorkerStatus&>(p) = *status;
  p.seen = true;
}

// The last `n` lines of a file (reads at most its last 16 KiB).
std::vector<std::string> tail_lines(const std::string& path, int n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 16384);
  in.seekg(from);
  std::string text(static_cast<size_t>(size - from), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
  std::vector<std::string> lines;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  if (from > 0 && !lines.empty()) lines.erase(lines.begin());  // probably cut
  if (static_cast<int>(lines.size()) > n) lines.erase(lines.begin(), lines.end() - n);
  return lines;
}

std::string failure_report(const Task& t) {
  return t.info.name + " (" + t.info.job + " " + std::to_string(t.info.index) + ") " +
         t.proc->exit_status()->to_string() + "; see " + t.info.stderr_path;
}

std::string format_rate(double r) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.0f", r);
  return buf;
}

// Stops every running task: SIGTERM, then SIGKILL for those still running after `grace`.
void stop_all(std::vector<Task>& tasks, std::chrono::milliseconds grace, std::FILE* progress) {
  for (Task& t : tasks) {
    if (t.running()) (void)t.proc->terminate();
  }
  const auto deadline = Clock::now() + grace;
  for (Task& t : tasks) {
    if (t.running()) (void)t.proc->wait_until(deadline);
  }
  for (Task& t : tasks) {
    if (t.running()) {
      if (progress) {
        std::fprintf(progress,
                     "pstrain launch: %s did not stop within %.1f s of SIGTERM; killing it\n",
                     t.info.name.c_str(), std::chrono::duration<double>(grace).count());
      }
      t.proc->kill();
    }
  }
}

void sleep_for(std::chrono::milliseconds d) {
  // A signal (the launcher's SIGINT handler) ends the nap early; the loop then looks again.
  timespec ts{static_cast<time_t>(d.count() / 1000),
              static_cast<long>(d.count() % 1000) * 1000000L};
  ::nanosleep(&ts, nullptr);
}

}  // namespace

const char* launch_state_name(LaunchState s) {
  switch (s) {
    case LaunchState::kSucceeded:
      return "succeeded";
    case LaunchState::kFailed:
      return "failed";
    case LaunchState::kCancelled:
      return "cancelled";
  }
  return "?";
}

std::string LaunchSummary::to_json() const {
  nlohmann::json tj = nlohmann::json::array();
  for (const LaunchedTask& t : tasks) {
    nlohmann::json j = {{"name", t.name},         {"job", t.job},         {"index", t.index},
                        {"address", t.address},   {"started", t.started}, {"stdout", t.stdout_path},
                        {"stderr", t.stderr_path}};
    if (t.exit) {
      j["status"] = t.exit->to_string();
      if (t.exit->kind == ExitStatus::Kind::kExited) j["exit_code"] = t.exit->code;
      if (t.exit->kind == ExitStatus::Kind::kSignaled) {
        j["signal"] = t.exit->signal;
        j["signal_name"] = signal_name(t.exit->signal);
      }
    } else {
      j["status"] = "not started";
    }
    tj.push_back(std::move(j));
  }
  nlohmann::json j = {{"state", launch_state_name(state)},
                      {"job_dir", job_dir},
                      {"job_id", job_id},
                      {"num_ps", num_ps},
                      {"num_workers", num_workers},
                      {"sync_replicas", sync_replicas},
                      {"config", config},
                      {"global_step", global_step},
                      {"train_steps", train_steps},
                      {"test_accuracy", nullptr},
                      {"examples_per_second", examples_per_second},
                      {"wall_seconds", wall_seconds},
                      {"tasks", std::move(tj)}};
  if (test_accuracy) j["test_accuracy"] = *test_accuracy;
  if (!failed_task.empty()) j["failed_task"] = failed_task;
  if (!failed_task_stderr.empty()) j["failed_task_stderr"] = failed_task_stderr;
  if (!error.empty()) j["error"] = error;
  return j.dump(2) + "\n";
}

std::string describe_launch(const LaunchSummary& s) {
  char buf[512];
  std::string out;
  const std::string shape = std::to_string(s.num_ps) + " ps + " + std::to_string(s.num_workers) +
                            " worker" + (s.num_workers == 1 ? "" : "s") +
                            (s.sync_replicas ? ", sync" : ", async");
  std::snprintf(buf, sizeof(buf), "job %s %s %.1f s (%s): global step %lld",
                launch_state_name(s.state), s.state == LaunchState::kSucceeded ? "in" : "after",
                s.wall_seconds, shape.c_str(), static_cast<long long>(s.global_step));
  out += buf;
  if (s.train_steps > 0) out += "/" + std::to_string(s.train_steps);
  if (s.test_accuracy) {
    std::snprintf(buf, sizeof(buf), ", test accuracy %.4f", *s.test_accuracy);
    out += buf;
  }
  if (s.examples_per_second > 0) out += ", " + format_rate(s.examples_per_second) + " examples/s";
  out += "\n";
  if (!s.error.empty()) out += s.error + "\n";
  out += "summary: " + s.summary_path + "\n";
  return out;
}

Result<LaunchSummary> launch_local_job(const LaunchOptions& o, std::FILE* progress) {
  const auto start = Clock::now();
  if (o.num_ps < 1)
    return invalid_argument("--ps=" + std::to_string(o.num_ps) +
                            ": need at least 1 parameter server");
  if (o.num_workers < 1) {
    return invalid_argument("--workers=" + std::to_string(o.num_workers) +
                            ": need at least 1 worker");
  }
  std::string binary = o.pstrain_binary.empty() ? self_executable_path() : o.pstrain_binary;
  if (binary.empty()) {
    return failed_precondition(
        "cannot find this executable (/proc/self/exe): pass --pstrain_binary");
  }
  struct stat st {};
  if (::stat(binary.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      ::access(binary.c_str(), X_OK) != 0) {
    return invalid_argument("--pstrain_binary=" + binary + " is not an executable file");
  }

  const int n = o.num_ps + o.num_workers;
  PSTRAIN_ASSIGN_OR_RETURN(std::vector<int> ports, pick_free_tcp_ports(n));
  PSTRAIN_ASSIGN_OR_RETURN(std::string job_dir, make_job_dir(o.job_dir));
  remove_stale_files(job_dir);

  LaunchSummary s;
  s.job_dir = job_dir;
  s.summary_path = job_dir + "/summary.json";
  s.config = o.training_flags;
  s.num_ps = o.num_ps;
  s.num_workers = o.num_workers;
  s.sync_replicas = o.sync_replicas;

  std::vector<std::string> ps_hosts, worker_hosts;
  for (int i = 0; i < n; ++i) {
    (i < o.num_ps ? ps_hosts : worker_hosts)
        .push_back(o.host + ":" + std::to_string(ports[static_cast<size_t>(i)]));
  }
  std::vector<std::string> args = {binary, "--job_name=ps"};
  args.insert(args.end(), o.training_flags.begin(), o.training_flags.end());
  if (!has_flag(o.training_flags, "--job_id")) {
    s.job_id = random_job_id();
    args.push_back("--job_id=" + s.job_id);
  }
  if (!has_flag(o.training_flags, "--cpu_threads")) {
    // The tasks share this machine's cores: give each worker its share (the parameter
    // servers mostly wait on sockets) instead of letting every task use them all.
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const unsigned share = std::max(1u, cores / static_cast<unsigned>(o.num_workers));
    args.push_back("--cpu_threads=" + std::to_string(share));
  }

  std::vector<Task> tasks;
  for (int i = 0; i < n; ++i) {
    Task t;
    t.worker = i >= o.num_ps;
    t.info.job = t.worker ? "worker" : "ps";
    t.info.index = t.worker ? i - o.num_ps : i;
    const std::string tag =
        std::string(t.worker ? "wk" : "ps") + "-" + std::to_string(t.info.index);
    t.info.name = tag;
    t.info.address = t.worker ? worker_hosts[static_cast<size_t>(t.info.index)]
                              : ps_hosts[static_cast<size_t>(t.info.index)];
    t.info.stdout_path = job_dir + "/stdout-" + tag + ".txt";
    t.info.stderr_path = job_dir + "/stderr-" + tag + ".txt";
    if (t.worker) t.status_path = job_dir + "/status-" + tag + ".json";
    tasks.push_back(std::move(t));
  }

  // Spawn: PS tasks first, then workers.
  const std::string ps_list = join(ps_hosts, ",");
  const std::string worker_list = join(worker_hosts, ",");
  const nlohmann::json cluster = {{"ps", ps_hosts}, {"worker", worker_hosts}};
  for (Task& t : tasks) {
    SubprocessOptions so;
    so.argv = args;
    so.argv[1] = "--job_name=" + t.info.job;
    so.env[task_env::kPsHosts] = ps_list;
    so.env[task_env::kWorkerHosts] = worker_list;
    so.env[task_env::kTaskIndex] = std::to_string(t.info.index);
    so.env[task_env::kJobName] = fs::path(job_dir).filename().string();
    so.env[task_env::kStdoutErrDir] = job_dir;
    so.env[task_env::kNumGpus] =
        o.num_gpus ? std::optional<std::string>(std::to_string(*o.num_gpus)) : std::nullopt;
    so.env[task_env::kTfConfig] = nlohmann::json{
        {"cluster", cluster},
        {"task", {{"type", t.info.job}, {"index", t.info.index}}},
        {"environment", "cloud"}}.dump();
    so.env[task_env::kStatusFile] =
        t.worker ? std::optional<std::string>(t.status_path) : std::nullopt;
    so.stdout_path = t.info.stdout_path;
    so.stderr_path = t.info.stderr_path;
    so.stdin_from_dev_null = true;
    so.new_process_group = true;
    so.kill_on_parent_death = true;
    auto p = Subprocess::spawn(so);
    if (!p.ok()) {
      s.failed_task = t.info.name;
      s.error = "cannot start " + t.info.name + ": " + p.status().message();
      break;
    }
    t.proc.emplace(std::move(p).value());
    t.info.started = true;
  }

  if (progress) {
    std::fprintf(progress, "pstrain launch: %d ps + %d worker%s on %s, job directory %s\n",
                 o.num_ps, o.num_workers, o.num_workers == 1 ? "" : "s", o.host.c_str(),
                 job_dir.c_str());
    std::fflush(progress);
  }

  std::vector<WorkerProgress> status(static_cast<size_t>(o.num_workers));
  auto read_all_status = [&] {
    for (const Task& t : tasks) {
      if (t.worker) read_progress(t.status_path, status[static_cast<size_t>(t.info.index)]);
    }
  };

  std::optional<ProgressLine> line;
  if (progress) line.emplace(progress);
  bool stop = false;  // stop the tasks still running
  if (!s.error.empty()) {
    stop = true;
    s.state = LaunchState::kFailed;
  } else {
    std::optional<Clock::time_point> ps_deadline;
    while (true) {
      if (o.cancel && o.cancel->load()) {
        s.state = LaunchState::kCancelled;
        s.error = "cancelled: every task was stopped";
        stop = true;
        break;
      }
      for (Task& t : tasks) {
        if (t.running()) t.proc->poll();
      }
      const Task* failed = nullptr;
      for (const Task& t : tasks) {
        if (t.proc && !t.running() && !t.proc->exit_status()->success()) {
          failed = &t;
          break;
        }
      }
      if (failed) {
        s.state = LaunchState::kFailed;
        s.failed_task = failed->info.name;
        s.error = failure_report(*failed);
        s.failed_task_stderr = tail_lines(failed->info.stderr_path, kStderrTailLines);
        stop = true;
        break;
      }
      int running = 0, ps_running = 0, workers_running = 0;
      for (const Task& t : tasks) {
        if (!t.running()) continue;
        ++running;
        ++(t.worker ? workers_running : ps_running);
      }
      if (running == 0) {
        s.state = LaunchState::kSucceeded;
        break;
      }
      if (workers_running == 0) {
        const auto now = Clock::now();
        if (!ps_deadline) {
          ps_deadline = now + o.ps_exit_timeout;
        } else if (now >= *ps_deadline) {
          std::vector<std::string> names;
          for (const Task& t : tasks) {
            if (t.running()) names.push_back(t.info.name);
          }
          s.state = LaunchState::kFailed;
          s.failed_task = names.front();
          char buf[64];
          std::snprintf(buf, sizeof(buf), "%.1f",
                        std::chrono::duration<double>(o.ps_exit_timeout).count());
          s.error = join(names, ", ") + " did not exit within " + buf +
                    " s after every worker finished (a pstrain bug: please report it); killed";
          for (Task& t : tasks) {
            if (t.running()) t.proc->kill();
          }
          break;
        }
      }

      read_all_status();
      int64_t step = 0, steps = 0;
      double rate = 0;
      bool any = false;
      for (const WorkerProgress& w : status) {
        if (!w.seen) continue;
        any = true;
        step = std::max(step, w.global_step);
        steps = std::max(steps, w.train_steps);
        rate += w.examples_per_second;
      }
      char buf[256];
      std::snprintf(buf, sizeof(buf), "[%4.0fs] ",
                    std::chrono::duration<double>(Clock::now() - start).count());
      std::string text = buf;
      if (any) {
        text += "global step " + std::to_string(step);
        if (steps > 0) text += "/" + std::to_string(steps);
        text += " | " + format_rate(rate) + " examples/s";
        if (status[0].loss) {
          std::snprintf(buf, sizeof(buf), " | loss %.4f", *status[0].loss);
          text += buf;
        }
      } else {
        text += "starting";
      }
      text += " | " + std::to_string(running) + "/" + std::to_string(n) + " tasks running";
      if (workers_running == 0) text += " (workers done; waiting for the ps to exit)";
      if (line) line->update(text);
      sleep_for(o.poll_interval);
    }
  }
  if (line) line->finish();
  if (stop) stop_all(tasks, o.stop_grace, progress);

  // Final numbers from the workers' last status.
  read_all_status();
  for (const WorkerProgress& w : status) {
    if (!w.seen) continue;
    s.global_step = std::max(s.global_step, w.global_step);
    s.train_steps = std::max(s.train_steps, w.train_steps);
    s.examples_per_second += w.examples_per_second;
  }
  s.test_accuracy = status[0].test_accuracy;
  for (Task& t : tasks) {
    if (t.proc) t.info.exit = t.proc->exit_status();
    s.tasks.push_back(t.info);
  }
  s.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  if (progress && s.state != LaunchState::kSucceeded) {
    std::fprintf(progress, "pstrain launch: job %s: %s\n", launch_state_name(s.state),
                 s.error.c_str());
    if (!s.failed_task_stderr.empty()) {
      std::fprintf(progress, "last lines of %s's stderr:\n", s.failed_task.c_str());
      for (const auto& l : s.failed_task_stderr) std::fprintf(progress, "    %s\n", l.c_str());
    }
    std::fflush(progress);
  }
  Status written = write_file_atomically(s.summary_path, s.to_json());
  if (!written.ok()) return written.with_context("cannot write the job summary");
  return s;
}

}  // namespace pstrain
