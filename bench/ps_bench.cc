// Push + pull through a real parameter server, laid out as in a job: the PS in its own process
// (this binary started again with --serve), one worker (PsClient) here, over tcp://127.0.0.1 or the
// PS's Unix socket, or with the tensors through shared memory.
//
//   BM_PushPull/KB:N/chunks:C/curve:S/process:P/via:V
//       one iteration = push N KB of gradients (zero copy) + pull N KB of parameters back;
//       bytes/s counts both directions (2 N KB). N: 318 (the MLP), 1000, 4000, 40000.
//       C: 0 = the placement's default chunking (what a job uses), else at most C chunks.
//       S: 1 = CURVE with a job secret (as `pstrain launch` runs), 0 = plain TCP.
//       P: 1 = the PS in its own process (the job's layout), 0 = a thread of this process
//       (the second series: no process boundary, the client and PS share caches).
//       V: 0 = loopback TCP, 1 = the PS's local endpoint (a Unix socket, --transport=ipc),
//       2 = that socket for headers and a shared-memory segment for tensors (--transport=shm),
//       3 = shared memory with the worker's gradients and parameters living in the segment
//       (PsClient::flat_in_shm(), as a CPU worker of a one-PS job holds them): no copy on
//       the worker's side.
//   BM_PushPullMerged/...      the same arguments; one iteration = push_pull(): the push and
//       the next pull in one round trip (Header.then_pull), as a worker's steps run.
//   BM_PushPullStripes/KB:N/stripes:S   BM_PushPullMerged over loopback TCP (PS in its own
//       process, default chunking) with the push striped over at most S connections
//       (ClientOptions::push_stripes; 1: one connection). Counter `conns`: connections a push
//       went over, on average.
//   BM_PushPullReplyParts/KB:N/parts:R   the same with the default striping and the reply
//       whole (R = 0: ClientOptions::reply_part_bytes = 0) or in parts (R = 1: the default).
//       Counter `reply_parts`: messages a reply came in, on average.
//   BM_RawZmq/KB:N/curve:S/ipc:I/conns:K
//       the yardstick: a DEALER sends N KB in one zero-copy frame to a ROUTER echo in its own
//       process that sends it back, through pstrain's message layer; no PS work. K > 1 (TCP,
//       no CURVE): K DEALERs each send and get back N/K KB at once, both processes with two
//       ZeroMQ I/O threads, as a client striping its tensors over several connections would.
//   BM_Memcpy/MB:N   memcpy of N MB in the same binary, the memory-bandwidth yardstick.
//
// The PS applies plain SGD to every gradient (async mode), so each iteration includes the
// optimizer pass over N KB as a real step would.
// Run: build/bench/pstrain_bench_ps [--benchmark_filter=...] [--benchmark_format=json]
//      Both processes keep freed large buffers as role processes (`pstrain --job_name=ps|worker`)
//      do (runtime/base/allocator.h); PSTRAIN_BENCH_GLIBC_MALLOC=1 runs with glibc's defaults.
//      (results of the 2-core build machine: bench/results/ps_pushpull_cpu.json)
#include <benchmark/benchmark.h>

#include "bench/memcpy_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <zmq_addon.hpp>

#include "ps/client.h"
#include "ps/placement.h"
#include "ps/server.h"
#include "runtime/base/allocator.h"
#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/job/process.h"
#include "runtime/wire/security.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

constexpr int64_t kKB = 1000;
constexpr uint64_t kPlainJob = 42;

