#include "runtime/job/rendezvous.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <zmq.hpp>

#include "runtime/base/log.h"
#include "runtime/wire/message.h"
#include "runtime/wire/security.h"
#include "runtime/wire/proto/pstrain.pb.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;
using wire::Rendezvous;

constexpr uint32_t kRendezvousVersion = 1;
constexpr int64_t kMaxMessageBytes = 1 << 20;
// A task waits this much longer than the server, so the server's FAILED (which names the
// missing ranks) arrives first.
constexpr std::chrono::milliseconds kTaskGrace{2000};

std::string seconds_text(std::chrono::milliseconds d) {
  const double s = static_cast<double>(d.count()) / 1000.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i == 0 ? "" : ", ") + v[i];
  return s;
}

// Receives one multipart message without blocking; false when none is waiting.
bool recv_parts(zmq::socket_t& sock, std::vector<zmq::message_t>* parts) {
  parts->clear();
  zmq::message_t m;
  if (!sock.recv(m, zmq::recv_flags::dontwait)) return false;
  bool more = m.more();
  parts->push_back(std::move(m));
  while (more) {
    zmq::message_t next;
    if (!sock.recv(next, zmq::recv_flags::none)) break;
    more = next.more();
    parts->push_back(std::move(next));
  }
  return true;
}

// Sends without blocking; a peer that went away is not an error here.
void send_quietly(zmq::socket_t& sock, const zmq::message_t* routing_id, const Rendezvous& m) {
  try {
    if (routing_id != nullptr) {
      zmq::message_t id(routing_id->data(), routing_id->size());
      if (!sock.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return;
    }
    std::string bytes = m.SerializeAsString();
    zmq::message_t body(bytes.data(), bytes.size());
    (void)sock.send(body, zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // EHOSTUNREACH: the task disconnected; it re-sends or times out.
  }
}

std::string random_token() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(rd());
}

}  // namespace

std::string rendezvous_task_name(const RendezvousOptions& o, JobName job, int index) {
  const std::string task = std::string(job_name_string(job)) + " " + std::to_string(index);
  if (!o.ranked) return task;
  const int rank = job == JobName::kPs ? index : o.num_ps + index;
  return "rank " + std::to_string(rank) + " (" + task + ")";
}

// --- Server --------------------------------------------------------------------------------

struct RendezvousServer::Impl {
  struct Slot {
    bool filled = false;
    std::string token;
    std::string host_port;
    zmq::message_t routing_id;
  };
  RendezvousOptions o;
  zmq::context_t ctx{1};
  std::unique_ptr<ZapHandler> zap;  // (declared before the socket: destroyed after it)
  zmq::socket_t sock;
  std::vector<Slot> ps;
  std::vector<Slot> workers;
  bool sent_cluster = false;
  // Lines about malformed or refused messages (anyone who can reach the port can send them).
  LogRateLimiter bad_log{"malformed or refused rendezvous message(s)"};

  int arrived() const {
    int n = 0;
    for (const Slot& s : ps) n += s.filled ? 1 : 0;
    for (const Slot& s : workers) n += s.filled ? 1 : 0;
    return n;
  }
  int expected() const { return o.num_ps + o.num_workers; }
  std::vector<std::string> missing() const {
    std::vector<std::string> out;
    for (size_t i = 0; i < ps.size(); ++i) {
      if (!ps[i].filled) out.push_back(rendezvous_task_name(o, JobName::kPs, static_cast<int>(i)));
    }
    for (size_t i = 0; i < workers.size(); ++i) {
      if (!workers[i].filled) {
        out.push_back(rendezvous_task_name(o, JobName::kWorker, static_cast<int>(i)));
      }
    }
    return out;
  }
  std::string progress() const {
    return std::to_string(arrived()) + " of " + std::to_string(expected()) + " arrived";
  }

  void fail(const zmq::message_t& to, const std::string& error, int* bad) {
    ++*bad;
    if (bad_log.allow()) PSTRAIN_LOG(WARNING) << "rendezvous: refused a registration: " << error;
    Rendezvous r;
    r.set_version(kRendezvousVersion);
    r.set_type(Rendezvous::RENDEZVOUS_FAILED);
    r.set_error(error);
    send_quietly(sock, &to, r);
  }

