// run_worker_task's stop request (WorkerTaskOptions::stop): one PS on its own thread and one
// worker in this thread over 127.0.0.1, on a tiny data set written by the test.
#include "worker/worker_task.h"

#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <string>
#include <utility>
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

// One worker (the chief) against one PS on its own thread, on `examples` tiny training
// examples in batches of `batch`, with `adjust` changing the options further, until `stop`
// turns non-zero (the sink sets it); returns the worker's result.
template <class Adjust>
Result<WorkerTaskSummary> run_against_one_ps(int examples, int batch, Adjust&& adjust,
                                             TrainingSink& sink, std::atomic<int>& stop) {
  testing_util::TempDir dir("pstrain_worker_task");
  testing_util::ServerFixture f({.num_workers = 1,
                                 .heartbeat_timeout = milliseconds(30000),
                                 .startup_timeout = milliseconds(60000)});
  if (!f.ok()) return internal_error("the parameter server did not start");
  WorkerTaskOptions o;
  o.train.data_dir = testing_util::tiny_mnist_dir(dir.path(), examples);
  o.train.validation_size = 0;  // a few training examples: none held out
  o.train.train_steps = 1000000;
  o.train.batch_size = batch;
  o.train.num_gpus = 0;
  o.train.cpu_threads = 1;
  o.cluster.ps = {HostPort{"127.0.0.1", f.port()}};
  o.cluster.workers = {HostPort{"127.0.0.1", 1}};
  o.job_id = testing_util::ServerFixture::kJob;
  o.client.connect_timeout = milliseconds(20000);
  o.client.reply_timeout = milliseconds(30000);
  o.stop = &stop;
  adjust(o);
  auto result = run_worker_task(o, sink);
  EXPECT_TRUE(f.stop());  // the worker never said DONE
  return result;
}

// Trains until `stop` turns non-zero after `stop_after` steps (or at once if it is set
// already); returns the worker's result, and `sink` holds what it reported.
Result<WorkerTaskSummary> run_until_stopped(std::atomic<int>& stop, int64_t stop_after,
                                            Recorder& sink) {
  sink.stop = &stop;
  sink.stop_after = stop_after;
  return run_against_one_ps(
      4, 2, [](WorkerTaskOptions&) {}, sink, stop);
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

// Synchronous SGD over TCP, with or without --overlap, evaluating every `eval_every` steps.
Result<WorkerTaskSummary> run_over_tcp(bool overlap, int64_t eval_every, TrainingSink& sink,
                                       std::atomic<int>& stop) {
  return run_against_one_ps(
      8, 4,
      [&](WorkerTaskOptions& o) {
        o.train.optimizer.kind = OptimizerKind::kSgd;
        o.train.optimizer.learning_rate = 0.5f;
        o.train.eval_every = eval_every;
        o.sync_replicas = true;
        o.overlap = overlap;
        o.client.transport = Transport::kTcp;
      },
      sink, stop);
}

// A sink that reads the tensors (TensorBoard's histograms) gets, at each step's report, the
// parameters that step computed on and its gradient, over TCP with --overlap: the pull's
// overlap, which writes the next step's parameters into the model while the reply comes, is
// off then. With SGD and one synchronous worker, each step's parameters are the last one's
// less the learning rate times its gradient.
TEST(WorkerTaskOverlap, ASinkThatReadsTheTensorsSeesTheParametersEachStepComputedOn) {
  struct Reading : TrainingSink {
    std::atomic<int>* stop = nullptr;
    TrainingBegin begun;
    std::vector<std::vector<float>> params, grads;
    void begin(const TrainingBegin& b) override { begun = b; }
    void step(const StepReport&) override {
      begun.read_tensors(&params.emplace_back(), &grads.emplace_back());
      if (params.size() == 6) stop->store(SIGTERM);
    }
    bool reads_tensors() const override { return true; }
  };
  std::atomic<int> stop{0};
  Reading sink;
  sink.stop = &stop;
  auto result = run_over_tcp(/*overlap=*/true, /*eval_every=*/0, sink, stop);
  ASSERT_EQ(result.status().code(), StatusCode::kCancelled) << result.status().to_string();
  ASSERT_EQ(sink.params.size(), 6u);
  for (size_t k = 0; k + 1 < sink.params.size(); ++k) {
    const std::vector<float>& p = sink.params[k];
    const std::vector<float>& g = sink.grads[k];
    const std::vector<float>& next = sink.params[k + 1];
    ASSERT_EQ(p.size(), next.size());
    size_t moved = 0;
    for (size_t j = 0; j < p.size(); ++j) {
      const float step = 0.5f * g[j];
      moved += step != 0.f;
      ASSERT_NEAR(next[j], p[j] - step, 1e-6f + 1e-3f * std::fabs(step))
          << "step " << k << ", element " << j;
    }
    EXPECT_GT(moved, p.size() / 100) << "step " << k;  // the check is not vacuous
  }
}

// The chief's evaluations during training (--eval_every) see the parameters each step
// computed on with --overlap as without: the pull's overlap is off on the steps before them,
// and the two runs report the same figures to the bit.
TEST(WorkerTaskOverlap, TheChiefsEvaluationsAreTheSameWithTheOverlapAsWithout) {
  struct Evaluations : TrainingSink {
    std::atomic<int>* stop = nullptr;
    int64_t steps = 0;
    std::vector<std::pair<int64_t, double>> seen;  // (global step, cross-entropy)
    void step(const StepReport&) override {
      if (++steps == 8) stop->store(SIGTERM);
    }
    void evaluation(const EvalReport& r) override {
      seen.emplace_back(r.global_step, r.cross_entropy);
    }
  };
  std::vector<std::pair<int64_t, double>> runs[2];
  for (bool overlap : {true, false}) {
    SCOPED_TRACE(overlap ? "--overlap" : "--nooverlap");
    std::atomic<int> stop{0};
    Evaluations sink;
    sink.stop = &stop;
    auto result = run_over_tcp(overlap, /*eval_every=*/2, sink, stop);
    ASSERT_EQ(result.status().code(), StatusCode::kCancelled) << result.status().to_string();
    EXPECT_GE(sink.seen.size(), 3u);
    runs[overlap ? 0 : 1] = sink.seen;
  }
  EXPECT_EQ(runs[0], runs[1]);
}

}  // namespace
}  // namespace pstrain
