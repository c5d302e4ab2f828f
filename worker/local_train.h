// `pstrain train`: single-process training, the reference that distributed runs are compared
// with. The model runs on the chosen backend; the optimizer update is the same function the
// parameter servers apply.
//
// Thread-safety: one call at a time per Ops.
#pragma once

#include <atomic>
#include <string>

#include <nlohmann/json.hpp>

#include "kernels/ops.h"
#include "runtime/base/status.h"
#include "worker/data.h"
#include "worker/train_config.h"
#include "worker/training_sink.h"

namespace pstrain {

struct TrainSummary {
  std::string model;
  std::string backend;
  std::string optimizer;
  int64_t steps = 0;
  int batch_size = 0;
  int64_t num_parameters = 0;
  double final_loss = 0;  // mean training loss over the last 100 steps (or fewer)
  double test_accuracy = 0;
  int64_t test_examples = 0;
  double train_seconds = 0;  // the training loop alone
  double wall_seconds = 0;   // data loading, training and evaluation
  double examples_per_second = 0;

  nlohmann::json to_json() const;
};

// Trains on `data.train` and evaluates on `data.validation` (when hold_out_validation() filled
// it: callers hold out config.validation_size first, as `pstrain train` does) and `data.test`,
// reporting every step, the end of training and the evaluations to `sink`
// (worker/training_sink.h; `pstrain train` gives it a ProgressLineSink). The summary is built
// from the same reports.
// Checkpoints (config.checkpoint, worker/checkpointer.h): with a directory, training resumes
// from its newest complete checkpoint (parameters, optimizer slots, step; the log says which)
// and saves every save_steps / save_secs and at the end. `stop` turning non-zero (a signal
// handler stores the signal) ends training between two steps: a final checkpoint is written
// and the result is kCancelled.
Result<TrainSummary> train_locally(const TrainConfig& config, const TrainTestData& data, Ops& ops,
                                   TrainingSink& sink, const std::atomic<int>* stop = nullptr);

}  // namespace pstrain
