#include "ps/shard_store.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <vector>

namespace pstrain {
namespace {

// Two chunks: "a" with 2 elements, "b" with 1; plain SGD with lr 1 so updates are easy to
// follow: p -= mean(g).
ShardStore make_store(bool sync, int replicas, int64_t train_steps) {
  ShardStore s;
  OptimizerConfig sgd{OptimizerKind::kSgd, 1.0f};
  AggregationConfig agg{sync, replicas, train_steps};
  std::vector<ChunkInit> chunks = {{"a", {10.f, 20.f}}, {"b", {30.f}}};
  EXPECT_TRUE(s.initialize(sgd, agg, std::move(chunks)).ok());
  return s;
}

struct Grad {
  std::vector<float> a, b;
  std::vector<GradientView> views() const {
    return {{reinterpret_cast<const std::byte*>(a.data()), static_cast<int64_t>(a.size())},
            {reinterpret_cast<const std::byte*>(b.data()), static_cast<int64_t>(b.size())}};
  }
};

PushOutcome push(ShardStore& s, int worker, int64_t step, const Grad& g) {
  auto v = g.views();
  return s.push(worker, step, v);
}

TEST(ShardStore, SyncAppliesMeanOfReplicasThenAdvances) {
  ShardStore s = make_store(/*sync=*/true, /*replicas=*/2, /*train_steps=*/10);
  EXPECT_EQ(push(s, 0, 0, {{1, 2}, {3}}), PushOutcome::kAccumulated);
  EXPECT_EQ(s.step(), 0);
  EXPECT_EQ((*s.values(0))[0], 10.f);  // nothing applied yet
  EXPECT_EQ(push(s, 1, 0, {{3, 4}, {5}}), PushOutcome::kApplied);
  EXPECT_EQ(s.step(), 1);
  EXPECT_FLOAT_EQ((*s.values(0))[0], 10.f - 2.f);  // mean(1, 3)
  EXPECT_FLOAT_EQ((*s.values(0))[1], 20.f - 3.f);  // mean(2, 4)
  EXPECT_FLOAT_EQ((*s.values(1))[0], 30.f - 4.f);  // mean(3, 5)
  EXPECT_EQ(s.counters().updates, 1);
  EXPECT_EQ(s.counters().gradients_applied, 2);
}

TEST(ShardStore, SyncDropsStaleGradientsOfBackupWorkers) {
  // Three workers, two replicas: the third is a backup whose late gradient is dropped.
  ShardStore s = make_store(true, 2, 10);
  EXPECT_EQ(push(s, 0, 0, {{1, 1}, {1}}), PushOutcome::kAccumulated);
  EXPECT_EQ(push(s, 2, 0, {{1, 1}, {1}}), PushOutcome::kApplied);
  EXPECT_EQ(push(s, 1, 0, {{100, 100}, {100}}), PushOutcome::kStale);
  EXPECT_EQ(s.counters().stale, 1);
  EXPECT_FLOAT_EQ((*s.values(0))[0], 9.f);  // the stale 100 never reached the parameters
  // The backup worker catches up at step 1 and takes part normally.
  EXPECT_EQ(push(s, 1, 1, {{2, 2}, {2}}), PushOutcome::kAccumulated);
  EXPECT_EQ(push(s, 0, 1, {{4, 4}, {4}}), PushOutcome::kApplied);
  EXPECT_EQ(s.step(), 2);
  EXPECT_FLOAT_EQ((*s.values(0))[0], 9.f - 3.f);
}

TEST(ShardStore, SyncRejectsDuplicateAndFutureGradients) {
  ShardStore s = make_store(true, 2, 10);
  EXPECT_EQ(push(s, 0, 0, {{1, 1}, {1}}), PushOutcome::kAccumulated);
  EXPECT_EQ(push(s, 0, 0, {{1, 1}, {1}}), PushOutcome::kDuplicate);
  EXPECT_EQ(push(s, 1, 5, {{1, 1}, {1}}), PushOutcome::kFuture);
  EXPECT_EQ(s.step(), 0);
  EXPECT_EQ(s.pending(), 1);
  EXPECT_EQ(s.counters().duplicate, 1);
  EXPECT_EQ(s.counters().future, 1);
}

TEST(ShardStore, LoweringReplicasCompletesAPendingStep) {
  ShardStore s = make_store(true, 3, 10);
  EXPECT_EQ(push(s, 0, 0, {{2, 2}, {2}}), PushOutcome::kAccumulated);
  EXPECT_EQ(push(s, 1, 0, {{4, 4}, {4}}), PushOutcome::kAccumulated);
  EXPECT_FALSE(s.complete_pending());
  s.set_replicas(2);  // a worker was lost
  EXPECT_TRUE(s.complete_pending());
  EXPECT_EQ(s.step(), 1);
  EXPECT_FLOAT_EQ((*s.values(1))[0], 30.f - 3.f);
}

TEST(ShardStore, AsyncAppliesEachGradientAndStopsAtTrainSteps) {
  ShardStore s = make_store(false, 1, 2);
  EXPECT_EQ(push(s, 0, 0, {{1, 1}, {1}}), PushOutcome::kApplied);
  EXPECT_EQ(push(s, 1, 0, {{2, 2}, {2}}), PushOutcome::kApplied);  // step tags ignored
  EXPECT_EQ(s.step(), 2);
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(push(s, 0, 1, {{5, 5}, {5}}), PushOutcome::kLate);
  EXPECT_FLOAT_EQ((*s.values(0))[0], 10.f - 1.f - 2.f);
  EXPECT_EQ(s.counters().late, 1);
}

TEST(ShardStore, UpdateNeverWritesAValueBufferStillReferenced) {
  ShardStore s = make_store(false, 1, 10);
  std::shared_ptr<const std::vector<float>> in_flight = s.values(0);
  push(s, 0, 0, {{1, 1}, {1}});
  EXPECT_FLOAT_EQ((*in_flight)[0], 10.f);  // the snapshot being "sent" is unchanged
  EXPECT_FLOAT_EQ((*s.values(0))[0], 9.f);
}

// A WriteThrough receives the values an update leaves, every chunk back to back, exactly when
// the push updated the parameters: async always, sync only for the gradient that completes
// the step; never for a refused gradient or bytes too small for every chunk.
TEST(ShardStore, WriteThroughHoldsTheUpdatedValuesWhenThePushUpdated) {
  const auto held = [](const ShardStore& s) {
    std::vector<float> all = *s.values(0);
    all.push_back((*s.values(1))[0]);
    return all;
  };
  std::vector<float> out(3, -1.f);
  const auto through_over = [&](std::vector<float>& v) {
    ShardStore::WriteThrough t;
    t.bytes = std::as_writable_bytes(std::span<float>(v));
    return t;
  };

  ShardStore async = make_store(false, 1, 10);
  ShardStore::WriteThrough t = through_over(out);
  Grad g{{1, 2}, {3}};
  auto views = g.views();
  EXPECT_EQ(async.push(0, 0, views, &t), PushOutcome::kApplied);
  EXPECT_TRUE(t.written);
  EXPECT_EQ(out, held(async));
  EXPECT_EQ(out, (std::vector<float>{9.f, 18.f, 27.f}));

  std::vector<float> short_out(2, -1.f);  // cannot hold chunk "b": nothing is written
  ShardStore::WriteThrough too_small = through_over(short_out);
  EXPECT_EQ(async.push(0, 1, views, &too_small), PushOutcome::kApplied);
  EXPECT_FALSE(too_small.written);
  EXPECT_EQ(short_out, (std::vector<float>{-1.f, -1.f}));

  Grad nan{{1, std::numeric_limits<float>::quiet_NaN()}, {1}};
  auto nan_views = nan.views();
  std::fill(out.begin(), out.end(), -1.f);
  t = through_over(out);
  EXPECT_EQ(async.push(0, 2, nan_views, &t), PushOutcome::kNonFinite);
  EXPECT_FALSE(t.written);
  EXPECT_EQ(out, (std::vector<float>{-1.f, -1.f, -1.f}));

  ShardStore sync = make_store(true, 2, 10);
  t = through_over(out);
  EXPECT_EQ(sync.push(0, 0, views, &t), PushOutcome::kAccumulated);
  EXPECT_FALSE(t.written);
  Grad g1{{3, 4}, {5}};
  auto views1 = g1.views();
  t = through_over(out);
  EXPECT_EQ(sync.push(1, 0, views1, &t), PushOutcome::kApplied);
  EXPECT_TRUE(t.written);
  EXPECT_EQ(out, held(sync));
  EXPECT_EQ(out, (std::vector<float>{8.f, 17.f, 26.f}));  // p -= mean(g)
}

TEST(ShardStore, UnalignedGradientBytesAreRead) {
  ShardStore s = make_store(false, 1, 10);
  std::vector<std::byte> raw(1 + 3 * sizeof(float));
  const float a[2] = {1.f, 2.f}, b[1] = {3.f};
  std::memcpy(raw.data() + 1, a, sizeof a);
  std::vector<std::byte> raw_b(1 + sizeof(float));
  std::memcpy(raw_b.data() + 1, b, sizeof b);
  std::vector<GradientView> views = {{raw.data() + 1, 2}, {raw_b.data() + 1, 1}};
  s.push(0, 0, views);
  EXPECT_FLOAT_EQ((*s.values(0))[1], 18.f);
  EXPECT_FLOAT_EQ((*s.values(1))[0], 27.f);
}

// Adam over two chunks of 5 and 3 values, sync with two replicas: a fresh store per run.
ShardStore make_adam_store() {
  ShardStore s;
  OptimizerConfig adam{OptimizerKind::kAdam, 0.01f};
  std::vector<ChunkInit> chunks = {{"a", {0.1f, -0.2f, 0.3f, 0.4f, -0.5f}}, {"b", {1.f, 2.f, 3.f}}};
  EXPECT_TRUE(s.initialize(adam, {true, 2, 100}, std::move(chunks)).ok());
  return s;
}

TEST(ShardStore, SixteenBitGradientsAreAppliedAsTheirWidenedFloat32Values) {
  for (FloatFormat fmt : {FloatFormat::kFloat16, FloatFormat::kBFloat16}) {
    SCOPED_TRACE(compression_name(fmt));
    ShardStore narrow = make_adam_store();
    ShardStore wide = make_adam_store();
    std::mt19937 rng(11);
    std::normal_distribution<float> dist(0.f, 0.3f);
    for (int64_t step = 0; step < 6; ++step) {
      for (int worker = 0; worker < 2; ++worker) {
        const size_t sizes[2] = {5, 3};
        // 16-bit words at an odd address (frames are not aligned), and their widened values.
        std::vector<std::vector<std::byte>> raw(2);
        std::vector<std::vector<float>> widened(2);
        std::vector<GradientView> half_views, float_views;
        for (size_t c = 0; c < 2; ++c) {
          std::vector<float> g(sizes[c]);
          for (float& x : g) x = dist(rng);
          std::vector<uint16_t> words(g.size());
          narrow_floats(fmt, g, words);
          raw[c].resize(1 + 2 * words.size());
          std::memcpy(raw[c].data() + 1, words.data(), 2 * words.size());
          widened[c].resize(g.size());
          widen_halves(fmt, raw[c].data() + 1, widened[c]);
          // The widened values differ from the float32 ones: the test compares something.
          EXPECT_NE(widened[c], g);
          half_views.push_back({raw[c].data() + 1, static_cast<int64_t>(g.size()), fmt});
        }
        for (size_t c = 0; c < 2; ++c) {
          float_views.push_back({reinterpret_cast<const std::byte*>(widened[c].data()),
                                 static_cast<int64_t>(widened[c].size())});
        }
        const PushOutcome a = narrow.push(worker, step, half_views);
        const PushOutcome b = wide.push(worker, step, float_views);
        EXPECT_EQ(a, b);
        EXPECT_EQ(a, worker == 0 ? PushOutcome::kAccumulated : PushOutcome::kApplied);
      }
    }
    EXPECT_EQ(narrow.step(), 6);
    for (size_t c = 0; c < 2; ++c) {
      const std::vector<float>& p = *narrow.values(c);
      const std::vector<float>& q = *wide.values(c);
      ASSERT_EQ(p.size(), q.size());
      for (size_t j = 0; j < p.size(); ++j) {
        EXPECT_EQ(std::bit_cast<uint32_t>(p[j]), std::bit_cast<uint32_t>(q[j])) << c << "/" << j;
      }
      for (int k = 0; k < 2; ++k) EXPECT_EQ(narrow.slot(c, k), wide.slot(c, k));
    }
  }
}

TEST(ShardStore, SixteenBitGradientThatOverflowsIsDroppedAsNonFinite) {
  ShardStore s = make_store(false, 1, 10);
  // 1e5 does not fit float16: it arrives as Inf and the whole gradient is refused.
  const float a[2] = {1.f, 1e5f}, b[1] = {1.f};
  uint16_t wa[2], wb[1];
  narrow_floats(FloatFormat::kFloat16, a, wa);
  narrow_floats(FloatFormat::kFloat16, b, wb);
  std::vector<GradientView> views = {
      {reinterpret_cast<const std::byte*>(wa), 2, FloatFormat::kFloat16},
      {reinterpret_cast<const std::byte*>(wb), 1, FloatFormat::kFloat16}};
  EXPECT_EQ(s.push(0, 0, views), PushOutcome::kNonFinite);
  EXPECT_EQ((*s.values(0))[0], 10.f);
  // bfloat16 keeps float32's range: the same values are applied.
  narrow_floats(FloatFormat::kBFloat16, a, wa);
  narrow_floats(FloatFormat::kBFloat16, b, wb);
  for (GradientView& v : views) v.format = FloatFormat::kBFloat16;
  EXPECT_EQ(s.push(0, 0, views), PushOutcome::kApplied);
  EXPECT_EQ((*s.values(0))[0], 9.f);
  EXPECT_EQ((*s.values(1))[0], 29.f);
}

TEST(ShardStore, LayoutCheckNamesTheMismatch) {
  ShardStore s = make_store(false, 1, 10);
  std::vector<std::string> keys = {"a", "c"};
  std::vector<int64_t> counts = {2, 1};
  Status st = s.check_layout(keys, counts);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("'c'"), std::string::npos);
  keys[1] = "b";
  EXPECT_TRUE(s.check_layout(keys, counts).ok());
  counts[0] = 3;
  EXPECT_FALSE(s.check_layout(keys, counts).ok());
}

TEST(ShardStore, LayoutCheckTakesRangesThatTileEachChunk) {
  ShardStore s = make_store(false, 1, 10);  // "a": 2 elements, "b": 1
  const std::vector<std::string> keys = {"a", "a", "b"};
  EXPECT_TRUE(
      s.check_layout(keys, std::vector<int64_t>{0, 1, 0}, std::vector<int64_t>{1, 1, 1}).ok());
  // A gap, an overlap, ranges out of order, a range past the end: each named.
  Status gap = s.check_layout(std::vector<std::string>{"a", "b"}, std::vector<int64_t>{0, 0},
                              std::vector<int64_t>{1, 1});
  ASSERT_FALSE(gap.ok());
  EXPECT_NE(gap.message().find("expected 'a' with 1 elements from element 1"), std::string::npos)
      << gap.message();
  EXPECT_FALSE(
      s.check_layout(keys, std::vector<int64_t>{0, 0, 0}, std::vector<int64_t>{1, 1, 1}).ok());
  EXPECT_FALSE(
      s.check_layout(keys, std::vector<int64_t>{1, 0, 0}, std::vector<int64_t>{1, 1, 1}).ok());
  EXPECT_FALSE(s.check_layout(std::vector<std::string>{"a", "a", "b"},
                              std::vector<int64_t>{0, 1, 0}, std::vector<int64_t>{1, 2, 1})
                   .ok());
  // A range left over after the last chunk.
  EXPECT_FALSE(s.check_layout(std::vector<std::string>{"a", "a", "b", "b"},
                              std::vector<int64_t>{0, 1, 0, 1}, std::vector<int64_t>{1, 1, 1, 1})
                   .ok());
}

// A store of one large chunk and a small one, updated by Adam, sync or async.
ShardStore make_ranged_store(bool sync, size_t large) {
  ShardStore s;
  OptimizerConfig adam{OptimizerKind::kAdam, 0.01f};
  std::vector<float> values(large);
  for (size_t i = 0; i < large; ++i) values[i] = 0.001f * static_cast<float>(i % 977);
  std::vector<ChunkInit> chunks = {{"w", std::move(values)}, {"b", {1.f, 2.f, 3.f}}};
  EXPECT_TRUE(s.initialize(adam, {sync, 2, 100}, std::move(chunks)).ok());
  return s;
}

// A random gradient for make_ranged_store()'s chunks ("w" of `large` values, "b" of 3), and
// its bytes as push() reads them.
struct RangedGradient {
  std::vector<float> w, b;
  RangedGradient(size_t large, std::mt19937& rng) : w(large), b(3) {
    std::normal_distribution<float> dist(0.f, 0.3f);
    for (float& x : w) x = dist(rng);
    for (float& x : b) x = dist(rng);
  }
  const std::byte* wb() const { return reinterpret_cast<const std::byte*>(w.data()); }
  const std::byte* bb() const { return reinterpret_cast<const std::byte*>(b.data()); }
  std::vector<GradientView> whole() const {
    return {{wb(), static_cast<int64_t>(w.size())}, {bb(), 3}};
  }
};

TEST(ShardStore, AChunkInRangesIsUpdatedExactlyAsWhole) {
  // Ranges small enough to run as tasks on the update threads, and ranges large enough to be
  // split by the update itself (sequentially, one after another).
  for (const size_t large : {size_t{10007}, kParallelUpdateMinValues * 4 + 13}) {
    for (const bool sync : {false, true}) {
      SCOPED_TRACE(std::to_string(large) + (sync ? " sync" : " async"));
      ShardStore whole = make_ranged_store(sync, large);
      ShardStore ranged = make_ranged_store(sync, large);
      std::mt19937 rng(5);
      for (int64_t step = 0; step < 3; ++step) {
        for (int worker = 0; worker < 2; ++worker) {
          const RangedGradient g(large, rng);
          const std::byte* wb = g.wb();
          const std::vector<GradientView> one = g.whole();
          // "w" in four uneven ranges, the last ragged.
          const int64_t q = static_cast<int64_t>(large) / 4 + 3;
          const int64_t n = static_cast<int64_t>(large);
          std::vector<GradientView> four;
          for (int64_t at = 0; at < n; at += q) {
            four.push_back({wb + at * 4, std::min(q, n - at), FloatFormat::kFloat32, at});
          }
          four.push_back({g.bb(), 3});
          ASSERT_EQ(four.size(), 5u);
          const int64_t s = sync ? step : whole.step();
          EXPECT_EQ(whole.push(worker, s, one), ranged.push(worker, s, four));
        }
      }
      ASSERT_EQ(whole.step(), ranged.step());
      EXPECT_EQ(whole.step(), sync ? 3 : 6);
      for (size_t c = 0; c < 2; ++c) {
        const std::vector<float>& p = *whole.values(c);
        const std::vector<float>& r = *ranged.values(c);
        ASSERT_EQ(p.size(), r.size());
        EXPECT_EQ(0, std::memcmp(p.data(), r.data(), p.size() * sizeof(float))) << c;
        for (int k = 0; k < 2; ++k) EXPECT_EQ(whole.slot(c, k), ranged.slot(c, k)) << c;
      }
      // Not a pass by accident: the values moved.
      EXPECT_NE((*whole.values(0))[1], 0.001f);
    }
  }
}

TEST(ShardStore, ANonFiniteValueInTheLastRangeDropsEveryRange) {
  ShardStore s = make_ranged_store(false, 4096);
  std::vector<float> w(4096, 0.5f), b(3, 0.5f);
  w[4000] = std::numeric_limits<float>::quiet_NaN();
  const auto* wb = reinterpret_cast<const std::byte*>(w.data());
  const std::vector<GradientView> views = {{wb, 2048},
                                           {wb + 2048 * 4, 2048, FloatFormat::kFloat32, 2048},
                                           {reinterpret_cast<const std::byte*>(b.data()), 3}};
  const std::vector<float> before = *s.values(0);
  EXPECT_EQ(s.push(0, 0, views), PushOutcome::kNonFinite);
  EXPECT_EQ(*s.values(0), before);  // nothing of the first range applied either
  EXPECT_EQ(s.step(), 0);
}

// UpdateProgress (a PS sending its reply in parts while the update runs): the same bits and
// slots as without it, whole chunks or ranges; done() called at every step boundary of all the
// values in order, values final when it says so, the last call with every value; never for a
// dropped gradient.
TEST(ShardStore, AnUpdateInStepsTellsWhatIsFinalAndMakesTheSameValues) {
  const size_t large = 10007;
  const uint64_t total = large + 3;
  constexpr uint64_t kStep = 1500;
  ShardStore plain = make_ranged_store(false, large);
  ShardStore stepped = make_ranged_store(false, large);
  std::mt19937 rng(9);
  for (int round = 0; round < 3; ++round) {
    const RangedGradient g(large, rng);
    std::vector<GradientView> views = g.whole();
    if (round == 1) {  // "w" in two ranges
      views = {{g.wb(), 4000}, {g.wb() + 4000 * 4, 6007, FloatFormat::kFloat32, 4000}, {g.bb(), 3}};
    }
    std::vector<uint64_t> calls;
    ShardStore::UpdateProgress progress{
        .step_values = kStep, .done = [&](uint64_t n) {
          calls.push_back(n);
          // What is said final is: the plain store's update.
          const std::vector<float>& got = *stepped.values(0);
          const std::vector<float>& want = *plain.values(0);
          const size_t upto = std::min<size_t>(n, large);
          EXPECT_EQ(0, std::memcmp(got.data(), want.data(), upto * sizeof(float)))
              << "final through " << n;
        }};
    ASSERT_EQ(plain.push(0, plain.step(), views), PushOutcome::kApplied);
    ASSERT_EQ(stepped.push(0, stepped.step(), views, nullptr, &progress), PushOutcome::kApplied);
    ASSERT_FALSE(calls.empty());
    EXPECT_EQ(calls.back(), total);
    for (size_t k = 0; k + 1 < calls.size(); ++k) {
      EXPECT_LT(calls[k], calls[k + 1]);
      // Steps end at multiples of kStep, or where a chunk or a range ends.
      EXPECT_TRUE(calls[k] % kStep == 0 || calls[k] == 4000 || calls[k] == large) << calls[k];
    }
    EXPECT_GE(calls.size(), (total + kStep - 1) / kStep);
  }
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_EQ(*plain.values(c), *stepped.values(c)) << c;
    for (int k = 0; k < 2; ++k) EXPECT_EQ(plain.slot(c, k), stepped.slot(c, k)) << c;
  }
  std::vector<float> w(large, 0.1f), b(3, std::numeric_limits<float>::infinity());
  const std::vector<GradientView> bad = {
      {reinterpret_cast<const std::byte*>(w.data()), static_cast<int64_t>(large)},
      {reinterpret_cast<const std::byte*>(b.data()), 3}};
  int calls = 0;
  ShardStore::UpdateProgress progress{.step_values = kStep, .done = [&](uint64_t) { ++calls; }};
  EXPECT_EQ(stepped.push(0, stepped.step(), bad, nullptr, &progress), PushOutcome::kNonFinite);
  EXPECT_EQ(calls, 0);
}

TEST(ShardStore, InitializeRejectsRepeatsAndTwice) {
  ShardStore s;
  OptimizerConfig adam;
  std::vector<ChunkInit> dup = {{"a", {1.f}}, {"a", {2.f}}};
  EXPECT_FALSE(s.initialize(adam, {}, std::move(dup)).ok());
  std::vector<ChunkInit> ok = {{"a", {1.f}}};
  EXPECT_TRUE(s.initialize(adam, {false, 1, 5}, std::move(ok)).ok());
  std::vector<ChunkInit> again = {{"a", {1.f}}};
  EXPECT_FALSE(s.initialize(adam, {false, 1, 5}, std::move(again)).ok());
}

}  // namespace
}  // namespace pstrain
