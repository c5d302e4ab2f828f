// PSTRAIN_CHECK fires in every build type (this test runs in the Release and sanitizer builds,
// which define NDEBUG), names the place and the condition, and costs one evaluation.
#include "runtime/base/check.h"

#include <gtest/gtest.h>

#include <string>

namespace pstrain {
namespace {

TEST(CheckDeathTest, AFailedCheckAbortsNamingFileLineAndCondition) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const int two = 2;
  EXPECT_DEATH(PSTRAIN_CHECK(two == 3), "check failed at .*check_test\\.cc:[0-9]+: two == 3");
  EXPECT_DEATH(PSTRAIN_CHECK(two < 0, "a message for the reader"),
               "check_test\\.cc:[0-9]+: two < 0 \\(a message for the reader\\)");
}

TEST(CheckTest, APassingCheckEvaluatesItsConditionOnceAndNotItsMessage) {
  int evaluated = 0;
  int message_built = 0;
  auto message = [&] {
    ++message_built;
    return std::string("unused");
  };
  PSTRAIN_CHECK(++evaluated == 1, message());
  EXPECT_EQ(evaluated, 1);
  EXPECT_EQ(message_built, 0);
}

}  // namespace
}  // namespace pstrain
