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
