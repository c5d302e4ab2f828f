#include "runtime/job/rendezvous.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "runtime/wire/proto/pstrain.pb.h"
#include "runtime/wire/security.h"
#include "runtime/wire/transport.h"
#include "tests/job_keys.h"

namespace pstrain {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

RendezvousOptions options(int num_ps, int num_workers, std::chrono::milliseconds deadline = 20s) {
  auto port = pick_free_tcp_port();
  EXPECT_TRUE(port.ok());
  RendezvousOptions o;
  o.address = HostPort{"127.0.0.1", port.ok() ? *port : 1};
  o.num_ps = num_ps;
  o.num_workers = num_workers;
  o.deadline = deadline;
  o.resend_every = 200ms;
  return o;
}

std::future<Result<RendezvousResult>> register_async(const RendezvousOptions& o, JobName job,
                                                     int index, int port) {
  return std::async(std::launch::async, [=] {
    return rendezvous_register(o, job, index, HostPort{"127.0.0.1", port});
  });
}

TEST(Rendezvous, EveryTaskGetsTheWholeClusterByRank) {
  const RendezvousOptions o = options(1, 2);
  auto server = RendezvousServer::create(o);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  auto served = std::async(std::launch::async, [&] { return (*server)->serve(); });
  auto w1 = register_async(o, JobName::kWorker, 1, 3003);
  auto ps = register_async(o, JobName::kPs, 0, 3001);
  auto w0 = register_async(o, JobName::kWorker, 0, 3002);
  const ClusterSpec want{{{"127.0.0.1", 3001}}, {{"127.0.0.1", 3002}, {"127.0.0.1", 3003}}};
  for (auto* f : {&ps, &w0, &w1}) {
    auto r = f->get();
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->cluster, want);
  }
  EXPECT_TRUE(served.get().ok());
}

TEST(Rendezvous, AssignsIndicesInArrivalOrderWhenTasksHaveNone) {
  RendezvousOptions o = options(1, 2);
  o.ranked = false;
  auto server = RendezvousServer::create(o);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  auto served = std::async(std::launch::async, [&] { return (*server)->serve(); });
  auto a = register_async(o, JobName::kWorker, -1, 4001);
  auto b = register_async(o, JobName::kWorker, -1, 4002);
  auto ps = register_async(o, JobName::kPs, -1, 4000);
  auto ra = a.get(), rb = b.get(), rp = ps.get();
  ASSERT_TRUE(ra.ok() && rb.ok() && rp.ok()) << ra.status().to_string() << rb.status().to_string();
  EXPECT_NE(ra->task_index, rb->task_index);
  EXPECT_EQ(rp->job, JobName::kPs);
  EXPECT_EQ(rp->task_index, 0);
  EXPECT_EQ(ra->cluster.workers[static_cast<size_t>(ra->task_index)].port, 4001);
  EXPECT_TRUE(served.get().ok());
}

TEST(Rendezvous, GarbageAndBadRegistrationsAreRefusedWithoutHarm) {
  const RendezvousOptions o = options(1, 1);
  auto server = RendezvousServer::create(o);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  auto served = std::async(std::launch::async, [&] { return (*server)->serve(); });

  zmq::context_t ctx(1);
  auto sock = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", o.address.port, "test");
  ASSERT_TRUE(sock.ok());
  auto send = [&](const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      zmq::message_t m(frames[i].data(), frames[i].size());
      (void)sock->send(m, i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  };
  auto reg = [&](auto edit) {
    wire::Rendezvous r;
    r.set_version(1);
    r.set_type(wire::Rendezvous::RENDEZVOUS_REGISTER);
    r.set_num_ps(1);
    r.set_num_workers(1);
    r.set_ps(true);
    r.set_index(0);
    r.set_host("127.0.0.1");
    r.set_port(5000);
    r.set_token("bad-client");
    edit(r);
    return r.SerializeAsString();
  };
  send({std::string("\xff\xfe garbage \x01", 13)});
  send({""});
  send({"a", "b", "c"});
  send({reg([](wire::Rendezvous& r) { r.set_version(99); })});
  send({reg([](wire::Rendezvous& r) { r.set_num_workers(7); })});
  send({reg([](wire::Rendezvous& r) { r.set_index(5); })});
  send({reg([](wire::Rendezvous& r) { r.set_host("bad host"); })});
  send({reg([](wire::Rendezvous& r) { r.set_port(70000); })});
  send({reg([](wire::Rendezvous& r) { r.set_type(wire::Rendezvous::RENDEZVOUS_CLUSTER); })});
  send({reg([](wire::Rendezvous& r) { r.set_token(""); })});
  // Each refusal (the empty frame is a message of version 0) is answered with a FAILED naming
  // the problem; the random bytes, the 3 frames and the CLUSTER are dropped.
  int failed = 0;
  std::vector<zmq::pollitem_t> items = {{sock->handle(), 0, ZMQ_POLLIN, 0}};
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (failed < 7 && std::chrono::steady_clock::now() < until) {
    zmq::poll(items, 200ms);
    zmq::message_t m;
    while (sock->recv(m, zmq::recv_flags::dontwait)) {
      wire::Rendezvous r;
      ASSERT_TRUE(r.ParseFromArray(m.data(), static_cast<int>(m.size())));
      EXPECT_EQ(r.type(), wire::Rendezvous::RENDEZVOUS_FAILED);
      EXPECT_FALSE(r.error().empty());
      ++failed;
    }
  }
  EXPECT_EQ(failed, 7);  // the empty frame parses as a message of version 0
  // The real tasks still meet.
  auto ps = register_async(o, JobName::kPs, 0, 5001);
  auto w = register_async(o, JobName::kWorker, 0, 5002);
  EXPECT_TRUE(ps.get().ok());
  EXPECT_TRUE(w.get().ok());
  EXPECT_TRUE(served.get().ok());
  EXPECT_GE((*server)->bad_messages(), 9);
}

TEST(Rendezvous, TwoTasksWithOneRankAreRefused) {
  const RendezvousOptions o = options(1, 1, 3s);
  auto server = RendezvousServer::create(o);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  auto served = std::async(std::launch::async, [&] { return (*server)->serve(); });
  auto first = register_async(o, JobName::kPs, 0, 6001);
  std::this_thread::sleep_for(300ms);  // not synchronisation: only makes `first` the first
  auto second = rendezvous_register(o, JobName::kPs, 0, HostPort{"127.0.0.1", 6002});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(second.status().message(), HasSubstr("rank 0 (ps 0) registered twice"));
  auto w = register_async(o, JobName::kWorker, 0, 6003);
  EXPECT_TRUE(first.get().ok());
  EXPECT_TRUE(w.get().ok());
  EXPECT_TRUE(served.get().ok());
}

TEST(Rendezvous, AtTheDeadlineEveryTaskHearsWhoIsMissing) {
  const RendezvousOptions o = options(1, 2, 500ms);
  auto server = RendezvousServer::create(o);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  auto served = std::async(std::launch::async, [&] { return (*server)->serve(); });
  auto ps = register_async(o, JobName::kPs, 0, 7001);
  auto w0 = register_async(o, JobName::kWorker, 0, 7002);
  Status s = served.get();
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("2 of 3 arrived; missing: rank 2 (worker 1)"));
  for (auto* f : {&ps, &w0}) {
    auto r = f->get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded);
    EXPECT_THAT(r.status().message(), HasSubstr("missing: rank 2 (worker 1)"));
  }
}

