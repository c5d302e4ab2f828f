#include "runtime/job/launcher.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/base/progress.h"
#include "runtime/job/chart.h"
#include "runtime/job/launch_plan.h"
#include "runtime/job/task_env.h"
#include "runtime/wire/security.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr int kStderrTailLines = 12;

// ---- Before the plan: the facts it needs (checked binary, job directory, ports, job id).

std::string absolute_dir(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  if (ec) p = dir;
  p = p.lexically_normal();
  if (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
  return p.string();
}

std::string iso8601_utc(std::time_t t) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
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

// The job directory, created (or reused without an earlier run's status and summary files).
Result<std::string> prepare_job_dir(const std::string& requested) {
  PSTRAIN_ASSIGN_OR_RETURN(std::string dir, make_job_dir(requested));
  remove_stale_files(dir);
  return dir;
}

// The executable every task runs: --pstrain_binary, else this one.
Result<std::string> resolve_binary(const LaunchOptions& o) {
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
  return binary;
}

std::string random_job_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return std::to_string(id);
}

// ---- Tasks and what the workers report.

struct Task {
  PlannedTask plan;
  std::optional<Subprocess> proc;  // set once started (again after each restart)
  int restarts = 0;                // times it was started again after failing (--max_restarts)
  bool left_behind = false;        // a worker that failed for good while the others went on

  bool running() const { return proc.has_value() && proc->running(); }
  // Reaped with a non-zero exit or a signal.
  bool failed() const {
    if (!proc || proc->running()) return false;
    const std::optional<ExitStatus>& st = proc->exit_status();
    return st.has_value() && !st->success();
  }
};

struct RunningCounts {
  int all = 0, ps = 0, workers = 0;
};

RunningCounts count_running(const std::vector<Task>& tasks) {
  RunningCounts c;
  for (const Task& t : tasks) {
    if (!t.running()) continue;
    ++c.all;
    ++(t.plan.is_worker() ? c.workers : c.ps);
  }
  return c;
}

// The workers' numbers summed up: highest steps, total rate.
struct WorkerTotals {
  bool any = false;  // some worker reported
  int64_t global_step = 0;
  int64_t train_steps = 0;
  double examples_per_second = 0;
};

// What each worker's status file (runtime/job/task_env.h) said last, by worker index.
class WorkerBoard {
 public:
  explicit WorkerBoard(int num_workers) : last_(static_cast<size_t>(std::max(0, num_workers))) {}

  // Re-reads every worker's status file; a missing, partial or malformed one keeps what that
  // worker said before.
  void read(const std::vector<Task>& tasks) {
    for (const Task& t : tasks) {
      const size_t i = static_cast<size_t>(t.plan.index);
      if (!t.plan.is_worker() || i >= last_.size()) continue;
      auto text = read_file(t.plan.status_path);
      if (!text.ok()) continue;
      if (std::optional<WorkerStatus> st = parse_worker_status(*text)) last_[i] = std::move(st);
    }
  }

  WorkerTotals totals() const {
    WorkerTotals sum;
    for (const std::optional<WorkerStatus>& w : last_) {
      if (!w) continue;
      sum.any = true;
      sum.global_step = std::max(sum.global_step, w->global_step);
      sum.train_steps = std::max(sum.train_steps, w->train_steps);
      sum.examples_per_second += w->examples_per_second;
    }
    return sum;
  }

  // What worker `index` said its state was last ("" if it never reported).
  std::string state_of(int index) const {
    const size_t i = static_cast<size_t>(index);
    return i < last_.size() && last_[i] ? last_[i]->state : std::string();
  }

  // Worker 0's last status, if it reported; when worker 0 has no test accuracy but another
  // worker has (it took the chief's duties over), the lowest such worker's.
  const WorkerStatus* chief() const {
    const WorkerStatus* first = !last_.empty() && last_[0] ? &*last_[0] : nullptr;
    if (first && first->test_accuracy) return first;
    for (const auto& w : last_) {
      if (w && w->test_accuracy) return &*w;
    }
    return first;
  }

 private:
  std::vector<std::optional<WorkerStatus>> last_;
};

