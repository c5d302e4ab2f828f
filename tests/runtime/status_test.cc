#include "runtime/base/status.h"

#include <gtest/gtest.h>

namespace pstrain {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument("value " + std::to_string(v) + " is not positive");
  return v;
}

Status twice(int v, int* out) {
  PSTRAIN_ASSIGN_OR_RETURN(int x, parse_positive(v));
  *out = 2 * x;
  return {};
}

TEST(Status, OkAndError) {
  EXPECT_TRUE(Status().ok());
  Status s = not_found("no file x");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.to_string(), "NotFound: no file x");
  EXPECT_EQ(s.with_context("loading").message(), "loading: no file x");
}

TEST(Status, AssignOrReturnPropagates) {
  int out = 0;
  EXPECT_TRUE(twice(4, &out).ok());
  EXPECT_EQ(out, 8);
  Status s = twice(-1, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("-1"), std::string::npos);
}

}  // namespace
}  // namespace pstrain
