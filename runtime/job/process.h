// Subprocess: start a program with a modified environment and redirected output, watch it, stop
// it, and never leak it.
//
// Contract
// - spawn() forks and execs argv (argv[0] is a path, or a bare name looked up in the child's
//   PATH) with the parent's environment plus `env` overrides (a value sets the variable,
//   nullopt unsets it); stdout and stderr go to the given files (created or truncated; empty
//   path: inherited), stdin optionally from /dev/null. The child starts with the default
//   signal dispositions and an empty signal mask, and with none of the parent's other file
//   descriptors (marked close-on-exec in the child, on kernels with close_range(2), 5.11 and
//   later; older ones pass on descriptors the parent opened without O_CLOEXEC). Every failure the
//   input or the system can cause (program missing or not executable, an output file that cannot be
//   created, fork failing) is a Status naming the path; a program that cannot be exec'd is reported
//   by spawn() itself (through a close-on-exec pipe), not as a mysterious exit code 127.
// - With `new_process_group`, the child leads its own process group, so a Ctrl-C at the
//   terminal reaches only the parent, and terminate()/kill() signal the whole group
//   (grandchildren included). With `kill_on_parent_death`, the child gets SIGKILL when the
//   thread that spawned it exits (Linux PR_SET_PDEATHSIG): spawn from a long-lived thread.
// - poll() checks without blocking; wait_until()/wait_for() block at most until the deadline
//   (a pidfd where the kernel has one, else short polling) and return DeadlineExceeded if the
//   child is still running. terminate() sends SIGTERM and returns at once; kill() sends
//   SIGKILL and reaps the child. A child is reaped exactly once; its ExitStatus is kept.
// - The destructor kills (SIGKILL) and reaps a child that is still running, so nothing
//   outlives its Subprocess object by accident.
//
// Thread-safety: one Subprocess object must be used by one thread at a time; distinct objects
// may be used from distinct threads. spawn() is safe in a multi-threaded process (the child
// only makes async-signal-safe calls before exec). Nothing else in the process may reap these
// children (waitpid(-1, ...), or SIGCHLD set to SIG_IGN): an exit status taken elsewhere is
// reported as kUnknown.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace pstrain {

// How a child ended.
struct ExitStatus {
  enum class Kind { kExited, kSignaled, kUnknown };
  Kind kind = Kind::kUnknown;
  int code = 0;    // exit code (kExited)
  int signal = 0;  // signal number (kSignaled)

  static ExitStatus exited(int code) { return {Kind::kExited, code, 0}; }
  static ExitStatus signaled(int sig) { return {Kind::kSignaled, 0, sig}; }
  // From a waitpid() status word.
  static ExitStatus from_wait_status(int wstatus);

  bool success() const { return kind == Kind::kExited && code == 0; }
  // "exited with code 1", "killed by signal 9 (SIGKILL)", "exit status unknown (reaped
  // elsewhere)".
  std::string to_string() const;
  bool operator==(const ExitStatus&) const = default;
};

// "SIGTERM" for 15, "signal 64" for a number without a name.
std::string signal_name(int sig);

struct SubprocessOptions {
  std::vector<std::string> argv;  // argv[0]: the program (path, or name looked up in PATH)
  // Overrides of the parent's environment: a value sets the variable, nullopt unsets it.
  std::map<std::string, std::optional<std::string>> env;
  std::string stdout_path;           // created or truncated; empty: inherit the parent's stdout
  std::string stderr_path;           // created or truncated; empty: inherit the parent's stderr
  bool append_output = false;        // stdout_path and stderr_path appended to, not truncated
  bool stdin_from_dev_null = false;  // else inherit the parent's stdin
  bool new_process_group = false;
  bool kill_on_parent_death = false;
};

class Subprocess {
 public:
  using Clock = std::chrono::steady_clock;

  static Result<Subprocess> spawn(const SubprocessOptions& options);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  // The program as started (argv[0] resolved to a path).
  const std::string& program() const { return program_; }
  // The exit status once the child was reaped (by poll, wait or kill), else nullopt.
  const std::optional<ExitStatus>& exit_status() const { return status_; }
  bool running() const { return pid_ > 0 && !status_.has_value(); }

  // Reaps the child if it has exited; never blocks.
  std::optional<ExitStatus> poll();
  // Blocks until the child exits (reaping it) or `deadline` passes: then DeadlineExceeded
  // naming the program and pid; the child is left running.
  Result<ExitStatus> wait_until(Clock::time_point deadline);
  Result<ExitStatus> wait_for(Clock::duration timeout) {
    return wait_until(Clock::now() + timeout);
  }

  // Sends SIGTERM (to the group with new_process_group); no-op once the child was reaped.
  Status terminate();
  // Sends SIGKILL (to the group with new_process_group) and reaps the child; returns how it
  // ended (a child that had already exited keeps its own status).
  ExitStatus kill();

 private:
  Subprocess() = default;
  void release();  // kill and reap if still running, close the pidfd
  Status send_signal(int sig);

  pid_t pid_ = -1;
  int pidfd_ = -1;  // -1 where the kernel has no pidfd_open
  bool group_ = false;
  std::string program_;
  std::optional<ExitStatus> status_;
};

// The path of the running executable (/proc/self/exe), or "" if it cannot be read.
std::string self_executable_path();

}  // namespace pstrain
