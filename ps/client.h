// PsClient: a worker's connection to every parameter server of the job.
//
// Contract
// - One DEALER socket per PS for requests, used by the calling thread only, and one more per
//   PS on a heartbeat thread (start_heartbeats) so the servers see the worker alive while it
//   computes, and the worker sees a server that stopped answering.
// - Every wait has a deadline: a request that gets no reply within `reply_timeout` fails with
//   an error naming the PS and its address (with `ps_restart_timeout`, only once that much
//   more time has passed with the request sent again); hello() retries with backoff until
//   `connect_timeout` and then names every address that never answered.
// - pull() waits for events, not sleeps: a server parks the request until it holds
//   initialised variables at step >= min_step and answers then (or says "not ready" after its
//   long-poll interval, and the request is sent again).
// - push() sends the gradient chunks straight from the caller's buffer (zero copy, no
//   allocation: runtime/wire/message.h's borrowing send) and returns once every PS answered,
//   which means ZeroMQ has finished reading the buffer, so the caller may overwrite it. With
//   ClientOptions::compression it narrows them first into a 16-bit buffer of its own, reused
//   from push to push, and sends that. After a failed push ZeroMQ may still read either
//   buffer: both are kept alive until the process exits (`owner` holds the caller's), and
//   the sockets are opened afresh.
// - The steady state (push_pull() after push_pull(), the same shapes) allocates nothing on
//   the calling thread: messages are rewritten in place and replies received into reused
//   buffers (tests/ps/steady_state_test.cc counts every malloc).
// - ClientOptions::transport picks each PS's path once, at connect(): a Unix socket to the
//   PS's local endpoint (kIpc), that socket for the headers and a shared-memory segment for
//   the tensors (kShm; kAuto when the PS runs on this machine), TCP otherwise
//   (runtime/wire/transport.h); transport_of() says which. Both sockets of a PS use it.
//   kShm: one segment per PS (runtime/wire/shm.h) with a request region that push() copies
//   the gradients into and a reply region that the PS writes pulled parameters into, each as
//   large as the PS's chunks. A PS that cannot map it (hello() says so) is reached over the
//   Unix socket alone (kIpc), with a warning naming why. Only one request per PS is out at a
//   time, so the regions are never written while the other side reads them. With one PS the
//   regions can be the worker's own buffers (flat_in_shm()): the gradients are then pushed
//   and the parameters pulled without a copy on the worker's side.
// - The worker's large copies (a frame of 2 MB or more: gradients into a request region,
//   pulled parameters out of a reply over any transport) run in 1 MB pieces on
//   kernels/optim.h's update threads (copy_parallel), at most min(hardware threads, 4).
// - Striping (ClientOptions::push_stripes): a large PUSH over TCP is cut into byte ranges of
//   its chunks; all but the first go as parts (Header.more_parts) over further connections to
//   the PS, opened at the first such push ("<session>/r1", "/r2", ...: the same session, so
//   the PS takes them as this worker's), and the first as the last part over the request
//   socket, naming how many went elsewhere (Header.parts_elsewhere); the reply comes there.
//   A stripe that cannot be queued at once goes in the last part instead. When the push is
//   sent again (no answer, the PS lost parts) it goes whole over the request socket, and the
//   stripes' connections are closed (what they borrow is kept until the process exits, as for
//   a failed push) and opened afresh at the next large push.
// - Replies in parts (ClientOptions::reply_part_bytes): a PULL, and a PUSH with the pull
//   along, ask for the parameters in parts; each part is copied into the caller's parameters
//   as it comes, the frames checked to continue each other exactly (reply_cursor_); a last
//   part after fewer parts than it announces (or marked parts_lost) is not used and the PULL
//   asked again. A striped PUSH with the pull along also takes the reply's parts on its
//   stripes' connections (Header.reply_lanes): a part that comes before its turn is held
//   (zero copy, at most kMaxReplyParts per PS) until the parts before it are in. push_pull()
//   tells a ParametersArrived, when given, how far the parameters are in from every PS as the
//   parts are taken (the pull's overlap: the next forward starts on the first layers).
// - A PS's replies carry the request's id; any other (an answer to an older try) is dropped.
// Thread-safety: all methods from one thread; the heartbeat thread is internal.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "ps/placement.h"
#include "ps/training_config.h"
#include "runtime/base/status.h"
#include "runtime/job/cluster.h"
#include "runtime/wire/message.h"
#include "runtime/wire/security.h"
#include "runtime/wire/shm.h"
#include "runtime/wire/transport.h"

