// `pstrain status`: JOB_DIR mode over hand-made job directories (states, slow and silent
// workers by file mtime), PS mode against a real in-process ParameterServer on 127.0.0.1 and
// against an address where nothing listens.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "ps/client.h"
#include "ps/server.h"
#include "ps/status_query.h"
#include "runtime/job/task_env.h"
#include "runtime/wire/transport.h"
#include "tests/sgd_config.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using testing_util::TempDir;

struct Outcome {
  int code = -1;
  std::string out;
};

// Runs `pstrain status <args>` in this process and returns its exit code and stdout.
Outcome status(const std::vector<std::string>& args) {
  std::FILE* f = std::tmpfile();
  EXPECT_NE(f, nullptr);
  Outcome r;
  r.code = run_status_command(args, f);
  std::fflush(f);
  std::rewind(f);
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) r.out.append(buf, n);
  std::fclose(f);
  return r;
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

void write_status(const TempDir& dir, int index, const std::string& state, int64_t local,
                  int64_t global, double eps, double age_s) {
  WorkerStatus s;
  s.state = state;
  s.index = index;
  s.local_step = local;
  s.global_step = global;
  s.train_steps = 1000;
  s.loss = 0.25;
  s.examples_per_second = eps;
  const std::string path = dir / ("status-wk-" + std::to_string(index) + ".json");
  write(path, s.to_json().dump());
  fs::last_write_time(path, fs::file_time_type::clock::now() -
                                std::chrono::duration_cast<fs::file_time_type::duration>(
                                    std::chrono::duration<double>(age_s)));
}

const nlohmann::json* task_named(const nlohmann::json& j, const std::string& name) {
  for (const auto& t : j["tasks"])
    if (t["name"] == name) return &t;
  return nullptr;
}

TEST(StatusCommand, JobDirFindsSlowAndSilentWorkers) {
  TempDir dir("pstrain_status");
  write(dir / "stdout-ps-0.txt", "");
  write(dir / "stderr-ps-0.txt", "");
  write_status(dir, 0, "running", 200, 410, 1000, 1);
  write_status(dir, 1, "running", 195, 410, 900, 120);  // silent: written 2 minutes ago
  write_status(dir, 2, "running", 20, 400, 100, 1);     // slow: far behind the others

  Outcome r = status({dir.path(), "--json"});
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["global_step"], 410);
  EXPECT_EQ(j["train_steps"], 1000);
  EXPECT_DOUBLE_EQ(j["examples_per_second"].get<double>(), 1100.0);  // silent wk-1 left out
  ASSERT_EQ(j["tasks"].size(), 4u);
  EXPECT_EQ(j["tasks"][0]["name"], "ps-0");
  EXPECT_TRUE(j["tasks"][0]["state"].is_null());
  EXPECT_FALSE((*task_named(j, "wk-0"))["silent"].get<bool>());
  EXPECT_FALSE((*task_named(j, "wk-0"))["slow"].get<bool>());
  EXPECT_TRUE((*task_named(j, "wk-1"))["silent"].get<bool>());
  EXPECT_FALSE((*task_named(j, "wk-1"))["slow"].get<bool>());
  EXPECT_TRUE((*task_named(j, "wk-2"))["slow"].get<bool>());
  EXPECT_FALSE((*task_named(j, "wk-2"))["silent"].get<bool>());
  EXPECT_GE((*task_named(j, "wk-1"))["status_age_s"].get<double>(), 100.0);

  Outcome text = status({dir.path()});
  ASSERT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("global step 410 of 1000 (41%)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("wk-1 is silent"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("wk-2 is slow: local step 20, the fastest worker is at 200"),
            std::string::npos)
      << text.out;

  // A longer --silent_s forgives wk-1.
  Outcome lenient = status({dir.path(), "--silent_s", "600", "--json"});
  ASSERT_EQ(lenient.code, 0);
  const auto lj = nlohmann::json::parse(lenient.out);
  EXPECT_FALSE((*task_named(lj, "wk-1"))["silent"].get<bool>());
}

