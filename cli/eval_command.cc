// `pstrain eval --checkpoint_dir D [--checkpoint C] [--data_dir DIR] [--summary_json F]`: a
// checkpoint's model on the test set: accuracy, mean cross-entropy, per-class precision and
// recall and the confusion matrix on stdout; the same as JSON with --summary_json (written
// atomically). Exit codes: 0 evaluated, 2 bad usage, no checkpoint or bad data, 1 a failure.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/serving.h"
#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "worker/data.h"

namespace pstrain {
namespace {

struct ClassStats {
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  int64_t correct = 0;
  int64_t total = 0;
};

}  // namespace

int run_eval_command(const std::vector<std::string>& args, std::FILE* out) {
  CLI::App app{
      "Evaluate a checkpoint's model on the test set: accuracy, cross-entropy, per-class "
      "precision and recall, and the confusion matrix (rows: true class, columns: predicted).\n"
      "Exit codes: 0 evaluated, 1 a failure, 2 bad usage, no complete checkpoint or bad data.",
      "pstrain eval"};
  ServingFlags f;
  std::string data_dir = kDefaultDataDir, summary_json;
  int eval_batch = 500;  // as `pstrain train`'s, so both compute the same logits
  add_serving_checkpoint_flags(app, f);
  app.add_option("--data_dir", data_dir,
                 "A directory with t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw or "
                 ".gz)")
      ->capture_default_str();
  app.add_option("--summary_json", summary_json, "Also write the results as JSON to this file");
  add_int_option(app, "--eval_batch", eval_batch, "Examples per forward pass")
      ->capture_default_str();
  add_serving_backend_flags(app, f);
  add_log_level_flag(app);
  if (std::optional<int> code = parse_command_words(app, args)) return *code;
  if (Status st = apply_environment(app); !st.ok()) {
    std::fprintf(stderr, "pstrain eval: %s\n", st.message().c_str());
    return kExitUsage;
  }
  if (eval_batch <= 0) {
    std::fprintf(stderr, "pstrain eval: --eval_batch must be positive, got %d\n", eval_batch);
    return kExitUsage;
  }

  auto loaded = load_serving_model(f);
  if (!loaded.ok()) {
    std::fprintf(stderr, "pstrain eval: %s\n", loaded.status().message().c_str());
    return exit_code_for(loaded.status());
  }
  auto test = load_test_set(data_dir);
  if (!test.ok()) {
    std::fprintf(stderr, "pstrain eval: %s\n", test.status().message().c_str());
    return kExitUsage;
  }
  const ModelOptions& o = loaded->trained.options;
  if (test->rows != o.image_rows || test->cols != o.image_cols) {
    std::fprintf(stderr, "pstrain eval: %s holds %dx%d images; the model takes %dx%d\n",
                 data_dir.c_str(), test->rows, test->cols, o.image_rows, o.image_cols);
    return kExitUsage;
  }

  // Model::evaluate, as training evaluates (the same accuracy and cross-entropy), with each
  // example's predicted class from the same forward pass for the per-class figures.
  const int k = o.classes;
  std::vector<int32_t> predicted_class(test->labels.size());
  const Model::Evaluation e =
      loaded->model->evaluate(test->images, test->labels, eval_batch, predicted_class);
  ClassStats s;
  s.confusion.assign(static_cast<size_t>(k), std::vector<int64_t>(static_cast<size_t>(k), 0));
  for (size_t i = 0; i < test->labels.size(); ++i) {
    ++s.confusion[static_cast<size_t>(test->labels[i])][static_cast<size_t>(predicted_class[i])];
  }
  s.correct = e.correct;
  s.total = test->count;
  const double accuracy =
      s.total > 0 ? static_cast<double>(s.correct) / static_cast<double>(s.total) : 0.0;
  const double cross_entropy = e.cross_entropy;
  std::vector<double> precision(static_cast<size_t>(k)), recall(static_cast<size_t>(k));
  std::vector<int64_t> support(static_cast<size_t>(k)), predicted(static_cast<size_t>(k));
  for (size_t c = 0; c < static_cast<size_t>(k); ++c) {
    for (size_t j = 0; j < static_cast<size_t>(k); ++j) {
      support[c] += s.confusion[c][j];
      predicted[c] += s.confusion[j][c];
    }
    const auto tp = static_cast<double>(s.confusion[c][c]);
    precision[c] = predicted[c] > 0 ? tp / static_cast<double>(predicted[c]) : 0.0;
    recall[c] = support[c] > 0 ? tp / static_cast<double>(support[c]) : 0.0;
  }

  std::fprintf(out, "checkpoint %s (%s, global step %lld)\n", loaded->trained.checkpoint.c_str(),
               o.name.c_str(), static_cast<long long>(loaded->trained.step));
  std::fprintf(out, "test set: %lld examples from %s\n", static_cast<long long>(s.total),
               data_dir.c_str());
  std::fprintf(out, "accuracy = %.4f (%lld of %lld)\n", accuracy, static_cast<long long>(s.correct),
               static_cast<long long>(s.total));
  std::fprintf(out, "cross entropy = %.6f\n\n", cross_entropy);
  std::fprintf(out, "%-6s %-9s %-9s %s\n", "class", "precision", "recall", "examples");
  for (size_t c = 0; c < static_cast<size_t>(k); ++c) {
    std::fprintf(out, "%-6zu %-9.4f %-9.4f %lld\n", c, precision[c], recall[c],
                 static_cast<long long>(support[c]));
  }
  std::fprintf(out, "\nconfusion matrix (rows: true class, columns: predicted class)\n%6s", "");
  for (int j = 0; j < k; ++j) std::fprintf(out, " %6d", j);
  std::fprintf(out, "\n");
  for (size_t c = 0; c < static_cast<size_t>(k); ++c) {
    std::fprintf(out, "%6zu", c);
    for (size_t j = 0; j < static_cast<size_t>(k); ++j) {
      std::fprintf(out, " %6lld", static_cast<long long>(s.confusion[c][j]));
    }
    std::fprintf(out, "\n");
  }

  if (!summary_json.empty()) {
    nlohmann::json classes = nlohmann::json::array();
    for (size_t c = 0; c < static_cast<size_t>(k); ++c) {
      classes.push_back({{"class", c},
                         {"precision", precision[c]},
                         {"recall", recall[c]},
                         {"examples", support[c]},
                         {"predicted", predicted[c]}});
    }
    const nlohmann::json j = {{"checkpoint", loaded->trained.checkpoint},
                              {"model", o.name},
                              {"global_step", loaded->trained.step},
                              {"data_dir", data_dir},
                              {"examples", s.total},
                              {"correct", s.correct},
                              {"accuracy", accuracy},
                              {"cross_entropy", cross_entropy},
                              {"classes", classes},
                              {"confusion_matrix", s.confusion}};
    if (Status st = write_file_atomically(summary_json, j.dump(2) + "\n"); !st.ok()) {
      std::fprintf(stderr, "pstrain eval: %s\n", st.message().c_str());
      return kExitFailure;
    }
  }
  return kExitOk;
}

}  // namespace pstrain