namespace pstrain {

// How a parameter server's REPLY_ERROR starts when another live connection already speaks
// for the worker index a request names (ps/server.h). The client asks again every 200 ms until
// the request's deadline (the old connection of a restarted worker may not be closed yet on
// the PS's side), then fails with the PS's message.
inline constexpr char kWorkerIndexInUse[] = "worker index in use";
// How a parameter server's REPLY_ERROR starts when the last part of a PUSH in parts
// (Header.more_parts) comes and it does not hold the earlier ones (it was restarted between
// them): the client sends the whole PUSH again at once.
inline constexpr char kPushPartsMissing[] = "push parts missing";
// A PUSH may be striped over at most this many connections of a worker (ClientOptions::
// push_stripes): a PS takes a PUSH in parts that carries up to this many frames more than it
// holds chunks (each stripe's boundary cuts at most one chunk in two).
inline constexpr uint32_t kMaxPushStripes = 16;
// A REPLY_PARAMS goes in at most this many parts (wire::Header.reply_part_bytes), well under
// the PS's send queue (kPsSendHwm, ps/server.h).
inline constexpr uint64_t kMaxReplyParts = 8;
// The prefix of a PsClient's routing ids (see PsClient::session_).
inline constexpr char kSessionPrefix[] = "pstrain/";

struct ClientOptions {
  int worker = 0;
  uint64_t job_id = 0;
  std::chrono::milliseconds connect_timeout{120000};
  std::chrono::milliseconds reply_timeout{30000};
  // Heartbeats are sent every min(heartbeat_interval, reply_timeout / 4), so a server that
  // uses the same timeout never mistakes a live worker for a lost one.
  std::chrono::milliseconds heartbeat_interval{1000};
  // A PS that does not answer a request within reply_timeout: 0 fails the call at once;
  // otherwise the request is sent again every reply_timeout for up to this long (a PS being
  // restarted from its checkpoint), and pull() follows a PS whose step went back (it restored
  // an older checkpoint) instead of waiting for the step it had reached.
  std::chrono::milliseconds ps_restart_timeout{0};
  // When set, a waiting call returns kCancelled within about 50 ms of *stop turning non-zero
  // (a signal handler stores the signal), whatever its deadline; set_stop() changes it.
  const std::atomic<int>* stop = nullptr;
  // The job's keys (runtime/wire/security.h): every connection is a CURVE client; nullptr:
  // plain TCP. Either way a PS that refuses the handshake (it has a secret and this worker
  // another or none, or the other way round) makes hello() fail at once with
  // kInvalidArgument saying which (exit 2), instead of waiting for connect_timeout.
  std::shared_ptr<const JobKeys> keys = nullptr;
  // --compress: gradients travel as float32 (kFloat32), or narrowed to float16 / bfloat16
  // (runtime/wire/half.h, round to nearest even); pulled parameters are always float32.
  FloatFormat compression = FloatFormat::kFloat32;
  // --transport: how to reach each PS (kAuto: shared memory when the PS is on this machine,
  // TCP otherwise; on the 2-core build machine shared memory moved 1.5 to 2.4 times the bytes
  // of TCP through a PS: docs/benchmarks.md).
  Transport transport = Transport::kAuto;
  // push_part() sends a part to a PS once the chunks ready for it hold at least this many
  // bytes (smaller ones wait for the next part or the push): each message costs wakeups on
  // both sides, which a few KB sent early do not pay back (the MLP's last layer, 4 KB, lost
  // about 1 % of the job's speed when sent alone).
  uint64_t min_push_part_bytes = 64 * 1024;
  // Striping: a PUSH to a PS reached over TCP whose chunks still to send hold at least
  // 2 * min_stripe_bytes goes over up to push_stripes connections to that PS, in stripes of
  // at least min_stripe_bytes (byte ranges of its chunks, cut anywhere; ps/server.h gathers
  // them). One loopback TCP connection keeps about one core busy with the kernel's copies;
  // on the 2-core build machine four moved a 4 MB push+pull 1.4x as fast
  // (docs/benchmarks.md). 1: one connection. At most kMaxPushStripes.
  int push_stripes = 4;
  uint64_t min_stripe_bytes = 512 * 1024;
  // A PULL (and the pull half of a PUSH) asks for the parameters in parts of about this many
  // bytes (wire::Header.reply_part_bytes; a PS sends at most kMaxReplyParts): each part is
  // copied into the caller's parameters while the next one is on its way. 0: whole replies.
  // Replies written into shared memory are never cut.
  uint64_t reply_part_bytes = 1024 * 1024;
};

struct PushResult {
  int64_t global_step = 0;  // PS 0's step after the push
  bool accepted = true;     // false when any PS dropped the gradient (stale, late)
  bool pulled = false;      // push_pull(): every PS answered with its parameters
};

// A checkpoint shard a PS wrote (SAVE's reply).
struct SavedShard {
  int ps = 0;
  std::string file;  // base name in that PS's --checkpoint_dir
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
  int64_t step = 0;
};

// The step each PS was at when it served a pull; element 0 is the global step.
using PsSteps = std::vector<int64_t>;

class PsClient {
 public:
  static Result<std::unique_ptr<PsClient>> connect(zmq::context_t& ctx,
                                                   const std::vector<HostPort>& ps,
                                                   const Placement& placement,
                                                   ClientOptions options);
  ~PsClient();

