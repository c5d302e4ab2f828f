// A PUSH in parts (PsClient::push_part, Header.more_parts): what a worker with --overlap sends
// while backward runs. Against real parameter servers over TCP the parts, sent in backward's
// order (the last layer's chunks first), are applied exactly as one whole push (in float32 and
// in 16 bits); a PS refuses a last part whose earlier parts it does not hold and a part with
// more chunks than it holds; and the client sends the whole push again when a PS says it lost
// the parts. A push striped over several connections (ClientOptions::push_stripes) is applied
// as the whole push too, whichever of its parts comes first; a NaN or an Inf in any part or
// stripe has the whole push refused (parts are checked as they come). A reply in parts
// (ClientOptions::reply_part_bytes) fills the parameters with the same bits as a whole one,
// answered at once or parked; the client asks again when a part is missing and refuses parts
// that do not tile its chunks.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <future>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ps/client.h"
#include "ps/server.h"
#include "runtime/wire/half.h"
#include "runtime/wire/transport.h"
#include "tests/ps/server_fixture.h"
#include "tests/sgd_config.h"

namespace pstrain {
namespace {

using std::chrono::milliseconds;
using testing_util::ServerFixture;
constexpr uint64_t kJob = ServerFixture::kJob;

// Four variables as a model lays them out (one layer each), split into chunks of at most 2048
// elements: several chunks per variable, and over two servers chunks of one variable on both.
std::vector<VariableSpec> four_variables() {
  return {{"a", {3000}, 0, {}},
          {"b", {5000}, 3000, {}},
          {"c", {700}, 8000, {}},
          {"d", {2500}, 8700, {}}};
}
constexpr size_t kCount = 11200;
// What backward reports, layer by layer from the last (Model::GradientsReady): the first
// offset of each variable but the first.
const std::vector<int64_t> kReady = {8700, 8000, 3000};

std::unique_ptr<PsClient> tcp_client(zmq::context_t& ctx, const std::vector<HostPort>& ps,
                                     const Placement& p, int worker, uint64_t min_part_bytes = 0,
                                     FloatFormat format = FloatFormat::kFloat32, int stripes = 1,
                                     uint64_t reply_part_bytes = 0) {
  ClientOptions co;
  co.reply_part_bytes = reply_part_bytes;
  co.push_stripes = stripes;
  co.min_stripe_bytes = 1024;  // (the test's pushes are a few KB per server)
  co.worker = worker;
  co.job_id = kJob;
  co.connect_timeout = milliseconds(10000);
  co.reply_timeout = milliseconds(10000);
  co.transport = Transport::kTcp;  // (kAuto would choose shared memory: nothing to send early)
  co.min_push_part_bytes = min_part_bytes;
  co.compression = format;
  auto c = PsClient::connect(ctx, ps, p, co);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return c.ok() ? std::move(c).value() : nullptr;
}

// Two real parameter servers on 127.0.0.1 for two workers, the four variables placed over
// them in chunks of 2048 elements, and a context for the workers' sockets (destroyed before
// the servers, after the workers a test declares later).
struct TwoServers {
  ServerFixture ps0{{.ps_index = 0, .num_ps = 2, .num_workers = 2}};
  ServerFixture ps1{{.ps_index = 1, .num_ps = 2, .num_workers = 2}};
  std::vector<HostPort> servers = {{"127.0.0.1", ps0.port()}, {"127.0.0.1", ps1.port()}};
  Placement p = place_variables(four_variables(), 2, /*max_chunk_elements=*/2048);
  zmq::context_t ctx{1};
  bool ok() const { return ps0.ok() && ps1.ok(); }
};

// The end of a test with two servers and two workers: each server applied `applied`
// gradients and saw no bad message; both workers say DONE and both servers end.
void end_two_servers(PsClient& a, PsClient& b, ServerFixture& ps0, ServerFixture& ps1,
                     int64_t applied) {
  for (int ps = 0; ps < 2; ++ps) {
    auto stats = a.status(ps);
    ASSERT_TRUE(stats.ok()) << stats.status().to_string();
    EXPECT_EQ(stats->gradients_applied(), applied) << "ps " << ps;
    EXPECT_EQ(stats->bad_messages(), 0) << "ps " << ps;
  }
  ASSERT_TRUE(a.done().ok());
  ASSERT_TRUE(b.done().ok());
  EXPECT_TRUE(ps0.finish().ok());
  EXPECT_TRUE(ps1.finish().ok());
}

// The parts push_part() sends for kReady: per PS, one for each report that finds chunks of it
// not sent yet holding at least min_bytes.
uint64_t expected_parts(const Placement& p, uint64_t min_bytes) {
  uint64_t parts = 0;
  for (const auto& mine : p.chunks_of_ps) {
    std::vector<bool> sent(mine.size(), false);
    for (int64_t from : kReady) {
      uint64_t bytes = 0;
      for (size_t k = 0; k < mine.size(); ++k) {
        const Chunk& c = p.chunks[static_cast<size_t>(mine[k])];
        if (!sent[k] && c.flat_offset >= from) bytes += static_cast<uint64_t>(c.count) * 4;
      }
      if (bytes == 0 || bytes < min_bytes) continue;
      for (size_t k = 0; k < mine.size(); ++k) {
        if (p.chunks[static_cast<size_t>(mine[k])].flat_offset >= from) sent[k] = true;
      }
      ++parts;
    }
  }
  return parts;
}

void parts_equal_a_whole_push(uint64_t min_part_bytes, uint64_t at_least_parts,
                              FloatFormat format = FloatFormat::kFloat32, int stripes = 1) {
  SCOPED_TRACE(std::string(compression_name(format)) + ", " + std::to_string(stripes) + " stripes");
  // Two servers, two asynchronous workers: worker 0 pushes in parts, worker 1 whole, in turn.
  TwoServers two;
  ASSERT_TRUE(two.ok());
  auto& [ps0, ps1, servers, p, ctx] = two;
  ASSERT_GT(p.chunks_of_ps[0].size(), 2u);
  ASSERT_GT(p.chunks_of_ps[1].size(), 2u);
  auto w0 = tcp_client(ctx, servers, p, 0, min_part_bytes, format, stripes);
  auto w1 = tcp_client(ctx, servers, p, 1, 0, format);
  ASSERT_TRUE(w0 && w1);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_TRUE(w1->hello(p.hash).ok());
  constexpr int kSteps = 6;
  std::vector<float> expected(kCount);
  for (size_t j = 0; j < kCount; ++j) expected[j] = static_cast<float>(j % 97) / 97.f;
  ASSERT_TRUE(w0->init(testing_util::sgd_config(false, 1, 2, kSteps, p.hash, 1.0f), expected).ok());

  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.f, 0.1f);
  std::vector<float> params(kCount), grads(kCount);
  const uint64_t per_push = expected_parts(p, min_part_bytes);
  EXPECT_GE(per_push, at_least_parts);
  for (int step = 0; step < kSteps; ++step) {
    PsClient& w = step % 2 == 0 ? *w0 : *w1;
    auto served = w.pull(params, PsSteps{0, 0});
    ASSERT_TRUE(served.ok()) << served.status().to_string();
    for (size_t j = 0; j < kCount; ++j) {
      ASSERT_EQ(std::bit_cast<uint32_t>(params[j]), std::bit_cast<uint32_t>(expected[j]))
          << "step " << step << " element " << j;
    }
    for (float& g : grads) g = dist(rng);
    const uint64_t bytes_before = w.bytes_sent();
    if (step % 2 == 0) {
      const uint64_t before = w0->push_parts_sent();
      for (int64_t from : kReady) w0->push_part(grads, *served, from, nullptr);
      EXPECT_EQ(w0->push_parts_sent() - before, per_push);
    }
    auto pushed = w.push(grads, *served, nullptr);
    ASSERT_TRUE(pushed.ok()) << pushed.status().to_string();
    EXPECT_TRUE(pushed->accepted);
    // Each gradient value went once (a server that lost the parts would get them again).
    const size_t value_bytes = format == FloatFormat::kFloat32 ? 4 : 2;
    const uint64_t sent = w.bytes_sent() - bytes_before;
    EXPECT_GE(sent, kCount * value_bytes);
    EXPECT_LT(sent, kCount * value_bytes + (step % 2 == 0 ? 2048 * stripes : 2048))
        << "step " << step;
    // SGD with learning rate 1 on what travelled (16 bits: the widened narrow values).
    std::vector<float> applied = grads;
    if (format != FloatFormat::kFloat32) {
      std::vector<uint16_t> words(kCount);
      narrow_floats(format, grads, words);
      widen_halves(format, reinterpret_cast<const std::byte*>(words.data()), applied);
    }
    for (size_t j = 0; j < kCount; ++j) expected[j] -= 1.0f * applied[j];
  }
  EXPECT_EQ(w1->push_parts_sent(), 0u);
  EXPECT_EQ(w1->push_stripes_sent(), 0u);
  // Striped: every push of w0 to each server went over more than one connection.
  if (stripes > 1) {
    EXPECT_GE(w0->push_stripes_sent(), static_cast<uint64_t>(kSteps));
  }
  auto last = w1->pull(params, PsSteps{0, 0});
  ASSERT_TRUE(last.ok()) << last.status().to_string();
  for (size_t j = 0; j < kCount; ++j) {
    ASSERT_EQ(std::bit_cast<uint32_t>(params[j]), std::bit_cast<uint32_t>(expected[j])) << j;
  }
  end_two_servers(*w0, *w1, ps0, ps1, kSteps);
}

TEST(PushParts, PartsSentInBackwardsOrderAreAppliedExactlyAsOneWholePush) {
  parts_equal_a_whole_push(0, 4);  // both servers get parts
}

TEST(PushParts, SixteenBitPartsAreAppliedExactlyAsOneWholeSixteenBitPush) {
  parts_equal_a_whole_push(0, 4, FloatFormat::kBFloat16);
  parts_equal_a_whole_push(0, 4, FloatFormat::kFloat16);
}

TEST(PushParts, StripedPushesAreAppliedExactlyAsWholeOnes) {
  // Striped alone (no part is big enough to go early), and after parts.
  parts_equal_a_whole_push(uint64_t{1} << 30, 0, FloatFormat::kFloat32, 4);
  parts_equal_a_whole_push(0, 4, FloatFormat::kFloat32, 4);
  parts_equal_a_whole_push(0, 4, FloatFormat::kBFloat16, 3);
}

// A part checked when it came is not checked again: a NaN or an Inf in any part, whether sent
// during backward, as a stripe over another connection or in the last part, still has the whole
// push refused with nothing of it applied.
void a_bad_value_in_any_part_refuses_the_push(FloatFormat format) {
  SCOPED_TRACE(compression_name(format));
  ServerFixture f({.num_workers = 1});
  ASSERT_TRUE(f.ok());
  const Placement p = place_variables(four_variables(), 1, /*max_chunk_elements=*/2048);
  auto w = tcp_client(f.ctx, {{"127.0.0.1", f.port()}}, p, 0, /*min_part_bytes=*/0, format,
                      /*stripes=*/4);
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->hello(p.hash).ok());
  std::vector<float> expected(kCount);
  for (size_t j = 0; j < kCount; ++j) expected[j] = static_cast<float>(j % 89) / 89.f;
  ASSERT_TRUE(w->init(testing_util::sgd_config(false, 1, 1, 100, p.hash, 1.0f), expected).ok());
  std::vector<float> params(kCount), grads(kCount);
  for (size_t j = 0; j < kCount; ++j) grads[j] = 0.001f * static_cast<float>(j % 31);
  struct Case {
    bool parts;  // the layers after "a" go during backward (push_part), "a" striped
    size_t bad;  // the element holding the bad value
    float value;
  };
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {true, 9000, kNaN},         // in the first part sent during backward ("d")
      {true, 5000, -kInf},        // in a later one ("b")
      {true, 2999, kInf},         // in the stripe of "a" sent over another connection
      {true, 0, kNaN},            // in the last part
      {false, kCount - 1, kInf},  // a striped push alone: in its last stripe
      {false, 0, kNaN},           // ... in its first, which goes with the last part
  };
  uint64_t stripes = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.parts ? "parts" : "stripes") + ", element " + std::to_string(c.bad));
    auto served = w->pull(params, PsSteps{0});
    ASSERT_TRUE(served.ok()) << served.status().to_string();
    std::vector<float> bad = grads;
    bad[c.bad] = c.value;
    if (c.parts) {
      for (int64_t from : kReady) w->push_part(bad, *served, from, nullptr);
    }
    const uint64_t parts_before = w->push_parts_sent();
    auto pushed = w->push(bad, *served, nullptr);
    ASSERT_TRUE(pushed.ok()) << pushed.status().to_string();
    EXPECT_FALSE(pushed->accepted);
    EXPECT_EQ(w->push_parts_sent(), parts_before);
    EXPECT_GT(w->push_stripes_sent(), stripes);  // (the push was striped)
    stripes = w->push_stripes_sent();
    auto after = w->pull(params, PsSteps{0});
    ASSERT_TRUE(after.ok()) << after.status().to_string();
    EXPECT_EQ((*after)[0], 0);  // the step did not move
    for (size_t j = 0; j < kCount; ++j) {
      ASSERT_EQ(std::bit_cast<uint32_t>(params[j]), std::bit_cast<uint32_t>(expected[j])) << j;
    }
  }
  EXPECT_GE(w->push_parts_sent(), 4u * 3u);
  // The same push, finite, in parts and stripes: applied, every value.
  auto served = w->pull(params, PsSteps{0});
  ASSERT_TRUE(served.ok()) << served.status().to_string();
  for (int64_t from : kReady) w->push_part(grads, *served, from, nullptr);
  auto pushed = w->push(grads, *served, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().to_string();
  EXPECT_TRUE(pushed->accepted);
  auto last = w->pull(params, PsSteps{1});
  ASSERT_TRUE(last.ok()) << last.status().to_string();
  std::vector<float> applied = grads;  // (16 bits: the widened narrow values)
  if (format != FloatFormat::kFloat32) {
    std::vector<uint16_t> words(kCount);
    narrow_floats(format, grads, words);
    widen_halves(format, reinterpret_cast<const std::byte*>(words.data()), applied);
  }
  for (size_t j = 0; j < kCount; ++j) {
    ASSERT_EQ(std::bit_cast<uint32_t>(params[j]),
              std::bit_cast<uint32_t>(expected[j] - 1.0f * applied[j]))
        << j;
  }
  auto stats = w->status(0);
  ASSERT_TRUE(stats.ok()) << stats.status().to_string();
  EXPECT_EQ(stats->non_finite_gradients(), static_cast<int64_t>(cases.size()));
  EXPECT_EQ(stats->gradients_applied(), 1);
  EXPECT_EQ(stats->bad_messages(), 0);
  ASSERT_TRUE(w->done().ok());
  EXPECT_TRUE(f.finish().ok());
}

