// ParameterServer: one PS task's event loop over a ZeroMQ ROUTER socket.
//
// Contract
// - Serves HELLO, INIT, PULL, PUSH, HEARTBEAT, DONE and STATUS (runtime/wire/proto/pstrain.proto)
//   from any number of workers on one thread: no thread per request or per worker (the
//   update of a large chunk, and the copy of a large reply into a worker's shared memory,
//   run in pieces on kernels/optim.h's update threads). A PULL
//   that must wait (variables not initialised yet, or sync training's next step not reached)
//   is parked and answered when the event happens, or with REPLY_NOT_READY after
//   `long_poll` so the worker can re-ask; nothing waits on a fixed sleep.
// - Bounded staleness (async, TrainingConfig.staleness = s > 0): a worker's PULL is parked
//   while it has pushed more than s gradients more than the slowest worker still training
//   (neither done nor lost), so no worker runs more than s steps ahead of the slowest.
// - INIT carries the whole training config (ps/training_config.h): the PS applies exactly its
//   optimizer and hyper-parameters, aggregation and train_steps, refuses an invalid one with a
//   REPLY_ERROR naming the problem, and keeps it (training_config()).
// - Messages of another job id or protocol version are ignored and counted; malformed ones
//   are logged, counted and dropped. Nothing a peer sends can abort the process.
// - Workers are watched by their messages (heartbeats included): one silent for longer than
//   `heartbeat_timeout` (or never seen within `startup_timeout`) is lost. In sync mode the
//   number of gradients that completes a step drops to the workers still alive, so a dead
//   worker does not stall training. If the chief is lost before it initialised the
//   variables, waiting and later PULLs get an error instead of waiting forever.
// - Checkpoints (docs/checkpoints.md): with a checkpoint_dir, the server looks there at start
//   for its shard of the newest complete checkpoint (ps/checkpoint_io.h) and serves it at once
//   (values, optimizer slots, step, and the training config saved with it), so a PS restarted
//   alone rejoins its running job; HELLO replies say "not initialised" until the chief's INIT
//   confirms it, so the chief of a job started again sends INIT, whose config (train_steps,
//   learning rate, ...) then applies; the chief's initial values are ignored. A checkpoint
//   whose model, layout, PS count or optimizer differs from a HELLO's or INIT's is refused
//   with a REPLY_ERROR saying what differs, and serve() returns that invalid-argument error
//   (the task exits 2). SAVE (min_step S) writes this PS's shard
//   on serve()'s thread between two updates: at once when the step is already >= S (or a
//   shard at a step >= S was already written: its record is sent again), else once an update
//   brings the step to S (the reply then says "scheduled": ask again). Without a
//   checkpoint_dir, SAVE gets an error.
// - Listens on host:port over TCP and, for workers on the same machine, on
//   local_endpoint(host, port) (a Unix socket in the abstract namespace: no file to leave
//   behind; runtime/wire/transport.h); both carry the same protocol, keys and bounds. A
//   local name in use makes create() fail naming it.
// - Security (docs/security.md): with ServerOptions::keys the socket is a CURVE server and a
//   ZAP handler thread (runtime/wire/security.h) admits only clients holding the job's client
//   key; every refused handshake is counted (PsStats.unauthenticated, Prometheus
//   messages_rejected_total{reason="unauthenticated"}) and logged at most every 10 s with the
//   count. A gradient holding NaN or Inf is refused and counted (PsStats.non_finite_gradients,
//   gradients_dropped_total{reason="non_finite"}); in sync mode the step goes on with the
//   others; a worker whose gradients keep being non-finite is named in the log.
// - A connection speaks for one worker: the first message on it that names a worker binds it
//   to that index, and a later message on it that claims another index is refused
//   (REPLY_ERROR, counted as malformed), so heartbeats, pushes and DONE count only from
//   connections of the worker they name. The binding table is bounded (the oldest bindings
//   are forgotten first).
// - A worker index belongs to one client process: the first session (PsClient's routing ids
//   "pstrain/<worker>/<random>/r|h" share one; any other routing id is a session alone) that
//   names it. Another connection claiming it while the owner is live (not lost, and a probe
//   send to one of its connections does not fail with EHOSTUNREACH) is refused with a
//   REPLY_ERROR starting with kWorkerIndexInUse (ps/client.h), counted; a worker that was lost
//   or whose connections all closed (restarted) is taken over by the new one.
// - A PUSH in parts (Header.more_parts; --overlap and striping, docs/protocol.md) is gathered
//   per worker from the connections of its session, in any order: a last part that announces
//   parts sent over other connections (Header.parts_elsewhere) is held until they are in
//   (one per worker; a newer PUSH replaces it), a part missing from its own connection is an
//   error at once ("push parts missing"). Frames may be ranges of a chunk (FrameInfo.offset):
//   they are put in chunk and offset order and must tile every chunk exactly once; the PUSH is
//   then applied as one, to the same bits as unsplit.
// - A PULL (or the pull half of a PUSH) with Header.reply_part_bytes is answered in up to
//   kMaxReplyParts (ps/client.h) REPLY_PARAMS messages (ranges of the chunks in order, the
//   last one with parts_before), unless the reply goes into the worker's shared memory. An
//   asynchronous PUSH's pull half answered at once sends each part as soon as the update has
//   made it (ShardStore::UpdateProgress), the last one once the update and its step are done.
//   A striped PUSH with Header.reply_lanes has the parts of its pull half (answered at once or
//   parked) go over the request's connection and its stripes' in turn (numbered: part_index),
//   the last on the request's; a part that could not be queued marks the last one parts_lost.
// - INIT only from worker 0 and only once (a later one with the same layout is answered OK and
//   changes nothing; a restored PS takes the chief's INIT once to confirm it); DONE only from
//   the process owning the index it names.
// - Resource bounds (docs/security.md "Resource bounds"): kPsSendHwm messages queued per
//   connection (further replies dropped at once and counted; no send waits), at most
//   kMaxParkedPullsPerWorker parked PULLs per worker, frames capped (ZMQ_MAXMSGSIZE) at
//   kPsMaxFrameBytesBeforeInit and, for connections made after INIT, at twice the largest
//   chunk + 1 MiB, handshakes closed after kPsHandshakeTimeout, at most max_connections
//   connections open (HandshakeMonitor::evict_over: those never heard from go first, then
//   the least recently heard; a connection that carried a worker's accepted message never).
// - Log lines about refused or malformed messages are rate-limited (20 per 10 s, then one line
//   with the number held back); the counters count every one.
// - serve() returns once every worker is done or lost: a success when at least one said DONE
//   (training reached its end) and every lost one had been seen (they are listed in
//   ServerSummary::workers_lost and logged as a warning); an error naming them when every
//   worker was lost or one never came (startup_timeout: likely a wrong host list); or after
//   request_stop().
// Thread-safety: serve() runs on one thread (the ZAP handler's thread shares only its own
// atomics and mutex-guarded state with it); request_stop() may be called from any thread or
// a signal handler (it only sets an atomic flag).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "checkpoint/checkpoint.h"
#include "ps/ps_metrics.h"
#include "ps/shard_store.h"
#include "ps/training_config.h"
#include "runtime/base/log.h"
#include "runtime/base/status.h"
#include "runtime/wire/message.h"
#include "runtime/wire/security.h"
#include "runtime/wire/shm.h"

