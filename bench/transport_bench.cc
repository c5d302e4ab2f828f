// Transport floor: the cost of moving one tensor frame through ZeroMQ and pstrain's message
// layer, without a parameter server behind it.
//
//   BM_RoundTrip/MB:N/zero_copy:1  a DEALER sends N MB in one float32 frame (zero-copy) over
//                                  tcp://127.0.0.1 to a ROUTER echo thread that sends the same
//                                  bytes back; bytes/s counts both directions.
//   BM_RoundTrip/MB:N/zero_copy:0  the same with the frame copied into ZeroMQ on send.
//   BM_Memcpy/MB:N                 a memcpy of the same size in the same binary (one direction).
//
// Run: build/bench/pstrain_bench_transport [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include "bench/memcpy_bench.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <iterator>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include <zmq_addon.hpp>

#include "runtime/wire/message.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

constexpr uint64_t kBenchJob = 1;
constexpr int64_t kMB = 1000 * 1000;

// A ROUTER on 127.0.0.1 (any free port) whose thread sends every message back to its sender,
// unchanged and without copying it.
class EchoServer {
 public:
  explicit EchoServer(zmq::context_t& ctx) {
    auto r = bind_socket(ctx, zmq::socket_type::router, "127.0.0.1", 0, "echo server");
    if (!r.ok()) {
      error_ = r.status().to_string();
      return;
    }
    router_ = std::move(r).value();
    auto p = bound_port(router_);
    if (!p.ok()) {
      error_ = p.status().to_string();
      return;
    }
    port_ = *p;
    thread_ = std::thread([this] { run(); });
  }
  ~EchoServer() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  const std::string& error() const { return error_; }
  int port() const { return port_; }

 private:
  void run() {
    try {
      while (!stop_.load()) {
        zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(50));
        if ((item.revents & ZMQ_POLLIN) == 0) continue;
        std::vector<zmq::message_t> parts;
        if (!zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
          continue;
        }
        (void)zmq::send_multipart(router_, parts);  // routing id first: back to the sender
      }
    } catch (const zmq::error_t&) {
      // Context shut down: stop echoing.
    }
  }

  zmq::socket_t router_;
  int port_ = 0;
  std::string error_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

void BM_RoundTrip(benchmark::State& state) {
  const int64_t bytes = state.range(0) * kMB;
  const bool zero_copy = state.range(1) != 0;
  const size_t count = static_cast<size_t>(bytes) / sizeof(float);

  zmq::context_t ctx;
  EchoServer echo(ctx);
  if (!echo.error().empty()) {
    state.SkipWithError(echo.error().c_str());
    return;
  }
  auto dealer =
      connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", echo.port(), "bench client");
  if (!dealer.ok()) {
    state.SkipWithError(dealer.status().to_string().c_str());
    return;
  }
  auto buffer = std::make_shared<std::vector<float>>(count);
  std::iota(buffer->begin(), buffer->end(), 0.0f);

  for (auto _ : state) {
    OutMessage msg;
    msg.header.set_kind(wire::PUSH);
    msg.header.set_job_id(kBenchJob);
    msg.frames.push_back(
        f32_frame("x", *buffer, zero_copy ? std::shared_ptr<const void>(buffer) : nullptr));
    Status sent = send_message(*dealer, std::move(msg));
    if (!sent.ok()) {
      state.SkipWithError(sent.to_string().c_str());
      break;
    }
    auto reply = recv_message(*dealer, std::chrono::seconds(30), false, kBenchJob);
    if (!reply.ok() || reply->num_frames() != 1 ||
        reply->frame_bytes(0).size() != static_cast<size_t>(bytes)) {
      state.SkipWithError(("bad echo: " + reply.status().to_string()).c_str());
      break;
    }
    benchmark::DoNotOptimize(reply->frame_bytes(0).data());
  }
  state.SetBytesProcessed(state.iterations() * 2 * bytes);
}
BENCHMARK(BM_RoundTrip)
    ->ArgNames({"MB", "zero_copy"})
    ->Args({4, 1})
    ->Args({40, 1})
    ->Args({4, 0})
    ->Args({40, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pstrain

BENCHMARK_MAIN();
