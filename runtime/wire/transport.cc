#include "runtime/wire/transport.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <utility>
#include <vector>

#include "runtime/base/hash.h"

namespace pstrain {

namespace {

// "[::1]" -> "::1"; anything else unchanged.
std::string strip_brackets(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// "host:port", IPv6 literals in brackets. (Built with append(): GCC 12 reports a false
// -Wrestrict for "[" + std::string(...).)
std::string host_port(const std::string& host, int port) {
  std::string out;
  if (is_ipv6_literal(host)) {
    out.append("[").append(strip_brackets(host)).append("]");
  } else {
    out.append(host);
  }
  out.append(":").append(std::to_string(port));
  return out;
}

// Closes a file descriptor when it goes out of scope.
struct FdCloser {
  int fd = -1;
  FdCloser() = default;
  explicit FdCloser(int f) : fd(f) {}
  FdCloser(FdCloser&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  FdCloser& operator=(FdCloser&&) = delete;
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

void apply_common_options(zmq::socket_t& s, const SocketOptions& o) {
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::sndhwm, o.send_hwm);
  s.set(zmq::sockopt::rcvhwm, o.recv_hwm);
  s.set(zmq::sockopt::sndtimeo, static_cast<int>(o.send_timeout.count()));
  s.set(zmq::sockopt::maxmsgsize, o.max_message_bytes);
  if (o.handshake_ivl.count() > 0) {
    s.set(zmq::sockopt::handshake_ivl, static_cast<int>(o.handshake_ivl.count()));
  }
  if (!o.monitor_endpoint.empty()) {
    const int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                       ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED;
    if (zmq_socket_monitor(s.handle(), o.monitor_endpoint.c_str(), events) != 0) {
      throw zmq::error_t();
    }
  }
}

// Keys are 32 raw bytes (checked by derive_job_keys).
void set_key(zmq::socket_t& s, int option, const std::string& key) {
  if (zmq_setsockopt(s.handle(), option, key.data(), key.size()) != 0) throw zmq::error_t();
}

void apply_curve_server(zmq::socket_t& s, const SocketOptions& o) {
  if (o.curve == nullptr) return;
  s.set(zmq::sockopt::curve_server, true);
  set_key(s, ZMQ_CURVE_SECRETKEY, o.curve->server_secret);
  s.set(zmq::sockopt::zap_domain, "pstrain");
}

void apply_curve_client(zmq::socket_t& s, const SocketOptions& o) {
  if (o.curve == nullptr) return;
  set_key(s, ZMQ_CURVE_SERVERKEY, o.curve->server_public);
  set_key(s, ZMQ_CURVE_PUBLICKEY, o.curve->client_public);
  set_key(s, ZMQ_CURVE_SECRETKEY, o.curve->client_secret);
}

}  // namespace

bool is_ipv6_literal(const std::string& host) {
  return host.find(':') != std::string::npos;  // host names and IPv4 never contain ':'
}

bool is_loopback_host(const std::string& host) {
  const std::string h = strip_brackets(host);
  if (lower(h) == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

namespace {

// Address bytes of a sockaddr (4 for IPv4, 16 for IPv6; empty otherwise).
std::string address_bytes(const sockaddr* sa) {
  if (sa == nullptr) return {};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return std::string(reinterpret_cast<const char*>(&in->sin_addr), sizeof(in->sin_addr));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    return std::string(reinterpret_cast<const char*>(&in6->sin6_addr), sizeof(in6->sin6_addr));
  }
  return {};
}

}  // namespace

Status check_own_address(const std::string& host, const std::string& what, std::string* warning) {
  if (warning != nullptr) warning->clear();
  const std::string h = strip_brackets(host);
  if (h.empty()) return invalid_argument(what + " has an empty host in the cluster spec");
  if (is_loopback_host(h) || h == "*" || h == "0.0.0.0" || h == "::") return {};
  in_addr v4{};
  in6_addr v6{};
  const bool literal =
      ::inet_pton(AF_INET, h.c_str(), &v4) == 1 || ::inet_pton(AF_INET6, h.c_str(), &v6) == 1;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = literal ? AI_NUMERICHOST : 0;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(h.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    return invalid_argument(what + "'s own host '" + host + "' does not resolve (" +
                            ::gai_strerror(rc) +
                            "): fix this task's entry in the cluster spec (--ps_hosts / "
                            "--worker_hosts or the scheduler's host list)");
  }
  std::vector<std::string> resolved;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    std::string bytes = address_bytes(a->ai_addr);
    if (!bytes.empty()) resolved.push_back(std::move(bytes));
  }
  ::freeaddrinfo(found);
  ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) != 0) return {};  // cannot tell: let the bind decide
  bool local = false;
  for (const ifaddrs* i = ifs; i != nullptr && !local; i = i->ifa_next) {
    const std::string bytes = address_bytes(i->ifa_addr);
    if (bytes.empty()) continue;
    local = std::find(resolved.begin(), resolved.end(), bytes) != resolved.end();
  }
  ::freeifaddrs(ifs);
  for (const std::string& r : resolved) {
    // 127.0.1.1 and the like (Debian's own host name) are loopback, hence local.
    if (r.size() == 4 && static_cast<unsigned char>(r[0]) == 127) local = true;
  }
  if (local) return {};
  if (literal) {
    return invalid_argument(what + "'s own address " + host +
                            " is on none of this machine's network interfaces: this task "
                            "runs on another machine than the cluster spec says; fix its entry "
                            "(--ps_hosts / --worker_hosts or the scheduler's host list)");
  }
  if (warning != nullptr) {
    *warning = what + "'s own host '" + host +
               "' resolves to no address of this machine's interfaces (fine behind a "
               "Kubernetes Service or NAT; otherwise the cluster spec names another machine)";
  }
  return {};
}

std::string bind_endpoint(const std::string& host, int port) {
  const std::string p = std::to_string(port);
  if (is_loopback_host(host)) {
    const std::string h = strip_brackets(host);
    if (lower(h) == "localhost") return "tcp://127.0.0.1:" + p;
    return "tcp://" + host_port(h, port);
  }
  return "tcp://*:" + p;
}

std::string connect_endpoint(const std::string& host, int port) {
  return "tcp://" + host_port(host, port);
}

Result<Transport> parse_transport(std::string_view value) {
  if (value == "auto") return Transport::kAuto;
  if (value == "tcp") return Transport::kTcp;
  if (value == "ipc") return Transport::kIpc;
  if (value == "shm") return Transport::kShm;
  return invalid_argument("--transport=" + std::string(value) +
                          " is not a choice: give auto (shared memory to a parameter server on "
                          "this machine, TCP to others), tcp, ipc or shm");
}

const char* transport_name(Transport t) {
  switch (t) {
    case Transport::kAuto:
      return "auto";
    case Transport::kTcp:
      return "tcp";
    case Transport::kIpc:
      return "ipc";
    case Transport::kShm:
      return "shm";
  }
  return "?";
}

std::string local_endpoint(const std::string& host, int port) {
  std::string h = lower(strip_brackets(host));
  if (h == "localhost") h = "127.0.0.1";
  // A socket name holds 107 bytes; "@pstrain/" and ":65535" take 15 of them.
  if (h.size() > 64) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(Fnv1a().add(h).value()));
    h = std::string("h-") + hex;
  }
  return "ipc://@pstrain/" + h + ":" + std::to_string(port);
}

