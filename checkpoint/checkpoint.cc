#include "checkpoint/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "runtime/base/files.h"

namespace pstrain::checkpoint {
namespace fs = std::filesystem;
namespace {

bool parse_int(const std::string& s, int64_t* v) {
  if (s.empty() || s.size() > 18) return false;
  int64_t r = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    r = r * 10 + (c - '0');
  }
  *v = r;
  return true;
}

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016" PRIx64, v);
  return buf;
}

bool parse_hex64(const std::string& s, uint64_t* v) {
  if (s.size() < 3 || s.size() > 18 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return false;
  uint64_t r = 0;
  for (size_t i = 2; i < s.size(); ++i) {
    const char c = s[i];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return false;
    r = r * 16 + static_cast<uint64_t>(d);
  }
  *v = r;
  return true;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += sep;
    s += v[i];
  }
  return s;
}

std::string path_in(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// Reads a JSON field, naming it in the error.
template <typename T>
Status get_field(const nlohmann::json& j, const char* name, T* out, const std::string& what) {
  const auto it = j.find(name);
  if (it == j.end()) return data_loss(what + ": has no \"" + name + "\"");
  try {
    *out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    return data_loss(what + ": \"" + name + "\" has the wrong type");
  }
  return {};
}

}  // namespace

std::string checkpoint_prefix(int64_t step) { return "model.ckpt-" + std::to_string(step); }

std::string shard_file_name(int64_t step, int ps_index, int num_ps) {
  return checkpoint_prefix(step) + ".ps-" + std::to_string(ps_index) + "-of-" +
         std::to_string(num_ps) + ".safetensors";
}

std::string index_file_name(int64_t step) { return checkpoint_prefix(step) + ".index.json"; }

std::optional<int64_t> parse_index_file_name(const std::string& name) {
  const std::string pre = "model.ckpt-", post = ".index.json";
  if (name.size() <= pre.size() + post.size() || !name.starts_with(pre) || !name.ends_with(post)) {
    return std::nullopt;
  }
  int64_t step = 0;
  if (!parse_int(name.substr(pre.size(), name.size() - pre.size() - post.size()), &step)) {
    return std::nullopt;
  }
  return step;
}

std::optional<ShardName> parse_shard_file_name(const std::string& name) {
  const std::string pre = "model.ckpt-", post = ".safetensors";
  if (!name.starts_with(pre) || !name.ends_with(post)) return std::nullopt;
  const std::string mid = name.substr(pre.size(), name.size() - pre.size() - post.size());
  const size_t ps = mid.find(".ps-");
  const size_t of = mid.rfind("-of-");
  if (ps == std::string::npos || of == std::string::npos || of < ps + 4) return std::nullopt;
  int64_t step = 0, i = 0, n = 0;
  if (!parse_int(mid.substr(0, ps), &step) || !parse_int(mid.substr(ps + 4, of - ps - 4), &i) ||
      !parse_int(mid.substr(of + 4), &n) || n < 1 || i >= n || n > 1000000) {
    return std::nullopt;
  }
  return ShardName{step, static_cast<int>(i), static_cast<int>(n)};
}

std::vector<std::string> slot_names(const std::string& optimizer) {
  if (optimizer == "sgd") return {};
  if (optimizer == "momentum") return {"Momentum"};
  if (optimizer == "adam") return {"Adam", "Adam_1"};
  if (optimizer == "adagrad") return {"Adagrad"};
  return {};
}

uint32_t crc32_of(std::string_view bytes) {
  uLong c = ::crc32(0L, Z_NULL, 0);
  const auto* p = reinterpret_cast<const Bytef*>(bytes.data());
  size_t left = bytes.size();
  while (left > 0) {
    const uInt n = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
    c = ::crc32(c, p, n);
    p += n;
    left -= n;
  }
  return static_cast<uint32_t>(c);
}

// --- shards --------------------------------------------------------------------------------

