// Tests for runtime/message.h (encode/decode, zero copy, rejection of bad bytes) and
// runtime/transport.h (endpoints, socket helpers, the local endpoint, free ports).
#include "runtime/wire/message.h"

#include <gmock/gmock.h>
#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "runtime/wire/transport.h"
#include "tests/runtime/inproc_pair.h"

namespace pstrain {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr uint64_t kJob = 42;
constexpr auto kWait = std::chrono::milliseconds(10000);  // generous: only a hang hits it

#define EXPECT_OK(expr)                     \
  do {                                      \
    const ::pstrain::Status _s = (expr);    \
    EXPECT_TRUE(_s.ok()) << _s.to_string(); \
  } while (0)
#define ASSERT_OK(expr)                     \
  do {                                      \
    const ::pstrain::Status _s = (expr);    \
    ASSERT_TRUE(_s.ok()) << _s.to_string(); \
  } while (0)

// A ROUTER bound on a free loopback port and a DEALER (routing id "worker-3") connected to it.
struct TcpPair {
  zmq::context_t ctx;
  zmq::socket_t router;
  zmq::socket_t dealer;
  int port = 0;

  void open() {
    auto r = bind_socket(ctx, zmq::socket_type::router, "127.0.0.1", 0, "test router");
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    router = std::move(r).value();
    auto p = bound_port(router);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    port = *p;
    SocketOptions opt;
    opt.routing_id = "worker-3";
    auto d = connect_socket(ctx, zmq::socket_type::dealer, "localhost", port, "test dealer", opt);
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    dealer = std::move(d).value();
  }
};

// Same over inproc:// (messages are in the peer's queue as soon as send returns).
using testing_util::InprocPair;

OutMessage push_message(uint64_t job = kJob) {
  OutMessage m;
  m.header.set_kind(wire::PUSH);
  m.header.set_job_id(job);
  m.header.set_sender(3);
  m.header.set_request_id(17);
  m.header.set_step(99);
  return m;
}

// --- Round trips ---------------------------------------------------------------------------

TEST(MessageTest, RoundTripDealerRouterOverTcp) {
  TcpPair pair;
  ASSERT_NO_FATAL_FAILURE(pair.open());

  // 5000 floats = 20000 bytes: above kZeroCopyMinBytes, so sent without copying.
  auto big = std::make_shared<std::vector<float>>(5000);
  for (size_t i = 0; i < big->size(); ++i) (*big)[i] = 0.5f * static_cast<float>(i) - 7.0f;
  const std::vector<float> big_expected = *big;
  const std::vector<int32_t> labels = {1, -2, 3, std::numeric_limits<int32_t>::max(),
                                       std::numeric_limits<int32_t>::min()};
  const std::vector<float> small = {1.5f, -0.25f, 3e-20f};

  OutMessage out = push_message();
  std::span<const float> big_span(*big);
  out.frames.push_back(f32_frame("dense/w", big_span, big));
  out.frames.push_back(owned_i32_frame("labels", labels));
  out.frames.push_back(f32_frame("small", small, nullptr));  // no keepalive: copied
  out.frames.push_back(owned_f32_frame("empty", {}));
  big.reset();

  ProtocolCounters dealer_counters;
  ProtocolCounters router_counters;
  ASSERT_OK(send_message(pair.dealer, std::move(out), nullptr, &dealer_counters));

  auto in = recv_message(pair.router, kWait, /*has_routing_id=*/true, kJob, &router_counters);
  ASSERT_TRUE(in.ok()) << in.status().to_string();
  EXPECT_EQ(in->header.version(), kProtocolVersion);
  EXPECT_EQ(in->header.job_id(), kJob);
  EXPECT_EQ(in->header.kind(), wire::PUSH);
  EXPECT_EQ(in->header.sender(), 3);
  EXPECT_EQ(in->header.request_id(), 17u);
  EXPECT_EQ(in->header.step(), 99);
  EXPECT_EQ(in->routing_id.to_string(), "worker-3");
  ASSERT_EQ(in->num_frames(), 4u);
  EXPECT_EQ(in->frame_info(0).key(), "dense/w");
  EXPECT_EQ(in->frame_info(1).key(), "labels");
  EXPECT_EQ(in->frame_info(1).dtype(), wire::DTYPE_INT32);
  EXPECT_EQ(in->frame_info(3).count(), 0u);
  EXPECT_EQ(in->frame_bytes(0).size(), big_expected.size() * sizeof(float));

  std::vector<float> got_big(big_expected.size());
  ASSERT_OK(in->copy_frame_f32(0, got_big));
  EXPECT_EQ(got_big, big_expected);
  std::vector<int32_t> got_labels(labels.size());
  ASSERT_OK(in->copy_frame_i32(1, got_labels));
  EXPECT_EQ(got_labels, labels);
  std::vector<float> got_small(small.size());
  ASSERT_OK(in->copy_frame_f32(2, got_small));
  EXPECT_EQ(got_small, small);
  EXPECT_OK(in->copy_frame_f32(3, std::span<float>()));

  EXPECT_EQ(dealer_counters.messages_out.load(), 1u);
  EXPECT_EQ(router_counters.messages_in.load(), 1u);
  EXPECT_GT(dealer_counters.bytes_out.load(), big_expected.size() * sizeof(float));
  EXPECT_EQ(router_counters.bytes_in.load(), dealer_counters.bytes_out.load());
  EXPECT_EQ(router_counters.malformed.load(), 0u);
  EXPECT_EQ(router_counters.foreign.load(), 0u);

  // Reply through the ROUTER to the routing id the request came from.
  OutMessage reply;
  reply.header.set_kind(wire::REPLY_PARAMS);
  reply.header.set_job_id(kJob);
  reply.header.set_request_id(in->header.request_id());
  reply.header.set_ps_index(1);
  std::vector<float> doubled = got_big;
  for (float& v : doubled) v *= 2.0f;
  reply.frames.push_back(owned_f32_frame("dense/w", doubled));
  ASSERT_OK(send_message(pair.router, std::move(reply), &in->routing_id, &router_counters));

  auto back = recv_message(pair.dealer, kWait, /*has_routing_id=*/false, kJob, &dealer_counters);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->header.kind(), wire::REPLY_PARAMS);
  EXPECT_EQ(back->header.request_id(), 17u);
  EXPECT_EQ(back->header.ps_index(), 1);
  EXPECT_EQ(back->routing_id.size(), 0u);
  std::vector<float> got_doubled(doubled.size());
  ASSERT_OK(back->copy_frame_f32(0, got_doubled));
  EXPECT_EQ(got_doubled, doubled);
  EXPECT_EQ(dealer_counters.bytes_in.load(), router_counters.bytes_out.load());
}

