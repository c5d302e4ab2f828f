// A parameter server with the job's keys over real sockets on 127.0.0.1: only clients holding
// the job's client key get an answer; refused handshakes are counted; clients with another or
// no secret fail at once with a message saying so. And non-finite gradients are refused and
// counted while the sync step goes on with the others.
#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <limits>
#include <thread>

#include "ps/client.h"
#include "ps/server.h"
#include "ps/status_query.h"
#include "runtime/wire/security.h"
#include "runtime/wire/transport.h"
#include "tests/job_keys.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

using testing_util::keys_of;

class Server {
 public:
  Server(int workers, std::shared_ptr<const JobKeys> keys, uint64_t job_id,
         int max_connections = 0) {
    ServerOptions o;
    o.max_connections = max_connections;
    o.num_workers = workers;
    o.host = "127.0.0.1";
    o.port = 0;
    o.job_id = job_id;
    o.keys = std::move(keys);
    auto s = ParameterServer::create(ctx, o);
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    server = std::move(s).value();
    result = std::async(std::launch::async, [this] { return server->serve(); });
  }
  ~Server() {
    server->request_stop();
    if (result.valid()) result.wait();
  }
  int port() const { return server->port(); }

  zmq::context_t ctx{1};
  std::unique_ptr<ParameterServer> server;
  std::future<Result<ServerSummary>> result;
};

Placement two_variables() {
  std::vector<VariableSpec> vars = {{"a", {3}, 0, {}}, {"b", {2}, 3, {}}};
  return place_variables(vars, 1);
}

Result<std::unique_ptr<PsClient>> client(zmq::context_t& ctx, int port, int worker,
                                         const Placement& p, uint64_t job_id,
                                         std::shared_ptr<const JobKeys> keys) {
  ClientOptions co;
  co.worker = worker;
  co.job_id = job_id;
  co.connect_timeout = milliseconds(15000);
  co.reply_timeout = milliseconds(10000);
  co.keys = std::move(keys);
  return PsClient::connect(ctx, {HostPort{"127.0.0.1", port}}, p, co);
}

// A STATUS request from a raw socket; true when any answer comes within `wait`. A socket
// whose handshake the server refused before the request was queued has no connection to
// queue it on: its send times out within `wait`, which also counts as no answer.
bool raw_status_answered(zmq::context_t& ctx, int port, uint64_t job_id, SocketOptions so,
                         milliseconds wait) {
  so.send_timeout = wait;
  auto s = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", port, "foreign", so);
  EXPECT_TRUE(s.ok());
  OutMessage m;
  m.header.set_kind(wire::STATUS);
  m.header.set_job_id(job_id);
  m.header.set_sender(-1);
  m.header.set_request_id(1);
  if (!send_message(*s, std::move(m)).ok()) return false;
  zmq::pollitem_t item{static_cast<void*>(*s), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, wait);
  return (item.revents & ZMQ_POLLIN) != 0;
}

// The PS's counters, asked with the job's keys.
wire::PsStats stats_of(zmq::context_t& ctx, int port, uint64_t job_id, const JobKeys* keys) {
  auto answers =
      query_ps_status(ctx, {HostPort{"127.0.0.1", port}}, job_id, milliseconds(3000), keys);
  EXPECT_EQ(answers.size(), 1u);
  EXPECT_TRUE(answers.at(0).answered) << answers.at(0).error;
  return answers.at(0).stats;
}

