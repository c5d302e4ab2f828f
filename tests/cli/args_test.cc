// The command line people already know: typos with suggestions, grouped help, --flagfile,
// PSTRAIN_<NAME> variables, values out of range, `pstrain version`.
#include "cli/args.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/flags.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;

// Runs the CLI with `args` (no program name), capturing what it writes to stderr and stdout.
struct CliRun {
  int code = -1;
  std::string err, out;
};
CliRun cli(std::vector<std::string> args) {
  args.insert(args.begin(), "pstrain");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStderr();
  testing::internal::CaptureStdout();
  CliRun r;
  r.code = run_cli(static_cast<int>(argv.size()), argv.data());
  r.out = testing::internal::GetCapturedStdout();
  r.err = testing::internal::GetCapturedStderr();
  return r;
}

// Sets an environment variable for the scope of the test and restores the old value.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

struct Parsed {
  CLI::App app{"test"};
  RoleFlags flags;
  Parsed() {
    add_role_flags(app, flags);
    app.allow_extras();
  }
  void parse(std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());
    app.parse(args);
  }
};

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("pstrain_args_test_" + std::to_string(getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

TEST(Typos, EditDistance) {
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("launch", "lanch"), 1u);
  EXPECT_EQ(edit_distance("--trian_steps", "--train_steps"), 2u);
  EXPECT_EQ(nearest("lanch", {"train", "launch", "devices"}), "launch");
  EXPECT_EQ(nearest("zzzzzz", {"train", "launch", "devices"}), "");
}

TEST(Typos, UnknownFlagSuggestsTheNearestInOrder) {
  Parsed p;
  p.parse({"--trian_steps", "300"});
  EXPECT_EQ(p.app.remaining(), (std::vector<std::string>{"--trian_steps", "300"}));
  EXPECT_EQ(leftover_message(p.app, p.app.remaining()),
            "unknown flag --trian_steps; did you mean --train_steps? (not understood: "
            "--trian_steps 300)");
  EXPECT_EQ(leftover_message(p.app, {"--batch_sise=5"}),
            "unknown flag --batch_sise; did you mean --batch_size?");
  EXPECT_EQ(leftover_message(p.app, {"--num-gpus=2"}),
            "unknown flag --num-gpus; did you mean --num_gpus? (pstrain's flags use "
            "underscores, as TensorFlow's)");
  EXPECT_EQ(leftover_message(p.app, {"--completely_different"}),
            "unknown flag --completely_different");
  EXPECT_EQ(leftover_message(p.app, {}), "");
}

TEST(Typos, UnknownCommandSuggestsTheNearest) {
  CliRun r = cli({"lanch"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("unknown command \"lanch\"; did you mean \"launch\"?"), std::string::npos)
      << r.err;
  r = cli({"launch", "--trian_steps", "300"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("unknown flag --trian_steps; did you mean --train_steps?"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("--trian_steps 300"), std::string::npos) << r.err;
  r = cli({"train", "--num-gpus", "0"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("did you mean --num_gpus? (pstrain's flags use underscores"),
            std::string::npos)
      << r.err;
  r = cli({"--job_name=worker", "--trian_steps=3"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("did you mean --train_steps?"), std::string::npos) << r.err;
}

TEST(Help, GroupsCommandsFirstAndExamples) {
  CliRun r = cli({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  const std::string& h = r.out;
  for (const char* group : {kClusterGroup, kTrainingGroup, kModelGroup, kOutputGroup, kOwnGroup}) {
    EXPECT_NE(h.find(std::string(group) + ":"), std::string::npos) << group << " in\n" << h;
  }
  const auto commands = h.find("Subcommands:");
  ASSERT_NE(commands, std::string::npos) << h;
  EXPECT_LT(commands, h.find(std::string(kClusterGroup) + ":"));
  EXPECT_NE(h.find("Examples:"), std::string::npos);
  EXPECT_NE(h.find("pstrain launch --ps 1 --workers 2"), std::string::npos);
  // Each flag in its group.
  const auto cluster = h.find(std::string(kClusterGroup) + ":");
  const auto training = h.find(std::string(kTrainingGroup) + ":");
  EXPECT_GT(h.find("--num_gpus", cluster), cluster);
  EXPECT_LT(h.find("--num_gpus", cluster), h.find(":\n", cluster + 10));
  EXPECT_GT(h.find("--replicas_to_aggregate", training), training);
}

TEST(Help, HelpAllHasEveryCommandsFlags) {
  CliRun r = cli({"--help-all"});
  EXPECT_EQ(r.code, kExitOk);
  for (const char* flag : {"--ps ", "--workers", "--job_dir", "--pstrain_binary",
                           "--ps_exit_timeout_s", "--summary_json", "--flagfile"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag << " in\n" << r.out;
  }
  EXPECT_EQ(cli({"launch", "--help"}).code, kExitOk);
}

TEST(Help, EveryCommandThatTakesFlagsListsFlagfile) {
  for (const char* command : {"train", "launch", "eval", "predict", "export"}) {
    CliRun r = cli({command, "--help"});
    EXPECT_EQ(r.code, kExitOk) << command;
    EXPECT_NE(r.out.find("--flagfile"), std::string::npos) << command << " --help:\n" << r.out;
  }
}

TEST(Flagfile, ReadsOneFlagPerLineAndLaterWins) {
  const fs::path d = temp_dir("flagfile");
  write(d / "inner.flags", "--batch_size=32\n");
  write(d / "job.flags",
        "# a comment\n\n  --train_steps=300\n--learning_rate 0.5\n--sync_replicas\n--flagfile=" +
            (d / "inner.flags").string() + "\n");
  auto args = expand_flagfiles(
      {"--train_steps=7", "--flagfile", (d / "job.flags").string(), "--batch_size=64"});
  ASSERT_TRUE(args.ok()) << args.status().to_string();
  EXPECT_EQ(*args, (std::vector<std::string>{"--train_steps=7", "--train_steps=300",
                                             "--learning_rate", "0.5", "--sync_replicas",
                                             "--batch_size=32", "--batch_size=64"}));
  Parsed p;
  p.parse(*args);
  EXPECT_EQ(p.flags.train.config.train_steps, 300);  // the file's, given after the first
  EXPECT_EQ(p.flags.train.config.batch_size, 64);    // the command line's, given after the file
  EXPECT_FLOAT_EQ(p.flags.train.learning_rate, 0.5f);
  EXPECT_TRUE(p.flags.sync_replicas);
  fs::remove_all(d);
}

TEST(Flagfile, UnreadableFileIsExit2NamingIt) {
  auto args = expand_flagfiles({"--flagfile=/nonexistent/pstrain.flags"});
  ASSERT_FALSE(args.ok());
  EXPECT_NE(args.status().message().find("/nonexistent/pstrain.flags"), std::string::npos);
  CliRun r = cli({"train", "--flagfile=/nonexistent/pstrain.flags"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("/nonexistent/pstrain.flags"), std::string::npos) << r.err;
  const fs::path d = temp_dir("cycle");
  write(d / "self.flags", "--flagfile=" + (d / "self.flags").string() + "\n");
  EXPECT_FALSE(expand_flagfiles({"--flagfile=" + (d / "self.flags").string()}).ok());
  fs::remove_all(d);
}

TEST(Environment, FlagsComeFromPstrainVariables) {
  ScopedEnv steps("PSTRAIN_TRAIN_STEPS", "300");
  ScopedEnv sync("PSTRAIN_SYNC_REPLICAS", "true");
  ScopedEnv batch("PSTRAIN_BATCH_SIZE", "50");
  ScopedEnv status("PSTRAIN_STATUS_FILE", "/tmp/not-a-flag.json");  // the launcher's, ignored
  Parsed p;
  p.parse({"--batch_size=64"});
  ASSERT_TRUE(apply_environment(p.app).ok());
  EXPECT_EQ(p.flags.train.config.train_steps, 300);
  EXPECT_TRUE(p.flags.sync_replicas);
  EXPECT_EQ(p.flags.train.config.batch_size, 64);  // the flag wins
  // Skipped names stay unset.
  ScopedEnv job("PSTRAIN_JOB_NAME", "worker");
  Parsed q;
  q.parse({});
  ASSERT_TRUE(apply_environment(q.app, {"--job_name"}).ok());
  EXPECT_EQ(q.flags.job_name_opt->count(), 0u);
}

TEST(Environment, LaunchRefusesClusterVariablesItsTasksWouldRead) {
  ScopedEnv hosts("PSTRAIN_PS_HOSTS", "localhost:1");
  CliRun r = cli({"launch", "--ps", "1", "--workers", "1"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("PSTRAIN_PS_HOSTS is set"), std::string::npos) << r.err;
}

TEST(Environment, BadValueIsExit2NamingTheVariable) {
  {
    ScopedEnv steps("PSTRAIN_TRAIN_STEPS", "many");
    Parsed p;
    p.parse({});
    Status st = apply_environment(p.app);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("PSTRAIN_TRAIN_STEPS=many"), std::string::npos) << st.message();
    CliRun r = cli({"train"});
    EXPECT_EQ(r.code, kExitUsage);
    EXPECT_NE(r.err.find("PSTRAIN_TRAIN_STEPS"), std::string::npos) << r.err;
  }
  {
    ScopedEnv sync("PSTRAIN_SYNC_REPLICAS", "maybe");
    Parsed p;
    p.parse({});
    Status st = apply_environment(p.app);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("PSTRAIN_SYNC_REPLICAS"), std::string::npos) << st.message();
  }
}

TEST(Range, OverflowIsRejectedNamingTheFlag) {
  Parsed p;
  try {
    p.parse({"--train_steps", "99999999999999999999"});
    FAIL() << "accepted";
  } catch (const CLI::ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("--train_steps"), std::string::npos) << e.what();
  }
  Parsed q;
  EXPECT_THROW(q.parse({"--batch_size=3000000000"}), CLI::ParseError);
  Parsed r;
  r.parse({"--train_steps=9000000000"});  // fits int64
  EXPECT_EQ(r.flags.train.config.train_steps, 9000000000);
  EXPECT_EQ(cli({"train", "--train_steps", "99999999999999999999"}).code, kExitUsage);
  EXPECT_EQ(cli({"launch", "--workers", "99999999999"}).code, kExitUsage);
}

TEST(Range, MemoryTheFlagsAskForIsCheckedNamingTheFlag) {
  TrainConfig c;
  EXPECT_TRUE(check_memory(c, 1e9).ok());
  c.batch_size = 2000000000;
  Status st = check_memory(c, 1e9);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().rfind("--batch_size=2000000000 needs about", 0), 0u) << st.message();
  EXPECT_NE(st.message().find("TiB"), std::string::npos) << st.message();
  TrainConfig h;
  h.model.hidden_units = 2000000000;
  st = check_memory(h);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().rfind("--hidden_units=2000000000", 0), 0u) << st.message();
  CliRun r = cli({"train", "--batch_size=2000000000"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("--batch_size=2000000000"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("bad_alloc"), std::string::npos) << r.err;
  EXPECT_EQ(cli({"train", "--hidden_units=0"}).code, kExitUsage);
}

TEST(Version, CommandAndShortFlagPrintWhatVersionPrints) {
  const CliRun v = cli({"--version"});
  EXPECT_EQ(v.code, kExitOk);
  EXPECT_EQ(v.out.rfind("pstrain ", 0), 0u) << v.out;
  EXPECT_EQ(cli({"version"}).out, v.out);
  EXPECT_EQ(cli({"-V"}).out, v.out);
}

TEST(Train, AcceptsAndCreatesRoleOutputFlags) {
  const fs::path d = temp_dir("train_dirs");
  // --data_dir that does not exist: the command stops after creating the directories.
  CliRun r =
      cli({"train", "--log_dir", (d / "tb").string(), "--checkpoint_dir=" + (d / "ck").string(),
           "--log_every=10", "--data_dir=/nonexistent/pstrain"});
  EXPECT_EQ(r.code, kExitUsage) << r.err;
  EXPECT_TRUE(fs::is_directory(d / "tb"));
  EXPECT_TRUE(fs::is_directory(d / "ck"));
  EXPECT_EQ(cli({"train", "--log_every=0"}).code, kExitUsage);
  fs::remove_all(d);
}

}  // namespace
}  // namespace pstrain
