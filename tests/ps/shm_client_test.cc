// PsClient::flat_in_shm(): a worker of a one-PS job whose gradients and parameters live in the
// shared-memory segment trains exactly as one over TCP, the PS writes its reply where the flat
// layout has each chunk, and the regions are offered only where they can hold the whole model.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "ps/client.h"
#include "ps/placement.h"
#include "ps/server.h"
#include "tests/ps/server_fixture.h"
#include "tests/sgd_config.h"

namespace pstrain {
namespace {

using std::chrono::milliseconds;
constexpr uint64_t kJob = 57;
constexpr int kSteps = 20;

// Sizes that are not multiples of 16 floats: the PS's reply must not pad between chunks.
std::vector<VariableSpec> variables() {
  return {{"a/kernel", {37, 11}, 0, {}},
          {"a/bias", {11}, 407, {}},
          {"b/kernel", {11, 5}, 418, {}},
          {"b/bias", {5}, 473, {}}};
}

std::vector<float> initial(int64_t count) {
  std::vector<float> v(static_cast<size_t>(count));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * static_cast<float>(i % 97) - 0.4f;
  return v;
}

// A gradient that depends on the parameters it is computed from, as a real one does.
void gradient_of(std::span<const float> params, int step, std::span<float> grads) {
  for (size_t i = 0; i < grads.size(); ++i) {
    grads[i] = 0.5f * params[i] + 0.001f * static_cast<float>((i + static_cast<size_t>(step)) % 13);
  }
}

struct Connected {
  std::unique_ptr<testing_util::ServerFixture> server;
  std::unique_ptr<PsClient> client;
};

Connected connect(const Placement& placement, Transport transport,
                  FloatFormat compression = FloatFormat::kFloat32) {
  Connected c;
  c.server = std::make_unique<testing_util::ServerFixture>(ServerOptions{.num_workers = 1}, kJob);
  if (!c.server->ok()) return c;
  ClientOptions co;
  co.job_id = kJob;
  co.transport = transport;
  co.compression = compression;
  co.connect_timeout = milliseconds(10000);
  co.reply_timeout = milliseconds(20000);
  auto client =
      PsClient::connect(c.server->ctx, {HostPort{"127.0.0.1", c.server->port()}}, placement, co);
  EXPECT_TRUE(client.ok()) << client.status().to_string();
  if (!client.ok()) return c;
  c.client = std::move(client).value();
  Status st = c.client->hello(placement.hash).status();
  if (st.ok()) {
    st = c.client->init(testing_util::sgd_config(false, 1, 1, 1000, placement.hash, 0.1f),
                        initial(placement.total_elements));
  }
  EXPECT_TRUE(st.ok()) << st.to_string();
  if (!st.ok()) c.client.reset();
  return c;
}

// kSteps of push_pull() from `grads` into `params` (the caller's buffers or the segment's).
Status train(PsClient& ps, std::span<float> grads, std::span<float> params,
             std::shared_ptr<const void> owner) {
  PsSteps steps{0}, next{0};
  const PsSteps any{0};
  Result<PsSteps> first = ps.pull(params, any);
  if (!first.ok()) return first.status();
  steps = *first;
  for (int s = 0; s < kSteps; ++s) {
    gradient_of(params, s, grads);
    Result<PushResult> r = ps.push_pull(grads, steps, owner, params, any, next);
    if (!r.ok()) return r.status();
    if (!r->pulled || !r->accepted) return internal_error("the PS did not answer with its values");
    std::swap(steps, next);
  }
  return {};
}

TEST(ShmClientTest, AModelLivingInTheSegmentTrainsExactlyAsOverTcp) {
  const Placement placement = place_variables(variables(), 1, 100);  // several chunks each
  ASSERT_GT(placement.chunks.size(), 4u);
  const auto count = static_cast<size_t>(placement.total_elements);

  Connected tcp = connect(placement, Transport::kTcp);
  ASSERT_NE(tcp.client, nullptr);
  EXPECT_TRUE(tcp.client->flat_in_shm().gradients.empty()) << "TCP has no segment";
  std::vector<float> tcp_grads(count), tcp_params(count);
  Status st = train(*tcp.client, tcp_grads, tcp_params, nullptr);
  ASSERT_TRUE(st.ok()) << st.to_string();

  Connected shm = connect(placement, Transport::kShm);
  ASSERT_NE(shm.client, nullptr);
  ASSERT_EQ(shm.client->transport_of(0), Transport::kShm);
  const PsClient::FlatInShm flat = shm.client->flat_in_shm();
  ASSERT_EQ(flat.gradients.size(), count);
  ASSERT_EQ(flat.parameters.size(), count);
  ASSERT_NE(flat.owner, nullptr);
  // Two regions that do not overlap.
  EXPECT_TRUE(flat.gradients.data() + count <= flat.parameters.data() ||
              flat.parameters.data() + count <= flat.gradients.data());
  st = train(*shm.client, flat.gradients, flat.parameters, flat.owner);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(flat.parameters.data(), tcp_params.data(), count * sizeof(float)), 0)
      << "the parameters differ from the TCP run's after " << kSteps << " steps";
  EXPECT_EQ(std::memcmp(flat.gradients.data(), tcp_grads.data(), count * sizeof(float)), 0);

