// Logging to stderr: PSTRAIN_LOG(INFO) << "text";
//
// Each statement writes one whole line ("I 13:25:52.123 text"), so lines from several threads
// never interleave. The level threshold is process-wide (set_log_level, or PSTRAIN_LOG_LEVEL=
// debug|info|warning|error). Thread-safety: every function here may be called from any thread.
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
  explicit LogLine(LogLevel level) : level_(level) {}
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
      : ::pstrain::LogVoidify() & ::pstrain::LogLine(::pstrain::LogLevel::level)
