#include "runtime/base/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>

namespace pstrain {

std::string fit_line(const std::vector<LinePart>& parts, size_t width,
                     const std::string& separator) {
  std::vector<const LinePart*> kept;
  for (const LinePart& p : parts) {
    if (!p.text.empty()) kept.push_back(&p);
  }
  const auto joined = [&] {
    std::string out;
    for (size_t i = 0; i < kept.size(); ++i) out += (i ? separator : "") + kept[i]->text;
    return out;
  };
  if (width == 0) return joined();
  const size_t max = width - 1;
  std::string line = joined();
  while (line.size() > max && kept.size() > 1) {
    size_t drop = 0;  // the least important; of equals, the last
    for (size_t i = 1; i < kept.size(); ++i) {
      if (kept[i]->priority <= kept[drop]->priority) drop = i;
    }
    kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(drop));
    line = joined();
  }
  if (line.size() > max) line.resize(max);
  return line;
}

size_t terminal_width(std::FILE* out) {
  winsize ws{};
  if (out && ::ioctl(::fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* columns = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const long n = std::strtol(columns, &end, 10);
    if (end != columns && *end == '\0' && n > 0 && n < 100000) return static_cast<size_t>(n);
  }
  return 80;
}

ProgressLine::ProgressLine(std::FILE* out, double log_interval_seconds)
    : out_(out), tty_(::isatty(::fileno(out)) != 0), interval_(log_interval_seconds) {}

ProgressLine::~ProgressLine() { finish(); }

size_t ProgressLine::columns() const { return tty_ ? terminal_width(out_) : 0; }

void ProgressLine::update(const std::string& text, bool force) {
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  const double min_gap = tty_ ? 0.2 : interval_;
  if (shown_ && !force && since < min_gap) return;
  shown_ = true;
  last_ = now;
  if (tty_) {
    std::string shown = text;
    if (const size_t max = columns() - 1; shown.size() > max) shown.resize(max);
    std::string line = "\r" + shown;
    if (shown.size() < last_len_) line.append(last_len_ - shown.size(), ' ');
    last_len_ = shown.size();
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