bool is_this_machine(const std::string& host) {
  const std::string h = strip_brackets(host);
  if (h.empty()) return false;
  if (is_loopback_host(h)) return true;
  // check_own_address() accepts a name that resolves elsewhere (with a warning), so it cannot
  // be asked; the same resolution, and only an address on an interface here counts.
  std::string warning;
  return check_own_address(h, "the parameter server", &warning).ok() && warning.empty() &&
         h != "*" && h != "0.0.0.0" && h != "::";
}

std::string connection_transport(int fd) {
  if (fd < 0) return "";
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  if (addr.ss_family == AF_UNIX) return "ipc";
  if (addr.ss_family == AF_INET || addr.ss_family == AF_INET6) return "tcp";
  return "";
}

Status bind_local_endpoint(zmq::socket_t& socket, const std::string& host, int port,
                           const std::string& what) {
  const std::string endpoint = local_endpoint(host, port);
  try {
    socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    if (e.num() == EADDRINUSE) {
      return unavailable("the local endpoint " + endpoint + " of " + what +
                         " is already in use: another process on this machine holds that "
                         "name (`ss -xlp | grep pstrain` shows which); stop it or choose "
                         "another port");
    }
    return unavailable("cannot listen on " + endpoint + " (" + what + "): " + e.what());
  }
  return {};
}

