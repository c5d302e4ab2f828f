// The contract between a launcher and the tasks it starts: the environment variables it sets
// and the status file a worker keeps. Both ends include this header and nothing else defines
// these names or fields.
//
// Environment (as Azure Batch AI and Azure ML set it; pstrain's launcher sets the same):
//   AZ_BATCHAI_PS_HOSTS, AZ_BATCHAI_WORKER_HOSTS  comma-separated host:port lists
//   AZ_BATCHAI_TASK_INDEX                         this task's index in its job
//   AZ_BATCHAI_NUM_GPUS                           GPUs per task
//   AZ_BATCHAI_JOB_NAME, AZ_BATCHAI_STDOUTERR_DIR the job's name and its log directory
//   TF_CONFIG                                     {"cluster": {...}, "task": {...}} JSON
//   PSTRAIN_STATUS_FILE                           where a worker keeps its WorkerStatus
//   PSTRAIN_METRICS_FILE                          where a worker appends its MetricsRecords
//
// Status file: one JSON object (WorkerStatus::to_json), rewritten atomically (temporary file,
// rename) so a reader never sees half of one. A reader treats a missing, partial or malformed
// file as "nothing new" (parse_worker_status returns nullopt), and every field as optional.
//
// Metrics file: JSON lines, one MetricsRecord a line, appended and flushed as training goes
// (to_json_line / parse_metrics_line, the one place of the format): "step" records (time,
// global and local step, loss, mean loss, examples/s) every --summary_every steps, "eval"
// records (split, accuracy, cross-entropy) after each evaluation. A line that does not parse
// (a torn last line) is skipped by readers.
// Thread-safety: values and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace pstrain::task_env {

inline constexpr const char* kPsHosts = "AZ_BATCHAI_PS_HOSTS";
inline constexpr const char* kWorkerHosts = "AZ_BATCHAI_WORKER_HOSTS";
inline constexpr const char* kTaskIndex = "AZ_BATCHAI_TASK_INDEX";
inline constexpr const char* kNumGpus = "AZ_BATCHAI_NUM_GPUS";
inline constexpr const char* kJobName = "AZ_BATCHAI_JOB_NAME";
inline constexpr const char* kStdoutErrDir = "AZ_BATCHAI_STDOUTERR_DIR";
inline constexpr const char* kTfConfig = "TF_CONFIG";
inline constexpr const char* kStatusFile = "PSTRAIN_STATUS_FILE";
inline constexpr const char* kMetricsFile = "PSTRAIN_METRICS_FILE";

}  // namespace pstrain::task_env

namespace pstrain {

// What a worker's status file holds. `state` goes "starting" -> "running" -> ("evaluating")
// -> "done"; a worker stopped by SIGTERM, SIGINT or SIGHUP ends on "cancelled", one that fails
// on "failed" (a worker killed outright keeps its last state).
struct WorkerStatus {
  std::string state;
  int index = 0;
  int64_t local_step = 0;
  int64_t global_step = 0;
  int64_t train_steps = 0;
  std::optional<double> loss;  // mean of the recent training losses
  double examples_per_second = 0;
  std::optional<double> test_accuracy;  // the chief, once it evaluated

  nlohmann::json to_json() const;
};

// Parses a status file's text; nullopt when it is not a JSON object (missing fields keep their
// defaults, fields of the wrong type are skipped).
std::optional<WorkerStatus> parse_worker_status(const std::string& text);

// One line of a metrics file.
struct MetricsRecord {
  std::string kind = "step";  // "step" or "eval"
  double time = 0;            // seconds since the epoch
  double elapsed = 0;         // seconds since training began
  int index = 0;              // the worker's index
  int64_t global_step = 0;
  // "step" records
  int64_t local_step = 0;
  double loss = 0;       // this step's training loss
  double mean_loss = 0;  // the recent mean (what TensorBoard's job-level `loss` shows)
  double examples_per_second = 0;
  // "eval" records
  std::string split;  // "test", "validation"
  double accuracy = 0;
  double cross_entropy = 0;
};
// One line, without the newline; keys in a fixed order.
std::string to_json_line(const MetricsRecord& r);
// nullopt for a line that is not a JSON object with a known "kind".
std::optional<MetricsRecord> parse_metrics_line(const std::string& line);

}  // namespace pstrain