TEST(PsSecurity, OnlyTheJobsKeyGetsAnAnswer) {
  const auto keys = keys_of('k');
  Server s(1, keys, keys->job_id);
  zmq::context_t ctx(1);
  // The job's own client: answered.
  SocketOptions with_key;
  with_key.curve = keys.get();
  EXPECT_TRUE(raw_status_answered(ctx, s.port(), keys->job_id, with_key, milliseconds(5000)));
  // No CURVE at all: nothing comes back.
  EXPECT_FALSE(raw_status_answered(ctx, s.port(), keys->job_id, {}, milliseconds(1500)));
  // The server's public key (say it leaked) with a client key of its own: the ZAP handler
  // refuses it.
  char pk_z85[41], sk_z85[41];
  ASSERT_EQ(zmq_curve_keypair(pk_z85, sk_z85), 0);
  uint8_t pk[32], sk[32];
  ASSERT_NE(zmq_z85_decode(pk, pk_z85), nullptr);
  ASSERT_NE(zmq_z85_decode(sk, sk_z85), nullptr);
  JobKeys forged = *keys;
  forged.client_public.assign(reinterpret_cast<const char*>(pk), 32);
  forged.client_secret.assign(reinterpret_cast<const char*>(sk), 32);
  SocketOptions forged_key;
  forged_key.curve = &forged;
  EXPECT_FALSE(raw_status_answered(ctx, s.port(), keys->job_id, forged_key, milliseconds(1500)));
  // Another job's keys: refused in the handshake.
  const auto other = keys_of('o');
  SocketOptions other_key;
  other_key.curve = other.get();
  EXPECT_FALSE(raw_status_answered(ctx, s.port(), keys->job_id, other_key, milliseconds(1500)));

  // Each refusal is counted (the monitor's events arrive asynchronously: bounded wait).
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int64_t refused = 0;
  while (Clock::now() < deadline) {
    refused = stats_of(ctx, s.port(), keys->job_id, keys.get()).unauthenticated();
    if (refused >= 3) break;
    std::this_thread::sleep_for(milliseconds(50));  // polling a counter, not synchronising
  }
  EXPECT_GE(refused, 3);
}

TEST(PsSecurity, ClientWithoutOrWithAnotherSecretFailsAtOnceSayingWhy) {
  const auto keys = keys_of('k');
  Server s(2, keys, keys->job_id);
  const Placement p = two_variables();
  zmq::context_t ctx(1);
  // The PS refuses the handshake as soon as a client connects, usually before its first
  // request: wait for that refusal (the case CI once caught, where the request found no
  // connection to queue on and the client waited the whole send timeout).
  const auto wait_refused = [&](int64_t n) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    int64_t refused = 0;
    while (Clock::now() < deadline) {
      refused = stats_of(ctx, s.port(), keys->job_id, keys.get()).unauthenticated();
      if (refused >= n) break;
      std::this_thread::sleep_for(milliseconds(50));  // polling a counter, not synchronising
    }
    EXPECT_GE(refused, n);
  };
  {
    auto c = client(ctx, s.port(), 1, p, keys->job_id, nullptr);
    ASSERT_TRUE(c.ok());
    wait_refused(1);
    const auto start = Clock::now();
    auto h = (*c)->hello(p.hash);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), StatusCode::kInvalidArgument) << h.status().to_string();
    EXPECT_NE(h.status().message().find("requires the job's secret"), std::string::npos)
        << h.status().message();
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(12));
  }
  {
    auto c = client(ctx, s.port(), 1, p, keys->job_id, keys_of('w'));
    ASSERT_TRUE(c.ok());
    wait_refused(2);
    const auto start = Clock::now();
    auto h = (*c)->hello(p.hash);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), StatusCode::kInvalidArgument) << h.status().to_string();
    EXPECT_NE(h.status().message().find("secret-w differs from the job's"), std::string::npos)
        << h.status().message();
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(12));
  }
  {
    auto c = client(ctx, s.port(), 0, p, keys->job_id, keys);
    ASSERT_TRUE(c.ok());
    auto h = (*c)->hello(p.hash);
    EXPECT_TRUE(h.ok()) << h.status().to_string();
  }
}

TEST(PsSecurity, ClientWithASecretAgainstAnOpenServerIsToldSo) {
  Server s(1, nullptr, 99);
  const Placement p = two_variables();
  zmq::context_t ctx(1);
  auto c = client(ctx, s.port(), 0, p, 99, keys_of('k'));
  ASSERT_TRUE(c.ok());
  auto h = (*c)->hello(p.hash);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(h.status().message().find("does not use a job secret"), std::string::npos)
      << h.status().message();
}