  Rendezvous cluster_message(bool is_ps, int index) const {
    Rendezvous r;
    r.set_version(kRendezvousVersion);
    r.set_type(Rendezvous::RENDEZVOUS_CLUSTER);
    r.set_num_ps(o.num_ps);
    r.set_num_workers(o.num_workers);
    for (const Slot& s : ps) r.add_ps_hosts(s.host_port);
    for (const Slot& s : workers) r.add_worker_hosts(s.host_port);
    r.set_ps(is_ps);
    r.set_assigned_index(index);
    r.set_arrived(arrived());
    r.set_expected(expected());
    return r;
  }

  void send_cluster_to_all() {
    for (size_t i = 0; i < ps.size(); ++i) {
      send_quietly(sock, &ps[i].routing_id, cluster_message(true, static_cast<int>(i)));
    }
    for (size_t i = 0; i < workers.size(); ++i) {
      send_quietly(sock, &workers[i].routing_id, cluster_message(false, static_cast<int>(i)));
    }
    sent_cluster = true;
  }

  void handle(const zmq::message_t& from, const zmq::message_t& body, int* bad) {
    Rendezvous m;
    if (body.size() > static_cast<size_t>(kMaxMessageBytes) ||
        !parse_quietly(m, body.data(), body.size())) {
      ++*bad;
      if (bad_log.allow()) {
        PSTRAIN_LOG(WARNING) << "rendezvous: dropped " << body.size()
                             << " bytes that are not a rendezvous message";
      }
      return;
    }
    if (m.version() != kRendezvousVersion) {
      return fail(from,
                  "rendezvous protocol version " + std::to_string(m.version()) + ", expected " +
                      std::to_string(kRendezvousVersion) + " (mixed pstrain versions?)",
                  bad);
    }
    if (m.type() != Rendezvous::RENDEZVOUS_REGISTER) {
      ++*bad;
      PSTRAIN_LOG(WARNING) << "rendezvous: dropped a message of type " << m.type()
                           << " (only REGISTER is served)";
      return;
    }
    const std::string who = m.host() + ":" + std::to_string(m.port());
    if (m.num_ps() != o.num_ps || m.num_workers() != o.num_workers) {
      return fail(from,
                  "the task at " + who + " expects " + std::to_string(m.num_ps()) + " ps and " +
                      std::to_string(m.num_workers()) + " workers, the rendezvous " +
                      std::to_string(o.num_ps) + " ps and " + std::to_string(o.num_workers) +
                      " workers: give every task the same --num_ps and the same number of tasks",
                  bad);
    }
    Result<HostPort> hp = parse_host_port(who);
    if (!hp.ok()) return fail(from, "bad address: " + hp.status().message(), bad);
    if (m.token().empty() || m.token().size() > 512) {
      return fail(from, "the task at " + who + " sent no token", bad);
    }
    std::vector<Slot>& slots = m.ps() ? ps : workers;
    const JobName job = m.ps() ? JobName::kPs : JobName::kWorker;
    int index = -1;
    for (size_t i = 0; i < slots.size(); ++i) {
      if (slots[i].filled && slots[i].token == m.token()) index = static_cast<int>(i);
    }
    const bool again = index >= 0;
    if (again && m.index() >= 0 && m.index() != index) {
      return fail(from, "the task at " + who + " changed its index", bad);
    }
    if (!again && m.index() >= 0) {
      if (m.index() >= static_cast<int>(slots.size())) {
        return fail(from,
                    std::string("the task at ") + who + " says it is " + job_name_string(job) +
                        " " + std::to_string(m.index()) + ", but the job has only " +
                        std::to_string(slots.size()) + " " + job_name_string(job) + " tasks",
                    bad);
      }
      const Slot& s = slots[static_cast<size_t>(m.index())];
      if (s.filled) {
        return fail(from,
                    rendezvous_task_name(o, job, m.index()) + " registered twice: by " +
                        s.host_port + " and by " + who +
                        " (two tasks with the same rank: is --num_ps or the task count wrong?)",
                    bad);
      }
      index = m.index();
    }
    if (index < 0) {
      for (size_t i = 0; i < slots.size() && index < 0; ++i) {
        if (!slots[i].filled) index = static_cast<int>(i);
      }
      if (index < 0) {
        return fail(from,
                    std::string("more ") + job_name_string(job) + " tasks registered than the " +
                        std::to_string(slots.size()) + " expected; the task at " + who +
                        " is one too many",
                    bad);
      }
    }
    Slot& slot = slots[static_cast<size_t>(index)];
    slot.routing_id = zmq::message_t(from.data(), from.size());
    if (!again) {
      for (const std::vector<Slot>* list : {&ps, &workers}) {
        for (const Slot& other : *list) {
          if (other.filled && other.host_port == hp->to_string()) {
            return fail(from, "address " + who + " registered twice", bad);
          }
        }
      }
      slot.filled = true;
      slot.token = m.token();
      slot.host_port = hp->to_string();
      PSTRAIN_LOG(INFO) << "rendezvous: " << rendezvous_task_name(o, job, index) << " at " << who
                        << " (" << progress() << ")";
    }
    if (arrived() == expected()) {
      if (sent_cluster) {
        send_quietly(sock, &slot.routing_id, cluster_message(m.ps(), index));
      } else {
        send_cluster_to_all();
      }
      return;
    }
    Rendezvous w;
    w.set_version(kRendezvousVersion);
    w.set_type(Rendezvous::RENDEZVOUS_WAITING);
    w.set_arrived(arrived());
    w.set_expected(expected());
    for (const std::string& s : missing()) w.add_missing(s);
    send_quietly(sock, &slot.routing_id, w);
  }
};

