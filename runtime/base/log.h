// Logging to stderr: PSTRAIN_LOG(INFO) << "text";
//
// Each statement writes one whole line in glog's shape, as TensorFlow's C++ side prints them:
// "I1130 07:04:21.215301 12345 server.cc:123] ps/0: text" (level I, W or E, debug lines as I;
// month and day, local time to the microsecond, the thread id, the source file's name and
// line, then the tag), so lines from several threads never interleave and tools that parse
// glog or TensorFlow logs read them. The level threshold is process-wide (set_log_level, or
// PSTRAIN_LOG_LEVEL= debug|info|warning|error). Thread-safety: every function here may be called
// from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>

namespace pstrain {

enum class LogLevel { DEBUG = 0, INFO = 1, WARNING = 2, ERROR = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warning", "error" (any case); false for anything else.
bool parse_log_level(const std::string& text, LogLevel* out);
// A prefix put after the level on every line, e.g. "ps/0" (empty by default).
void set_log_tag(const std::string& tag);

class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line) : level_(level), file_(file), line_(line) {}
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  template <typename T>
  LogLine& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  LogLevel level_;
  const char* file_;
  int line_;
  std::ostringstream os_;
};

// Bounds the lines logged about input from outside (malformed or refused messages), so a
// flood of it cannot flood the log: allow() is true for at most `lines` calls per `window`;
// the calls refused are counted and summed up in one warning ("N more <what> in the last S s
// were not logged") by the first allow() or flush() after the window ends. Call flush()
// periodically so the sum is written even when no more input comes. Not thread-safe: one
// owner thread.
class LogRateLimiter {
 public:
  LogRateLimiter(std::string what, int lines = 20,
                 std::chrono::steady_clock::duration window = std::chrono::seconds(10))
      : what_(std::move(what)), lines_per_window_(lines), window_(window) {}
  bool allow();
  void flush();
  int64_t held_back_total() const { return held_total_; }

 private:
  std::string what_;
  int lines_per_window_;
  std::chrono::steady_clock::duration window_;
  std::chrono::steady_clock::time_point window_start_{};
  int lines_ = 0;
  int64_t held_ = 0;
  int64_t held_total_ = 0;
};

// Makes `cond ? (void)0 : voidify & line << ...` well-typed (glog's trick), so the macro is a
// single expression that is safe inside an unbraced if/else.
struct LogVoidify {
  void operator&(const LogLine&) {}
};

}  // namespace pstrain

#define PSTRAIN_LOG(level)                              \
  (::pstrain::LogLevel::level < ::pstrain::log_level()) \
      ? (void)0                                         \
      : ::pstrain::LogVoidify() &                       \
            ::pstrain::LogLine(::pstrain::LogLevel::level, __FILE__, __LINE__)
