#include "export/trained_model.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "checkpoint/checkpoint.h"
#include "runtime/base/files.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;

constexpr const char* kIndexSuffix = ".index.json";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The index file that --checkpoint names (with --checkpoint_dir `dir`).
std::string index_path_of(const std::string& dir, const std::string& checkpoint) {
  std::string file = ends_with(checkpoint, kIndexSuffix) ? checkpoint : checkpoint + kIndexSuffix;
  std::error_code ec;
  if (!dir.empty() && fs::path(file).is_relative() && !fs::exists(file, ec)) {
    file = (fs::path(dir) / file).string();
  }
  return file;
}

}  // namespace

std::vector<float> TrainedModel::values(const std::string& name) const {
  for (const VariableSpec& v : variables) {
    if (v.name == name) {
      const auto begin = parameters.begin() + static_cast<std::ptrdiff_t>(v.offset);
      return {begin, begin + static_cast<std::ptrdiff_t>(v.numel())};
    }
  }
  return {};
}

Result<TrainedModel> load_trained_model(const std::string& dir, const std::string& checkpoint) {
  TrainedModel out;
  std::string index_path;
  std::string base_dir = dir;
  checkpoint::CheckpointIndex index;
  if (checkpoint.empty()) {
    std::error_code ec;
    if (dir.empty()) return invalid_argument("give --checkpoint_dir (or --checkpoint)");
    if (!fs::is_directory(dir, ec)) {
      return not_found("--checkpoint_dir " + dir + " is not a directory");
    }
    PSTRAIN_ASSIGN_OR_RETURN(checkpoint::ScanResult scan, checkpoint::find_latest_complete(dir));
    out.skipped = scan.skipped;
    if (!scan.latest) {
      std::string msg = "no complete checkpoint in " + dir;
      for (const std::string& why : scan.skipped) msg += "; skipped " + why;
      return not_found(msg + " (`pstrain checkpoint list " + dir + "` shows what is there)");
    }
    index = *scan.latest;
    index_path = (fs::path(dir) / checkpoint::index_file_name(index.step)).string();
  } else {
    index_path = index_path_of(dir, checkpoint);
    auto text = read_file(index_path);
    if (!text.ok()) {
      return not_found("--checkpoint " + checkpoint + ": cannot read its index " + index_path +
                       ": " + text.status().message());
    }
    PSTRAIN_ASSIGN_OR_RETURN(index, checkpoint::CheckpointIndex::parse(*text, index_path));
    base_dir = fs::path(index_path).parent_path().string();
    if (base_dir.empty()) base_dir = ".";
    PSTRAIN_RETURN_IF_ERROR(checkpoint::verify_checkpoint(base_dir, index));
  }
  out.step = index.step;
  out.checkpoint = index_path.substr(0, index_path.size() - std::string(kIndexSuffix).size());

  // The model: its name, and the MLP's hidden width from the size of hid_b.
  out.options.name = index.model;
  if (index.model == "mlp") {
    constexpr int64_t kMaxHidden = int64_t{1} << 24;
    int64_t hidden = 0;
    for (const checkpoint::IndexChunk& c : index.chunks) {
      if (c.variable != "hid_b") continue;
      if (c.elements <= 0 || c.elements > kMaxHidden) {
        hidden = -1;
        break;
      }
      hidden += c.elements;
    }
    if (hidden <= 0 || hidden > kMaxHidden) {
      return data_loss(index_path + ": an mlp checkpoint without a valid hid_b variable");
    }
    out.options.hidden_units = static_cast<int>(hidden);
  }
  auto described = Model::describe(out.options);
  if (!described.ok()) {
    return data_loss(index_path + ": model \"" + index.model +
                     "\": " + described.status().message());
  }
  out.variables = std::move(described).value();
  int64_t total = 0;
  for (const VariableSpec& v : out.variables) total += v.numel();
  out.parameters.assign(static_cast<size_t>(total), 0.0f);
  std::vector<uint8_t> covered(static_cast<size_t>(total), 0);
  std::map<std::string, const VariableSpec*> by_name;
  for (const VariableSpec& v : out.variables) by_name[v.name] = &v;

  // Every shard's chunks, placed by the index.
  std::map<int, std::map<std::string, std::vector<float>>> values_of_ps;
  for (const checkpoint::ShardFileInfo& s : index.shards) {
    const std::string path = (fs::path(base_dir) / s.file).string();
    PSTRAIN_ASSIGN_OR_RETURN(checkpoint::ShardData shard, checkpoint::read_shard(path));
    auto& values = values_of_ps[s.ps_index];
    for (checkpoint::ShardChunk& c : shard.chunks) values[c.key] = std::move(c.values);
  }
  for (const checkpoint::IndexChunk& c : index.chunks) {
    auto var = by_name.find(c.variable);
    if (var == by_name.end()) {
      return data_loss(index_path + ": chunk " + c.key + " belongs to variable \"" + c.variable +
                       "\", which the " + index.model + " model does not have");
    }
    const VariableSpec& v = *var->second;
    // Written so that no sum can overflow whatever the index says.
    if (c.elements < 0 || c.elements > v.numel() || c.flat_offset < v.offset ||
        c.flat_offset - v.offset > v.numel() - c.elements) {
      return data_loss(index_path + ": chunk " + c.key + " lies outside variable " + v.name);
    }
    auto ps = values_of_ps.find(c.ps);
    const std::vector<float>* vals = nullptr;
    if (ps != values_of_ps.end()) {
      auto it = ps->second.find(c.key);
      if (it != ps->second.end()) vals = &it->second;
    }
    if (vals == nullptr || static_cast<int64_t>(vals->size()) != c.elements) {
      return data_loss(index_path + ": chunk " + c.key + " is missing from the shard of PS " +
                       std::to_string(c.ps) + " or has another size");
    }
    const auto at = static_cast<size_t>(c.flat_offset);
    for (size_t i = 0; i < vals->size(); ++i) {
      if (covered[at + i]++ != 0) {
        return data_loss(index_path + ": chunk " + c.key + " overlaps another chunk");
      }
    }
    std::copy(vals->begin(), vals->end(), out.parameters.begin() + static_cast<std::ptrdiff_t>(at));
  }
  if (auto gap = std::find(covered.begin(), covered.end(), uint8_t{0}); gap != covered.end()) {
    return data_loss(index_path + ": no chunk holds element " +
                     std::to_string(gap - covered.begin()) + " of the model's parameters");
  }
  return out;
}

}  // namespace pstrain
