#include "checkpoint/safetensors.h"

#include <algorithm>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

namespace pstrain::checkpoint {
namespace {

// The Rust crate refuses headers over 100 MB; so do we (a corrupt length must not make us
// allocate gigabytes).
constexpr uint64_t kMaxHeader = 100'000'000;

bool parse_dtype(const std::string& s, TensorDType* d) {
  if (s == "F32")
    *d = TensorDType::kF32;
  else if (s == "I64")
    *d = TensorDType::kI64;
  else if (s == "I32")
    *d = TensorDType::kI32;
  else
    return false;
  return true;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

}  // namespace

const char* dtype_name(TensorDType d) {
  switch (d) {
    case TensorDType::kF32:
      return "F32";
    case TensorDType::kI64:
      return "I64";
    case TensorDType::kI32:
      return "I32";
  }
  return "?";
}

size_t dtype_size(TensorDType d) { return d == TensorDType::kI64 ? 8 : 4; }

TensorRef f32_tensor(std::string name, std::span<const float> values) {
  return {.name = std::move(name),
          .dtype = TensorDType::kF32,
          .shape = {static_cast<int64_t>(values.size())},
          .bytes = std::as_bytes(values)};
}

TensorRef i64_scalar(std::string name, const int64_t& value) {
  return {.name = std::move(name),
          .dtype = TensorDType::kI64,
          .shape = {},
          .bytes = std::as_bytes(std::span<const int64_t>(&value, 1))};
}

int64_t DecodedTensor::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string encode_safetensors(std::span<const TensorRef> tensors, const Metadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorRef& t : tensors) {
    PSTRAIN_CHECK(t.name != "__metadata__" && names.insert(t.name).second,
                  "safetensors tensor names must be unique and not __metadata__");
    uint64_t n = 1;
    for (int64_t d : t.shape) {
      PSTRAIN_CHECK(d >= 0, "negative dimension");
      n *= static_cast<uint64_t>(d);
    }
    PSTRAIN_CHECK(n * dtype_size(t.dtype) == t.bytes.size(), "tensor bytes do not match shape");
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + json.size() + offset);
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += json;
  for (const TensorRef& t : tensors) {
    out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  }
  return out;
}

Result<SafetensorsFile> decode_safetensors(std::string bytes, const std::string& what) {
  const auto bad = [&](const std::string& m) {
    return data_loss(what + ": not a valid safetensors file: " + m);
  };
  if (bytes.size() < 8) {
    return bad("it has " + std::to_string(bytes.size()) +
               " bytes, fewer than the 8-byte header length (truncated?)");
  }
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (n > kMaxHeader) return bad("header length " + std::to_string(n) + " is over 100 MB");
  if (n > bytes.size() - 8) {
    return bad("header length " + std::to_string(n) + " runs past the end of the file (" +
               std::to_string(bytes.size()) + " bytes; truncated?)");
  }
  const std::string_view text(bytes.data() + 8, n);
  if (text.empty() || text.front() != '{') return bad("the header does not start with '{'");
  nlohmann::json header = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return bad("the header is not a JSON object");

  SafetensorsFile f;
  const size_t data_begin = 8 + n;
  const uint64_t data_size = bytes.size() - data_begin;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return bad("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) return bad("__metadata__ value '" + k + "' is not a string");
        f.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object()) return bad(where + " is not an object");
    const auto dt = entry.find("dtype");
    const auto sh = entry.find("shape");
    const auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) return bad(where + " has no dtype string");
    if (sh == entry.end() || !sh->is_array()) return bad(where + " has no shape array");
    if (off == entry.end() || !off->is_array() || off->size() != 2) {
      return bad(where + " has no data_offsets [begin, end]");
    }
    DecodedTensor t;
    t.name = name;
    if (!parse_dtype(dt->get<std::string>(), &t.dtype)) {
      return bad(where + " has dtype " + dt->get<std::string>() +
                 "; pstrain reads F32, I64 and I32");
    }
    uint64_t elements = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) return bad(where + " has a shape entry that is not a count");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > data_size || (dim != 0 && elements > data_size / dim)) {
        return bad(where + " has a shape larger than the file");
      }
      elements *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
      return bad(where + " has data_offsets that are not counts");
    }
    const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
    if (b > e || e > data_size) {
      return bad(where + " has data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                 "] outside the " + std::to_string(data_size) + "-byte data section (truncated?)");
    }
    if (e - b != elements * dtype_size(t.dtype)) {
      return bad(where + " holds " + std::to_string(e - b) + " bytes, its shape " +
                 shape_string(t.shape) + " of " + dtype_name(t.dtype) + " needs " +
                 std::to_string(elements * dtype_size(t.dtype)));
    }
    t.begin = data_begin + b;
    t.size = e - b;
    f.tensors_.push_back(std::move(t));
  }
  std::sort(f.tensors_.begin(), f.tensors_.end(),
            [](const DecodedTensor& a, const DecodedTensor& c) { return a.begin < c.begin; });
  size_t expect = data_begin;
  for (const DecodedTensor& t : f.tensors_) {
    if (t.begin != expect) {
      return bad("tensor '" + t.name +
                 "' does not start where the previous one ends (overlap or gap)");
    }
    expect += t.size;
  }
  if (expect != bytes.size()) {
    return bad("the tensors cover " + std::to_string(expect - data_begin) + " of the " +
               std::to_string(data_size) + " data bytes");
  }
  f.what_ = what;
  f.header_bytes_ = data_begin;
  f.bytes_ = std::move(bytes);
  return f;
}

const DecodedTensor* SafetensorsFile::find(std::string_view name) const {
  for (const DecodedTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Result<std::vector<float>> SafetensorsFile::f32(std::string_view name,
                                                int64_t expected_elements) const {
  const DecodedTensor* t = find(name);
  if (t == nullptr) return data_loss(what_ + ": has no tensor '" + std::string(name) + "'");
  if (t->dtype != TensorDType::kF32) {
    return data_loss(what_ + ": tensor '" + t->name + "' is " + dtype_name(t->dtype) +
                     ", expected F32");
  }
  if (t->elements() != expected_elements) {
    return data_loss(what_ + ": tensor '" + t->name + "' has " + std::to_string(t->elements()) +
                     " elements, expected " + std::to_string(expected_elements));
  }
  std::vector<float> v(static_cast<size_t>(expected_elements));
  std::memcpy(v.data(), bytes_.data() + t->begin, t->size);
  return v;
}

Result<int64_t> SafetensorsFile::i64_scalar(std::string_view name) const {
  const DecodedTensor* t = find(name);
  if (t == nullptr) return data_loss(what_ + ": has no tensor '" + std::string(name) + "'");
  if (t->dtype != TensorDType::kI64 || t->elements() != 1) {
    return data_loss(what_ + ": tensor '" + t->name + "' is not one I64 value");
  }
  int64_t v = 0;
  std::memcpy(&v, bytes_.data() + t->begin, sizeof v);
  return v;
}

}  // namespace pstrain::checkpoint
