// The parameter server over real sockets on 127.0.0.1, driven by PsClient from the test.
#include "ps/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "ps/client.h"
#include "runtime/wire/transport.h"
#include "tests/ps/server_fixture.h"
#include "tests/sgd_config.h"

namespace pstrain {
namespace {

using std::chrono::milliseconds;
using testing_util::ServerFixture;
using testing_util::sgd_config;
constexpr uint64_t kJob = ServerFixture::kJob;

Placement two_variables() {
  std::vector<VariableSpec> vars = {{"a", {3}, 0, {}}, {"b", {2}, 3, {}}};
  return place_variables(vars, 1);
}

TEST(ParameterServer, SyncStepWithABackupWorkerThenEveryoneDone) {
  ServerFixture f({.num_workers = 3});
  const Placement p = two_variables();
  auto w0 = f.client(0, p), w1 = f.client(1, p), w2 = f.client(2, p);
  for (auto* w : {w0.get(), w1.get(), w2.get()}) ASSERT_TRUE(w->hello(p.hash).ok());
  std::vector<float> init = {1, 2, 3, 4, 5};
  ASSERT_TRUE(w0->init(sgd_config(true, 2, 3, 10, p.hash), init).ok());

  std::vector<float> params(5);
  auto s0 = w0->pull(params, 0);
  ASSERT_TRUE(s0.ok()) << s0.status().to_string();
  EXPECT_EQ(params, init);
  EXPECT_EQ((*s0)[0], 0);
  std::vector<float> g0 = {1, 1, 1, 1, 1}, g1 = {3, 3, 3, 3, 3}, g2 = {100, 100, 100, 100, 100};
  auto r0 = w0->push(g0, *s0, nullptr);
  ASSERT_TRUE(r0.ok());
  EXPECT_TRUE(r0->accepted);
  EXPECT_EQ(r0->global_step, 0);  // waiting for a second replica
  auto r1 = w1->push(g1, *s0, nullptr);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->global_step, 1);
  auto r2 = w2->push(g2, *s0, nullptr);  // the backup's gradient for step 0 is stale now
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(r2->accepted);

  auto s1 = w2->pull(params, 1);
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ((*s1)[0], 1);
  EXPECT_EQ(params, (std::vector<float>{-1, 0, 1, 2, 3}));  // minus mean(1, 3)

  auto stats = w0->status(0);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->stale_gradients_dropped(), 1);
  EXPECT_EQ(stats->gradients_applied(), 2);

  for (auto* w : {w0.get(), w1.get(), w2.get()}) ASSERT_TRUE(w->done().ok());
  auto summary = f.finish();
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->workers_done, 3);
  EXPECT_EQ(summary->final_step, 1);
}

// push_pull: a push and the next pull in one round trip. In sync mode the first worker's
// answer waits for the step the second one completes, and both get that step's parameters,
// as a plain pull then gives them; a stale backup gradient is refused and still pulls along.
TEST(PsClient, PushPullAnswersWithTheParametersOfTheStepItWaitsFor) {
  ServerFixture f({.num_workers = 3});
  const Placement p = two_variables();
  auto w0 = f.client(0, p), w1 = f.client(1, p), w2 = f.client(2, p);
  for (auto* w : {w0.get(), w1.get(), w2.get()}) ASSERT_TRUE(w->hello(p.hash).ok());
  const std::vector<float> init = {1, 2, 3, 4, 5};
  ASSERT_TRUE(w0->init(sgd_config(true, 2, 3, 10, p.hash), init).ok());
  std::vector<float> params(5);
  auto s0 = w0->pull(params, 0);
  ASSERT_TRUE(s0.ok()) << s0.status().to_string();

  const std::vector<float> g0 = {1, 1, 1, 1, 1}, g1 = {3, 3, 3, 3, 3}, g2 = {9, 9, 9, 9, 9};
  std::vector<float> p0(5, -7.f), p1(5, -7.f), p2(5, -7.f);
  PsSteps pulled0, pulled1, pulled2;
  // Worker 0's answer comes only once worker 1's gradient completed step 1.
  auto first = std::async(std::launch::async,
                          [&] { return w0->push_pull(g0, *s0, nullptr, p0, PsSteps{1}, pulled0); });
  EXPECT_EQ(first.wait_for(milliseconds(200)), std::future_status::timeout);
  auto r1 = w1->push_pull(g1, *s0, nullptr, p1, PsSteps{1}, pulled1);
  ASSERT_TRUE(r1.ok()) << r1.status().to_string();
  ASSERT_EQ(first.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto r0 = first.get();
  ASSERT_TRUE(r0.ok()) << r0.status().to_string();
  for (auto* r : {&*r0, &*r1}) {
    EXPECT_TRUE(r->accepted);
    EXPECT_EQ(r->global_step, 1);
  }
  ASSERT_TRUE(r0->pulled);
  ASSERT_TRUE(r1->pulled);
  EXPECT_EQ(pulled0, PsSteps{1});
  EXPECT_EQ(pulled1, PsSteps{1});
  const std::vector<float> step1 = {-1, 0, 1, 2, 3};  // minus mean(1, 3)
  EXPECT_EQ(p0, step1);
  EXPECT_EQ(p1, step1);
  // The backup's gradient for step 0 is stale: refused, and the parameters still come along.
  auto r2 = w2->push_pull(g2, *s0, nullptr, p2, PsSteps{1}, pulled2);
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  EXPECT_FALSE(r2->accepted);
  ASSERT_TRUE(r2->pulled);
  EXPECT_EQ(p2, step1);
  // A plain pull agrees, bit for bit.
  std::vector<float> again(5);
  auto s1 = w2->pull(again, 1);
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ(again, step1);

  for (auto* w : {w0.get(), w1.get(), w2.get()}) ASSERT_TRUE(w->done().ok());
  auto summary = f.finish();
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->final_step, 1);
}

