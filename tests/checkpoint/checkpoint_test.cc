#include "checkpoint/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "checkpoint/safetensors.h"
#include "runtime/base/files.h"

namespace pstrain::checkpoint {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = (fs::temp_directory_path() /
             ("pstrain_ckpt_test_" + std::to_string(::getpid()) + "_" + std::to_string(next_++)))
                .string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  static inline int next_ = 0;
  std::string path_;
};

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

ShardData make_shard(const std::string& optimizer, int64_t step, int ps_index, int num_ps,
                     uint32_t seed) {
  ShardData s;
  s.step = step;
  s.ps_index = ps_index;
  s.num_ps = num_ps;
  s.model = "mlp";
  s.layout_hash = 0xfedcba9876543210ULL;
  s.optimizer = optimizer;
  s.training_config = {{"optimizer", optimizer}, {"learning_rate", 0.01}};
  const size_t nslots = slot_names(optimizer).size();
  for (int c = 0; c < 3; ++c) {
    ShardChunk ch;
    ch.key = "var" + std::to_string(c) + "/0";
    ch.values = random_floats(17 + static_cast<size_t>(c) * 5, seed + static_cast<uint32_t>(c));
    for (size_t k = 0; k < nslots; ++k) {
      ch.slots.push_back(random_floats(ch.values.size(), seed + 100 + static_cast<uint32_t>(k)));
    }
    s.chunks.push_back(std::move(ch));
  }
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

TEST(Safetensors, RoundTripKeepsBitsAndMetadata) {
  std::vector<float> a = random_floats(10, 1);
  a[3] = -0.0f;
  a[4] = std::numeric_limits<float>::denorm_min();
  const int64_t step = 1234567890123;
  std::vector<int32_t> ints = {1, -2, 3};
  const std::vector<TensorRef> tensors = {f32_tensor("a", a),
                                          i64_scalar("step", step),
                                          {.name = "ints",
                                           .dtype = TensorDType::kI32,
                                           .shape = {3, 1},
                                           .bytes = std::as_bytes(std::span<const int32_t>(ints))}};
  const std::string bytes = encode_safetensors(tensors, {{"k", "v"}, {"n", "1"}});
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "the header is padded to 8 bytes as the Rust crate does";
  EXPECT_EQ(bytes[8], '{');
  auto f = decode_safetensors(bytes, "mem");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->metadata().at("k"), "v");
  EXPECT_EQ(f->tensors().size(), 3u);
  auto back = f->f32("a", 10);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(same_bits(*back, a));
  auto s = f->i64_scalar("step");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, step);
  const DecodedTensor* t = f->find("ints");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 1}));
  EXPECT_FALSE(f->f32("a", 11).ok());
  EXPECT_FALSE(f->f32("step", 1).ok());
  EXPECT_FALSE(f->f32("missing", 1).ok());
}

TEST(Safetensors, BadBytesGiveErrorsNamingTheFile) {
  std::vector<float> a = random_floats(8, 2);
  const std::vector<TensorRef> tensors = {f32_tensor("a", a)};
  const std::string good = encode_safetensors(tensors, {});
  struct Case {
    std::string name;
    std::string bytes;
  };
  std::vector<Case> cases;
  cases.push_back({"empty", ""});
  cases.push_back({"truncated data", good.substr(0, good.size() - 1)});
  cases.push_back({"truncated header", good.substr(0, 12)});
  std::string huge = good;
  huge[7] = '\x7f';
  cases.push_back({"huge header length", huge});
  std::string not_json = good;
  not_json[9] = '#';
  cases.push_back({"corrupt header", not_json});
  std::string extra = good + "xxxx";
  cases.push_back({"trailing bytes", extra});
  std::string bad_dtype = good;
  const size_t pos = bad_dtype.find("F32");
  bad_dtype.replace(pos, 3, "F16");
  cases.push_back({"unknown dtype", bad_dtype});
  for (const Case& c : cases) {
    auto f = decode_safetensors(c.bytes, "/some/file.safetensors");
    ASSERT_FALSE(f.ok()) << c.name;
    EXPECT_EQ(f.status().code(), StatusCode::kDataLoss) << c.name;
    EXPECT_NE(f.status().message().find("/some/file.safetensors"), std::string::npos)
        << c.name << ": " << f.status().message();
  }
}

