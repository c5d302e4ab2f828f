// Loads the installed Fashion-MNIST (Debian's dataset-fashion-mnist) when it is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "worker/data.h"

namespace pstrain {
namespace {

void expect_sane(const Dataset& d, int64_t count, const char* name) {
  EXPECT_EQ(d.count, count) << name;
  EXPECT_EQ(d.rows, 28) << name;
  EXPECT_EQ(d.cols, 28) << name;
  ASSERT_EQ(static_cast<int64_t>(d.images.size()), count * 28 * 28) << name;
  ASSERT_EQ(static_cast<int64_t>(d.labels.size()), count) << name;
  const auto [lo, hi] = std::minmax_element(d.images.begin(), d.images.end());
  EXPECT_EQ(*lo, 0.f) << name;
  EXPECT_EQ(*hi, 1.f) << name;
  std::set<int32_t> classes;
  for (int32_t l : d.labels) {
    ASSERT_GE(l, 0) << name;
    ASSERT_LT(l, kNumClasses) << name;
    classes.insert(l);
  }
  EXPECT_EQ(classes.size(), static_cast<size_t>(kNumClasses)) << name;
}

TEST(FashionMnist, LoadsInstalledDataSet) {
  if (!std::filesystem::is_directory(kDefaultDataDir)) {
    GTEST_SKIP() << kDefaultDataDir
                 << " not present: install dataset-fashion-mnist (bash scripts/setup.sh)";
  }
  auto check = check_data_dir(kDefaultDataDir);
  ASSERT_TRUE(check.ok()) << check.status().to_string();
  EXPECT_NE(check->find("train 60000x28x28, test 10000x28x28"), std::string::npos) << *check;

  auto r = load_data_dir(kDefaultDataDir);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_sane(r->train, 60000, "train");
  expect_sane(r->test, 10000, "test");
}

}  // namespace
}  // namespace pstrain