// A temporary directory with the job secret both processes read; removed at exit.
class BenchDir {
 public:
  BenchDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "pstrain-ps-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~BenchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  BenchDir(const BenchDir&) = delete;
  BenchDir& operator=(const BenchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

BenchDir& bench_dir() {
  static BenchDir dir;
  return dir;
}

// The secret file of the benchmark's job (made once), or an error.
Result<std::string> secret_path() {
  const std::string path = bench_dir().path() + "/secret";
  if (bench_dir().path().empty()) return internal_error("cannot make a temporary directory");
  if (!std::filesystem::exists(path)) PSTRAIN_RETURN_IF_ERROR(write_secret_file(path));
  return path;
}

// The keys of the benchmark's job secret.
Result<JobKeys> bench_keys() {
  PSTRAIN_ASSIGN_OR_RETURN(std::string path, secret_path());
  return load_job_keys(path);
}

// With `curve`, loads the job's keys into `keys`; false (the benchmark skipped, saying why)
// when they cannot be loaded.
bool keys_or_skip(benchmark::State& state, bool curve, std::optional<JobKeys>& keys) {
  if (!curve) return true;
  auto k = bench_keys();
  if (!k.ok()) {
    state.SkipWithError(k.status().to_string().c_str());
    return false;
  }
  keys = *k;
  return true;
}

// --- the child process ---------------------------------------------------------------------

// Serves one PS (kind "ps") or one echo ROUTER (kind "echo") on 127.0.0.1, writes its port
// into port_file, and runs until the worker said DONE (ps) or a one-part message arrives
// (echo). Returns the process's exit code.
int serve_child(const std::string& kind, const std::string& port_file, const std::string& secret) {
  std::optional<JobKeys> keys;
  if (secret != "none") {
    auto k = load_job_keys(secret);
    if (!k.ok()) {
      std::cerr << "bench child: " << k.status().to_string() << "\n";
      return 1;
    }
    keys = *k;
  }
  zmq::context_t ctx(kIoThreads);
  if (kind == "ps") {
    auto bound = bind_ps_socket(ctx, "127.0.0.1", 0, 0, keys ? &*keys : nullptr);
    if (!bound.ok()) {
      std::cerr << "bench child: " << bound.status().to_string() << "\n";
      return 1;
    }
    const int port = bound->port;
    ServerOptions so;
    so.job_id = keys ? keys->job_id : kPlainJob;
    so.num_workers = 1;
    if (keys) so.keys = std::make_shared<const JobKeys>(*keys);
    auto server = ParameterServer::create(std::move(bound).value(), so);
    if (!server.ok()) {
      std::cerr << "bench child: " << server.status().to_string() << "\n";
      return 1;
    }
    if (Status st = write_file_atomically(port_file, std::to_string(port)); !st.ok()) return 1;
    auto summary = (*server)->serve();
    return summary.ok() ? 0 : 1;
  }
  std::unique_ptr<ZapHandler> zap;
  SocketOptions options;
  if (keys) {
    auto z = ZapHandler::start(ctx, keys->client_public);
    if (!z.ok()) return 1;
    zap = std::move(z).value();
    options.curve = &*keys;
  }
  auto router = bind_socket(ctx, zmq::socket_type::router, "127.0.0.1", 0, "echo", options);
  if (!router.ok()) return 1;
  auto port = bound_port(*router);
  if (!port.ok()) return 1;
  if (!bind_local_endpoint(*router, "127.0.0.1", *port, "echo").ok()) return 1;
  if (Status st = write_file_atomically(port_file, std::to_string(*port)); !st.ok()) return 1;
  try {
    for (;;) {
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(*router, std::back_inserter(parts))) continue;
      if (parts.size() <= 2 && parts.back().size() == 0) return 0;  // the stop message
      (void)zmq::send_multipart(*router, parts);  // routing id first: back to the sender
    }
  } catch (const zmq::error_t&) {
    return 1;
  }
}

// --- the parent's side ---------------------------------------------------------------------

// This binary started again as a PS or echo server; its port once it listens.
struct Child {
  Subprocess process;
  int port = 0;
};

Result<Child> start_child(const std::string& kind, bool curve) {
  static int counter = 0;
  std::string secret = "none";
  if (curve) {
    PSTRAIN_ASSIGN_OR_RETURN(secret, secret_path());
  }
  const std::string port_file =
      bench_dir().path() + "/" + kind + "-" + std::to_string(++counter) + ".port";
  SubprocessOptions options;
  options.argv = {self_executable_path(), "--serve", kind, port_file, secret};
  options.stdin_from_dev_null = true;
  options.kill_on_parent_death = true;
  PSTRAIN_ASSIGN_OR_RETURN(Subprocess process, Subprocess::spawn(options));
  Child child{std::move(process), 0};
  // The child writes its port file atomically once it listens; a benchmark harness, so a short
  // poll with a deadline is enough here.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    auto text = read_file(port_file);
    if (text.ok() && !text->empty()) {
      child.port = std::atoi(text->c_str());
      return child;
    }
    if (child.process.poll()) return internal_error("the " + kind + " process exited at start");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return deadline_exceeded("the " + kind + " process did not listen within 20 s");
}

struct ChildStopper {
  Child* child;
  ~ChildStopper() {
    if (child != nullptr && child->process.running()) {
      if (!child->process.wait_for(std::chrono::seconds(10)).ok() || child->process.running()) {
        child->process.kill();
      }
    }
  }
};

// One iteration: push, then pull (two round trips), or push_pull (`merged`: the push and the
// next pull in one round trip, as a worker's steps run).
// `stripes`, `reply_part_bytes`: ClientOptions' (the defaults unless BM_PushPullStripes or
// BM_PushPullReplyParts).
struct PushPullArgs {
  int64_t kb = 0;
  int64_t max_chunks = 0;
  bool curve = false;
  bool own_process = true;
  int64_t via = 0;
  int stripes = ClientOptions{}.push_stripes;
  uint64_t reply_part_bytes = ClientOptions{}.reply_part_bytes;
};
void push_pull_iterations(benchmark::State& state, bool merged, const PushPullArgs& a) {
  const int64_t bytes = a.kb * kKB;
  const int64_t max_chunks = a.max_chunks;
  const bool curve = a.curve;
  const bool own_process = a.own_process;
  const bool in_segment = a.via == 3;
  const Transport transport = a.via >= 2   ? Transport::kShm
                              : a.via == 1 ? Transport::kIpc
                                           : Transport::kTcp;
  const int64_t count = bytes / 4;

  std::optional<JobKeys> keys;
  if (!keys_or_skip(state, curve, keys)) return;
  const uint64_t job_id = keys ? keys->job_id : kPlainJob;

  zmq::context_t ctx(kIoThreads);
  // The PS: another process, or a thread here.
  std::optional<Child> child;
  std::unique_ptr<ParameterServer> server;
  std::thread serving;
  int port = 0;
  if (own_process) {
    auto c = start_child("ps", curve);
    if (!c.ok()) {
      state.SkipWithError(c.status().to_string().c_str());
      return;
    }
    child = std::move(c).value();
    port = child->port;
  } else {
    auto bound = bind_ps_socket(ctx, "127.0.0.1", 0, 0, keys ? &*keys : nullptr);
    ServerOptions so;
    so.job_id = job_id;
    so.num_workers = 1;
    if (keys) so.keys = std::make_shared<const JobKeys>(*keys);
    auto s = bound.ok() ? ParameterServer::create(std::move(bound).value(), so)
                        : Result<std::unique_ptr<ParameterServer>>(bound.status());
    if (!s.ok()) {
      state.SkipWithError(s.status().to_string().c_str());
      return;
    }
    server = std::move(s).value();
    port = server->port();
    serving = std::thread([&] { (void)server->serve(); });
  }
  ChildStopper stopper{child ? &*child : nullptr};

  std::vector<VariableSpec> vars = {{"w", {count}, 0, {}}};
  const int64_t max_chunk_elements = max_chunks > 0 ? (count + max_chunks - 1) / max_chunks : 0;
  const Placement placement = place_variables(vars, 1, max_chunk_elements);
  ClientOptions co;
  co.worker = 0;
  co.job_id = job_id;
  co.transport = transport;
  co.push_stripes = a.stripes;
  co.reply_part_bytes = a.reply_part_bytes;
  if (keys) co.keys = std::make_shared<const JobKeys>(*keys);
  auto client = PsClient::connect(ctx, {HostPort{"127.0.0.1", port}}, placement, co);
  std::vector<float> params(static_cast<size_t>(count));
  std::iota(params.begin(), params.end(), 0.f);
  std::vector<float> grads(static_cast<size_t>(count), 1e-6f);
  JobTrainingConfig config;
  config.model = "bench";
  config.optimizer.kind = OptimizerKind::kSgd;
  config.optimizer.learning_rate = 1e-3f;
  config.train_steps = int64_t{1} << 40;
  config.num_workers = 1;
  Status st = client.status();
  if (st.ok()) st = (*client)->hello(0).status();
  if (st.ok()) st = (*client)->init(config, params);
  // The worker's buffers: its own vectors, or the segment's regions (backward would write the
  // gradients there; here they are written once).
  std::span<float> grad_span(grads), param_span(params);
  PsClient::FlatInShm shm;
  if (st.ok() && in_segment) {
    shm = (*client)->flat_in_shm();
    if (shm.gradients.empty())
      st = failed_precondition("the PS is not reached through shared memory");
    std::fill(shm.gradients.begin(), shm.gradients.end(), 1e-6f);
    grad_span = shm.gradients;
    param_span = shm.parameters;
  }
  if (st.ok()) {
    PsSteps steps(1, 0), next(1, 0);
    const PsSteps any_step(1, 0);  // async: no minimum step
    for (auto _ : state) {
      if (merged) {
        auto pushed = (*client)->push_pull(grad_span, steps, shm.owner, param_span, any_step, next);
        if (pushed.ok() && !pushed->pulled) {
          auto pulled = (*client)->pull(param_span, any_step);
          if (!pulled.ok()) pushed = pulled.status();
          if (pulled.ok()) next = *pulled;
        }
        if (!pushed.ok()) {
          state.SkipWithError("push_pull failed");
          break;
        }
        std::swap(steps, next);
        continue;
      }
      auto pushed = (*client)->push(grad_span, steps, shm.owner);
      auto pulled = (*client)->pull(param_span, 0);
      if (!pushed.ok() || !pulled.ok()) {
        state.SkipWithError("push or pull failed");
        break;
      }
      steps = *pulled;
    }
  } else {
    state.SkipWithError(st.to_string().c_str());
  }
  state.SetBytesProcessed(state.iterations() * 2 * bytes);
  state.counters["chunks"] = static_cast<double>(placement.chunks.size());
  if (client.ok() && state.iterations() > 0) {
    // Connections a push went over (striping: docs/benchmarks.md), per push.
    state.counters["conns"] = 1.0 + static_cast<double>((*client)->push_stripes_sent()) /
                                        static_cast<double>(state.iterations());
    state.counters["reply_parts"] = 1.0 + static_cast<double>((*client)->reply_parts_received()) /
                                              static_cast<double>(state.iterations());
  }
  if (client.ok()) (void)(*client)->done();
  if (server) {
    if (!client.ok() || !st.ok()) server->request_stop();
    serving.join();
  }
}
PushPullArgs args_of(const benchmark::State& state) {
  return {.kb = state.range(0),
          .max_chunks = state.range(1),
          .curve = state.range(2) != 0,
          .own_process = state.range(3) != 0,
          .via = state.range(4)};
}
void BM_PushPull(benchmark::State& state) { push_pull_iterations(state, false, args_of(state)); }
void BM_PushPullMerged(benchmark::State& state) {
  push_pull_iterations(state, true, args_of(state));
}
void BM_PushPullStripes(benchmark::State& state) {
  push_pull_iterations(state, true,
                       {.kb = state.range(0), .stripes = static_cast<int>(state.range(1))});
}
void BM_PushPullReplyParts(benchmark::State& state) {
  PushPullArgs a{.kb = state.range(0)};
  if (state.range(1) == 0) a.reply_part_bytes = 0;
  push_pull_iterations(state, true, a);
}

BENCHMARK(BM_PushPull)
    ->ArgNames({"KB", "chunks", "curve", "process", "via"})
    ->ArgsProduct({{318, 1000, 4000, 40000}, {0, 1}, {0, 1}, {1}, {0}})
    ->ArgsProduct({{318, 1000, 4000, 40000}, {0}, {0, 1}, {1}, {1, 2, 3}})
    ->ArgsProduct({{318, 4000, 40000}, {0}, {0}, {0}, {0}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// What a job's workers run: the PS in its own process, the default chunking, no CURVE.
BENCHMARK(BM_PushPullMerged)
    ->ArgNames({"KB", "chunks", "curve", "process", "via"})
    ->ArgsProduct({{318, 1000, 4000, 40000}, {0}, {0}, {1}, {0, 2, 3}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Striping over loopback TCP: BM_PushPullMerged's TCP series with the push over 1 (none),
// 2 or 4 connections (ClientOptions::push_stripes; the default is 4).
BENCHMARK(BM_PushPullStripes)
    ->ArgNames({"KB", "stripes"})
    ->ArgsProduct({{318, 1000, 4000, 40000}, {1, 2, 4}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Replies in parts over loopback TCP: BM_PushPullMerged's TCP series with the default
// striping, the reply whole (parts:0) or in parts (parts:1, ClientOptions::reply_part_bytes).
BENCHMARK(BM_PushPullReplyParts)
    ->ArgNames({"KB", "parts"})
    ->ArgsProduct({{318, 1000, 4000, 40000}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_RawZmq(benchmark::State& state) {
  const int64_t bytes = state.range(0) * kKB;
  const bool curve = state.range(1) != 0;
  const auto conns = static_cast<size_t>(state.range(3));
  std::optional<JobKeys> keys;
  if (!keys_or_skip(state, curve, keys)) return;
  auto c = start_child("echo", curve);
  if (!c.ok()) {
    state.SkipWithError(c.status().to_string().c_str());
    return;
  }
  Child child = std::move(c).value();
  ChildStopper stopper{&child};
  zmq::context_t ctx(kIoThreads);
  SocketOptions options;
  if (keys) options.curve = &*keys;
  options.transport = state.range(2) != 0 ? Transport::kIpc : Transport::kTcp;
  std::vector<zmq::socket_t> dealers;
  for (size_t i = 0; i < conns; ++i) {
    auto dealer = connect_socket(ctx, zmq::socket_type::dealer, "127.0.0.1", child.port,
                                 "bench client", options);
    if (!dealer.ok()) {
      state.SkipWithError(dealer.status().to_string().c_str());
      return;
    }
    dealers.push_back(std::move(dealer).value());
  }
  const uint64_t job = keys ? keys->job_id : kPlainJob;
  auto buffer = std::make_shared<std::vector<float>>(static_cast<size_t>(bytes) / sizeof(float));
  std::iota(buffer->begin(), buffer->end(), 0.0f);
  // Connection i carries the i-th of `conns` equal slices (the last one takes the rest).
  const size_t slice = buffer->size() / conns;
  const auto slice_of = [&](size_t i) {
    const size_t first = i * slice;
    return std::span<const float>(*buffer).subspan(first,
                                                   i + 1 == conns ? buffer->size() - first : slice);
  };
  for (auto _ : state) {
    bool ok = true;
    for (size_t i = 0; i < conns && ok; ++i) {
      OutMessage msg;
      msg.header.set_kind(wire::PUSH);
      msg.header.set_job_id(job);
      msg.frames.push_back(f32_frame("x", slice_of(i), buffer));
      Status sent = send_message(dealers[i], std::move(msg));
      if (!sent.ok()) {
        state.SkipWithError(sent.to_string().c_str());
        ok = false;
      }
    }
    for (size_t i = 0; i < conns && ok; ++i) {
      auto reply = recv_message(dealers[i], std::chrono::seconds(30), false, job);
      if (!reply.ok() || reply->num_frames() != 1 ||
          reply->frame_bytes(0).size() != slice_of(i).size_bytes()) {
        state.SkipWithError(("bad echo: " + reply.status().to_string()).c_str());
        ok = false;
        break;
      }
      benchmark::DoNotOptimize(reply->frame_bytes(0).data());
    }
    if (!ok) break;
  }
  state.SetBytesProcessed(state.iterations() * 2 * bytes);
  (void)dealers[0].send(zmq::message_t(), zmq::send_flags::none);  // the stop message
}
BENCHMARK(BM_RawZmq)
    ->ArgNames({"KB", "curve", "ipc", "conns"})
    ->ArgsProduct({{318, 1000, 4000, 40000}, {0, 1}, {0, 1}, {1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
// Several connections (issue 12's last candidate for TCP): the bytes split over 2 or 4 DEALERs,
// each served by one of the two I/O threads of either process.
BENCHMARK(BM_RawZmq)
    ->ArgNames({"KB", "curve", "ipc", "conns"})
    ->ArgsProduct({{318, 1000, 4000, 40000}, {0}, {0}, {2, 4}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pstrain

int main(int argc, char** argv) {
  // The PS's INFO lines (a PS starts and ends per benchmark) would bury the table.
  pstrain::set_log_level(pstrain::LogLevel::WARNING);
  // As role processes (`pstrain --job_name=ps|worker`) do (runtime/base/allocator.h), in both
  // processes; PSTRAIN_BENCH_GLIBC_MALLOC=1 leaves glibc's defaults, to measure what the setting
  // brings.
  const char* defaults = std::getenv("PSTRAIN_BENCH_GLIBC_MALLOC");
  if (defaults == nullptr || std::string(defaults) != "1") pstrain::keep_large_buffers_mapped();
  if (argc == 5 && std::string(argv[1]) == "--serve") {
    return pstrain::serve_child(argv[2], argv[3], argv[4]);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