Result<zmq::socket_t> bind_socket(zmq::context_t& ctx, zmq::socket_type type,
                                  const std::string& host, int port, const std::string& what,
                                  const SocketOptions& options) {
  const std::string addr = host_port(host, port);
  if (host.empty() || port < 0 || port > 65535) {
    return invalid_argument("cannot listen on '" + addr + "' (" + what +
                            "): need a host name or address and a port in 0..65535");
  }
  const std::string endpoint = bind_endpoint(host, port);
  try {
    zmq::socket_t s(ctx, type);
    apply_common_options(s, options);
    if (is_ipv6_literal(host)) s.set(zmq::sockopt::ipv6, true);
    if (type == zmq::socket_type::router) {
      s.set(zmq::sockopt::router_mandatory, options.router_mandatory);
      s.set(zmq::sockopt::router_handover, options.router_handover);
    }
    apply_curve_server(s, options);
    try {
      s.bind(endpoint);
    } catch (const zmq::error_t& e) {
      const std::string p = std::to_string(port);
      if (e.num() == EADDRINUSE) {
        return unavailable("address " + addr + " (" + what +
                           ") is already in use: another process holds the port — an earlier "
                           "pstrain task may still be running (check with `ss -ltnp 'sport = :" +
                           p + "'`), or choose another port");
      }
      if (e.num() == EINVAL) {
        return invalid_argument("cannot listen on " + addr + " (" + what + ", endpoint " +
                                endpoint + "): " + e.what() + ": check the host and port");
      }
      if (e.num() == EADDRNOTAVAIL || e.num() == ENODEV) {
        return unavailable("cannot listen on " + addr + " (" + what + ", endpoint " + endpoint +
                           "): " + e.what() + ": the address does not belong to this machine");
      }
      if (e.num() == EACCES) {
        return unavailable("cannot listen on " + addr + " (" + what + "): " + e.what() +
                           ": ports below 1024 need privileges; choose a port above 1024");
      }
      return unavailable("cannot listen on " + addr + " (" + what + ", endpoint " + endpoint +
                         "): " + e.what());
    }
    return s;
  } catch (const zmq::error_t& e) {
    if (e.num() == ETERM) {
      return cancelled("cannot listen on " + addr + " (" + what + "): ZeroMQ is shutting down");
    }
    return unavailable("cannot create a socket for " + addr + " (" + what + "): " + e.what());
  }
}

