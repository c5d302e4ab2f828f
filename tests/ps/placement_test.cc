#include "ps/placement.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/model.h"

namespace pstrain {
namespace {

class PlacementBalance : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(PlacementBalance, EveryElementPlacedOnceAndNoPsOverloaded) {
  const auto& [model, num_ps] = GetParam();
  auto vars = Model::describe(ModelOptions{model});
  ASSERT_TRUE(vars.ok());
  const Placement p = place_variables(*vars, num_ps);
  int64_t total = 0;
  for (const auto& v : *vars) total += v.numel();
  ASSERT_EQ(p.total_elements, total);

  // Chunks tile the flat vector exactly: sorted by offset they are contiguous.
  std::vector<Chunk> sorted = p.chunks;
  std::sort(sorted.begin(), sorted.end(),
            [](const Chunk& a, const Chunk& b) { return a.flat_offset < b.flat_offset; });
  int64_t next = 0;
  int64_t largest = 0;
  for (const Chunk& c : sorted) {
    EXPECT_EQ(c.flat_offset, next) << c.key;
    EXPECT_GT(c.count, 0);
    EXPECT_GE(c.ps, 0);
    EXPECT_LT(c.ps, num_ps);
    const VariableSpec& v = (*vars)[static_cast<size_t>(c.variable)];
    EXPECT_GE(c.flat_offset, v.offset);
    EXPECT_LE(c.flat_offset + c.count, v.offset + v.numel()) << c.key << " crosses a variable";
    next += c.count;
    largest = std::max(largest, c.count);
  }
  EXPECT_EQ(next, total);

  // Per-PS totals agree with the chunks, and none exceeds its share by more than one chunk,
  // nor by more than 15% of the share.
  ASSERT_EQ(p.elements_of_ps.size(), static_cast<size_t>(num_ps));
  int64_t sum = 0;
  for (int ps = 0; ps < num_ps; ++ps) {
    int64_t held = 0;
    for (int ci : p.chunks_of_ps[static_cast<size_t>(ps)]) {
      held += p.chunks[static_cast<size_t>(ci)].count;
    }
    EXPECT_EQ(held, p.elements_of_ps[static_cast<size_t>(ps)]);
    sum += held;
    const double share = static_cast<double>(total) / num_ps;
    EXPECT_LE(static_cast<double>(held), share + static_cast<double>(largest)) << "ps " << ps;
    EXPECT_LE(static_cast<double>(held), 1.15 * share) << "ps " << ps;
    EXPECT_GT(held, 0) << "ps " << ps << " holds nothing";
  }
  EXPECT_EQ(sum, total);
}

INSTANTIATE_TEST_SUITE_P(Models, PlacementBalance,
                         ::testing::Combine(::testing::Values("mlp", "cnn"),
                                            ::testing::Values(1, 2, 3)));

TEST(Placement, DeterministicAndHashSensitive) {
  auto vars = Model::describe(ModelOptions{"cnn"});
  ASSERT_TRUE(vars.ok());
  const Placement a = place_variables(*vars, 2);
  const Placement b = place_variables(*vars, 2);
  EXPECT_EQ(a.hash, b.hash);
  ASSERT_EQ(a.chunks.size(), b.chunks.size());
  for (size_t i = 0; i < a.chunks.size(); ++i) EXPECT_EQ(a.chunks[i].ps, b.chunks[i].ps);
  EXPECT_NE(a.hash, place_variables(*vars, 3).hash);
  auto mlp = Model::describe(ModelOptions{"mlp", 100});
  auto mlp2 = Model::describe(ModelOptions{"mlp", 101});
  EXPECT_NE(place_variables(*mlp, 2).hash, place_variables(*mlp2, 2).hash);
}

TEST(Placement, LargeVariableIsSplit) {
  auto vars = Model::describe(ModelOptions{"cnn"});
  ASSERT_TRUE(vars.ok());
  const Placement p = place_variables(*vars, 3);
  int dense_chunks = 0;
  for (const Chunk& c : p.chunks) {
    if (c.key.rfind("dense/kernel/", 0) == 0) ++dense_chunks;
  }
  EXPECT_GT(dense_chunks, 3);  // 3.2M elements spread over the three servers
}

TEST(Placement, OneServerKeepsEachVariableWhole) {
  for (const std::string model : {"mlp", "cnn"}) {
    auto vars = Model::describe(ModelOptions{model});
    ASSERT_TRUE(vars.ok());
    const Placement p = place_variables(*vars, 1);
    ASSERT_EQ(p.chunks.size(), vars->size()) << model;
    for (size_t i = 0; i < p.chunks.size(); ++i) {
      EXPECT_EQ(p.chunks[i].key, (*vars)[i].name + "/0");
      EXPECT_EQ(p.chunks[i].count, (*vars)[i].numel());
    }
    EXPECT_EQ(p.hash, placement_hash(1, p.chunks));
    // An explicit chunk size still splits.
    EXPECT_GT(place_variables(*vars, 1, 1024).chunks.size(), vars->size()) << model;
  }
}

}  // namespace
}  // namespace pstrain
