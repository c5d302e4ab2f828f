// What `pstrain eval`, `pstrain predict` and `pstrain export` share (docs/serving.md): the
// flags that name a checkpoint (--checkpoint_dir, --checkpoint) and a backend (--num_gpus,
// --cpu_threads), a trained model loaded onto that backend, softmax on the host, and an output
// file that appears only whole.
//
// Contract
// - load_serving_model() reads the checkpoint (export/trained_model.h) and puts its parameters
//   into a Model on the chosen backend; errors name the directory or file.
// - softmax_rows() is the model's softmax in float, as ONNX's Softmax computes it (the max
//   subtracted first).
// - AtomicOutput writes to a temporary file beside `path` and renames it over `path` only in
//   commit(); destroyed without a commit it removes the temporary file, so a failed command
//   leaves nothing half-written at `path`.
// Thread-safety: the main thread.
#pragma once

#include <cstdio>
#include <memory>
#include <span>
#include <string>

#include <CLI/CLI.hpp>

#include "export/trained_model.h"
#include "kernels/model.h"
#include "kernels/ops.h"
#include "runtime/base/status.h"

namespace pstrain {

struct ServingFlags {
  std::string checkpoint_dir;
  std::string checkpoint;  // a prefix or index file; empty: the latest complete one
  int num_gpus = 0;        // 0: the CPU (the reference); 1: GPU 0 when there is one
  int cpu_threads = 0;     // 0: all cores
};
// --checkpoint_dir, --checkpoint and --flagfile (listed in the help; flagfiles are read before
// parsing, as for every command).
void add_serving_checkpoint_flags(CLI::App& app, ServingFlags& f);
void add_serving_backend_flags(CLI::App& app, ServingFlags& f);

struct ServingModel {
  TrainedModel trained;
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Model> model;
};
Result<ServingModel> load_serving_model(const ServingFlags& f);

// probs[i * classes + j] = softmax(logits row i)[j].
void softmax_rows(std::span<const float> logits, int classes, std::span<float> probs);

// The exit code for a Status from loading or reading input: 2 (bad usage, a missing or bad
// input) except for internal and unavailable errors, 1.
int exit_code_for(const Status& status);

class AtomicOutput {
 public:
  AtomicOutput() = default;
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  Status open(const std::string& path);
  std::FILE* file() { return file_; }
  // Flushes, fsyncs and renames the temporary file over the path.
  Status commit();

 private:
  std::string path_, temp_;
  std::FILE* file_ = nullptr;
};

}  // namespace pstrain