// How the job ended.
struct Outcome {
  LaunchState state = LaunchState::kFailed;
  std::string failed_task;
  std::string error;  // one line
  std::vector<std::string> failed_task_stderr;
  std::vector<std::string> warnings;  // tasks restarted or left behind on the way
};

// ---- Small helpers.

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

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string format_rate(double r) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.0f", r);
  return buf;
}

std::string format_seconds(std::chrono::milliseconds d) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f", std::chrono::duration<double>(d).count());
  return buf;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void sleep_for(std::chrono::milliseconds d) {
  // A signal (the launcher's SIGINT handler) ends the nap early; the loop then looks again.
  timespec ts{static_cast<time_t>(d.count() / 1000),
              static_cast<long>(d.count() % 1000) * 1000000L};
  ::nanosleep(&ts, nullptr);
}

// Sends SIGTERM to the running tasks that `pick` selects and waits for them until `deadline`.
template <typename Pick>
void terminate_and_wait(std::vector<Task>& tasks, Clock::time_point deadline, Pick pick) {
  for (Task& t : tasks) {
    if (pick(t) && t.running()) (void)t.proc->terminate();
  }
  for (Task& t : tasks) {
    if (pick(t) && t.running()) (void)t.proc->wait_until(deadline);
  }
}

// Stops every running task: SIGTERM to the workers first (each stops between two steps and
// records "cancelled" in its status file while the PS tasks still answer), then to the PS
// tasks, each group with `grace` to exit; SIGKILL for those still running after that. Returns
// a line for each task it had to kill.
std::vector<std::string> stop_all(std::vector<Task>& tasks, std::chrono::milliseconds grace) {
  terminate_and_wait(tasks, Clock::now() + grace, [](const Task& t) { return t.plan.is_worker(); });
  terminate_and_wait(tasks, Clock::now() + grace, [](const Task&) { return true; });
  std::vector<std::string> notes;
  for (Task& t : tasks) {
    if (!t.running()) continue;
    notes.push_back("pstrain launch: " + t.plan.name + " did not stop within " +
                    format_seconds(grace) + " s of SIGTERM; killed it");
    t.proc->kill();
  }
  return notes;
}

void print_lines(const std::vector<std::string>& lines, std::FILE* out) {
  if (!out) return;
  for (const std::string& l : lines) std::fprintf(out, "%s\n", l.c_str());
  std::fflush(out);
}

// ---- Spawn.

void announce(const LaunchOptions& o, const std::string& job_dir, std::FILE* progress) {
  if (!progress) return;
  std::fprintf(progress, "pstrain launch: %d ps + %d worker%s on %s, job directory %s\n", o.num_ps,
               o.num_workers, o.num_workers == 1 ? "" : "s", o.host.c_str(), job_dir.c_str());
  std::fflush(progress);
}

SubprocessOptions subprocess_options(const PlannedTask& t) {
  SubprocessOptions so;
  so.argv = t.argv;
  so.env = t.env;
  so.stdout_path = t.stdout_path;
  so.stderr_path = t.stderr_path;
  so.stdin_from_dev_null = true;
  so.new_process_group = true;
  so.kill_on_parent_death = true;
  return so;
}

// Starts the tasks in their order (PS tasks first), each leading its own process group, with
// stdin from /dev/null, killed if this thread dies. If one cannot start, the tasks started
// before it are stopped (stop_all) and the failure is returned: nothing is left running.
std::optional<Outcome> spawn_tasks(std::vector<Task>& tasks, const LaunchOptions& o,
                                   std::FILE* progress) {
  for (Task& t : tasks) {
    auto p = Subprocess::spawn(subprocess_options(t.plan));
    if (!p.ok()) {
      print_lines(stop_all(tasks, o.stop_grace), progress);
      Outcome failed;
      failed.failed_task = t.plan.name;
      failed.error = "cannot start " + t.plan.name + ": " + p.status().message();
      return failed;
    }
    t.proc.emplace(std::move(p).value());
  }
  return std::nullopt;
}

// ---- Monitor.

