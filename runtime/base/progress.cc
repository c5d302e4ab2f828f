#include "runtime/base/progress.h"

#include <unistd.h>

namespace pstrain {

ProgressLine::ProgressLine(std::FILE* out, double log_interval_seconds)
    : out_(out), tty_(::isatty(::fileno(out)) != 0), interval_(log_interval_seconds) {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::update(const std::string& text, bool force) {
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  const double min_gap = tty_ ? 0.2 : interval_;
  if (shown_ && !force && since < min_gap) return;
  shown_ = true;
  last_ = now;
  if (tty_) {
    std::string line = "\r" + text;
    if (text.size() < last_len_) line.append(last_len_ - text.size(), ' ');
    last_len_ = text.size();
    std::fputs(line.c_str(), out_);
    open_line_ = true;
  } else {
    std::fputs((text + "\n").c_str(), out_);
  }
  std::fflush(out_);
}

void ProgressLine::finish() {
  if (open_line_) {
    std::fputc('\n', out_);
    std::fflush(out_);
    open_line_ = false;
    last_len_ = 0;
  }
}

}  // namespace pstrain