TEST(PushParts, ANaNOrInfInAnyPartOrStripeLeavesEveryParameterAsItWas) {
  a_bad_value_in_any_part_refuses_the_push(FloatFormat::kFloat32);
}

TEST(PushParts, ANaNOrInfInAnySixteenBitPartLeavesEveryParameterAsItWas) {
  a_bad_value_in_any_part_refuses_the_push(FloatFormat::kFloat16);
  a_bad_value_in_any_part_refuses_the_push(FloatFormat::kBFloat16);
}

TEST(PushParts, ChunksReadyBelowTheMinimumWaitForTheNextPart) {
  // With 12 KiB at least, the later variables' few KB wait and go with the next report's:
  // fewer parts, the same update.
  const Placement p = place_variables(four_variables(), 2, /*max_chunk_elements=*/2048);
  ASSERT_LT(expected_parts(p, 12 * 1024), expected_parts(p, 0));
  parts_equal_a_whole_push(12 * 1024, 1);
}

// The header of a PUSH (part) of step 0 from a raw connection speaking for worker 1.
OutMessage raw_push_header(uint64_t request_id, bool more_parts, uint32_t parts_before,
                           uint32_t parts_elsewhere = 0) {
  OutMessage m;
  m.header.set_kind(wire::PUSH);
  m.header.set_job_id(kJob);
  m.header.set_sender(1);
  m.header.set_request_id(request_id);
  m.header.set_step(0);
  m.header.set_more_parts(more_parts);
  m.header.set_parts_before(parts_before);
  m.header.set_parts_elsewhere(parts_elsewhere);
  return m;
}