std::string encode_shard(const ShardData& s) {
  const std::vector<std::string> slots = slot_names(s.optimizer);
  std::vector<TensorRef> tensors;
  tensors.push_back(i64_scalar("global_step", s.step));
  for (const ShardChunk& c : s.chunks) {
    PSTRAIN_CHECK(c.slots.size() == slots.size(), "a chunk's slots do not match the optimizer");
    tensors.push_back(f32_tensor(c.key, c.values));
    for (size_t k = 0; k < slots.size(); ++k) {
      PSTRAIN_CHECK(c.slots[k].size() == c.values.size(), "a slot's size differs from its chunk");
      tensors.push_back(f32_tensor(c.key + "/" + slots[k], c.slots[k]));
    }
  }
  std::vector<std::string> keys;
  for (const ShardChunk& c : s.chunks) keys.push_back(c.key);
  const Metadata meta = {{"format", kFormat},
                         {"global_step", std::to_string(s.step)},
                         {"ps_index", std::to_string(s.ps_index)},
                         {"num_ps", std::to_string(s.num_ps)},
                         {"model", s.model},
                         {"layout_hash", hex64(s.layout_hash)},
                         {"optimizer", s.optimizer},
                         {"slots", join(slots, ",")},
                         {"chunks", join(keys, ",")},
                         {"training_config", s.training_config.dump()}};
  return encode_safetensors(tensors, meta);
}

Result<ShardFileInfo> write_shard(const std::string& dir, const ShardData& shard) {
  const std::string name = shard_file_name(shard.step, shard.ps_index, shard.num_ps);
  const std::string bytes = encode_shard(shard);
  PSTRAIN_RETURN_IF_ERROR(write_file_atomically(path_in(dir, name), bytes));
  return ShardFileInfo{.file = name,
                       .ps_index = shard.ps_index,
                       .step = shard.step,
                       .bytes = bytes.size(),
                       .crc32 = crc32_of(bytes)};
}

Result<ShardData> decode_shard(std::string bytes, const std::string& what) {
  PSTRAIN_ASSIGN_OR_RETURN(SafetensorsFile f, decode_safetensors(std::move(bytes), what));
  const Metadata& m = f.metadata();
  const auto meta = [&](const char* k) -> Result<std::string> {
    const auto it = m.find(k);
    if (it == m.end()) return data_loss(what + ": __metadata__ has no \"" + k + "\"");
    return it->second;
  };
  PSTRAIN_ASSIGN_OR_RETURN(std::string format, meta("format"));
  if (format != kFormat) {
    return data_loss(what + ": format is \"" + format + "\", this pstrain reads \"" + kFormat +
                     "\"");
  }
  ShardData s;
  PSTRAIN_ASSIGN_OR_RETURN(std::string step, meta("global_step"));
  PSTRAIN_ASSIGN_OR_RETURN(std::string ps_index, meta("ps_index"));
  PSTRAIN_ASSIGN_OR_RETURN(std::string num_ps, meta("num_ps"));
  PSTRAIN_ASSIGN_OR_RETURN(s.model, meta("model"));
  PSTRAIN_ASSIGN_OR_RETURN(std::string hash, meta("layout_hash"));
  PSTRAIN_ASSIGN_OR_RETURN(s.optimizer, meta("optimizer"));
  PSTRAIN_ASSIGN_OR_RETURN(std::string config, meta("training_config"));
  int64_t v_step = 0, v_index = 0, v_num = 0;
  if (!parse_int(step, &v_step) || !parse_int(ps_index, &v_index) || !parse_int(num_ps, &v_num) ||
      v_num < 1 || v_index >= v_num || v_num > 1000000) {
    return data_loss(what + ": __metadata__ global_step, ps_index or num_ps is not valid");
  }
  if (!parse_hex64(hash, &s.layout_hash)) {
    return data_loss(what + ": __metadata__ layout_hash \"" + hash + "\" is not 0x<hex>");
  }
  s.step = v_step;
  s.ps_index = static_cast<int>(v_index);
  s.num_ps = static_cast<int>(v_num);
  s.training_config = nlohmann::json::parse(config, nullptr, false);
  if (s.training_config.is_discarded()) {
    return data_loss(what + ": __metadata__ training_config is not JSON");
  }
  PSTRAIN_ASSIGN_OR_RETURN(int64_t step_tensor, f.i64_scalar("global_step"));
  if (step_tensor != s.step) {
    return data_loss(what + ": tensor global_step " + std::to_string(step_tensor) +
                     " differs from __metadata__ global_step " + step);
  }
  const std::vector<std::string> slots = slot_names(s.optimizer);
  if (slots.empty() && s.optimizer != "sgd") {
    return data_loss(what + ": unknown optimizer \"" + s.optimizer + "\"");
  }
  std::set<std::string> names;
  for (const DecodedTensor& t : f.tensors()) names.insert(t.name);
  size_t expected_tensors = 1;
  for (const DecodedTensor& t : f.tensors()) {
    if (t.name == "global_step") continue;
    bool is_slot = false;
    for (const std::string& sl : slots) {
      const std::string suffix = "/" + sl;
      if (t.name.size() > suffix.size() && t.name.ends_with(suffix) &&
          names.count(t.name.substr(0, t.name.size() - suffix.size())) != 0) {
        is_slot = true;
      }
    }
    if (is_slot) continue;
    if (t.shape.size() != 1) return data_loss(what + ": tensor '" + t.name + "' is not 1-D");
    ShardChunk c;
    c.key = t.name;
    PSTRAIN_ASSIGN_OR_RETURN(c.values, f.f32(t.name, t.elements()));
    for (const std::string& sl : slots) {
      PSTRAIN_ASSIGN_OR_RETURN(std::vector<float> slot, f.f32(t.name + "/" + sl, t.elements()));
      c.slots.push_back(std::move(slot));
    }
    expected_tensors += 1 + slots.size();
    s.chunks.push_back(std::move(c));
  }
  if (expected_tensors != f.tensors().size()) {
    return data_loss(what + ": has tensors that are neither a chunk nor one of its " + s.optimizer +
                     " slots");
  }
  return s;
}