RendezvousServer::RendezvousServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RendezvousServer::~RendezvousServer() = default;

Result<std::unique_ptr<RendezvousServer>> RendezvousServer::create(const RendezvousOptions& o) {
  if (o.num_ps < 1 || o.num_workers < 1) {
    return invalid_argument("a rendezvous needs at least 1 ps and 1 worker, got " +
                            std::to_string(o.num_ps) + " ps and " + std::to_string(o.num_workers) +
                            " workers");
  }
  auto impl = std::make_unique<Impl>();
  impl->o = o;
  SocketOptions so;
  so.max_message_bytes = kMaxMessageBytes;
  so.send_timeout = std::chrono::milliseconds(1000);
  so.router_handover = true;
  if (o.keys) {
    // The ZAP handler first: a CURVE server without one would admit anyone who knows the
    // server's public key.
    PSTRAIN_ASSIGN_OR_RETURN(impl->zap, ZapHandler::start(impl->ctx, o.keys->client_public));
    so.curve = o.keys.get();
  }
  PSTRAIN_ASSIGN_OR_RETURN(
      impl->sock, bind_socket(impl->ctx, zmq::socket_type::router, o.address.host, o.address.port,
                              "rendezvous", so));
  impl->ps.resize(static_cast<size_t>(o.num_ps));
  impl->workers.resize(static_cast<size_t>(o.num_workers));
  return std::unique_ptr<RendezvousServer>(new RendezvousServer(std::move(impl)));
}

