#include "runtime/job/process.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>
#include "tests/temp_dir.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "runtime/base/files.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

class ProcessTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  static std::string contents(const std::string& p) {
    auto text = read_file(p);
    return text.ok() ? *text : std::string("<unreadable>");
  }
  static SubprocessOptions shell(const std::string& script) {
    SubprocessOptions o;
    o.argv = {"/bin/sh", "-c", script};
    return o;
  }
  // Waits with a deadline; a child still running at the deadline fails the test (and is killed
  // by the Subprocess destructor).
  static ExitStatus finish(Subprocess& p) {
    auto st = p.wait_for(seconds(30));
    EXPECT_TRUE(st.ok()) << st.status().message();
    return st.ok() ? *st : p.kill();
  }
  // True once `pid` is gone or a zombie (an orphan waiting for init to reap it).
  static bool process_gone(pid_t pid) {
    if (::kill(pid, 0) != 0) return errno == ESRCH;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const size_t paren = line.rfind(')');
    return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
  }
  testing_util::TempDir tmp_{"pstrain_process"};
  std::string dir_ = tmp_.path();
};

TEST_F(ProcessTest, EnvironmentOverridesAndInheritance) {
  ASSERT_EQ(::setenv("PSTRAIN_PROCESS_TEST_KEEP", "kept", 1), 0);
  ASSERT_EQ(::setenv("PSTRAIN_PROCESS_TEST_DROP", "dropped", 1), 0);
  ASSERT_EQ(::setenv("PSTRAIN_PROCESS_TEST_CHANGE", "old", 1), 0);
  SubprocessOptions o = shell(
      "echo \"NEW=$PSTRAIN_PROCESS_TEST_NEW\"; echo \"KEEP=$PSTRAIN_PROCESS_TEST_KEEP\"; "
      "echo \"DROP=${PSTRAIN_PROCESS_TEST_DROP-unset}\"; "
      "echo \"CHANGE=$PSTRAIN_PROCESS_TEST_CHANGE\"");
  o.env["PSTRAIN_PROCESS_TEST_NEW"] = "hello world";
  o.env["PSTRAIN_PROCESS_TEST_DROP"] = std::nullopt;
  o.env["PSTRAIN_PROCESS_TEST_CHANGE"] = "new";
  o.stdout_path = path("out.txt");
  auto p = Subprocess::spawn(o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_TRUE(finish(*p).success());
  const std::string out = contents(path("out.txt"));
  EXPECT_NE(out.find("NEW=hello world\n"), std::string::npos) << out;
  EXPECT_NE(out.find("KEEP=kept\n"), std::string::npos) << out;
  EXPECT_NE(out.find("DROP=unset\n"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGE=new\n"), std::string::npos) << out;
  // The parent's environment is untouched.
  EXPECT_STREQ(std::getenv("PSTRAIN_PROCESS_TEST_DROP"), "dropped");
  EXPECT_STREQ(std::getenv("PSTRAIN_PROCESS_TEST_CHANGE"), "old");
}

TEST_F(ProcessTest, StdoutAndStderrGoToTheirFilesTruncated) {
  {
    std::ofstream stale(path("err.txt"));
    stale << "stale text from an earlier run\n";
  }
  SubprocessOptions o = shell("echo to-out; echo to-err >&2");
  o.stdout_path = path("out.txt");
  o.stderr_path = path("err.txt");
  o.stdin_from_dev_null = true;
  auto p = Subprocess::spawn(o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_TRUE(finish(*p).success());
  EXPECT_EQ(contents(path("out.txt")), "to-out\n");
  EXPECT_EQ(contents(path("err.txt")), "to-err\n");
}

TEST_F(ProcessTest, ExitCodes) {
  for (int code : {0, 1, 3, 255}) {
    auto p = Subprocess::spawn(shell("exit " + std::to_string(code)));
    ASSERT_TRUE(p.ok()) << p.status().message();
    const ExitStatus st = finish(*p);
    EXPECT_EQ(st, ExitStatus::exited(code));
    EXPECT_EQ(st.success(), code == 0);
    EXPECT_EQ(st.to_string(), "exited with code " + std::to_string(code));
    EXPECT_FALSE(p->running());
    // Reaped once; the status is kept.
    ASSERT_TRUE(p->poll().has_value());
    EXPECT_EQ(*p->poll(), st);
    EXPECT_EQ(p->exit_status(), st);
  }
}

TEST_F(ProcessTest, SignalExit) {
  auto p = Subprocess::spawn(shell("kill -TERM $$; sleep 30"));
  ASSERT_TRUE(p.ok()) << p.status().message();
  const ExitStatus st = finish(*p);
  EXPECT_EQ(st, ExitStatus::signaled(SIGTERM));
  EXPECT_FALSE(st.success());
  EXPECT_EQ(st.to_string(), "killed by signal 15 (SIGTERM)");
  EXPECT_EQ(ExitStatus::signaled(9).to_string(), "killed by signal 9 (SIGKILL)");
}

TEST_F(ProcessTest, DeadlineThenKill) {
  SubprocessOptions o;
  o.argv = {"sleep", "30"};  // looked up in PATH
  auto p = Subprocess::spawn(o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_NE(p->program().find('/'), std::string::npos) << p->program();
  auto st = p->wait_for(std::chrono::milliseconds(100));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(st.status().message().find("sleep"), std::string::npos) << st.status().message();
  EXPECT_TRUE(p->running());
  EXPECT_FALSE(p->poll().has_value());
  const pid_t pid = p->pid();
  const ExitStatus killed = p->kill();
  EXPECT_EQ(killed, ExitStatus::signaled(SIGKILL));
  EXPECT_FALSE(p->running());
  EXPECT_EQ(p->exit_status(), killed);
  EXPECT_EQ(::kill(pid, 0), -1);  // reaped: the pid is gone
  EXPECT_EQ(p->kill(), killed);   // again: no-op, same status
  EXPECT_TRUE(p->terminate().ok());
}

TEST_F(ProcessTest, TerminateSendsSigterm) {
  SubprocessOptions o;
  o.argv = {"sleep", "30"};
  auto p = Subprocess::spawn(o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_TRUE(p->terminate().ok());
  EXPECT_EQ(finish(*p), ExitStatus::signaled(SIGTERM));
}

TEST_F(ProcessTest, ProcessGroupSignalsReachGrandchildren) {
  SubprocessOptions o = shell("sleep 30 & echo $! > " + path("pid.tmp") + "; mv " +
                              path("pid.tmp") + " " + path("pid.txt") + "; wait");
  o.new_process_group = true;
  auto p = Subprocess::spawn(o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(::getpgid(p->pid()), p->pid());
  // Wait (bounded) for the shell to report its child.
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (!fs::exists(path("pid.txt")) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(fs::exists(path("pid.txt")));
  const pid_t grandchild = std::stoi(contents(path("pid.txt")));
  ASSERT_GT(grandchild, 0);
  EXPECT_FALSE(process_gone(grandchild));
  ASSERT_TRUE(p->terminate().ok());
  EXPECT_FALSE(finish(*p).success());
  while (!process_gone(grandchild) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(process_gone(grandchild)) << "the grandchild survived SIGTERM to the group";
}

TEST_F(ProcessTest, DestructorKillsAndReapsARunningChild) {
  pid_t pid = 0;
  {
    SubprocessOptions o;
    o.argv = {"sleep", "30"};
    auto p = Subprocess::spawn(o);
    ASSERT_TRUE(p.ok()) << p.status().message();
    pid = p->pid();
    EXPECT_EQ(::kill(pid, 0), 0);
  }
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(ProcessTest, MoveKeepsOwnership) {
  SubprocessOptions o;
  o.argv = {"sleep", "30"};
  auto p = Subprocess::spawn(o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  const pid_t pid = p->pid();
  Subprocess moved = std::move(*p);
  EXPECT_EQ(moved.pid(), pid);
  EXPECT_TRUE(moved.running());
  EXPECT_EQ(moved.kill(), ExitStatus::signaled(SIGKILL));
}

TEST_F(ProcessTest, MissingProgramIsAnErrorNamingThePath) {
  SubprocessOptions o;
  o.argv = {dir_ + "/no-such-program"};
  auto p = Subprocess::spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find(dir_ + "/no-such-program"), std::string::npos)
      << p.status().message();

  o.argv = {"pstrain-no-such-program-in-path"};
  p = Subprocess::spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("pstrain-no-such-program-in-path"), std::string::npos)
      << p.status().message();

  o.argv = {};
  EXPECT_FALSE(Subprocess::spawn(o).ok());
}

TEST_F(ProcessTest, NonExecutableFileIsAnError) {
  const std::string file = path("not-executable.sh");
  {
    std::ofstream f(file);
    f << "#!/bin/sh\nexit 0\n";
  }
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  SubprocessOptions o;
  o.argv = {file};
  auto p = Subprocess::spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find(file), std::string::npos) << p.status().message();
}

TEST_F(ProcessTest, ExecFailureIsReportedBySpawn) {
  // Executable bit set but no valid format and no #! line: execve fails (ENOEXEC) in the
  // child, and spawn() reports it instead of returning a child that exits 127.
  const std::string file = path("garbage");
  {
    std::ofstream f(file, std::ios::binary);
    f << std::string(
        "\x7f"
        "ELF garbage",
        12);
  }
  ASSERT_EQ(::chmod(file.c_str(), 0755), 0);
  SubprocessOptions o;
  o.argv = {file};
  auto p = Subprocess::spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find(file), std::string::npos) << p.status().message();
}

TEST_F(ProcessTest, UnwritableOutputFileIsAnError) {
  SubprocessOptions o = shell("exit 0");
  o.stdout_path = dir_ + "/missing-dir/out.txt";
  auto p = Subprocess::spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find(o.stdout_path), std::string::npos) << p.status().message();
}

TEST_F(ProcessTest, SelfExecutablePath) {
  const std::string self = self_executable_path();
  ASSERT_FALSE(self.empty());
  EXPECT_EQ(fs::path(self).filename(), "runtime_process_test");
  EXPECT_TRUE(fs::is_regular_file(self));
}

TEST(SignalNameTest, KnownAndUnknown) {
  EXPECT_EQ(signal_name(SIGINT), "SIGINT");
  EXPECT_EQ(signal_name(SIGKILL), "SIGKILL");
  EXPECT_EQ(signal_name(1000), "signal 1000");
}

}  // namespace
}  // namespace pstrain