// The end of the job as one look at the tasks saw it; `stop_the_rest`: tasks may still run.
struct Ending {
  Outcome outcome;
  bool stop_the_rest = false;
};

Ending cancelled_ending(const LaunchOptions& opt) {
  Outcome o;
  o.state = LaunchState::kCancelled;
  const int sig = opt.cancel_signal ? opt.cancel_signal->load() : 0;
  o.error = (sig > 0 ? "interrupted by " + signal_name(sig) : std::string("interrupted")) +
            ": every task was stopped";
  return {std::move(o), true};
}

Ending failed_task_ending(const Task& t) {
  Outcome o;
  o.state = LaunchState::kFailed;
  o.failed_task = t.plan.name;
  o.error = t.plan.name + " (" + t.plan.job + " " + std::to_string(t.plan.index) + ") " +
            t.proc->exit_status()->to_string() + "; see " + t.plan.stderr_path;
  o.failed_task_stderr = tail_lines(t.plan.stderr_path, kStderrTailLines);
  return {std::move(o), true};
}

// Every worker is done but some PS tasks outlived `timeout`: kills them.
Ending lingering_ps_ending(std::vector<Task>& tasks, std::chrono::milliseconds timeout) {
  std::vector<std::string> names;
  for (Task& t : tasks) {
    if (!t.running()) continue;
    names.push_back(t.plan.name);
    t.proc->kill();
  }
  Outcome o;
  o.state = LaunchState::kFailed;
  o.failed_task = names.empty() ? std::string() : names.front();
  o.error = join(names, ", ") + " did not exit within " + format_seconds(timeout) +
            " s after every worker finished (a pstrain bug: please report it); killed";
  return {std::move(o), false};
}

// A task that failed: started again while it has restarts left (--max_restarts); a worker
// whose restarts are spent is left behind while another worker still runs (the chief only
// once it reported training), and the others go on (the PS tasks finish without it once they
// declare it lost; when it is the chief, the lowest live worker takes its duties over:
// worker/worker_task.cc); anything else ends the job. Each decision is a line in `warnings` and in
// `notes` (printed). Returns the failed ending, if any.
std::optional<Ending> handle_failures(std::vector<Task>& tasks, const LaunchOptions& o,
                                      WorkerBoard& board, std::vector<std::string>& warnings,
                                      std::vector<std::string>& notes) {
  for (Task& t : tasks) {
    if (!t.failed() || t.left_behind) continue;
    const ExitStatus exit = *t.proc->exit_status();
    const std::string how = t.plan.name + " " + exit.to_string();
    // Exit 2 is a configuration error (bad flags, data, checkpoint): running it again or
    // going on without it would hide it.
    if (exit == ExitStatus::exited(2)) return failed_task_ending(t);
    if (t.restarts < o.max_restarts) {
      SubprocessOptions again = subprocess_options(t.plan);
      again.append_output = true;  // the failed run's output stays
      auto p = Subprocess::spawn(again);
      if (!p.ok()) {
        Ending e = failed_task_ending(t);
        e.outcome.error = how + " and cannot be started again: " + p.status().message();
        return e;
      }
      t.proc.emplace(std::move(p).value());
      ++t.restarts;
      warnings.push_back(how + "; restarted (" + std::to_string(t.restarts) + " of " +
                         std::to_string(o.max_restarts) + ")");
      notes.push_back("pstrain launch: " + warnings.back());
      continue;
    }
    const bool another_worker_runs = std::any_of(tasks.begin(), tasks.end(), [&](const Task& u) {
      return &u != &t && u.plan.is_worker() && u.running();
    });
    // The chief only once it trained (the variables exist): one that failed while starting
    // (bad data, no PS) leaves nobody to initialise them. (Its status file, read now, is its
    // last word.)
    if (t.plan.index == 0) board.read(tasks);
    const bool may_go_on =
        t.plan.index != 0 || board.state_of(0) == "running" || board.state_of(0) == "evaluating";
    if (t.plan.is_worker() && another_worker_runs && may_go_on) {
      t.left_behind = true;
      warnings.push_back(how + "; the job went on without it" +
                         (t.plan.index == 0
                              ? " (the lowest live worker takes over the chief's duties once "
                                "the parameter servers declare it lost)"
                              : "") +
                         " (see " + t.plan.stderr_path + ")");
      notes.push_back("pstrain launch: " + warnings.back());
      continue;
    }
    return failed_task_ending(t);
  }
  return std::nullopt;
}