TEST(StatusCommand, JobDirWithSummaryShowsTheOutcome) {
  TempDir dir("pstrain_status");
  write_status(dir, 0, "done", 500, 1000, 1000, 3600);  // old but done: not silent
  write_status(dir, 1, "done", 500, 1000, 1000, 3600);
  nlohmann::json summary = {{"state", "succeeded"},
                            {"global_step", 1000},
                            {"train_steps", 1000},
                            {"examples_per_second", 2000.0},
                            {"tasks",
                             {{{"name", "ps-0"}, {"status", "exited 0"}},
                              {{"name", "wk-0"}, {"status", "exited 0"}},
                              {{"name", "wk-1"}, {"status", "exited 0"}}}}};
  write(dir / "summary.json", summary.dump());

  Outcome r = status({dir.path(), "--json"});
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["state"], "succeeded");
  EXPECT_EQ(j["global_step"], 1000);
  EXPECT_TRUE(j["problems"].empty()) << j.dump();
  EXPECT_EQ((*task_named(j, "ps-0"))["exit"], "exited 0");
  EXPECT_FALSE((*task_named(j, "wk-0"))["silent"].get<bool>());

  Outcome text = status({dir.path()});
  EXPECT_NE(text.out.find(": succeeded"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("no problem seen"), std::string::npos) << text.out;
}

TEST(StatusCommand, NotAJobDirIsAUsageError) {
  TempDir dir("pstrain_status");
  write(dir / "notes.txt", "hello");
  EXPECT_EQ(status({dir.path()}).code, 2);
  EXPECT_EQ(status({dir / "missing"}).code, 2);
  EXPECT_EQ(status({}).code, 2);
  EXPECT_EQ(status({dir.path(), "--ps_hosts", "127.0.0.1:1"}).code, 2);
  EXPECT_EQ(status({"--ps_hosts", "127.0.0.1:1"}).code, 2);  // no job id, no worker hosts
}

constexpr uint64_t kJob = 91;

std::unique_ptr<PsClient> worker_client(zmq::context_t& ctx, int port, int worker,
                                        const Placement& p) {
  ClientOptions co;
  co.worker = worker;
  co.job_id = kJob;
  co.connect_timeout = milliseconds(10000);
  co.reply_timeout = milliseconds(30000);
  co.heartbeat_interval = milliseconds(50);
  auto c = PsClient::connect(ctx, {HostPort{"127.0.0.1", port}}, p, co);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return std::move(c).value();
}

