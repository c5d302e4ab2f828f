// A worker's steady-state step allocates nothing on its thread: the MLP's forward and backward
// pass on the CPU backend, then PsClient::push_pull() of the gradient and the next step's
// parameters through a real parameter server (its own thread here, over 127.0.0.1 or its
// Unix socket), for every transport and with 16-bit compression; and the worker task's own
// loop (run_worker_task), counted from one step's report to a later one's.
//
// How it counts: this binary replaces malloc and its relatives (glibc supports replacing them:
// every call lands here and goes on to glibc's own __libc_* functions), and counts the calls
// made by the thread under test while counting is on; operator new reaches them through
// libstdc++. The PS's thread and ZeroMQ's I/O threads are not counted (they are other
// processes' work in a job). A failure prints where each counted allocation came from.
// Sanitizer builds replace malloc themselves: there the tests skip, saying so.
#include <execinfo.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/model.h"
#include "ps/client.h"
#include "ps/placement.h"
#include "ps/server.h"
#include "tests/ps/server_fixture.h"
#include "tests/sgd_config.h"
#include "tests/temp_dir.h"
#include "tests/tiny_mnist.h"
#include "worker/overlap_pull.h"
#include "worker/overlap_push.h"
#include "worker/worker_task.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PSTRAIN_COUNTING_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define PSTRAIN_COUNTING_MALLOC 0
#endif
#endif
#ifndef PSTRAIN_COUNTING_MALLOC
#define PSTRAIN_COUNTING_MALLOC 1
#endif

namespace {

// Thread-local in the executable: static TLS, which reading never allocates.
thread_local bool t_counting = false;
thread_local bool t_tracing = false;  // inside backtrace(): not counted again
std::atomic<int> g_counted{0};
constexpr int kTraced = 8;
constexpr int kDepth = 16;
std::array<std::array<void*, kDepth>, kTraced> g_traces;
std::array<int, kTraced> g_depths{};

[[maybe_unused]] void note_allocation() {
  if (!t_counting || t_tracing) return;
  const int n = g_counted.fetch_add(1, std::memory_order_relaxed);
  if (n < kTraced) {
    t_tracing = true;
    g_depths[static_cast<size_t>(n)] = backtrace(g_traces[static_cast<size_t>(n)].data(), kDepth);
    t_tracing = false;
  }
}

}  // namespace

#if PSTRAIN_COUNTING_MALLOC
extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* p);

void* malloc(size_t size) {
  note_allocation();
  return __libc_malloc(size);
}
void* calloc(size_t count, size_t size) {
  note_allocation();
  return __libc_calloc(count, size);
}
void* realloc(void* p, size_t size) {
  note_allocation();
  return __libc_realloc(p, size);
}
void free(void* p) { __libc_free(p); }
void* memalign(size_t alignment, size_t size) {
  note_allocation();
  return __libc_memalign(alignment, size);
}
void* aligned_alloc(size_t alignment, size_t size) {
  note_allocation();
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, size_t alignment, size_t size) {
  note_allocation();
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void* valloc(size_t size) {
  note_allocation();
  return __libc_memalign(4096, size);
}
void* pvalloc(size_t size) {
  note_allocation();
  return __libc_memalign(4096, (size + 4095) & ~size_t{4095});
}
}
#endif

