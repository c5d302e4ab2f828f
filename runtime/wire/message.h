// The one place where pstrain messages are encoded and decoded (see
// runtime/wire/proto/pstrain.proto).
//
// Contract: a message on the wire is one ZeroMQ multipart message: [routing id, ROUTER side
// only] + one frame holding a serialized wire::Header + one raw frame per Header.frames entry
// (little-endian element data). send_message() fills the header's version and frame table from
// the OutFrames, so they cannot drift apart. decode_message()/recv_message() check everything a
// peer controls before any tensor byte is exposed: header parse, protocol version, job id, kind,
// number of frames, each dtype and each frame's byte size. Bytes from the network never abort
// or throw: every failure is a Status, and its code tells the caller how to count it:
//   StatusCode::kDataLoss           malformed message (count as bad, log, drop)
//   StatusCode::kFailedPrecondition foreign message: another protocol version or job (ignore)
//   StatusCode::kDeadlineExceeded   nothing arrived before the deadline
//   StatusCode::kCancelled          the ZeroMQ context was shut down (ETERM)
//   StatusCode::kUnavailable        any other ZeroMQ error (e.g. a ROUTER peer is gone)
// decode_error_of() maps a Status to DecodeError for the first two.
//
// Zero copy: an OutFrame points at caller memory. Frames of at least kZeroCopyMinBytes with a
// keepalive are handed to ZeroMQ without copying (zmq_msg_init_data); ZeroMQ drops its copy of
// the keepalive (a heap-allocated shared_ptr) once it has finished with the bytes, which is
// after the send has completed (tcp) or after the receiver has closed the message (inproc).
// THE MEMORY MUST NOT CHANGE UNTIL THEN: callers that reuse a buffer track it through the
// keepalive (e.g. a shared_ptr whose deleter signals a condition variable they wait on). The
// keepalive's last reference may be dropped on a ZeroMQ I/O thread, so its deleter must be
// quick, must not block, and must not use ZeroMQ. Smaller frames, and frames without a
// keepalive, are copied during send_message().
//
// Without allocating (a request/reply conversation's steady state, e.g. PsClient's PUSH): the
// send_message() that takes SendBuffers, with SendBuffers::borrow set, hands ZeroMQ its
// header bytes (kept in the SendBuffers) and every OutFrame marked `borrowed` without copying
// and without a keepalive (ZeroMQ's constant messages), and recv_message_into() receives into
// an InMessage whose buffers (parts, parsed header, frame table) are reused. Borrowing is the
// caller's promise that nothing sent with these SendBuffers is still unread: the peer has
// answered the last message sent with them (it read all of it, and ZeroMQ's one pipe per peer
// delivers in order, so every earlier one too); it must not be used over inproc:// (the peer
// would read the caller's memory itself). A borrowing send leaves the header bytes and the
// borrowed frames in ZeroMQ's hands until then. Without `borrow`, the same call copies them.
//
// Shared memory (--transport=shm, runtime/wire/shm.h): an OutMessage with a ShmTarget copies
// its frames into that region of a segment (while they fit; the rest travel inline) and sends
// empty frames whose FrameInfo says in_shm and the offset. The receiver passes a ShmResolver
// that names the segment such a message refers to; decode_message() checks that every in-shm
// frame lies inside it (offsets and sizes come from the header, as for inline frames) and
// frame_bytes() then reads it there. A message with in-shm frames and no resolver, or one the
// resolver refuses, is malformed. The byte counters count in-shm bytes as sent and received.
// When every frame of such a message already lies inside the target region (a worker whose
// gradients live in the segment: ps/client.h), each is named where it lies and nothing is
// copied; ShmTarget::packed puts copied frames back to back instead of at 64-byte
// boundaries. copy_frame_*() copies nothing for a frame that already lies at its destination.
//
// Thread-safety: the functions are reentrant; a zmq::socket_t must be used by one thread at a
// time (ZeroMQ's rule). ProtocolCounters may be shared by any number of threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "runtime/base/status.h"
#include "runtime/wire/half.h"
#include "runtime/wire/proto/pstrain.pb.h"