// A PUSH from a raw connection speaking for worker 1.
OutMessage raw_push(const Placement& p, const std::vector<size_t>& chunks, bool more_parts,
                    uint32_t parts_before, const std::vector<float>& grads) {
  OutMessage m = raw_push_header(42, more_parts, parts_before);
  for (size_t k : chunks) {
    const Chunk& c = p.chunks[k];
    m.frames.push_back(
        f32_frame(c.key,
                  std::span<const float>(grads).subspan(static_cast<size_t>(c.flat_offset),
                                                        static_cast<size_t>(c.count)),
                  nullptr));
  }
  return m;
}

TEST(PushParts, AServerRefusesALastPartWithoutItsPartsAndAPartWithTooManyChunks) {
  ServerFixture f({.num_workers = 2});
  ASSERT_TRUE(f.ok());
  const Placement p = place_variables(four_variables(), 1, /*max_chunk_elements=*/2048);
  const size_t n = p.chunks.size();
  auto chief = tcp_client(f.ctx, {{"127.0.0.1", f.port()}}, p, 0);
  ASSERT_TRUE(chief);
  ASSERT_TRUE(chief->hello(p.hash).ok());
  std::vector<float> values(kCount, 1.0f);
  ASSERT_TRUE(chief->init(testing_util::sgd_config(false, 1, 2, 10, p.hash, 1.0f), values).ok());

  auto raw = connect_socket(f.ctx, zmq::socket_type::dealer, "127.0.0.1", f.port(), "raw");
  ASSERT_TRUE(raw.ok());
  const std::vector<float> grads(kCount, 0.5f);
  // The last part of a push of 3 parts, none of which came (a PS restarted between them).
  ASSERT_TRUE(send_message(*raw, raw_push(p, {0}, false, 2, grads)).ok());
  auto missing = recv_message(*raw, milliseconds(10000), false, kJob);
  ASSERT_TRUE(missing.ok()) << missing.status().to_string();
  EXPECT_EQ(missing->header.kind(), wire::REPLY_ERROR);
  EXPECT_TRUE(missing->header.error().starts_with(kPushPartsMissing)) << missing->header.error();
  // Parts that carry more frames than the PS holds chunks plus one per stripe (the later ones
  // repeat every chunk): refused at the part that goes over.
  std::vector<size_t> all(n);
  for (size_t k = 0; k < n; ++k) all[k] = k;
  ASSERT_TRUE(send_message(*raw, raw_push(p, {0, 1}, true, 0, grads)).ok());
  size_t sent = 2;
  while (sent <= n + kMaxPushStripes) {
    ASSERT_TRUE(send_message(*raw, raw_push(p, all, true, 0, grads)).ok());
    sent += n;
  }
  auto too_many = recv_message(*raw, milliseconds(10000), false, kJob);
  ASSERT_TRUE(too_many.ok()) << too_many.status().to_string();
  EXPECT_EQ(too_many->header.kind(), wire::REPLY_ERROR);
  EXPECT_NE(too_many->header.error().find("parts carries " + std::to_string(sent) + " frames"),
            std::string::npos)
      << too_many->header.error();
  // A chunk sent twice, once in a part and once in the last one, with one missing: refused
  // naming the layout, and nothing applied.
  std::vector<size_t> rest(all.begin() + 1, all.end());
  rest.back() = 1;
  ASSERT_TRUE(send_message(*raw, raw_push(p, {1}, true, 0, grads)).ok());
  ASSERT_TRUE(send_message(*raw, raw_push(p, rest, false, 1, grads)).ok());
  auto twice = recv_message(*raw, milliseconds(10000), false, kJob);
  ASSERT_TRUE(twice.ok()) << twice.status().to_string();
  EXPECT_EQ(twice->header.kind(), wire::REPLY_ERROR);
  EXPECT_NE(twice->header.error().find("do not match"), std::string::npos) << twice->header.error();
  // The whole gradient in two parts, the last chunk first: applied once.
  ASSERT_TRUE(send_message(*raw, raw_push(p, {n - 1}, true, 0, grads)).ok());
  std::vector<size_t> first(all.begin(), all.end() - 1);
  ASSERT_TRUE(send_message(*raw, raw_push(p, first, false, 1, grads)).ok());
  auto applied = recv_message(*raw, milliseconds(10000), false, kJob);
  ASSERT_TRUE(applied.ok()) << applied.status().to_string();
  EXPECT_EQ(applied->header.kind(), wire::REPLY_OK) << applied->header.error();
  EXPECT_TRUE(applied->header.accepted());

  auto stats = chief->status(0);
  ASSERT_TRUE(stats.ok()) << stats.status().to_string();
  EXPECT_EQ(stats->gradients_applied(), 1);
  EXPECT_EQ(stats->bad_messages(), 2);  // too many chunks, a chunk twice
  std::vector<float> params(kCount);
  auto served = chief->pull(params, 1);
  ASSERT_TRUE(served.ok()) << served.status().to_string();
  for (size_t j = 0; j < kCount; ++j) ASSERT_EQ(params[j], 0.5f) << j;  // 1 - 1 * 0.5
  EXPECT_TRUE(f.stop());
}

// A range of a PUSH: [from, from + n) of the flat gradient, cut at the chunks' boundaries
// into frames that each hold a chunk's range (OutFrame::offset).
OutMessage raw_stripe(const Placement& p, int64_t from, int64_t n, bool more_parts,
                      uint32_t parts_before, uint32_t parts_elsewhere,
                      const std::vector<float>& grads) {
  OutMessage m = raw_push_header(43, more_parts, parts_before, parts_elsewhere);
  for (const Chunk& c : p.chunks) {
    const int64_t first = std::max(from, c.flat_offset);
    const int64_t last = std::min(from + n, c.flat_offset + c.count);
    if (first >= last) continue;
    OutFrame f = f32_frame(c.key,
                           std::span<const float>(grads).subspan(static_cast<size_t>(first),
                                                                 static_cast<size_t>(last - first)),
                           nullptr);
    f.offset = static_cast<uint64_t>(first - c.flat_offset);
    m.frames.push_back(std::move(f));
  }
  return m;
}