TEST(MessageTest, ReplyToUnknownRoutingIdIsUnavailable) {
  TcpPair pair;
  ASSERT_NO_FATAL_FAILURE(pair.open());
  OutMessage m;
  m.header.set_kind(wire::REPLY_OK);
  m.header.set_job_id(kJob);
  zmq::message_t nobody(std::string("nobody"));
  const Status s = send_message(pair.router, std::move(m), &nobody);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
}

// --- Zero copy -----------------------------------------------------------------------------

TEST(MessageTest, ZeroCopyInprocReceiverSeesTheSendersMemory) {
  InprocPair pair("zero-copy");
  std::vector<float> data(8192);  // 32 KiB
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i % 97) - 3.0f;
  bool released = false;  // set by the deleter, on this thread (inproc: the receiver's close)
  std::shared_ptr<const void> keep(data.data(), [&released](const void*) { released = true; });

  OutMessage m = push_message();
  m.frames.push_back(f32_frame("x", data, std::move(keep)));
  ASSERT_OK(send_message(pair.dealer, std::move(m)));
  // Over inproc ZeroMQ hands the same buffer to the receiver: still referenced.
  EXPECT_FALSE(released);
  {
    auto in = recv_message(pair.router, kWait, true, kJob);
    ASSERT_TRUE(in.ok()) << in.status().to_string();
    ASSERT_EQ(in->num_frames(), 1u);
    EXPECT_EQ(static_cast<const void*>(in->frame_bytes(0).data()),
              static_cast<const void*>(data.data()));
    EXPECT_FALSE(released);
    std::vector<float> got(data.size());
    ASSERT_OK(in->copy_frame_f32(0, got));
    EXPECT_EQ(got, data);
  }
  EXPECT_TRUE(released);
}