  // Announces this worker to every PS. Returns true when every PS already holds initialised
  // variables. `layout_hash` lets the servers reject a worker whose model differs (an
  // invalid-argument error carrying the PS's reason).
  Result<bool> hello(uint64_t layout_hash);
  // Chief only: sends each PS its chunks of `flat` and the whole training config (checked
  // here first with JobTrainingConfig::validate(); a PS refuses an invalid one, too). A
  // refusal is an invalid-argument error (a configuration problem) carrying the PS's reason.
  Status init(const JobTrainingConfig& config, std::span<const float> flat);
  // Fills `flat` from every PS once each is initialised and at step >= min_step; returns the
  // step each PS served (element 0, PS 0's, is the global step).
  Result<PsSteps> pull(std::span<float> flat, int64_t min_step);
  // The same with a minimum step per PS (sync training asks each PS for the step after the
  // one it served last: the servers' steps may differ by one at any moment).
  Result<PsSteps> pull(std::span<float> flat, const PsSteps& min_steps);
  // Sends each PS its chunks of `flat_grads`, tagged with the step that PS served the
  // parameters at (`steps` from the pull they were computed from). `owner` owns the buffer:
  // after a failed push (a stop request, a PS gone) it is kept alive for as long as ZeroMQ
  // may read the bytes (until the process exits), and the caller must not write into it again
  // (it may be null when the buffer outlives this client for certain). A successful push
  // returns once every PS answered: ZeroMQ has finished with the buffer.
  Result<PushResult> push(std::span<const float> flat_grads, const PsSteps& steps,
                          std::shared_ptr<const void> owner);
  // push(), and the next pull() in the same round trip: each PS answers once it took the
  // gradient and reached min_steps[ps] (Header.then_pull), with its parameters, which go into
  // `flat` (not the gradient's buffer). When every PS did, the result's `pulled` is true and
  // `pulled_steps` holds the steps served, as pull() returns them; otherwise (a PS of an older
  // pstrain, or one not ready within its long poll) call pull() as usual. The same vectors
  // every step: nothing is allocated (tests/ps/steady_state_test.cc).
  //
  // Overlap of the pull: push_pull() tells `arrived` (when given) as the parameters come in,
  // on the calling thread while it waits for the rest: arrived(until) once flat[0, until)
  // holds this call's parameters from every PS (until grows from call to call; a reply in
  // parts tells each part that extends it, a whole reply once), so the next step's forward can
  // start on the first layers. restarted(): values told of may have been written again (a PS
  // was asked again and answers afresh): what was computed from them must be discarded, and
  // later arrived() count from 0 again. What was told is final only when push_pull() returns
  // `pulled`; otherwise (and on an error) the caller discards it too.
  class ParametersArrived {
   public:
    virtual void arrived(int64_t until) = 0;
    virtual void restarted() = 0;