Result<ShardData> read_shard(const std::string& path) {
  PSTRAIN_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  return decode_shard(std::move(bytes), path);
}

// --- index ---------------------------------------------------------------------------------

std::string CheckpointIndex::to_json() const {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["step"] = step;
  j["time"] = time;
  j["model"] = model;
  j["layout_hash"] = hex64(layout_hash);
  j["num_ps"] = num_ps;
  j["training_config"] = training_config;
  nlohmann::ordered_json sh = nlohmann::ordered_json::array();
  for (const ShardFileInfo& s : shards) {
    sh.push_back({{"file", s.file},
                  {"ps_index", s.ps_index},
                  {"step", s.step},
                  {"bytes", s.bytes},
                  {"crc32", s.crc32}});
  }
  j["shards"] = std::move(sh);
  nlohmann::ordered_json ch = nlohmann::ordered_json::array();
  for (const IndexChunk& c : chunks) {
    ch.push_back({{"key", c.key},
                  {"variable", c.variable},
                  {"ps", c.ps},
                  {"flat_offset", c.flat_offset},
                  {"elements", c.elements}});
  }
  j["chunks"] = std::move(ch);
  return j.dump(2) + "\n";
}

Result<CheckpointIndex> CheckpointIndex::parse(const std::string& text, const std::string& what) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return data_loss(what + ": is not a JSON object");
  CheckpointIndex x;
  std::string format, hash;
  PSTRAIN_RETURN_IF_ERROR(get_field(j, "format", &format, what));
  if (format != kFormat) {
    return data_loss(what + ": format is \"" + format + "\", this pstrain reads \"" + kFormat +
                     "\"");
  }
  PSTRAIN_RETURN_IF_ERROR(get_field(j, "step", &x.step, what));
  PSTRAIN_RETURN_IF_ERROR(get_field(j, "time", &x.time, what));
  PSTRAIN_RETURN_IF_ERROR(get_field(j, "model", &x.model, what));
  PSTRAIN_RETURN_IF_ERROR(get_field(j, "layout_hash", &hash, what));
  if (!parse_hex64(hash, &x.layout_hash)) {
    return data_loss(what + ": layout_hash \"" + hash + "\" is not 0x<hex>");
  }
  PSTRAIN_RETURN_IF_ERROR(get_field(j, "num_ps", &x.num_ps, what));
  if (x.num_ps < 1) return data_loss(what + ": num_ps must be at least 1");
  const auto tc = j.find("training_config");
  if (tc == j.end() || !tc->is_object()) return data_loss(what + ": has no training_config");
  x.training_config = *tc;
  const auto sh = j.find("shards");
  if (sh == j.end() || !sh->is_array()) return data_loss(what + ": has no shards array");
  for (const auto& e : *sh) {
    if (!e.is_object()) return data_loss(what + ": a shard entry is not an object");
    ShardFileInfo s;
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "file", &s.file, what));
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "ps_index", &s.ps_index, what));
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "step", &s.step, what));
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "bytes", &s.bytes, what));
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "crc32", &s.crc32, what));
    if (s.file.empty() || s.file.find('/') != std::string::npos || s.file == "..") {
      return data_loss(what + ": shard file \"" + s.file + "\" is not a plain file name");
    }
    x.shards.push_back(std::move(s));
  }
  if (static_cast<int>(x.shards.size()) != x.num_ps) {
    return data_loss(what + ": lists " + std::to_string(x.shards.size()) + " shards for " +
                     std::to_string(x.num_ps) + " parameter servers");
  }
  const auto ch = j.find("chunks");
  if (ch == j.end() || !ch->is_array()) return data_loss(what + ": has no chunks array");
  for (const auto& e : *ch) {
    if (!e.is_object()) return data_loss(what + ": a chunk entry is not an object");
    IndexChunk c;
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "key", &c.key, what));
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "variable", &c.variable, what));
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "ps", &c.ps, what));
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "flat_offset", &c.flat_offset, what));
    PSTRAIN_RETURN_IF_ERROR(get_field(e, "elements", &c.elements, what));
    x.chunks.push_back(std::move(c));
  }
  return x;
}