TEST(MessageTest, ZeroCopyKeepaliveIsReleasedAfterTcpSendCompletes) {
  TcpPair pair;
  ASSERT_NO_FATAL_FAILURE(pair.open());

  struct Latch {
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;
  };
  auto latch = std::make_shared<Latch>();
  auto buffer = std::make_shared<std::vector<float>>(1 << 18);  // 1 MiB
  for (size_t i = 0; i < buffer->size(); ++i) (*buffer)[i] = static_cast<float>(i) * 0.001f;
  const std::vector<float> expected = *buffer;
  // The deleter may run on a ZeroMQ I/O thread: it only signals.
  std::shared_ptr<const void> keep(buffer->data(), [latch, buffer](const void*) {
    std::lock_guard<std::mutex> lock(latch->mu);
    latch->released = true;
    latch->cv.notify_all();
  });
  std::weak_ptr<const void> watch = keep;

  OutMessage m = push_message();
  m.frames.push_back(f32_frame("x", *buffer, std::move(keep)));
  ASSERT_OK(send_message(pair.dealer, std::move(m)));

  auto in = recv_message(pair.router, kWait, true, kJob);
  ASSERT_TRUE(in.ok()) << in.status().to_string();
  std::vector<float> got(expected.size());
  ASSERT_OK(in->copy_frame_f32(0, got));
  EXPECT_EQ(got, expected);
  EXPECT_NE(static_cast<const void*>(in->frame_bytes(0).data()),
            static_cast<const void*>(buffer->data()));

  std::unique_lock<std::mutex> lock(latch->mu);
  ASSERT_TRUE(latch->cv.wait_for(lock, kWait, [&] { return latch->released; }))
      << "ZeroMQ did not release the keepalive after the message was delivered";
  EXPECT_TRUE(watch.expired());
}

TEST(MessageTest, SmallFramesAreCopiedAndReleasedAtOnce) {
  InprocPair pair("small-copy");
  auto owner = std::make_shared<std::vector<float>>(std::vector<float>{1.0f, 2.0f, 3.0f});
  std::weak_ptr<const void> watch = owner;
  const std::span<const float> values(*owner);
  OutMessage m = push_message();
  m.frames.push_back(f32_frame("s", values, std::move(owner)));
  ASSERT_OK(send_message(pair.dealer, std::move(m)));
  EXPECT_TRUE(watch.expired());  // copied: the caller may reuse the memory right away
  auto in = recv_message(pair.router, kWait, true, kJob);
  ASSERT_TRUE(in.ok()) << in.status().to_string();
  std::vector<float> got(3);
  ASSERT_OK(in->copy_frame_f32(0, got));
  EXPECT_EQ(got, (std::vector<float>{1.0f, 2.0f, 3.0f}));
}

// --- Sending bad frames --------------------------------------------------------------------

TEST(MessageTest, SendRejectsBadFramesAndSendsNothing) {
  InprocPair pair("bad-send");
  const float x = 1.0f;
  std::vector<OutFrame> bad = {
      OutFrame{"invalid dtype", wire::DTYPE_INVALID, &x, 1, nullptr},
      OutFrame{"unknown dtype", static_cast<wire::DType>(77), &x, 1, nullptr},
      OutFrame{"no data", wire::DTYPE_FLOAT32, nullptr, 4, nullptr},
      OutFrame{"overflow", wire::DTYPE_FLOAT32, &x, std::numeric_limits<uint64_t>::max() / 2,
               nullptr},
  };
  for (const OutFrame& f : bad) {
    OutMessage m = push_message();
    m.frames.push_back(owned_f32_frame("fine", {1.0f}));
    m.frames.push_back(f);
    const Status s = send_message(pair.dealer, std::move(m));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << f.key << ": " << s.to_string();
    EXPECT_THAT(s.message(), HasSubstr(f.key));
  }
  // inproc: anything sent would already be queued at the router.
  auto in = recv_message(pair.router, 0ms, true, kJob);
  EXPECT_EQ(in.status().code(), StatusCode::kDeadlineExceeded) << in.status().to_string();
}