// One look at the tasks: reaps those that exited (never blocking), restarts or leaves behind
// the failed ones (handle_failures) and decides whether the job is over. `ps_deadline` is set
// once every worker is done.
std::optional<Ending> examine(std::vector<Task>& tasks, const LaunchOptions& o,
                              WorkerBoard& board,
                              std::optional<Clock::time_point>& ps_deadline,
                              std::vector<std::string>& warnings, std::vector<std::string>& notes) {
  if (o.cancel && o.cancel->load()) return cancelled_ending(o);
  for (Task& t : tasks) {
    if (t.running()) t.proc->poll();
  }
  if (auto failed = handle_failures(tasks, o, board, warnings, notes)) return failed;
  const RunningCounts running = count_running(tasks);
  if (running.all == 0) return Ending{Outcome{LaunchState::kSucceeded, "", "", {}, {}}, false};
  if (running.workers > 0) return std::nullopt;
  const auto now = Clock::now();
  if (!ps_deadline) {
    ps_deadline = now + o.ps_exit_timeout;
  } else if (now >= *ps_deadline) {
    return lingering_ps_ending(tasks, o.ps_exit_timeout);
  }
  return std::nullopt;
}

// "[  12s] global step 40/200 | 5120 examples/s | loss 0.4321 | 3/3 tasks running", fitted to
// `width` columns (0: no limit): on a narrow terminal the note, the rate, the loss and the task
// count go, in that order (runtime/base/progress.h).
std::string progress_text(const WorkerBoard& board, const RunningCounts& running, size_t num_tasks,
                          double elapsed_seconds, size_t width) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "[%4.0fs] ", elapsed_seconds);
  std::string head = buf;
  std::vector<LinePart> parts;
  const WorkerTotals sum = board.totals();
  std::string rate, loss;
  if (sum.any) {
    head += "global step " + std::to_string(sum.global_step);
    if (sum.train_steps > 0) head += "/" + std::to_string(sum.train_steps);
    rate = format_rate(sum.examples_per_second) + " examples/s";
    if (const WorkerStatus* chief = board.chief(); chief && chief->loss) {
      std::snprintf(buf, sizeof(buf), "loss %.4f", *chief->loss);
      loss = buf;
    }
  } else {
    head += "starting";
  }
  const std::string tasks =
      std::to_string(running.all) + "/" + std::to_string(num_tasks) + " tasks running";
  const bool waiting = running.workers == 0 && running.all > 0;
  return fit_line({{head, 5},
                   {rate, 2},
                   {loss, 3},
                   {tasks, 4},
                   {waiting ? "workers done; waiting for the ps to exit" : "", 1}},
                  width);
}

// Polls the started tasks about every poll_interval until the job is over (every task exited
// 0, one failed, the PS tasks outlived ps_exit_timeout, or *cancel), keeping `board` and the
// progress line up to date. Returns once every task has been reaped.
Outcome monitor_tasks(std::vector<Task>& tasks, WorkerBoard& board, const LaunchOptions& o,
                      Clock::time_point start, std::FILE* progress) {
  std::optional<ProgressLine> line;
  if (progress) line.emplace(progress);
  std::optional<Clock::time_point> ps_deadline;
  std::optional<Ending> end;
  const auto show = [&](bool force) {
    if (!line) return;
    line->update(progress_text(board, count_running(tasks), tasks.size(), seconds_since(start),
                               line->columns()),
                 force);
  };
  std::vector<std::string> warnings;
  while (true) {
    std::vector<std::string> notes;
    end = examine(tasks, o, board, ps_deadline, warnings, notes);
    if (!notes.empty()) {
      if (line) line->finish();
      print_lines(notes, progress);
    }
    if (end) break;
    board.read(tasks);
    show(false);
    sleep_for(o.poll_interval);
  }
  end->outcome.warnings = warnings;
  std::vector<std::string> notes;
  if (end->stop_the_rest) notes = stop_all(tasks, o.stop_grace);
  // The line ends on the final figures (every task reaped), not on the last redraw's (say
  // "global step 271/300").
  board.read(tasks);
  show(true);
  if (line) line->finish();
  print_lines(notes, progress);
  return std::move(end->outcome);
}

