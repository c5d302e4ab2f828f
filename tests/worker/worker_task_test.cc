// run_worker_task's stop request (WorkerTaskOptions::stop): one PS on its own thread and one
// worker in this thread over 127.0.0.1, on a tiny data set written by the test.
#include "worker/worker_task.h"

#include <gtest/gtest.h>

#include <csignal>
#include <string>
#include <vector>

#include "tests/ps/server_fixture.h"
#include "tests/temp_dir.h"
#include "tests/tiny_mnist.h"

namespace pstrain {
namespace {

using std::chrono::milliseconds;

// Records what the loop reported; sets *stop to SIGTERM after `stop_after` steps (0: never).
struct Recorder : TrainingSink {
  std::atomic<int>* stop = nullptr;
  int64_t stop_after = 0;
  bool began = false, ended = false, finished = false;
  int64_t steps = 0;
  void begin(const TrainingBegin&) override { began = true; }
  void step(const StepReport&) override {
    if (++steps == stop_after) stop->store(SIGTERM);
  }
  void training_end(const TrainingEnd&) override { ended = true; }
  void finish() override { finished = true; }
};

// Trains against one PS until `stop` turns non-zero after `stop_after` steps (or at once if it
// is set already); returns the worker's result and what it reported.
Result<WorkerTaskSummary> run_until_stopped(std::atomic<int>& stop, int64_t stop_after,
                                            Recorder& sink) {
  testing_util::TempDir dir("pstrain_worker_task");
  testing_util::ServerFixture f({.num_workers = 1,
                                 .heartbeat_timeout = milliseconds(30000),
                                 .startup_timeout = milliseconds(60000)});
  if (!f.ok()) return internal_error("the parameter server did not start");

  WorkerTaskOptions o;
  o.train.data_dir = testing_util::tiny_mnist_dir(dir.path(), 4);
  o.train.validation_size = 0;  // 4 training examples: none held out
  o.train.train_steps = 1000000;
  o.train.batch_size = 2;
  o.train.num_gpus = 0;
  o.train.cpu_threads = 1;
  o.cluster.ps = {HostPort{"127.0.0.1", f.port()}};
  o.cluster.workers = {HostPort{"127.0.0.1", 1}};
  o.job_id = testing_util::ServerFixture::kJob;
  o.client.connect_timeout = milliseconds(20000);
  o.client.reply_timeout = milliseconds(30000);
  o.stop = &stop;
  sink.stop = &stop;
  sink.stop_after = stop_after;
  auto result = run_worker_task(o, sink);
  EXPECT_TRUE(f.stop());  // the worker never said DONE
  return result;
}

TEST(WorkerTaskStop, AStopRequestEndsTrainingBetweenStepsAsCancelled) {
  std::atomic<int> stop{0};
  Recorder sink;
  auto result = run_until_stopped(stop, 3, sink);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kCancelled) << result.status().to_string();
  EXPECT_EQ(sink.steps, 3);  // the loop looked at the flag before the next step
  EXPECT_TRUE(sink.began);
  EXPECT_TRUE(sink.ended);      // the figures of the steps done are reported
  EXPECT_FALSE(sink.finished);  // the caller records the final state
}

TEST(WorkerTaskStop, AStopBeforeTrainingTrainsNothing) {
  std::atomic<int> stop{SIGINT};
  Recorder sink;
  auto result = run_until_stopped(stop, 0, sink);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kCancelled) << result.status().to_string();
  EXPECT_EQ(sink.steps, 0);
  EXPECT_FALSE(sink.finished);
}

}  // namespace
}  // namespace pstrain
