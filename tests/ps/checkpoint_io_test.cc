// A PS's shard of a checkpoint: every optimizer's slots and the step survive a save and a
// restore exactly, so training continues as if it had never stopped; a shard of another
// model, layout, PS count or optimizer is refused with what differs.
#include "ps/checkpoint_io.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "kernels/model.h"
#include "ps/placement.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

JobTrainingConfig config_for(OptimizerKind kind) {
  JobTrainingConfig c;
  c.model = "mlp";
  c.optimizer.kind = kind;
  c.optimizer.learning_rate = 0.05f;
  c.sync_replicas = false;
  c.train_steps = 100;
  c.num_workers = 1;
  c.layout_hash = 0xabcdef0123456789ULL;
  return c;
}

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void push_random(ShardStore& s, std::mt19937& rng, int64_t step) {
  std::vector<std::vector<float>> grads;
  std::vector<GradientView> views;
  for (size_t i = 0; i < s.num_chunks(); ++i) {
    grads.push_back(random_floats(static_cast<size_t>(s.count(i)), rng));
  }
  for (const auto& g : grads) {
    views.push_back({reinterpret_cast<const std::byte*>(g.data()), static_cast<int64_t>(g.size())});
  }
  ASSERT_EQ(s.push(0, step, views), PushOutcome::kApplied);
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

void expect_same_state(const ShardStore& a, const ShardStore& b, OptimizerKind kind,
                       const std::string& what) {
  ASSERT_EQ(a.num_chunks(), b.num_chunks()) << what;
  EXPECT_EQ(a.step(), b.step()) << what;
  for (size_t i = 0; i < a.num_chunks(); ++i) {
    EXPECT_EQ(a.key(i), b.key(i));
    EXPECT_TRUE(same_bits(*a.values(i), *b.values(i))) << what << ": values of " << a.key(i);
    for (int k = 0; k < optimizer_slot_count(kind); ++k) {
      EXPECT_TRUE(same_bits(a.slot(i, k), b.slot(i, k)))
          << what << ": slot " << k << " of " << a.key(i);
    }
  }
}

TEST(PsCheckpoint, EveryOptimizersSlotsAndStepRestoreExactly) {
  for (const OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum,
                                   OptimizerKind::kAdam, OptimizerKind::kAdagrad}) {
    const std::string name = optimizer_name(kind);
    testing_util::TempDir dir("pstrain_ps_ckpt");
    std::mt19937 rng(11);
    const JobTrainingConfig config = config_for(kind);
    const AggregationConfig agg{false, 1, config.train_steps};
    ShardStore original;
    std::vector<ChunkInit> chunks = {{"w/0", random_floats(40, rng)},
                                     {"b/0", random_floats(7, rng)}};
    ASSERT_TRUE(original.initialize(config.optimizer, agg, std::move(chunks)).ok());
    for (int64_t step = 0; step < 5; ++step) push_random(original, rng, step);

    auto info = checkpoint::write_shard(dir.path(), shard_from_store(original, config, 1, 2));
    ASSERT_TRUE(info.ok()) << info.status().message();
    EXPECT_EQ(info->file, "model.ckpt-5.ps-1-of-2.safetensors");
    auto shard = checkpoint::read_shard(dir / info->file);
    ASSERT_TRUE(shard.ok()) << shard.status().message();
    ASSERT_TRUE(check_restorable(*shard, config, 2, info->file).ok()) << name;
    ShardStore restored;
    ASSERT_TRUE(restore_store(restored, std::move(shard).value(), config).ok()) << name;
    expect_same_state(original, restored, kind, name + " after restore");
    if (kind != OptimizerKind::kSgd) {
      // The slots are not their initial values: the test would catch a restore that drops them.
      EXPECT_NE(original.slot(0, 0)[0], optimizer_slot_initial_value(config.optimizer)) << name;
    }
    // The same gradients from here on give the same parameters bit for bit (Adam's bias
    // correction continues from the restored step).
    std::mt19937 rng_a(99), rng_b(99);
    for (int64_t step = 5; step < 8; ++step) {
      push_random(original, rng_a, step);
      push_random(restored, rng_b, step);
    }
    expect_same_state(original, restored, kind, name + " after 3 more updates");
  }
}