JobTrainingConfig sgd(bool sync, int workers) {
  JobTrainingConfig c;
  c.model = "test";
  c.optimizer.kind = OptimizerKind::kSgd;
  c.optimizer.learning_rate = 1.0f;
  c.sync_replicas = sync;
  c.replicas_to_aggregate = workers;
  c.num_workers = workers;
  c.train_steps = 10;
  c.layout_hash = two_variables().hash;
  return c;
}

TEST(PsSecurity, NonFiniteGradientRefusedSyncStepGoesOnWithTheOthers) {
  Server s(2, nullptr, 5);
  const Placement p = two_variables();
  zmq::context_t ctx(1);
  auto w0 = client(ctx, s.port(), 0, p, 5, nullptr);
  auto w1 = client(ctx, s.port(), 1, p, 5, nullptr);
  ASSERT_TRUE(w0.ok() && w1.ok());
  ASSERT_TRUE((*w0)->hello(p.hash).ok());
  ASSERT_TRUE((*w1)->hello(p.hash).ok());
  std::vector<float> init = {1, 2, 3, 4, 5};
  ASSERT_TRUE((*w0)->init(sgd(true, 2), init).ok());
  std::vector<float> params(5);
  auto steps = (*w1)->pull(params, 0);
  ASSERT_TRUE(steps.ok());
  std::vector<float> bad = {1, std::numeric_limits<float>::quiet_NaN(), 1, 1, 1};
  auto r1 = (*w1)->push(bad, *steps, nullptr);
  ASSERT_TRUE(r1.ok()) << r1.status().to_string();
  EXPECT_FALSE(r1->accepted);
  std::vector<float> good = {1, 1, 1, 1, 1};
  auto r0 = (*w0)->push(good, *steps, nullptr);
  ASSERT_TRUE(r0.ok());
  EXPECT_TRUE(r0->accepted);
  EXPECT_EQ(r0->global_step, 1);  // the step did not wait for worker 1's gradient
  auto s1 = (*w0)->pull(params, 1);
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ(params, (std::vector<float>{0, 1, 2, 3, 4}));  // only the finite gradient
  std::vector<float> inf = {std::numeric_limits<float>::infinity(), 0, 0, 0, 0};
  auto r2 = (*w1)->push(inf, *s1, nullptr);
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(r2->accepted);
  auto st = (*w0)->status(0);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->non_finite_gradients(), 2);
  EXPECT_EQ(st->gradients_applied(), 1);
  for (float v : params) EXPECT_TRUE(std::isfinite(v));
}

TEST(PsSecurity, NonFiniteGradientRefusedAsync) {
  Server s(1, nullptr, 6);
  const Placement p = two_variables();
  zmq::context_t ctx(1);
  auto w0 = client(ctx, s.port(), 0, p, 6, nullptr);
  ASSERT_TRUE(w0.ok());
  ASSERT_TRUE((*w0)->hello(p.hash).ok());
  std::vector<float> init = {1, 2, 3, 4, 5};
  ASSERT_TRUE((*w0)->init(sgd(false, 1), init).ok());
  std::vector<float> params(5);
  auto steps = (*w0)->pull(params, 0);
  ASSERT_TRUE(steps.ok());
  std::vector<float> bad = {0, 0, 0, 0, -std::numeric_limits<float>::infinity()};
  auto r = (*w0)->push(bad, *steps, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->accepted);
  EXPECT_EQ(r->global_step, 0);
  ASSERT_TRUE((*w0)->pull(params, 0).ok());
  EXPECT_EQ(params, init);
}

