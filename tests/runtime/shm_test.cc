// Tests for runtime/wire/shm.h (segments: create, attach, refusals, peer credentials) and the
// shared-memory frames of runtime/wire/message.h (bit-exact through a segment, inline when a
// region is full, named in place when already in the region, back to back when packed,
// malformed when a message points outside its segment or has none).
#include "runtime/wire/shm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <vector>

#include "runtime/wire/message.h"
#include "tests/runtime/inproc_pair.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

using ::testing::HasSubstr;
constexpr uint64_t kJob = 42;
constexpr auto kWait = std::chrono::milliseconds(10000);  // generous: only a hang hits it

TEST(ShmSegmentTest, AnAttachedSegmentSharesTheCreatorsBytes) {
  auto a = ShmSegment::create(8192);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ((*a)->bytes().size(), kShmHeaderBytes + 8192);
  EXPECT_EQ((*a)->pid(), static_cast<uint32_t>(getpid()));
  EXPECT_NE((*a)->token(), 0u);
  auto b = ShmSegment::attach((*a)->pid(), (*a)->fd(), (*a)->token());
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  ASSERT_EQ((*b)->bytes().size(), (*a)->bytes().size());
  EXPECT_NE((*b)->bytes().data(), (*a)->bytes().data());  // a mapping of its own
  const float v = 3.25f;
  std::memcpy((*a)->bytes().data() + kShmHeaderBytes + 100, &v, sizeof v);
  float got = 0;
  std::memcpy(&got, (*b)->bytes().data() + kShmHeaderBytes + 100, sizeof got);
  EXPECT_EQ(got, v);
  // Nothing of it has a name: /dev/shm holds no pstrain file.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    EXPECT_EQ(e.path().filename().string().find("pstrain"), std::string::npos) << e.path();
  }
  // The creator's segment is named by its memfd in /proc.
  char target[128] = {};
  const std::string link = "/proc/self/fd/" + std::to_string((*a)->fd());
  ASSERT_GT(readlink(link.c_str(), target, sizeof target - 1), 0);
  EXPECT_THAT(std::string(target), HasSubstr("memfd:pstrain-shm"));
}

TEST(ShmSegmentTest, AttachRefusesAWrongTokenAnotherFileAndAMissingDescriptor) {
  auto a = ShmSegment::create(4096);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  const uint32_t pid = (*a)->pid();

  auto wrong = ShmSegment::attach(pid, (*a)->fd(), (*a)->token() + 1);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("token"));

  testing_util::TempDir tmp("pstrain_shm");
  const std::string file = (std::filesystem::path(tmp.path()) / "not-a-segment").string();
  const int fd = open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  auto other = ShmSegment::attach(pid, fd, (*a)->token());
  close(fd);
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(other.status().message(), HasSubstr("is not a pstrain segment"));
  EXPECT_THAT(other.status().message(), HasSubstr(file));

  auto missing = ShmSegment::attach(pid, 1 << 20, (*a)->token());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(),
              HasSubstr("process " + std::to_string(pid) + " (descriptor 1048576)"));
  EXPECT_FALSE(ShmSegment::attach(0, (*a)->fd(), (*a)->token()).ok());
}

TEST(ShmSegmentTest, PeerPidReadsAUnixSocketsCredentials) {
  int sv[2] = {-1, -1};
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  EXPECT_EQ(peer_pid(sv[0]), getpid());
  int pipe_fds[2] = {-1, -1};
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  EXPECT_EQ(peer_pid(pipe_fds[0]), -1);  // not a socket
  EXPECT_EQ(peer_pid(-1), -1);
  for (int fd : {sv[0], sv[1], pipe_fds[0], pipe_fds[1]}) close(fd);
}

using Pair = testing_util::InprocPair;

ShmResolver resolver_of(const std::shared_ptr<ShmSegment>& seg) {
  return [seg](const InMessage&) -> Result<ShmView> {
    return ShmView{.bytes = seg->bytes(), .keep = seg};
  };
}

OutMessage push_with(std::span<const float> a, std::span<const int32_t> b) {
  OutMessage m;
  m.header.set_kind(wire::PUSH);
  m.header.set_job_id(kJob);
  m.header.set_sender(1);
  m.frames.push_back(f32_frame("a", a, nullptr));
  m.frames.push_back(i32_frame("b", b, nullptr));
  return m;
}

