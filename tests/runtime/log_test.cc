// Log lines in glog's shape (what TensorFlow's C++ side prints), whole lines, level threshold.
#include "runtime/base/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "tests/temp_dir.h"

namespace pstrain {
namespace {

// What `fn` writes to stderr.
template <typename Fn>
std::string stderr_of(Fn fn) {
  testing_util::TempDir dir("pstrain_log");
  const std::string path = dir.path() + "/err.txt";
  std::fflush(stderr);
  const int saved = ::dup(2);
  std::FILE* f = std::fopen(path.c_str(), "w");
  ::dup2(::fileno(f), 2);
  fn();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(f);
  std::ifstream in(path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

TEST(Log, LinesHaveGlogsShape) {
  set_log_tag("ps/0");
  const int line = __LINE__ + 2;
  const std::string text = stderr_of([] {
    PSTRAIN_LOG(WARNING) << "disk " << 97 << "% full";
    PSTRAIN_LOG(ERROR) << "lost";
  });
  set_log_tag("");
  // glog: Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg
  const std::regex glog(
      R"(W(\d\d)(\d\d) \d\d:\d\d:\d\d\.\d{6} (\d+) log_test\.cc:(\d+)\] ps/0: disk 97% full\n)"
      R"(E\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ log_test\.cc:\d+\] ps/0: lost\n)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(text, m, glog)) << text;
  EXPECT_GE(std::stoi(m[1]), 1);
  EXPECT_LE(std::stoi(m[1]), 12);
  EXPECT_EQ(std::stol(m[3]), static_cast<long>(::gettid()));
  EXPECT_EQ(std::stoi(m[4]), line);
}

TEST(Log, BelowTheLevelNothingIsWrittenAndDebugIsInfoToGlog) {
  const LogLevel before = log_level();
  set_log_level(LogLevel::WARNING);
  EXPECT_EQ(stderr_of([] { PSTRAIN_LOG(INFO) << "quiet"; }), "");
  set_log_level(LogLevel::DEBUG);
  const std::string text = stderr_of([] { PSTRAIN_LOG(DEBUG) << "detail"; });
  set_log_level(before);
  EXPECT_EQ(text.rfind("I", 0), 0u) << text;
  EXPECT_NE(text.find("] detail\n"), std::string::npos) << text;
}

TEST(LogRateLimiter, AllowsSoManyLinesPerWindowThenSumsUpTheRest) {
  set_log_tag("");
  LogRateLimiter limiter("bad things", 3, std::chrono::hours(1));
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += limiter.allow() ? 1 : 0;
  EXPECT_EQ(allowed, 3);
  EXPECT_EQ(limiter.held_back_total(), 7);
  // Within the window nothing is summed up.
  EXPECT_EQ(stderr_of([&] { limiter.flush(); }), "");

  // A window that has ended: the first call sums up the lines held back and opens a new one.
  LogRateLimiter quick("bad things", 2, std::chrono::milliseconds(20));
  for (int i = 0; i < 5; ++i) (void)quick.allow();
  EXPECT_EQ(quick.held_back_total(), 3);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(25);
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the clock must move on
  }
  const std::string out = stderr_of([&] { EXPECT_TRUE(quick.allow()); });
  EXPECT_NE(out.find("3 more bad things in the last "), std::string::npos) << out;
  EXPECT_NE(out.find("s were not logged"), std::string::npos) << out;
  EXPECT_EQ(out.front(), 'W') << out;
  EXPECT_TRUE(quick.allow());
  EXPECT_FALSE(quick.allow());
}

}  // namespace
}  // namespace pstrain