// ---- Summarize.

LaunchedTask launched_task(const Task& t) {
  LaunchedTask info;
  info.name = t.plan.name;
  info.job = t.plan.job;
  info.index = t.plan.index;
  info.address = t.plan.address;
  info.started = t.proc.has_value();
  if (t.proc) info.exit = t.proc->exit_status();
  info.state = task_state(info.exit, info.started);
  info.restarts = t.restarts;
  info.stdout_path = t.plan.stdout_path;
  info.stderr_path = t.plan.stderr_path;
  return info;
}

// The summary of a finished job: its shape, the outcome, each task and the workers' final
// numbers (from `board`, read after every task was reaped).
// <job_dir>/chart.svg from the workers' metrics files: each worker's mean training loss and
// the chief's accuracies against seconds since the first record. Nothing when no worker wrote
// a record; a chart that cannot be written is a warning, not a failed job.
void write_chart(const LaunchPlan& plan, const std::string& job_dir, const LaunchSummary& s) {
  std::vector<std::pair<std::string, std::vector<MetricsRecord>>> per_worker;
  double t0 = std::numeric_limits<double>::infinity();
  for (const PlannedTask& t : plan.tasks) {
    if (t.metrics_path.empty()) continue;
    std::ifstream in(t.metrics_path);
    std::vector<MetricsRecord> records;
    for (std::string line; std::getline(in, line);) {
      if (auto r = parse_metrics_line(line)) {
        t0 = std::min(t0, r->time);
        records.push_back(std::move(*r));
      }
    }
    per_worker.emplace_back(t.name, std::move(records));
  }
  if (!std::isfinite(t0)) return;
  std::vector<ChartSeries> loss;
  std::map<std::string, ChartSeries> accuracy;
  for (const auto& [name, records] : per_worker) {
    ChartSeries series{name, {}};
    for (const MetricsRecord& r : records) {
      if (r.kind == "step") {
        series.points.emplace_back(r.time - t0, r.mean_loss);
      } else {
        ChartSeries& a = accuracy[r.split];
        a.name = r.split;
        a.points.emplace_back(r.time - t0, r.accuracy);
      }
    }
    loss.push_back(std::move(series));
  }
  std::vector<ChartSeries> acc;
  for (auto& [split, series] : accuracy) acc.push_back(std::move(series));
  char title[160];
  std::snprintf(title, sizeof title, "%s: %d ps + %d workers, %s, global step %lld",
                s.model.empty() ? "job" : s.model.c_str(), s.num_ps, s.num_workers,
                s.sync_replicas ? "sync" : "async", static_cast<long long>(s.global_step));
  Status st = write_file_atomically(job_dir + "/chart.svg", render_chart(title, loss, acc));
  if (!st.ok()) PSTRAIN_LOG(WARNING) << "no chart: " << st.message();
}

LaunchSummary summarize(const LaunchOptions& o, const std::string& job_dir, const LaunchPlan& plan,
                        const std::vector<Task>& tasks, const WorkerBoard& board, Outcome outcome,
                        double wall_seconds, std::string start_time) {
  LaunchSummary s;
  s.state = outcome.state;
  s.pstrain_version = o.pstrain_version;
  s.start_time = std::move(start_time);
  s.model = o.model;
  s.job_dir = job_dir;
  s.summary_path = job_dir + "/summary.json";
  s.job_id = plan.job_id;
  for (const Task& t : tasks) {
    s.tasks.push_back(launched_task(t));
    if (t.plan.is_worker()) s.tasks.back().reported_state = board.state_of(t.plan.index);
  }
  s.config = o.training_flags;
  s.num_ps = o.num_ps;
  s.num_workers = o.num_workers;
  s.sync_replicas = o.sync_replicas;
  const WorkerTotals sum = board.totals();
  s.global_step = sum.global_step;
  s.train_steps = sum.train_steps;
  if (const WorkerStatus* chief = board.chief()) {
    s.final_loss = chief->loss;
    s.test_accuracy = chief->test_accuracy;
  }
  s.examples_per_second = sum.examples_per_second;
  s.wall_seconds = wall_seconds;
  s.failed_task = std::move(outcome.failed_task);
  s.error = std::move(outcome.error);
  s.failed_task_stderr = std::move(outcome.failed_task_stderr);
  s.warnings = std::move(outcome.warnings);
  return s;
}