TEST(ShmMessageTest, FramesThroughASegmentArriveBitExactAndAreCounted) {
  auto seg = ShmSegment::create(1 << 20);
  ASSERT_TRUE(seg.ok()) << seg.status().to_string();
  std::vector<float> a(10000);
  std::iota(a.begin(), a.end(), -0.5f);
  a[7] = -0.0f;
  std::vector<int32_t> b = {1, -2, 3};
  // A 16-bit frame (--compress=bf16) travels the same way.
  std::vector<uint16_t> words(a.size());
  narrow_floats(FloatFormat::kBFloat16, a, words);
  Pair pair("shm-exact");
  OutMessage m = push_with(a, b);
  m.frames.push_back(half_frame("c", FloatFormat::kBFloat16, words, nullptr));
  m.shm = {.base = (*seg)->bytes().data(), .offset = kShmHeaderBytes, .size = 1 << 20};
  ProtocolCounters out, in;
  ASSERT_TRUE(send_message(pair.dealer, std::move(m), nullptr, &out).ok());
  const ShmResolver resolve = resolver_of(*seg);
  auto r = recv_message(pair.router, kWait, true, kJob, &in, &resolve);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->num_frames(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(r->frame_info(i).in_shm()) << i;
    EXPECT_EQ(r->frames[i].size(), 0u) << "the ZeroMQ part of frame " << i << " is empty";
    EXPECT_GE(r->frame_info(i).shm_offset(), kShmHeaderBytes);
    EXPECT_EQ(r->frame_info(i).shm_offset() % 64, 0u);
  }
  std::vector<float> got_a(a.size());
  ASSERT_TRUE(r->copy_frame_f32(0, got_a).ok());
  EXPECT_EQ(std::memcmp(got_a.data(), a.data(), a.size() * sizeof(float)), 0);
  std::vector<int32_t> got_b(b.size());
  ASSERT_TRUE(r->copy_frame_i32(1, got_b).ok());
  EXPECT_EQ(got_b, b);
  EXPECT_EQ(r->frame_info(2).dtype(), wire::DTYPE_BFLOAT16);
  ASSERT_EQ(r->frame_bytes(2).size(), words.size() * sizeof(uint16_t));
  EXPECT_EQ(std::memcmp(r->frame_bytes(2).data(), words.data(), words.size() * 2), 0);
  // The frames' bytes count as sent and received, as they would inline.
  EXPECT_EQ(out.bytes_out.load(), in.bytes_in.load());
  EXPECT_GT(in.bytes_in.load(), a.size() * sizeof(float) + b.size() * sizeof(int32_t));
}

TEST(ShmMessageTest, FramesThatDoNotFitTheRegionTravelInline) {
  auto seg = ShmSegment::create(1 << 16);
  ASSERT_TRUE(seg.ok()) << seg.status().to_string();
  std::vector<float> a(1000, 1.5f);  // 4000 bytes: fits in 4096
  std::vector<int32_t> b(100, 7);    // 400 more: does not
  Pair pair("shm-inline");
  OutMessage m = push_with(a, b);
  m.shm = {.base = (*seg)->bytes().data(), .offset = kShmHeaderBytes, .size = 4096};
  ASSERT_TRUE(send_message(pair.dealer, std::move(m)).ok());
  const ShmResolver resolve = resolver_of(*seg);
  auto r = recv_message(pair.router, kWait, true, kJob, nullptr, &resolve);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->frame_info(0).in_shm());
  EXPECT_FALSE(r->frame_info(1).in_shm());
  EXPECT_EQ(r->frames[1].size(), b.size() * sizeof(int32_t));
  std::vector<float> got_a(a.size());
  ASSERT_TRUE(r->copy_frame_f32(0, got_a).ok());
  EXPECT_EQ(got_a, a);
  std::vector<int32_t> got_b(b.size());
  ASSERT_TRUE(r->copy_frame_i32(1, got_b).ok());
  EXPECT_EQ(got_b, b);
}

// Parts for a header with one float32 frame of `count` elements said to be in shared memory
// at `offset`, its ZeroMQ part holding `part_bytes` bytes.
std::vector<zmq::message_t> shm_parts(uint64_t count, uint64_t offset, size_t part_bytes = 0) {
  wire::Header h;
  h.set_version(kProtocolVersion);
  h.set_job_id(kJob);
  h.set_kind(wire::PUSH);
  wire::FrameInfo* f = h.add_frames();
  f->set_key("w");
  f->set_dtype(wire::DTYPE_FLOAT32);
  f->set_count(count);
  f->set_in_shm(true);
  f->set_shm_offset(offset);
  std::vector<zmq::message_t> parts;
  const std::string bytes = h.SerializeAsString();
  parts.emplace_back(bytes.data(), bytes.size());
  parts.emplace_back(std::string(part_bytes, 'x'));
  return parts;
}