TEST(ParameterServer, PullBeforeInitIsAnsweredWhenTheChiefInitialises) {
  ServerFixture f({.num_workers = 2, .long_poll = milliseconds(200)});
  const Placement p = two_variables();
  auto w0 = f.client(0, p), w1 = f.client(1, p);
  ASSERT_TRUE(w1->hello(p.hash).ok());
  // Worker 1 asks first; its request is parked (and re-asked after each long poll) until the
  // chief's INIT arrives.
  std::vector<float> params(5, -1.f);
  auto pulled = std::async(std::launch::async, [&] { return w1->pull(params, 0); });
  EXPECT_EQ(pulled.wait_for(milliseconds(300)), std::future_status::timeout);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  std::vector<float> init = {5, 4, 3, 2, 1};
  ASSERT_TRUE(w0->init(sgd_config(false, 1, 2, 10, p.hash), init).ok());
  ASSERT_EQ(pulled.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(pulled.get().ok());
  EXPECT_EQ(params, init);
  ASSERT_TRUE(w0->done().ok());
  ASSERT_TRUE(w1->done().ok());
  EXPECT_TRUE(f.finish().ok());
}

TEST(ParameterServer, MalformedAndForeignMessagesAreCountedAndDropped) {
  ServerFixture f({.num_workers = 1});
  auto raw = connect_socket(f.ctx, zmq::socket_type::dealer, "127.0.0.1", f.server->port(), "raw");
  ASSERT_TRUE(raw.ok());
  zmq::socket_t& s = *raw;
  // 1. Bytes that are no protobuf header at all.
  s.send(zmq::buffer(std::string("\xff\xff\xff garbage")), zmq::send_flags::none);
  // 2. Another job's message, and another protocol version.
  OutMessage other_job;
  other_job.header.set_kind(wire::HELLO);
  other_job.header.set_job_id(kJob + 1);
  ASSERT_TRUE(send_message(s, std::move(other_job)).ok());
  wire::Header old;
  old.set_version(kProtocolVersion + 1);
  old.set_job_id(kJob);
  old.set_kind(wire::HELLO);
  s.send(zmq::buffer(old.SerializeAsString()), zmq::send_flags::none);
  // 3. A header announcing a frame that does not follow.
  wire::Header missing;
  missing.set_version(kProtocolVersion);
  missing.set_job_id(kJob);
  missing.set_kind(wire::PUSH);
  auto* fi = missing.add_frames();
  fi->set_key("a/0");
  fi->set_dtype(wire::DTYPE_FLOAT32);
  fi->set_count(3);
  s.send(zmq::buffer(missing.SerializeAsString()), zmq::send_flags::none);
  // 4. A frame whose size disagrees with its count.
  s.send(zmq::buffer(missing.SerializeAsString()), zmq::send_flags::sndmore);
  s.send(zmq::buffer(std::string(5, 'x')), zmq::send_flags::none);
  // 5. A sender that is no worker of this job.
  OutMessage stranger;
  stranger.header.set_kind(wire::HELLO);
  stranger.header.set_job_id(kJob);
  stranger.header.set_sender(9);
  ASSERT_TRUE(send_message(s, std::move(stranger)).ok());

  // A STATUS on the same connection is answered after everything sent before it, so its
  // counters include every bad message above.
  OutMessage status;
  status.header.set_kind(wire::STATUS);
  status.header.set_job_id(kJob);
  status.header.set_sender(-1);
  status.header.set_request_id(5);
  ASSERT_TRUE(send_message(s, std::move(status)).ok());
  // The stranger's HELLO was answered with an error first; then comes the STATUS reply.
  auto refusal = recv_message(s, milliseconds(10000), false, kJob);
  ASSERT_TRUE(refusal.ok()) << refusal.status().to_string();
  EXPECT_EQ(refusal->header.kind(), wire::REPLY_ERROR);
  auto reply = recv_message(s, milliseconds(10000), false, kJob);
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(reply->header.request_id(), 5u);
  EXPECT_EQ(reply->header.stats().foreign_messages(), 2);
  EXPECT_EQ(reply->header.stats().bad_messages(), 4);

  // The server is still serving: a real worker gets through.
  const Placement p = two_variables();
  auto w0 = f.client(0, p);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_TRUE(w0->done().ok());
  EXPECT_TRUE(f.finish().ok());
}

TEST(ParameterServer, LostWorkerNoLongerStallsSyncTraining) {
  ServerFixture f(
      {.num_workers = 2, .heartbeat_timeout = milliseconds(500), .long_poll = milliseconds(200)});
  const Placement p = two_variables();
  auto w0 = f.client(0, p), w1 = f.client(1, p);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_TRUE(w1->hello(p.hash).ok());
  ASSERT_TRUE(w0->init(sgd_config(true, 2, 2, 10, p.hash), std::vector<float>(5, 0.f)).ok());
  w0->start_heartbeats();  // worker 1 stays silent from here on: it "died"
  std::vector<float> params(5);
  auto s0 = w0->pull(params, 0);
  ASSERT_TRUE(s0.ok());
  auto r = w0->push(std::vector<float>(5, 1.f), *s0, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->global_step, 0);
  // Once worker 1 is declared lost, one gradient completes the step.
  auto s1 = w0->pull(params, 1);
  ASSERT_TRUE(s1.ok()) << s1.status().to_string();
  EXPECT_EQ((*s1)[0], 1);
  EXPECT_EQ(params, std::vector<float>(5, -1.f));
  ASSERT_TRUE(w0->done().ok());
  w0->stop_heartbeats();
  auto summary = f.finish();
  // Training reached its end with worker 0: the loss of worker 1 is reported, not a failure.
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->workers_done, 1);
  EXPECT_EQ(summary->workers_lost, std::vector<int>{1});
}

