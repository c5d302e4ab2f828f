#include "runtime/wire/security.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace pstrain {
namespace {

constexpr size_t kMaxSecretBytes = size_t{1} << 20;
// libsodium's KDF: 8-character context, one subkey id per use.
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "pstrain1";
constexpr uint64_t kServerKeyId = 1;
constexpr uint64_t kClientKeyId = 2;
constexpr uint64_t kJobIdKeyId = 3;

std::string mode_string(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

bool sodium_ready() { return sodium_init() >= 0; }

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// "address:port" of a connected socket's peer; "" when it has none or is not an IP socket.
std::string peer_of(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    if (::inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text)) == nullptr) return "";
    return std::string(text) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text)) == nullptr) return "";
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "";
}

std::atomic<uint64_t> g_monitor_serial{0};

}  // namespace

std::string secret_file_recipe(const std::string& path) {
  return "make one with `head -c 32 /dev/urandom > " + path + "; chmod 600 " + path +
         "` and give every task of the job the same file";
}

bool curve_available() { return zmq_has("curve") != 0; }

Result<std::string> read_secret_file(const std::string& path) {
  if (path.empty()) return invalid_argument("--secret_file is empty: give the job's secret file");
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) {
    return invalid_argument("cannot read the secret file " + path + ": " + std::strerror(errno) +
                            "; " + secret_file_recipe(path));
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return invalid_argument("the secret file " + path + " is not a regular file; " +
                            secret_file_recipe(path));
  }
  if ((st.st_mode & 077) != 0) {
    return invalid_argument("the secret file " + path + " may be read by group or others (mode " +
                            mode_string(st.st_mode) + "): make it private with `chmod 600 " + path +
                            "`");
  }
  std::string secret;
  char buf[4096];
  while (secret.size() <= kMaxSecretBytes) {
    const ssize_t n = ::read(f.fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return invalid_argument("cannot read the secret file " + path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    secret.append(buf, static_cast<size_t>(n));
  }
  if (secret.size() > kMaxSecretBytes) {
    return invalid_argument("the secret file " + path + " is larger than 1 MiB: is it the right " +
                            "file? " + secret_file_recipe(path));
  }
  if (secret.size() < kMinSecretBytes) {
    const std::string size = std::to_string(secret.size());
    sodium_memzero(secret.data(), secret.size());
    return invalid_argument(
        "the secret file " + path + " holds " + size + " bytes; a job secret needs at least " +
        std::to_string(kMinSecretBytes) + " random bytes: " + secret_file_recipe(path));
  }
  return secret;
}

Result<JobKeys> derive_job_keys(std::string_view secret) {
  if (secret.size() < kMinSecretBytes) {
    return invalid_argument("a job secret needs at least " + std::to_string(kMinSecretBytes) +
                            " bytes, got " + std::to_string(secret.size()));
  }
  if (!sodium_ready()) return internal_error("libsodium failed to initialise");
  unsigned char master[crypto_kdf_KEYBYTES];
  static_assert(crypto_kdf_KEYBYTES >= crypto_generichash_BYTES_MIN &&
                crypto_kdf_KEYBYTES <= crypto_generichash_BYTES_MAX);
  crypto_generichash(master, sizeof(master), reinterpret_cast<const unsigned char*>(secret.data()),
                     secret.size(), nullptr, 0);
  JobKeys keys;
  auto pair = [&](uint64_t id, std::string& pub, std::string& sec) {
    unsigned char seed[crypto_box_SEEDBYTES];
    unsigned char pk[crypto_box_PUBLICKEYBYTES];
    unsigned char sk[crypto_box_SECRETKEYBYTES];
    crypto_kdf_derive_from_key(seed, sizeof(seed), id, kKdfContext, master);
    crypto_box_seed_keypair(pk, sk, seed);
    pub.assign(reinterpret_cast<const char*>(pk), sizeof(pk));
    sec.assign(reinterpret_cast<const char*>(sk), sizeof(sk));
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(sk, sizeof(sk));
  };
  pair(kServerKeyId, keys.server_public, keys.server_secret);
  pair(kClientKeyId, keys.client_public, keys.client_secret);
  unsigned char id_bytes[crypto_kdf_BYTES_MIN];
  crypto_kdf_derive_from_key(id_bytes, sizeof(id_bytes), kJobIdKeyId, kKdfContext, master);
  for (size_t i = 0; i < 8; ++i) keys.job_id |= static_cast<uint64_t>(id_bytes[i]) << (8 * i);
  if (keys.job_id == 0) keys.job_id = 1;
  sodium_memzero(master, sizeof(master));
  return keys;
}

Result<JobKeys> load_job_keys(const std::string& path) {
  if (!curve_available()) {
    return invalid_argument("--secret_file " + path +
                            " asks for CURVE encryption, but this libzmq was built without it "
                            "(zmq_has(\"curve\") is false): install Debian's libzmq5");
  }
  PSTRAIN_ASSIGN_OR_RETURN(std::string secret, read_secret_file(path));
  auto keys = derive_job_keys(secret);
  sodium_memzero(secret.data(), secret.size());
  if (keys.ok()) keys->secret_file = path;
  return keys;
}

Status write_secret_file(const std::string& path) {
  if (!sodium_ready()) return internal_error("libsodium failed to initialise");
  Fd f;
  f.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (f.fd < 0) {
    return unavailable("cannot create the secret file " + path + ": " + std::strerror(errno));
  }
  unsigned char buf[kMinSecretBytes];
  randombytes_buf(buf, sizeof(buf));
  size_t done = 0;
  while (done < sizeof(buf)) {
    const ssize_t n = ::write(f.fd, buf + done, sizeof(buf) - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      sodium_memzero(buf, sizeof(buf));
      return unavailable("cannot write the secret file " + path + ": " + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  sodium_memzero(buf, sizeof(buf));
  if (::fchmod(f.fd, 0600) != 0) {
    return unavailable("cannot make the secret file " + path + " private: " + std::strerror(errno));
  }
  return {};
}

// --- ZapHandler ------------------------------------------------------------------------------

Result<std::unique_ptr<ZapHandler>> ZapHandler::start(zmq::context_t& ctx,
                                                      std::string allowed_client_public) {
  try {
    zmq::socket_t s(ctx, zmq::socket_type::rep);
    s.set(zmq::sockopt::linger, 0);
    try {
      s.bind("inproc://zeromq.zap.01");
    } catch (const zmq::error_t& e) {
      if (e.num() == EADDRINUSE) {
        return failed_precondition(
            "a ZAP handler already runs in this ZeroMQ context (one secured parameter server "
            "per context)");
      }
      throw;
    }
    std::unique_ptr<ZapHandler> h(new ZapHandler(std::move(s), std::move(allowed_client_public)));
    h->thread_ = std::thread([p = h.get()] { p->loop(); });
    return h;
  } catch (const zmq::error_t& e) {
    return unavailable(std::string("cannot start the ZAP handler: ") + e.what());
  }
}

ZapHandler::ZapHandler(zmq::socket_t socket, std::string allowed)
    : socket_(std::move(socket)), allowed_(std::move(allowed)) {}

ZapHandler::~ZapHandler() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::string ZapHandler::last_refused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_refused_;
}

void ZapHandler::loop() {
  // ZAP 1.0 (RFC 27): request = version, request id, domain, address, identity, mechanism,
  // credentials...; reply = version, request id, status code, status text, user id, metadata.
  while (!stop_.load()) {
    zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      while (true) {
        zmq::message_t m;
        if (!socket_.recv(m, zmq::recv_flags::dontwait)) break;
        const bool more = m.more();
        frames.push_back(std::move(m));
        if (!more || frames.size() > 16) break;
      }
      if (frames.size() < 2) continue;  // nothing a reply could go to
      const std::string version = frames.size() > 0 ? frames[0].to_string() : "";
      const std::string address = frames.size() > 3 ? frames[3].to_string() : "";
      const std::string mechanism = frames.size() > 5 ? frames[5].to_string() : "";
      const bool ok = version == "1.0" && mechanism == "CURVE" && frames.size() >= 7 &&
                      frames[6].to_string_view() == allowed_;
      if (ok) {
        admitted_.fetch_add(1);
      } else {
        refused_.fetch_add(1);
        std::lock_guard<std::mutex> lock(mu_);
        last_refused_ = address;
      }
      std::vector<std::string> reply = {"1.0",
                                        frames[1].to_string(),
                                        ok ? "200" : "400",
                                        ok ? "OK" : "not a client of this job",
                                        ok ? "worker" : "",
                                        ""};
      for (size_t i = 0; i < reply.size(); ++i) {
        socket_.send(zmq::buffer(reply[i]),
                     i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      // A failed reply leaves the REP socket needing a receive; nothing else to do.
    }
  }
  socket_.close();
}

// --- HandshakeMonitor ----------------------------------------------------------------------

Result<std::unique_ptr<HandshakeMonitor>> HandshakeMonitor::create(zmq::context_t& ctx) {
  const std::string endpoint = "inproc://pstrain-handshake-" + std::to_string(::getpid()) + "-" +
                               std::to_string(g_monitor_serial.fetch_add(1));
  try {
    zmq::socket_t pair(ctx, zmq::socket_type::pair);
    pair.set(zmq::sockopt::linger, 0);
    // inproc allows connecting before the bind, so no event is lost.
    pair.connect(endpoint);
    return std::unique_ptr<HandshakeMonitor>(new HandshakeMonitor(std::move(pair), endpoint));
  } catch (const zmq::error_t& e) {
    return unavailable(std::string("cannot create a socket monitor: ") + e.what());
  }
}

void HandshakeMonitor::poll() {
  while (true) {
    zmq::message_t event;
    try {
      if (!pair_.recv(event, zmq::recv_flags::dontwait)) return;
      zmq::message_t address;
      if (event.more()) (void)pair_.recv(address, zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      return;
    }
    if (event.size() < 6) continue;
    uint16_t id = 0;
    uint32_t value = 0;
    std::memcpy(&id, event.data(), sizeof(id));
    std::memcpy(&value, static_cast<const char*>(event.data()) + 2, sizeof(value));
    switch (id) {
      case ZMQ_EVENT_ACCEPTED: {
        Connection& c = connections_[static_cast<int>(value)];
        c = Connection{};
        c.peer = peer_of(static_cast<int>(value));
        c.accepted = ++clock_;
        break;
      }
      case ZMQ_EVENT_DISCONNECTED:
      case ZMQ_EVENT_CLOSED:
        connections_.erase(static_cast<int>(value));
        break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        ++succeeded_;
        closed_in_handshake_ = 0;
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        ++failed_;
        ++auth_refused_;
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        ++failed_;
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
          ++mechanism_mismatch_;
        } else {
          ++closed_in_handshake_;
        }
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        ++failed_;
        ++closed_in_handshake_;
        break;
      default:
        break;
    }
  }
}

void HandshakeMonitor::note_message(int fd, bool worker) {
  if (fd < 0) return;
  auto it = connections_.find(fd);
  if (it == connections_.end()) {
    poll();  // the first message of a new connection may overtake its ACCEPTED event
    it = connections_.find(fd);
    if (it == connections_.end()) return;
  }
  it->second.last_heard = ++clock_;
  if (worker) it->second.worker = true;
}

int HandshakeMonitor::evict_over(size_t cap) {
  if (connections_.size() <= cap) return 0;
  // Candidates, the first to go first: never heard from (by acceptance), then heard from but
  // no worker's (by the last message).
  std::vector<std::pair<std::pair<int, uint64_t>, int>> order;
  order.reserve(connections_.size());
  for (const auto& [fd, c] : connections_) {
    if (c.worker) continue;
    order.push_back(c.last_heard == 0 ? std::make_pair(std::make_pair(0, c.accepted), fd)
                                      : std::make_pair(std::make_pair(1, c.last_heard), fd));
  }
  std::sort(order.begin(), order.end());
  int shut = 0;
  for (const auto& [key, fd] : order) {
    if (connections_.size() <= cap) break;
    auto it = connections_.find(fd);
    // The descriptor may have been closed and reused since its events were read: shut it
    // down only while it still names the peer that was accepted.
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && peer_of(fd) == it->second.peer) {
      if (::shutdown(fd, SHUT_RDWR) == 0) {
        ++shut;
        ++evicted_;
      }
    }
    connections_.erase(it);
  }
  return shut;
}

std::optional<std::string> HandshakeMonitor::refusal(bool have_secret,
                                                     const std::string& secret_file,
                                                     const std::string& peer,
                                                     int closes_before_refusal) const {
  if (mechanism_mismatch_ > 0) {
    if (!have_secret) {
      return peer +
             " requires the job's secret (its connections are CURVE-encrypted) and this "
             "task has none: give it the job's secret file with --secret_file FILE or "
             "PSTRAIN_SECRET_FILE=FILE";
    }
    return peer + " does not use a job secret but this task does (--secret_file " + secret_file +
           "): give every task of the job the same secret file, or none";
  }
  if (have_secret && auth_refused_ > 0) {
    return peer + " refused this task's key: the secret file " + secret_file +
           " differs from the job's (every task needs the same file, byte for byte)";
  }
  // A CURVE server may close a plain client's connection before the client has read the
  // greeting that names the mechanism (the client then sees only closed handshakes).
  if (!have_secret && succeeded_ == 0 && closed_in_handshake_ >= closes_before_refusal) {
    return peer + " closed every handshake (" + std::to_string(closed_in_handshake_) +
           " tries): it most likely requires the job's secret (its connections are "
           "CURVE-encrypted) and this task has none: give it the job's secret file with "
           "--secret_file FILE or PSTRAIN_SECRET_FILE=FILE (or the address is not a pstrain "
           "task's)";
  }
  // A wrong secret gives another server key: the PS cannot open our handshake and closes the
  // connection. (A PS without a secret may close it too before its greeting says so.)
  if (have_secret && succeeded_ == 0 && closed_in_handshake_ >= 3) {
    return peer + " refused this task's key: the secret file " + secret_file +
           " differs from the job's, or the PS does not use a job secret (every task needs the "
           "same file, byte for byte, or none)";
  }
  return std::nullopt;
}

}  // namespace pstrain