TEST(ShmMessageTest, FramesAlreadyInTheRegionAreNamedWhereTheyLieAndNotCopied) {
  auto seg = ShmSegment::create(1 << 16);
  ASSERT_TRUE(seg.ok()) << seg.status().to_string();
  std::byte* base = (*seg)->bytes().data();
  // Two frames back to back at an offset that is no multiple of 64, as a model's flat layout
  // puts its variables; the 64-byte boundary where a copy would go holds a sentinel.
  constexpr uint64_t kAt = kShmHeaderBytes + 12;
  auto* a = reinterpret_cast<float*>(base + kAt);
  std::iota(a, a + 5, 1.f);
  auto* b = reinterpret_cast<int32_t*>(base + kAt + 5 * sizeof(float));
  std::iota(b, b + 3, -1);
  const std::vector<std::byte> before((*seg)->bytes().begin(), (*seg)->bytes().end());
  Pair pair("shm-in-place");
  OutMessage m = push_with(std::span<const float>(a, 5), std::span<const int32_t>(b, 3));
  m.shm = {.base = base, .offset = kShmHeaderBytes, .size = 4096};
  ASSERT_TRUE(send_message(pair.dealer, std::move(m)).ok());
  EXPECT_TRUE(std::equal(before.begin(), before.end(), (*seg)->bytes().begin()))
      << "sending wrote into the segment";
  const ShmResolver resolve = resolver_of(*seg);
  auto r = recv_message(pair.router, kWait, true, kJob, nullptr, &resolve);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->num_frames(), 2u);
  EXPECT_TRUE(r->frame_info(0).in_shm());
  EXPECT_EQ(r->frame_info(0).shm_offset(), kAt);
  EXPECT_EQ(r->frame_info(1).shm_offset(), kAt + 5 * sizeof(float));
  // Copied to where it already is: nothing to do, the values stay.
  ASSERT_TRUE(r->copy_frame_f32(0, std::span<float>(a, 5)).ok());
  EXPECT_EQ(std::vector<float>(a, a + 5), (std::vector<float>{1, 2, 3, 4, 5}));
  // Copied onto an overlapping place (a peer may name any offsets): moved, not garbled.
  ASSERT_TRUE(r->copy_frame_f32(0, std::span<float>(a + 1, 5)).ok());
  EXPECT_EQ(std::vector<float>(a + 1, a + 6), (std::vector<float>{1, 2, 3, 4, 5}));

  // A frame outside the region among them: every frame is copied into it, as before.
  std::vector<int32_t> outside = {7, 8, 9};
  OutMessage mixed = push_with(std::span<const float>(a, 5), outside);
  mixed.shm = {.base = base, .offset = kShmHeaderBytes + 4096, .size = 4096};
  ASSERT_TRUE(send_message(pair.dealer, std::move(mixed)).ok());
  auto r2 = recv_message(pair.router, kWait, true, kJob, nullptr, &resolve);
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  EXPECT_EQ(r2->frame_info(0).shm_offset(), kShmHeaderBytes + 4096);
  EXPECT_EQ(r2->frame_info(1).shm_offset() % 64, 0u);
  std::vector<int32_t> got(3);
  ASSERT_TRUE(r2->copy_frame_i32(1, got).ok());
  EXPECT_EQ(got, outside);
}

// A BulkCopy that counts its calls and copies as memcpy does.
int bulk_copies = 0;
void counting_copy(std::byte* dst, const std::byte* src, size_t bytes) {
  ++bulk_copies;
  std::memcpy(dst, src, bytes);
}

