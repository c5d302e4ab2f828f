// The commands behind `pstrain <command>`; each returns a process exit code (cli.h).
// Thread-safety: call from the main thread.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "cli/flags.h"

namespace pstrain {

struct TrainCommandFlags {
  TrainFlagValues train;
  std::string summary_json;             // where to write the JSON summary (optional)
  std::string checkpoint_dir, log_dir;  // created, as a role process does
  int log_every = 100;                  // accepted, as a role process does
  MetricsFlags metrics;                 // --metrics_port, --metrics_host
  int summary_every = 100;              // --summary_every
};
int run_train_command(const TrainCommandFlags& flags);

// A role process: `pstrain --job_name=ps|worker --task_index=N ...`, as mnist_replica.py.
struct RoleFlags {
  TrainFlagValues train;
  std::string job_name, ps_hosts, worker_hosts;
  int task_index = 0;
  // Which cluster flags were given (flags win over Batch AI, TF_CONFIG and defaults).
  CLI::Option* job_name_opt = nullptr;
  CLI::Option* ps_hosts_opt = nullptr;
  CLI::Option* worker_hosts_opt = nullptr;
  CLI::Option* task_index_opt = nullptr;
  CLI::Option* num_gpus_opt = nullptr;
  bool sync_replicas = false;
  int replicas_to_aggregate = 0;
  int staleness = 0;  // async bounded staleness; 0 = off
  bool download_only = false;
  bool existing_servers = false;
  std::string checkpoint_dir, log_dir, output_dir;
  int log_every = 1;  // mnist_replica prints every step
  std::string summary_json;
  std::string job_id;  // empty: derived from the cluster spec
  double heartbeat_timeout_s = 30;
  double startup_timeout_s = 600;
  double connect_timeout_s = 120;
  MetricsFlags metrics;     // --metrics_port, --metrics_host
  int summary_every = 100;  // --summary_every
  // Rank-based schedulers (docs/schedulers.md): --num_ps, --rendezvous, --rendezvous_timeout_s.
  int num_ps = 0;
  std::string rendezvous;
  double rendezvous_timeout_s = 300;
  CLI::Option* num_ps_opt = nullptr;
  CLI::Option* rendezvous_opt = nullptr;
  double ps_restart_timeout_s = 600;         // workers keep asking a silent PS this long (0: off)
  SecurityFlags security = SecurityFlags();  // --secret_file (docs/security.md)
  std::string compress = "none";             // --compress: how workers send gradients
  std::string transport = "auto";            // --transport: how workers reach the servers
  bool overlap = true;   // --overlap: workers send each layer's gradients during backward
  int push_stripes = 4;  // --push_stripes: connections a large push over TCP goes over
};
void add_role_flags(CLI::App& app, RoleFlags& f);
// Checks the role flags that need no cluster (timeouts 0.1 s to a week, --staleness,
// --replicas_to_aggregate); errors name the flag.
Status check_role_flags(const RoleFlags& f);
int run_role_command(const RoleFlags& flags);

// `pstrain launch [flags]`: `args` are the words after `launch`. Exit codes: 0 the job
// succeeded, 1 it failed, 2 bad usage, 130 cancelled (SIGINT/SIGTERM). See runtime/launcher.h.
int run_launch_command(const std::vector<std::string>& args);
// The help of `pstrain launch` (its own flags and the training flags), for --help-all.
std::string launch_command_help();

// `pstrain status JOB_DIR | --ps_hosts=h:p,... [--json]`: `args` are the words after `status`;
// the report goes to `out`, errors to stderr. Exit codes: 0 shown (every PS answered), 1 a PS
// did not answer within --timeout_s, 2 bad usage or JOB_DIR is not a job directory.
struct StatusCommandFlags {
  std::string job_dir;
  std::string ps_hosts, worker_hosts, job_id;
  double timeout_s = 5;
  double silent_s = 30;  // JOB_DIR: a status file older than this marks its worker silent
  bool json = false;
  SecurityFlags security =
      SecurityFlags();  // --secret_file (else PSTRAIN_SECRET_FILE): ask a job with a secret
};
int run_status_command(const std::vector<std::string>& args, std::FILE* out);

// `pstrain checkpoint list DIR [--json]` (cli/checkpoint_command.cc): `args` are the words
// after `checkpoint`. Exit codes: 0 listed, 2 bad usage or DIR unreadable.
int run_checkpoint_command(const std::vector<std::string>& args, std::FILE* out);

// Serving a trained model (docs/serving.md; cli/serving.h): `args` are the words after the
// command. Exit codes: 0 done, 1 a failure, 2 bad usage, no complete checkpoint or bad input.
// `pstrain eval --checkpoint_dir D ...`: accuracy, cross-entropy, per-class precision and
// recall, confusion matrix (cli/eval_command.cc).
int run_eval_command(const std::vector<std::string>& args, std::FILE* out);
// `pstrain predict --checkpoint_dir D --input X --output Y.csv` (cli/predict_command.cc).
int run_predict_command(const std::vector<std::string>& args);
// `pstrain export --checkpoint_dir D --format onnx|safetensors --output F`
// (cli/export_command.cc).
int run_export_command(const std::vector<std::string>& args, std::FILE* out);

// `pstrain --version` and `pstrain version` (list_gpus false: the CUDA plugin is not loaded),
// `pstrain devices` (list_gpus true: the GPUs this process sees, or why none).
int run_version_command(bool list_gpus);

}  // namespace pstrain