TEST(PushParts, StripesOverTwoConnectionsAreAppliedAsOneWholePushWhicheverComesFirst) {
  ServerFixture f({.num_workers = 2});
  ASSERT_TRUE(f.ok());
  // One chunk per variable (one PS): the stripes cut "b" in two.
  const Placement p = place_variables(four_variables(), 1);
  ASSERT_EQ(p.chunks.size(), 4u);
  auto chief = tcp_client(f.ctx, {{"127.0.0.1", f.port()}}, p, 0);
  ASSERT_TRUE(chief);
  ASSERT_TRUE(chief->hello(p.hash).ok());
  std::vector<float> values(kCount, 1.0f);
  ASSERT_TRUE(chief->init(testing_util::sgd_config(false, 1, 2, 10, p.hash, 1.0f), values).ok());

  // Worker 1's two connections, as a PsClient names them (one session).
  std::vector<zmq::socket_t> lanes;
  for (const char* id : {"pstrain/1/00c0ffee/r", "pstrain/1/00c0ffee/r1"}) {
    SocketOptions so;
    so.routing_id = id;
    auto s = connect_socket(f.ctx, zmq::socket_type::dealer, "127.0.0.1", f.port(), id, so);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    lanes.push_back(std::move(s).value());
  }
  std::vector<float> grads(kCount);
  for (size_t j = 0; j < kCount; ++j) grads[j] = 0.001f * static_cast<float>(j % 101) - 0.05f;
  const int64_t half = 5600;  // inside "b" (3000 .. 8000)

  // A last part announcing one part on this connection that never came: refused at once.
  ASSERT_TRUE(send_message(lanes[0], raw_stripe(p, 0, half, false, 2, 1, grads)).ok());
  auto missing = recv_message(lanes[0], milliseconds(10000), false, kJob);
  ASSERT_TRUE(missing.ok()) << missing.status().to_string();
  EXPECT_EQ(missing->header.kind(), wire::REPLY_ERROR);
  EXPECT_TRUE(missing->header.error().starts_with(kPushPartsMissing)) << missing->header.error();

  // The last part first; a heartbeat behind it on the same connection is answered first:
  // the PS holds the part, waiting for the one sent elsewhere. Then the other stripe, over the
  // other connection: the push completes and is answered where its last part came (true:
  // accepted).
  const auto push_last_part_first = [&](const std::vector<float>& pushed,
                                        uint64_t beat_id) -> bool {
    EXPECT_TRUE(send_message(lanes[0], raw_stripe(p, 0, half, false, 1, 1, pushed)).ok());
    OutMessage beat;
    beat.header.set_kind(wire::HEARTBEAT);
    beat.header.set_job_id(kJob);
    beat.header.set_sender(1);
    beat.header.set_request_id(beat_id);
    EXPECT_TRUE(send_message(lanes[0], std::move(beat)).ok());
    auto held = recv_message(lanes[0], milliseconds(10000), false, kJob);
    EXPECT_TRUE(held.ok()) << held.status().to_string();
    if (!held.ok()) return false;
    EXPECT_EQ(held->header.request_id(), beat_id);
    EXPECT_EQ(held->header.kind(), wire::REPLY_OK);
    EXPECT_TRUE(
        send_message(lanes[1], raw_stripe(p, half, int64_t{kCount} - half, true, 0, 0, pushed))
            .ok());
    auto answer = recv_message(lanes[0], milliseconds(10000), false, kJob);
    EXPECT_TRUE(answer.ok()) << answer.status().to_string();
    if (!answer.ok()) return false;
    EXPECT_EQ(answer->header.request_id(), 43u);
    EXPECT_EQ(answer->header.kind(), wire::REPLY_OK) << answer->header.error();
    return answer->header.accepted();
  };
  EXPECT_TRUE(push_last_part_first(grads, 44));

  std::vector<float> params(kCount);
  auto served = chief->pull(params, 1);
  ASSERT_TRUE(served.ok()) << served.status().to_string();
  for (size_t j = 0; j < kCount; ++j) ASSERT_EQ(params[j], 1.0f - grads[j]) << j;

  // The last part first again, checked while it waits: a NaN in it, or an Inf in the stripe
  // that completes it, has the push refused and nothing of it applied.
  for (const size_t bad : {size_t{0}, size_t{kCount} - 1}) {
    SCOPED_TRACE("a bad value at element " + std::to_string(bad));
    std::vector<float> poisoned = grads;
    poisoned[bad] =
        bad == 0 ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    EXPECT_FALSE(push_last_part_first(poisoned, 45));
    auto unchanged = chief->pull(params, 1);
    ASSERT_TRUE(unchanged.ok()) << unchanged.status().to_string();
    EXPECT_EQ((*unchanged)[0], 1);
    for (size_t j = 0; j < kCount; ++j) ASSERT_EQ(params[j], 1.0f - grads[j]) << j;
  }
  auto stats = chief->status(0);
  ASSERT_TRUE(stats.ok()) << stats.status().to_string();
  EXPECT_EQ(stats->gradients_applied(), 1);
  EXPECT_EQ(stats->non_finite_gradients(), 2);
  EXPECT_EQ(stats->bad_messages(), 0);
  EXPECT_TRUE(f.stop());
}

// The socket of a parameter server played by the test: a ROUTER on 127.0.0.1 that hands a
// routing id over to a new connection, as a PS's does (runtime/wire/transport.h).
zmq::socket_t fake_ps_socket(zmq::context_t& ctx) {
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::router_handover, 1);
  router.bind("tcp://127.0.0.1:*");
  return router;
}

