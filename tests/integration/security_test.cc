// Jobs with a secret, through the real binary on 127.0.0.1 (docs/security.md): a PS and two
// workers with the same --secret_file (one by the flag, one by PSTRAIN_SECRET_FILE) train to the
// end, while a worker with another secret and one with none exit 2 saying so and the PS logs
// their refused connections; `pstrain launch` makes a fresh secret per job; a bad secret file
// is exit 2 naming the fix; a task whose own address is not on this machine is exit 2 at once
// naming it. Every wait has a deadline (the child is killed and the test fails).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "ps/server.h"
#include "ps/status_query.h"
#include "ps/training_config.h"
#include "runtime/base/files.h"
#include "runtime/job/process.h"
#include "runtime/wire/security.h"
#include "runtime/wire/transport.h"
#include "tests/integration/paths.h"
#include "tests/temp_dir.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// Shadow memory and ASan's quarantine of freed blocks: resident sizes mean nothing here.
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;
using testing_util::kFashionMnist;
using testing_util::kPstrain;

class SecurityTest : public ::testing::Test {
 protected:
  Subprocess start(const std::string& name, const std::vector<std::string>& args,
                   std::map<std::string, std::optional<std::string>> env = {}) {
    SubprocessOptions o;
    o.argv = {kPstrain};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.env = std::move(env);
    o.env.try_emplace(kSecretFileEnv, std::nullopt);
    testing_util::clear_cluster_variables(o.env);
    o.stdout_path = tmp_ / (name + "-stdout.txt");
    o.stderr_path = tmp_ / (name + "-stderr.txt");
    o.stdin_from_dev_null = true;
    o.kill_on_parent_death = true;
    auto p = Subprocess::spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().message();
    return std::move(p).value();
  }
  ExitStatus finish(const std::string& name, Subprocess& p, seconds timeout) {
    auto st = p.wait_for(timeout);
    if (!st.ok()) {
      ADD_FAILURE() << name << " did not finish within " << timeout.count() << " s\n"
                    << text(name + "-stderr.txt");
      return p.kill();
    }
    return *st;
  }
  std::string text(const std::string& name) const {
    auto t = read_file(tmp_ / name);
    return t.ok() ? *t : std::string("<cannot read " + name + ">");
  }
  std::string secret(const std::string& name) {
    const std::string path = tmp_ / name;
    EXPECT_TRUE(write_secret_file(path).ok());
    return path;
  }

  testing_util::TempDir tmp_{"pstrain_security"};
};