Result<zmq::socket_t> connect_socket(zmq::context_t& ctx, zmq::socket_type type,
                                     const std::string& host, int port, const std::string& what,
                                     const SocketOptions& options) {
  const std::string addr = host_port(host, port);
  if (host.empty() || port < 1 || port > 65535) {
    return invalid_argument("cannot connect to '" + addr + "' (" + what +
                            "): need a host name or address and a port in 1..65535");
  }
  if (!options.routing_id.empty() && options.routing_id.front() == '\0') {
    return invalid_argument("routing id for " + what +
                            " must not start with a zero byte (ZeroMQ reserves those)");
  }
  const bool local = options.transport == Transport::kIpc || options.transport == Transport::kShm;
  const std::string endpoint = local ? local_endpoint(host, port) : connect_endpoint(host, port);
  try {
    zmq::socket_t s(ctx, type);
    apply_common_options(s, options);
    s.set(zmq::sockopt::reconnect_ivl, static_cast<int>(options.reconnect_ivl.count()));
    s.set(zmq::sockopt::reconnect_ivl_max, static_cast<int>(options.reconnect_ivl_max.count()));
    if (is_ipv6_literal(host)) s.set(zmq::sockopt::ipv6, true);
    if (!options.routing_id.empty()) s.set(zmq::sockopt::routing_id, options.routing_id);
    apply_curve_client(s, options);
    try {
      s.connect(endpoint);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) throw;
      return invalid_argument("cannot connect to " + addr + " (" + what + ", endpoint " + endpoint +
                              "): " + e.what() +
                              ": check the host name and port in the cluster spec");
    }
    return s;
  } catch (const zmq::error_t& e) {
    if (e.num() == ETERM) {
      return cancelled("cannot connect to " + addr + " (" + what + "): ZeroMQ is shutting down");
    }
    return unavailable("cannot create a socket for " + addr + " (" + what + "): " + e.what());
  }
}

Result<int> bound_port(zmq::socket_t& socket) {
  std::string endpoint;
  try {
    endpoint = socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return failed_precondition(std::string("cannot read the socket's endpoint: ") + e.what());
  }
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon + 1 >= endpoint.size()) {
    return failed_precondition("the socket is not bound to a TCP port (endpoint '" + endpoint +
                               "')");
  }
  int port = 0;
  for (size_t i = colon + 1; i < endpoint.size(); ++i) {
    const char c = endpoint[i];
    if (c < '0' || c > '9' || port > 65535) {
      return failed_precondition("the socket is not bound to a TCP port (endpoint '" + endpoint +
                                 "')");
    }
    port = port * 10 + (c - '0');
  }
  return port;
}

namespace {

// The first port of the kernel's ephemeral range (outgoing connections draw their local ports
// from it); 32768 when it cannot be read.
int ephemeral_low() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0, high = 0;
  if (in >> low >> high && low > 2048 && low <= 65535) return low;
  return 32768;
}

// Binds `fd` to 127.0.0.1:port; true on success.
bool bind_loopback(int fd, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

Result<std::vector<int>> pick_free_tcp_ports(int n) {
  if (n < 0) return invalid_argument("pick_free_tcp_ports: n must be >= 0");
  // Ports below the ephemeral range, so that no outgoing connection of this machine takes a
  // picked port before its server binds it; the kernel's choice (port 0) if none is free.
  const int high = ephemeral_low() - 1;
  const int low = std::max(1024, high / 2);
  std::mt19937 gen(std::random_device{}());
  std::uniform_int_distribution<int> pick(low, high);
  std::vector<FdCloser> held;  // all held until the end, so the ports are distinct
  std::vector<int> ports;
  for (int i = 0; i < n; ++i) {
    FdCloser fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.fd < 0) {
      return unavailable(std::string("cannot create a TCP socket to find a free port: ") +
                         std::strerror(errno));
    }
    bool bound = false;
    for (int attempt = 0; attempt < 64 && !bound; ++attempt)
      bound = bind_loopback(fd.fd, pick(gen));
    if (!bound && !bind_loopback(fd.fd, 0)) {
      return unavailable(std::string("cannot bind 127.0.0.1:0 to find a free port: ") +
                         std::strerror(errno));
    }
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    if (::getsockname(fd.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return unavailable(std::string("cannot read back a free port: ") + std::strerror(errno));
    }
    ports.push_back(ntohs(addr.sin_port));
    held.push_back(std::move(fd));
  }
  return ports;
}

Result<int> pick_free_tcp_port() {
  PSTRAIN_ASSIGN_OR_RETURN(std::vector<int> ports, pick_free_tcp_ports(1));
  return ports.front();
}

}  // namespace pstrain
