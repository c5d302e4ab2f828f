// ZeroMQ transport helpers: endpoints from "host" + port, sockets with pstrain's options, free
// ports for tests and the launcher.
//
// Contract: hosts and ports come from the cluster spec (input), so every failure is a Status
// whose message names the address and what to do. Hosts may be names, IPv4 literals or IPv6
// literals (with or without brackets). A server binds 127.0.0.1 (or [::1]) when its host is a
// loopback address and all interfaces otherwise (as TensorFlow servers do); IPv6 literals turn
// on ZMQ_IPV6. Every socket gets ZMQ_LINGER 0 (closing never blocks on unsent data), no
// high-water mark by default (requests and replies are few but tensors are large: a limit
// would make ROUTER drop replies), and a send timeout, so no send blocks forever.
//
// Thread-safety: the functions are reentrant; zmq::context_t is thread-safe, a socket is not
// (use each from one thread at a time). With SocketOptions::curve, connections are CURVE-
// authenticated and encrypted.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "runtime/base/status.h"
#include "runtime/wire/security.h"

namespace pstrain {

// ZeroMQ I/O threads of a parameter server's and a worker's context: a connection's kernel
// copies run on the I/O thread it was given, so the connections of a striped push and of a
// reply in parts over them (ps/client.h) need more than one to move bytes on two cores at
// once (bench/ps_bench.cc measures with the same number).
inline constexpr int kIoThreads = 2;

// True for "localhost", 127.0.0.0/8 and ::1 (brackets allowed).
bool is_loopback_host(const std::string& host);
// True for an IPv6 literal such as "fe80::1" or "[::1]".
bool is_ipv6_literal(const std::string& host);

// Where a server for host:port listens: the loopback address itself for loopback hosts
// ("tcp://127.0.0.1:P" for localhost, "tcp://127.0.0.5:P", "tcp://[::1]:P"), "tcp://*:P"
// (all interfaces) otherwise. Port 0 means "any free port" (read it back with bound_port).
std::string bind_endpoint(const std::string& host, int port);
// Where a client connects: "tcp://host:P", IPv6 literals in brackets.
std::string connect_endpoint(const std::string& host, int port);

// How a worker reaches a parameter server (--transport). kTcp: over TCP to host:port. kIpc:
// over the PS's local endpoint (a Unix socket; the PS must be on this machine, in this
// network namespace). kShm: the messages' headers over that Unix socket, the tensors through
// a shared-memory segment (runtime/wire/shm.h). kAuto: kShm when the PS's host is this
// machine (is_this_machine()), kTcp otherwise.
enum class Transport { kAuto, kTcp, kIpc, kShm };
// "auto", "tcp", "ipc", "shm"; anything else is kInvalidArgument naming the choices.
Result<Transport> parse_transport(std::string_view value);
const char* transport_name(Transport t);

// Where a PS that listens on host:port also listens for tasks on its own machine: a Unix
// socket in Linux's abstract namespace, "ipc://@pstrain/<host>:<port>" (the host lower-cased,
// without brackets, "localhost" as 127.0.0.1; a host too long for a socket name is replaced
// by its FNV-1a hash). Such a socket has no file: nothing is left behind when the process
// ends, however it ends. Like a TCP port, the name belongs to the network namespace.
std::string local_endpoint(const std::string& host, int port);
// Whether a PS at `host` runs on this machine: a loopback name or address, or one that
// resolves to an address on one of this machine's interfaces (getifaddrs). A name that does
// not resolve is not.
bool is_this_machine(const std::string& host);

struct SocketOptions {
  // Connect side: kIpc and kShm connect to local_endpoint(host, port) instead of tcp://host:port
  // (kAuto is resolved by the caller; connect_socket treats it as kTcp). Bind side: unused.
  Transport transport = Transport::kTcp;
  int send_hwm = 0;  // messages; 0 = no limit
  int recv_hwm = 0;
  std::chrono::milliseconds send_timeout{60000};  // ZMQ_SNDTIMEO; -1 = block
  // ZMQ_MAXMSGSIZE: a peer that sends a larger frame is disconnected before the frame is
  // allocated, so no message can make a process allocate more than this (-1: no limit).
  // pstrain's frames are chunks of at most a few MB.
  int64_t max_message_bytes = int64_t{1} << 30;
  // ZMQ_HANDSHAKE_IVL: a connection that has not completed the ZMTP (and CURVE) handshake
  // within this is closed; 0: libzmq's default (30 s).
  std::chrono::milliseconds handshake_ivl{0};
  std::chrono::milliseconds reconnect_ivl{100};       // connect side: first retry after this
  std::chrono::milliseconds reconnect_ivl_max{2000};  // ... backing off up to this
  // Connect side: the routing id a ROUTER peer sees (non-empty, must not start with a zero
  // byte; unique among the ROUTER's peers). Empty: ZeroMQ picks one.
  std::string routing_id;
  // Bind side, ROUTER only: sending to a routing id that is not connected is an error
  // (EHOSTUNREACH -> kUnavailable) instead of a silent drop.
  bool router_mandatory = true;
  // Bind side, ROUTER only: a peer that reconnects with a routing id already in use (e.g. a
  // restarted worker) takes it over instead of being refused.
  bool router_handover = true;
  // CURVE (runtime/wire/security.h; not owned, must outlive the call): a bound socket becomes
  // a CURVE server with the job's server key (start the context's ZapHandler first); a
  // connecting one a CURVE client presenting the job's client key to that server key.
  // nullptr: no encryption, as before.
  const JobKeys* curve = nullptr;
  // When set, zmq_socket_monitor() reports this socket's handshake events to this inproc
  // endpoint from before the bind or connect (HandshakeMonitor::endpoint()).
  std::string monitor_endpoint = std::string();
};

// Creates a socket of `type` bound to bind_endpoint(host, port). `what` names the socket in
// errors (e.g. "ps/0 service"). EADDRINUSE gives kUnavailable naming host:port, `what` and how
// to find the holder; other failures kInvalidArgument (bad address) or kUnavailable.
Result<zmq::socket_t> bind_socket(zmq::context_t& ctx, zmq::socket_type type,
                                  const std::string& host, int port, const std::string& what,
                                  const SocketOptions& options = {});

// "ipc" for a Unix socket, "tcp" for a TCP one, "" when `fd` (a connection's ZMQ_SRCFD; may be
// closed by now) is neither.
std::string connection_transport(int fd);

// Binds `socket` (bound already to host:port by bind_socket) also to local_endpoint(host,
// port). A name in use (another process in this network namespace holds it) is kUnavailable
// naming it and what to do.
Status bind_local_endpoint(zmq::socket_t& socket, const std::string& host, int port,
                           const std::string& what);

// Creates a socket of `type` (normally DEALER) connected to connect_endpoint(host, port).
// ZeroMQ connects in the background and reconnects after failures, so a server that is not up
// yet is not an error; messages sent meanwhile wait in the queue. Errors: kInvalidArgument for
// an empty host, a port outside 1..65535 or a host ZeroMQ cannot parse.
Result<zmq::socket_t> connect_socket(zmq::context_t& ctx, zmq::socket_type type,
                                     const std::string& host, int port, const std::string& what,
                                     const SocketOptions& options = {});

// Whether `host` (a task's own address in the cluster spec) can be this machine: loopback
// names and addresses and the wildcards ("*", "0.0.0.0", "::") are; an IP literal must be on
// one of this machine's interfaces (getifaddrs); a name must resolve (getaddrinfo). Errors
// (kInvalidArgument, naming the address and what to do): an unresolvable name, an address on
// no local interface. A name that resolves only to addresses of other machines is allowed
// (a Kubernetes Service's virtual IP, for one, is on no interface) but `warning`, when given,
// is set to a line saying so; otherwise it is cleared. `what` names the task ("ps 0").
Status check_own_address(const std::string& host, const std::string& what,
                         std::string* warning = nullptr);

// The TCP port a bound socket listens on (useful after binding port 0).
Result<int> bound_port(zmq::socket_t& socket);

// A TCP port that was free on 127.0.0.1 a moment ago: a random one below the kernel's
// ephemeral range (so outgoing connections, which take ephemeral ports, cannot grab it),
// or the kernel's pick if none of those is free. RACE: another process may still bind the
// port before the caller does; prefer binding port 0 and bound_port() where the code that
// binds can report the port itself.
Result<int> pick_free_tcp_port();
// `n` distinct ports, picked while all are held (same race once they are released).
Result<std::vector<int>> pick_free_tcp_ports(int n);

}  // namespace pstrain