namespace pstrain {

// 2: TrainingConfig carries every optimizer hyper-parameter (fields 10-14); a version-1 PS
// would have ignored them and trained with its defaults, so the two do not talk.
// 3: TrainingConfig carries the learning-rate schedule (fields 15-20), which a version-2 PS
// would ignore (training at a constant rate).
// DTYPE_FLOAT16/BFLOAT16 (--compress) did not need a version of their own: a PS without them
// refuses such a frame as malformed with an error naming the dtype (it never misreads it), and
// a worker with --compress=none sends exactly what it sent before.
inline constexpr uint32_t kProtocolVersion = 3;

// Frames at least this large (with a keepalive) are sent without copying.
inline constexpr uint64_t kZeroCopyMinBytes = 16 * 1024;

// Bytes per element (4 for float32 and int32, 2 for float16 and bfloat16); 0 for
// DTYPE_INVALID and values outside the enum.
size_t dtype_size(wire::DType dtype);
// "float32", "int32", "float16", "bfloat16", or "dtype(<n>)".
std::string dtype_name(wire::DType dtype);
// The wire dtype of a float format: DTYPE_FLOAT32, DTYPE_FLOAT16 or DTYPE_BFLOAT16.
wire::DType wire_dtype(FloatFormat format);
// The float format of a wire dtype; false when `dtype` is not a floating-point one.
bool float_format_of(wire::DType dtype, FloatFormat* format);

// One outgoing raw frame; see the zero-copy rule in the header comment.
struct OutFrame {
  std::string key;
  wire::DType dtype = wire::DTYPE_INVALID;
  const void* data = nullptr;             // count * dtype_size(dtype) bytes
  uint64_t count = 0;                     // elements
  std::shared_ptr<const void> keepalive;  // holds `data` alive; null: the bytes are copied
  // Sent without copying and without a keepalive by a borrowing send (SendBuffers::borrow, see
  // the header comment); copied otherwise.
  bool borrowed = false;
  uint64_t offset = 0;  // the first element's place in the chunk `key` names (a range of it)
};

// A float32 frame over `values`, kept alive by `keepalive` (may be null: then copied).
OutFrame f32_frame(std::string key, std::span<const float> values,
                   std::shared_ptr<const void> keepalive);
// An int32 frame over `values`, kept alive by `keepalive` (may be null: then copied).
OutFrame i32_frame(std::string key, std::span<const int32_t> values,
                   std::shared_ptr<const void> keepalive);
// A float16 or bfloat16 frame (`format` kFloat16 or kBFloat16) over `words`, the values narrowed
// by runtime/wire/half.h, kept alive by `keepalive` (may be null: then copied).
OutFrame half_frame(std::string key, FloatFormat format, std::span<const uint16_t> words,
                    std::shared_ptr<const void> keepalive);
// A frame that owns its values (moved into the keepalive): always safe, never copied again.
OutFrame owned_f32_frame(std::string key, std::vector<float> values);
OutFrame owned_i32_frame(std::string key, std::vector<int32_t> values);

// How a caller's large copies are made (send_message() into shared memory, copy_frame_f32()):
// memcpy(dst, src, bytes) for spans that do not overlap, perhaps on several threads (a worker
// passes kernels/optim.h's copy_parallel; this layer has no threads). nullptr: memcpy.
using BulkCopy = void (*)(std::byte* dst, const std::byte* src, size_t bytes);

// Where send_message() puts frame bytes in shared memory: [offset, offset + size) of the
// mapping that starts at `base` (FrameInfo.shm_offset counts from `base`). base == nullptr:
// every frame travels inline.
struct ShmTarget {
  std::byte* base = nullptr;
  uint64_t offset = 0;
  uint64_t size = 0;
  // Frames back to back (each at a 4-byte boundary) instead of each at a 64-byte one: a PS
  // answers so, and chunks adjacent in a model's flat layout are then adjacent in the reply.
  bool packed = false;
  // Copies the frames that are not in the region already (nullptr: memcpy).
  BulkCopy copy = nullptr;
};

struct OutMessage {
  // The caller sets kind, job_id and the kind's fields; send_message() sets version and frames.
  wire::Header header;
  std::vector<OutFrame> frames;
  ShmTarget shm;
};

// What a borrowing send_message() reuses: the serialized header that ZeroMQ reads in place
// (a vector, not a string: its bytes stay where they are when it is moved), and the parts.
// One per connection, used by one thread.
struct SendBuffers {
  // The caller's promise for the next send (see the header comment); false: copy everything.
  bool borrow = false;
  std::vector<std::byte> header_bytes;
  std::vector<zmq::message_t> parts;
};

// Counters that send/recv/decode update when given a pointer. Thread-safe.
struct ProtocolCounters {
  std::atomic<uint64_t> malformed{0};     // dropped: could not be decoded
  std::atomic<uint64_t> foreign{0};       // ignored: another protocol version or job id
  std::atomic<uint64_t> bytes_in{0};      // header + frame bytes received (routing ids excluded)
  std::atomic<uint64_t> bytes_out{0};     // header + frame bytes sent (routing ids excluded)
  std::atomic<uint64_t> messages_in{0};   // decoded successfully
  std::atomic<uint64_t> messages_out{0};  // sent completely
};

enum class DecodeError { kNone, kMalformed, kForeign };
// kMalformed for kDataLoss, kForeign for kFailedPrecondition, kNone for anything else.
DecodeError decode_error_of(const Status& status);

// Sends [routing id] + header + frames as one multipart message. Sets header.version and
// header.frames from msg.frames (header.job_id is the caller's: 0 means "no job" and is foreign
// to every receiver that expects a job). Pass the routing id of an InMessage to reply through a
// ROUTER socket. Blocks at most the socket's ZMQ_SNDTIMEO (the transport.h helpers set one).
// Errors: kInvalidArgument for a bad OutFrame (nothing is sent), kDeadlineExceeded when the
// send timed out, kCancelled on ETERM, kUnavailable otherwise. Never throws.
Status send_message(zmq::socket_t& socket, OutMessage msg,
                    const zmq::message_t* routing_id = nullptr,
                    ProtocolCounters* counters = nullptr);
// The same, leaving `msg` to be sent again (its header and frame table are rewritten in place,
// so a message built once and sent every step allocates nothing), with `buffers` reused and,
// when buffers.borrow is set, the header and `borrowed` frames handed over without copying.
// Frames with a keepalive are moved out of `msg` as above.
Status send_message(zmq::socket_t& socket, OutMessage& msg, SendBuffers& buffers,
                    const zmq::message_t* routing_id = nullptr,
                    ProtocolCounters* counters = nullptr);

// A decoded, validated message. frames[i] is described by header.frames(i) and holds exactly
// count * dtype_size(dtype) bytes. Frame data may be unaligned: read it with memcpy (the
// copy_frame_* helpers do).
// recv_message_into() makes room for this many ZeroMQ parts in a message it receives into
// (a reply's frames and more): messages reused in the steady state do not grow.
inline constexpr size_t kInMessageReservedParts = 32;

struct InMessage {
  wire::Header header;
  zmq::message_t routing_id;  // ROUTER sockets only; empty otherwise
  std::vector<zmq::message_t> frames;
  // The descriptor of the connection it came on (ZMQ_SRCFD of the header part; -1 unknown,
  // e.g. inproc): matches HandshakeMonitor's connection table.
  int source_fd = -1;