int port_of(zmq::socket_t& socket) {
  const std::string endpoint = socket.get(zmq::sockopt::last_endpoint);
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

// The fake PS's reply to `to`.
void fake_answer(zmq::socket_t& router, const InMessage& to, wire::Kind kind,
                 const std::string& error) {
  OutMessage out;
  out.header.set_kind(kind);
  out.header.set_job_id(kJob);
  out.header.set_request_id(to.header.request_id());
  out.header.set_initialized(true);
  out.header.set_accepted(true);
  out.header.set_error(error);
  EXPECT_TRUE(send_message(router, std::move(out), &to.routing_id).ok());
}

// A parameter server played by the test on a ROUTER socket: it answers HELLO, takes the
// parts, answers the last one "push parts missing", and checks that the push comes again
// whole.
TEST(PushParts, TheClientSendsThePushWholeWhenTheServerLostItsParts) {
  zmq::context_t ctx(1);
  zmq::socket_t router = fake_ps_socket(ctx);
  const int port = port_of(router);
  const Placement p = place_variables(four_variables(), 1, /*max_chunk_elements=*/2048);
  const size_t n = p.chunks.size();

  struct Seen {
    int parts = 0;
    size_t part_frames = 0;
    uint32_t parts_before = 0;
    size_t last_frames = 0;
    size_t whole_frames = 0;
    uint32_t whole_parts_before = 99;
    std::vector<float> whole;
  };
  auto fake = std::async(std::launch::async, [&]() -> Seen {
    Seen seen;
    auto answer = [&](const InMessage& to, wire::Kind kind, const std::string& error) {
      fake_answer(router, to, kind, error);
    };
    for (int i = 0; i < 20; ++i) {
      auto m = recv_message(router, milliseconds(10000), true, kJob);
      if (!m.ok()) {
        ADD_FAILURE() << m.status().to_string();
        return seen;
      }
      const wire::Header& h = m->header;
      if (h.kind() == wire::HELLO) {
        answer(*m, wire::REPLY_OK, "");
      } else if (h.kind() == wire::PUSH && h.more_parts()) {
        ++seen.parts;
        seen.part_frames += m->num_frames();
      } else if (h.kind() == wire::PUSH && h.parts_before() > 0) {
        seen.parts_before = h.parts_before();
        seen.last_frames = m->num_frames();
        answer(*m, wire::REPLY_ERROR, std::string(kPushPartsMissing) + ": test");
      } else if (h.kind() == wire::PUSH) {
        seen.whole_frames = m->num_frames();
        seen.whole_parts_before = h.parts_before();
        seen.whole.assign(kCount, 0.f);
        for (size_t k = 0; k < m->num_frames(); ++k) {
          const Chunk& c = p.chunks[k];
          EXPECT_TRUE(m->copy_frame_f32(k, std::span<float>(seen.whole)
                                               .subspan(static_cast<size_t>(c.flat_offset),
                                                        static_cast<size_t>(c.count)))
                          .ok());
        }
        answer(*m, wire::REPLY_OK, "");
        return seen;
      }
    }
    ADD_FAILURE() << "no whole push came";
    return seen;
  });

  auto client = tcp_client(ctx, {{"127.0.0.1", port}}, p, 0);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->hello(p.hash).ok());
  std::vector<float> grads(kCount);
  for (size_t j = 0; j < kCount; ++j) grads[j] = static_cast<float>(j);
  for (int64_t from : kReady) client->push_part(grads, PsSteps{0}, from, nullptr);
  auto pushed = client->push(grads, PsSteps{0}, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().to_string();
  ASSERT_EQ(fake.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  const Seen seen = fake.get();
  EXPECT_EQ(seen.parts, 3);
  EXPECT_EQ(seen.parts_before, 3u);
  EXPECT_EQ(seen.part_frames + seen.last_frames, n);
  EXPECT_GT(seen.last_frames, 0u);  // variable a's chunks
  EXPECT_EQ(seen.whole_frames, n);
  EXPECT_EQ(seen.whole_parts_before, 0u);
  EXPECT_EQ(seen.whole, grads);
}

// The same with a striped push: the PS answers its last part "push parts missing"; the push
// comes again whole over the request socket, and the next push is striped again over fresh
// connections of the same session.
TEST(PushParts, AStripedPushGoesWholeWhenTheServerLostItsStripesAndTheNextIsStripedAgain) {
  zmq::context_t ctx(1);
  zmq::socket_t router = fake_ps_socket(ctx);
  const int port = port_of(router);
  const Placement p = place_variables(four_variables(), 1);
  const size_t n = p.chunks.size();

  struct Seen {
    std::vector<std::string> stripe_ids;  // routing ids the stripes came from
    std::string last_id;
    std::vector<uint32_t> parts_before, parts_elsewhere;  // of each last part
    size_t whole_frames = 0;
    uint32_t whole_parts_before = 99;
    std::vector<float> whole;
    std::vector<float> striped;  // the second push, put together from its stripes
  };
  auto fake = std::async(std::launch::async, [&]() -> Seen {
    Seen seen;
    seen.striped.assign(kCount, 0.f);
    auto answer = [&](const InMessage& to, wire::Kind kind, const std::string& error) {
      fake_answer(router, to, kind, error);
    };
    const auto gather = [&](const InMessage& m) {
      for (size_t k = 0; k < m.num_frames(); ++k) {
        const wire::FrameInfo& f = m.frame_info(k);
        const auto c = std::find_if(p.chunks.begin(), p.chunks.end(),
                                    [&](const Chunk& ch) { return ch.key == f.key(); });
        ASSERT_NE(c, p.chunks.end()) << f.key();
        EXPECT_TRUE(m.copy_frame_f32(k, std::span<float>(seen.striped)
                                            .subspan(static_cast<size_t>(c->flat_offset) +
                                                         static_cast<size_t>(f.offset()),
                                                     static_cast<size_t>(f.count())))
                        .ok());
      }
    };
    bool whole_seen = false;
    size_t second_stripes = 0;
    std::optional<InMessage> second_last;  // answered once its stripes are in, as a PS does
    for (int i = 0; i < 40; ++i) {
      if (second_last && second_stripes == 3) {
        answer(*second_last, wire::REPLY_OK, "");
        return seen;
      }
      auto m = recv_message(router, milliseconds(10000), true, kJob);
      if (!m.ok()) {
        ADD_FAILURE() << m.status().to_string();
        return seen;
      }
      const wire::Header& h = m->header;
      const std::string id(static_cast<const char*>(m->routing_id.data()), m->routing_id.size());
      if (h.kind() == wire::HELLO) {
        answer(*m, wire::REPLY_OK, "");
      } else if (h.kind() == wire::PUSH && h.more_parts()) {
        // (The first push's stripes may come late, or not at all: the client closed their
        // connections once it sent that push again whole.)
        if (h.step() == 1) {
          seen.stripe_ids.push_back(id);
          gather(*m);
          ++second_stripes;
        }
      } else if (h.kind() == wire::PUSH && h.parts_before() > 0) {
        seen.last_id = id;
        seen.parts_before.push_back(h.parts_before());
        seen.parts_elsewhere.push_back(h.parts_elsewhere());
        if (!whole_seen) {
          answer(*m, wire::REPLY_ERROR, std::string(kPushPartsMissing) + ": test");
          continue;
        }
        gather(*m);
        second_last = std::move(m).value();
      } else if (h.kind() == wire::PUSH) {
        whole_seen = true;
        seen.whole_frames = m->num_frames();
        seen.whole_parts_before = h.parts_before();
        seen.whole.assign(kCount, 0.f);
        for (size_t k = 0; k < m->num_frames(); ++k) {
          const Chunk& c = p.chunks[k];
          EXPECT_EQ(m->frame_info(k).offset(), 0u);
          EXPECT_TRUE(m->copy_frame_f32(k, std::span<float>(seen.whole)
                                               .subspan(static_cast<size_t>(c.flat_offset),
                                                        static_cast<size_t>(c.count)))
                          .ok());
        }
        answer(*m, wire::REPLY_OK, "");
      }
    }
    ADD_FAILURE() << "no second striped push came";
    return seen;
  });

  auto client = tcp_client(ctx, {{"127.0.0.1", port}}, p, 0, 0, FloatFormat::kFloat32, 4);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->hello(p.hash).ok());
  std::vector<float> grads(kCount);
  for (size_t j = 0; j < kCount; ++j) grads[j] = static_cast<float>(j);
  auto pushed = client->push(grads, PsSteps{0}, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().to_string();
  for (float& g : grads) g = -g;
  pushed = client->push(grads, PsSteps{1}, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().to_string();
  ASSERT_EQ(fake.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  const Seen seen = fake.get();
  EXPECT_EQ(client->push_stripes_sent(), 6u);
  ASSERT_EQ(seen.stripe_ids.size(), 3u);
  const std::string session = seen.last_id.substr(0, seen.last_id.rfind('/'));
  EXPECT_EQ(seen.last_id, session + "/r");
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(seen.stripe_ids[k].substr(0, seen.stripe_ids[k].rfind('/')), session);
    EXPECT_NE(seen.stripe_ids[k], seen.last_id);
  }
  EXPECT_EQ(seen.parts_before, (std::vector<uint32_t>{3, 3}));
  EXPECT_EQ(seen.parts_elsewhere, (std::vector<uint32_t>{3, 3}));
  EXPECT_EQ(seen.whole_frames, n);
  EXPECT_EQ(seen.whole_parts_before, 0u);
  std::vector<float> first(kCount);
  for (size_t j = 0; j < kCount; ++j) first[j] = static_cast<float>(j);
  EXPECT_EQ(seen.whole, first);
  EXPECT_EQ(seen.striped, grads);
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t j = 0; j < got.size(); ++j) {
    ASSERT_EQ(std::bit_cast<uint32_t>(got[j]), std::bit_cast<uint32_t>(want[j]))
        << what << ", element " << j;
  }
}

// What push_pull() tells of the parameters as they arrive (the pull's overlap): each
// arrived(until) with a copy of what the parameters held below it then, and restarted() calls.
struct ArrivedRecorder final : PsClient::ParametersArrived {
  const std::vector<float>* params = nullptr;
  std::vector<int64_t> told;
  std::vector<std::vector<float>> seen;
  int restarts = 0;
  void arrived(int64_t until) override {
    told.push_back(until);
    seen.emplace_back(params->begin(), params->begin() + until);
  }
  void restarted() override { ++restarts; }
  // Every value told of was final: the same bits as the parameters when push_pull() returned.
  void expect_final(const std::vector<float>& final_params) const {
    for (size_t k = 0; k < seen.size(); ++k) {
      const std::vector<float> head(final_params.begin(),
                                    final_params.begin() + static_cast<int64_t>(seen[k].size()));
      expect_same_bits(seen[k], head, "told at arrived(" + std::to_string(told[k]) + ")");
    }
  }
};

// What push_pull() runs while the servers compute (the worker gathers its next batch there):
// how often, and how many arrived() calls had come before.
struct WaitRecorder final : PsClient::WhileWaiting {
  const ArrivedRecorder* arrived = nullptr;
  int runs = 0;
  size_t told_before = 0;
  void run() override {
    ++runs;
    told_before = arrived->told.size();
  }
};

// Two servers, two asynchronous workers: worker 0 takes its parameters in parts of 4 KiB,
// worker 1 whole. Each round worker 0's PULL for the next step is parked, worker 1's push
// (with the pull along) completes it, then worker 0 pushes with the pull along: every copy of
// the parameters, in parts or whole, parked or answered at once, holds the expected SGD.
TEST(ReplyParts, ParametersInPartsAreTheSameBitsAsWholeOnesAnsweredAtOnceOrParked) {
  TwoServers two;
  ASSERT_TRUE(two.ok());
  auto& [ps0, ps1, servers, p, ctx] = two;
  constexpr uint64_t kPartBytes = 4096;
  auto w0 = tcp_client(ctx, servers, p, 0, 0, FloatFormat::kFloat32, 1, kPartBytes);
  auto w1 = tcp_client(ctx, servers, p, 1);
  ASSERT_TRUE(w0 && w1);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_TRUE(w1->hello(p.hash).ok());
  constexpr int kRounds = 3;
  std::vector<float> expected(kCount);
  for (size_t j = 0; j < kCount; ++j) expected[j] = static_cast<float>(j % 89) / 89.f;
  ASSERT_TRUE(
      w0->init(testing_util::sgd_config(false, 1, 2, 2 * kRounds, p.hash, 1.0f), expected).ok());
  // The parts each of worker 0's replies comes in, the last one not counted: per server, its
  // values in parts of kPartBytes, at most kMaxReplyParts.
  uint64_t parts_per_reply = 0;
  for (const auto& mine : p.chunks_of_ps) {
    uint64_t bytes = 0;
    for (int64_t c : mine)
      bytes += static_cast<uint64_t>(p.chunks[static_cast<size_t>(c)].count) * 4;
    parts_per_reply += std::min((bytes + kPartBytes - 1) / kPartBytes, kMaxReplyParts) - 1;
  }
  ASSERT_GE(parts_per_reply, 8u);

  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.f, 0.1f);
  std::vector<float> params0(kCount), params1(kCount), grads(kCount);
  auto served = w0->pull(params0, PsSteps{0, 0});
  ASSERT_TRUE(served.ok()) << served.status().to_string();
  expect_same_bits(params0, expected, "the first pull, in parts");
  for (int round = 0; round < kRounds; ++round) {
    const int64_t next = 2 * round + 1;
    auto parked = std::async(std::launch::async, [&] {
      return w0->pull(params0, PsSteps{next, next});
    });
    // Both servers hold worker 0's PULL before worker 1 pushes.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int ps = 0; ps < 2; ++ps) {
      while (true) {
        auto stats = w1->status(ps);
        ASSERT_TRUE(stats.ok()) << stats.status().to_string();
        if (stats->workers(0).parked_pulls() == 1) break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "ps " << ps << " parked nothing";
      }
    }
    PsSteps pulled;
    for (float& g : grads) g = dist(rng);
    auto pushed1 =
        w1->push_pull(grads, PsSteps{next - 1, next - 1}, nullptr, params1, PsSteps{0, 0}, pulled);
    ASSERT_TRUE(pushed1.ok()) << pushed1.status().to_string();
    EXPECT_TRUE(pushed1->pulled);
    EXPECT_EQ(pulled, (PsSteps{next, next}));
    for (size_t j = 0; j < kCount; ++j) expected[j] -= grads[j];
    expect_same_bits(params1, expected, "worker 1's pull along, whole");
    ASSERT_EQ(parked.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    auto got = parked.get();
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ((*got)[0], next);
    expect_same_bits(params0, expected, "worker 0's parked pull, in parts");

    for (float& g : grads) g = dist(rng);
    auto pushed0 = w0->push_pull(grads, *got, nullptr, params0, PsSteps{0, 0}, pulled);
    ASSERT_TRUE(pushed0.ok()) << pushed0.status().to_string();
    EXPECT_TRUE(pushed0->pulled);
    // (The parts went while the update ran; the last one carries the step after it.)
    EXPECT_EQ(pulled, (PsSteps{next + 1, next + 1}));
    for (size_t j = 0; j < kCount; ++j) expected[j] -= grads[j];
    expect_same_bits(params0, expected, "worker 0's pull along, in parts");
  }
  // 1 + 2 * kRounds replies to worker 0, each in parts; worker 1's all whole.
  EXPECT_EQ(w0->reply_parts_received(), (1 + 2 * kRounds) * parts_per_reply);
  EXPECT_EQ(w1->reply_parts_received(), 0u);
  end_two_servers(*w0, *w1, ps0, ps1, 2 * kRounds);
}

// A REPLY_PARAMS (part) from the fake PS: the values `from` of chunk `chunk`'s elements
// [offset, offset + count) for each range.
struct Range {
  size_t chunk;
  uint64_t offset;
  uint64_t count;
};
// `index`: Header.part_index; `lost`: Header.parts_lost; `via`: the routing id of another
// connection of the client's to send it on (nullptr: the request's).
void fake_params(zmq::socket_t& router, const InMessage& to, const Placement& p,
                 const std::vector<float>& from, const std::vector<Range>& ranges, bool more,
                 uint32_t parts_before, uint32_t index = 0, bool lost = false,
                 const zmq::message_t* via = nullptr) {
  OutMessage out;
  out.header.set_kind(wire::REPLY_PARAMS);
  out.header.set_job_id(kJob);
  out.header.set_request_id(to.header.request_id());
  out.header.set_initialized(true);
  out.header.set_accepted(true);
  out.header.set_more_parts(more);
  out.header.set_parts_before(parts_before);
  out.header.set_part_index(index);
  out.header.set_parts_lost(lost);
  for (const Range& r : ranges) {
    const Chunk& c = p.chunks[r.chunk];
    OutFrame f = f32_frame(c.key,
                           std::span<const float>(from).subspan(
                               static_cast<size_t>(c.flat_offset + static_cast<int64_t>(r.offset)),
                               static_cast<size_t>(r.count)),
                           nullptr);
    f.offset = r.offset;
    out.frames.push_back(std::move(f));
  }
  EXPECT_TRUE(send_message(router, std::move(out), via != nullptr ? via : &to.routing_id).ok());
}

// The fake PS answers the first PULL with one part and a last part that says two came before
// it: the client asks again, and takes the whole answer to that. It answers the next PULL with
// parts that leave a gap in the first chunk: the pull fails naming the elements.
TEST(ReplyParts, TheClientAsksAgainWhenAPartIsMissingAndRefusesPartsThatDoNotTile) {
  zmq::context_t ctx(1);
  zmq::socket_t router = fake_ps_socket(ctx);
  const Placement p = place_variables(four_variables(), 1, /*max_chunk_elements=*/2048);
  const size_t n = p.chunks.size();
  ASSERT_EQ(p.chunks[0].count, 2048);
  std::vector<float> values(kCount);
  for (size_t j = 0; j < kCount; ++j) values[j] = static_cast<float>(j) * 0.5f;
  std::vector<Range> rest;  // every chunk after the first, whole
  for (size_t c = 1; c < n; ++c) rest.push_back({c, 0, static_cast<uint64_t>(p.chunks[c].count)});
  std::vector<Range> whole = rest;
  whole.insert(whole.begin(), {0, 0, 2048});

  auto fake = std::async(std::launch::async, [&]() -> int {
    int pulls = 0;
    for (int i = 0; i < 10; ++i) {
      auto m = recv_message(router, milliseconds(10000), true, kJob);
      if (!m.ok()) {
        ADD_FAILURE() << m.status().to_string();
        return pulls;
      }
      if (m->header.kind() == wire::HELLO) {
        fake_answer(router, *m, wire::REPLY_OK, "");
        continue;
      }
      if (m->header.kind() != wire::PULL) continue;
      EXPECT_EQ(m->header.reply_part_bytes(), 4096u);
      ++pulls;
      if (pulls == 1) {
        fake_params(router, *m, p, values, {{0, 0, 1000}}, true, 0);
        std::vector<Range> last = rest;
        last.insert(last.begin(), {0, 1000, 1048});
        fake_params(router, *m, p, values, last, false, 2);
      } else if (pulls == 2) {
        fake_params(router, *m, p, values, whole, false, 0);
      } else {
        fake_params(router, *m, p, values, {{0, 0, 1000}}, true, 0);
        std::vector<Range> last = rest;
        last.insert(last.begin(), {0, 1500, 548});
        fake_params(router, *m, p, values, last, false, 1);
        return pulls;
      }
    }
    return pulls;
  });

  auto client =
      tcp_client(ctx, {{"127.0.0.1", port_of(router)}}, p, 0, 0, FloatFormat::kFloat32, 1, 4096);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->hello(p.hash).ok());
  std::vector<float> params(kCount, -1.f);
  auto first = client->pull(params, 0);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_EQ(params, values);
  EXPECT_EQ(client->reply_parts_received(), 1u);
  auto second = client->pull(params, 0);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(second.status().message().find("elements [1500, 2048) of chunk '" + p.chunks[0].key +
                                           "' where [1000, 2048)"),
            std::string::npos)
      << second.status().to_string();
  ASSERT_EQ(fake.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(fake.get(), 3);
}

// A striped PUSH with the pull along (Header.reply_lanes) against real servers: the reply's
// parts come over the stripes' connections too, and the parameters hold the same bits as SGD
// on what was pushed, round after round; a worker that does not stripe gets them all on its
// request socket.
TEST(ReplyParts, AStripedPushTakesItsReplyOverItsStripesConnectionsToo) {
  TwoServers two;
  ASSERT_TRUE(two.ok());
  auto& [ps0, ps1, servers, p, ctx] = two;
  constexpr uint64_t kPartBytes = 4096;
  auto striped = tcp_client(ctx, servers, p, 0, 0, FloatFormat::kFloat32, 4, kPartBytes);
  auto plain = tcp_client(ctx, servers, p, 1, 0, FloatFormat::kFloat32, 1, kPartBytes);
  ASSERT_TRUE(striped && plain);
  ASSERT_TRUE(striped->hello(p.hash).ok());
  ASSERT_TRUE(plain->hello(p.hash).ok());
  std::vector<float> expected(kCount);
  for (size_t j = 0; j < kCount; ++j) expected[j] = static_cast<float>(j % 83) / 83.f;
  constexpr int kRounds = 4;
  ASSERT_TRUE(
      striped->init(testing_util::sgd_config(false, 1, 2, 2 * kRounds, p.hash, 1.0f), expected)
          .ok());
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.f, 0.1f);
  std::vector<float> params(kCount), grads(kCount);
  PsSteps steps{0, 0};
  ASSERT_TRUE(striped->pull(params, steps).ok());
  uint64_t parts_before = striped->reply_parts_received();
  for (int round = 0; round < 2 * kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    PsClient& w = round % 2 == 0 ? *striped : *plain;
    for (float& g : grads) g = dist(rng);
    PsSteps pulled;
    ArrivedRecorder arrived;
    arrived.params = &params;
    WaitRecorder waited;
    waited.arrived = &arrived;
    auto pushed =
        w.push_pull(grads, steps, nullptr, params, PsSteps{0, 0}, pulled, &arrived, &waited);
    ASSERT_TRUE(pushed.ok()) << pushed.status().to_string();
    EXPECT_TRUE(pushed->accepted);
    EXPECT_TRUE(pushed->pulled);
    EXPECT_EQ(pulled, (PsSteps{round + 1, round + 1}));
    // The wait's work ran once for both servers' requests, before any part was told of.
    EXPECT_EQ(waited.runs, 1);
    EXPECT_EQ(waited.told_before, 0u);
    steps = pulled;
    for (size_t j = 0; j < kCount; ++j) expected[j] -= grads[j];
    expect_same_bits(params, expected, "the pull along");
    // The overlap: the parameters were told of in growing prefixes of the parts of both
    // servers' replies, up to all of them, each final when told.
    EXPECT_EQ(arrived.restarts, 0);
    ASSERT_GT(arrived.told.size(), 2u);
    EXPECT_TRUE(std::is_sorted(arrived.told.begin(), arrived.told.end()));
    EXPECT_EQ(std::adjacent_find(arrived.told.begin(), arrived.told.end()), arrived.told.end());
    EXPECT_EQ(arrived.told.back(), static_cast<int64_t>(kCount));
    arrived.expect_final(params);
  }
  // Every reply of the striped worker came in parts, some of them over its other connections;
  // none of the other worker's did.
  EXPECT_GT(striped->reply_parts_received(), parts_before);
  EXPECT_GE(striped->reply_parts_on_lanes(), static_cast<uint64_t>(kRounds));
  EXPECT_LT(striped->reply_parts_on_lanes(), striped->reply_parts_received());
  EXPECT_GE(striped->push_stripes_sent(), static_cast<uint64_t>(kRounds));
  EXPECT_GT(plain->reply_parts_received(), 0u);
  EXPECT_EQ(plain->reply_parts_on_lanes(), 0u);
  end_two_servers(*striped, *plain, ps0, ps1, 2 * kRounds);
}