// --- state file ----------------------------------------------------------------------------

std::string CheckpointState::encode() const {
  std::string s = "model_checkpoint_path: \"" + model_checkpoint_path + "\"\n";
  for (const std::string& p : all_model_checkpoint_paths) {
    s += "all_model_checkpoint_paths: \"" + p + "\"\n";
  }
  return s;
}

Result<CheckpointState> CheckpointState::parse(const std::string& text, const std::string& what) {
  CheckpointState st;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const size_t colon = line.find(':');
    const size_t q1 = line.find('"');
    const size_t q2 = line.rfind('"');
    if (colon == std::string::npos || q1 == std::string::npos || q2 <= q1) {
      return data_loss(what + ": line " + std::to_string(n) + " is not `name: \"value\"`");
    }
    std::string key = line.substr(0, colon);
    key.erase(0, key.find_first_not_of(" \t"));
    key.erase(key.find_last_not_of(" \t") + 1);
    const std::string value = line.substr(q1 + 1, q2 - q1 - 1);
    if (key == "model_checkpoint_path") {
      st.model_checkpoint_path = value;
    } else if (key == "all_model_checkpoint_paths") {
      st.all_model_checkpoint_paths.push_back(value);
    }  // other fields (timestamps) are accepted and ignored, as TensorFlow adds them
  }
  if (st.model_checkpoint_path.empty()) return data_loss(what + ": has no model_checkpoint_path");
  return st;
}

// --- directory -----------------------------------------------------------------------------

