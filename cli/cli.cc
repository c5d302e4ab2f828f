#include "cli/cli.h"

#include <cstdlib>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cli/args.h"
#include "cli/commands.h"
#include "runtime/base/log.h"

namespace pstrain {

namespace {

const char* const kExamples =
    "Examples:\n"
    "  # a role process, as mnist_replica.py (Batch AI starts one per task)\n"
    "  pstrain --job_name=ps --task_index=0 --ps_hosts=h0:2222 --worker_hosts=h1:2222,h2:2222\n"
    "  pstrain --job_name=worker --task_index=1 --ps_hosts=h0:2222 "
    "--worker_hosts=h1:2222,h2:2222 --train_steps=1000\n"
    "  # train in this process (the reference)\n"
    "  pstrain train --train_steps 500 --batch_size 64 --summary_json summary.json\n"
    "  # a whole job on this machine: 1 ps, 2 workers\n"
    "  pstrain launch --ps 1 --workers 2 --sync_replicas --train_steps 300\n"
    "  # flags from a file (one --name=value a line) and from PSTRAIN_<NAME> variables\n"
    "  PSTRAIN_TRAIN_STEPS=300 pstrain train --flagfile=job.flags\n";

// Commands before the flags; with --help-all, launch's own flags after the commands.
class CommandsFirst : public CLI::Formatter {
 public:
  std::string launch_help;
  std::string make_help(const CLI::App* app, std::string name,
                        CLI::AppFormatMode mode) const override {
    if (app->get_parent() != nullptr) return CLI::Formatter::make_help(app, name, mode);
    std::stringstream out;
    out << make_description(app) << make_usage(app, name) << make_subcommands(app, mode);
    if (mode == CLI::AppFormatMode::All && !launch_help.empty()) {
      out << "\n`pstrain launch` takes:\n" << launch_help;
    }
    out << make_groups(app, mode) << '\n' << make_footer(app);
    return out.str();
  }
};

int usage_error(const std::string& message) {
  std::fprintf(stderr, "pstrain: %s\n", message.c_str());
  return kExitUsage;
}

int dispatch(int argc, char** argv) {
  auto expanded = expand_flagfiles(std::vector<std::string>(argv + 1, argv + argc));
  if (!expanded.ok()) return usage_error(expanded.status().message());

  CLI::App app{
      "pstrain: a parameter-server training runtime for MNIST-style models.\n"
      "A role process: pstrain --job_name=ps|worker --task_index=N [flags] (as "
      "mnist_replica.py). Flags also come from --flagfile FILE and PSTRAIN_<NAME> variables.",
      "pstrain"};
  auto formatter = std::make_shared<CommandsFirst>();
  app.formatter(formatter);
  app.footer(kExamples);
  app.require_subcommand(0, 1);
  app.allow_extras();
  app.set_help_all_flag("--help-all", "Help for every command");
  RoleFlags role_flags;
  add_role_flags(app, role_flags);  // first: --help lists the groups in the order they appear
  bool version = false;
  app.add_flag("-V,--version", version,
               "Print the version and the backends built (`pstrain devices` lists the GPUs)")
      ->group(kOwnGroup);
  add_flagfile_option(app);
  add_log_level_flag(app);

  TrainCommandFlags train_flags;
  CLI::App* train = app.add_subcommand("train", "Train a model in this process (the reference)");
  train->allow_extras();
  add_training_flags(*train, train_flags.train);
  train
      ->add_option("--summary_json", train_flags.summary_json,
                   "Also write the JSON summary to this file")
      ->group(kOutputGroup);
  add_output_flags(*train, train_flags.checkpoint_dir, train_flags.log_dir, train_flags.log_every);
  add_summary_every_flag(*train, train_flags.summary_every);
  add_metrics_flags(*train, train_flags.metrics);
  add_flagfile_option(*train);
  add_log_level_flag(*train);

  // `pstrain launch [flags]`: everything after `launch` is parsed by run_launch_command.
  CLI::App* launch = app.add_subcommand(
      "launch", "Run a distributed job (N ps + M workers) on this machine; see launch --help");
  launch->prefix_command();
  launch->set_help_flag();

  CLI::App* devices = app.add_subcommand("devices", "List the GPUs this process sees");
  CLI::App* version_command = app.add_subcommand("version", "Print what --version prints");
  const std::vector<std::string> commands = {
      "train", "launch", "status", "devices", "version", "checkpoint", "eval", "predict", "export"};

  // `pstrain status ...`: everything after `status` is parsed by run_status_command.
  CLI::App* status = app.add_subcommand(
      "status", "Show how a job is doing (JOB_DIR or --ps_hosts); see status --help");
  status->prefix_command();
  status->set_help_flag();

  // `pstrain checkpoint list DIR`: parsed by run_checkpoint_command.
  CLI::App* checkpoint_cmd = app.add_subcommand(
      "checkpoint", "List a --checkpoint_dir's checkpoints; see checkpoint --help");
  checkpoint_cmd->prefix_command();
  checkpoint_cmd->set_help_flag();

  // `pstrain eval|predict|export ...`: parsed by their commands (cli/serving.h).
  CLI::App* eval_cmd = app.add_subcommand(
      "eval", "Evaluate a checkpoint on the test set (accuracy, per-class, confusion matrix)");
  CLI::App* predict_cmd = app.add_subcommand(
      "predict", "Score IDX or PNG images with a checkpoint into a CSV; see predict --help");
  CLI::App* export_cmd =
      app.add_subcommand("export", "Export a checkpoint as ONNX or safetensors; see export --help");
  for (CLI::App* c : {eval_cmd, predict_cmd, export_cmd}) {
    c->prefix_command();
    c->set_help_flag();
  }

  std::vector<std::string> reversed(expanded->rbegin(), expanded->rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    formatter->launch_help = launch_command_help();
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  if (train->parsed()) {
    if (std::string m = leftover_message(*train, train->remaining()); !m.empty()) {
      return usage_error(m);
    }
  }
  if (std::string m = leftover_message(app, app.remaining(), commands); !m.empty()) {
    return usage_error(m);
  }

  if (devices->parsed()) return run_version_command(/*list_gpus=*/true);
  if (version || version_command->parsed()) return run_version_command(/*list_gpus=*/false);
  CLI::App* command_app = nullptr;
  for (CLI::App* c : {train, launch, status, eval_cmd, predict_cmd, export_cmd}) {
    if (c->parsed()) command_app = c;
  }
  if (command_app != nullptr) {
    // Flags before the command word belong to role processes; a command would ignore them.
    const char* command = command_app->get_name().c_str();
    for (const CLI::Option* opt : app.get_options()) {
      if (opt->count() > 0 && opt->get_name() != "--log_level") {
        std::fprintf(stderr, "%s was given before the command: put it after `%s`\n",
                     opt->get_name().c_str(), command);
        return kExitUsage;
      }
    }
  }
  if (train->parsed()) {
    if (Status st = apply_environment(*train); !st.ok()) return usage_error(st.message());
    return run_train_command(train_flags);
  }
  if (launch->parsed()) return run_launch_command(launch->remaining());
  if (status->parsed()) return run_status_command(status->remaining(), stdout);
  if (checkpoint_cmd->parsed()) return run_checkpoint_command(checkpoint_cmd->remaining(), stdout);
  if (eval_cmd->parsed()) return run_eval_command(eval_cmd->remaining(), stdout);
  if (predict_cmd->parsed()) return run_predict_command(predict_cmd->remaining());
  if (export_cmd->parsed()) return run_export_command(export_cmd->remaining(), stdout);
  // A bare `pstrain` prints the help, except under a rank-based launch that needs no flag: a
  // ps-lite script's DMLC_ROLE=scheduler, or PSTRAIN_NUM_PS under srun/mpirun.
  if (argc <= 1 && std::getenv("DMLC_ROLE") == nullptr &&
      std::getenv("PSTRAIN_NUM_PS") == nullptr) {
    std::fputs(app.help().c_str(), stderr);
    return kExitUsage;
  }
  if (Status st = apply_environment(app); !st.ok()) return usage_error(st.message());
  return run_role_command(role_flags);
}

}  // namespace

int run_cli(int argc, char** argv) {
  // Errors from input come back as Status values; what reaches here is a failure that cannot
  // be recovered (a CUDA error, out of memory): report it and exit 1 rather than abort.
  try {
    return dispatch(argc, argv);
  } catch (const std::exception& e) {
    PSTRAIN_LOG(ERROR) << "fatal: " << e.what();
    return kExitFailure;
  }
}

}  // namespace pstrain