TEST(PsSecurity, AConnectionSpeaksForOneWorker) {
  Server s(2, nullptr, 8);
  zmq::context_t ctx(1);
  auto sock = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", s.port(), "test");
  ASSERT_TRUE(sock.ok());
  auto ask = [&](int sender, uint64_t id) -> Result<InMessage> {
    OutMessage m;
    m.header.set_kind(wire::HEARTBEAT);
    m.header.set_job_id(8);
    m.header.set_sender(sender);
    m.header.set_request_id(id);
    PSTRAIN_RETURN_IF_ERROR(send_message(*sock, std::move(m)));
    return recv_message(*sock, milliseconds(5000), false, 8);
  };
  auto first = ask(0, 1);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_EQ(first->header.kind(), wire::REPLY_OK);
  auto other = ask(1, 2);
  ASSERT_TRUE(other.ok()) << other.status().to_string();
  EXPECT_EQ(other->header.kind(), wire::REPLY_ERROR);
  EXPECT_NE(other->header.error().find("speaks for worker 0"), std::string::npos)
      << other->header.error();
  auto again = ask(0, 3);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->header.kind(), wire::REPLY_OK);
}

// One request on a raw DEALER socket; the reply within 5 s.
Result<InMessage> ask_raw(zmq::socket_t& sock, wire::Kind kind, int sender, uint64_t id,
                          uint64_t job_id, const JobTrainingConfig* config = nullptr) {
  OutMessage m;
  m.header.set_kind(kind);
  m.header.set_job_id(job_id);
  m.header.set_sender(sender);
  m.header.set_request_id(id);
  // Outlives send_message(), which copies these small frames.
  const std::vector<float> values = {9, 9, 9, 9, 9};
  if (config != nullptr) {
    *m.header.mutable_config() = config->to_wire();
    m.frames.push_back(f32_frame("a", std::span<const float>(values).first(3), nullptr));
    m.frames.push_back(f32_frame("b", std::span<const float>(values).last(2), nullptr));
  }
  PSTRAIN_RETURN_IF_ERROR(send_message(sock, std::move(m)));
  while (true) {  // bounded: every receive waits at most 5 s, and each skips one old reply
    PSTRAIN_ASSIGN_OR_RETURN(InMessage reply,
                             recv_message(sock, milliseconds(5000), false, job_id));
    if (reply.header.request_id() == id) return reply;
  }
}

TEST(PsSecurity, ASecondLiveConnectionForAWorkerIsRefusedAClosedOnesIndexIsTakenOver) {
  Server s(2, nullptr, 11);
  const Placement p = two_variables();
  zmq::context_t ctx(1);
  // The real worker 1: a client with its heartbeat connection (two connections, one process).
  auto w1 = client(ctx, s.port(), 1, p, 11, nullptr);
  ASSERT_TRUE(w1.ok());
  ASSERT_TRUE((*w1)->hello(p.hash).ok());
  (*w1)->start_heartbeats();
  ASSERT_TRUE((*w1)->hello(p.hash).ok());
  // Another process claims worker 1: refused, naming why, and counted.
  auto other = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", s.port(), "other");
  ASSERT_TRUE(other.ok());
  const int64_t bad_before = stats_of(ctx, s.port(), 11, nullptr).bad_messages();
  for (wire::Kind kind : {wire::HEARTBEAT, wire::DONE, wire::PULL}) {
    auto r = ask_raw(*other, kind, 1, 1 + static_cast<uint64_t>(kind), 11);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->header.kind(), wire::REPLY_ERROR);
    EXPECT_TRUE(r->header.error().starts_with(kWorkerIndexInUse)) << r->header.error();
  }
  EXPECT_GE(stats_of(ctx, s.port(), 11, nullptr).bad_messages(), bad_before + 3);
  // The foreign DONE did not count: worker 1 is not done, the PS still serves.
  EXPECT_EQ(stats_of(ctx, s.port(), 11, nullptr).workers_done(), 0);
  EXPECT_EQ(s.result.wait_for(milliseconds(0)), std::future_status::timeout);
  // The real worker still speaks for itself.
  ASSERT_TRUE((*w1)->hello(p.hash).ok());
  // Worker 1's process goes (its sockets close): a new one with the same index takes over.
  (*w1).reset();
  auto again = client(ctx, s.port(), 1, p, 11, nullptr);
  ASSERT_TRUE(again.ok());
  const auto start = Clock::now();
  auto h = (*again)->hello(p.hash);  // asks again while the PS still sees the old connection
  EXPECT_TRUE(h.ok()) << h.status().to_string();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  // ... and the raw socket is still refused, now in the new process's favour.
  auto r = ask_raw(*other, wire::HEARTBEAT, 1, 20, 11);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->header.kind(), wire::REPLY_ERROR);
}

