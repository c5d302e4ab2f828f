#include "runtime/job/task_env.h"

namespace pstrain {
namespace {

template <typename T>
std::optional<T> number_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<T>();
}

}  // namespace

nlohmann::json WorkerStatus::to_json() const {
  nlohmann::json j = {{"task", "worker"},
                      {"index", index},
                      {"state", state},
                      {"local_step", local_step},
                      {"global_step", global_step},
                      {"train_steps", train_steps},
                      {"examples_per_second", examples_per_second}};
  if (loss) j["loss"] = *loss;
  if (test_accuracy) j["test_accuracy"] = *test_accuracy;
  return j;
}

std::optional<WorkerStatus> parse_worker_status(const std::string& text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  WorkerStatus s;
  if (auto it = j.find("state"); it != j.end() && it->is_string()) s.state = it->get<std::string>();
  if (auto v = number_field<int>(j, "index")) s.index = *v;
  if (auto v = number_field<int64_t>(j, "local_step")) s.local_step = *v;
  if (auto v = number_field<int64_t>(j, "global_step")) s.global_step = *v;
  if (auto v = number_field<int64_t>(j, "train_steps")) s.train_steps = *v;
  if (auto v = number_field<double>(j, "loss")) s.loss = *v;
  if (auto v = number_field<double>(j, "examples_per_second")) s.examples_per_second = *v;
  if (auto v = number_field<double>(j, "test_accuracy")) s.test_accuracy = *v;
  return s;
}

std::string to_json_line(const MetricsRecord& r) {
  nlohmann::ordered_json j = {{"kind", r.kind},
                              {"time", r.time},
                              {"elapsed", r.elapsed},
                              {"index", r.index},
                              {"global_step", r.global_step}};
  if (r.kind == "eval") {
    j["split"] = r.split;
    j["accuracy"] = r.accuracy;
    j["cross_entropy"] = r.cross_entropy;
  } else {
    j["local_step"] = r.local_step;
    j["loss"] = r.loss;
    j["mean_loss"] = r.mean_loss;
    j["examples_per_second"] = r.examples_per_second;
  }
  return j.dump();
}

std::optional<MetricsRecord> parse_metrics_line(const std::string& line) {
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto kind = j.find("kind");
  if (kind == j.end() || !kind->is_string()) return std::nullopt;
  MetricsRecord r;
  r.kind = kind->get<std::string>();
  if (r.kind != "step" && r.kind != "eval") return std::nullopt;
  if (auto v = number_field<double>(j, "time")) r.time = *v;
  if (auto v = number_field<double>(j, "elapsed")) r.elapsed = *v;
  if (auto v = number_field<int>(j, "index")) r.index = *v;
  if (auto v = number_field<int64_t>(j, "global_step")) r.global_step = *v;
  if (auto v = number_field<int64_t>(j, "local_step")) r.local_step = *v;
  if (auto v = number_field<double>(j, "loss")) r.loss = *v;
  if (auto v = number_field<double>(j, "mean_loss")) r.mean_loss = *v;
  if (auto v = number_field<double>(j, "examples_per_second")) r.examples_per_second = *v;
  if (auto it = j.find("split"); it != j.end() && it->is_string()) r.split = it->get<std::string>();
  if (auto v = number_field<double>(j, "accuracy")) r.accuracy = *v;
  if (auto v = number_field<double>(j, "cross_entropy")) r.cross_entropy = *v;
  return r;
}

}  // namespace pstrain