namespace pstrain {

// Resource bounds of a PS socket (docs/security.md, "Resource bounds").
// Messages queued for sending per connection: a peer that does not read its replies has the
// next ones dropped (counted) instead of growing the PS.
inline constexpr int kPsSendHwm = 16;
// A frame's declared size before INIT (the variables' chunk sizes are known only then): a
// peer that declares a larger frame is disconnected before the frame is allocated.
inline constexpr int64_t kPsMaxFrameBytesBeforeInit = int64_t{256} << 20;
// PULLs parked per worker (a worker has one outstanding; more are answered NOT_READY, oldest
// first).
inline constexpr int kMaxParkedPullsPerWorker = 4;
// A connection that has not completed its ZMTP/CURVE handshake by then is closed.
inline constexpr std::chrono::milliseconds kPsHandshakeTimeout{5000};

struct ServerOptions {
  int ps_index = 0;
  int num_ps = 1;  // parameter servers in the cluster (names checkpoint shards)
  int num_workers = 1;
  std::string host = "localhost";  // bind address (see runtime/wire/transport.h)
  int port = 0;                    // 0: any free port (read it back with port())
  uint64_t job_id = 0;
  std::chrono::milliseconds heartbeat_timeout{30000};
  std::chrono::milliseconds startup_timeout{600000};
  std::chrono::milliseconds long_poll{2000};
  PsMetrics* metrics = nullptr;  // published to when set (not owned; outlives serve())
  std::string checkpoint_dir = std::string();  // empty: no restore, SAVE refused
  int keep_checkpoint_max = 5;                 // own shards kept in checkpoint_dir (0: all)
  // The job's keys (runtime/wire/security.h): CURVE + ZAP when set; nullptr: plain TCP.
  std::shared_ptr<const JobKeys> keys = nullptr;
  // Cap on open connections (docs/security.md "Resource bounds"); over it the PS closes
  // those never heard from first, then the least recently heard, never a worker's. 0: the
  // open-files limit (RLIMIT_NOFILE) less kPsReservedFds. At least 2 per worker plus 8.
  int max_connections = 0;
};
// File descriptors a PS keeps free of connections for its own files (checkpoints, logs).
inline constexpr int kPsReservedFds = 128;

// A PS's ROUTER socket, bound, with what guards it when the job has a secret: the context's
// ZAP handler (started before the bind) and the handshake monitor.
struct PsSocket {
  std::unique_ptr<ZapHandler> zap = nullptr;  // (declared first: destroyed after the socket)
  std::unique_ptr<HandshakeMonitor> monitor = nullptr;
  zmq::socket_t socket = zmq::socket_t();
  int port = 0;
};
// Binds host:port (0: any free port) for PS `ps_index`; with `keys`, as a CURVE server behind
// a ZAP handler in `ctx` (at most one per context). A port in use is an error that names it.
Result<PsSocket> bind_ps_socket(zmq::context_t& ctx, const std::string& host, int port,
                                int ps_index, const JobKeys* keys);

struct ServerSummary {
  int64_t final_step = 0;
  int workers_done = 0;
  std::vector<int> workers_lost;
  wire::PsStats stats;
};

class ParameterServer {
 public:
  // Binds the socket; a port in use is an error that names it.
  static Result<std::unique_ptr<ParameterServer>> create(zmq::context_t& ctx,
                                                         ServerOptions options);
  // The same on a ROUTER socket bound already by bind_socket (options.host and options.port
  // are not used; `port` is the socket's): rank-based schedulers bind before the cluster is
  // known (ps/ps_task.h, PsListener).
  static Result<std::unique_ptr<ParameterServer>> create(zmq::socket_t bound, int port,
                                                         ServerOptions options);
  // The same on a socket from bind_ps_socket (with its ZAP handler and monitor, if any).
  static Result<std::unique_ptr<ParameterServer>> create(PsSocket bound, ServerOptions options);
  ~ParameterServer();