namespace pstrain {
namespace {

using std::chrono::milliseconds;
constexpr uint64_t kJob = 31;

// The counted allocations' call stacks (symbolised after counting stopped).
std::string where_allocated() {
  std::string out;
  const int n = std::min(g_counted.load(), kTraced);
  for (int i = 0; i < n; ++i) {
    out += "allocation " + std::to_string(i + 1) + ":\n";
    char** names = backtrace_symbols(g_traces[static_cast<size_t>(i)].data(),
                                     g_depths[static_cast<size_t>(i)]);
    for (int d = 0; names != nullptr && d < g_depths[static_cast<size_t>(i)]; ++d) {
      out += std::string("    ") + names[d] + "\n";
    }
    std::free(names);
  }
  return out;
}

struct Case {
  Transport transport;
  FloatFormat compression;
  const char* name;
  bool overlap = false;  // push each layer's gradients during backward (push_part)
  bool stripes = false;  // the push striped over 4 connections (ClientOptions::push_stripes)
};

class SteadyState : public ::testing::TestWithParam<Case> {};

TEST_P(SteadyState, AWorkersStepAllocatesNothing) {
  if (!PSTRAIN_COUNTING_MALLOC) {
    GTEST_SKIP() << "a sanitizer replaces malloc in this build: the counting allocator is off";
  }
  const Case c = GetParam();
  testing_util::ServerFixture f({.num_workers = 1}, kJob);
  ASSERT_TRUE(f.ok());

  std::unique_ptr<Ops> ops = make_cpu_ops(1, CpuConv::kDefault);
  auto model = Model::create(ModelOptions{}, *ops);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  Model& m = **model;
  // Several chunks, so that the frame tables are not trivial.
  const Placement placement =
      place_variables(m.variables(), 1, default_max_chunk_elements(m.num_parameters(), 1) / 4);
  ClientOptions co;
  co.job_id = kJob;
  co.transport = c.transport;
  co.compression = c.compression;
  co.reply_timeout = milliseconds(20000);
  co.min_push_part_bytes = 0;  // the MLP's last layer (4 KB) goes out alone, as a part
  // Striped: the MLP's 318 KB in 4 stripes; otherwise one connection.
  co.push_stripes = c.stripes ? 4 : 1;
  co.min_stripe_bytes = 64 * 1024;
  // Striped: the reply in parts of 64 KiB, some over the stripes' connections (held when they
  // come before their turn).
  if (c.stripes) co.reply_part_bytes = 64 * 1024;
  auto client = PsClient::connect(f.ctx, {HostPort{"127.0.0.1", f.port()}}, placement, co);
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  PsClient& ps = **client;
  ASSERT_TRUE(ps.hello(placement.hash).ok());
  ASSERT_EQ(ps.transport_of(0), c.transport);
  const JobTrainingConfig config =
      testing_util::sgd_config(true, 1, 1, 10000, placement.hash, 0.05f, "mlp");
  ASSERT_TRUE(ps.init(config, m.initial_parameters(7)).ok());

  const int64_t count = m.num_parameters();
  Tensor params = ops->alloc_host({count});
  Tensor grads = ops->alloc_host({count});
  constexpr int kBatch = 100;  // the job's default --batch_size
  std::vector<float> images(static_cast<size_t>(kBatch) * 784);
  std::vector<int32_t> labels(kBatch);
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<float>(i % 251) / 251.f;
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>(i % 10);
  PsSteps min_steps{0}, steps{0}, next_steps{0};
  auto first = ps.pull(params.host_f32(), min_steps);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  steps = *first;

  // With overlap the model's own gradient buffer is pushed (host memory on the CPU backend).
  OverlapPush parts;  // --overlap: what worker_task.cc hands backward
  if (c.overlap) grads = m.gradients();
  parts.client = &ps;
  parts.grads = grads.host_f32();
  parts.steps = &steps;
  parts.owner = grads.memory();
  // --overlap's pull half: the next batch goes up before the push, and forward runs on the
  // parameters as they come.
  OverlapPull ahead;
  ahead.model = &m;
  ahead.pulled = &params;
  ahead.batch = kBatch;
  const uint64_t parts_before = ps.push_parts_sent();

  // One step of WorkerRun::train() (worker/worker_task.cc) without its reporting.
  float first_loss = 0, last_loss = 0;
  bool uploaded = false;
  int steps_ahead = 0;  // steps whose forward had started when push_pull() returned
  auto step = [&]() -> Status {
    const int64_t have = std::exchange(ahead.copied, 0);
    ops->copy_to_device(m.parameters().f32() + have, params.f32() + have,
                        static_cast<size_t>(params.numel() - have) * sizeof(float));
    if (!std::exchange(uploaded, false)) m.upload_batch(images, labels, kBatch);
    m.forward_backward(kBatch, c.overlap ? &parts : nullptr);
    if (!c.overlap) ops->copy_to_host(grads.raw(), m.gradients().raw(), grads.bytes());
    last_loss = m.read_loss();
    min_steps[0] = steps[0] + 1;
    if (c.overlap) {
      m.upload_batch(images, labels, kBatch);
      uploaded = true;
    }
    Result<PushResult> pushed =
        ps.push_pull(grads.host_f32(), steps, grads.memory(), params.host_f32(), min_steps,
                     next_steps, c.overlap ? &ahead : nullptr);
    if (!pushed.ok()) return pushed.status();
    if (!pushed->pulled || !pushed->accepted || next_steps[0] != steps[0] + 1) {
      return internal_error("the step did not advance the PS by one");
    }
    if (m.layers_ahead() > 0) ++steps_ahead;
    std::swap(steps, next_steps);
    return {};
  };
  // The warm-up: the first steps size every reused buffer, and ZeroMQ's pipe to the PS
  // allocates its first two chunks of 256 messages (a PUSH is 1 + 7 parts here), which it then
  // recycles; a stripe's connection carries 2 or 3 parts a step, so its pipe gets there only
  // after about 130 steps (striped cases: 300).
  const int kWarmUp = c.stripes ? 300 : 100;
  constexpr int kCounted = 100;
  for (int i = 0; i < kWarmUp; ++i) {
    Status st = step();
    ASSERT_TRUE(st.ok()) << st.to_string();
    if (i == 0) first_loss = last_loss;
  }
  g_counted.store(0);
  Status failed;
  t_counting = true;
  for (int i = 0; i < kCounted && failed.ok(); ++i) failed = step();
  t_counting = false;
  ASSERT_TRUE(failed.ok()) << failed.to_string();
  EXPECT_EQ(g_counted.load(), 0) << kCounted << " steps over " << c.name
                                 << " allocated; the first ones:\n"
                                 << where_allocated();
  // The counted steps trained: the PS moved on by one step each, and the loss fell.
  EXPECT_EQ(steps[0], kWarmUp + kCounted);
  EXPECT_LT(last_loss, first_loss);
  // With overlap, every step sent its last layer's gradients ahead (the MLP: one part), and
  // the next step's forward had started when the reply was in.
  if (c.overlap) {
    EXPECT_EQ(ps.push_parts_sent() - parts_before, static_cast<uint64_t>(kWarmUp + kCounted));
    EXPECT_EQ(steps_ahead, kWarmUp + kCounted);
  } else {
    EXPECT_EQ(steps_ahead, 0);
    EXPECT_EQ(ps.push_parts_sent(), 0u);
  }
  // Striped, every step's push went over 4 connections.
  EXPECT_EQ(ps.push_stripes_sent(), c.stripes ? uint64_t{3} * (kWarmUp + kCounted) : 0u);
  if (c.stripes) {
    EXPECT_GE(ps.reply_parts_on_lanes(), static_cast<uint64_t>(kWarmUp + kCounted));
  } else {
    EXPECT_EQ(ps.reply_parts_on_lanes(), 0u);
  }
  // ...and the counting itself works: a step that allocates is seen.
  g_counted.store(0);
  t_counting = true;
  auto probe = std::make_unique<std::vector<float>>(3);
  t_counting = false;
  EXPECT_GE(g_counted.load(), 2);

  ASSERT_TRUE(ps.done().ok());
  auto summary = f.finish();
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->final_step, kWarmUp + kCounted);
}

// Counts from the report of step `from` to that of step `to`, then stops the worker.
struct CountingSink : TrainingSink {
  std::atomic<int>* stop = nullptr;
  int64_t from = 0, to = 0, steps = 0;
  int counted = -1;
  void begin(const TrainingBegin&) override {}
  void step(const StepReport&) override {
    ++steps;
    if (steps == from) {
      g_counted.store(0);
      t_counting = true;
    } else if (steps == to) {
      t_counting = false;
      counted = g_counted.load();
      stop->store(SIGTERM);
    }
  }
  void training_end(const TrainingEnd&) override {}
  void finish() override {}
};

class SteadyStateWorkerTask : public ::testing::TestWithParam<Transport> {};

// Over shared memory (what a job with its PS on the same machine uses) and TCP (with --overlap,
// the default: each layer's gradients go out during backward).
TEST_P(SteadyStateWorkerTask, TheTrainingLoopAllocatesNothing) {
  if (!PSTRAIN_COUNTING_MALLOC) {
    GTEST_SKIP() << "a sanitizer replaces malloc in this build: the counting allocator is off";
  }
  testing_util::TempDir dir("pstrain_steady_state");
  testing_util::ServerFixture f({.num_workers = 1}, kJob);
  ASSERT_TRUE(f.ok());

  std::atomic<int> stop{0};
  WorkerTaskOptions o;
  // An epoch of 120 steps of the job's default batch: the counted steps lie inside the second
  // one (an epoch's reshuffle seeds its generator with a std::seed_seq, which allocates).
  o.train.data_dir = testing_util::tiny_mnist_dir(dir.path(), 12000);
  o.train.validation_size = 0;
  o.train.train_steps = 1000000;
  o.train.batch_size = 100;
  o.train.num_gpus = 0;
  o.train.cpu_threads = 1;
  o.sync_replicas = true;
  o.cluster.ps = {HostPort{"127.0.0.1", f.port()}};
  o.cluster.workers = {HostPort{"127.0.0.1", 1}};
  o.job_id = kJob;
  o.client.connect_timeout = milliseconds(20000);
  o.client.reply_timeout = milliseconds(30000);
  o.client.transport = GetParam();
  o.stop = &stop;
  CountingSink sink;
  sink.stop = &stop;
  sink.from = 125;  // ZeroMQ's pipe recycles its chunks by then (see above)
  sink.to = 235;
  auto result = run_worker_task(o, sink);
  ASSERT_TRUE(f.stop());  // the worker never said DONE
  ASSERT_EQ(result.status().code(), StatusCode::kCancelled) << result.status().to_string();
  ASSERT_EQ(sink.steps, sink.to);
  EXPECT_EQ(sink.counted, 0) << "steps " << sink.from << " to " << sink.to
                             << " of run_worker_task allocated; the first ones:\n"
                             << where_allocated();
}

INSTANTIATE_TEST_SUITE_P(Transports, SteadyStateWorkerTask,
                         ::testing::Values(Transport::kShm, Transport::kTcp),
                         [](const ::testing::TestParamInfo<Transport>& param) {
                           return std::string(transport_name(param.param));
                         });

INSTANTIATE_TEST_SUITE_P(
    Transports, SteadyState,
    ::testing::Values(Case{Transport::kTcp, FloatFormat::kFloat32, "tcp"},
                      Case{Transport::kIpc, FloatFormat::kFloat32, "ipc"},
                      Case{Transport::kShm, FloatFormat::kFloat32, "shm"},
                      Case{Transport::kTcp, FloatFormat::kFloat16, "tcp+fp16"},
                      Case{Transport::kTcp, FloatFormat::kFloat32, "tcp+overlap", true},
                      Case{Transport::kTcp, FloatFormat::kBFloat16, "tcp+bf16+overlap", true},
                      Case{Transport::kTcp, FloatFormat::kFloat32, "tcp+stripes", false, true},
                      Case{Transport::kTcp, FloatFormat::kFloat32, "tcp+overlap+stripes", true,
                           true}),
    [](const ::testing::TestParamInfo<Case>& param) {
      std::string n = param.param.name;
      for (char& ch : n) {
        if (ch == '+') ch = '_';
      }
      return n;
    });

}  // namespace
}  // namespace pstrain