TEST(ParameterServer, EveryWorkerLostIsAnErrorNamingThem) {
  ServerFixture f({.num_workers = 2, .heartbeat_timeout = milliseconds(300)});
  const Placement p = two_variables();
  {
    auto w0 = f.client(0, p), w1 = f.client(1, p);
    ASSERT_TRUE(w0->hello(p.hash).ok());
    ASSERT_TRUE(w1->hello(p.hash).ok());
  }  // both fall silent without DONE
  auto summary = f.finish();
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(
      summary.status().message().find("worker(s) 0, 1 stopped sending messages (lost) and none"),
      std::string::npos)
      << summary.status().message();
}

TEST(ParameterServer, ChiefLostBeforeInitFailsTheWaitingWorkers) {
  // Worker 1 waits for the variables; the chief never comes. Once the PS gives up on it, the
  // waiting PULL gets an error naming the chief instead of waiting forever, and the PS exits.
  ServerFixture f({.num_workers = 2,
                   .heartbeat_timeout = milliseconds(400),
                   .startup_timeout = milliseconds(400),
                   .long_poll = milliseconds(200)});
  const Placement p = two_variables();
  auto w1 = f.client(1, p);
  ASSERT_TRUE(w1->hello(p.hash).ok());
  std::vector<float> params(5);
  auto pulled = w1->pull(params, 0);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.status().message().find("chief"), std::string::npos)
      << pulled.status().message();
  auto summary = f.finish();
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(summary.status().message().find("worker(s) 0, 1"), std::string::npos)
      << summary.status().message();
}