// Prints why the job failed (nothing on success; a cancel is reported once, by
// describe_launch).
void report_failure(const LaunchSummary& s, std::FILE* progress) {
  if (!progress || s.state != LaunchState::kFailed) return;
  std::fprintf(progress, "pstrain launch: job %s: %s\n", launch_state_name(s.state),
               s.error.c_str());
  if (!s.failed_task_stderr.empty()) {
    std::fprintf(progress, "last lines of %s's stderr:\n", s.failed_task.c_str());
    for (const auto& l : s.failed_task_stderr) std::fprintf(progress, "    %s\n", l.c_str());
  }
  std::fflush(progress);
}

}  // namespace

std::string task_state(const std::optional<ExitStatus>& exit, bool started) {
  if (!started) return "not started";
  if (!exit || exit->kind == ExitStatus::Kind::kUnknown) return "unknown";
  const auto stop_signal = [](int sig) { return sig == SIGINT || sig == SIGTERM || sig == SIGHUP; };
  if (exit->kind == ExitStatus::Kind::kExited) {
    if (exit->code == 0) return "succeeded";
    return exit->code > 128 && stop_signal(exit->code - 128) ? "stopped" : "failed";
  }
  if (stop_signal(exit->signal)) return "stopped";
  return exit->signal == SIGKILL ? "killed" : "failed";
}

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
  // Keys in a fixed order (docs/launch.md lists them in this order); every key is always
  // there, null when it has no value.
  nlohmann::ordered_json tj = nlohmann::ordered_json::array();
  for (const LaunchedTask& t : tasks) {
    nlohmann::ordered_json j;
    j["name"] = t.name;
    j["job"] = t.job;
    j["index"] = t.index;
    j["address"] = t.address;
    j["started"] = t.started;
    j["state"] = t.state;
    j["reported_state"] = t.reported_state.empty() ? nlohmann::ordered_json(nullptr)
                                                   : nlohmann::ordered_json(t.reported_state);
    j["status"] = t.exit ? t.exit->to_string() : std::string("not started");
    j["exit_code"] = nullptr;
    j["signal"] = nullptr;
    j["signal_name"] = nullptr;
    if (t.exit && t.exit->kind == ExitStatus::Kind::kExited) j["exit_code"] = t.exit->code;
    if (t.exit && t.exit->kind == ExitStatus::Kind::kSignaled) {
      j["signal"] = t.exit->signal;
      j["signal_name"] = signal_name(t.exit->signal);
    }
    j["stdout"] = t.stdout_path;
    j["stderr"] = t.stderr_path;
    j["restarts"] = t.restarts;
    tj.push_back(std::move(j));
  }
  const auto optional_number = [](const std::optional<double>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
  };
  const auto optional_text = [](const std::string& v) {
    return v.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v);
  };
  nlohmann::ordered_json j;
  j["summary_version"] = kSummaryVersion;
  j["state"] = launch_state_name(state);
  j["error"] = optional_text(error);
  j["failed_task"] = optional_text(failed_task);
  j["failed_task_stderr"] = failed_task_stderr;
  j["pstrain_version"] = optional_text(pstrain_version);
  j["start_time"] = start_time;
  j["wall_seconds"] = wall_seconds;
  j["job_dir"] = job_dir;
  j["job_id"] = job_id;
  j["model"] = optional_text(model);
  j["num_ps"] = num_ps;
  j["num_workers"] = num_workers;
  j["sync_replicas"] = sync_replicas;
  j["config"] = config;
  j["global_step"] = global_step;
  j["train_steps"] = train_steps;
  j["final_loss"] = optional_number(final_loss);
  j["test_accuracy"] = optional_number(test_accuracy);
  j["examples_per_second"] = examples_per_second;
  j["tasks"] = std::move(tj);
  j["warnings"] = warnings;
  return j.dump(2) + "\n";
}