TEST(PsSecurity, InitOnlyFromTheChiefAndOnlyOnceTheJobGoesOn) {
  Server s(1, nullptr, 12);
  const Placement p = two_variables();
  zmq::context_t ctx(1);
  auto chief = client(ctx, s.port(), 0, p, 12, nullptr);
  ASSERT_TRUE(chief.ok());
  ASSERT_TRUE((*chief)->hello(p.hash).ok());
  std::vector<float> init = {1, 2, 3, 4, 5};
  ASSERT_TRUE((*chief)->init(sgd(false, 1), init).ok());
  // A foreign INIT claiming to be the chief, from another connection: refused.
  auto other = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", s.port(), "other");
  ASSERT_TRUE(other.ok());
  JobTrainingConfig evil = sgd(false, 1);
  evil.train_steps = 1;
  evil.optimizer.learning_rate = 100.0f;
  auto r = ask_raw(*other, wire::INIT, 0, 1, 12, &evil);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->header.kind(), wire::REPLY_ERROR);
  EXPECT_TRUE(r->header.error().starts_with(kWorkerIndexInUse)) << r->header.error();
  // An INIT from a worker that is not the chief: refused.
  Server s2(2, nullptr, 13);
  auto w_s2 = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", s2.port(), "w1");
  ASSERT_TRUE(w_s2.ok());
  JobTrainingConfig two = sgd(false, 2);
  auto r2 = ask_raw(*w_s2, wire::INIT, 1, 1, 13, &two);
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  EXPECT_EQ(r2->header.kind(), wire::REPLY_ERROR);
  EXPECT_NE(r2->header.error().find("only the chief"), std::string::npos) << r2->header.error();
  EXPECT_FALSE(stats_of(ctx, s2.port(), 13, nullptr).initialized());
  // The chief's own second INIT (a retry) changes nothing: the first config and values stay.
  ASSERT_TRUE((*chief)->init(evil, std::vector<float>{7, 7, 7, 7, 7}).ok());
  const wire::PsStats st = stats_of(ctx, s.port(), 12, nullptr);
  EXPECT_EQ(st.train_steps(), 10);
  std::vector<float> params(5);
  ASSERT_TRUE((*chief)->pull(params, 0).ok());
  EXPECT_EQ(params, init);
  // The job goes on: a push is applied.
  auto pushed = (*chief)->push(std::vector<float>{1, 1, 1, 1, 1}, PsSteps{0}, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().to_string();
  EXPECT_TRUE(pushed->accepted);
  EXPECT_EQ(s.result.wait_for(milliseconds(0)), std::future_status::timeout);
}

TEST(PsSecurity, LinesAboutMalformedMessagesAreRateLimitedTheCountersCountAll) {
  Server s(1, nullptr, 9);
  zmq::context_t ctx(1);
  auto sock = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", s.port(), "garbage");
  ASSERT_TRUE(sock.ok());
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(sock->send(zmq::str_buffer("not a pstrain message"), zmq::send_flags::none));
  }
  // The server handles one connection's messages in order: once STATUS is answered, every
  // garbage message before it was handled.
  OutMessage m;
  m.header.set_kind(wire::STATUS);
  m.header.set_job_id(9);
  m.header.set_sender(-1);
  m.header.set_request_id(1);
  ASSERT_TRUE(send_message(*sock, std::move(m)).ok());
  auto reply = recv_message(*sock, milliseconds(10000), false, 9);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_GE(reply->header.stats().bad_messages(), 200);
  size_t lines = 0;
  for (size_t at = log.find("dropped a malformed message"); at != std::string::npos;
       at = log.find("dropped a malformed message", at + 1)) {
    ++lines;
  }
  EXPECT_GE(lines, 1u);
  EXPECT_LE(lines, 20u) << log.substr(0, 2000);
}

