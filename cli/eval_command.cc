// `pstrain eval --checkpoint_dir D [--checkpoint C] [--data_dir DIR] [--summary_json F]`: a
// checkpoint's model on the test set: accuracy, mean cross-entropy, per-class precision and
// recall and the confusion matrix on stdout; the same as JSON with --summary_json (written
// atomically). Exit codes: 0 evaluated, 2 bad usage, no checkpoint or bad data, 1 a failure.
#include <cmath>
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
  double cross_entropy_sum = 0;
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

  // One forward pass per batch: the predicted class (the first largest logit, as
  // Ops::count_correct takes it) and the softmax cross-entropy of each example.
  const int k = o.classes;
  ClassStats s;
  s.confusion.assign(static_cast<size_t>(k), std::vector<int64_t>(static_cast<size_t>(k), 0));
  std::vector<float> logits, probs;
  const int64_t pixels = test->pixels();
  for (int64_t start = 0; start < test->count; start += eval_batch) {
    const int n = static_cast<int>(std::min<int64_t>(eval_batch, test->count - start));
    logits.resize(static_cast<size_t>(n) * static_cast<size_t>(k));
    probs.resize(logits.size());
    loaded->model->logits(
        std::span<const float>(test->images)
            .subspan(static_cast<size_t>(start * pixels), static_cast<size_t>(n * pixels)),
        n, logits);
    for (int i = 0; i < n; ++i) {
      const float* row = logits.data() + static_cast<size_t>(i) * static_cast<size_t>(k);
      int best = 0;
      for (int j = 1; j < k; ++j) {
        if (row[j] > row[best]) best = j;
      }
      const int label = test->labels[static_cast<size_t>(start + i)];
      double m = row[0];
      for (int j = 1; j < k; ++j) m = std::max(m, static_cast<double>(row[j]));
      double sum = 0;
      for (int j = 0; j < k; ++j) sum += std::exp(static_cast<double>(row[j]) - m);
      s.cross_entropy_sum += std::log(sum) + m - static_cast<double>(row[label]);
      ++s.confusion[static_cast<size_t>(label)][static_cast<size_t>(best)];
      s.correct += best == label ? 1 : 0;
      ++s.total;
    }
  }
  const double accuracy =
      s.total > 0 ? static_cast<double>(s.correct) / static_cast<double>(s.total) : 0.0;
  const double cross_entropy =
      s.total > 0 ? s.cross_entropy_sum / static_cast<double>(s.total) : 0.0;
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