TEST(MessageTest, SendAndRecvAfterContextShutdownReturnCancelled) {
  InprocPair pair("shutdown");
  pair.ctx.shutdown();
  const Status s = send_message(pair.dealer, push_message());
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s.to_string();
  auto in = recv_message(pair.router, 1000ms, true, kJob);
  EXPECT_EQ(in.status().code(), StatusCode::kCancelled) << in.status().to_string();
}

// --- Decoding bad bytes --------------------------------------------------------------------

wire::Header valid_header() {
  wire::Header h;
  h.set_version(kProtocolVersion);
  h.set_job_id(kJob);
  h.set_kind(wire::PUSH);
  h.set_step(5);
  wire::FrameInfo* f = h.add_frames();
  f->set_key("w");
  f->set_dtype(wire::DTYPE_FLOAT32);
  f->set_count(3);
  f = h.add_frames();
  f->set_key("n");
  f->set_dtype(wire::DTYPE_INT32);
  f->set_count(2);
  return h;
}

// Parts for a header and raw frames of the given byte sizes, optionally after a routing id.
std::vector<zmq::message_t> parts_for(const std::string& header_bytes,
                                      const std::vector<size_t>& frame_sizes,
                                      const char* routing_id = nullptr) {
  std::vector<zmq::message_t> parts;
  if (routing_id != nullptr) parts.emplace_back(std::string(routing_id));
  parts.emplace_back(header_bytes.data(), header_bytes.size());
  for (size_t n : frame_sizes) {
    std::string bytes(n, '\x01');
    parts.emplace_back(bytes.data(), bytes.size());
  }
  return parts;
}
std::vector<zmq::message_t> parts_for(const wire::Header& h, const std::vector<size_t>& frame_sizes,
                                      const char* routing_id = nullptr) {
  return parts_for(h.SerializeAsString(), frame_sizes, routing_id);
}

// Decodes and expects a malformed (or foreign) rejection, counted once.
void expect_rejected(std::vector<zmq::message_t> parts, bool has_routing_id, DecodeError want,
                     const std::string& what) {
  SCOPED_TRACE(what);
  ProtocolCounters c;
  auto r = decode_message(std::move(parts), has_routing_id, kJob, &c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(decode_error_of(r.status()), want) << r.status().to_string();
  EXPECT_EQ(c.malformed.load(), want == DecodeError::kMalformed ? 1u : 0u);
  EXPECT_EQ(c.foreign.load(), want == DecodeError::kForeign ? 1u : 0u);
  EXPECT_EQ(c.messages_in.load(), 0u);
  EXPECT_FALSE(r.status().message().empty());
}

TEST(DecodeTest, AcceptsAValidMessage) {
  ProtocolCounters c;
  auto r = decode_message(parts_for(valid_header(), {12, 8}, "peer"), true, kJob, &c);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->routing_id.to_string(), "peer");
  EXPECT_EQ(r->num_frames(), 2u);
  EXPECT_EQ(r->header.step(), 5);
  EXPECT_EQ(c.messages_in.load(), 1u);
  // expected_job_id 0 accepts any job.
  wire::Header other = valid_header();
  other.set_job_id(777);
  EXPECT_TRUE(decode_message(parts_for(other, {12, 8}), false, 0).ok());
}

TEST(DecodeTest, RejectsEmptyMessages) {
  expect_rejected({}, false, DecodeError::kMalformed, "no parts");
  expect_rejected({}, true, DecodeError::kMalformed, "no parts, routing id expected");
  std::vector<zmq::message_t> only_id;
  only_id.emplace_back(std::string("peer"));
  expect_rejected(std::move(only_id), true, DecodeError::kMalformed, "routing id only");
}