TEST(StatusCommand, AsksARealParameterServerWhatBlocksProgress) {
  zmq::context_t ctx{1};
  ServerOptions so{.num_workers = 3,
                   .host = "127.0.0.1",
                   .job_id = kJob,
                   .heartbeat_timeout = milliseconds(500),
                   .long_poll = milliseconds(20000)};  // worker 1's pull stays parked
  auto created = ParameterServer::create(ctx, so);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  std::unique_ptr<ParameterServer> server = std::move(created).value();
  const int port = server->port();
  auto served = std::async(std::launch::async, [&] { return server->serve(); });
  struct Stop {
    ParameterServer* s;
    std::future<Result<ServerSummary>>* f;
    ~Stop() {
      s->request_stop();
      f->wait();
    }
  } stop{server.get(), &served};

  std::vector<VariableSpec> vars = {{"a", {3}, 0, {}}, {"b", {2}, 3, {}}};
  const Placement p = place_variables(vars, 1);
  auto w0 = worker_client(ctx, port, 0, p);
  auto w1 = worker_client(ctx, port, 1, p);
  auto w2 = worker_client(ctx, port, 2, p);
  for (auto* w : {w0.get(), w1.get(), w2.get()}) ASSERT_TRUE(w->hello(p.hash).ok());
  w0->start_heartbeats();
  w1->start_heartbeats();
  const JobTrainingConfig c = testing_util::sgd_config(true, 2, 3, 10, p.hash);
  std::vector<float> init = {1, 2, 3, 4, 5};
  ASSERT_TRUE(w0->init(c, init).ok());
  std::vector<float> params(5), params1(5);
  auto steps = w0->pull(params, 0);
  ASSERT_TRUE(steps.ok());
  std::vector<float> grad = {1, 1, 1, 1, 1};
  ASSERT_TRUE(w0->push(grad, *steps, nullptr).ok());
  // Worker 1 waits for step 1 in a pull the server parks.
  auto parked = std::async(std::launch::async, [&] { return w1->pull(params1, 1); });

  // Worker 2 sent nothing since its hello: the server declares it lost after 500 ms. Ask
  // until the answer shows it (and worker 1's parked pull), within a deadline.
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::string line;
  while (std::chrono::steady_clock::now() < deadline) {
    auto answers = query_ps_status(ctx, {HostPort{"127.0.0.1", port}}, kJob, milliseconds(2000));
    ASSERT_EQ(answers.size(), 1u);
    ASSERT_TRUE(answers[0].answered) << answers[0].error;
    line = describe_ps_progress(answers[0]);
    if (line.find("worker 2 lost") != std::string::npos &&
        answers[0].stats.workers(1).parked_pulls() > 0)
      break;
  }
  EXPECT_EQ(line, "ps 0 (" + addr +
                      "): step 0 of 10, sync, waiting for 1 of 2 gradients for step 0 (have "
                      "worker 0); worker 2 lost");

  Outcome r = status({"--ps_hosts", addr, "--job_id", std::to_string(kJob), "--json"});
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["all_answered"].get<bool>());
  const auto& ps = j["ps"][0];
  EXPECT_TRUE(ps["answered"].get<bool>());
  EXPECT_TRUE(ps["initialized"].get<bool>());
  EXPECT_EQ(ps["global_step"], 0);
  EXPECT_EQ(ps["gradients_pending"], 1);
  EXPECT_EQ(ps["replicas_to_aggregate"], 2);
  EXPECT_EQ(ps["workers_lost"], 1);
  EXPECT_EQ(ps["workers"][0]["state"], "connected");
  EXPECT_TRUE(ps["workers"][0]["pending_gradient"].get<bool>());
  EXPECT_EQ(ps["workers"][1]["parked_pulls"], 1);
  EXPECT_EQ(ps["workers"][2]["state"], "lost");

  Outcome text = status({"--ps_hosts", addr, "--job_id", std::to_string(kJob)});
  ASSERT_EQ(text.code, 0) << text.out;
  EXPECT_NE(text.out.find("worker 1: connected"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("waiting in a pull"), std::string::npos) << text.out;

  // A second gradient completes step 0, which answers worker 1's parked pull. w1's PsClient
  // is still inside pull() (a client is used from one thread at a time), and another process
  // may not speak for a live worker: the lost worker 2 comes back in a new client and pushes.
  auto w2_back = worker_client(ctx, port, 2, p);
  ASSERT_TRUE(w2_back->push(grad, *steps, nullptr).ok());
  ASSERT_EQ(parked.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  auto s1 = parked.get();
  ASSERT_TRUE(s1.ok()) << s1.status().to_string();
  EXPECT_EQ((*s1)[0], 1);
  w0->stop_heartbeats();
  w1->stop_heartbeats();
}

TEST(StatusCommand, DerivesTheJobIdFromTheClusterAsRoleProcessesDo) {
  zmq::context_t ctx{1};
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok());
  const std::string ps_hosts = "127.0.0.1:" + std::to_string(*port);
  const std::string worker_hosts = "127.0.0.1:1,127.0.0.1:2";
  ClusterSpec spec{*parse_host_list(ps_hosts), *parse_host_list(worker_hosts)};
  ServerOptions so{
      .num_workers = 2, .host = "127.0.0.1", .port = *port, .job_id = derive_job_id(spec)};
  auto created = ParameterServer::create(ctx, so);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  std::unique_ptr<ParameterServer> server = std::move(created).value();
  auto served = std::async(std::launch::async, [&] { return server->serve(); });

  Outcome r = status({"--ps_hosts", ps_hosts, "--worker_hosts", worker_hosts});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("not initialised, waiting for the chief"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("workers 0, 1 not connected yet"), std::string::npos) << r.out;
  server->request_stop();
  served.wait();
}

TEST(StatusCommand, NobodyListeningExitsOneWithinTheDeadline) {
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok());
  const std::string addr = "127.0.0.1:" + std::to_string(*port);
  const auto start = std::chrono::steady_clock::now();
  Outcome r = status({"--ps_hosts", addr, "--job_id", "5", "--timeout_s", "0.5"});
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_LT(took, 5.0);
  EXPECT_NE(r.out.find("1 of 1 parameter servers did not answer: ps 0 (" + addr + ")"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("no answer within 0.5 s"), std::string::npos) << r.out;

  Outcome j = status({"--ps_hosts", addr, "--job_id", "5", "--timeout_s", "0.2", "--json"});
  EXPECT_EQ(j.code, 1);
  const auto parsed = nlohmann::json::parse(j.out);
  EXPECT_FALSE(parsed["all_answered"].get<bool>());
  EXPECT_FALSE(parsed["ps"][0]["answered"].get<bool>());
}

}  // namespace
}  // namespace pstrain
