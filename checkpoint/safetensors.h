// Safetensors: the one encode/decode place for the file format PyTorch and Hugging Face use
// (https://github.com/huggingface/safetensors), in which every checkpoint shard is written.
//
// Layout: 8-byte little-endian header length N; N bytes of JSON, padded with spaces to a
// multiple of 8 (as the Rust crate writes it); then the raw little-endian tensor data. The JSON
// maps each tensor name to {"dtype": "F32"|"I64"|"I32", "shape": [...], "data_offsets":
// [begin, end]} (offsets relative to the data section) and may hold "__metadata__", a map of
// strings to strings.
//
// Contract
// - encode_safetensors() lays the tensors out in the order given, back to back, so the data
//   section is exactly covered (what the Rust crate's validation requires). Names must be
//   unique, not "__metadata__", and each tensor's byte size must match its shape and dtype
//   (violations are programmer errors: PSTRAIN_CHECK).
// - decode_safetensors() checks everything in the bytes before exposing a tensor: the header
//   length against the file size, the JSON, every entry's dtype, shape, offsets (in range, not
//   overlapping, covering the data section) and byte size against its shape. Any fault is a
//   kDataLoss error naming `what` (usually the file's path) and what is wrong; it never aborts.
// Thread-safety: pure functions over values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/status.h"

namespace pstrain::checkpoint {

enum class TensorDType { kF32, kI64, kI32 };
const char* dtype_name(TensorDType d);  // "F32", "I64", "I32"
size_t dtype_size(TensorDType d);

// A tensor to write: its bytes are read during encode_safetensors() only.
struct TensorRef {
  std::string name;
  TensorDType dtype = TensorDType::kF32;
  std::vector<int64_t> shape;  // empty: a scalar
  std::span<const std::byte> bytes;
};

// Helpers for the common cases.
TensorRef f32_tensor(std::string name, std::span<const float> values);
TensorRef i64_scalar(std::string name, const int64_t& value);

using Metadata = std::map<std::string, std::string>;

std::string encode_safetensors(std::span<const TensorRef> tensors, const Metadata& metadata);

// A decoded file: owns the bytes; tensors point into them.
struct DecodedTensor {
  std::string name;
  TensorDType dtype = TensorDType::kF32;
  std::vector<int64_t> shape;
  size_t begin = 0;  // absolute offset in SafetensorsFile::bytes
  size_t size = 0;   // bytes
  int64_t elements() const;
};

class SafetensorsFile {
 public:
  const Metadata& metadata() const { return metadata_; }
  // In file order (by data offset).
  const std::vector<DecodedTensor>& tensors() const { return tensors_; }
  const DecodedTensor* find(std::string_view name) const;
  // The values of an F32 tensor (copied: the data section has no alignment guarantee).
  // An error names the tensor when it is missing, of another dtype or of another size.
  Result<std::vector<float>> f32(std::string_view name, int64_t expected_elements) const;
  Result<int64_t> i64_scalar(std::string_view name) const;
  size_t header_bytes() const { return header_bytes_; }

 private:
  friend Result<SafetensorsFile> decode_safetensors(std::string bytes, const std::string& what);
  std::string what_;
  std::string bytes_;
  size_t header_bytes_ = 0;  // 8 + N
  Metadata metadata_;
  std::vector<DecodedTensor> tensors_;
};

Result<SafetensorsFile> decode_safetensors(std::string bytes, const std::string& what);

}  // namespace pstrain::checkpoint
