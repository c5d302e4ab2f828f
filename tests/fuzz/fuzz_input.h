// The fuzz targets' input format and their structure-aware mutator (tests/fuzz/).
//
// Contract
// - An input is a byte string: one flags byte, then up to kMaxMessages messages, each
//   [u8 number of parts][per part: u32 little-endian size, then that many bytes]. A message's
//   part 0 is meant to be a serialized wire::Header and the others its raw frames, as on the
//   wire (runtime/wire/message.h), but any bytes are allowed. parse_input() never fails: a
//   truncated input keeps what was complete (a truncated part keeps the bytes there are).
//   serialize_input(parse_input(s)) == s for every s that serialize_input produced.
// - mutate_input() is libFuzzer's custom mutator (LLVMFuzzerCustomMutator calls it): it decodes
//   the input, changes the header's fields (kind, sender, step, min step, request id, job id,
//   version, config, the frame table: entries, dtypes, keys, counts) and the frames (sizes,
//   counts, contents, NaN/Inf), keeping header and frames consistent or making them disagree,
//   or changes the message list (insert a valid message, drop, duplicate, swap), and
//   re-encodes it; about one time in five it hands the raw bytes to LLVMFuzzerMutate instead.
//   The result is never longer than max_size.
// - valid_message() builds a well-formed message of a kind for the seeds and the mutator.
// Thread-safety: pure functions (the mutator calls libFuzzer's LLVMFuzzerMutate).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "runtime/wire/proto/pstrain.pb.h"

namespace pstrain::fuzz {

inline constexpr size_t kMaxMessages = 8;
inline constexpr size_t kMaxParts = 16;
// The job id the handler's parameter server serves and the decoder's "fixed" expectation.
inline constexpr uint64_t kJobId = 4242;
// The layout hash the chief's INIT carries in the handler target.
inline constexpr uint64_t kLayoutHash = 0x5eed5eedULL;
// Flags byte: bit 0: the decoder treats part 0 as a ROUTER routing id; bit 1: the decoder
// expects kJobId (else job id 0: any job); bit 2: the handler sends on a new connection;
// bits 3-4: which of the handler's connections.
inline constexpr uint8_t kFlagRoutingId = 1;
inline constexpr uint8_t kFlagFixedJob = 2;
inline constexpr uint8_t kFlagNewConnection = 4;

using Message = std::vector<std::string>;  // part 0: header bytes, then frames

struct Input {
  uint8_t flags = 0;
  std::vector<Message> messages;
};

Input parse_input(const uint8_t* data, size_t size);
std::string serialize_input(const Input& in);

// A well-formed message of `kind` from `sender` (frames for INIT, PUSH, REPLY_PARAMS: the
// handler's two chunks "c0" (4 floats) and "c1" (3 floats)).
Message valid_message(wire::Kind kind, int sender, uint64_t request_id, int64_t step);
// The chunks the handler's chief initialises: key and number of floats.
inline const std::vector<std::pair<std::string, uint64_t>>& chunk_layout() {
  static const std::vector<std::pair<std::string, uint64_t>> layout = {{"c0", 4}, {"c1", 3}};
  return layout;
}
// The handler chief's training config (SGD, async, 2 workers).
wire::TrainingConfig chief_config();

size_t mutate_input(uint8_t* data, size_t size, size_t max_size, unsigned int seed);

}  // namespace pstrain::fuzz