TEST(DecodeTest, RejectsGarbageHeaders) {
  expect_rejected(parts_for(std::string(16, '\xff'), {}), false, DecodeError::kMalformed,
                  "0xff bytes");
  wire::Header h = valid_header();
  h.set_error(std::string(100, 'e'));  // the last field: cutting the tail cuts into it
  const std::string full = h.SerializeAsString();
  expect_rejected(parts_for(full.substr(0, full.size() - 10), {12, 8}), false,
                  DecodeError::kMalformed, "truncated header");
  // The routing id is not taken for a header.
  expect_rejected(parts_for(valid_header(), {12, 8}, "peer"), false, DecodeError::kMalformed,
                  "unexpected routing id");
}

// Protobuf logs an error for every string field with invalid UTF-8; bytes from outside must not
// reach the log that way (a flood of them would bypass the PS's rate limit).
TEST(DecodeTest, InvalidUtf8IsRejectedWithoutAWordOnStderr) {
  wire::Header h = valid_header();
  h.mutable_frames(0)->set_key("K@@K");
  std::string bytes = h.SerializeAsString();
  const size_t at = bytes.find("K@@K");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 1] = '\xff';  // not UTF-8
  bytes[at + 2] = '\xfe';
  std::fflush(stderr);
  testing::internal::CaptureStderr();
  ProtocolCounters c;
  auto r = decode_message(parts_for(bytes, {12, 8}), false, kJob, &c);
  std::fflush(stderr);
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(decode_error_of(r.status()), DecodeError::kMalformed) << r.status().to_string();
  EXPECT_EQ(c.malformed.load(), 1u);
  EXPECT_EQ(err, "");
  // The same bytes parsed by protobuf alone do log (so the check above can fail).
  testing::internal::CaptureStderr();
  wire::Header plain;
  EXPECT_FALSE(plain.ParseFromString(bytes));
  EXPECT_THAT(testing::internal::GetCapturedStderr(), HasSubstr("UTF-8"));
}

TEST(DecodeTest, WrongVersionOrJobIsForeign) {
  wire::Header h = valid_header();
  h.set_version(kProtocolVersion + 1);
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kForeign, "newer version");
  h.set_version(0);
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kForeign, "no version");
  h = valid_header();
  h.set_job_id(kJob + 1);
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kForeign, "other job");
  h.set_job_id(0);
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kForeign, "no job");
}

TEST(DecodeTest, RejectsUnknownKinds) {
  wire::Header h = valid_header();
  h.set_kind(wire::KIND_INVALID);
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kMalformed, "KIND_INVALID");
  h.set_kind(static_cast<wire::Kind>(99));
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kMalformed, "kind 99");
}

TEST(DecodeTest, RejectsFrameCountMismatch) {
  expect_rejected(parts_for(valid_header(), {12}), false, DecodeError::kMalformed, "fewer");
  expect_rejected(parts_for(valid_header(), {}), false, DecodeError::kMalformed, "none");
  expect_rejected(parts_for(valid_header(), {12, 8, 4}), false, DecodeError::kMalformed, "more");
}

TEST(DecodeTest, RejectsFrameByteSizeMismatch) {
  expect_rejected(parts_for(valid_header(), {11, 8}), false, DecodeError::kMalformed, "short");
  expect_rejected(parts_for(valid_header(), {12, 9}), false, DecodeError::kMalformed, "long");
  expect_rejected(parts_for(valid_header(), {12, 0}), false, DecodeError::kMalformed, "empty");
}

TEST(DecodeTest, RejectsInvalidDtypes) {
  wire::Header h = valid_header();
  h.mutable_frames(1)->set_dtype(wire::DTYPE_INVALID);
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kMalformed, "DTYPE_INVALID");
  h.mutable_frames(1)->set_dtype(static_cast<wire::DType>(77));
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kMalformed, "dtype 77");
}

TEST(DecodeTest, RejectsCountsWhoseByteSizeOverflows) {
  wire::Header h = valid_header();
  // (2^62 + 3) * 4 wraps around to 12 bytes: exactly the frame's size.
  h.mutable_frames(0)->set_count((uint64_t{1} << 62) + 3);
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kMalformed, "wraps to 12");
  h.mutable_frames(0)->set_count(std::numeric_limits<uint64_t>::max());
  expect_rejected(parts_for(h, {12, 8}), false, DecodeError::kMalformed, "max count");
}