TEST_F(SecurityTest, JobWithASecretTrainsOutsidersExit2AndAreCounted) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  const std::string job = secret("job-secret"), other = secret("other-secret");
  auto ports = pick_free_tcp_ports(3);
  ASSERT_TRUE(ports.ok());
  const auto addr = [&](int i) {
    return "127.0.0.1:" + std::to_string((*ports)[static_cast<size_t>(i)]);
  };
  const std::vector<std::string> common = {
      "--ps_hosts=" + addr(0), "--worker_hosts=" + addr(1) + "," + addr(2),
      "--train_steps=60",      "--sync_replicas",
      "--num_gpus=0",          "--cpu_threads=1",
      "--log_every=1000",      "--connect_timeout_s=60"};
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.end(), common.begin(), common.end());
    return a;
  };
  Subprocess ps = start("ps", with({"--job_name=ps", "--task_index=0", "--secret_file=" + job}));

  // Another secret, then none: exit 2 at once, naming the cause.
  Subprocess wrong =
      start("wrong", with({"--job_name=worker", "--task_index=1", "--secret_file=" + other}));
  EXPECT_EQ(finish("wrong", wrong, seconds(60)), ExitStatus::exited(2));
  EXPECT_NE(text("wrong-stderr.txt").find("the secret file " + other + " differs from the job's"),
            std::string::npos)
      << text("wrong-stderr.txt");
  Subprocess none = start("none", with({"--job_name=worker", "--task_index=1"}));
  EXPECT_EQ(finish("none", none, seconds(60)), ExitStatus::exited(2));
  EXPECT_NE(text("none-stderr.txt").find("requires the job's secret"), std::string::npos)
      << text("none-stderr.txt");

  // The PS counted both refusals; `pstrain status` with the secret reads them (and without it
  // gets no answer).
  Subprocess status =
      start("status", {"status", "--ps_hosts", addr(0), "--json"}, {{kSecretFileEnv, job}});
  EXPECT_EQ(finish("status", status, seconds(30)), ExitStatus::exited(0))
      << text("status-stderr.txt");
  const auto j = nlohmann::json::parse(text("status-stdout.txt"), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << text("status-stdout.txt");
  EXPECT_GE(j.at("ps").at(0).value("unauthenticated", 0), 2) << j.dump(2);
  Subprocess keyless =
      start("keyless", {"status", "--ps_hosts", addr(0), "--job_id", "5", "--timeout_s", "1"});
  EXPECT_EQ(finish("keyless", keyless, seconds(30)), ExitStatus::exited(1));

  // The job's own workers: one by the flag, one by PSTRAIN_SECRET_FILE.
  Subprocess w0 =
      start("w0", with({"--job_name=worker", "--task_index=0", "--secret_file=" + job}));
  Subprocess w1 =
      start("w1", with({"--job_name=worker", "--task_index=1"}), {{kSecretFileEnv, job}});
  EXPECT_EQ(finish("w0", w0, seconds(180)), ExitStatus::exited(0)) << text("w0-stderr.txt");
  EXPECT_EQ(finish("w1", w1, seconds(60)), ExitStatus::exited(0)) << text("w1-stderr.txt");
  EXPECT_EQ(finish("ps", ps, seconds(60)), ExitStatus::exited(0)) << text("ps-stderr.txt");
  EXPECT_NE(text("w0-stdout.txt").find("test accuracy"), std::string::npos);
  EXPECT_NE(text("ps-stdout.txt").find("global step 60"), std::string::npos)
      << text("ps-stdout.txt");
  const std::string ps_log = text("ps-stderr.txt");
  EXPECT_NE(ps_log.find("connection(s) without the job's key"), std::string::npos) << ps_log;
  EXPECT_NE(ps_log.find("CURVE-encrypted"), std::string::npos) << ps_log;
}

TEST_F(SecurityTest, LaunchMakesAFreshSecretPerJob) {
  if (!fs::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is missing";
  const std::string dir = tmp_ / "job";
  Subprocess l = start("launch", {"launch", "--ps", "1", "--workers", "2", "--job_dir", dir,
                                  "--train_steps", "30", "--num_gpus", "0", "--sync_replicas"});
  EXPECT_EQ(finish("launch", l, seconds(240)), ExitStatus::exited(0)) << text("launch-stderr.txt");
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  auto ps_log = read_file(dir + "/stderr-ps-0.txt");
  ASSERT_TRUE(ps_log.ok());
  EXPECT_NE(ps_log->find("job secret from " + dir + "/secret"), std::string::npos) << *ps_log;

  // --secret_file=none: no secret, open ports on loopback as before.
  const std::string open_dir = tmp_ / "open-job";
  Subprocess o =
      start("open-launch", {"launch", "--ps", "1", "--workers", "1", "--job_dir", open_dir,
                            "--train_steps", "10", "--num_gpus", "0", "--secret_file=none"});
  EXPECT_EQ(finish("open-launch", o, seconds(240)), ExitStatus::exited(0))
      << text("open-launch-stderr.txt");
  EXPECT_FALSE(fs::exists(open_dir + "/secret"));
  auto open_log = read_file(open_dir + "/stderr-ps-0.txt");
  ASSERT_TRUE(open_log.ok());
  EXPECT_EQ(open_log->find("CURVE"), std::string::npos) << *open_log;
}

TEST_F(SecurityTest, BadSecretFileIsExit2NamingTheFix) {
  const std::string short_file = tmp_ / "short";
  ASSERT_TRUE(write_file_atomically(short_file, "0123456789").ok());
  ::chmod(short_file.c_str(), 0600);
  Subprocess a = start("short", {"--job_name=ps", "--task_index=0", "--secret_file", short_file});
  EXPECT_EQ(finish("short", a, seconds(30)), ExitStatus::exited(2));
  EXPECT_NE(text("short-stderr.txt").find("head -c 32 /dev/urandom > " + short_file),
            std::string::npos)
      << text("short-stderr.txt");
  const std::string open_file = secret("open");
  ::chmod(open_file.c_str(), 0644);
  Subprocess b = start("open", {"--job_name=ps", "--task_index=0"}, {{kSecretFileEnv, open_file}});
  EXPECT_EQ(finish("open", b, seconds(30)), ExitStatus::exited(2));
  EXPECT_NE(text("open-stderr.txt").find("chmod 600 " + open_file), std::string::npos)
      << text("open-stderr.txt");
}

TEST_F(SecurityTest, OpenPortOnAllInterfacesWithoutASecretIsAWarning) {
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok());
  // A host that is not loopback: the PS listens on every interface.
  Subprocess ps = start(
      "open-ps", {"--job_name=ps", "--task_index=0", "--ps_hosts=0.0.0.0:" + std::to_string(*port),
                  "--worker_hosts=127.0.0.1:1", "--startup_timeout_s=0.5"});
  EXPECT_EQ(finish("open-ps", ps, seconds(30)), ExitStatus::exited(1));
  EXPECT_NE(text("open-ps-stderr.txt").find("without a job secret: anyone who can reach the port"),
            std::string::npos)
      << text("open-ps-stderr.txt");
}

