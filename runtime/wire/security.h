// The job secret and what is derived from it: CURVE key pairs, the job id, the ZAP handler that
// admits only the job's clients, and the watch on a socket's handshakes (docs/security.md).
//
// Contract
// - A job secret is a file of at least kMinSecretBytes bytes (random: `head -c 32 /dev/urandom`)
//   that only its owner may read: read_secret_file() refuses a missing, unreadable, short, or
//   group/other-accessible file with kInvalidArgument naming the file and the fix. The secret
//   itself never travels on a command line or in the environment; only its path does
//   (--secret_file or PSTRAIN_SECRET_FILE).
// - derive_job_keys() is deterministic: the same secret gives the same keys and job id on
//   every machine; different secrets give different ones. The secret is hashed (BLAKE2b) into a
//   master key, and libsodium's KDF derives one seed per use (server key pair, client key pair,
//   job id) with distinct subkey ids; crypto_box_seed_keypair turns a seed into a CURVE key
//   pair. Keys are raw 32-byte strings.
// - ZapHandler answers ZeroMQ's ZAP requests (inproc://zeromq.zap.01) of one context on its
//   own thread: only a CURVE client whose public key is the job's client key is admitted;
//   every other attempt is refused and counted. It must be started before the socket it
//   guards is bound, and at most one runs per context.
// - HandshakeMonitor reads a socket's handshake events (zmq_socket_monitor); pass endpoint()
//   as SocketOptions::monitor_endpoint so it watches from before the bind or connect.
//   refusal() turns a client's failed handshakes into a message that says what to fix. On a
//   bound socket it also keeps a table of the open connections (accepted, not yet
//   disconnected, by file descriptor) for a cap on their number: note_message() records the
//   connection a message came from (InMessage::source_fd); evict_over(cap) shuts down
//   connections until at most `cap` are open, never one marked as a worker's: first those
//   that never delivered a message (unauthenticated, or idle since they connected), oldest
//   first, then those that did but speak for no worker, the least recently heard first. A
//   connection is shut down (shutdown(2); ZeroMQ then closes it as if the peer had) only
//   after checking its descriptor still names the same peer, so a descriptor closed and
//   reused since the last event is never touched.
// Thread-safety: the free functions are reentrant. ZapHandler's counters may be read from any
// thread (atomics; the last refused address under a mutex). A HandshakeMonitor is used by one
// thread at a time, like the socket it watches.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include <zmq.hpp>

#include "runtime/base/status.h"

namespace pstrain {

inline constexpr size_t kMinSecretBytes = 32;
// The environment variable that names the secret file (never holds the secret).
inline constexpr const char* kSecretFileEnv = "PSTRAIN_SECRET_FILE";
// How to make a secret file, for messages.
std::string secret_file_recipe(const std::string& path);

struct JobKeys {
  std::string server_public = std::string();  // 32 bytes each
  std::string server_secret = std::string();
  std::string client_public = std::string();
  std::string client_secret = std::string();
  uint64_t job_id = 0;  // never 0
  std::string secret_file =
      std::string();  // where the secret came from (for messages); may be empty
};

// True when this libzmq supports CURVE (zmq_has("curve")).
bool curve_available();
// Reads and checks a secret file (see the contract).
Result<std::string> read_secret_file(const std::string& path);
// Fails (kInvalidArgument) only for a secret shorter than kMinSecretBytes.
Result<JobKeys> derive_job_keys(std::string_view secret);
// read_secret_file + derive_job_keys; also fails when this libzmq has no CURVE.
Result<JobKeys> load_job_keys(const std::string& path);
// Writes kMinSecretBytes fresh random bytes to `path` with mode 0600; fails if it exists.
Status write_secret_file(const std::string& path);

class ZapHandler {
 public:
  static Result<std::unique_ptr<ZapHandler>> start(zmq::context_t& ctx,
                                                   std::string allowed_client_public);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  uint64_t admitted() const { return admitted_.load(); }
  uint64_t refused() const { return refused_.load(); }
  // The address of the last refused client ("" when none).
  std::string last_refused() const;

 private:
  ZapHandler(zmq::socket_t socket, std::string allowed);
  void loop();

  zmq::socket_t socket_;  // used by the thread only once it runs
  std::string allowed_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> admitted_{0};
  std::atomic<uint64_t> refused_{0};
  mutable std::mutex mu_;
  std::string last_refused_;  // guarded by mu_
  std::thread thread_;
};

class HandshakeMonitor {
 public:
  static Result<std::unique_ptr<HandshakeMonitor>> create(zmq::context_t& ctx);
  const std::string& endpoint() const { return endpoint_; }
  // Reads the events that arrived (never blocks).
  void poll();

  // The connection table (bound sockets; see the contract). Call poll() first.
  size_t connections() const { return connections_.size(); }
  // A message arrived on connection `fd` (-1: unknown, ignored); `worker`: it was accepted as
  // a message of one of the job's workers, so the connection is never evicted. A connection
  // not in the table yet (its ACCEPTED event still unread) is looked up again after poll().
  void note_message(int fd, bool worker);
  // Shuts connections down until at most `cap` are open; returns how many it shut down.
  int evict_over(size_t cap);
  uint64_t evicted() const { return evicted_; }

  uint64_t succeeded() const { return succeeded_; }
  // Handshakes that failed, for any reason (a peer with another or no key, or garbage).
  uint64_t failed() const { return failed_; }
  // A client's view: nullopt while nothing says the peer refused us; otherwise why, with what
  // to do. `have_secret`: this side uses CURVE; `peer` names the server in the message. A
  // CURVE server may close a plain client's connection before the client reads the mechanism
  // in its greeting: without a secret, `closes_before_refusal` handshakes closed (and none
  // completed) count as a refusal too (1 for a short-lived server such as the rendezvous).
  std::optional<std::string> refusal(bool have_secret, const std::string& secret_file,
                                     const std::string& peer, int closes_before_refusal = 3) const;

 private:
  explicit HandshakeMonitor(zmq::socket_t pair, std::string endpoint)
      : pair_(std::move(pair)), endpoint_(std::move(endpoint)) {}

  zmq::socket_t pair_;
  std::string endpoint_;
  uint64_t succeeded_ = 0;
  uint64_t failed_ = 0;
  uint64_t mechanism_mismatch_ = 0;
  uint64_t auth_refused_ = 0;
  int closed_in_handshake_ = 0;  // since the last success
  struct Connection {
    std::string peer;         // getpeername() when accepted ("" if it failed)
    uint64_t accepted = 0;    // order of acceptance
    uint64_t last_heard = 0;  // order of the last message (0: none yet)
    bool worker = false;
  };
  std::unordered_map<int, Connection> connections_;
  uint64_t clock_ = 0;  // orders acceptances and messages
  uint64_t evicted_ = 0;
};

}  // namespace pstrain
