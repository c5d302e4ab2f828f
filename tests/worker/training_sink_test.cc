// The training-loop sinks: what each writes for a scripted sequence of reports.
#include "worker/training_sink.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/job/task_env.h"
#include "tests/temp_dir.h"
#include "worker/recent_mean.h"

namespace pstrain {
namespace {

using testing_util::TempDir;

// Everything written to a tmpfile() stream so far.
std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[512];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  return text;
}

StepReport step_report(int64_t local, int64_t global, float loss) {
  return {.local_step = local,
          .global_step = global,
          .loss = loss,
          .mean_loss = loss / 2,
          .examples_per_second = 1000.0 * static_cast<double>(local),
          .elapsed_seconds = 0.1 * static_cast<double>(local)};
}

TrainingBegin begin_report(int task_index, bool chief, int64_t train_steps) {
  TrainingBegin b;
  b.model = "mlp";
  b.task_index = task_index;
  b.chief = chief;
  b.train_steps = train_steps;
  return b;
}

TEST(RecentMean, IsTheMeanOfTheLastWindowValues) {
  RecentMean m(3);
  EXPECT_EQ(m.mean(), 0.0);
  m.add(1);
  EXPECT_EQ(m.mean(), 1.0);
  m.add(2);
  EXPECT_EQ(m.mean(), 1.5);
  m.add(6);
  EXPECT_EQ(m.mean(), 3.0);
  m.add(10);  // 1 leaves the window
  EXPECT_EQ(m.mean(), 6.0);
  for (double v : {20.0, 30.0, 40.0, 50.0}) m.add(v);  // the ring wraps more than once
  EXPECT_EQ(m.mean(), 40.0);
  RecentMean one(1);
  one.add(4);
  one.add(9);
  EXPECT_EQ(one.mean(), 9.0);
}

TEST(WorkerLinesSink, PrintsMnistReplicasLinesEveryLogEverySteps) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  WorkerLinesSink sink(f, 2);
  sink.begin(begin_report(1, false, 20));
  for (int i = 1; i <= 5; ++i) sink.step(step_report(i, 10 + i, 1.0f));
  sink.training_end({.local_steps = 5, .global_step = 15, .train_seconds = 1.5});
  sink.evaluation({.split = "validation",
                   .global_step = 16,
                   .correct = 4000,
                   .count = 5000,
                   .cross_entropy = 0.412345678});
  sink.evaluation({.split = "test", .global_step = 16, .correct = 8612, .count = 10000});
  sink.finish();
  // mnist_replica.py's format strings, as Python's % renders them: %f is 6 decimals, %g 6
  // significant digits.
  const std::string t = R"(\d{10}\.\d{6})";
  const std::regex expected(
      "Training begins @ " + t + "\n" + t +
      ": Worker 1: training step 2 done \\(global step: 12\\)\n" + t +
      ": Worker 1: training step 4 done \\(global step: 14\\)\n" + "Training ends @ " + t + "\n" +
      "Training elapsed time: 1\\.500000 s\n"
      "Worker 1: 5 local steps, global step 15\n"
      "After 16 training step\\(s\\), validation cross entropy = 0\\.412346\n"
      "After 16 training step\\(s\\), test accuracy = 0\\.8612 \\(8612/10000\\)\n");
  const std::string text = contents(f);
  EXPECT_TRUE(std::regex_match(text, expected)) << text;
  std::fclose(f);
}

TEST(WorkerLinesSink, LogEveryZeroPrintsNoStepLines) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  WorkerLinesSink sink(f, 0);
  sink.begin(begin_report(0, true, 3));
  for (int i = 1; i <= 3; ++i) sink.step(step_report(i, i, 1.0f));
  const std::string text = contents(f);
  EXPECT_TRUE(std::regex_match(text, std::regex(R"(Training begins @ \d+\.\d{6}\n)"))) << text;
  std::fclose(f);
}

std::optional<WorkerStatus> read_status(const std::string& path) {
  auto text = read_file(path);
  if (!text.ok()) return std::nullopt;
  return parse_worker_status(*text);
}

