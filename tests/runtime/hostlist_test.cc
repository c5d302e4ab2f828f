#include "runtime/job/hostlist.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace pstrain {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> expand(const std::string& e) {
  auto r = expand_hostlist(e);
  EXPECT_TRUE(r.ok()) << e << ": " << r.status().to_string();
  return r.ok() ? *r : std::vector<std::string>{};
}

TEST(Hostlist, SingleHost) { EXPECT_THAT(expand("node01"), ElementsAre("node01")); }

TEST(Hostlist, CommaList) {
  EXPECT_THAT(expand("a,b.example.com,c_1"), ElementsAre("a", "b.example.com", "c_1"));
}

TEST(Hostlist, RangeKeepsZeroPadding) {
  EXPECT_THAT(expand("node[01-04,07]"),
              ElementsAre("node01", "node02", "node03", "node04", "node07"));
  EXPECT_THAT(expand("n[008-011]"), ElementsAre("n008", "n009", "n010", "n011"));
  EXPECT_THAT(expand("n[98-101]"), ElementsAre("n98", "n99", "n100", "n101"));
  EXPECT_THAT(expand("n[9-10]"), ElementsAre("n9", "n10"));
}

TEST(Hostlist, SingleNumbersInBrackets) {
  EXPECT_THAT(expand("gpu[3]"), ElementsAre("gpu3"));
  EXPECT_THAT(expand("gpu[5,1,03]"), ElementsAre("gpu5", "gpu1", "gpu03"));
}

TEST(Hostlist, SeveralBracketGroupsFirstVariesSlowest) {
  EXPECT_THAT(expand("rack[1-2]-node[01-02]"),
              ElementsAre("rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"));
}

TEST(Hostlist, SuffixAfterBrackets) {
  EXPECT_THAT(expand("node[1-2].cluster"), ElementsAre("node1.cluster", "node2.cluster"));
  EXPECT_THAT(expand("[1-2]x"), ElementsAre("1x", "2x"));
}

TEST(Hostlist, MixedList) {
  EXPECT_THAT(expand("a,b[1-3],c"), ElementsAre("a", "b1", "b2", "b3", "c"));
  EXPECT_THAT(expand("x[1,3],y[01-02]-ib"), ElementsAre("x1", "x3", "y01-ib", "y02-ib"));
}

TEST(Hostlist, MalformedIsAnErrorNamingTheExpression) {
  struct Case {
    std::string expression;
    std::string what;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"node[01-04", "without a closing"},
      {"node01-04]", "without an opening"},
      {"node[]", "empty brackets"},
      {"node[1-]", "not a number"},
      {"node[-3]", "not a number"},
      {"node[a-c]", "not a number"},
      {"node[1,,2]", "empty entry"},
      {"node[5-2]", "backwards"},
      {"node[[1-2]]", "nested"},
      {"a,,b", "empty host name"},
      {"a,", "empty host name"},
      {",a", "empty host name"},
      {"node 01", "not allowed"},
      {"node[1-2]x[", "closing"},
      {"n[0-99999999]", "more than"},
      {"n[0-999]m[0-999]z[0-9]", "more than"},
      {"n[1234567890]", "over 9 digits"},
  };
  for (const Case& c : cases) {
    auto r = expand_hostlist(c.expression);
    ASSERT_FALSE(r.ok()) << c.expression;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("hostlist \"" + c.expression + "\""));
    EXPECT_THAT(r.status().message(), HasSubstr(c.what)) << c.expression;
  }
}

// Random expressions from hostlist characters and a few others: never a crash, and either
// hosts or an InvalidArgument naming the expression.
TEST(Hostlist, RandomInputNeverCrashes) {
  const std::string alphabet = "[]-,0123456789abn. _";
  std::mt19937 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    std::string e;
    const size_t n = rng() % 16;
    for (size_t j = 0; j < n; ++j) e += alphabet[rng() % alphabet.size()];
    auto r = expand_hostlist(e);
    if (r.ok()) {
      EXPECT_FALSE(r->empty()) << e;
      EXPECT_LE(r->size(), kMaxHostlistHosts) << e;
    } else {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << e;
      EXPECT_THAT(r.status().message(), HasSubstr("hostlist \"" + e + "\"")) << e;
    }
  }
}

}  // namespace
}  // namespace pstrain
