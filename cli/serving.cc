#include "cli/serving.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "cli/flags.h"
#include "runtime/base/log.h"
#include "worker/backend.h"

namespace pstrain {

void add_serving_checkpoint_flags(CLI::App& app, ServingFlags& f) {
  app.add_option("--checkpoint_dir", f.checkpoint_dir,
                 "The checkpoint directory (`pstrain train` or a job's --checkpoint_dir); its "
                 "latest complete checkpoint is used");
  app.add_option("--checkpoint", f.checkpoint,
                 "One checkpoint instead of the latest: model.ckpt-STEP (in --checkpoint_dir) or "
                 "the path of its .index.json");
  add_flagfile_option(app);
}

void add_serving_backend_flags(CLI::App& app, ServingFlags& f) {
  add_int_option(app, "--num_gpus", f.num_gpus,
                 "0: the CPU (default, the reference); 1: a GPU when there is one");
  add_int_option(app, "--cpu_threads", f.cpu_threads, "CPU threads (0: all cores)");
}

Result<ServingModel> load_serving_model(const ServingFlags& f) {
  if (f.checkpoint_dir.empty() && f.checkpoint.empty()) {
    return invalid_argument("give --checkpoint_dir (or --checkpoint)");
  }
  if (f.num_gpus < 0) return invalid_argument("--num_gpus must be >= 0");
  ServingModel s;
  PSTRAIN_ASSIGN_OR_RETURN(s.trained, load_trained_model(f.checkpoint_dir, f.checkpoint));
  for (const std::string& why : s.trained.skipped) {
    PSTRAIN_LOG(WARNING) << "skipping a torn checkpoint: " << why;
  }
  PSTRAIN_ASSIGN_OR_RETURN(BackendChoice backend,
                           select_backend(f.num_gpus, 0, /*tf32=*/false, f.cpu_threads));
  if (!backend.warning.empty()) PSTRAIN_LOG(WARNING) << backend.warning;
  s.ops = std::move(backend.ops);
  PSTRAIN_ASSIGN_OR_RETURN(s.model, Model::create(s.trained.options, *s.ops));
  const std::vector<float>& p = s.trained.parameters;
  PSTRAIN_CHECK(static_cast<int64_t>(p.size()) == s.model->num_parameters());
  s.ops->copy_to_device(s.model->parameters().raw(), p.data(), p.size() * sizeof(float));
  s.ops->synchronize();
  PSTRAIN_LOG(INFO) << "loaded " << s.trained.checkpoint << " (" << s.trained.options.name
                    << ", global step " << s.trained.step << ")";
  return s;
}

void softmax_rows(std::span<const float> logits, int classes, std::span<float> probs) {
  const size_t k = static_cast<size_t>(classes);
  PSTRAIN_CHECK(k > 0 && logits.size() == probs.size() && logits.size() % k == 0);
  for (size_t row = 0; row < logits.size(); row += k) {
    const float* x = logits.data() + row;
    float* y = probs.data() + row;
    const float m = *std::max_element(x, x + k);
    float sum = 0;
    for (size_t j = 0; j < k; ++j) {
      y[j] = std::exp(x[j] - m);
      sum += y[j];
    }
    for (size_t j = 0; j < k; ++j) y[j] /= sum;
  }
}

int exit_code_for(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInternal:
    case StatusCode::kUnavailable:
    case StatusCode::kCancelled:
      return 1;
    default:
      return 2;
  }
}

AtomicOutput::~AtomicOutput() {
  if (file_ != nullptr) {
    std::fclose(file_);
    ::unlink(temp_.c_str());
  }
}

Status AtomicOutput::open(const std::string& path) {
  PSTRAIN_CHECK(file_ == nullptr);
  path_ = path;
  const std::filesystem::path p(path);
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) {
    return invalid_argument("--output " + path + " is a directory; give a file name");
  }
  temp_ = (p.parent_path() /
           ("." + p.filename().string() + ".tmp." + std::to_string(static_cast<long>(::getpid()))))
              .string();
  file_ = std::fopen(temp_.c_str(), "w");
  if (file_ == nullptr) {
    return invalid_argument("--output " + path + ": cannot create " + temp_ + ": " +
                            std::strerror(errno));
  }
  return {};
}

Status AtomicOutput::commit() {
  PSTRAIN_CHECK(file_ != nullptr);
  bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const int err = errno;
  ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok || std::rename(temp_.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(ok ? errno : err);
    ::unlink(temp_.c_str());
    return internal_error("cannot write " + path_ + ": " + why);
  }
  return {};
}

}  // namespace pstrain
