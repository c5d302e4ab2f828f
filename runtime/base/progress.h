// A live progress line for long work.
//
// On a terminal, update() rewrites one line in place (at most ~5 times a second); when the
// stream is not a terminal (a log file), it prints a full line at most every
// `log_interval_seconds`, so logs show progress without flooding. finish() ends the line.
// Thread-safety: one thread at a time.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace pstrain {

class ProgressLine {
 public:
  explicit ProgressLine(std::FILE* out, double log_interval_seconds = 10.0);
  ~ProgressLine();
  // Shows `text` if enough time passed since the last shown update (or `force`).
  void update(const std::string& text, bool force = false);
  // Ends the live line (newline on a terminal); later output starts on a fresh line.
  void finish();
  bool is_terminal() const { return tty_; }

 private:
  std::FILE* out_;
  bool tty_;
  double interval_;
  bool shown_ = false;
  bool open_line_ = false;
  size_t last_len_ = 0;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace pstrain
