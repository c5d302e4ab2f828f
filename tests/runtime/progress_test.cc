// fit_line: a status line fitted to a terminal's width (runtime/base/progress.h).
#include "runtime/base/progress.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

namespace pstrain {
namespace {

// The launcher's parts: step (most important), tasks, loss, rate, a note (least).
std::vector<LinePart> launch_parts() {
  return {{"[  12s] global step 271/300", 5},
          {"5120 examples/s", 2},
          {"loss 0.4321", 3},
          {"3/3 tasks running", 4},
          {"workers done; waiting for the ps to exit", 1}};
}

TEST(FitLineTest, NoLimitJoinsEveryPart) {
  EXPECT_EQ(fit_line(launch_parts(), 0),
            "[  12s] global step 271/300 | 5120 examples/s | loss 0.4321 | 3/3 tasks running | "
            "workers done; waiting for the ps to exit");
}

TEST(FitLineTest, AWideTerminalKeepsEveryPart) {
  const std::string all = fit_line(launch_parts(), 0);
  EXPECT_EQ(fit_line(launch_parts(), all.size() + 1), all);
}

TEST(FitLineTest, DropsTheLeastImportantPartsFirst) {
  EXPECT_EQ(fit_line(launch_parts(), 80),
            "[  12s] global step 271/300 | 5120 examples/s | loss 0.4321 | 3/3 tasks running");
  EXPECT_EQ(fit_line(launch_parts(), 70),
            "[  12s] global step 271/300 | loss 0.4321 | 3/3 tasks running");
  EXPECT_EQ(fit_line(launch_parts(), 50), "[  12s] global step 271/300 | 3/3 tasks running");
  EXPECT_EQ(fit_line(launch_parts(), 40), "[  12s] global step 271/300");
}

TEST(FitLineTest, CutsThePartLeftAndNeverReachesTheLastColumn) {
  EXPECT_EQ(fit_line(launch_parts(), 10), "[  12s] g");
  EXPECT_EQ(fit_line(launch_parts(), 1), "");
  for (size_t width = 1; width <= 160; ++width) {
    EXPECT_LE(fit_line(launch_parts(), width).size(), width - 1) << width;
  }
}

TEST(FitLineTest, OfEqualPrioritiesTheLastGoesFirstAndEmptyPartsAreSkipped) {
  const std::vector<LinePart> parts = {{"aaaa", 1}, {"", 9}, {"bbbb", 1}, {"cccc", 1}};
  EXPECT_EQ(fit_line(parts, 0, " "), "aaaa bbbb cccc");
  EXPECT_EQ(fit_line(parts, 12, " "), "aaaa bbbb");
  EXPECT_EQ(fit_line(parts, 6, " "), "aaaa");
}

TEST(TerminalWidthTest, NotATerminalUsesColumnsElse80) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  ::setenv("COLUMNS", "132", 1);
  EXPECT_EQ(terminal_width(f), 132u);
  ::setenv("COLUMNS", "wide", 1);
  EXPECT_EQ(terminal_width(f), 80u);
  ::unsetenv("COLUMNS");
  EXPECT_EQ(terminal_width(f), 80u);
  ProgressLine line(f);
  EXPECT_FALSE(line.is_terminal());
  EXPECT_EQ(line.columns(), 0u);  // a log file gets full lines
  std::fclose(f);
}

}  // namespace
}  // namespace pstrain