   protected:
    ~ParametersArrived() = default;
  };
  // Work for the calling thread while the servers compute (the next batch gathered, say):
  // push_pull() given one calls run() once, after every server's request is queued and before
  // it first waits for a reply (so before any arrived()); not again when a request is asked
  // anew, and not at all when a request cannot be sent (the call then fails).
  class WhileWaiting {
   public:
    virtual void run() = 0;

   protected:
    ~WhileWaiting() = default;
  };
  Result<PushResult> push_pull(std::span<const float> flat_grads, const PsSteps& steps,
                               std::shared_ptr<const void> owner, std::span<float> flat,
                               const PsSteps& min_steps, PsSteps& pulled_steps,
                               ParametersArrived* arrived = nullptr,
                               WhileWaiting* while_waiting = nullptr);
  // Overlap: a worker pushes each layer's gradients as soon as backward has produced them.
  // Sends each PS reached over TCP or its Unix socket (not shared memory, where nothing
  // travels) those of its chunks that lie wholly in flat_grads[ready_from, end) and were not
  // sent yet, once they hold at least ClientOptions::min_push_part_bytes (else they wait for
  // a later call), as a part of the PUSH that the next push() or push_pull() completes (called
  // with the same flat_grads, steps and owner); that call sends only the chunks left and
  // waits for the answer as usual. The part borrows the buffer (ZeroMQ's I/O thread sends it
  // while the caller computes): the caller must not write the chunks sent until that call
  // returns. Never fails: a part that cannot be queued at once is given up, and the push
  // then sends every chunk. With ClientOptions::compression the part's chunks are narrowed
  // into the 16-bit buffer first (and not again by the push).
  void push_part(std::span<const float> flat_grads, const PsSteps& steps, int64_t ready_from,
                 std::shared_ptr<const void> owner);
  // Parts sent by push_part() since the last push, over all servers (for logs and tests).
  uint64_t push_parts_sent() const { return push_parts_total_; }
  // Stripes sent over the further connections (striping), over all pushes and servers.
  uint64_t push_stripes_sent() const { return push_stripes_total_; }
  // Parts of replies in parts taken so far (ClientOptions::reply_part_bytes), the last parts
  // not counted: 0 while every reply came whole.
  uint64_t reply_parts_received() const { return reply_parts_total_; }
  // Of those, the parts that came over the stripes' connections (Header.reply_lanes).
  uint64_t reply_parts_on_lanes() const { return reply_parts_on_lanes_; }
  // Tells every PS this worker has finished.
  Status done();
  // Asks every PS in `targets` to write its checkpoint shard once its step reaches
  // `min_step` (SAVE; ps/server.h). Returns one entry per target, in order: the shard written,
  // or nullopt when that PS has scheduled the save (ask again later). A PS that cannot save
  // (no --checkpoint_dir, a write error) makes the call fail with its error.
  Result<std::vector<std::optional<SavedShard>>> save(const std::vector<int>& targets,
                                                      int64_t min_step);
  // Per-PS state and counters (STATUS).
  Result<wire::PsStats> status(int ps);