  int port() const { return port_; }
  Result<ServerSummary> serve();
  void request_stop() { stop_.store(true); }
  // The counters and state as a STATUS reply carries them (serve()'s thread only).
  wire::PsStats stats() const;
  // After serve() returned (or on its thread): writes this PS's shard of its current state
  // into checkpoint_dir when it has one and holds initialised variables (a stop by a signal:
  // ps/ps_task.h). Returns the file written, or nullopt when there was nothing to do.
  Result<std::optional<checkpoint::ShardFileInfo>> save_on_stop();
  // The training config the chief sent in INIT (checked by JobTrainingConfig::from_wire);
  // empty until then. serve()'s thread only, or after serve() returned.
  const std::optional<JobTrainingConfig>& training_config() const { return config_; }

 private:
  // Binds the socket also to local_endpoint(host, port) (runtime/wire/transport.h) for
  // workers on this machine; a name in use is an error.
  Status bind_local();
  using Clock = std::chrono::steady_clock;
  struct WorkerState {
    bool seen = false;
    bool done = false;
    bool lost = false;
    int64_t pushes = 0;      // gradients received from this worker: its clock for --staleness
    int64_t non_finite = 0;  // its gradients refused for NaN or Inf
    int64_t non_finite_streak = 0;  // ... in a row
    Clock::time_point last_seen;
    // Who speaks for it: the owning client's session (empty: none yet), the routing ids of
    // that session's connections (the last 8: requests, heartbeats, the stripes of a large
    // PUSH), and the last probe of them.
    std::string session;
    std::vector<std::string> connections;
    Clock::time_point last_probe{};
    bool owner_alive = true;
    // The parts received so far of its PUSH in parts (Header.more_parts), on the connections
    // of `session` for that step; `frames` counts their frames (chunks, or ranges of one).
    // `last`: the part that completes the PUSH, held while parts it announces as sent over the
    // session's other connections (Header.parts_elsewhere) are still on their way.
    // `finite[k]`: every value of parts[k] is inline and finite (16-bit ones once widened),
    // checked when it came (while the next parts were on their way), so the update does not
    // check it again.
    struct PartialPush {
      std::string session;
      int64_t step = 0;
      std::vector<InMessage> parts;
      std::vector<bool> finite;
      size_t frames = 0;
      std::optional<InMessage> last;
      bool last_finite = false;  // (as `finite`, for `last`: checked while it waited)
    } partial;
  };
  // Where a reply's frames go in a worker's shared-memory segment (segment null: inline).
  struct ShmReply {
    std::shared_ptr<ShmSegment> segment;
    uint64_t offset = 0;
    uint64_t size = 0;
    // The region already holds the store's current values, packed: the update that produced
    // them wrote them there (ShardStore::WriteThrough), so the reply names them in place.
    bool written = false;
  };
  struct ParkedPull {
    zmq::message_t routing_id;
    uint64_t request_id = 0;
    int worker = 0;
    int64_t min_step = 0;
    Clock::time_point expires;
    ShmReply shm;
    std::optional<bool> pushed;  // the pull half of a PUSH: whether its gradient was accepted
    uint64_t part_bytes = 0;     // the request's reply_part_bytes
    // The pull half of a striped PUSH with reply_lanes: its stripes' connections, which the
    // reply's parts may go on too (reply_lanes_).
    std::vector<zmq::message_t> lanes;
  };

