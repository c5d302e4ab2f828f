// libFuzzer target: decode_message() (runtime/wire/message.h) on the multipart messages an
// input describes (tests/fuzz/fuzz_input.h), with or without a routing id (flags bit 0) and
// expecting job id 0 (any job) or a fixed one (flags bit 1). Every result must be a message
// that passed every check or a Status of the codes the contract names; a decoded message's
// frames must hold exactly what the header says. Anything else aborts (a finding).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <zmq.hpp>

#include "runtime/wire/message.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using namespace pstrain;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_decode: %s\n", what);
  std::abort();
}

void check_decoded(const InMessage& m, size_t parts, bool routing) {
  if (m.num_frames() != static_cast<size_t>(m.header.frames_size())) {
    finding("the frame count differs from the header's frame table");
  }
  if (m.num_frames() + 1 + (routing ? 1 : 0) != parts) finding("a part was lost or invented");
  if (m.header.version() != kProtocolVersion) finding("another protocol version was accepted");
  if (m.header.kind() == wire::KIND_INVALID || !wire::Kind_IsValid(m.header.kind())) {
    finding("an invalid kind was accepted");
  }
  for (size_t i = 0; i < m.num_frames(); ++i) {
    const wire::FrameInfo& f = m.frame_info(i);
    if (m.frame_bytes(i).size() != f.count() * dtype_size(f.dtype())) {
      finding("a frame's size differs from count x dtype");
    }
    // Reading the frame through the copy helpers touches every byte (ASan checks them).
    if (f.dtype() == wire::DTYPE_FLOAT32 && f.count() <= (1u << 20)) {
      std::vector<float> v(f.count());
      if (!m.copy_frame_f32(i, v).ok()) finding("copy_frame_f32 refused a valid frame");
      std::vector<int32_t> w(f.count());
      if (m.copy_frame_i32(i, w).ok()) {
        finding("copy_frame_i32 took a float32 frame");
      }
    } else if (f.dtype() == wire::DTYPE_INT32 && f.count() <= (1u << 20)) {
      std::vector<int32_t> v(f.count());
      if (!m.copy_frame_i32(i, v).ok()) finding("copy_frame_i32 refused a valid frame");
    }
  }
  (void)describe(m.header);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // libprotobuf logs every string field that is not UTF-8 (ERROR, one line per message).
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::Input in = fuzz::parse_input(data, size);
  const bool routing = (in.flags & fuzz::kFlagRoutingId) != 0;
  const uint64_t job = (in.flags & fuzz::kFlagFixedJob) != 0 ? fuzz::kJobId : 0;
  ProtocolCounters counters;
  uint64_t decoded = 0, bad = 0;
  for (const fuzz::Message& m : in.messages) {
    std::vector<zmq::message_t> parts;
    parts.reserve(m.size());
    for (const std::string& p : m) parts.emplace_back(p.data(), p.size());
    const size_t n = parts.size();
    auto result = decode_message(std::move(parts), routing, job, &counters);
    if (result.ok()) {
      ++decoded;
      check_decoded(*result, n, routing);
      if (job != 0 && result->header.job_id() != job) finding("another job id was accepted");
    } else {
      ++bad;
      const StatusCode c = result.status().code();
      if (c != StatusCode::kDataLoss && c != StatusCode::kFailedPrecondition) {
        finding("decode_message returned a code its contract does not name");
      }
      if (result.status().message().empty()) finding("an error without a message");
      if (decode_error_of(result.status()) == DecodeError::kNone) finding("unmapped error");
    }
  }
  if (counters.messages_in.load() != decoded) finding("messages_in miscounted");
  if (counters.malformed.load() + counters.foreign.load() != bad) finding("errors miscounted");
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return pstrain::fuzz::mutate_input(data, size, max_size, seed);
}