namespace {

struct DirEntries {
  std::map<int64_t, std::string> indexes;              // step -> file name
  std::map<int64_t, std::vector<std::string>> shards;  // step -> file names
  std::map<std::string, uint64_t> sizes;
};

Result<DirEntries> scan_dir(const std::string& dir) {
  DirEntries d;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return d;
  fs::directory_iterator it(dir, ec);
  if (ec) return unavailable("cannot read checkpoint directory " + dir + ": " + ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return unavailable("cannot read checkpoint directory " + dir + ": " + ec.message());
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    if (auto step = parse_index_file_name(name)) {
      d.indexes[*step] = name;
    } else if (auto sn = parse_shard_file_name(name)) {
      d.shards[sn->step].push_back(name);
    } else {
      continue;
    }
    d.sizes[name] = it->file_size(ec);
  }
  return d;
}

}  // namespace

Status verify_checkpoint(const std::string& dir, const CheckpointIndex& index) {
  for (const ShardFileInfo& s : index.shards) {
    const std::string path = path_in(dir, s.file);
    std::error_code ec;
    if (!fs::exists(path, ec))
      return not_found(path + ": shard " + std::to_string(s.ps_index) + " is missing");
    auto bytes = read_file(path);
    if (!bytes.ok()) return bytes.status();
    if (bytes->size() != s.bytes) {
      return data_loss(path + ": has " + std::to_string(bytes->size()) + " bytes, the index says " +
                       std::to_string(s.bytes) + " (truncated or rewritten)");
    }
    const uint32_t crc = crc32_of(*bytes);
    if (crc != s.crc32) {
      return data_loss(path + ": CRC-32 " + std::to_string(crc) + " differs from the index's " +
                       std::to_string(s.crc32) + " (corrupt)");
    }
    auto shard = decode_shard(std::move(bytes).value(), path);
    if (!shard.ok()) return shard.status();
    if (shard->ps_index != s.ps_index || shard->num_ps != index.num_ps) {
      return data_loss(path + ": holds shard " + std::to_string(shard->ps_index) + " of " +
                       std::to_string(shard->num_ps) + ", the index expects " +
                       std::to_string(s.ps_index) + " of " + std::to_string(index.num_ps));
    }
  }
  return {};
}

Result<ScanResult> find_latest_complete(const std::string& dir) {
  PSTRAIN_ASSIGN_OR_RETURN(DirEntries d, scan_dir(dir));
  ScanResult r;
  for (auto it = d.indexes.rbegin(); it != d.indexes.rend(); ++it) {
    const std::string path = path_in(dir, it->second);
    const std::string label = checkpoint_prefix(it->first);
    auto text = read_file(path);
    if (!text.ok()) {
      r.skipped.push_back(label + ": " + text.status().message());
      continue;
    }
    auto index = CheckpointIndex::parse(*text, path);
    if (!index.ok()) {
      r.skipped.push_back(label + ": " + index.status().message());
      continue;
    }
    if (index->step != it->first) {
      r.skipped.push_back(label + ": " + path + " says step " + std::to_string(index->step));
      continue;
    }
    Status st = verify_checkpoint(dir, *index);
    if (!st.ok()) {
      r.skipped.push_back(label + ": " + st.message());
      continue;
    }
    r.latest = std::move(index).value();
    break;
  }
  return r;
}