Status RendezvousServer::serve() {
  Impl& s = *impl_;
  const auto start = Clock::now();
  const auto deadline = start + s.o.deadline;
  auto next_log = start + s.o.log_every;
  PSTRAIN_LOG(INFO) << "rendezvous: serving at " << s.o.address.to_string() << " for " << s.o.num_ps
                    << " ps and " << s.o.num_workers << " workers (deadline "
                    << seconds_text(s.o.deadline) << ")"
                    << (s.o.keys ? "; CURVE-encrypted, only tasks holding the job's secret get in"
                                 : "");
  std::vector<zmq::message_t> parts;
  while (true) {
    if (s.sent_cluster) {
      // Give the replies time to leave before the socket closes.
      s.sock.set(zmq::sockopt::linger, 5000);
      PSTRAIN_LOG(INFO) << "rendezvous: all " << s.expected() << " tasks arrived";
      return {};
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      const std::string error = "rendezvous at " + s.o.address.to_string() + ": deadline of " +
                                seconds_text(s.o.deadline) + " passed with " + s.progress() +
                                "; missing: " + join(s.missing());
      Rendezvous f;
      f.set_version(kRendezvousVersion);
      f.set_type(Rendezvous::RENDEZVOUS_FAILED);
      f.set_error(error);
      f.set_arrived(s.arrived());
      f.set_expected(s.expected());
      for (const std::string& m : s.missing()) f.add_missing(m);
      for (const std::vector<Impl::Slot>* list : {&s.ps, &s.workers}) {
        for (const Impl::Slot& slot : *list) {
          if (slot.filled) send_quietly(s.sock, &slot.routing_id, f);
        }
      }
      s.sock.set(zmq::sockopt::linger, 2000);
      return deadline_exceeded(error);
    }
    if (now >= next_log) {
      const std::vector<std::string> missing = s.missing();
      PSTRAIN_LOG(INFO) << "rendezvous: waiting for " << join(missing) << ": " << s.progress();
      next_log += s.o.log_every;
    }
    const auto until = std::min(deadline, next_log);
    const auto wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(until - now),
                                 std::chrono::milliseconds(1), std::chrono::milliseconds(500));
    std::vector<zmq::pollitem_t> items = {{s.sock.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, wait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      return unavailable(std::string("rendezvous: poll failed: ") + e.what());
    }
    s.bad_log.flush();
    if ((items[0].revents & ZMQ_POLLIN) == 0) continue;
    while (recv_parts(s.sock, &parts)) {
      if (parts.size() != 2) {
        ++bad_messages_;
        if (s.bad_log.allow()) {
          PSTRAIN_LOG(WARNING) << "rendezvous: dropped a message of " << parts.size()
                               << " frames (expected 1 after the routing id)";
        }
        continue;
      }
      s.handle(parts[0], parts[1], &bad_messages_);
    }
  }
}

// --- Task ----------------------------------------------------------------------------------