TEST(DecodeTest, RandomlyCorruptedHeadersNeverCrash) {
  std::mt19937 rng(12345);
  const std::string good = valid_header().SerializeAsString();
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
    }
    if (rng() % 4 == 0) bytes.resize(rng() % (bytes.size() + 1));
    std::vector<size_t> sizes;
    const size_t nframes = rng() % 4;
    for (size_t k = 0; k < nframes; ++k) sizes.push_back(rng() % 16);
    ProtocolCounters c;
    auto r = decode_message(parts_for(bytes, sizes), false, kJob, &c);
    if (r.ok()) {
      ++accepted;
      ASSERT_EQ(r->num_frames(), static_cast<size_t>(r->header.frames_size()));
      for (size_t i = 0; i < r->num_frames(); ++i) {
        ASSERT_EQ(r->frame_bytes(i).size(),
                  r->frame_info(i).count() * dtype_size(r->frame_info(i).dtype()));
      }
    } else {
      ASSERT_NE(decode_error_of(r.status()), DecodeError::kNone) << r.status().to_string();
      ASSERT_EQ(c.malformed.load() + c.foreign.load(), 1u);
    }
  }
  EXPECT_LT(accepted, 3000);
}

// --- Reading frames ------------------------------------------------------------------------

TEST(InMessageTest, CopyFrameChecksIndexDtypeAndCount) {
  auto r = decode_message(parts_for(valid_header(), {12, 8}), false, kJob);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<float> three(3);
  std::vector<float> four(4);
  std::vector<int32_t> two(2);
  EXPECT_OK(r->copy_frame_f32(0, three));
  EXPECT_OK(r->copy_frame_i32(1, two));
  EXPECT_EQ(r->copy_frame_f32(0, four).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r->copy_frame_f32(1, std::span<float>(three.data(), 2)).code(),
            StatusCode::kInvalidArgument);  // frame 1 is int32
  EXPECT_EQ(r->copy_frame_f32(2, three).code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r->copy_frame_f32(0, four).message(), HasSubstr("'w'"));
}

// --- Receiving -----------------------------------------------------------------------------

TEST(MessageTest, RecvTimesOutWithDeadlineExceeded) {
  TcpPair pair;
  ASSERT_NO_FATAL_FAILURE(pair.open());
  const auto start = std::chrono::steady_clock::now();
  auto r = recv_message(pair.router, 50ms, true, kJob);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().to_string();
  EXPECT_GE(elapsed, 50ms);   // never returns before its deadline
  EXPECT_LT(elapsed, kWait);  // and does not hang
}

TEST(MessageTest, RecvCountsForeignMessagesAndKeepsWorking) {
  TcpPair pair;
  ASSERT_NO_FATAL_FAILURE(pair.open());
  ProtocolCounters c;
  ASSERT_OK(send_message(pair.dealer, push_message(kJob + 1)));
  ASSERT_OK(send_message(pair.dealer, push_message(kJob)));
  auto first = recv_message(pair.router, kWait, true, kJob, &c);
  EXPECT_EQ(decode_error_of(first.status()), DecodeError::kForeign) << first.status().to_string();
  EXPECT_THAT(first.status().message(), HasSubstr("job id 43"));
  auto second = recv_message(pair.router, kWait, true, kJob, &c);
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  EXPECT_EQ(second->header.job_id(), kJob);
  EXPECT_EQ(c.foreign.load(), 1u);
  EXPECT_EQ(c.malformed.load(), 0u);
  EXPECT_EQ(c.messages_in.load(), 1u);
}

TEST(MessageTest, RecvCountsMalformedMessagesFromRawPeers) {
  InprocPair pair("raw-peer");
  zmq::message_t garbage(std::string("\xff\xff\xff\xff"));
  ASSERT_TRUE(pair.dealer.send(garbage, zmq::send_flags::none));
  ProtocolCounters c;
  auto r = recv_message(pair.router, kWait, true, kJob, &c);
  EXPECT_EQ(decode_error_of(r.status()), DecodeError::kMalformed) << r.status().to_string();
  EXPECT_EQ(c.malformed.load(), 1u);
  EXPECT_EQ(c.bytes_in.load(), 4u);
}

// --- Transport helpers ---------------------------------------------------------------------