TEST(Shard, EveryOptimizersSlotsRoundTripExactly) {
  for (const std::string opt : {"sgd", "momentum", "adam", "adagrad"}) {
    const ShardData s = make_shard(opt, 42, 1, 3, 7);
    auto back = decode_shard(encode_shard(s), "mem");
    ASSERT_TRUE(back.ok()) << opt << ": " << back.status().message();
    EXPECT_EQ(back->step, 42);
    EXPECT_EQ(back->ps_index, 1);
    EXPECT_EQ(back->num_ps, 3);
    EXPECT_EQ(back->model, "mlp");
    EXPECT_EQ(back->layout_hash, s.layout_hash);
    EXPECT_EQ(back->optimizer, opt);
    EXPECT_EQ(back->training_config, s.training_config);
    ASSERT_EQ(back->chunks.size(), s.chunks.size()) << opt;
    for (size_t i = 0; i < s.chunks.size(); ++i) {
      EXPECT_EQ(back->chunks[i].key, s.chunks[i].key);
      EXPECT_TRUE(same_bits(back->chunks[i].values, s.chunks[i].values)) << opt;
      ASSERT_EQ(back->chunks[i].slots.size(), slot_names(opt).size()) << opt;
      for (size_t k = 0; k < s.chunks[i].slots.size(); ++k) {
        EXPECT_TRUE(same_bits(back->chunks[i].slots[k], s.chunks[i].slots[k])) << opt;
      }
    }
  }
}

TEST(Names, FileNamesParseBack) {
  EXPECT_EQ(shard_file_name(200, 1, 3), "model.ckpt-200.ps-1-of-3.safetensors");
  EXPECT_EQ(index_file_name(200), "model.ckpt-200.index.json");
  auto sn = parse_shard_file_name("model.ckpt-200.ps-1-of-3.safetensors");
  ASSERT_TRUE(sn.has_value());
  EXPECT_EQ(sn->step, 200);
  EXPECT_EQ(sn->ps_index, 1);
  EXPECT_EQ(sn->num_ps, 3);
  EXPECT_EQ(parse_index_file_name("model.ckpt-77.index.json"), std::optional<int64_t>(77));
  EXPECT_FALSE(parse_index_file_name("model.ckpt-.index.json").has_value());
  EXPECT_FALSE(parse_index_file_name("model.ckpt-7.index.json.tmp.12").has_value());
  EXPECT_FALSE(parse_shard_file_name("model.ckpt-1.ps-3-of-3.safetensors").has_value());
  EXPECT_FALSE(parse_shard_file_name("model.ckpt-x.ps-0-of-1.safetensors").has_value());
}

TEST(Index, RoundTripAndBadInput) {
  CheckpointIndex x;
  x.step = 300;
  x.time = 1700000000.5;
  x.model = "cnn";
  x.layout_hash = 0x8000000000000001ULL;
  x.num_ps = 2;
  x.training_config = {{"optimizer", "adam"}, {"train_steps", 1000}};
  x.shards = {
      {.file = shard_file_name(300, 0, 2),
       .ps_index = 0,
       .step = 300,
       .bytes = 10,
       .crc32 = 0xffffffffu},
      {.file = shard_file_name(300, 1, 2), .ps_index = 1, .step = 299, .bytes = 11, .crc32 = 5}};
  x.chunks = {{.key = "w/0", .variable = "w", .ps = 1, .flat_offset = 0, .elements = 5}};
  auto back = CheckpointIndex::parse(x.to_json(), "idx");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->to_json(), x.to_json());
  EXPECT_EQ(back->layout_hash, x.layout_hash);
  EXPECT_EQ(back->shards[1].step, 299);
  EXPECT_EQ(back->shards[0].crc32, 0xffffffffu);
  for (const std::string bad : {"", "[]", "{}", "{\"format\": \"other\"}"}) {
    auto r = CheckpointIndex::parse(bad, "/d/model.ckpt-1.index.json");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("/d/model.ckpt-1.index.json"), std::string::npos);
  }
  std::string evil = x.to_json();
  evil.replace(evil.find("model.ckpt-300.ps-0"), 5, "../..");
  EXPECT_FALSE(CheckpointIndex::parse(evil, "idx").ok()) << "a path in a shard name is refused";
}

TEST(StateFile, RoundTripAndTensorFlowExtras) {
  CheckpointState s;
  s.model_checkpoint_path = "model.ckpt-300";
  s.all_model_checkpoint_paths = {"model.ckpt-200", "model.ckpt-300"};
  EXPECT_EQ(s.encode(),
            "model_checkpoint_path: \"model.ckpt-300\"\n"
            "all_model_checkpoint_paths: \"model.ckpt-200\"\n"
            "all_model_checkpoint_paths: \"model.ckpt-300\"\n");
  auto back = CheckpointState::parse(s.encode() + "last_preserved_timestamp: 1.5\n", "state");
  ASSERT_FALSE(back.ok()) << "a line without quotes is refused";
  back = CheckpointState::parse(s.encode() + "all_model_checkpoint_timestamps: \"1.5\"\n", "st");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->model_checkpoint_path, "model.ckpt-300");
  EXPECT_EQ(back->all_model_checkpoint_paths, s.all_model_checkpoint_paths);
  EXPECT_FALSE(CheckpointState::parse("", "st").ok());
}

