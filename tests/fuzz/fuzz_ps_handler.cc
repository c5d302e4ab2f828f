// libFuzzer target: a real ParameterServer (ps/server.h) serving on an inproc:// ROUTER on its
// own thread, fed the messages an input describes (tests/fuzz/fuzz_input.h).
//
// Set-up (once, and again whenever the server ended because every worker said DONE): a server
// for 2 workers of job fuzz::kJobId, with heartbeat and startup timeouts of an hour (no worker
// is lost during a run) and a 20 ms long poll; the chief (worker 0) sends a valid HELLO and
// INIT (SGD, two chunks "c0" and "c1") on its own connection, so that pushes and pulls reach
// the store.
// Per input: one of 4 DEALER connections (the flags byte picks it, and may ask for a new one:
// a connection speaks for the first worker it names) sends each message's parts as one
// multipart message, then a STATUS request; its REPLY_OK is the sync point (every earlier
// message was handled). The target checks, within a deadline, that the server answered and
// still holds the chief's two chunks (28 bytes, initialised); a server that stops answering,
// or serve() ending with an error, aborts (a finding).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <zmq.hpp>

#include "ps/server.h"
#include "runtime/base/log.h"
#include "runtime/wire/message.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using namespace pstrain;
using std::chrono::milliseconds;

// Generous: ASan + UBSan make the server several times slower, and a loaded CI machine more.
constexpr milliseconds kReplyDeadline{20000};

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_ps_handler: %s\n", what.c_str());
  std::abort();
}

zmq::socket_t dealer(zmq::context_t& ctx, const std::string& endpoint) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::sndtimeo, 1000);
  s.connect(endpoint);
  return s;
}

class Harness {
 public:
  Harness() { start(); }

  // Sends one input's messages and the STATUS sync request; aborts on a finding.
  void run(const fuzz::Input& in) {
    // The input picks one of kConnections connections and may ask for it to be a new one.
    const size_t slot = (in.flags >> 3) % kConnections;
    if (!connections_[slot] || (in.flags & fuzz::kFlagNewConnection) != 0) {
      connections_[slot] = dealer(ctx_, endpoint_);
    }
    zmq::socket_t& s = connections_[slot];
    for (const fuzz::Message& m : in.messages) {
      if (m.empty()) continue;  // ZeroMQ has no message of zero parts
      for (size_t p = 0; p < m.size(); ++p) {
        zmq::message_t part(m[p].data(), m[p].size());
        const auto flags = p + 1 < m.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
        if (!s.send(part, flags)) finding("a send to the server timed out");
      }
    }
    const uint64_t id = ++next_request_;
    OutMessage status;
    status.header.set_kind(wire::STATUS);
    status.header.set_job_id(fuzz::kJobId);
    status.header.set_sender(-1);
    status.header.set_request_id(id);
    const Status sent = send_message(s, std::move(status));
    if (!sent.ok()) finding("STATUS not sent: " + sent.to_string());
    auto reply = await_reply(s, id);
    if (!reply.ok()) {
      // The server may have ended properly: every worker said DONE. Then start a new one.
      if (served_.wait_for(milliseconds(0)) == std::future_status::ready) {
        auto summary = served_.get();
        if (!summary.ok()) finding("serve() ended with an error: " + summary.status().to_string());
        if (summary->workers_done != 2) finding("serve() ended before every worker was done");
        restart();
        return;
      }
      finding("the server stopped answering: " + reply.status().to_string());
    }
    if (reply->header.kind() != wire::REPLY_OK) finding("STATUS was not answered REPLY_OK");
    const wire::PsStats& st = reply->header.stats();
    if (!st.initialized() || st.num_chunks() != 2 || st.parameter_bytes() != 28) {
      finding("the chief's variables changed shape: " + st.ShortDebugString());
    }
  }

 private:
  void start() {
    zmq::socket_t router(ctx_, zmq::socket_type::router);
    router.set(zmq::sockopt::router_mandatory, 1);
    router.set(zmq::sockopt::router_handover, 1);
    router.set(zmq::sockopt::sndtimeo, 1000);
    // A new endpoint per server: ZeroMQ frees a closed socket's inproc name asynchronously.
    endpoint_ = "inproc://pstrain-fuzz-ps-" + std::to_string(++servers_);
    router.bind(endpoint_);
    ServerOptions o;
    o.num_workers = 2;
    o.job_id = fuzz::kJobId;
    o.heartbeat_timeout = std::chrono::hours(1);
    o.startup_timeout = std::chrono::hours(1);
    o.long_poll = milliseconds(20);
    auto created = ParameterServer::create(std::move(router), 0, o);
    if (!created.ok()) finding("create: " + created.status().to_string());
    server_ = std::move(created).value();
    served_ = std::async(std::launch::async, [this] { return server_->serve(); });
    chief_ = dealer(ctx_, endpoint_);
    for (wire::Kind kind : {wire::HELLO, wire::INIT}) {
      const uint64_t id = ++next_request_;
      const fuzz::Message m = fuzz::valid_message(kind, 0, id, 0);
      for (size_t p = 0; p < m.size(); ++p) {
        zmq::message_t part(m[p].data(), m[p].size());
        (void)chief_.send(part,
                          p + 1 < m.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
      auto reply = await_reply(chief_, id);
      if (!reply.ok() || reply->header.kind() != wire::REPLY_OK) {
        finding(std::string("the chief's ") + wire::Kind_Name(kind) + " was refused: " +
                (reply.ok() ? reply->header.error() : reply.status().to_string()));
      }
    }
  }
  // Receives on `socket` until the reply to `request_id` arrives (other replies, e.g. to
  // parked PULLs, are skipped), serve() has ended, or the deadline passes.
  Result<InMessage> await_reply(zmq::socket_t& socket, uint64_t request_id) {
    const auto deadline = std::chrono::steady_clock::now() + kReplyDeadline;
    for (int i = 0; i < 100000; ++i) {  // bounded: other replies, and 10 ms slices
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      auto r = recv_message(socket, std::min(left, milliseconds(10)), /*has_routing_id=*/false,
                            fuzz::kJobId);
      if (r.ok() && r->header.request_id() == request_id) return r;
      if (!r.ok() && r.status().code() == StatusCode::kDeadlineExceeded && served_.valid() &&
          served_.wait_for(milliseconds(0)) == std::future_status::ready) {
        return cancelled("serve() has returned");
      }
    }
    return deadline_exceeded("no reply to request " + std::to_string(request_id) + " within " +
                             std::to_string(kReplyDeadline.count()) + " ms");
  }
  void restart() {
    for (zmq::socket_t& c : connections_) c.close();
    chief_.close();
    server_.reset();  // closes its socket: the endpoint is free again
    start();
  }

  zmq::context_t ctx_{1};
  int servers_ = 0;
  std::string endpoint_;
  std::unique_ptr<ParameterServer> server_;
  std::future<Result<ServerSummary>> served_;
  zmq::socket_t chief_;
  static constexpr size_t kConnections = 4;
  zmq::socket_t connections_[kConnections];
  uint64_t next_request_ = uint64_t{1} << 62;  // far from what inputs choose, mostly
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Rejections are logged at WARNING (rate-limited); keep the fuzzer's output readable.
  set_log_level(LogLevel::ERROR);
  // libprotobuf logs every string field that is not UTF-8 (ERROR, one line per message).
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Never destroyed: the server thread must not be joined during exit's static destructors.
  static Harness* harness = new Harness();
  harness->run(fuzz::parse_input(data, size));
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return pstrain::fuzz::mutate_input(data, size, max_size, seed);
}
