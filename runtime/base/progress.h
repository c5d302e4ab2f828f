// A live progress line for long work.
//
// On a terminal, update() rewrites one line in place (at most ~5 times a second), cut to the
// terminal's width less one column so it never wraps (a wrapped line would make every redraw
// start mid-line); when the stream is not a terminal (a log file), it prints a full line at most
// every `log_interval_seconds`, so logs show progress without flooding. finish() ends the line.
//
// fit_line builds such a line from parts of different importance: it drops the least important
// parts first and cuts what is left, so a line never exceeds width - 1 columns. It is a pure
// function of its arguments (unit-tested); terminal_width() finds the width it should get.
// Thread-safety: one thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace pstrain {

// One part of a status line; a higher `priority` is more important.
struct LinePart {
  std::string text;
  int priority = 0;
};

// The parts joined by `separator` in their order, fitted into `width` columns (one byte per
// column: the texts are ASCII): while the line is longer than width - 1, the part of lowest
// priority is dropped (of equals, the last); the one part left is cut to width - 1. Empty
// parts are skipped. width 0 means "no limit".
std::string fit_line(const std::vector<LinePart>& parts, size_t width,
                     const std::string& separator = " | ");

// The width of the terminal `out` writes to: ioctl(TIOCGWINSZ) on its descriptor, else the
// COLUMNS variable, else 80.
size_t terminal_width(std::FILE* out);

class ProgressLine {
 public:
  explicit ProgressLine(std::FILE* out, double log_interval_seconds = 10.0);
  ~ProgressLine();
  // Shows `text` if enough time passed since the last shown update (or `force`). On a
  // terminal, text longer than columns() - 1 is cut.
  void update(const std::string& text, bool force = false);
  // Ends the live line (newline on a terminal); later output starts on a fresh line.
  void finish();
  bool is_terminal() const { return tty_; }
  // What a line may use: terminal_width() on a terminal, 0 ("no limit") otherwise.
  size_t columns() const;

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
