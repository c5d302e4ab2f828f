// `pstrain checkpoint list DIR`: one line per checkpoint step with its shards, variables,
// bytes and state; a torn checkpoint says why; --json; a missing DIR is a usage error.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

std::string run(const std::vector<std::string>& args, int* code) {
  std::FILE* f = std::tmpfile();
  *code = run_checkpoint_command(args, f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

void write_checkpoint(const std::string& dir, int64_t step) {
  checkpoint::ShardData s;
  s.step = step;
  s.model = "mlp";
  s.optimizer = "sgd";
  s.training_config = nlohmann::json::object();
  s.chunks.push_back({"w/0", {1.f, 2.f, 3.f}, {}});
  auto info = checkpoint::write_shard(dir, s);
  ASSERT_TRUE(info.ok());
  checkpoint::CheckpointIndex x;
  x.step = step;
  x.time = 1700000000;
  x.model = "mlp";
  x.training_config = nlohmann::json::object();
  x.shards = {*info};
  x.chunks = {{.key = "w/0", .variable = "w", .ps = 0, .flat_offset = 0, .elements = 3}};
  ASSERT_TRUE(checkpoint::finalize_checkpoint(dir, x, 5).ok());
}

TEST(CheckpointCommand, ListsEachCheckpointAndWhyATornOneIsIncomplete) {
  testing_util::TempDir dir("pstrain_ckpt_list");
  int code = -1;
  EXPECT_NE(run({"list", dir.path()}, &code).find("no checkpoints"), std::string::npos);
  EXPECT_EQ(code, kExitOk);
  write_checkpoint(dir.path(), 10);
  write_checkpoint(dir.path(), 20);
  write_checkpoint(dir.path(), 30);
  std::filesystem::remove(dir / checkpoint::shard_file_name(30, 0, 1));
  const std::string out = run({"list", dir.path()}, &code);
  EXPECT_EQ(code, kExitOk);
  EXPECT_NE(out.find("2023-11-14 22:13:20"), std::string::npos) << out;
  EXPECT_NE(out.find("complete (latest)"), std::string::npos) << out;
  EXPECT_NE(out.find("0/1"), std::string::npos) << out;
  EXPECT_NE(out.find("incomplete: "), std::string::npos) << out;
  EXPECT_NE(out.find("missing"), std::string::npos) << out;
  const std::string js = run({"list", dir.path(), "--json"}, &code);
  EXPECT_EQ(code, kExitOk);
  const nlohmann::json j = nlohmann::json::parse(js, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << js;
  ASSERT_EQ(j["checkpoints"].size(), 3u);
  EXPECT_EQ(j["checkpoints"][1]["step"], 20);
  EXPECT_EQ(j["checkpoints"][1]["latest"], true);
  EXPECT_EQ(j["checkpoints"][1]["variables"], 1);
  EXPECT_EQ(j["checkpoints"][2]["complete"], false);
  run({"list", dir / "missing"}, &code);
  EXPECT_EQ(code, kExitUsage);
  run({"list"}, &code);
  EXPECT_EQ(code, kExitUsage);
}

}  // namespace
}  // namespace pstrain
