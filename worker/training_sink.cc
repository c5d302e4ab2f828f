#include "worker/training_sink.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>

#include "runtime/base/files.h"
#include "runtime/base/log.h"

namespace pstrain {

void SinkList::begin(const TrainingBegin& r) {
  for (TrainingSink* s : sinks_) s->begin(r);
}
void SinkList::step(const StepReport& r) {
  for (TrainingSink* s : sinks_) s->step(r);
}
void SinkList::training_end(const TrainingEnd& r) {
  for (TrainingSink* s : sinks_) s->training_end(r);
}
void SinkList::evaluation(const EvalReport& r) {
  for (TrainingSink* s : sinks_) s->evaluation(r);
}
void SinkList::finish() {
  for (TrainingSink* s : sinks_) s->finish();
}

bool SinkList::reads_tensors() const {
  return std::any_of(sinks_.begin(), sinks_.end(),
                     [](const TrainingSink* s) { return s->reads_tensors(); });
}

// --- WorkerLinesSink -------------------------------------------------------------------------

namespace {

// Seconds since the epoch, as Python's time.time() (what mnist_replica prints with %f).
double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

void WorkerLinesSink::begin(const TrainingBegin& r) {
  task_index_ = r.task_index;
  std::fprintf(out_, "Training begins @ %f\n", unix_seconds());
  std::fflush(out_);
}

void WorkerLinesSink::step(const StepReport& r) {
  if (log_every_ <= 0 || r.local_step % log_every_ != 0) return;
  std::fprintf(out_, "%f: Worker %d: training step %lld done (global step: %lld)\n", unix_seconds(),
               task_index_, static_cast<long long>(r.local_step),
               static_cast<long long>(r.global_step));
  std::fflush(out_);
}

void WorkerLinesSink::training_end(const TrainingEnd& r) {
  std::fprintf(out_, "Training ends @ %f\n", unix_seconds());
  std::fprintf(out_, "Training elapsed time: %f s\n", r.train_seconds);
  // pstrain's own line, after mnist_replica's.
  std::fprintf(out_, "Worker %d: %lld local steps, global step %lld\n", task_index_,
               static_cast<long long>(r.local_steps), static_cast<long long>(r.global_step));
  std::fflush(out_);
}

void WorkerLinesSink::evaluation(const EvalReport& r) {
  if (r.split == "validation") {
    std::fprintf(out_, "After %lld training step(s), validation cross entropy = %g\n",
                 static_cast<long long>(r.global_step), r.cross_entropy);
  } else if (r.split == "test") {
    std::fprintf(out_, "After %lld training step(s), test accuracy = %.4f (%lld/%lld)\n",
                 static_cast<long long>(r.global_step), r.accuracy(),
                 static_cast<long long>(r.correct), static_cast<long long>(r.count));
  }
  std::fflush(out_);
}

// --- ProgressLineSink ------------------------------------------------------------------------

void ProgressLineSink::evaluation(const EvalReport& r) {
  if (ended_) return;
  line_.finish();
  std::fprintf(out_, "step %lld: %s accuracy %.4f, cross entropy %.4f\n",
               static_cast<long long>(r.global_step), r.split.c_str(), r.accuracy(),
               r.cross_entropy);
  std::fflush(out_);
}

void ProgressLineSink::step(const StepReport& r) {
  std::ostringstream text;
  text.setf(std::ios::fixed);
  text.precision(4);
  text << "step " << r.local_step << "/" << train_steps_ << "  loss " << r.mean_loss << "  ";
  text.precision(0);
  text << r.examples_per_second << " examples/s";
  line_.update(text.str(), r.local_step == train_steps_);
}

// --- StatusFileSink --------------------------------------------------------------------------

StatusFileSink::StatusFileSink(std::string path, int task_index, int64_t train_steps)
    : path_(std::move(path)) {
  status_.index = task_index;
  status_.train_steps = train_steps;
  status_.state = "starting";
  write(true);
}

void StatusFileSink::begin(const TrainingBegin& r) {
  chief_ = r.chief;
  status_.state = "running";
  status_.train_steps = r.train_steps;
  write(true);
}

void StatusFileSink::step(const StepReport& r) {
  status_.local_step = r.local_step;
  status_.global_step = r.global_step;
  status_.loss = r.mean_loss;
  status_.examples_per_second = r.examples_per_second;
  write(false);
}

void StatusFileSink::training_end(const TrainingEnd& r) {
  status_.local_step = r.local_steps;
  status_.global_step = r.global_step;
  status_.loss = r.final_loss;
  status_.examples_per_second = r.examples_per_second;
  if (chief_) {
    status_.state = "evaluating";
    write(true);
  }
}

void StatusFileSink::evaluation(const EvalReport& r) {
  status_.global_step = std::max(status_.global_step, r.global_step);
  if (r.split == "test") status_.test_accuracy = r.accuracy();
}

void StatusFileSink::finish() { end("done"); }

void StatusFileSink::end(const std::string& state) {
  status_.state = state;
  write(true);
}

void StatusFileSink::write(bool force) {
  if (path_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_ < std::chrono::seconds(1)) return;
  last_ = now;
  Status st = write_file_atomically(path_, status_.to_json().dump() + "\n");
  if (!st.ok() && !warned_) {
    PSTRAIN_LOG(WARNING) << "cannot write the status file: " << st.message();
    warned_ = true;
  }
}

// --- SummarySink -----------------------------------------------------------------------------

void SummarySink::step(const StepReport& r) {
  record_.local_steps = r.local_step;
  record_.global_step = std::max(record_.global_step, r.global_step);
  record_.final_loss = r.mean_loss;
}

void SummarySink::training_end(const TrainingEnd& r) {
  record_.local_steps = r.local_steps;
  record_.global_step = std::max(record_.global_step, r.global_step);
  record_.final_loss = r.final_loss;
  record_.train_seconds = r.train_seconds;
  record_.examples_per_second = r.examples_per_second;
}

void SummarySink::evaluation(const EvalReport& r) {
  record_.global_step = std::max(record_.global_step, r.global_step);
  if (r.split == "test") record_.test = r;
}

// --- MetricsFileSink -------------------------------------------------------------------------

MetricsFileSink::~MetricsFileSink() {
  if (file_) std::fclose(file_);
}

void MetricsFileSink::write(const MetricsRecord& r) {
  if (!file_) return;
  const std::string line = to_json_line(r) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    PSTRAIN_LOG(WARNING) << "cannot write the metrics file " << path_ << ": "
                         << std::strerror(errno) << "; no more metrics lines";
    std::fclose(file_);
    file_ = nullptr;
  }
}

void MetricsFileSink::begin(const TrainingBegin& r) {
  index_ = r.task_index;
  if (path_.empty()) return;
  file_ = std::fopen(path_.c_str(), "w");
  if (!file_) {
    PSTRAIN_LOG(WARNING) << "cannot create the metrics file " << path_ << ": "
                         << std::strerror(errno) << "; training goes on without it";
  }
}

void MetricsFileSink::write_step(const StepReport& r) {
  MetricsRecord m;
  m.kind = "step";
  m.time = unix_seconds();
  m.elapsed = r.elapsed_seconds;
  m.index = index_;
  m.global_step = r.global_step;
  m.local_step = r.local_step;
  m.loss = r.loss;
  m.mean_loss = r.mean_loss;
  m.examples_per_second = r.examples_per_second;
  write(m);
}

void MetricsFileSink::step(const StepReport& r) {
  last_ = r;
  last_elapsed_ = r.elapsed_seconds;
  if (due(r.local_step)) write_step(r);
}

void MetricsFileSink::training_end(const TrainingEnd&) {
  if (last_ && !due(last_->local_step)) write_step(*last_);
}

void MetricsFileSink::evaluation(const EvalReport& r) {
  MetricsRecord m;
  m.kind = "eval";
  m.time = unix_seconds();
  m.elapsed = last_elapsed_;
  m.index = index_;
  m.global_step = r.global_step;
  m.split = r.split;
  m.accuracy = r.accuracy();
  m.cross_entropy = r.cross_entropy;
  write(m);
}

}  // namespace pstrain
