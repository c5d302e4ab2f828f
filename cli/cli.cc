#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "runtime/base/log.h"

namespace pstrain {

namespace {

int dispatch(int argc, char** argv) {
  CLI::App app{
      "pstrain: a parameter-server training runtime for MNIST-style models.\n"
      "A role process: pstrain --job_name=ps|worker --task_index=N [flags] (as "
      "mnist_replica.py)",
      "pstrain"};
  app.require_subcommand(0, 1);
  app.set_help_all_flag("--help-all", "Help for every command");
  bool version = false;
  app.add_flag("--version", version, "Print the version and the GPUs this process sees");
  add_log_level_flag(app);
  RoleFlags role_flags;
  add_role_flags(app, role_flags);

  TrainCommandFlags train_flags;
  CLI::App* train = app.add_subcommand("train", "Train a model in this process (the reference)");
  add_training_flags(*train, train_flags.train);
  train->add_option("--summary_json", train_flags.summary_json,
                    "Also write the JSON summary to this file");
  add_log_level_flag(*train);

  // `pstrain launch [flags]`: everything after `launch` is parsed by run_launch_command.
  CLI::App* launch = app.add_subcommand(
      "launch", "Run a distributed job (N ps + M workers) on this machine; see launch --help");
  launch->prefix_command();
  launch->set_help_flag();

  CLI::App* devices = app.add_subcommand("devices", "List the GPUs this process sees");

  // `pstrain status ...`: everything after `status` is parsed by run_status_command.
  CLI::App* status = app.add_subcommand(
      "status", "Show how a job is doing (JOB_DIR or --ps_hosts); see status --help");
  status->prefix_command();
  status->set_help_flag();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  if (version || devices->parsed()) return run_version_command();
  if (train->parsed() || launch->parsed()) {
    // Flags before the command word belong to role processes; a command would ignore them.
    for (const CLI::Option* opt : app.get_options()) {
      if (opt->count() > 0 && opt->get_name() != "--log_level") {
        std::fprintf(stderr, "%s was given before the command: put it after `%s`\n",
                     opt->get_name().c_str(), train->parsed() ? "train" : "launch");
        return kExitUsage;
      }
    }
  }
  if (train->parsed()) return run_train_command(train_flags);
  if (launch->parsed()) return run_launch_command(launch->remaining());
  if (status->parsed()) return run_status_command(status->remaining(), stdout);
  if (argc <= 1) {
    std::fputs(app.help().c_str(), stderr);
    return kExitUsage;
  }
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