TEST(StatusFileSink, WalksStartingRunningEvaluatingDoneOnTheChief) {
  TempDir dir("pstrain_sink");
  const std::string path = dir / "status-wk-0.json";
  StatusFileSink sink(path, 0, 20);
  auto s = read_status(path);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, "starting");
  EXPECT_EQ(s->train_steps, 20);

  sink.begin(begin_report(0, true, 20));
  s = read_status(path);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, "running");

  sink.step(step_report(1, 1, 2.0f));  // within a second of the last write: may be skipped
  sink.training_end({.local_steps = 20,
                     .global_step = 20,
                     .train_seconds = 2,
                     .examples_per_second = 500,
                     .final_loss = 0.25});
  s = read_status(path);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, "evaluating");
  EXPECT_EQ(s->local_step, 20);
  EXPECT_EQ(s->global_step, 20);
  EXPECT_DOUBLE_EQ(*s->loss, 0.25);
  EXPECT_DOUBLE_EQ(s->examples_per_second, 500);

  sink.evaluation({.split = "test", .global_step = 21, .correct = 3, .count = 4});
  sink.finish();
  s = read_status(path);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, "done");
  EXPECT_EQ(s->global_step, 21);
  ASSERT_TRUE(s->test_accuracy.has_value());
  EXPECT_DOUBLE_EQ(*s->test_accuracy, 0.75);
}

TEST(StatusFileSink, AWorkerThatIsNotTheChiefGoesFromRunningToDone) {
  TempDir dir("pstrain_sink");
  const std::string path = dir / "status-wk-1.json";
  StatusFileSink sink(path, 1, 5);
  sink.begin(begin_report(1, false, 5));
  sink.training_end({.local_steps = 3, .global_step = 5});
  auto s = read_status(path);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, "running");
  sink.finish();
  s = read_status(path);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, "done");
  EXPECT_EQ(s->index, 1);
  EXPECT_EQ(s->local_step, 3);
  EXPECT_FALSE(s->test_accuracy.has_value());
}

TEST(StatusFileSink, EndRecordsTheFinalStateWithTheLastFigures) {
  TempDir dir("pstrain_sink");
  const std::string path = dir / "status-wk-0.json";
  StatusFileSink sink(path, 0, 100);
  sink.begin(begin_report(0, true, 100));
  sink.step(step_report(7, 12, 0.5f));
  sink.training_end({.local_steps = 7,
                     .global_step = 12,
                     .train_seconds = 1,
                     .examples_per_second = 700,
                     .final_loss = 0.3});
  sink.end("cancelled");  // a loop stopped by a signal: no evaluation, no finish()
  auto s = read_status(path);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, "cancelled");
  EXPECT_EQ(s->local_step, 7);
  EXPECT_EQ(s->global_step, 12);
  ASSERT_TRUE(s->loss.has_value());
  EXPECT_DOUBLE_EQ(*s->loss, 0.3);
  EXPECT_DOUBLE_EQ(s->examples_per_second, 700);
  EXPECT_FALSE(s->test_accuracy.has_value());
}

TEST(SummarySink, KeepsTheEndOfTrainingAndTheLastTestEvaluation) {
  SummarySink sink;
  sink.step(step_report(1, 4, 2.0f));
  sink.training_end({.local_steps = 1,
                     .global_step = 4,
                     .train_seconds = 0.5,
                     .examples_per_second = 200,
                     .final_loss = 1.5});
  sink.evaluation({.split = "test", .global_step = 6, .correct = 1, .count = 2});
  const TrainingRecord& r = sink.record();
  EXPECT_EQ(r.local_steps, 1);
  EXPECT_EQ(r.global_step, 6);
  EXPECT_DOUBLE_EQ(r.final_loss, 1.5);
  EXPECT_DOUBLE_EQ(r.train_seconds, 0.5);
  EXPECT_DOUBLE_EQ(r.examples_per_second, 200);
  ASSERT_TRUE(r.test.has_value());
  EXPECT_DOUBLE_EQ(r.test->accuracy(), 0.5);
}

TEST(SinkList, PassesEveryReportToEachSinkInOrder) {
  struct Tagged : TrainingSink {
    Tagged(std::vector<std::string>* out, std::string name) : log(out), tag(std::move(name)) {}
    void begin(const TrainingBegin&) override { log->push_back(tag + ":begin"); }
    void step(const StepReport& r) override {
      log->push_back(tag + ":step" + std::to_string(r.local_step));
    }
    void training_end(const TrainingEnd&) override { log->push_back(tag + ":end"); }
    void evaluation(const EvalReport&) override { log->push_back(tag + ":eval"); }
    void finish() override { log->push_back(tag + ":finish"); }
    std::vector<std::string>* log;
    std::string tag;
  };
  std::vector<std::string> log;
  Tagged a(&log, "a");
  Tagged b(&log, "b");
  SinkList list({&a});
  list.add(&b);
  list.begin({});
  list.step(step_report(7, 7, 1.0f));
  list.training_end({});
  list.evaluation({});
  list.finish();
  EXPECT_EQ(log, (std::vector<std::string>{"a:begin", "b:begin", "a:step7", "b:step7", "a:end",
                                           "b:end", "a:eval", "b:eval", "a:finish", "b:finish"}));
}

}  // namespace
}  // namespace pstrain