  ParameterServer(ServerOptions options, zmq::socket_t socket, int port);
  // Reads the handshake monitor; logs refused connections (at most every 10 s).
  void watch_handshakes();
  void handle(InMessage& msg);
  // Binds worker `sender` to msg's connection when it has no live owner (see the contract);
  // otherwise refuses msg (REPLY_ERROR, counted) and returns false.
  bool claim_worker(const InMessage& msg, int sender);
  // False once ZeroMQ reports `connection` (a routing id) gone: a probe send fails.
  bool connection_alive(const std::string& connection);
  void on_init(InMessage& msg);
  // A PULL, or the pull half of a PUSH with then_pull (`pushed`: whether its gradient was
  // accepted, which the reply carries).
  // `shm`: the reply's region when the caller looked it up already (a PUSH's pull half).
  void on_pull(InMessage& msg, std::optional<bool> pushed = std::nullopt,
               const ShmReply* shm = nullptr, std::span<const zmq::message_t> lanes = {});
  // `checked_finite`: msg's values were found finite (inline) while it waited for its parts
  // (all_values_finite), so the store does not check them again.
  void on_push(InMessage& msg, bool checked_finite = false);
  // A PUSH with more_parts: kept (bounded: no more chunks than this PS holds) until the last
  // part comes.
  void on_push_part(InMessage& msg);
  void on_save(InMessage& msg);
  // INIT to a PS that restored a checkpoint at start: checks it matches, takes its config.
  void adopt_init(InMessage& msg);
  // Writes the shard now; records the result (or the error) for SAVE replies.
  void save_now();
  // Writes a scheduled shard once the step reached it.
  void save_if_due();
  void fill_save_reply(OutMessage& out) const;
  void reply(const InMessage& to, wire::Kind kind, OutMessage out = {});
  // Sends `out` to `routing_id`: a full queue drops it (counted); failures are logged
  // (rate-limited) naming `what`.
  // Whether it was queued.
  bool send_to(const zmq::message_t& routing_id, OutMessage out, const char* what, int worker);
  // After INIT: new connections may send frames of at most twice the largest chunk + 1 MiB.
  void tighten_frame_cap();
  void reply_error(const InMessage& to, const std::string& error);
  // REPLY_PARAMS, whole or (part_bytes > 0, not in shared memory) in parts of about part_bytes,
  // at most kMaxReplyParts.
  // `lanes`: further connections of the worker's the parts may go on (Header.reply_lanes).
  void answer_pull(const zmq::message_t& routing_id, uint64_t request_id, int worker,
                   const ShmReply& shm, std::optional<bool> pushed, uint64_t part_bytes,
                   std::span<const zmq::message_t> lanes = {});
  // A REPLY_PARAMS in parts: `parts` messages over `total` values, `sent` of them sent, the
  // next one starting at element `offset` of chunk `chunk`; part k but the last goes on
  // connection k mod (1 + lanes) (0: the request's, i: lanes[i - 1]), numbered when lanes are
  // given; `lost`: one of them could not be queued.
  struct PartsReply {
    uint64_t total = 0;
    uint64_t parts = 1;
    uint64_t sent = 0;
    size_t chunk = 0;
    uint64_t offset = 0;
    std::span<const zmq::message_t> lanes;
    bool lost = false;
  };
  // The parts for reply_part_bytes `part_bytes` (0: one).
  PartsReply plan_parts(uint64_t part_bytes) const;
  // Sends the parts of `r` not sent yet whose values lie within the first `through` (final
  // ones); the last part only once through covers every value, as `*last` when given (a
  // REPLY_PARAMS made for it) or a fresh reply.
  void send_parts(const zmq::message_t& routing_id, uint64_t request_id, int worker,
                  std::optional<bool> pushed, PartsReply& r, uint64_t through, OutMessage* last);
  // REPLY_NOT_READY (with `accepted` for the pull half of a PUSH).
  void answer_not_ready(const zmq::message_t& routing_id, uint64_t request_id, int worker,
                        std::optional<bool> pushed);
  // --transport=shm: the segment msg's header names, mapped once per segment (kept for the
  // newest few; those of processes that are gone are dropped); only for a peer on a Unix
  // socket whose credentials give the segment's pid. Errors name why.
  Result<std::shared_ptr<ShmSegment>> shm_segment_of(const InMessage& msg);
  // The reply region a PULL names, when its segment maps and the region lies inside it.
  ShmReply shm_reply_of(const InMessage& msg);
  void answer_parked(bool expire_all_due);
  // True when a PULL of `worker` asking for `min_step` can be answered now.
  bool pull_ready(int worker, int64_t min_step) const;
  void check_workers();
  void update_replicas();
  OutMessage make_reply(wire::Kind kind, uint64_t request_id) const;
  // Publishes the counters to options_.metrics when 100 ms passed since the last time (or
  // `now_anyway`).
  void publish_metrics(bool now_anyway);