// Synchronous, two striped workers: the first one's push_pull is parked until the second's
// completes the step; both replies come in parts over the stripes' connections too (the parked
// one's connections kept with it), and both hold the mean of the two gradients applied.
TEST(ReplyParts, AParkedReplyOfASyncStepComesOverTheStripesConnectionsToo) {
  TwoServers two;
  ASSERT_TRUE(two.ok());
  auto& [ps0, ps1, servers, p, ctx] = two;
  auto w0 = tcp_client(ctx, servers, p, 0, 0, FloatFormat::kFloat32, 4, 4096);
  auto w1 = tcp_client(ctx, servers, p, 1, 0, FloatFormat::kFloat32, 4, 4096);
  ASSERT_TRUE(w0 && w1);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_TRUE(w1->hello(p.hash).ok());
  std::vector<float> expected(kCount);
  for (size_t j = 0; j < kCount; ++j) expected[j] = static_cast<float>(j % 79) / 79.f;
  constexpr int kSteps = 3;
  ASSERT_TRUE(w0->init(testing_util::sgd_config(true, 2, 2, kSteps, p.hash, 1.0f), expected).ok());
  std::mt19937 rng(13);
  std::normal_distribution<float> dist(0.f, 0.1f);
  std::vector<float> params0(kCount), params1(kCount), g0(kCount), g1(kCount);
  PsSteps steps{0, 0};
  for (int step = 0; step < kSteps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    for (float& g : g0) g = dist(rng);
    for (float& g : g1) g = dist(rng);
    const PsSteps next{step + 1, step + 1};
    PsSteps pulled0, pulled1;
    auto parked = std::async(std::launch::async, [&] {
      return w0->push_pull(g0, steps, nullptr, params0, next, pulled0);
    });
    // Both servers hold worker 0's pull half before worker 1 pushes.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int ps = 0; ps < 2; ++ps) {
      while (true) {
        auto stats = w1->status(ps);
        ASSERT_TRUE(stats.ok()) << stats.status().to_string();
        if (stats->workers(0).parked_pulls() == 1) break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "ps " << ps << " parked nothing";
      }
    }
    auto pushed1 = w1->push_pull(g1, steps, nullptr, params1, next, pulled1);
    ASSERT_TRUE(pushed1.ok()) << pushed1.status().to_string();
    ASSERT_EQ(parked.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    auto pushed0 = parked.get();
    ASSERT_TRUE(pushed0.ok()) << pushed0.status().to_string();
    EXPECT_TRUE(pushed0->pulled);
    EXPECT_TRUE(pushed1->pulled);
    EXPECT_EQ(pulled0, next);
    EXPECT_EQ(pulled1, next);
    // The mean of the two, as the store aggregates them: (g0 + g1) / 2 with learning rate 1.
    std::vector<float> mean(kCount);
    for (size_t j = 0; j < kCount; ++j) mean[j] = (g0[j] + g1[j]) / 2.f;
    for (size_t j = 0; j < kCount; ++j) expected[j] -= mean[j];
    for (size_t j = 0; j < kCount; ++j) {
      ASSERT_NEAR(params0[j], expected[j], 1e-6f) << j;
      ASSERT_EQ(std::bit_cast<uint32_t>(params0[j]), std::bit_cast<uint32_t>(params1[j])) << j;
    }
    expected = params0;  // (the servers' exact bits carry on)
    steps = next;
  }
  EXPECT_GE(w0->reply_parts_on_lanes(), static_cast<uint64_t>(kSteps));
  EXPECT_GE(w1->reply_parts_on_lanes(), static_cast<uint64_t>(kSteps));
  ASSERT_TRUE(w0->done().ok());
  ASSERT_TRUE(w1->done().ok());
  EXPECT_TRUE(ps0.finish().ok());
  EXPECT_TRUE(ps1.finish().ok());
}