// Writes a complete 2-PS checkpoint at `step` into `dir`.
CheckpointIndex write_checkpoint(const std::string& dir, int64_t step, int keep_max,
                                 std::vector<std::string>* removed = nullptr) {
  CheckpointIndex x;
  x.step = step;
  x.time = 1.0 * static_cast<double>(step);
  x.model = "mlp";
  x.layout_hash = 0xfedcba9876543210ULL;
  x.num_ps = 2;
  x.training_config = {{"optimizer", "adam"}};
  for (int i = 0; i < 2; ++i) {
    auto info = write_shard(dir, make_shard("adam", step, i, 2, static_cast<uint32_t>(step + i)));
    EXPECT_TRUE(info.ok()) << info.status().message();
    x.shards.push_back(*info);
    x.chunks.push_back(
        {.key = "var0/0", .variable = "var0", .ps = i, .flat_offset = 0, .elements = 17});
  }
  EXPECT_TRUE(finalize_checkpoint(dir, x, keep_max, removed).ok());
  return x;
}

TEST(Directory, LatestCompleteAndStateFile) {
  TempDir d;
  auto empty = find_latest_complete(d.path());
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->latest.has_value());
  auto missing_dir = find_latest_complete(d.file("nope"));
  ASSERT_TRUE(missing_dir.ok());
  EXPECT_FALSE(missing_dir->latest.has_value());
  write_checkpoint(d.path(), 100, 5);
  write_checkpoint(d.path(), 200, 5);
  auto r = find_latest_complete(d.path());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->latest.has_value());
  EXPECT_EQ(r->latest->step, 200);
  EXPECT_TRUE(r->skipped.empty());
  auto state_text = read_file(d.file("checkpoint"));
  ASSERT_TRUE(state_text.ok());
  auto state = CheckpointState::parse(*state_text, "checkpoint");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->model_checkpoint_path, "model.ckpt-200");
  EXPECT_EQ(state->all_model_checkpoint_paths,
            (std::vector<std::string>{"model.ckpt-100", "model.ckpt-200"}));
  auto shard = read_shard(d.file(shard_file_name(200, 1, 2)));
  ASSERT_TRUE(shard.ok()) << shard.status().message();
  EXPECT_TRUE(
      same_bits(shard->chunks[0].values, make_shard("adam", 200, 1, 2, 201).chunks[0].values));
}

// Each way a newer checkpoint can be torn: it is skipped with the fault named and the older
// complete one is found.
TEST(Directory, TornCheckpointsAreNeverLoaded) {
  struct Tear {
    std::string name;
    std::function<void(const std::string& shard_path, const std::string& index_path)> tear;
    std::string expect;  // in the reason
  };
  const std::vector<Tear> tears = {
      {"missing shard", [](const std::string& p, const std::string&) { fs::remove(p); }, "missing"},
      {"truncated shard",
       [](const std::string& p, const std::string&) { fs::resize_file(p, fs::file_size(p) - 3); },
       "bytes"},
      {"wrong checksum",
       [](const std::string& p, const std::string&) {
         std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
         f.seekp(-1, std::ios::end);
         f.put('\x55');
       },
       "CRC-32"},
      {"corrupt index",
       [](const std::string&, const std::string& i) {
         ASSERT_TRUE(write_file_atomically(i, "{\"format\": ").ok());
       },
       "JSON"},
      {"corrupt shard header (size and checksum recorded for the bad bytes)",
       [](const std::string& p, const std::string& i) {
         auto bytes = read_file(p);
         ASSERT_TRUE(bytes.ok());
         std::string b = *bytes;
         b[8] = '[';
         ASSERT_TRUE(write_file_atomically(p, b).ok());
         auto idx_text = read_file(i);
         ASSERT_TRUE(idx_text.ok());
         auto idx = CheckpointIndex::parse(*idx_text, i);
         ASSERT_TRUE(idx.ok());
         idx->shards[1].crc32 = crc32_of(b);
         ASSERT_TRUE(write_file_atomically(i, idx->to_json()).ok());
       },
       "safetensors"},
  };
  for (const Tear& t : tears) {
    TempDir d;
    write_checkpoint(d.path(), 100, 5);
    write_checkpoint(d.path(), 200, 5);
    t.tear(d.file(shard_file_name(200, 1, 2)), d.file(index_file_name(200)));
    auto r = find_latest_complete(d.path());
    ASSERT_TRUE(r.ok()) << t.name;
    ASSERT_TRUE(r->latest.has_value()) << t.name;
    EXPECT_EQ(r->latest->step, 100) << t.name;
    ASSERT_EQ(r->skipped.size(), 1u) << t.name;
    EXPECT_NE(r->skipped[0].find("model.ckpt-200"), std::string::npos) << r->skipped[0];
    EXPECT_NE(r->skipped[0].find(t.expect), std::string::npos) << t.name << ": " << r->skipped[0];
    auto list = list_checkpoints(d.path());
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 2u);
    EXPECT_TRUE((*list)[0].complete);
    EXPECT_FALSE((*list)[1].complete) << t.name;
    EXPECT_FALSE((*list)[1].problem.empty());
  }
}