TEST(TransportTest, Endpoints) {
  EXPECT_EQ(bind_endpoint("localhost", 2222), "tcp://127.0.0.1:2222");
  EXPECT_EQ(bind_endpoint("127.0.0.1", 2222), "tcp://127.0.0.1:2222");
  EXPECT_EQ(bind_endpoint("127.0.0.5", 2223), "tcp://127.0.0.5:2223");
  EXPECT_EQ(bind_endpoint("::1", 2222), "tcp://[::1]:2222");
  EXPECT_EQ(bind_endpoint("[::1]", 2222), "tcp://[::1]:2222");
  EXPECT_EQ(bind_endpoint("10.0.0.4", 2222), "tcp://*:2222");
  EXPECT_EQ(bind_endpoint("ps0.example", 2222), "tcp://*:2222");
  EXPECT_EQ(bind_endpoint("fe80::1", 2222), "tcp://*:2222");
  EXPECT_EQ(connect_endpoint("ps0.example", 2222), "tcp://ps0.example:2222");
  EXPECT_EQ(connect_endpoint("10.0.0.4", 2222), "tcp://10.0.0.4:2222");
  EXPECT_EQ(connect_endpoint("fe80::1", 2222), "tcp://[fe80::1]:2222");
  EXPECT_EQ(connect_endpoint("[::1]", 2222), "tcp://[::1]:2222");
  EXPECT_TRUE(is_loopback_host("LocalHost"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("0:0:0:0:0:0:0:1"));
  EXPECT_FALSE(is_loopback_host("128.0.0.1"));
  EXPECT_FALSE(is_loopback_host("127.example.com"));
  EXPECT_FALSE(is_loopback_host("::2"));
}

TEST(TransportTest, BindOnAPortInUseNamesThePort) {
  zmq::context_t ctx;
  auto first = bind_socket(ctx, zmq::socket_type::router, "127.0.0.1", 0, "ps/0 service");
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  auto port = bound_port(*first);
  ASSERT_TRUE(port.ok()) << port.status().to_string();
  const std::string p = std::to_string(*port);

  auto second = bind_socket(ctx, zmq::socket_type::router, "127.0.0.1", *port, "ps/1 service");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("address 127.0.0.1:" + p + " (ps/1 service)"));
  EXPECT_THAT(second.status().message(), HasSubstr("already in use"));
  EXPECT_THAT(second.status().message(), HasSubstr("ss -ltnp 'sport = :" + p + "'"));
}