  ServerOptions options_;
  // Declared before socket_ so they are destroyed after it.
  std::unique_ptr<ZapHandler> zap_;
  std::unique_ptr<HandshakeMonitor> monitor_;
  size_t max_connections_ = 0;           // from options_.max_connections (see there)
  uint64_t unauthenticated_ = 0;         // refused handshakes (from monitor_)
  uint64_t identity_refused_ = 0;        // messages of a second connection for a live worker
  uint64_t replies_dropped_ = 0;         // sends refused by a full queue (kPsSendHwm)
  uint64_t unauthenticated_logged_ = 0;  // ... as of the last log line
  Clock::time_point last_auth_log_{};
  // Lines about refused or malformed messages: at most 20 per 10 s; the rest are summed up.
  LogRateLimiter rejection_log_{"refused or malformed message(s)"};
  zmq::socket_t socket_;
  int port_;
  std::string local_endpoint_;  // "" until bind_local() bound one
  std::atomic<bool> stop_{false};
  ShardStore store_;
  std::optional<JobTrainingConfig> config_;  // set by a successful INIT, with store_
  int configured_replicas_ = 1;
  int staleness_ = 0;        // async: a worker may be at most this many pushes ahead (0: off)
  bool chief_lost_ = false;  // worker 0 lost before INIT: every PULL is answered with an error
  std::vector<WorkerState> workers_;
  // Connection (routing id) -> the worker index it speaks for; insertion order for eviction.
  std::unordered_map<std::string, int> connection_owner_;
  // Chunk key -> index in store_, for PUSHes in parts (built at the first one).
  std::unordered_map<std::string, size_t> chunk_slot_;
  // The stripes' connections of the PUSH being answered, when it asked for reply_lanes.
  std::vector<zmq::message_t> reply_lanes_;
  std::deque<std::string> connection_order_;
  std::vector<ParkedPull> parked_;
  ProtocolCounters counters_;
  // Workers' shared-memory segments this PS has mapped (newest last), and the resolver that
  // recv_message() uses for frames in them.
  std::deque<std::shared_ptr<ShmSegment>> shm_segments_;
  ShmResolver shm_resolver_;
  Clock::time_point started_;
  // Checkpoints.
  std::optional<checkpoint::ShardData> restore_from_;  // found at start; used by INIT
  std::string restore_file_;
  int64_t restored_step_ = -1;
  bool awaiting_init_ = false;      // serving a restored checkpoint; the chief's INIT not seen
  std::optional<int64_t> save_at_;  // a scheduled SAVE's step
  uint64_t incarnation_ = 0;        // Header.ps_incarnation of every reply
  std::optional<checkpoint::ShardFileInfo> last_save_;
  std::string save_error_;  // the last failed save, reported to the next SAVE
  Status fatal_;            // set when serve() must stop (a checkpoint INIT refused)
};

}  // namespace pstrain
