#include "runtime/job/process.h"
#include "runtime/base/check.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <utility>

extern char** environ;

namespace pstrain {
namespace {

// An fd closed when it goes out of scope.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string errno_text(int e) { return std::strerror(e); }

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The environment the child gets: the parent's, with the overrides applied.
std::vector<std::string> child_environment(
    const std::map<std::string, std::optional<std::string>>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry(*e);
    const size_t eq = entry.find('=');
    const std::string key = eq == std::string::npos ? entry : entry.substr(0, eq);
    if (overrides.count(key) == 0) env.push_back(entry);
  }
  for (const auto& [key, value] : overrides) {
    if (value.has_value()) env.push_back(key + "=" + *value);
  }
  return env;
}

// argv[0] as a path: kept if it has a '/', else looked up in the child's PATH.
Result<std::string> resolve_program(const std::string& name,
                                    const std::map<std::string, std::optional<std::string>>& env) {
  if (name.empty()) return invalid_argument("cannot start a process: the program name is empty");
  if (name.find('/') != std::string::npos) {
    struct stat st {};
    if (::stat(name.c_str(), &st) != 0) {
      return not_found("cannot run " + name + ": " + errno_text(errno) +
                       " (check the path of the program)");
    }
    if (!S_ISREG(st.st_mode) || ::access(name.c_str(), X_OK) != 0) {
      return invalid_argument("cannot run " + name + ": not an executable file");
    }
    return name;
  }
  std::string path;
  if (auto it = env.find("PATH"); it != env.end()) {
    path = it->second.value_or("");
  } else if (const char* p = std::getenv("PATH")) {
    path = p;
  } else {
    path = "/usr/local/bin:/usr/bin:/bin";
  }
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    const std::filesystem::path dir =
        end > begin ? std::filesystem::path(path.substr(begin, end - begin)) : ".";
    const std::string candidate = (dir / name).string();
    if (is_executable_file(candidate)) return candidate;
    begin = end + 1;
  }
  return not_found("cannot run " + name + ": not found in PATH (" + path + ")");
}

Result<int> open_output(const std::string& path, const char* what, bool append) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0644);
  if (fd < 0) {
    return unavailable(std::string("cannot create the ") + what + " file " + path + ": " +
                       errno_text(errno) + " (check that the directory exists and is writable)");
  }
  return fd;
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
    return static_cast<int>(fd);
  }
#else
  (void)pid;
#endif
  return -1;
}

// In the child, between fork and exec: async-signal-safe calls only.
[[noreturn]] void exec_child(const char* path, char* const* argv, char* const* envp, int in_fd,
                             int out_fd, int err_fd, int error_pipe, bool group, bool pdeath,
                             pid_t parent) {
  if (group) ::setpgid(0, 0);
  if (pdeath) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent is already gone
  }
  // Every signal is blocked since before fork (see spawn), so none reaches the parent's
  // handlers here; reset the dispositions, then unblock: a pending SIGTERM now acts as the
  // default action.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
#ifdef CLOSE_RANGE_CLOEXEC
  // The parent's other descriptors (sockets, files) are not the child's business.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);  // an old kernel without it: nothing lost
#endif
  const int fds[3] = {in_fd, out_fd, err_fd};
  for (int target = 0; target < 3; ++target) {
    const int fd = fds[target];
    if (fd < 0) continue;
    if (fd == target) {
      ::fcntl(fd, F_SETFD, 0);  // keep it across exec
    } else if (::dup2(fd, target) < 0) {
      const int e = errno;
      (void)!::write(error_pipe, &e, sizeof(e));
      ::_exit(127);
    }
  }
  ::execve(path, argv, envp);
  const int e = errno;
  (void)!::write(error_pipe, &e, sizeof(e));
  ::_exit(127);
}

}  // namespace

ExitStatus ExitStatus::from_wait_status(int wstatus) {
  if (WIFEXITED(wstatus)) return exited(WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) return signaled(WTERMSIG(wstatus));
  return {};
}