Status finalize_checkpoint(const std::string& dir, CheckpointIndex index, int keep_max,
                           std::vector<std::string>* removed) {
  PSTRAIN_RETURN_IF_ERROR(
      write_file_atomically(path_in(dir, index_file_name(index.step)), index.to_json()));
  PSTRAIN_ASSIGN_OR_RETURN(DirEntries d, scan_dir(dir));
  // Complete checkpoints, as far as retention is concerned: those with an index.
  std::vector<int64_t> steps;
  for (const auto& [step, name] : d.indexes) steps.push_back(step);
  std::vector<int64_t> kept = steps;
  if (keep_max > 0 && static_cast<int>(kept.size()) > keep_max) {
    kept.erase(kept.begin(), kept.end() - keep_max);
  }
  CheckpointState state;
  state.model_checkpoint_path = checkpoint_prefix(index.step);
  for (int64_t s : kept) state.all_model_checkpoint_paths.push_back(checkpoint_prefix(s));
  PSTRAIN_RETURN_IF_ERROR(write_file_atomically(path_in(dir, kStateFile), state.encode()));

  const int64_t oldest_kept = kept.empty() ? index.step : kept.front();
  const std::set<int64_t> keep(kept.begin(), kept.end());
  std::string first_error;
  const auto remove = [&](const std::string& name) {
    std::error_code ec;
    if (fs::remove(path_in(dir, name), ec)) {
      if (removed) removed->push_back(name);
    } else if (ec && first_error.empty()) {
      first_error = "cannot delete " + path_in(dir, name) + ": " + ec.message();
    }
  };
  // Shards a kept index lists stay, whatever their step (a PS that was past the requested
  // step saved a later one, which two indexes may share).
  const auto listed = [&](int64_t step) {
    std::vector<std::string> files;
    auto text = read_file(path_in(dir, d.indexes[step]));
    if (!text.ok()) return files;
    auto x = CheckpointIndex::parse(*text, d.indexes[step]);
    if (!x.ok()) return files;
    for (const ShardFileInfo& s : x->shards) files.push_back(s.file);
    return files;
  };
  std::set<std::string> in_use;
  for (int64_t step : kept) {
    for (std::string& f : listed(step)) in_use.insert(std::move(f));
  }
  for (const auto& [step, name] : d.indexes) {
    if (keep.count(step)) continue;
    for (const std::string& f : listed(step)) {
      if (!in_use.count(f) && d.sizes.count(f)) remove(f);
    }
  }
  for (const auto& [step, names] : d.shards) {
    if (step >= oldest_kept || keep.count(step)) continue;
    for (const std::string& n : names) {
      if (!in_use.count(n)) remove(n);
    }
  }
  for (const auto& [step, name] : d.indexes) {
    if (!keep.count(step)) remove(name);
  }
  if (!first_error.empty()) return unavailable(first_error);
  return {};
}

Result<std::vector<CheckpointListing>> list_checkpoints(const std::string& dir) {
  PSTRAIN_ASSIGN_OR_RETURN(DirEntries d, scan_dir(dir));
  std::set<int64_t> steps;
  for (const auto& [s, n] : d.indexes) steps.insert(s);
  for (const auto& [s, n] : d.shards) steps.insert(s);
  std::vector<CheckpointListing> out;
  for (int64_t step : steps) {
    CheckpointListing l;
    l.step = step;
    const auto idx = d.indexes.find(step);
    if (idx != d.indexes.end()) {
      l.has_index = true;
      const std::string path = path_in(dir, idx->second);
      auto text = read_file(path);
      Result<CheckpointIndex> index =
          text.ok() ? CheckpointIndex::parse(*text, path) : Result<CheckpointIndex>(text.status());
      if (index.ok()) {
        l.time = index->time;
        l.shards_expected = static_cast<int>(index->shards.size());
        std::set<std::string> vars;
        for (const IndexChunk& c : index->chunks) vars.insert(c.variable);
        l.variables = static_cast<int64_t>(vars.size());
        l.chunks = static_cast<int64_t>(index->chunks.size());
        for (const ShardFileInfo& s : index->shards) {
          const auto sz = d.sizes.find(s.file);
          if (sz != d.sizes.end()) {
            ++l.shards_present;
            l.bytes += sz->second;
          }
        }
        Status st = verify_checkpoint(dir, *index);
        l.complete = st.ok();
        if (!st.ok()) l.problem = st.message();
      } else {
        l.problem = index.status().message();
      }
    } else {
      const auto& names = d.shards[step];
      l.shards_present = static_cast<int>(names.size());
      if (auto sn = parse_shard_file_name(names.front())) l.shards_expected = sn->num_ps;
      for (const std::string& n : names) l.bytes += d.sizes[n];
      l.problem = "no index: the checkpoint was never completed (or this is a per-PS directory)";
    }
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace pstrain::checkpoint
