#include "runtime/wire/message.h"
#include "runtime/base/check.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <utility>

#include <google/protobuf/stubs/logging.h>

namespace pstrain {

static_assert(std::endian::native == std::endian::little,
              "pstrain's wire format is little-endian; a big-endian host needs byte swapping "
              "in runtime/message.cc");

namespace {

// ZeroMQ's release callback for zero-copy frames: drops ZeroMQ's reference to the keepalive.
void release_keepalive(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

Status zmq_error_status(const zmq::error_t& e, const std::string& what) {
  if (e.num() == ETERM) {
    return cancelled(what + ": the ZeroMQ context is shutting down (ETERM)");
  }
  if (e.num() == EHOSTUNREACH) {
    return unavailable(what + ": the peer is no longer connected (EHOSTUNREACH)");
  }
  return unavailable(what + ": ZeroMQ error " + std::to_string(e.num()) + " (" + e.what() + ")");
}

// Byte size of `count` elements of `dtype`; false when the dtype is invalid or it overflows.
bool frame_byte_size(wire::DType dtype, uint64_t count, uint64_t* bytes) {
  const uint64_t es = dtype_size(dtype);
  if (es == 0) return false;
  if (count > std::numeric_limits<uint64_t>::max() / es) return false;
  *bytes = count * es;
  return *bytes <= std::numeric_limits<size_t>::max();
}

template <typename T>
Status copy_frame(const InMessage& m, size_t i, wire::DType want, std::span<T> dst,
                  BulkCopy copy = nullptr) {
  if (i >= m.frames.size() || i >= static_cast<size_t>(m.header.frames_size())) {
    return invalid_argument("frame index " + std::to_string(i) + " is out of range: the " +
                            describe(m.header) + " message has " + std::to_string(m.frames.size()) +
                            " frames");
  }
  const wire::FrameInfo& info = m.frame_info(i);
  const auto where = [&] {
    return "frame " + std::to_string(i) + " ('" + info.key() + "') of a " + describe(m.header) +
           " message";
  };
  if (info.dtype() != want) {
    return invalid_argument(where() + " holds " + dtype_name(info.dtype()) + ", expected " +
                            dtype_name(want));
  }
  if (info.count() != dst.size()) {
    return invalid_argument(where() + " holds " + std::to_string(info.count()) +
                            " elements, expected " + std::to_string(dst.size()) +
                            ": the peers disagree about the variable layout");
  }
  const std::span<const std::byte> bytes = m.frame_bytes(i);
  if (bytes.size() != dst.size_bytes()) {
    return data_loss(where() + " holds " + std::to_string(bytes.size()) + " bytes, expected " +
                     std::to_string(dst.size_bytes()));
  }
  // A frame in shared memory may already be where the caller reads it (nothing to do), or,
  // from a peer that named odd offsets, overlap it: memmove, never memcpy.
  const std::byte* src = bytes.data();
  auto* to = reinterpret_cast<std::byte*>(dst.data());
  if (!dst.empty() && src != to) {
    const bool apart =
        !std::less<>()(src, to + dst.size_bytes()) || !std::less<>()(to, src + dst.size_bytes());
    if (copy != nullptr && apart) {
      copy(to, src, dst.size_bytes());
    } else {
      std::memmove(to, src, dst.size_bytes());
    }
  }
  return {};
}

}  // namespace

size_t dtype_size(wire::DType dtype) {
  switch (dtype) {
    case wire::DTYPE_FLOAT32:
      return sizeof(float);
    case wire::DTYPE_INT32:
      return sizeof(int32_t);
    case wire::DTYPE_FLOAT16:
    case wire::DTYPE_BFLOAT16:
      return sizeof(uint16_t);
    default:
      return 0;
  }
}

std::string dtype_name(wire::DType dtype) {
  switch (dtype) {
    case wire::DTYPE_FLOAT32:
      return "float32";
    case wire::DTYPE_INT32:
      return "int32";
    case wire::DTYPE_FLOAT16:
      return "float16";
    case wire::DTYPE_BFLOAT16:
      return "bfloat16";
    default:
      return "dtype(" + std::to_string(static_cast<int>(dtype)) + ")";
  }
}

OutFrame f32_frame(std::string key, std::span<const float> values,
                   std::shared_ptr<const void> keepalive) {
  return OutFrame{std::move(key), wire::DTYPE_FLOAT32, values.data(), values.size(),
                  std::move(keepalive)};
}

wire::DType wire_dtype(FloatFormat format) {
  switch (format) {
    case FloatFormat::kFloat16:
      return wire::DTYPE_FLOAT16;
    case FloatFormat::kBFloat16:
      return wire::DTYPE_BFLOAT16;
    case FloatFormat::kFloat32:
      break;
  }
  return wire::DTYPE_FLOAT32;
}

bool float_format_of(wire::DType dtype, FloatFormat* format) {
  switch (dtype) {
    case wire::DTYPE_FLOAT32:
      *format = FloatFormat::kFloat32;
      return true;
    case wire::DTYPE_FLOAT16:
      *format = FloatFormat::kFloat16;
      return true;
    case wire::DTYPE_BFLOAT16:
      *format = FloatFormat::kBFloat16;
      return true;
    default:
      return false;
  }
}

OutFrame half_frame(std::string key, FloatFormat format, std::span<const uint16_t> words,
                    std::shared_ptr<const void> keepalive) {
  PSTRAIN_CHECK(format != FloatFormat::kFloat32, "half_frame: float32 is not a 16-bit format");
  return OutFrame{std::move(key), wire_dtype(format), words.data(), words.size(),
                  std::move(keepalive)};
}

OutFrame i32_frame(std::string key, std::span<const int32_t> values,
                   std::shared_ptr<const void> keepalive) {
  return OutFrame{std::move(key), wire::DTYPE_INT32, values.data(), values.size(),
                  std::move(keepalive)};
}

OutFrame owned_f32_frame(std::string key, std::vector<float> values) {
  auto owner = std::make_shared<const std::vector<float>>(std::move(values));
  const float* data = owner->data();
  const uint64_t count = owner->size();
  return OutFrame{std::move(key), wire::DTYPE_FLOAT32, data, count, std::move(owner)};
}

OutFrame owned_i32_frame(std::string key, std::vector<int32_t> values) {
  auto owner = std::make_shared<const std::vector<int32_t>>(std::move(values));
  const int32_t* data = owner->data();
  const uint64_t count = owner->size();
  return OutFrame{std::move(key), wire::DTYPE_INT32, data, count, std::move(owner)};
}

DecodeError decode_error_of(const Status& status) {
  switch (status.code()) {
    case StatusCode::kDataLoss:
      return DecodeError::kMalformed;
    case StatusCode::kFailedPrecondition:
      return DecodeError::kForeign;
    default:
      return DecodeError::kNone;
  }
}

bool parse_quietly(google::protobuf::MessageLite& message, const void* data, size_t size) {
  if (size > static_cast<size_t>(INT_MAX)) return false;
  // While a LogSilencer lives, protobuf drops its log lines below FATAL (process-wide: a
  // line another thread's protobuf call would log meanwhile is dropped too; pstrain makes
  // protobuf calls only to encode and decode its own messages).
  const google::protobuf::LogSilencer quiet;
  return message.ParseFromArray(data, static_cast<int>(size));
}

std::string describe(const wire::Header& header) {
  std::string kind = wire::Kind_IsValid(header.kind()) ? wire::Kind_Name(header.kind()) : "";
  if (kind.empty()) kind = "kind(" + std::to_string(static_cast<int>(header.kind())) + ")";
  return kind + " job=" + std::to_string(header.job_id()) +
         " sender=" + std::to_string(header.sender()) +
         " request=" + std::to_string(header.request_id()) +
         " step=" + std::to_string(header.step()) +
         " frames=" + std::to_string(header.frames_size());
}

Status send_message(zmq::socket_t& socket, OutMessage msg, const zmq::message_t* routing_id,
                    ProtocolCounters* counters) {
  SendBuffers copying;  // borrow == false: everything is copied or kept alive by keepalives
  return send_message(socket, msg, copying, routing_id, counters);
}

Status send_message(zmq::socket_t& socket, OutMessage& msg, SendBuffers& buffers,
                    const zmq::message_t* routing_id, ProtocolCounters* counters) {
  wire::Header& header = msg.header;
  header.set_version(kProtocolVersion);
  // Cleared elements stay allocated: add_frames() reuses them, and set_key() their strings.
  header.clear_frames();
  for (size_t i = 0; i < msg.frames.size(); ++i) {
    const OutFrame& f = msg.frames[i];
    uint64_t bytes = 0;
    if (!frame_byte_size(f.dtype, f.count, &bytes)) {
      return invalid_argument(
          "send_message: frame " + std::to_string(i) + " ('" + f.key + "') has dtype " +
          dtype_name(f.dtype) + " and count " + std::to_string(f.count) +
          ": the dtype must be float32, int32, float16 or bfloat16 and the size must fit");
    }
    if (bytes > 0 && f.data == nullptr) {
      return invalid_argument("send_message: frame " + std::to_string(i) + " ('" + f.key +
                              "') has " + std::to_string(f.count) + " elements but no data");
    }
    wire::FrameInfo* info = header.add_frames();
    info->set_key(f.key);
    info->set_dtype(f.dtype);
    info->set_count(f.count);
    if (f.offset != 0) info->set_offset(f.offset);
  }
  const auto frame_bytes = [&](size_t i) {
    uint64_t bytes = 0;
    (void)frame_byte_size(msg.frames[i].dtype, msg.frames[i].count, &bytes);  // checked above
    return bytes;
  };
  // Shared memory: frames go to the target region (64-byte aligned, or 4 when packed) while
  // they fit; their parts stay empty. A frame that does not fit, and every one after it,
  // travels inline. When every frame already lies inside the region, each is named in place.
  uint64_t shm_bytes = 0;
  if (msg.shm.base != nullptr) {
    const uint64_t end = msg.shm.offset + msg.shm.size;
    const auto offset_in_region = [&](size_t i) -> std::optional<uint64_t> {
      const auto* data = static_cast<const std::byte*>(msg.frames[i].data);
      const std::byte* first = msg.shm.base + msg.shm.offset;
      const uint64_t bytes = frame_bytes(i);
      if (bytes == 0 || std::less<>()(data, first) || !std::less<>()(data, msg.shm.base + end)) {
        return std::nullopt;
      }
      const auto at = static_cast<uint64_t>(data - msg.shm.base);
      if (bytes > end - at) return std::nullopt;
      return at;
    };
    bool all_in_place = !msg.frames.empty();
    for (size_t i = 0; i < msg.frames.size() && all_in_place; ++i) {
      all_in_place = offset_in_region(i).has_value();
    }
    const uint64_t align = msg.shm.packed ? 4 : 64;
    uint64_t at = msg.shm.offset;
    for (size_t i = 0; i < msg.frames.size(); ++i) {
      const uint64_t bytes = frame_bytes(i);
      if (all_in_place) {
        at = *offset_in_region(i);
      } else {
        at = (at + align - 1) & ~(align - 1);
        if (bytes == 0 || at > end || bytes > end - at) break;
        const auto* from = static_cast<const std::byte*>(msg.frames[i].data);
        std::byte* to = msg.shm.base + at;
        if (msg.shm.copy != nullptr &&
            (!std::less<>()(from, to + bytes) || !std::less<>()(to, from + bytes))) {
          msg.shm.copy(to, from, static_cast<size_t>(bytes));
        } else {
          std::memcpy(to, from, static_cast<size_t>(bytes));
        }
      }
      wire::FrameInfo* info = header.mutable_frames(static_cast<int>(i));
      info->set_in_shm(true);
      info->set_shm_offset(at);
      shm_bytes += bytes;
      at += bytes;
    }
  }
  const size_t header_size = header.ByteSizeLong();
  // A borrowing send serializes into buffers.header_bytes, which ZeroMQ then reads in place;
  // otherwise into a string of its own that ZeroMQ copies.
  std::string copied_header;
  void* header_data = nullptr;
  if (header_size <= static_cast<size_t>(INT_MAX)) {
    if (buffers.borrow) {
      buffers.header_bytes.resize(header_size);
      header_data = buffers.header_bytes.data();
    } else {
      copied_header.resize(header_size);
      header_data = copied_header.data();
    }
  }
  if (header_data == nullptr && header_size > 0) {
    return invalid_argument("send_message: the " + describe(header) +
                            " header cannot be serialized (larger than 2 GB)");
  }
  if (!header.SerializeToArray(header_data, static_cast<int>(header_size))) {
    return invalid_argument("send_message: the " + describe(header) +
                            " header cannot be serialized");
  }

  const auto what = [&header] { return "send_message(" + describe(header) + ")"; };
  uint64_t total_bytes = header_size + shm_bytes;
  std::vector<zmq::message_t>& parts = buffers.parts;
  parts.clear();
  try {
    if (routing_id != nullptr) parts.emplace_back(routing_id->data(), routing_id->size());
    if (buffers.borrow) {
      // A constant message (no free function): ZeroMQ neither copies nor allocates.
      parts.emplace_back(header_data, header_size, nullptr, nullptr);
    } else {
      parts.emplace_back(header_data, header_size);
    }
    for (size_t i = 0; i < msg.frames.size(); ++i) {
      OutFrame& f = msg.frames[i];
      const size_t bytes = static_cast<size_t>(frame_bytes(i));
      if (bytes == 0 || header.frames(static_cast<int>(i)).in_shm()) {
        parts.emplace_back();
        continue;
      }
      total_bytes += bytes;
      if (f.borrowed && buffers.borrow) {
        parts.emplace_back(const_cast<void*>(f.data), bytes, nullptr, nullptr);
      } else if (f.keepalive != nullptr && bytes >= kZeroCopyMinBytes) {
        // ZeroMQ owns this heap copy of the keepalive until release_keepalive runs.
        auto* hint = new std::shared_ptr<const void>(std::move(f.keepalive));
        try {
          zmq::message_t part(const_cast<void*>(f.data), bytes, &release_keepalive, hint);
          parts.push_back(std::move(part));
        } catch (...) {
          delete hint;
          throw;
        }
      } else {
        parts.emplace_back(f.data, bytes);
      }
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      const zmq::send_flags flags =
          i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (!socket.send(parts[i], flags)) {
        // EAGAIN: ZMQ_SNDTIMEO ran out (ZeroMQ delivers multipart messages atomically, so this
        // happens on the first part, before anything was queued).
        parts.clear();
        return deadline_exceeded(what() + ": the send timed out (part " + std::to_string(i) +
                                 "): the peer is not reading or not connected");
      }
    }
    parts.clear();
  } catch (const zmq::error_t& e) {
    parts.clear();
    return zmq_error_status(e, what());
  } catch (const std::bad_alloc&) {
    parts.clear();
    return internal_error(what() + ": out of memory");
  }
  if (counters != nullptr) {
    counters->bytes_out.fetch_add(total_bytes, std::memory_order_relaxed);
    counters->messages_out.fetch_add(1, std::memory_order_relaxed);
  }
  return {};
}

std::span<const std::byte> InMessage::frame_bytes(size_t i) const {
  PSTRAIN_CHECK(i < frames.size(), "InMessage::frame_bytes: frame index out of range");
  if (i < shm_frames.size() && frame_info(i).in_shm()) return shm_frames[i];
  const zmq::message_t& f = frames[i];
  return {static_cast<const std::byte*>(f.data()), f.size()};
}

Status InMessage::copy_frame_f32(size_t i, std::span<float> dst, BulkCopy copy) const {
  return copy_frame(*this, i, wire::DTYPE_FLOAT32, dst, copy);
}

Status InMessage::copy_frame_i32(size_t i, std::span<int32_t> dst) const {
  return copy_frame(*this, i, wire::DTYPE_INT32, dst);
}

namespace {

// Validates and decodes the message whose parts are m.frames (as received), in place: the
// routing id and header parts leave m.frames, which then holds the raw frames.
Status decode_in_place(InMessage& m, bool has_routing_id, uint64_t expected_job_id,
                       ProtocolCounters* counters, const ShmResolver* shm) {
  auto malformed = [counters](const std::string& why) {
    if (counters != nullptr) counters->malformed.fetch_add(1, std::memory_order_relaxed);
    return data_loss("malformed message: " + why);
  };
  auto foreign = [counters](const std::string& why) {
    if (counters != nullptr) counters->foreign.fetch_add(1, std::memory_order_relaxed);
    return failed_precondition("foreign message: " + why);
  };

  std::vector<zmq::message_t>& parts = m.frames;
  m.shm_frames.clear();
  m.shm_keep.reset();
  const size_t first = has_routing_id ? 1 : 0;
  if (parts.size() < first + 1) {
    return malformed(parts.empty() ? "empty (no parts)" : "a routing id but no header frame");
  }
  const zmq::message_t& header_part = parts[first];
  m.source_fd = zmq_msg_get(header_part.handle(), ZMQ_SRCFD);
  if (!parse_quietly(m.header, header_part.data(), header_part.size())) {
    return malformed("the first frame (" + std::to_string(header_part.size()) +
                     " bytes) is not a pstrain.wire.Header");
  }
  const wire::Header& h = m.header;
  if (h.version() != kProtocolVersion) {
    return foreign("protocol version " + std::to_string(h.version()) + ", this build speaks " +
                   std::to_string(kProtocolVersion) +
                   ": every task of a job must run the same pstrain version");
  }
  if (expected_job_id != 0 && h.job_id() != expected_job_id) {
    return foreign("job id " + std::to_string(h.job_id()) + ", expected " +
                   std::to_string(expected_job_id) +
                   ": a task of another job is sending to this address");
  }
  if (!wire::Kind_IsValid(h.kind()) || h.kind() == wire::KIND_INVALID) {
    return malformed("unknown kind " + std::to_string(static_cast<int>(h.kind())) + " (" +
                     describe(h) + ")");
  }
  const size_t raw_frames = parts.size() - first - 1;
  if (raw_frames != static_cast<size_t>(h.frames_size())) {
    return malformed("the header describes " + std::to_string(h.frames_size()) + " frames but " +
                     std::to_string(raw_frames) + " arrived (" + describe(h) + ")");
  }
  const auto where = [&h](size_t i) {
    return "frame " + std::to_string(i) + " ('" + h.frames(static_cast<int>(i)).key() + "') of " +
           describe(h);
  };
  bool any_in_shm = false;
  for (size_t i = 0; i < raw_frames; ++i) {
    const wire::FrameInfo& info = h.frames(static_cast<int>(i));
    if (dtype_size(info.dtype()) == 0) {
      return malformed(where(i) + " has invalid " + dtype_name(info.dtype()));
    }
    uint64_t bytes = 0;
    if (!frame_byte_size(info.dtype(), info.count(), &bytes)) {
      return malformed(where(i) + ": element count " + std::to_string(info.count()) +
                       " overflows the byte size");
    }
    const size_t got = parts[first + 1 + i].size();
    if (info.in_shm()) {
      if (got != 0) {
        return malformed(where(i) + " is in shared memory but its frame holds " +
                         std::to_string(got) + " bytes");
      }
      any_in_shm = true;
      continue;  // checked against the segment below
    }
    if (bytes != got) {
      return malformed(where(i) + ": " + std::to_string(info.count()) + " x " +
                       dtype_name(info.dtype()) + " needs " + std::to_string(bytes) +
                       " bytes, the frame holds " + std::to_string(got));
    }
  }

  if (has_routing_id) {
    m.routing_id = std::move(parts[0]);
  } else {
    m.routing_id.rebuild();
  }
  // The raw frames move to the front (moves of zmq_msg_t: no allocation).
  parts.erase(parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(first + 1));
  if (any_in_shm) {
    if (shm == nullptr || !*shm) {
      return malformed("frames in shared memory on a connection without a segment (" + describe(h) +
                       ")");
    }
    Result<ShmView> view = (*shm)(m);
    if (!view.ok()) return malformed(view.status().message() + " (" + describe(h) + ")");
    const std::span<const std::byte> segment = view->bytes;
    m.shm_frames.resize(raw_frames);
    uint64_t shm_bytes = 0;
    for (size_t i = 0; i < raw_frames; ++i) {
      const wire::FrameInfo& info = h.frames(static_cast<int>(i));
      if (!info.in_shm()) continue;
      uint64_t bytes = 0;
      (void)frame_byte_size(info.dtype(), info.count(), &bytes);  // checked above
      if (info.shm_offset() > segment.size() || bytes > segment.size() - info.shm_offset()) {
        return malformed(where(i) + " lies outside the shared-memory segment (" +
                         std::to_string(bytes) + " bytes at offset " +
                         std::to_string(info.shm_offset()) + ", the segment holds " +
                         std::to_string(segment.size()) + ")");
      }
      m.shm_frames[i] =
          segment.subspan(static_cast<size_t>(info.shm_offset()), static_cast<size_t>(bytes));
      shm_bytes += bytes;
    }
    m.shm_keep = std::move(view->keep);
    if (counters != nullptr) counters->bytes_in.fetch_add(shm_bytes, std::memory_order_relaxed);
  }
  if (counters != nullptr) counters->messages_in.fetch_add(1, std::memory_order_relaxed);
  return {};
}

}  // namespace

Result<InMessage> decode_message(std::vector<zmq::message_t> parts, bool has_routing_id,
                                 uint64_t expected_job_id, ProtocolCounters* counters,
                                 const ShmResolver* shm) {
  InMessage m;
  m.frames = std::move(parts);
  PSTRAIN_RETURN_IF_ERROR(decode_in_place(m, has_routing_id, expected_job_id, counters, shm));
  return m;
}

Result<InMessage> recv_message(zmq::socket_t& socket, std::chrono::milliseconds timeout,
                               bool has_routing_id, uint64_t expected_job_id,
                               ProtocolCounters* counters, const ShmResolver* shm) {
  InMessage m;
  PSTRAIN_RETURN_IF_ERROR(
      recv_message_into(socket, timeout, has_routing_id, expected_job_id, m, counters, shm));
  return m;
}

Status recv_message_into(zmq::socket_t& socket, std::chrono::milliseconds timeout,
                         bool has_routing_id, uint64_t expected_job_id, InMessage& into,
                         ProtocolCounters* counters, const ShmResolver* shm) {
  using Clock = std::chrono::steady_clock;
  if (timeout.count() < 0) timeout = std::chrono::milliseconds(0);
  const Clock::time_point deadline = Clock::now() + timeout;
  std::vector<zmq::message_t>& parts = into.frames;
  try {
    while (true) {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      const auto remaining =
          std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()),
                   std::chrono::milliseconds(0));
      int ready = 0;
      try {
        ready = zmq::poll(&item, 1, remaining);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      if (ready > 0 && (item.revents & ZMQ_POLLIN) != 0) {
        parts.clear();  // capacity kept: the parts of like messages land in the same vector
        // Room for a reply's parts from the first message on: a client swaps its reused
        // messages with held ones (a reply's parts that came early), so whichever one receives
        // a message with more parts than it held before would grow in the steady state.
        if (parts.capacity() < kInMessageReservedParts) parts.reserve(kInMessageReservedParts);
        parts.emplace_back();
        if (socket.recv(parts.back(), zmq::recv_flags::dontwait)) {
          bool more = parts.back().more();
          while (more) {
            // The rest of a multipart message is already here (ZeroMQ delivers atomically).
            parts.emplace_back();
            if (!socket.recv(parts.back(), zmq::recv_flags::none)) {
              parts.clear();
              return unavailable("recv_message: a multipart message ended early");
            }
            more = parts.back().more();
          }
          if (counters != nullptr) {
            uint64_t bytes = 0;
            for (size_t i = has_routing_id ? 1 : 0; i < parts.size(); ++i) bytes += parts[i].size();
            counters->bytes_in.fetch_add(bytes, std::memory_order_relaxed);
          }
          return decode_in_place(into, has_routing_id, expected_job_id, counters, shm);
        }
        parts.clear();
      }
      if (Clock::now() >= deadline) {
        return deadline_exceeded("recv_message: no message within " +
                                 std::to_string(timeout.count()) + " ms");
      }
    }
  } catch (const zmq::error_t& e) {
    parts.clear();
    return zmq_error_status(e, "recv_message");
  } catch (const std::bad_alloc&) {
    parts.clear();
    return internal_error("recv_message: out of memory");
  }
}

}  // namespace pstrain
