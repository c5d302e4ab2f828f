// `pstrain predict --checkpoint_dir D --input X --output Y.csv`: batch scoring. X is an IDX
// images file (raw or gzip), one PNG file, or a directory of PNG files (every non-hidden
// regular file in it, in name order; worker/png_image.h says how PNGs become grey 28x28
// images). Y.csv: a header, then one line per image: its index (IDX) or file name (PNG), the
// predicted class and the ten probabilities. Images are read, scored and written in batches
// of --batch_size, so the input never has to fit in memory. The CSV is written to a temporary
// file and renamed over Y.csv only once every image was scored: a bad input (a truncated IDX
// file, a PNG of another size, a file that is not an image) is exit 2 with an error naming the
// file, and nothing is left at Y.csv.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/serving.h"
#include "runtime/base/log.h"
#include "worker/data.h"
#include "worker/png_image.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;

bool is_png_name(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower.size() >= 4 && lower.compare(lower.size() - 4, 4, ".png") == 0;
}

// A CSV field: quoted when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// Scores one batch and appends its lines.
void score(ServingModel& m, const std::vector<float>& images, const std::vector<std::string>& ids,
           std::FILE* out) {
  const int n = static_cast<int>(ids.size());
  const int k = m.trained.options.classes;
  std::vector<float> logits(static_cast<size_t>(n) * static_cast<size_t>(k));
  std::vector<float> probs(logits.size());
  m.model->logits(images, n, logits);
  softmax_rows(logits, k, probs);
  for (int i = 0; i < n; ++i) {
    const float* row = logits.data() + static_cast<size_t>(i) * static_cast<size_t>(k);
    const int best = static_cast<int>(std::max_element(row, row + k) - row);
    std::fprintf(out, "%s,%d", ids[static_cast<size_t>(i)].c_str(), best);
    for (int j = 0; j < k; ++j) {
      std::fprintf(out, ",%.9g",
                   probs[static_cast<size_t>(i) * static_cast<size_t>(k) + static_cast<size_t>(j)]);
    }
    std::fputc('\n', out);
  }
}

void header(const char* id, int classes, std::FILE* out) {
  std::fprintf(out, "%s,predicted", id);
  for (int j = 0; j < classes; ++j) std::fprintf(out, ",p%d", j);
  std::fputc('\n', out);
}

}  // namespace

int run_predict_command(const std::vector<std::string>& args) {
  CLI::App app{
      "Score images with a checkpoint's model (batch scoring): an IDX images file (raw or "
      ".gz), a PNG file or a directory of PNG files in; a CSV out with the index or file name, "
      "the predicted class and the probability of each class.\n"
      "Exit codes: 0 scored, 1 a failure, 2 bad usage, no complete checkpoint or bad input "
      "(nothing is written at --output then).",
      "pstrain predict"};
  ServingFlags f;
  std::string input, output;
  int batch_size = 1000;
  add_serving_checkpoint_flags(app, f);
  app.add_option("--input", input, "An IDX images file, a PNG file or a directory of PNG files")
      ->required();
  app.add_option("--output", output, "The CSV file to write")->required();
  add_int_option(app, "--batch_size", batch_size, "Images read and scored at a time")
      ->capture_default_str();
  add_serving_backend_flags(app, f);
  add_log_level_flag(app);
  if (std::optional<int> code = parse_command_words(app, args)) return *code;
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "pstrain predict: %s\n", st.message().c_str());
    return exit_code_for(st);
  };
  if (Status st = apply_environment(app); !st.ok()) return fail(st);
  if (batch_size <= 0) {
    return fail(
        invalid_argument("--batch_size must be positive, got " + std::to_string(batch_size)));
  }
  std::error_code ec;
  if (!fs::exists(input, ec)) return fail(not_found("--input " + input + " does not exist"));

  auto loaded = load_serving_model(f);
  if (!loaded.ok()) return fail(loaded.status());
  const ModelOptions& o = loaded->trained.options;
  AtomicOutput csv;
  if (Status st = csv.open(output); !st.ok()) return fail(st);

  int64_t scored = 0;
  std::vector<float> images;
  std::vector<std::string> ids;
  if (fs::is_directory(input, ec) || is_png_name(input)) {
    std::vector<std::string> files;
    if (fs::is_directory(input, ec)) {
      for (const fs::directory_entry& e : fs::directory_iterator(input, ec)) {
        const std::string name = e.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        if (!e.is_regular_file(ec)) continue;
        files.push_back(name);
      }
      if (ec) return fail(invalid_argument("--input " + input + ": " + ec.message()));
      std::sort(files.begin(), files.end());
      if (files.empty()) return fail(invalid_argument("--input " + input + " holds no file"));
    }
    header("file", o.classes, csv.file());
    const bool one_file = files.empty();
    if (one_file) files.push_back(input);
    for (size_t i = 0; i < files.size(); i += static_cast<size_t>(batch_size)) {
      const size_t end = std::min(files.size(), i + static_cast<size_t>(batch_size));
      images.clear();
      ids.clear();
      for (size_t j = i; j < end; ++j) {
        const std::string path = one_file ? files[j] : (fs::path(input) / files[j]).string();
        auto img = read_png_image(path, o.image_rows, o.image_cols);
        if (!img.ok()) return fail(img.status());
        images.insert(images.end(), img->begin(), img->end());
        ids.push_back(csv_field(one_file ? fs::path(files[j]).filename().string() : files[j]));
      }
      score(*loaded, images, ids, csv.file());
      scored += static_cast<int64_t>(ids.size());
    }
  } else {
    auto stream = IdxImageStream::open(input);
    if (!stream.ok()) return fail(stream.status());
    IdxImageStream& idx = **stream;
    if (idx.rows() != o.image_rows || idx.cols() != o.image_cols) {
      return fail(invalid_argument(input + " holds " + std::to_string(idx.rows()) + "x" +
                                   std::to_string(idx.cols()) + " images; the model takes " +
                                   std::to_string(o.image_rows) + "x" +
                                   std::to_string(o.image_cols)));
    }
    header("index", o.classes, csv.file());
    while (true) {
      auto n = idx.next(batch_size, images);
      if (!n.ok()) return fail(n.status());
      if (*n == 0) break;
      ids.clear();
      for (int64_t j = 0; j < *n; ++j) ids.push_back(std::to_string(scored + j));
      score(*loaded, images, ids, csv.file());
      scored += *n;
    }
  }
  if (Status st = csv.commit(); !st.ok()) return fail(st);
  PSTRAIN_LOG(INFO) << "scored " << scored << " images into " << output;
  return kExitOk;
}

}  // namespace pstrain