  // A pull into a buffer of the caller's own: the PS wrote its reply region once more, and
  // chunk by chunk where the flat layout has it (no padding between chunks), so the region
  // holds exactly what was copied out of it.
  std::vector<float> copied(count, -1.f);
  auto pulled = shm.client->pull(copied, PsSteps{kSteps});
  ASSERT_TRUE(pulled.ok()) << pulled.status().to_string();
  EXPECT_EQ(copied, tcp_params);
  EXPECT_EQ(std::memcmp(flat.parameters.data(), copied.data(), count * sizeof(float)), 0);
  // The bytes still count as sent and received: a step's gradient and parameters.
  EXPECT_GE(shm.client->bytes_sent(), kSteps * count * sizeof(float));
  EXPECT_GE(shm.client->bytes_received(), (kSteps + 2) * count * sizeof(float));

  ASSERT_TRUE(tcp.client->done().ok());
  ASSERT_TRUE(shm.client->done().ok());
}

TEST(ShmClientTest, NoRegionsWithCompressionOrForAModelSplitOverTwoServers) {
  const Placement one = place_variables(variables(), 1, 0);
  Connected fp16 = connect(one, Transport::kShm, FloatFormat::kFloat16);
  ASSERT_NE(fp16.client, nullptr);
  ASSERT_EQ(fp16.client->transport_of(0), Transport::kShm);
  const PsClient::FlatInShm none = fp16.client->flat_in_shm();
  EXPECT_TRUE(none.gradients.empty());
  EXPECT_TRUE(none.parameters.empty());
  EXPECT_EQ(none.owner, nullptr);
  ASSERT_TRUE(fp16.client->done().ok());

  // Two servers: each holds a part, in a segment of its own; no one region spans the model.
  testing_util::ServerFixture a({.num_workers = 1}, kJob), b({.num_workers = 1}, kJob);
  ASSERT_TRUE(a.ok() && b.ok());
  const Placement two = place_variables(variables(), 2, 0);
  ClientOptions co;
  co.job_id = kJob;
  co.transport = Transport::kShm;
  zmq::context_t ctx(1);
  auto client = PsClient::connect(
      ctx, {HostPort{"127.0.0.1", a.port()}, HostPort{"127.0.0.1", b.port()}}, two, co);
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  EXPECT_EQ((*client)->transport_of(1), Transport::kShm);
  EXPECT_TRUE((*client)->flat_in_shm().gradients.empty());
}

}  // namespace
}  // namespace pstrain