// The fake PS answers a striped push_pull with its parts out of order over the request's
// connection and the stripe's: the last first, then 2, 1 and 0. The client holds each until
// its turn and fills the parameters exactly. It answers the next one with part 0 and a last
// part marked parts_lost: the client does not wait for parts 1 and 2 (push_pull says the
// parameters did not come, and pull() gets them whole).
TEST(ReplyParts, PartsThatComeBeforeTheirTurnAreHeldAndALostPartIsNotWaitedFor) {
  zmq::context_t ctx(1);
  zmq::socket_t router = fake_ps_socket(ctx);
  const Placement p = place_variables(four_variables(), 1, /*max_chunk_elements=*/2048);
  const size_t n = p.chunks.size();
  ASSERT_GE(n, 5u);
  std::vector<float> values(kCount);
  for (size_t j = 0; j < kCount; ++j) values[j] = static_cast<float>(j) * 0.25f - 7.f;
  const auto chunk = [&](size_t c) {
    return std::vector<Range>{{c, 0, static_cast<uint64_t>(p.chunks[c].count)}};
  };
  std::vector<Range> rest;  // chunks 3 .. n - 1: the last part
  for (size_t c = 3; c < n; ++c) rest.push_back(chunk(c)[0]);
  std::vector<Range> whole = chunk(0);
  for (size_t c = 1; c < n; ++c) whole.push_back(chunk(c)[0]);

  auto fake = std::async(std::launch::async, [&]() -> int {
    int pushes = 0;
    std::optional<zmq::message_t> lane;  // the stripe's connection
    std::optional<InMessage> push;       // the last part (it may come before the stripe)
    for (int i = 0; i < 20; ++i) {
      auto m = recv_message(router, milliseconds(10000), true, kJob);
      if (!m.ok()) {
        ADD_FAILURE() << m.status().to_string();
        return pushes;
      }
      if (m->header.kind() == wire::HELLO) {
        fake_answer(router, *m, wire::REPLY_OK, "");
        continue;
      }
      if (m->header.kind() == wire::PULL) {
        fake_params(router, *m, p, values, whole, false, 0);
        return pushes;
      }
      if (m->header.kind() != wire::PUSH) continue;
      if (m->header.more_parts()) {
        lane.emplace(m->routing_id.data(), m->routing_id.size());
      } else {
        push = std::move(m).value();
      }
      if (!lane || !push) continue;  // (the other is on its way, over the other connection)
      ++pushes;
      const InMessage* last = &*push;
      EXPECT_EQ(last->header.reply_lanes(), 1u);
      EXPECT_EQ(last->header.parts_elsewhere(), 1u);
      EXPECT_TRUE(last->header.then_pull());
      m = std::move(*push);
      push.reset();
      if (pushes == 1) {
        fake_params(router, *m, p, values, rest, false, 3, 3);
        fake_params(router, *m, p, values, chunk(2), true, 0, 2, false, &*lane);
        fake_params(router, *m, p, values, chunk(1), true, 0, 1);
        fake_params(router, *m, p, values, chunk(0), true, 0, 0, false, &*lane);
      } else {
        fake_params(router, *m, p, values, chunk(0), true, 0, 0);
        fake_params(router, *m, p, values, rest, false, 3, 3, /*lost=*/true);
      }
      lane.reset();
    }
    return pushes;
  });

  auto client =
      tcp_client(ctx, {{"127.0.0.1", port_of(router)}}, p, 0, 0, FloatFormat::kFloat32, 2, 4096);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->hello(p.hash).ok());
  std::vector<float> grads(kCount, 0.5f), params(kCount, -1.f);
  PsSteps pulled;
  ArrivedRecorder arrived;
  arrived.params = &params;
  auto first = client->push_pull(grads, PsSteps{0}, nullptr, params, PsSteps{0}, pulled, &arrived);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_TRUE(first->pulled);
  expect_same_bits(params, values, "parts out of order");
  EXPECT_EQ(client->reply_parts_received(), 3u);
  EXPECT_EQ(client->reply_parts_on_lanes(), 2u);
  // Told chunk by chunk in order, whatever order the parts came in, then all.
  const auto end_of = [&](size_t c) { return p.chunks[c].flat_offset + p.chunks[c].count; };
  EXPECT_EQ(arrived.told,
            (std::vector<int64_t>{end_of(0), end_of(1), end_of(2), static_cast<int64_t>(kCount)}));
  EXPECT_EQ(arrived.restarts, 0);
  arrived.expect_final(params);

  std::fill(params.begin(), params.end(), -1.f);
  arrived = ArrivedRecorder{};
  arrived.params = &params;
  auto second = client->push_pull(grads, PsSteps{0}, nullptr, params, PsSteps{0}, pulled, &arrived);
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  EXPECT_FALSE(second->pulled);
  // The first chunk was told of; the lost part took it back.
  EXPECT_EQ(arrived.told, (std::vector<int64_t>{end_of(0)}));
  EXPECT_EQ(arrived.restarts, 1);
  auto again = client->pull(params, 0);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  expect_same_bits(params, values, "the pull after a lost part");
  ASSERT_EQ(fake.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(fake.get(), 2);
}

}  // namespace
}  // namespace pstrain