  size_t num_frames() const { return frames.size(); }
  const wire::FrameInfo& frame_info(size_t i) const { return header.frames(static_cast<int>(i)); }
  // Frames that lie in shared memory (FrameInfo.in_shm): their bytes there, one entry per
  // frame (empty for inline ones), and what keeps the mapping alive while this message lives.
  std::vector<std::span<const std::byte>> shm_frames;
  std::shared_ptr<const void> shm_keep;

  // The raw bytes of frame i, inline or in shared memory. i < num_frames() (programmer error
  // otherwise).
  std::span<const std::byte> frame_bytes(size_t i) const;
  // Copies frame i into dst (nothing when the frame's bytes are dst's: a shared-memory reply
  // written where the caller reads it). Errors (kInvalidArgument) when i is out of range, the
  // frame is not of that dtype, or its element count differs from dst.size(). `copy` makes
  // the copy when the bytes do not overlap dst (memmove otherwise; nullptr: memcpy).
  Status copy_frame_f32(size_t i, std::span<float> dst, BulkCopy copy = nullptr) const;
  Status copy_frame_i32(size_t i, std::span<int32_t> dst) const;
};

// The shared-memory segment a message with in-shm frames refers to: its mapping (offsets
// count from its start) and what keeps it mapped. Called with the decoded header and
// source_fd; an error makes the message malformed, with the error's text.
struct ShmView {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> keep;
};
using ShmResolver = std::function<Result<ShmView>(const InMessage&)>;

// Validates and decodes the parts of one multipart message (see the header comment for the
// checks and error codes). has_routing_id: the first part is a ROUTER routing id.
// expected_job_id == 0 accepts any job. Updates malformed/foreign/messages_in when counters is
// given (bytes_in is counted by recv_message, and here for in-shm frames). `shm` resolves
// in-shm frames (nullptr: such a message is malformed).
Result<InMessage> decode_message(std::vector<zmq::message_t> parts, bool has_routing_id,
                                 uint64_t expected_job_id, ProtocolCounters* counters = nullptr,
                                 const ShmResolver* shm = nullptr);

// Waits up to `timeout` for one multipart message on `socket`, receives all its parts and
// decodes it. kDeadlineExceeded when nothing arrived in time; decode errors as above (the bad
// message has been consumed: call again for the next one).
Result<InMessage> recv_message(zmq::socket_t& socket, std::chrono::milliseconds timeout,
                               bool has_routing_id, uint64_t expected_job_id,
                               ProtocolCounters* counters = nullptr,
                               const ShmResolver* shm = nullptr);

// recv_message() into `into`, whose vectors and parsed header are reused (their capacity
// kept), so that a steady stream of like messages allocates nothing on this thread. On an
// error `into` holds no valid message.
Status recv_message_into(zmq::socket_t& socket, std::chrono::milliseconds timeout,
                         bool has_routing_id, uint64_t expected_job_id, InMessage& into,
                         ProtocolCounters* counters = nullptr, const ShmResolver* shm = nullptr);

// Parses one protobuf message (a Header, a Rendezvous) from bytes that may come from outside
// the job, without protobuf's own log lines: protobuf logs an error for every string field
// with invalid UTF-8, so a stream of such bytes would fill the log past pstrain's rate
// limits. False when the bytes are not such a message (or over 2 GB).
bool parse_quietly(google::protobuf::MessageLite& message, const void* data, size_t size);

// Short description for logs: "PUSH job=7 sender=2 request=5 step=100 frames=3".
std::string describe(const wire::Header& header);

}  // namespace pstrain
