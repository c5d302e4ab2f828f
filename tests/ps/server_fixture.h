// A parameter server serving on its own thread of the test process, on 127.0.0.1 and a port
// the system picks, for the tests of the PS, its client and the worker loop. The constructor
// sets host, port and job id (kJob unless given) over the options it is handed; the rest are
// the test's. finish() waits at most 20 s for serve() to end by itself and returns its result;
// stop() asks it to end and waits at most 30 s; the destructor stops it and waits.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>

#include "ps/client.h"
#include "ps/placement.h"
#include "ps/server.h"
#include "runtime/wire/transport.h"

namespace pstrain::testing_util {

class ServerFixture {
 public:
  static constexpr uint64_t kJob = 77;

  explicit ServerFixture(ServerOptions o, uint64_t job_id = kJob) : job_id_(job_id) {
    o.host = "127.0.0.1";
    o.port = 0;
    o.job_id = job_id;
    auto s = ParameterServer::create(ctx, o);
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    if (!s.ok()) return;
    server = std::move(s).value();
    result = std::async(std::launch::async, [this] { return server->serve(); });
  }
  ~ServerFixture() {
    if (server) server->request_stop();
    if (result.valid()) result.wait();
  }
  ServerFixture(const ServerFixture&) = delete;
  ServerFixture& operator=(const ServerFixture&) = delete;

  // Whether the server was created (the constructor reported why not).
  bool ok() const { return server != nullptr; }
  int port() const { return server->port(); }

  Result<ServerSummary> finish() {
    if (result.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      server->request_stop();
      ADD_FAILURE() << "the parameter server did not exit by itself";
    }
    return result.get();
  }
  // For a PS whose workers never say DONE: asks it to stop; whether it ended within 30 s.
  bool stop() {
    server->request_stop();
    return result.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  }
  std::unique_ptr<PsClient> client(
      int worker, const Placement& p,
      std::chrono::milliseconds reply_timeout = std::chrono::milliseconds(10000)) {
    ClientOptions co;
    co.worker = worker;
    co.job_id = job_id_;
    co.connect_timeout = std::chrono::milliseconds(10000);
    co.reply_timeout = reply_timeout;
    auto c = PsClient::connect(ctx, {HostPort{"127.0.0.1", server->port()}}, p, co);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    if (!c.ok()) return nullptr;
    return std::move(c).value();
  }

  zmq::context_t ctx{1};
  std::unique_ptr<ParameterServer> server;
  std::future<Result<ServerSummary>> result;

 private:
  uint64_t job_id_;
};

}  // namespace pstrain::testing_util