TEST(PsCheckpoint, AShardOfAnotherJobIsRefusedSayingWhatDiffers) {
  ShardStore store;
  const JobTrainingConfig config = config_for(OptimizerKind::kAdam);
  std::vector<ChunkInit> chunks = {{"w/0", {1.f, 2.f}}};
  ASSERT_TRUE(store.initialize(config.optimizer, {false, 1, 10}, std::move(chunks)).ok());
  const checkpoint::ShardData shard = shard_from_store(store, config, 0, 1);
  struct Case {
    std::string what;
    JobTrainingConfig config;
    int num_ps;
    std::string expect;
  };
  std::vector<Case> cases;
  JobTrainingConfig other_model = config;
  other_model.model = "cnn";
  cases.push_back({"model", other_model, 1, "model 'mlp'"});
  JobTrainingConfig other_layout = config;
  other_layout.layout_hash ^= 1;
  cases.push_back({"layout", other_layout, 1, "layout"});
  cases.push_back({"ps count", config, 2, "1 parameter server"});
  JobTrainingConfig other_opt = config;
  other_opt.optimizer.kind = OptimizerKind::kMomentum;
  cases.push_back({"optimizer", other_opt, 1, "--optimizer=momentum"});
  for (const Case& c : cases) {
    Status st = check_restorable(shard, c.config, c.num_ps, "f.safetensors");
    ASSERT_FALSE(st.ok()) << c.what;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << c.what << ": " << st.message();
    EXPECT_NE(st.message().find("f.safetensors"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(check_restorable(shard, config, 1, "f").ok());
}

TEST(PsCheckpoint, FindsItsShardInASharedOrItsOwnDirectory) {
  const JobTrainingConfig config = config_for(OptimizerKind::kSgd);
  ShardStore store;
  std::vector<ChunkInit> chunks = {{"w/0", {1.f, 2.f}}};
  ASSERT_TRUE(store.initialize(config.optimizer, {false, 1, 10}, std::move(chunks)).ok());
  testing_util::TempDir own("pstrain_ps_own");
  auto none = find_ps_shard(own.path(), 1, 2);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->shard.has_value());
  // A PS's own directory holds only its shards, no index: the newest one that parses wins.
  std::mt19937 rng(3);
  for (int64_t step = 0; step < 2; ++step) push_random(store, rng, step);
  ASSERT_TRUE(checkpoint::write_shard(own.path(), shard_from_store(store, config, 1, 2)).ok());
  push_random(store, rng, 2);
  ASSERT_TRUE(checkpoint::write_shard(own.path(), shard_from_store(store, config, 1, 2)).ok());
  std::filesystem::resize_file(own / checkpoint::shard_file_name(3, 1, 2), 20);  // torn
  auto found = find_ps_shard(own.path(), 1, 2);
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_TRUE(found->shard.has_value());
  EXPECT_EQ(found->shard->step, 2);
  ASSERT_EQ(found->skipped.size(), 1u);
  EXPECT_NE(found->skipped[0].find("model.ckpt-3"), std::string::npos);
  // A shared directory with an index of a job with another PS count: refused.
  testing_util::TempDir shared("pstrain_ps_shared");
  auto info = checkpoint::write_shard(shared.path(), shard_from_store(store, config, 0, 1));
  ASSERT_TRUE(info.ok());
  checkpoint::CheckpointIndex index;
  index.step = 3;
  index.model = "mlp";
  index.num_ps = 1;
  index.training_config = nlohmann::json::object();
  index.shards = {*info};
  ASSERT_TRUE(checkpoint::finalize_checkpoint(shared.path(), index, 5).ok());
  auto ok = find_ps_shard(shared.path(), 0, 1);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  ASSERT_TRUE(ok->shard.has_value());
  EXPECT_EQ(ok->shard->step, 3);
  auto refused = find_ps_shard(shared.path(), 0, 2);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("1 parameter server"), std::string::npos)
      << refused.status().message();
}

// A one-PS checkpoint of an earlier version (variables split into ~16 chunks) as it was written.
checkpoint::ShardData split_shard(const std::vector<VariableSpec>& vars, std::mt19937& rng,
                                  int64_t max_chunk_elements) {
  const Placement old = place_variables(vars, 1, max_chunk_elements);
  JobTrainingConfig config = config_for(OptimizerKind::kAdam);
  config.layout_hash = model_layout_hash(old, config.model);
  ShardStore store;
  std::vector<ChunkInit> chunks;
  for (const Chunk& c : old.chunks) {
    chunks.push_back({c.key, random_floats(static_cast<size_t>(c.count), rng)});
  }
  EXPECT_TRUE(store.initialize(config.optimizer, {false, 1, 100}, std::move(chunks)).ok());
  push_random(store, rng, 0);
  return shard_from_store(store, config, 0, 1);
}

TEST(PsCheckpoint, AnOlderSplitOfAOnePsCheckpointIsMergedIntoTodaysLayout) {
  auto vars = Model::describe(ModelOptions{"mlp"});
  ASSERT_TRUE(vars.ok());
  std::mt19937 rng(5);
  const checkpoint::ShardData old = split_shard(*vars, rng, 4970);
  ASSERT_GT(old.chunks.size(), vars->size());
  checkpoint::ShardData shard = old;
  ASSERT_TRUE(merge_split_chunks(shard));
  // The hash is the one today's placement gives, in the shard and in its saved config.
  const Placement today = place_variables(*vars, 1);
  const uint64_t hash = model_layout_hash(today, "mlp");
  EXPECT_EQ(shard.layout_hash, hash);
  auto saved = training_config_from_json(shard.training_config);
  ASSERT_TRUE(saved.ok()) << saved.status().to_string();
  EXPECT_EQ(saved->layout_hash, hash);
  // Each variable's values and Adam slots are the old chunks' in order.
  ASSERT_EQ(shard.chunks.size(), today.chunks.size());
  size_t next_old = 0;
  for (size_t i = 0; i < shard.chunks.size(); ++i) {
    EXPECT_EQ(shard.chunks[i].key, today.chunks[i].key);
    ASSERT_EQ(static_cast<int64_t>(shard.chunks[i].values.size()), today.chunks[i].count);
    std::vector<float> values;
    std::vector<std::vector<float>> slots(old.chunks[next_old].slots.size());
    while (values.size() < shard.chunks[i].values.size()) {
      const checkpoint::ShardChunk& o = old.chunks[next_old++];
      values.insert(values.end(), o.values.begin(), o.values.end());
      for (size_t k = 0; k < slots.size(); ++k) {
        slots[k].insert(slots[k].end(), o.slots[k].begin(), o.slots[k].end());
      }
    }
    EXPECT_TRUE(same_bits(values, shard.chunks[i].values)) << shard.chunks[i].key;
    ASSERT_EQ(shard.chunks[i].slots.size(), slots.size());
    for (size_t k = 0; k < slots.size(); ++k) {
      EXPECT_TRUE(same_bits(slots[k], shard.chunks[i].slots[k])) << shard.chunks[i].key;
    }
  }
  EXPECT_EQ(next_old, old.chunks.size());
  JobTrainingConfig config = config_for(OptimizerKind::kAdam);
  config.layout_hash = hash;
  EXPECT_TRUE(check_restorable(shard, config, 1, "f").ok());

  // find_ps_shard merges what it reads from a checkpoint directory.
  testing_util::TempDir dir("pstrain_ps_ckpt_merge");
  ASSERT_TRUE(checkpoint::write_shard(dir.path(), old).ok());
  auto found = find_ps_shard(dir.path(), 0, 1);
  ASSERT_TRUE(found.ok() && found->shard) << found.status().to_string();
  EXPECT_EQ(found->shard->layout_hash, hash);
  EXPECT_EQ(found->shard->chunks.size(), today.chunks.size());
}

TEST(PsCheckpoint, OnlyAShardItsOwnChunksDescribeIsMerged) {
  auto vars = Model::describe(ModelOptions{"mlp"});
  ASSERT_TRUE(vars.ok());
  std::mt19937 rng(6);
  checkpoint::ShardData shard = split_shard(*vars, rng, 4970);
  // Today's layout already: nothing to merge.
  checkpoint::ShardData whole = split_shard(*vars, rng, 0);
  EXPECT_FALSE(merge_split_chunks(whole));
  // A hash that the chunks do not give (another model): left for check_restorable to refuse.
  checkpoint::ShardData other = shard;
  other.layout_hash ^= 1;
  EXPECT_FALSE(merge_split_chunks(other));
  EXPECT_EQ(other.chunks.size(), shard.chunks.size());
  // A gap in a variable, or several parameter servers: not merged.
  checkpoint::ShardData gap = shard;
  gap.chunks.erase(gap.chunks.begin() + 1);
  EXPECT_FALSE(merge_split_chunks(gap));
  checkpoint::ShardData two = shard;
  two.num_ps = 2;
  EXPECT_FALSE(merge_split_chunks(two));
}

TEST(PsCheckpoint, TheSavedTrainingConfigReadsBack) {
  JobTrainingConfig c = config_for(OptimizerKind::kAdagrad);
  c.sync_replicas = true;
  c.num_workers = 3;
  c.replicas_to_aggregate = 2;
  c.optimizer.learning_rate = 0.0123f;
  c.optimizer.initial_accumulator = 0.25f;
  c.optimizer.schedule.kind = LrScheduleKind::kPiecewise;
  c.optimizer.schedule.num_boundaries = 1;
  c.optimizer.schedule.boundaries = {30};
  c.optimizer.schedule.values = {0.5f, 0.05f};
  auto back = training_config_from_json(training_config_json(c));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->to_wire().SerializeAsString(), c.to_wire().SerializeAsString());
  EXPECT_TRUE(back->optimizer.schedule == c.optimizer.schedule);
  // A checkpoint of an earlier build has no schedule: a constant rate.
  nlohmann::json older = training_config_json(c);
  older.erase("lr_schedule");
  auto constant = training_config_from_json(older);
  ASSERT_TRUE(constant.ok()) << constant.status().message();
  EXPECT_EQ(constant->optimizer.schedule.kind, LrScheduleKind::kConstant);
  nlohmann::json broken = training_config_json(c);
  broken.erase("train_steps");
  EXPECT_FALSE(training_config_from_json(broken).ok());
  broken = training_config_json(c);
  broken["learning_rate"] = -1;
  auto bad = training_config_from_json(broken);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("learning_rate"), std::string::npos);
}

}  // namespace
}  // namespace pstrain