TEST(Rendezvous, WhileTasksAreMissingTheLogNamesThem) {
  RendezvousOptions o = options(1, 1, 1s);
  o.log_every = 200ms;  // 10 s in a job
  auto server = RendezvousServer::create(o);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  ::testing::internal::CaptureStderr();
  auto served = std::async(std::launch::async, [&] { return (*server)->serve(); });
  auto r = rendezvous_register(o, JobName::kPs, 0, HostPort{"127.0.0.1", 9001});
  EXPECT_FALSE(served.get().ok());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(log, HasSubstr("rendezvous: waiting for rank 1 (worker 0): 1 of 2 arrived"));
  EXPECT_THAT(log, HasSubstr(": waiting for rank 1 (worker 0): 1 of 2 arrived"));
  EXPECT_THAT(r.status().message(), HasSubstr("missing: rank 1 (worker 0)"));
}

using testing_util::keys_of;

// With the job's secret the rendezvous is CURVE-encrypted: the job's tasks get the cluster; a
// task without the secret or with another one is told so at once (not at the deadline) and
// cannot take a rank.
TEST(Rendezvous, WithASecretOnlyTheJobsTasksGetIn) {
  RendezvousOptions o = options(1, 1);
  o.keys = keys_of('k');
  auto server = RendezvousServer::create(o);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  auto served = std::async(std::launch::async, [&] { return (*server)->serve(); });

  RendezvousOptions none = o;
  none.keys = nullptr;
  const auto start = std::chrono::steady_clock::now();
  auto r = rendezvous_register(none, JobName::kPs, 0, HostPort{"127.0.0.1", 3001});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
  EXPECT_THAT(r.status().message(), HasSubstr("requires the job's secret"));
  RendezvousOptions other = o;
  other.keys = keys_of('x');
  r = rendezvous_register(other, JobName::kPs, 0, HostPort{"127.0.0.1", 3001});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
  EXPECT_THAT(r.status().message(), HasSubstr("secret-x differs from the job's"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);

  // Neither took rank 0: the job's own tasks get the cluster.
  auto ps = register_async(o, JobName::kPs, 0, 3011);
  auto w0 = register_async(o, JobName::kWorker, 0, 3012);
  const ClusterSpec want{{{"127.0.0.1", 3011}}, {{"127.0.0.1", 3012}}};
  for (auto* f : {&ps, &w0}) {
    auto got = f->get();
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(got->cluster, want);
  }
  EXPECT_TRUE(served.get().ok());
}

TEST(Rendezvous, NoServerIsADeadlineNamingTheAddress) {
  const RendezvousOptions o = options(1, 1, 300ms);
  auto r = rendezvous_register(o, JobName::kWorker, 0, HostPort{"127.0.0.1", 8001});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(r.status().message(),
              HasSubstr("no answer from the rendezvous at " + o.address.to_string()));
}

TEST(PortReservation, HoldsADistinctPort) {
  auto a = PortReservation::bind("127.0.0.1");
  auto b = PortReservation::bind("127.0.0.1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_GT(a->port(), 0);
  EXPECT_NE(a->port(), b->port());
}

}  // namespace
}  // namespace pstrain