TEST(Directory, RetentionKeepsTheNewestAndDeletesOnlyAfterANewerIsComplete) {
  TempDir d;
  for (int64_t step = 10; step <= 30; step += 10) write_checkpoint(d.path(), step, 2);
  EXPECT_FALSE(fs::exists(d.file(index_file_name(10))));
  EXPECT_FALSE(fs::exists(d.file(shard_file_name(10, 0, 2))));
  EXPECT_FALSE(fs::exists(d.file(shard_file_name(10, 1, 2))));
  EXPECT_TRUE(fs::exists(d.file(index_file_name(20))));
  EXPECT_TRUE(fs::exists(d.file(index_file_name(30))));
  // Shards of a newer step without an index (a save in progress) are not touched; stray shards
  // older than every kept checkpoint are.
  ASSERT_TRUE(write_shard(d.path(), make_shard("adam", 40, 0, 2, 1)).ok());
  ASSERT_TRUE(write_shard(d.path(), make_shard("adam", 5, 0, 2, 1)).ok());
  std::vector<std::string> removed;
  write_checkpoint(d.path(), 35, 2, &removed);
  EXPECT_TRUE(fs::exists(d.file(shard_file_name(40, 0, 2))));
  EXPECT_FALSE(fs::exists(d.file(shard_file_name(5, 0, 2))));
  EXPECT_FALSE(fs::exists(d.file(index_file_name(20))));
  EXPECT_TRUE(fs::exists(d.file(index_file_name(35))));
  EXPECT_EQ(removed.size(), 4u);  // step 20's index and two shards, the stray step-5 shard
  auto list = list_checkpoints(d.path());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);  // 30, 35 complete; 40 a lone shard
  EXPECT_EQ((*list)[2].step, 40);
  EXPECT_FALSE((*list)[2].has_index);
  EXPECT_EQ((*list)[2].shards_present, 1);
  EXPECT_EQ((*list)[2].shards_expected, 2);
  EXPECT_EQ((*list)[1].variables, 1);
  EXPECT_GT((*list)[1].bytes, 0u);
  // keep_max 0 keeps everything.
  TempDir all;
  for (int64_t step = 1; step <= 7; ++step) write_checkpoint(all.path(), step, 0);
  auto every = list_checkpoints(all.path());
  ASSERT_TRUE(every.ok());
  EXPECT_EQ(every->size(), 7u);
}

TEST(Directory, RetentionKeepsAShardThatAKeptIndexShares) {
  TempDir d;
  // A PS already past the requested step 50 saved step 51; index 50 and index 51 list that
  // same shard. Keeping one checkpoint deletes index 50 but not the shard index 51 needs.
  auto info = write_shard(d.path(), make_shard("sgd", 51, 0, 1, 3));
  ASSERT_TRUE(info.ok());
  CheckpointIndex x;
  x.model = "mlp";
  x.num_ps = 1;
  x.training_config = nlohmann::json::object();
  x.shards = {*info};
  x.step = 50;
  ASSERT_TRUE(finalize_checkpoint(d.path(), x, 1).ok());
  x.step = 51;
  std::vector<std::string> removed;
  ASSERT_TRUE(finalize_checkpoint(d.path(), x, 1, &removed).ok());
  EXPECT_EQ(removed, std::vector<std::string>{index_file_name(50)});
  auto r = find_latest_complete(d.path());
  ASSERT_TRUE(r.ok() && r->latest.has_value());
  EXPECT_EQ(r->latest->step, 51);
}

}  // namespace
}  // namespace pstrain::checkpoint