  // After hello(): the heartbeat thread reaches each PS over the transport hello() settled on
  // (a PS that cannot map shared memory is reached over its Unix socket), which it reads
  // without a lock.
  void start_heartbeats();
  void stop_heartbeats();
  // Replaces ClientOptions::stop (nullptr: calls wait for their deadlines again, e.g. for a
  // final checkpoint after a stop request).
  void set_stop(const std::atomic<int>* stop) { options_.stop = stop; }
  // Non-empty once the heartbeat thread found a PS silent for longer than reply_timeout.
  std::string heartbeat_failure() const;

  // How this client reaches PS `ps` (kTcp, kIpc or kShm).
  Transport transport_of(int ps) const { return transports_[static_cast<size_t>(ps)]; }

  // After hello(): the model's whole flat layout in the shared-memory segment, where push()
  // and pull() move it without a copy, when one PS holds every variable and is reached
  // through shared memory without --compress (empty spans otherwise). `gradients` is the
  // request region: push() and push_pull() given it send it in place. `parameters` is the
  // reply region, where the PS writes what pull() and push_pull() given it return. The caller
  // writes gradients and reads parameters only between requests (the PS reads and writes
  // them while one is out); `owner` keeps the mapping alive (pass it as push()'s owner).
  struct FlatInShm {
    std::span<float> gradients;
    std::span<float> parameters;
    std::shared_ptr<void> owner;
  };
  FlatInShm flat_in_shm() const;

  uint64_t bytes_sent() const { return counters_.bytes_out.load(); }
  uint64_t bytes_received() const { return counters_.bytes_in.load(); }

 private:
  PsClient(zmq::context_t& ctx, std::vector<HostPort> ps, const Placement& placement,
           ClientOptions options);
  const std::string& name(int ps) const;
  const std::vector<int>& all_ps() const { return all_ps_; }
  const std::string& secret_file() const;  // the keys' --secret_file, or ""
  OutMessage request(wire::Kind kind) const;
  // Sends make(ps) to every PS in `targets` and waits for each one's reply; on_reply(ps,
  // InMessage&) returns true when that PS is finished, false to send make(ps) again (e.g.
  // after NOT_READY). make returns an OutMessage (sent from cold_out_) or an OutMessage& that
  // the caller keeps and rewrites in place (PUSH: nothing allocated). With `backoff`, a PS
  // whose reply has not come is asked again with growing intervals until `timeout` (hello).
  // A failure retires what unanswered requests borrow (retire_unanswered) and sets
  // left_unanswered_.
  template <class Make, class OnReply>
  Status exchange(const std::vector<int>& targets, Make&& make, OnReply&& on_reply,
                  std::chrono::milliseconds timeout, bool backoff);
  template <class Make, class OnReply>
  Status exchange_impl(const std::vector<int>& targets, Make& make, OnReply& on_reply,
                       std::chrono::milliseconds timeout, bool backoff);
  // Every PS whose last request is unanswered: its header bytes (borrowed by ZeroMQ) are kept
  // until the process exits and replaced by a fresh buffer, and so is `owner` (when any). True
  // when there was one.
  bool retire_unanswered(std::shared_ptr<const void> owner);
  void heartbeat_loop();
  // The pull half of push_pull() (nullptr: a plain push).
  struct PullAlong {
    std::span<float> flat;
    PsSteps& mins;
    PsSteps& steps;
    bool complete = true;  // every PS sent its parameters
    ParametersArrived* arrived = nullptr;
    int64_t told = 0;  // the last arrived(until)
  };
  // push_pull(): tells along.arrived how far flat holds this call's parameters from every PS
  // (along_done_: the PSs whose reply is in), if that moved.
  void tell_arrived(PullAlong& along);
  Result<PushResult> push_impl(std::span<const float> flat_grads, const PsSteps& steps,
                               std::shared_ptr<const void> owner, PullAlong* along);
  // A REPLY_PARAMS or REPLY_NOT_READY from PS `ps` to a pull: follows a restarted PS (mins),
  // copies the parameters into `flat` and records the step served. False: not ready, a part
  // of a reply in parts (more follow), or a last part whose earlier parts did not all come
  // (ask again). The parts' frames must continue each other exactly (reply_cursor_).
  Result<bool> take_params(int ps, const InMessage& reply, std::span<float> flat, PsSteps& mins,
                           PsSteps& steps);
  // A REPLY_PARAMS part of request `request_id` from PS `ps` numbered after the one whose turn
  // it is (Header.part_index): kept in held_parts_ (msg then holds an empty message) and true.
  // False: its turn, or not one to hold (take_params() then takes or refuses it).
  bool hold_if_early(int ps, uint64_t request_id, InMessage& msg);
  // The held part whose turn it now is, swapped into msg (an emptied message): true; false
  // when it has not come.
  bool take_held(int ps, uint64_t request_id, InMessage& msg);
  // Closes every request socket (linger 0: messages still queued for a PS are dropped, which
  // lets ZeroMQ release the buffers they borrow) and connects a fresh one in its place.
  Status reopen_sockets();