TEST_F(SecurityTest, OwnAddressNotOnThisMachineIsExit2AtOnceNamingIt) {
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok());
  const std::string p = std::to_string(*port);
  struct Case {
    std::string name, role, ps_hosts, worker_hosts, named;
  };
  const std::vector<Case> cases = {
      {"unresolvable-ps", "ps", "no-such-host.invalid:" + p, "127.0.0.1:1",
       "ps 0's own host 'no-such-host.invalid' does not resolve"},
      {"foreign-ip-ps", "ps", "203.0.113.7:" + p, "127.0.0.1:1",
       "ps 0's own address 203.0.113.7 is on none of this machine's network interfaces"},
      {"foreign-ip-worker", "worker", "127.0.0.1:" + p, "203.0.113.7:1",
       "worker 0's own address 203.0.113.7 is on none of this machine's network interfaces"},
  };
  for (const Case& c : cases) {
    const auto start_time = std::chrono::steady_clock::now();
    Subprocess task = start(
        c.name, {"--job_name=" + c.role, "--task_index=0", "--ps_hosts=" + c.ps_hosts,
                 "--worker_hosts=" + c.worker_hosts, "--num_gpus=0", "--connect_timeout_s=60"});
    EXPECT_EQ(finish(c.name, task, seconds(30)), ExitStatus::exited(2)) << c.name;
    EXPECT_LT(std::chrono::steady_clock::now() - start_time, seconds(10)) << c.name;
    EXPECT_NE(text(c.name + "-stderr.txt").find(c.named), std::string::npos)
        << text(c.name + "-stderr.txt");
  }
}

// The resident bytes of process `pid` (/proc/<pid>/statm); -1 when it cannot be read.
int64_t resident_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/statm");
  int64_t size = 0, resident = -1;
  if (!(in >> size >> resident)) return -1;
  return resident * static_cast<int64_t>(::sysconf(_SC_PAGESIZE));
}

// The training config the attackers of the resource-bound tests send as the chief: SGD for
// `workers` workers (replicas_to_aggregate the same), a made-up layout hash.
JobTrainingConfig attack_config(int workers, uint64_t layout_hash) {
  JobTrainingConfig config;
  config.model = "test";
  config.optimizer.kind = OptimizerKind::kSgd;
  config.optimizer.learning_rate = 0.001f;
  config.num_workers = workers;
  config.replicas_to_aggregate = workers;
  config.train_steps = 1000000;
  config.layout_hash = layout_hash;
  return config;
}