std::string signal_name(int sig) {
  if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

std::string ExitStatus::to_string() const {
  switch (kind) {
    case Kind::kExited:
      return "exited with code " + std::to_string(code);
    case Kind::kSignaled:
      return "killed by signal " + std::to_string(signal) + " (" + signal_name(signal) + ")";
    case Kind::kUnknown:
      break;
  }
  return "exit status unknown (reaped elsewhere)";
}

Result<Subprocess> Subprocess::spawn(const SubprocessOptions& o) {
  if (o.argv.empty()) return invalid_argument("cannot start a process: argv is empty");
  PSTRAIN_ASSIGN_OR_RETURN(std::string program, resolve_program(o.argv[0], o.env));

  Fd in_fd, out_fd, err_fd;
  if (o.stdin_from_dev_null) {
    in_fd.fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in_fd.fd < 0) return unavailable("cannot open /dev/null: " + errno_text(errno));
  }
  if (!o.stdout_path.empty()) {
    PSTRAIN_ASSIGN_OR_RETURN(out_fd.fd, open_output(o.stdout_path, "stdout", o.append_output));
  }
  if (!o.stderr_path.empty()) {
    PSTRAIN_ASSIGN_OR_RETURN(err_fd.fd, open_output(o.stderr_path, "stderr", o.append_output));
  }

  // Everything the child needs is built before fork: it may not allocate.
  std::vector<std::string> env = child_environment(o.env);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = o.argv;
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return unavailable("cannot start " + program + ": pipe2: " + errno_text(errno));
  }
  Fd pipe_read(pipe_fds[0]);
  Fd pipe_write(pipe_fds[1]);

  const pid_t parent = ::getpid();
  // Block every signal across fork, so that the child never runs a handler of the parent's
  // (e.g. the launcher's SIGTERM handler) before exec.
  sigset_t all, old_mask;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  const pid_t pid = ::fork();
  if (pid == 0) {
    exec_child(program.c_str(), argv.data(), envp.data(), in_fd.fd, out_fd.fd, err_fd.fd,
               pipe_write.fd, o.new_process_group, o.kill_on_parent_death, parent);
  }
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid < 0) {
    return unavailable("cannot start " + program + ": fork: " + errno_text(fork_errno) +
                       " (too many processes or not enough memory?)");
  }
  // Parent. Set the group here too, so a signal sent right after spawn() reaches it.
  if (o.new_process_group) ::setpgid(pid, pid);
  ::close(pipe_write.fd);
  pipe_write.fd = -1;
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(pipe_read.fd, &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int wstatus = 0;
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    return unavailable("cannot run " + program + ": " + errno_text(child_errno));
  }

  Subprocess p;
  p.pid_ = pid;
  p.pidfd_ = open_pidfd(pid);
  p.group_ = o.new_process_group;
  p.program_ = program;
  return p;
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      group_(other.group_),
      program_(std::move(other.program_)),
      status_(std::move(other.status_)) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    group_ = other.group_;
    program_ = std::move(other.program_);
    status_ = std::move(other.status_);
  }
  return *this;
}

Subprocess::~Subprocess() { release(); }

void Subprocess::release() {
  if (running()) kill();
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
  pid_ = -1;
}

std::optional<ExitStatus> Subprocess::poll() {
  PSTRAIN_CHECK(pid_ > 0, "poll() on a Subprocess that was moved from");
  if (status_) return status_;
  int wstatus = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    status_ = ExitStatus::from_wait_status(wstatus);
  } else if (r < 0) {
    status_ = ExitStatus{};  // ECHILD: someone else reaped it
  }
  return status_;
}

Result<ExitStatus> Subprocess::wait_until(Clock::time_point deadline) {
  while (true) {
    if (auto s = poll()) return *s;
    const auto now = Clock::now();
    if (now >= deadline) {
      return deadline_exceeded(program_ + " (pid " + std::to_string(pid_) +
                               ") is still running at the deadline");
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));  // EINTR: loop
    } else {
      const auto nap = std::min<std::chrono::milliseconds>(left, std::chrono::milliseconds(10));
      timespec ts{0, static_cast<long>(nap.count()) * 1000000L};
      ::nanosleep(&ts, nullptr);
    }
  }
}

Status Subprocess::send_signal(int sig) {
  if (!running()) return {};
  if (::kill(group_ ? -pid_ : pid_, sig) == 0) return {};
  if (group_ && ::kill(pid_, sig) == 0) return {};
  return unavailable("cannot send " + signal_name(sig) + " to " + program_ + " (pid " +
                     std::to_string(pid_) + "): " + errno_text(errno));
}

Status Subprocess::terminate() { return send_signal(SIGTERM); }

ExitStatus Subprocess::kill() {
  PSTRAIN_CHECK(pid_ > 0, "kill() on a Subprocess that was moved from");
  if (status_) return *status_;
  (void)send_signal(SIGKILL);
  int wstatus = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, 0);
  } while (r < 0 && errno == EINTR);
  status_ = r == pid_ ? ExitStatus::from_wait_status(wstatus) : ExitStatus{};
  return *status_;
}

std::string self_executable_path() {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

}  // namespace pstrain