  zmq::context_t* ctx_;
  std::vector<HostPort> ps_;
  const Placement* placement_;
  ClientOptions options_;
  std::vector<std::unique_ptr<HandshakeMonitor>> monitors_;  // one per PS, before sockets_
  std::vector<zmq::socket_t> sockets_;
  std::vector<Transport> transports_;  // per PS: kTcp, kIpc or kShm (kShm -> kIpc in hello())
  // kShm: per PS, the segment (null otherwise), the size of each of its two regions, and the
  // resolver for the PS's replies (frames in this segment).
  std::vector<std::shared_ptr<ShmSegment>> shm_;
  std::vector<uint64_t> shm_region_;
  std::vector<ShmResolver> shm_resolvers_;
  // Names PS `ps`'s segment in `m` (when it has one), with the reply region when `reply`.
  void name_segment(OutMessage& m, int ps, bool reply) const;
  uint64_t next_request_ = 1;
  // "pstrain/<worker>/<random hex>": the routing ids of this client's sockets are it plus
  // "/r" (requests) and "/h" (heartbeats), so a PS tells this process's connections (which
  // may speak for the worker) from another's (ps/server.h).
  std::string session_;
  std::vector<uint64_t> incarnation_;  // each PS's Header.ps_incarnation as last seen (0: none)
  // Per PS, where the parts of the REPLY_PARAMS to request `request_id` have reached so far:
  // chunk `chunk` (of that PS's chunks) from element `offset` on, after `parts` parts.
  struct ReplyCursor {
    uint64_t request_id = 0;
    size_t chunk = 0;
    uint64_t offset = 0;
    uint32_t parts = 0;
  };
  std::vector<ReplyCursor> reply_cursor_;
  uint64_t reply_parts_total_ = 0;
  uint64_t reply_parts_on_lanes_ = 0;
  // Per PS: how many of lanes_ the request in flight lets the PS send reply parts on
  // (Header.reply_lanes; 0: only the request socket), and the parts of request `request_id`
  // that came before their turn (bit i of `held`: parts[i] holds part i).
  std::vector<uint32_t> reply_lanes_;
  struct HeldParts {
    uint64_t request_id = 0;
    uint32_t held = 0;
    std::array<InMessage, kMaxReplyParts> parts;
  };
  std::vector<HeldParts> held_parts_;
  ProtocolCounters counters_;
  // push()'s 16-bit gradients (compression only); reused once every PS answered.
  std::shared_ptr<std::vector<uint16_t>> half_grads_;