// A slow reader: a process without the secret (the PS has none) takes worker 0's place,
// initialises 1 MB of variables, then sends PULLs and PUSHes without ever reading a reply.
// Each push changes the values, so every queued reply would hold its own 1 MB copy; the PS's
// send queue per connection (kPsSendHwm) drops the replies beyond it and counts them, and its
// resident memory stays under the bound of docs/security.md.
TEST_F(SecurityTest, SlowReaderKeepsThePsUnderItsMemoryBound) {
  constexpr uint64_t kJob = 12345;
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok());
  Subprocess ps = start(
      "slow-ps", {"--job_name=ps", "--task_index=0",
                  "--ps_hosts=127.0.0.1:" + std::to_string(*port), "--worker_hosts=127.0.0.1:1",
                  "--heartbeat_timeout_s=120", "--job_id=" + std::to_string(kJob)});
  zmq::context_t ctx(1);
  zmq::socket_t attacker(ctx, zmq::socket_type::dealer);
  attacker.set(zmq::sockopt::linger, 0);
  attacker.set(zmq::sockopt::rcvhwm, 1);
  attacker.set(zmq::sockopt::rcvbuf, 4096);
  attacker.set(zmq::sockopt::sndtimeo, 5000);
  attacker.connect("tcp://127.0.0.1:" + std::to_string(*port));

  constexpr int kChunks = 16, kChunkFloats = 16384;  // 16 x 64 KiB = 1 MiB
  constexpr int64_t kShardBytes = int64_t{kChunks} * kChunkFloats * 4;
  const JobTrainingConfig config = attack_config(1, 77);
  std::vector<float> values(static_cast<size_t>(kChunks) * kChunkFloats, 0.5f);
  auto request = [&](wire::Kind kind, uint64_t id, int64_t step, uint64_t job) {
    OutMessage m;
    m.header.set_kind(kind);
    m.header.set_job_id(job);
    m.header.set_sender(0);
    m.header.set_request_id(id);
    m.header.set_step(step);
    *m.header.mutable_config() = config.to_wire();
    if (kind == wire::INIT || kind == wire::PUSH) {
      for (int c = 0; c < kChunks; ++c) {
        m.frames.push_back(f32_frame("w/" + std::to_string(c * kChunkFloats),
                                     std::span<const float>(values).subspan(
                                         static_cast<size_t>(c) * kChunkFloats, kChunkFloats),
                                     nullptr));
      }
    }
    return send_message(attacker, std::move(m));
  };
  // HELLO until the PS answers (it may still be starting).
  const uint64_t job = kJob;
  bool answered = false;
  for (int i = 0; i < 100 && !answered; ++i) {  // bounded: 100 x 200 ms
    ASSERT_TRUE(request(wire::HELLO, 1, 0, job).ok());
    zmq::pollitem_t item{static_cast<void*>(attacker), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(200));
    if (!(item.revents & ZMQ_POLLIN)) continue;
    auto reply = recv_message(attacker, std::chrono::milliseconds(1000), false, job);
    answered = reply.ok() && reply->header.request_id() == 1;
  }
  ASSERT_TRUE(answered) << text("slow-ps-stderr.txt");
  ASSERT_TRUE(request(wire::INIT, 2, 0, job).ok());
  auto init_reply = recv_message(attacker, std::chrono::milliseconds(10000), false, job);
  ASSERT_TRUE(init_reply.ok()) << init_reply.status().to_string();
  ASSERT_EQ(init_reply->header.kind(), wire::REPLY_OK) << init_reply->header.error();
  const int64_t before = resident_bytes(ps.pid());
  ASSERT_GT(before, 0);

  // Never read again: 300 pulls and 300 pushes (unbounded, they would queue 300 MB).
  int64_t peak = before;
  const auto deadline = std::chrono::steady_clock::now() + seconds(40);
  for (int i = 0; i < 300 && std::chrono::steady_clock::now() < deadline; ++i) {
    ASSERT_TRUE(request(wire::PULL, 10 + 2 * static_cast<uint64_t>(i), 0, job).ok());
    ASSERT_TRUE(request(wire::PUSH, 11 + 2 * static_cast<uint64_t>(i), i, job).ok());
    if (i % 10 == 0) peak = std::max(peak, resident_bytes(ps.pid()));
  }
  // Ask (from another connection) until the PS has applied the pushes, reading its memory
  // meanwhile; a sanitizer build handles them much more slowly, hence the long deadline.
  const int64_t bound = (kPsSendHwm + 4) * kShardBytes + (int64_t{24} << 20);
  wire::PsStats stats;
  const auto applied_by = std::chrono::steady_clock::now() + seconds(90);
  while (std::chrono::steady_clock::now() < applied_by) {  // bounded by the deadline
    auto answers =
        query_ps_status(ctx, {HostPort{"127.0.0.1", *port}}, job, std::chrono::milliseconds(3000));
    ASSERT_EQ(answers.size(), 1u);
    if (answers[0].answered) stats = answers[0].stats;
    peak = std::max(peak, resident_bytes(ps.pid()));
    if (stats.gradients_applied() >= 290) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // pacing of the polls only
  }
  std::printf("slow reader: PS resident %lld -> peak %lld bytes (bound: +%lld)\n",
              static_cast<long long>(before), static_cast<long long>(peak),
              static_cast<long long>(bound));
  EXPECT_GE(stats.gradients_applied(), 290);  // the pushes changed the values (copies)
  if (!kSanitized) {
    EXPECT_LT(peak - before, bound) << "resident " << before << " -> " << peak << " bytes";
  }
  ps.kill();
  EXPECT_NE(text("slow-ps-stderr.txt").find("messages wait unread on its connection"),
            std::string::npos)
      << text("slow-ps-stderr.txt");
}