TEST(ShmMessageTest, TheCallersBulkCopyMakesTheCopiesThatDoNotOverlap) {
  auto seg = ShmSegment::create(1 << 16);
  ASSERT_TRUE(seg.ok()) << seg.status().to_string();
  std::byte* base = (*seg)->bytes().data();
  const std::vector<float> a = {1.5f, -2.f, 3.f, 4.f, 5.f};
  const std::vector<int32_t> b = {4, 5, 6};
  Pair pair("shm-bulk-copy");
  // Into the region: one call per frame copied.
  bulk_copies = 0;
  OutMessage m = push_with(a, b);
  m.shm = {.base = base, .offset = kShmHeaderBytes, .size = 4096, .copy = counting_copy};
  ASSERT_TRUE(send_message(pair.dealer, std::move(m)).ok());
  EXPECT_EQ(bulk_copies, 2);
  const ShmResolver resolve = resolver_of(*seg);
  auto r = recv_message(pair.router, kWait, true, kJob, nullptr, &resolve);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // Out of it into the caller's buffer: the caller's copy.
  bulk_copies = 0;
  std::vector<float> got(a.size());
  ASSERT_TRUE(r->copy_frame_f32(0, got, counting_copy).ok());
  EXPECT_EQ(got, a);
  EXPECT_EQ(bulk_copies, 1);
  // Onto bytes that overlap the frame's: moved, never given to the caller's copy.
  auto* in_region = reinterpret_cast<float*>(base + r->frame_info(0).shm_offset());
  ASSERT_TRUE(r->copy_frame_f32(0, std::span<float>(in_region + 1, a.size()), counting_copy).ok());
  EXPECT_EQ(std::vector<float>(in_region + 1, in_region + 1 + a.size()), a);
  EXPECT_EQ(bulk_copies, 1);
}

TEST(ShmMessageTest, PackedFramesLieBackToBack) {
  auto seg = ShmSegment::create(1 << 16);
  ASSERT_TRUE(seg.ok()) << seg.status().to_string();
  const std::vector<float> a = {1.5f, -2.f, 3.f};  // 12 bytes
  const std::vector<int32_t> b = {4, 5, 6, 7, 8};
  Pair pair("shm-packed");
  OutMessage m = push_with(a, b);
  m.shm = {.base = (*seg)->bytes().data(), .offset = kShmHeaderBytes, .size = 4096, .packed = true};
  ASSERT_TRUE(send_message(pair.dealer, std::move(m)).ok());
  const ShmResolver resolve = resolver_of(*seg);
  auto r = recv_message(pair.router, kWait, true, kJob, nullptr, &resolve);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->frame_info(0).shm_offset(), kShmHeaderBytes);
  EXPECT_EQ(r->frame_info(1).shm_offset(), kShmHeaderBytes + 12);
  std::vector<int32_t> got(b.size());
  ASSERT_TRUE(r->copy_frame_i32(1, got).ok());
  EXPECT_EQ(got, b);
}

TEST(ShmMessageTest, MessagesPointingOutsideTheirSegmentOrWithoutOneAreMalformed) {
  auto seg = ShmSegment::create(4096);
  ASSERT_TRUE(seg.ok()) << seg.status().to_string();
  const uint64_t size = (*seg)->bytes().size();
  const ShmResolver resolve = resolver_of(*seg);
  const ShmResolver refuse = [](const InMessage&) -> Result<ShmView> {
    return invalid_argument("no segment of process 7");
  };
  struct Case {
    const char* what;
    std::vector<zmq::message_t> parts;
    const ShmResolver* shm;
    const char* says;
  };
  std::vector<Case> cases;
  cases.push_back({"no resolver", shm_parts(4, 64), nullptr, "without a segment"});
  cases.push_back({"refused", shm_parts(4, 64), &refuse, "no segment of process 7"});
  cases.push_back({"past the end", shm_parts(4, size - 8), &resolve, "outside the shared-memory"});
  cases.push_back({"offset overflows", shm_parts(4, ~uint64_t{0} - 2), &resolve, "outside"});
  cases.push_back({"too many elements", shm_parts(size, 0), &resolve, "outside"});
  cases.push_back({"bytes inline too", shm_parts(4, 64, 16), &resolve, "its frame holds 16"});
  for (Case& c : cases) {
    SCOPED_TRACE(c.what);
    ProtocolCounters counters;
    auto r = decode_message(std::move(c.parts), false, kJob, &counters, c.shm);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(decode_error_of(r.status()), DecodeError::kMalformed) << r.status().to_string();
    EXPECT_THAT(r.status().message(), HasSubstr(c.says));
    EXPECT_EQ(counters.malformed.load(), 1u);
  }
  // The last four bytes of the segment are fine.
  auto ok = decode_message(shm_parts(1, size - 4), false, kJob, nullptr, &resolve);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->frame_bytes(0).size(), 4u);
}

}  // namespace
}  // namespace pstrain