  // What exchange() reuses, so that the steady state's requests allocate nothing on this
  // thread (tests/ps/steady_state_test.cc counts): its bookkeeping, per PS the SendBuffers
  // and whether the last request sent on its socket was answered (then ZeroMQ has finished
  // with every borrowed byte, and the next send may borrow again), the PUSH messages
  // rewritten in place, the message of the other requests, the received reply.
  struct Pending {
    int ps = 0;
    uint64_t request_id = 0;
    wire::Kind kind = wire::KIND_INVALID;
    std::chrono::steady_clock::time_point sent;
    std::chrono::steady_clock::time_point give_up;
    std::chrono::milliseconds retry{250};
    bool finished = false;
    // ps_restart_timeout: the first unanswered send.
    std::optional<std::chrono::steady_clock::time_point> silent_since;
    std::string in_use;  // the PS's kWorkerIndexInUse refusal, while asking again
    std::optional<std::chrono::steady_clock::time_point> ask_again_at;
  };
  std::vector<int> all_ps_;
  std::vector<std::string> names_;
  std::vector<Pending> pending_;
  std::vector<zmq::pollitem_t> poll_items_;
  std::vector<size_t> poll_index_;
  std::vector<int> poll_lane_;  // per poll item: -1 the request socket, l: lanes_[ps][l]
  std::vector<SendBuffers> send_buffers_;
  std::vector<char> answered_;
  bool left_unanswered_ = false;
  std::vector<OutMessage> push_out_;
  // push_part(): per PS, which of its chunks (by position in chunks_of_ps) went out in parts
  // of the push being sent and how many parts; the parts' messages and send buffers (one per
  // part, reused push after push: the PS answered the last push, so ZeroMQ has finished with
  // what they borrowed); what owns the gradients they borrow; whether the push's next send
  // to a PS is its first (the others, after a PS lost the parts, send every chunk).
  std::vector<std::vector<char>> part_sent_;
  std::vector<uint32_t> parts_sent_;
  std::vector<char> parts_given_up_;  // a part could not be sent: the push goes whole
  std::vector<std::vector<OutMessage>> part_out_;
  std::vector<std::vector<SendBuffers>> part_buffers_;
  std::shared_ptr<const void> parts_owner_;
  std::vector<char> first_send_;
  uint64_t push_parts_total_ = 0;
  // The parts of the push being sent are not answered yet: keeps what they borrow until the
  // process exits (a failed push, or none after them) and forgets them.
  void retire_parts();
  // Striping: per PS, the further connections (push_stripes - 1 once opened), each one's
  // stripe message and send buffers (reused push after push), how many stripes the push being
  // sent put on them, and whether it was sent again since (then they are retired after it).
  std::vector<std::vector<zmq::socket_t>> lanes_;
  std::vector<std::vector<OutMessage>> stripe_out_;
  std::vector<std::vector<SendBuffers>> stripe_buffers_;
  std::vector<uint32_t> stripes_sent_;
  bool stripes_resent_ = false;
  uint64_t push_stripes_total_ = 0;
  // Cuts the frames of `m` (PS `ps`'s push, `value_bytes` per element) into stripes when
  // large enough, sends all but the first over the further connections and leaves in `m`
  // what they do not carry. Returns the number sent. `request_id` as `m`'s.
  uint32_t send_stripes(size_t ps, OutMessage& m, size_t value_bytes, uint64_t request_id);
  // The stripes of the push being sent are in doubt (it failed, or went again whole): what
  // they borrow (header bytes, `owner`) is kept until the process exits and the further
  // connections are closed (opened afresh at the next large push).
  void retire_stripes(std::shared_ptr<const void> owner);
  // The 16-bit gradient buffer (--compress), `count` values.
  std::span<uint16_t> half_buffer(size_t count);
  size_t mine_count(size_t ps) const { return placement_->chunks_of_ps[ps].size(); }
  OutMessage cold_out_;
  InMessage reply_;
  PsSteps along_mins_;
  // push_pull()'s WhileWaiting, run (and cleared) by exchange_impl() once its requests are out.
  WhileWaiting* while_waiting_ = nullptr;
  std::vector<char> along_done_;

  std::thread heartbeat_;
  std::atomic<bool> heartbeat_stop_{false};
  mutable std::mutex failure_mu_;
  std::string heartbeat_failure_;  // guarded by failure_mu_
};

}  // namespace pstrain