TEST(TransportTest, BadAddressesAreInvalidArguments) {
  zmq::context_t ctx;
  EXPECT_EQ(bind_socket(ctx, zmq::socket_type::router, "", 2222, "x").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bind_socket(ctx, zmq::socket_type::router, "localhost", 70000, "x").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(connect_socket(ctx, zmq::socket_type::dealer, "", 2222, "x").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(connect_socket(ctx, zmq::socket_type::dealer, "localhost", 0, "x").status().code(),
            StatusCode::kInvalidArgument);
  SocketOptions zero_id;
  zero_id.routing_id = std::string("\0id", 3);
  EXPECT_EQ(connect_socket(ctx, zmq::socket_type::dealer, "localhost", 2222, "x", zero_id)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST(TransportTest, TransportChoicesAndLocalEndpoints) {
  EXPECT_EQ(*parse_transport("auto"), Transport::kAuto);
  EXPECT_EQ(*parse_transport("tcp"), Transport::kTcp);
  EXPECT_EQ(*parse_transport("ipc"), Transport::kIpc);
  EXPECT_EQ(*parse_transport("shm"), Transport::kShm);
  auto bad = parse_transport("rdma");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("--transport=rdma is not a choice"));
  EXPECT_THAT(bad.status().message(), HasSubstr("tcp, ipc or shm"));
  EXPECT_STREQ(transport_name(Transport::kIpc), "ipc");
  EXPECT_STREQ(transport_name(Transport::kShm), "shm");

  EXPECT_EQ(local_endpoint("127.0.0.1", 2222), "ipc://@pstrain/127.0.0.1:2222");
  EXPECT_EQ(local_endpoint("LocalHost", 2222), "ipc://@pstrain/127.0.0.1:2222");
  EXPECT_EQ(local_endpoint("[::1]", 2222), "ipc://@pstrain/::1:2222");
  EXPECT_EQ(local_endpoint("Node-7.Example", 80), "ipc://@pstrain/node-7.example:80");
  // A host too long for a socket name: a fixed-size hash, different per host.
  const std::string a = local_endpoint(std::string(200, 'a'), 2222);
  const std::string b = local_endpoint(std::string(199, 'a') + "b", 2222);
  EXPECT_LE(a.size(), std::string("ipc://").size() + 107);
  EXPECT_NE(a, b);
  EXPECT_THAT(a, HasSubstr(":2222"));

  EXPECT_TRUE(is_this_machine("127.0.0.1"));
  EXPECT_TRUE(is_this_machine("localhost"));
  EXPECT_TRUE(is_this_machine("[::1]"));
  EXPECT_FALSE(is_this_machine("192.0.2.1"));  // TEST-NET-1: on no interface here
  EXPECT_FALSE(is_this_machine("no-such-host.invalid"));
  EXPECT_FALSE(is_this_machine(""));
}

TEST(TransportTest, AConnectionOverTheLocalEndpointCarriesMessagesAndSaysIpc) {
  zmq::context_t ctx;
  auto router = bind_socket(ctx, zmq::socket_type::router, "127.0.0.1", 0, "ps/0 service");
  ASSERT_TRUE(router.ok()) << router.status().to_string();
  auto port = bound_port(*router);
  ASSERT_TRUE(port.ok());
  ASSERT_TRUE(bind_local_endpoint(*router, "127.0.0.1", *port, "ps/0 service").ok());
  for (Transport t : {Transport::kIpc, Transport::kTcp}) {
    SCOPED_TRACE(transport_name(t));
    SocketOptions so;
    so.transport = t;
    so.routing_id = std::string("client-") + transport_name(t);
    auto dealer = connect_socket(ctx, zmq::socket_type::dealer, "localhost", *port, "w", so);
    ASSERT_TRUE(dealer.ok()) << dealer.status().to_string();
    OutMessage m;
    m.header.set_kind(wire::HEARTBEAT);
    m.header.set_job_id(kJob);
    m.header.set_sender(0);
    ASSERT_TRUE(send_message(*dealer, std::move(m)).ok());
    auto in = recv_message(*router, kWait, true, kJob);
    ASSERT_TRUE(in.ok()) << in.status().to_string();
    EXPECT_EQ(in->header.kind(), wire::HEARTBEAT);
    EXPECT_EQ(connection_transport(in->source_fd), transport_name(t));
  }
  // A second server on the same host and port cannot take the local name either.
  zmq::socket_t other(ctx, zmq::socket_type::router);
  Status taken = bind_local_endpoint(other, "127.0.0.1", *port, "ps/1 service");
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.code(), StatusCode::kUnavailable);
  EXPECT_THAT(taken.message(), HasSubstr("ipc://@pstrain/127.0.0.1:" + std::to_string(*port)));
  EXPECT_THAT(taken.message(), HasSubstr("already in use"));
}

TEST(TransportTest, PickFreeTcpPortsGivesDistinctBindablePorts) {
  auto ports = pick_free_tcp_ports(5);
  ASSERT_TRUE(ports.ok()) << ports.status().to_string();
  ASSERT_EQ(ports->size(), 5u);
  EXPECT_EQ(std::set<int>(ports->begin(), ports->end()).size(), 5u);
  zmq::context_t ctx;
  std::vector<zmq::socket_t> held;
  for (int port : *ports) {
    EXPECT_GT(port, 0);
    EXPECT_LE(port, 65535);
    // Racy in principle (see transport.h); another process taking one of them is unlikely.
    auto s = bind_socket(ctx, zmq::socket_type::router, "127.0.0.1", port, "picked port");
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    auto bound = bound_port(*s);
    ASSERT_TRUE(bound.ok());
    EXPECT_EQ(*bound, port);
    held.push_back(std::move(s).value());
  }
  auto one = pick_free_tcp_port();
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  EXPECT_GT(*one, 0);
}

}  // namespace
}  // namespace pstrain
