// run_ps_task: the PS role's driver, as `pstrain --job_name=ps` runs it, on 127.0.0.1.
#include "ps/ps_task.h"

#include "runtime/job/process.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <future>
#include <string>

#include "ps/client.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

using std::chrono::milliseconds;
constexpr uint64_t kJob = 91;

// A temporary file for run_ps_task's output line, read back as text.
class Output {
 public:
  Output() : f_(std::tmpfile()) { EXPECT_NE(f_, nullptr); }
  ~Output() {
    if (f_) std::fclose(f_);
  }
  std::FILE* file() { return f_; }
  std::string text() {
    std::rewind(f_);
    std::string s;
    char buf[256];
    while (std::fgets(buf, sizeof(buf), f_)) s += buf;
    return s;
  }

 private:
  std::FILE* f_;
};

PsTaskOptions one_ps_one_worker() {
  PsTaskOptions o;
  auto port = pick_free_tcp_port();
  EXPECT_TRUE(port.ok()) << port.status().to_string();
  o.cluster.ps = {HostPort{"127.0.0.1", port.ok() ? *port : 0}};
  o.cluster.workers = {HostPort{"127.0.0.1", 1}};
  o.job_id = kJob;
  return o;
}

std::unique_ptr<PsClient> connect_worker0(zmq::context_t& ctx, const PsTaskOptions& o,
                                          const Placement& p) {
  ClientOptions co;
  co.worker = 0;
  co.job_id = kJob;
  co.connect_timeout = milliseconds(10000);
  co.reply_timeout = milliseconds(10000);
  auto c = PsClient::connect(ctx, o.cluster.ps, p, co);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return c.ok() ? std::move(c).value() : nullptr;
}

TEST(PsTask, ServesAJobAndPrintsTheDoneLine) {
  const PsTaskOptions o = one_ps_one_worker();
  Output out;
  auto task = std::async(std::launch::async, [&] { return run_ps_task(o, out.file()); });
  zmq::context_t ctx(1);
  const Placement p = place_variables({{"w", {4}, 0, {}}}, 1);
  auto w0 = connect_worker0(ctx, o, p);
  ASSERT_NE(w0, nullptr);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  JobTrainingConfig config;
  config.model = "mlp";
  config.optimizer.kind = OptimizerKind::kMomentum;
  config.optimizer.momentum = 0.25f;
  config.train_steps = 2;
  config.layout_hash = p.hash;
  ASSERT_TRUE(w0->init(config, std::vector<float>(4, 1.f)).ok());
  std::vector<float> params(4), grads(4, 1.f);
  for (int i = 0; i < 2; ++i) {
    auto s = w0->pull(params, 0);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    ASSERT_TRUE(w0->push(grads, *s, nullptr).ok());
  }
  ASSERT_TRUE(w0->done().ok());
  ASSERT_EQ(task.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "the PS task did not exit once its only worker was done";
  auto summary = task.get();
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->server.final_step, 2);
  ASSERT_TRUE(summary->config.has_value());
  EXPECT_EQ(summary->config->optimizer.momentum, 0.25f);
  EXPECT_EQ(out.text(),
            "ps 0 done: global step 2, 2 gradients applied, 0 dropped (stale or late), 0 "
            "malformed and 0 foreign messages ignored\n");
}

// A stop signal is a stop, not an error: the summary names the signal.
void expect_signal_stops_it(int sig) {
  const PsTaskOptions o = one_ps_one_worker();
  Output out;
  auto task = std::async(std::launch::async, [&] { return run_ps_task(o, out.file()); });
  // Once the PS answers, its signal handlers are in place.
  zmq::context_t ctx(1);
  const Placement p = place_variables({{"w", {4}, 0, {}}}, 1);
  auto w0 = connect_worker0(ctx, o, p);
  ASSERT_NE(w0, nullptr);
  ASSERT_TRUE(w0->hello(p.hash).ok());
  ASSERT_EQ(std::raise(sig), 0);
  ASSERT_EQ(task.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << signal_name(sig) << " did not stop the PS task";
  auto summary = task.get();
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_EQ(summary->stop_signal, sig);
  EXPECT_EQ(out.text(), "ps 0 stopped by " + signal_name(sig) + "\n");
}

TEST(PsTask, SigtermStopsIt) { expect_signal_stops_it(SIGTERM); }
TEST(PsTask, SigintStopsIt) { expect_signal_stops_it(SIGINT); }
TEST(PsTask, SighupStopsIt) { expect_signal_stops_it(SIGHUP); }

TEST(PsTask, AServerThatCannotStartIsAConfigurationError) {
  PsTaskOptions o = one_ps_one_worker();
  o.task_index = 1;
  auto outside = run_ps_task(o, stdout);
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(outside.status().message().find("index 1"), std::string::npos)
      << outside.status().message();

  // The port is taken by another socket.
  zmq::context_t ctx(1);
  auto holder = bind_socket(ctx, zmq::socket_type::router, "127.0.0.1", 0, "holder");
  ASSERT_TRUE(holder.ok()) << holder.status().to_string();
  auto port = bound_port(*holder);
  ASSERT_TRUE(port.ok());
  o.task_index = 0;
  o.cluster.ps = {HostPort{"127.0.0.1", *port}};
  auto in_use = run_ps_task(o, stdout);
  ASSERT_FALSE(in_use.ok());
  EXPECT_EQ(in_use.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(in_use.status().message().find(std::to_string(*port)), std::string::npos)
      << in_use.status().message();
}

}  // namespace
}  // namespace pstrain