TEST(ParameterServer, StalenessHoldsAWorkerThatRunsAhead) {
  // Async with --staleness=1: worker 0 may push at most one gradient more than worker 1.
  ServerFixture f({.num_workers = 2, .long_poll = milliseconds(200)});
  const Placement p = two_variables();
  auto w0 = f.client(0, p), w1 = f.client(1, p);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_TRUE(w1->hello(p.hash).ok());
  JobTrainingConfig config = sgd_config(false, 1, 2, 100, p.hash);
  config.staleness = 1;
  ASSERT_TRUE(w0->init(config, std::vector<float>(5, 0.f)).ok());
  std::vector<float> params(5), g(5, 1.f);
  for (int i = 0; i < 2; ++i) {  // two steps ahead of worker 1's zero
    auto s = w0->pull(params, 0);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    ASSERT_TRUE(w0->push(g, *s, nullptr).ok());
  }
  auto held = std::async(std::launch::async, [&] { return w0->pull(params, 0); });
  EXPECT_EQ(held.wait_for(milliseconds(500)), std::future_status::timeout)
      << "worker 0 ran two steps ahead of worker 1";
  std::vector<float> params1(5);
  auto s1 = w1->pull(params1, 0);
  ASSERT_TRUE(s1.ok());
  ASSERT_TRUE(w1->push(g, *s1, nullptr).ok());  // the slowest moves: worker 0 may go on
  ASSERT_EQ(held.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto s = held.get();
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ((*s)[0], 3);  // async: three gradients applied
  ASSERT_TRUE(w0->done().ok());
  ASSERT_TRUE(w1->done().ok());
  EXPECT_TRUE(f.finish().ok());
}

TEST(ParameterServer, WorkerWithAnotherLayoutIsRefused) {
  ServerFixture f({.num_workers = 2});
  const Placement p = two_variables();
  auto w0 = f.client(0, p), w1 = f.client(1, p);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_TRUE(w0->init(sgd_config(false, 1, 2, 10, p.hash), std::vector<float>(5, 0.f)).ok());
  auto refused = w1->hello(p.hash + 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--model"), std::string::npos)
      << refused.status().message();
  ASSERT_TRUE(w0->done().ok());
  ASSERT_TRUE(w1->done().ok());
  EXPECT_TRUE(f.finish().ok());
}

// The parameters after one worker's pushes of `grads`, async, with `optimizer` sent in INIT.
std::vector<float> train_on_server(const OptimizerConfig& optimizer, const std::vector<float>& init,
                                   const std::vector<std::vector<float>>& grads) {
  ServerFixture f({.num_workers = 1});
  const Placement p = two_variables();
  auto w0 = f.client(0, p);
  EXPECT_TRUE(w0->hello(p.hash).ok());
  JobTrainingConfig config = sgd_config(false, 1, 1, 100, p.hash);
  config.optimizer = optimizer;
  Status st = w0->init(config, init);
  EXPECT_TRUE(st.ok()) << st.to_string();
  std::vector<float> params(init.size());
  for (const auto& g : grads) {
    auto s = w0->pull(params, 0);
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    if (!s.ok()) break;
    EXPECT_TRUE(w0->push(g, *s, nullptr).ok());
  }
  EXPECT_TRUE(w0->pull(params, 0).ok());
  EXPECT_TRUE(w0->done().ok());
  auto summary = f.finish();
  EXPECT_TRUE(summary.ok()) << summary.status().to_string();
  const auto& kept = f.server->training_config();  // serve() returned: safe to read
  EXPECT_TRUE(kept.has_value());
  if (kept) {
    EXPECT_EQ(kept->model, "test");
    EXPECT_EQ(kept->optimizer.kind, optimizer.kind);
    EXPECT_EQ(kept->optimizer.momentum, optimizer.momentum);
    EXPECT_EQ(kept->optimizer.beta1, optimizer.beta1);
    EXPECT_EQ(kept->optimizer.beta2, optimizer.beta2);
    EXPECT_EQ(kept->optimizer.epsilon, optimizer.epsilon);
    EXPECT_EQ(kept->optimizer.initial_accumulator, optimizer.initial_accumulator);
  }
  return params;
}

// The same updates with kernels/optim.h's functions, in this process.
std::vector<float> train_locally(const OptimizerConfig& optimizer, std::vector<float> params,
                                 const std::vector<std::vector<float>>& grads) {
  const int slots = optimizer_slot_count(optimizer.kind);
  std::vector<float> slot0(slots > 0 ? params.size() : 0, optimizer_slot_initial_value(optimizer));
  std::vector<float> slot1(slots > 1 ? params.size() : 0, optimizer_slot_initial_value(optimizer));
  int64_t t = 0;
  for (const auto& g : grads) apply_update(optimizer, params, g, slot0, slot1, ++t);
  return params;
}

TEST(ParameterServer, InitAppliesEveryHyperParameterTheChiefSent) {
  const std::vector<float> init = {1, -2, 3, 0.5f, -0.25f};
  const std::vector<std::vector<float>> grads = {{0.5f, -1, 2, 0.25f, -4}, {1, 1, -0.5f, 0.75f, 2}};
  OptimizerConfig momentum;
  momentum.kind = OptimizerKind::kMomentum;
  momentum.learning_rate = 0.1f;
  momentum.momentum = 0.5f;
  OptimizerConfig adam;
  adam.kind = OptimizerKind::kAdam;
  adam.learning_rate = 0.1f;
  adam.beta1 = 0.8f;
  adam.beta2 = 0.99f;
  adam.epsilon = 0.5f;
  OptimizerConfig adagrad;
  adagrad.kind = OptimizerKind::kAdagrad;
  adagrad.learning_rate = 0.1f;
  adagrad.initial_accumulator = 2.f;
  for (const OptimizerConfig& o : {momentum, adam, adagrad}) {
    SCOPED_TRACE(optimizer_name(o.kind));
    const std::vector<float> served = train_on_server(o, init, grads);
    EXPECT_EQ(served, train_locally(o, init, grads));  // bit for bit
    // The hyper-parameters matter here: the defaults would give other values.
    OptimizerConfig defaults;
    defaults.kind = o.kind;
    defaults.learning_rate = o.learning_rate;
    EXPECT_NE(served, train_locally(defaults, init, grads));
  }
}

TEST(ParameterServer, InvalidTrainingConfigIsRefusedNamingTheProblem) {
  ServerFixture f({.num_workers = 1});
  const Placement p = two_variables();
  auto raw = connect_socket(f.ctx, zmq::socket_type::dealer, "127.0.0.1", f.server->port(), "raw");
  ASSERT_TRUE(raw.ok());
  // The chief's INIT straight from bytes (PsClient checks the config before sending).
  JobTrainingConfig config = sgd_config(false, 1, 1, 10, p.hash);
  OutMessage init;
  init.header.set_kind(wire::INIT);
  init.header.set_job_id(kJob);
  init.header.set_sender(0);
  init.header.set_request_id(1);
  *init.header.mutable_config() = config.to_wire();
  init.header.mutable_config()->set_adam_beta2(1.5f);
  ASSERT_TRUE(send_message(*raw, std::move(init)).ok());
  auto reply = recv_message(*raw, milliseconds(10000), false, kJob);
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(reply->header.kind(), wire::REPLY_ERROR);
  EXPECT_NE(reply->header.error().find("adam_beta2"), std::string::npos) << reply->header.error();
  EXPECT_FALSE(reply->header.initialized());

  // Still serving, still uninitialised: the chief's valid INIT goes through (from the real
  // chief, once the raw connection that spoke for worker 0 is closed: ps/server.h).
  raw->close();
  auto w0 = f.client(0, p);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_TRUE(w0->init(config, std::vector<float>(5, 0.f)).ok());
  ASSERT_TRUE(w0->done().ok());
  EXPECT_TRUE(f.finish().ok());
  ASSERT_TRUE(f.server->training_config().has_value());
  EXPECT_EQ(f.server->training_config()->optimizer.beta2, config.optimizer.beta2);
}

// --transport=shm: a PS maps a segment only for a peer on a Unix socket whose credentials give
// the segment's pid, only with the right token, and says why not in its HELLO reply; a PUSH
// whose frames point outside the mapped segment is counted as malformed and changes nothing.
TEST(ParameterServer, SharedMemoryOnlyForThePeersOwnSegment) {
  ServerFixture f({.num_workers = 2});
  const Placement p = two_variables();
  auto seg = ShmSegment::create(4096);
  ASSERT_TRUE(seg.ok()) << seg.status().to_string();
  auto hello = [&](zmq::socket_t& s, int sender, uint32_t pid, uint64_t token) {
    OutMessage m;
    m.header.set_kind(wire::HELLO);
    m.header.set_job_id(kJob);
    m.header.set_sender(sender);
    m.header.set_request_id(static_cast<uint64_t>(token));
    m.header.mutable_config()->set_layout_hash(p.hash);
    m.header.mutable_shm()->set_pid(pid);
    m.header.mutable_shm()->set_fd((*seg)->fd());
    m.header.mutable_shm()->set_token(token);
    EXPECT_TRUE(send_message(s, std::move(m)).ok());
    auto reply = recv_message(s, milliseconds(10000), false, kJob);
    EXPECT_TRUE(reply.ok()) << reply.status().to_string();
    return reply.ok() ? reply->header : wire::Header();
  };
  const uint32_t me = (*seg)->pid();
  const uint64_t token = (*seg)->token();

  // Over TCP: no credentials to check, so no mapping.
  auto tcp = connect_socket(f.ctx, zmq::socket_type::dealer, "127.0.0.1", f.server->port(), "tcp");
  ASSERT_TRUE(tcp.ok());
  wire::Header h = hello(*tcp, 1, me, token);
  EXPECT_EQ(h.kind(), wire::REPLY_OK);
  EXPECT_FALSE(h.shm_attached());
  EXPECT_NE(h.shm_error().find("not a Unix socket"), std::string::npos) << h.shm_error();

  SocketOptions so;
  so.transport = Transport::kShm;
  auto ipc =
      connect_socket(f.ctx, zmq::socket_type::dealer, "127.0.0.1", f.server->port(), "ipc", so);
  ASSERT_TRUE(ipc.ok());
  // Another process's segment (pid 1): refused, whatever the token.
  h = hello(*ipc, 0, 1, token);
  EXPECT_FALSE(h.shm_attached());
  EXPECT_NE(h.shm_error().find("maps only its peer's own segment"), std::string::npos)
      << h.shm_error();
  // This process's, with another token: refused.
  h = hello(*ipc, 0, me, token ^ 0x5a5a);
  EXPECT_FALSE(h.shm_attached());
  EXPECT_NE(h.shm_error().find("token"), std::string::npos) << h.shm_error();
  // This process's, with its token: mapped.
  h = hello(*ipc, 0, me, token);
  EXPECT_TRUE(h.shm_attached()) << h.shm_error();

  // A PUSH whose frame lies past the segment's end: malformed, counted, no reply. The STATUS
  // sent after it on the same connection is answered after it was handled.
  auto status = [&](uint64_t id) -> int64_t {
    OutMessage m;
    m.header.set_kind(wire::STATUS);
    m.header.set_job_id(kJob);
    m.header.set_sender(-1);
    m.header.set_request_id(id);
    EXPECT_TRUE(send_message(*ipc, std::move(m)).ok());
    auto reply = recv_message(*ipc, milliseconds(10000), false, kJob);
    EXPECT_TRUE(reply.ok()) << reply.status().to_string();
    if (!reply.ok()) return -1;
    EXPECT_EQ(reply->header.request_id(), id);
    return reply->header.stats().bad_messages();
  };
  const int64_t before = status(100);
  wire::Header push;
  push.set_version(kProtocolVersion);
  push.set_kind(wire::PUSH);
  push.set_job_id(kJob);
  push.set_sender(0);
  push.mutable_shm()->set_pid(me);
  push.mutable_shm()->set_fd((*seg)->fd());
  push.mutable_shm()->set_token(token);
  wire::FrameInfo* fi = push.add_frames();
  fi->set_key(p.chunks[0].key);
  fi->set_dtype(wire::DTYPE_FLOAT32);
  fi->set_count(static_cast<uint64_t>(p.chunks[0].count));
  fi->set_in_shm(true);
  fi->set_shm_offset((*seg)->bytes().size() - 4);
  const std::string bytes = push.SerializeAsString();
  ASSERT_TRUE(ipc->send(zmq::buffer(bytes), zmq::send_flags::sndmore));
  ASSERT_TRUE(ipc->send(zmq::message_t(), zmq::send_flags::none));
  EXPECT_EQ(status(101), before + 1);
}

TEST(PsClient, InitChecksTheConfigBeforeSending) {
  ServerFixture f({.num_workers = 1});
  const Placement p = two_variables();
  auto w0 = f.client(0, p);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  JobTrainingConfig config = sgd_config(false, 1, 1, 10, p.hash);
  config.optimizer.momentum = -1.f;
  Status st = w0->init(config, std::vector<float>(5, 0.f));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("momentum"), std::string::npos) << st.message();
  ASSERT_TRUE(w0->done().ok());
  EXPECT_TRUE(f.finish().ok());
}

TEST(ParameterServer, PortInUseIsAClearError) {
  zmq::context_t ctx(1);
  auto first = ParameterServer::create(ctx, {.host = "127.0.0.1", .port = 0, .job_id = kJob});
  ASSERT_TRUE(first.ok());
  auto second =
      ParameterServer::create(ctx, {.host = "127.0.0.1", .port = (*first)->port(), .job_id = kJob});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("already in use"), std::string::npos)
      << second.status().message();
  EXPECT_NE(second.status().message().find(std::to_string((*first)->port())), std::string::npos);
}