std::string describe_launch(const LaunchSummary& s) {
  char buf[512];
  std::string out;
  const std::string shape = std::to_string(s.num_ps) + " ps + " + std::to_string(s.num_workers) +
                            " worker" + (s.num_workers == 1 ? "" : "s") +
                            (s.sync_replicas ? ", sync" : ", async");
  // Two lines, each within an 80-column terminal: the outcome, then the figures.
  std::snprintf(buf, sizeof(buf), "job %s %s %.1f s (%s)\n  global step %lld",
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
  if (!s.warnings.empty()) {
    out += std::to_string(s.warnings.size()) + " warning" + (s.warnings.size() == 1 ? "" : "s") +
           " (tasks restarted or left behind): see the summary\n";
  }
  out += "summary: " + s.summary_path + "\n";
  return out;
}

Result<LaunchSummary> launch_local_job(const LaunchOptions& o, std::FILE* progress) {
  const auto start = Clock::now();
  const std::string start_time = iso8601_utc(std::time(nullptr));
  // Validate, then gather what the plan needs: ports, job directory, job id, cores.
  PSTRAIN_RETURN_IF_ERROR(check_launch_shape(o));
  PSTRAIN_ASSIGN_OR_RETURN(std::string binary, resolve_binary(o));
  PSTRAIN_ASSIGN_OR_RETURN(std::vector<int> ports, pick_free_tcp_ports(o.num_ps + o.num_workers));
  PSTRAIN_ASSIGN_OR_RETURN(std::string job_dir, prepare_job_dir(o.job_dir));
  // A fresh secret per job, unless the user gave one (flag or PSTRAIN_SECRET_FILE, which the
  // tasks inherit): only this job's tasks get into its parameter servers.
  std::string secret_file;
  const char* secret_env = std::getenv(kSecretFileEnv);
  const bool secret_flag =
      std::any_of(o.training_flags.begin(), o.training_flags.end(), [](const std::string& a) {
        return a == "--secret_file" || a.rfind("--secret_file=", 0) == 0;
      });
  if (!secret_flag && (secret_env == nullptr || !*secret_env)) {
    secret_file = job_dir + "/secret";
    std::error_code ec;
    std::filesystem::remove(secret_file, ec);  // an earlier job's, in a reused directory
    PSTRAIN_RETURN_IF_ERROR(write_secret_file(secret_file));
  }
  const LaunchFacts facts{
      job_dir,    binary, std::move(ports), random_job_id(), std::thread::hardware_concurrency(),
      secret_file};
  PSTRAIN_ASSIGN_OR_RETURN(const LaunchPlan plan, plan_launch(o, facts));

  std::vector<Task> tasks;
  for (const PlannedTask& p : plan.tasks) tasks.push_back(Task{p, std::nullopt});
  announce(o, job_dir, progress);
  WorkerBoard board(o.num_workers);
  std::optional<Outcome> not_started = spawn_tasks(tasks, o, progress);
  Outcome outcome =
      not_started ? std::move(*not_started) : monitor_tasks(tasks, board, o, start, progress);

  board.read(tasks);  // the workers' final status
  LaunchSummary s = summarize(o, job_dir, plan, tasks, board, std::move(outcome),
                              seconds_since(start), start_time);
  report_failure(s, progress);
  write_chart(plan, job_dir, s);
  const std::string json = s.to_json();
  Status written = write_file_atomically(s.summary_path, json);
  if (!written.ok()) return written.with_context("cannot write the job summary");
  if (!o.summary_json.empty()) {
    written = write_file_atomically(o.summary_json, json);
    if (!written.ok()) return written.with_context("cannot write --summary_json");
  }
  return s;
}

}  // namespace pstrain
