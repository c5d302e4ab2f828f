#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>

#include "cli/cli.h"
#include "cli/commands.h"
#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/job/process.h"
#include "worker/backend.h"
#include "worker/data.h"
#include "worker/local_train.h"
#include "worker/tensorboard_sink.h"

namespace pstrain {
namespace {

std::atomic<int> g_train_stop{0};
extern "C" void stop_train_on_signal(int sig) {
  int none = 0;
  g_train_stop.compare_exchange_strong(none, sig);
}

// SIGTERM and SIGINT end training between two steps (a final checkpoint is written when
// --checkpoint_dir is given) while this lives; the previous handlers come back after.
class TrainStopOnSignals {
 public:
  TrainStopOnSignals() {
    g_train_stop.store(0);
    struct sigaction sa {};
    sa.sa_handler = stop_train_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  ~TrainStopOnSignals() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }
  TrainStopOnSignals(const TrainStopOnSignals&) = delete;
  TrainStopOnSignals& operator=(const TrainStopOnSignals&) = delete;

 private:
  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
};

}  // namespace

int run_train_command(const TrainCommandFlags& flags) {
  const auto start = std::chrono::steady_clock::now();
  auto config = finish_training_flags(flags.train);
  if (!config.ok()) {
    PSTRAIN_LOG(ERROR) << config.status().message();
    return kExitUsage;
  }
  config->checkpoint.dir = flags.checkpoint_dir;
  if (flags.log_every <= 0) {
    PSTRAIN_LOG(ERROR) << "--log_every must be positive, got " << flags.log_every;
    return kExitUsage;
  }
  for (const auto& [dir, flag] : {std::pair{flags.checkpoint_dir, "--checkpoint_dir"},
                                  std::pair{flags.log_dir, "--log_dir"}}) {
    Status st = make_directories(dir, flag);
    if (!st.ok()) {
      PSTRAIN_LOG(ERROR) << st.message();
      return kExitUsage;
    }
  }
  auto data = load_data_dir(config->data_dir);
  if (!data.ok()) {
    PSTRAIN_LOG(ERROR) << data.status().message();
    return kExitUsage;
  }
  if (Status st = hold_out_validation(*data, config->validation_size); !st.ok()) {
    PSTRAIN_LOG(ERROR) << st.message();
    return kExitUsage;
  }
  auto backend = select_backend(config->num_gpus, 0, config->tf32, config->cpu_threads);
  if (!backend.ok()) {
    PSTRAIN_LOG(ERROR) << backend.status().message();
    return kExitUsage;
  }
  if (!backend->warning.empty()) PSTRAIN_LOG(WARNING) << backend->warning;

  ProgressLineSink progress(stderr);
  SinkList sinks({&progress});
  auto metrics = start_training_metrics(flags.metrics, "train", 0);
  if (!metrics.ok()) {
    PSTRAIN_LOG(ERROR) << metrics.status().message();
    return kExitUsage;
  }
  if (metrics->sink) sinks.add(metrics->sink.get());
  MetricsFileSink metrics_file(flags.metrics.file, flags.summary_every);
  sinks.add(&metrics_file);
  std::unique_ptr<TensorBoardSink> tensorboard;
  if (!flags.log_dir.empty()) {
    tensorboard =
        std::make_unique<TensorBoardSink>(flags.log_dir, /*per_worker=*/false, flags.summary_every);
    sinks.add(tensorboard.get());
  }
  TrainStopOnSignals signals;
  auto summary = train_locally(*config, *data, *backend->ops, sinks, &g_train_stop);
  if (const int sig = g_train_stop.load();
      !summary.ok() && summary.status().code() == StatusCode::kCancelled && sig != 0) {
    PSTRAIN_LOG(INFO) << "stopped by " << signal_name(sig) << ": " << summary.status().message();
    return 128 + sig;
  }
  if (!summary.ok()) {
    PSTRAIN_LOG(ERROR) << summary.status().message();
    // A checkpoint of another model or optimizer in --checkpoint_dir is a usage error.
    return summary.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  summary->wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("Training elapsed time: %f s\n", summary->train_seconds);
  std::printf("test accuracy = %.4f (%s, %lld steps, %.0f examples/s)\n", summary->test_accuracy,
              summary->model.c_str(), static_cast<long long>(summary->steps),
              summary->examples_per_second);
  const std::string json = summary->to_json().dump(2) + "\n";
  std::fputs(json.c_str(), stdout);
  std::fflush(stdout);
  if (!flags.summary_json.empty()) {
    Status st = write_file_atomically(flags.summary_json, json);
    if (!st.ok()) {
      PSTRAIN_LOG(ERROR) << "cannot write --summary_json: " << st.message();
      return kExitFailure;
    }
  }
  return kExitOk;
}

int run_version_command(bool list_gpus) {
  std::printf("pstrain %s\n%s", PSTRAIN_VERSION, describe_devices(list_gpus).c_str());
  return kExitOk;
}

}  // namespace pstrain