Result<RendezvousResult> rendezvous_register(const RendezvousOptions& o, JobName job, int index,
                                             const HostPort& me) {
  const std::string where = "rendezvous at " + o.address.to_string();
  zmq::context_t ctx(1);
  SocketOptions so;
  so.max_message_bytes = kMaxMessageBytes;
  so.send_timeout = std::chrono::milliseconds(1000);
  so.curve = o.keys.get();
  PSTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<HandshakeMonitor> monitor,
                           HandshakeMonitor::create(ctx));
  so.monitor_endpoint = monitor->endpoint();
  PSTRAIN_ASSIGN_OR_RETURN(zmq::socket_t sock,
                           connect_socket(ctx, zmq::socket_type::dealer, o.address.host,
                                          o.address.port, "rendezvous", so));
  Rendezvous reg;
  reg.set_version(kRendezvousVersion);
  reg.set_type(Rendezvous::RENDEZVOUS_REGISTER);
  reg.set_num_ps(o.num_ps);
  reg.set_num_workers(o.num_workers);
  reg.set_ps(job == JobName::kPs);
  reg.set_index(index);
  reg.set_host(me.host);
  reg.set_port(me.port);
  reg.set_token(random_token());
  const std::string me_name =
      index >= 0 ? rendezvous_task_name(o, job, index) : std::string("a ") + job_name_string(job);
  PSTRAIN_LOG(INFO) << where << ": registering " << me_name << " at " << me.to_string();

  const auto start = Clock::now();
  const auto deadline = start + o.deadline + kTaskGrace;
  auto next_send = start;
  auto next_log = start + o.log_every;
  std::optional<Rendezvous> last;  // the last WAITING
  int bad = 0;
  std::vector<zmq::message_t> parts;
  while (true) {
    const auto now = Clock::now();
    if (now >= deadline) {
      if (!last) {
        return deadline_exceeded("no answer from the " + where + " within " +
                                 seconds_text(o.deadline) +
                                 ": is rank 0 (or the DMLC scheduler) running and reachable "
                                 "there? (--rendezvous host:port sets the address)");
      }
      std::vector<std::string> missing(last->missing().begin(), last->missing().end());
      return deadline_exceeded(where + ": deadline of " + seconds_text(o.deadline) +
                               " passed with " + std::to_string(last->arrived()) + " of " +
                               std::to_string(last->expected()) +
                               " arrived; missing: " + join(missing));
    }
    if (now >= next_send) {
      send_quietly(sock, nullptr, reg);
      next_send = now + o.resend_every;
    }
    if (now >= next_log) {
      if (last) {
        std::vector<std::string> missing(last->missing().begin(), last->missing().end());
        PSTRAIN_LOG(INFO) << where << ": waiting for " << join(missing) << ": " << last->arrived()
                          << " of " << last->expected() << " arrived";
      } else {
        PSTRAIN_LOG(INFO) << where << ": no answer yet (rank 0 or the DMLC scheduler serves it)";
      }
      next_log += o.log_every;
    }
    monitor->poll();
    // (The rendezvous may be gone soon after the job's tasks arrived: one closed handshake is
    // all a task without the secret may see of it.)
    if (auto why = monitor->refusal(o.keys != nullptr, o.keys ? o.keys->secret_file : "",
                                    "the " + where, /*closes_before_refusal=*/1)) {
      return invalid_argument(*why);
    }
    const auto until = std::min({deadline, next_log, next_send});
    const auto wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(until - now),
                                 std::chrono::milliseconds(1), std::chrono::milliseconds(500));
    std::vector<zmq::pollitem_t> items = {{sock.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, wait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      return unavailable(where + ": poll failed: " + e.what());
    }
    if ((items[0].revents & ZMQ_POLLIN) == 0) continue;
    while (recv_parts(sock, &parts)) {
      Rendezvous m;
      if (parts.size() != 1 || parts[0].size() > static_cast<size_t>(kMaxMessageBytes) ||
          !parse_quietly(m, parts[0].data(), parts[0].size()) ||
          m.version() != kRendezvousVersion) {
        if (bad++ == 0) PSTRAIN_LOG(WARNING) << where << ": dropped a malformed answer";
        continue;
      }
      if (m.type() == Rendezvous::RENDEZVOUS_WAITING) {
        last = m;
      } else if (m.type() == Rendezvous::RENDEZVOUS_FAILED) {
        if (m.missing_size() > 0) return deadline_exceeded(m.error());
        return invalid_argument(where + " refused " + me_name + ": " + m.error());
      } else if (m.type() == Rendezvous::RENDEZVOUS_CLUSTER) {
        RendezvousResult r;
        r.job = m.ps() ? JobName::kPs : JobName::kWorker;
        r.task_index = m.assigned_index();
        const auto check_list = [&](const auto& list, int expected, const char* what,
                                    std::vector<HostPort>* out) -> Status {
          if (list.size() != expected) {
            return invalid_argument(where + " sent " + std::to_string(list.size()) + " " + what +
                                    " addresses, expected " + std::to_string(expected));
          }
          for (const std::string& s : list) {
            Result<HostPort> hp = parse_host_port(s);
            if (!hp.ok())
              return invalid_argument(where + " sent a bad address: " + hp.status().message());
            out->push_back(*hp);
          }
          return {};
        };
        PSTRAIN_RETURN_IF_ERROR(check_list(m.ps_hosts(), o.num_ps, "ps", &r.cluster.ps));
        PSTRAIN_RETURN_IF_ERROR(
            check_list(m.worker_hosts(), o.num_workers, "worker", &r.cluster.workers));
        const auto& mine = r.job == JobName::kPs ? r.cluster.ps : r.cluster.workers;
        if (r.job != job || r.task_index < 0 || r.task_index >= static_cast<int>(mine.size()) ||
            (index >= 0 && r.task_index != index) ||
            !(mine[static_cast<size_t>(r.task_index)] == me)) {
          return invalid_argument(where + " sent a cluster that does not place this task (" +
                                  me_name + " at " + me.to_string() + ") where it registered");
        }
        return r;
      } else if (bad++ == 0) {
        PSTRAIN_LOG(WARNING) << where << ": dropped an answer of unknown type";
      }
    }
  }
}

// --- PortReservation -----------------------------------------------------------------------

Result<PortReservation> PortReservation::bind(const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return unavailable(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(is_loopback_host(host) ? INADDR_LOOPBACK : INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    return unavailable("cannot bind a port for this worker on " + host + ": " + err);
  }
  return PortReservation(fd, ntohs(addr.sin_port));
}

PortReservation::~PortReservation() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace pstrain
