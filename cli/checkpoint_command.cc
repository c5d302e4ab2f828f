// `pstrain checkpoint list DIR [--json]`: what a checkpoint directory holds
// (docs/checkpoints.md). Exit codes: 0 listed (even when empty), 2 bad usage or DIR is not
// a readable directory.
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/commands.h"

namespace pstrain {
namespace {

std::string utc_time(double seconds) {
  if (seconds <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace

int run_checkpoint_command(const std::vector<std::string>& args, std::FILE* out) {
  CLI::App app{
      "Checkpoints in a --checkpoint_dir: `pstrain checkpoint list DIR` shows each "
      "checkpoint's step, time, shards present or missing, variables and bytes, and "
      "whether it is complete (what a job started on DIR would resume from).\n"
      "Exit codes: 0 listed, 2 bad usage or DIR cannot be read.",
      "pstrain checkpoint"};
  app.require_subcommand(1);
  CLI::App* list = app.add_subcommand("list", "List the checkpoints in DIR");
  std::string dir;
  bool json = false;
  list->add_option("dir", dir, "A checkpoint directory")->required();
  list->add_flag("--json", json, "Machine-readable output");
  if (std::optional<int> code = parse_command_words(app, args)) return *code;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::fprintf(stderr, "%s is not a directory: give a --checkpoint_dir\n", dir.c_str());
    return kExitUsage;
  }
  auto listing = checkpoint::list_checkpoints(dir);
  if (!listing.ok()) {
    std::fprintf(stderr, "%s\n", listing.status().message().c_str());
    return kExitUsage;
  }
  int64_t latest = -1;
  for (const auto& l : *listing) {
    if (l.complete) latest = l.step;
  }
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& l : *listing) {
      j.push_back({{"step", l.step},
                   {"time", l.time},
                   {"has_index", l.has_index},
                   {"shards_expected", l.shards_expected},
                   {"shards_present", l.shards_present},
                   {"variables", l.variables},
                   {"chunks", l.chunks},
                   {"bytes", l.bytes},
                   {"complete", l.complete},
                   {"latest", l.step == latest},
                   {"problem", l.problem}});
    }
    std::fprintf(out, "%s\n", nlohmann::json({{"dir", dir}, {"checkpoints", j}}).dump(2).c_str());
    return kExitOk;
  }
  if (listing->empty()) {
    std::fprintf(out, "no checkpoints in %s\n", dir.c_str());
    return kExitOk;
  }
  std::fprintf(out, "%-10s %-19s %-7s %-9s %-6s %-12s %s\n", "STEP", "TIME (UTC)", "SHARDS",
               "VARIABLES", "CHUNKS", "BYTES", "STATE");
  for (const auto& l : *listing) {
    const std::string shards =
        std::to_string(l.shards_present) + "/" + std::to_string(l.shards_expected);
    const std::string state = l.complete ? (l.step == latest ? "complete (latest)" : "complete")
                                         : "incomplete: " + l.problem;
    std::fprintf(out, "%-10lld %-19s %-7s %-9lld %-6lld %-12llu %s\n",
                 static_cast<long long>(l.step), utc_time(l.time).c_str(), shards.c_str(),
                 static_cast<long long>(l.variables), static_cast<long long>(l.chunks),
                 static_cast<unsigned long long>(l.bytes), state.c_str());
  }
  return kExitOk;
}

}  // namespace pstrain
