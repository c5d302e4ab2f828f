// Log lines in glog's shape (what TensorFlow's C++ side prints), whole lines, level threshold.
#include "runtime/base/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

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

}  // namespace
}  // namespace pstrain