TEST(PsClient, UnreachableServerIsNamedAfterTheDeadline) {
  zmq::context_t ctx(1);
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok());
  const Placement p = two_variables();
  ClientOptions co;
  co.job_id = kJob;
  co.connect_timeout = milliseconds(600);
  auto c = PsClient::connect(ctx, {HostPort{"127.0.0.1", *port}}, p, co);
  ASSERT_TRUE(c.ok());
  auto hello = (*c)->hello(p.hash);
  ASSERT_FALSE(hello.ok());
  EXPECT_NE(hello.status().message().find("127.0.0.1:" + std::to_string(*port)), std::string::npos)
      << hello.status().message();
}

TEST(PsClient, AStoppedPushToAServerThatStoppedReadingLetsGoOfTheBufferAtOnce) {
  // A PS that stopped reading (stopped by the same SIGTERM as the worker, about to exit): the
  // worker's PUSH messages back up in its socket, borrowing the gradient buffer for as long as
  // the socket lives. A stopped push must still end as a stop, at once, not wait reply_timeout
  // for ZeroMQ and then fail with "did not release a gradient buffer".
  zmq::context_t ctx(1);
  zmq::socket_t silent(ctx, zmq::socket_type::router);
  silent.set(zmq::sockopt::rcvhwm, 1);
  silent.set(zmq::sockopt::rcvbuf, 4096);
  silent.set(zmq::sockopt::linger, 0);
  silent.bind("tcp://127.0.0.1:0");
  const std::string endpoint = silent.get(zmq::sockopt::last_endpoint);
  const int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  // Frames of kZeroCopyMinBytes or more are borrowed, not copied (runtime/wire/message.h).
  const int64_t n = 16 * static_cast<int64_t>(kZeroCopyMinBytes / sizeof(float));
  const Placement p = place_variables({{"a", {n}, 0, {}}, {"b", {n}, n, {}}}, 1);
  std::atomic<int> stop{SIGTERM};
  ClientOptions co;
  co.job_id = kJob;
  co.reply_timeout = milliseconds(20000);
  co.stop = &stop;
  auto c = PsClient::connect(ctx, {HostPort{"127.0.0.1", port}}, p, co);
  ASSERT_TRUE(c.ok());
  auto grads = std::make_shared<std::vector<float>>(static_cast<size_t>(2 * n), 1.0f);
  // 12 pushes of 512 KiB are more than the sockets' buffers hold (without the fix, push 4
  // already waited). Not more: each stopped push closes and reopens the socket under a
  // message still queued, and libzmq 4.3.4 has been seen to abort on that
  // (session_base.cpp:260, EAGAIN) once in dozens of runs of 40 pushes.
  for (int i = 0; i < 12; ++i) {
    auto pushed = (*c)->push(*grads, {0}, grads);
    ASSERT_FALSE(pushed.ok());
    ASSERT_EQ(pushed.status().code(), StatusCode::kCancelled)
        << "push " << i << ": " << pushed.status().to_string();
  }
}

}  // namespace
}  // namespace pstrain
