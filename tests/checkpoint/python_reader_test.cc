// Python's `safetensors` package (from PyPI, in the venv scripts/test-venv.sh makes) reads
// every shard pstrain writes, and its tensors equal, bit for bit, what was written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "tests/checkpoint/python_reader.h"

namespace pstrain::checkpoint {
namespace {
namespace fs = std::filesystem;

TEST(PythonSafetensors, ReadsEveryOptimizersShardBitForBit) {
  const std::string python = test_python();
  ASSERT_TRUE(fs::exists(python)) << python << " is missing: run scripts/test-venv.sh "
                                  << "(PSTRAIN_BUILD_DIR=<build dir>) to create the test venv";
  const fs::path dir = fs::temp_directory_path() / ("pstrain_py_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<std::string> paths;
  std::vector<ShardData> shards;
  int i = 0;
  for (const std::string opt : {"sgd", "momentum", "adam", "adagrad"}) {
    ShardData s;
    s.step = 1000 + i;
    s.ps_index = i;
    s.num_ps = 4;
    s.model = "mlp";
    s.layout_hash = 0x0123456789abcdefULL;
    s.optimizer = opt;
    s.training_config = {{"optimizer", opt}};
    for (int c = 0; c < 2; ++c) {
      ShardChunk ch;
      ch.key = "w" + std::to_string(c) + "/0";
      ch.values.resize(33 + static_cast<size_t>(c));
      for (float& v : ch.values) v = normal(rng);
      ch.values[0] = -0.0f;
      ch.values[1] = std::numeric_limits<float>::denorm_min();
      for (size_t k = 0; k < slot_names(opt).size(); ++k) {
        ch.slots.emplace_back(ch.values.size());
        for (float& v : ch.slots.back()) v = normal(rng);
      }
      s.chunks.push_back(std::move(ch));
    }
    auto info = write_shard(dir.string(), s);
    ASSERT_TRUE(info.ok()) << info.status().message();
    paths.push_back((dir / info->file).string());
    shards.push_back(std::move(s));
    ++i;
  }
  auto read = read_with_python(paths);
  ASSERT_TRUE(read.ok()) << read.status().message();
  for (size_t f = 0; f < paths.size(); ++f) {
    const nlohmann::json& j = (*read)[paths[f]];
    const ShardData& s = shards[f];
    EXPECT_EQ(j["metadata"]["global_step"], std::to_string(s.step));
    EXPECT_EQ(j["metadata"]["optimizer"], s.optimizer);
    EXPECT_EQ(j["tensors"]["global_step"]["dtype"], "int64");
    EXPECT_EQ(j["tensors"]["global_step"]["hex"], hex_of(&s.step, sizeof s.step));
    const std::vector<std::string> slots = slot_names(s.optimizer);
    EXPECT_EQ(j["tensors"].size(), 1 + s.chunks.size() * (1 + slots.size())) << paths[f];
    for (const ShardChunk& c : s.chunks) {
      const nlohmann::json& t = j["tensors"][c.key];
      EXPECT_EQ(t["dtype"], "float32");
      EXPECT_EQ(t["shape"], nlohmann::json::array({c.values.size()}));
      EXPECT_EQ(t["hex"], hex_of(c.values.data(), c.values.size() * 4)) << c.key;
      for (size_t k = 0; k < slots.size(); ++k) {
        EXPECT_EQ(j["tensors"][c.key + "/" + slots[k]]["hex"],
                  hex_of(c.slots[k].data(), c.slots[k].size() * 4))
            << c.key << "/" << slots[k];
      }
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pstrain::checkpoint