// The cap on connections: a crowd of idle connections (ZeroMQ peers that complete the
// handshake and say nothing) is cut back to the cap, those never heard from first; a worker's
// connection and one heard from more recently stay; a new worker still gets in.
TEST(PsSecurity, ConnectionsOverTheCapGoNeverHeardFromFirstNeverAWorkers) {
  constexpr int kCap = 16;
  constexpr int kCrowd = 40;
  Server s(2, nullptr, 12, kCap);
  zmq::context_t ctx(1);
  // A DEALER to the PS whose handshakes are counted: a second one would mean the PS closed
  // its connection and it came back.
  struct Watched {
    std::unique_ptr<HandshakeMonitor> monitor;
    zmq::socket_t socket;
  };
  const auto watched = [&](const char* name) -> Watched {
    auto monitor = HandshakeMonitor::create(ctx);
    EXPECT_TRUE(monitor.ok());
    SocketOptions o;
    o.monitor_endpoint = (*monitor)->endpoint();
    auto socket = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", s.port(), name, o);
    EXPECT_TRUE(socket.ok());
    return {std::move(monitor).value(), std::move(socket).value()};
  };
  // The job's chief, and a status reader heard from once (not a worker).
  Watched worker = watched("w0");
  auto hello = ask_raw(worker.socket, wire::HELLO, 0, 1, 12);
  ASSERT_TRUE(hello.ok()) << hello.status().to_string();
  Watched reader = watched("r");
  ASSERT_TRUE(ask_raw(reader.socket, wire::STATUS, -1, 1, 12).ok());

  // The crowd: idle connections, each completing ZeroMQ's handshake (so the handshake timeout
  // does not close them) and sending nothing. They reconnect when closed, as ZeroMQ does.
  zmq::context_t crowd_ctx(1);
  std::vector<zmq::socket_t> crowd;
  for (int i = 0; i < kCrowd; ++i) {
    auto c = connect_socket(crowd_ctx, zmq::socket_type::dealer, "127.0.0.1", s.port(), "idle");
    ASSERT_TRUE(c.ok());
    crowd.push_back(std::move(c).value());
  }
  // Bounded wait for the PS to close the excess (2 + 40 + the status queries > 16).
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  wire::PsStats st;
  while (Clock::now() < deadline) {
    st = stats_of(ctx, s.port(), 12, nullptr);
    if (st.connections_evicted() >= kCrowd + 2 - kCap) break;
    std::this_thread::sleep_for(milliseconds(50));  // polling a counter, not synchronising
  }
  EXPECT_GE(st.connections_evicted(), kCrowd + 2 - kCap);
  EXPECT_LE(st.connections(), kCap + 1);  // + the status query's own connection, just opened

  // The worker and the reader kept their connections: one handshake each.
  ASSERT_TRUE(ask_raw(worker.socket, wire::HEARTBEAT, 0, 2, 12).ok());
  ASSERT_TRUE(ask_raw(reader.socket, wire::STATUS, -1, 2, 12).ok());
  worker.monitor->poll();
  reader.monitor->poll();
  EXPECT_EQ(worker.monitor->succeeded(), 1u);
  EXPECT_EQ(reader.monitor->succeeded(), 1u);

  // A new worker still gets in while the crowd keeps coming back.
  const Placement p = two_variables();
  auto w1 = client(ctx, s.port(), 1, p, 12, nullptr);
  ASSERT_TRUE(w1.ok());
  auto h1 = (*w1)->hello(p.hash);
  EXPECT_TRUE(h1.ok()) << h1.status().to_string();
}

}  // namespace
}  // namespace pstrain
