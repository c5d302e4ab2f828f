#include "runtime/base/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

namespace pstrain {
namespace {

LogLevel initial_level() {
  LogLevel level = LogLevel::INFO;
  if (const char* env = std::getenv("PSTRAIN_LOG_LEVEL")) parse_log_level(env, &level);
  return level;
}

std::atomic<int> g_level{static_cast<int>(initial_level())};
std::mutex g_mu;
std::string g_tag;  // guarded by g_mu

}  // namespace

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

bool parse_log_level(const std::string& text, LogLevel* out) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "debug")
    *out = LogLevel::DEBUG;
  else if (t == "info")
    *out = LogLevel::INFO;
  else if (t == "warning" || t == "warn")
    *out = LogLevel::WARNING;
  else if (t == "error")
    *out = LogLevel::ERROR;
  else
    return false;
  return true;
}

void set_log_tag(const std::string& tag) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_tag = tag;
}

LogLine::~LogLine() {
  // glog's letters: debug lines are INFO to a glog reader.
  static constexpr char kLetters[] = {'I', 'I', 'W', 'E'};
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm{};
  localtime_r(&secs, &tm);
  const char* base = std::strrchr(file_, '/');
  base = base ? base + 1 : file_;
  char head[160];
  std::snprintf(head, sizeof head, "%c%02d%02d %02d:%02d:%02d.%06d %d %s:%d] ",
                kLetters[static_cast<int>(level_)], tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(micros), static_cast<int>(::gettid()), base,
                line_);
  std::lock_guard<std::mutex> lock(g_mu);
  std::string line;
  line.reserve(96);
  line += head;
  if (!g_tag.empty()) {
    line += g_tag;
    line += ": ";
  }
  line += os_.str();
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

void LogRateLimiter::flush() {
  const auto now = std::chrono::steady_clock::now();
  if (now - window_start_ < window_) return;
  if (held_ > 0) {
    PSTRAIN_LOG(WARNING)
        << held_ << " more " << what_ << " in the last "
        << std::chrono::duration_cast<std::chrono::seconds>(now - window_start_).count()
        << " s were not logged";
  }
  window_start_ = now;
  lines_ = 0;
  held_ = 0;
}

bool LogRateLimiter::allow() {
  flush();
  if (lines_ < lines_per_window_) {
    ++lines_;
    return true;
  }
  ++held_;
  ++held_total_;
  return false;
}

}  // namespace pstrain