// ZMTP 3.0 by hand, as a peer that is not a ZeroMQ library: the NULL greeting and a READY
// naming a DEALER socket. Returns a connected TCP socket (-1 on failure).
int raw_tcp_connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}
bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {  // bounded: each send waits at most SO_SNDTIMEO
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}
std::string zmtp_null_handshake() {
  std::string g(64, '\0');
  g[0] = '\xff';
  g[9] = '\x7f';
  g[10] = 3;  // version 3.0
  g.replace(12, 4, "NULL");
  std::string ready =
      std::string("\x05READY") + "\x0bSocket-Type" + std::string("\0\0\0\x06", 4) + "DEALER";
  return g + "\x04" + static_cast<char>(ready.size()) + ready;
}
// True when the peer closed `fd` within `wait` (what it sent before is read and dropped).
bool closed_by_peer(int fd, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {  // each recv waits at most 2 s
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
  }
  return false;
}

// Partial frames and a crowd of idle connections, against a real PS after the chief's INIT:
// two connections that declare a 1 GiB frame are cut before it is buffered (the frame cap is
// twice the largest chunk + 1 MiB), and with 2,000 idle connections (1,000 raw TCP connects
// and 1,000 that complete the ZMTP handshake) a new worker still gets in and the job ends.
TEST_F(SecurityTest, PartialFramesAndIdleConnectionsDoNotKeepTheWorkersOut) {
  constexpr uint64_t kJob = 23456;
  auto port = pick_free_tcp_port();
  ASSERT_TRUE(port.ok());
  Subprocess ps =
      start("crowd-ps",
            {"--job_name=ps", "--task_index=0", "--ps_hosts=127.0.0.1:" + std::to_string(*port),
             "--worker_hosts=127.0.0.1:1,127.0.0.1:2", "--heartbeat_timeout_s=120",
             "--job_id=" + std::to_string(kJob)});
  zmq::context_t ctx(1);
  auto worker_socket = [&] {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::sndtimeo, 5000);
    s.connect("tcp://127.0.0.1:" + std::to_string(*port));
    return s;
  };
  const JobTrainingConfig config = attack_config(2, 78);
  std::vector<float> values(4 * 16384, 0.5f);  // 4 chunks of 64 KiB
  auto ask = [&](zmq::socket_t& s, int sender, wire::Kind kind, uint64_t id,
                 std::chrono::milliseconds wait) -> Result<InMessage> {
    OutMessage m;
    m.header.set_kind(kind);
    m.header.set_job_id(kJob);
    m.header.set_sender(sender);
    m.header.set_request_id(id);
    *m.header.mutable_config() = config.to_wire();
    if (kind == wire::INIT) {
      for (int c = 0; c < 4; ++c) {
        m.frames.push_back(
            f32_frame("w/" + std::to_string(c * 16384),
                      std::span<const float>(values).subspan(static_cast<size_t>(c) * 16384, 16384),
                      nullptr));
      }
    }
    PSTRAIN_RETURN_IF_ERROR(send_message(s, std::move(m)));
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {  // skips answers to older tries
      auto r = recv_message(s, std::chrono::milliseconds(200), false, kJob);
      if (r.ok() && r->header.request_id() == id) return r;
    }
    return deadline_exceeded("no answer");
  };
  zmq::socket_t chief = worker_socket();
  bool answered = false;
  for (uint64_t i = 1; i <= 50 && !answered; ++i) {  // the PS may still be starting
    answered = ask(chief, 0, wire::HELLO, i, std::chrono::milliseconds(200)).ok();
  }
  ASSERT_TRUE(answered) << text("crowd-ps-stderr.txt");
  auto init = ask(chief, 0, wire::INIT, 100, std::chrono::milliseconds(10000));
  ASSERT_TRUE(init.ok()) << init.status().to_string();
  ASSERT_EQ(init->header.kind(), wire::REPLY_OK) << init->header.error();
  const int64_t before = resident_bytes(ps.pid());
  ASSERT_GT(before, 0);

  // Partial frames: a 1 GiB frame declared, 4 MiB of it sent, on two connections.
  for (int k = 0; k < 2; ++k) {
    const int fd = raw_tcp_connect(*port);
    ASSERT_GE(fd, 0);
    std::string frame_header = "\x02";
    for (int b = 7; b >= 0; --b) {
      frame_header.push_back(static_cast<char>(((uint64_t{1} << 30) >> (8 * b)) & 0xff));
    }
    ASSERT_TRUE(send_all(fd, zmtp_null_handshake() + frame_header));
    (void)send_all(fd, std::string(4 << 20, 'x'));  // may fail once the PS closed it
    EXPECT_TRUE(closed_by_peer(fd, std::chrono::milliseconds(5000)));
    ::close(fd);
  }
  const int64_t after_frames = resident_bytes(ps.pid());
  EXPECT_LT(after_frames - before, int64_t{4} << 20)
      << "resident " << before << " -> " << after_frames << " bytes";

  // 2,000 idle connections, kept open while a new worker comes.
  std::vector<int> idle;
  for (int i = 0; i < 2000; ++i) {
    const int fd = raw_tcp_connect(*port);
    if (fd < 0) break;
    idle.push_back(fd);
    if (i % 2 == 1) (void)send_all(fd, zmtp_null_handshake());
  }
  EXPECT_EQ(idle.size(), 2000u);
  zmq::socket_t worker1 = worker_socket();
  const auto start_time = std::chrono::steady_clock::now();
  auto hello = ask(worker1, 1, wire::HELLO, 1, std::chrono::milliseconds(20000));
  ASSERT_TRUE(hello.ok()) << hello.status().to_string();
  EXPECT_EQ(hello->header.kind(), wire::REPLY_OK);
  std::printf("with %zu idle connections a new worker got its HELLO answered in %lld ms\n",
              idle.size(),
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - start_time)
                                         .count()));
  // The job ends: both workers say DONE and the PS exits 0.
  auto done0 = ask(chief, 0, wire::DONE, 200, std::chrono::milliseconds(10000));
  auto done1 = ask(worker1, 1, wire::DONE, 2, std::chrono::milliseconds(10000));
  EXPECT_TRUE(done0.ok() && done1.ok());
  EXPECT_EQ(finish("crowd-ps", ps, seconds(30)), ExitStatus::exited(0));
  for (int fd : idle) ::close(fd);
}

}  // namespace
}  // namespace pstrain
