#include "ps/server.h"

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <sstream>

#include "kernels/optim.h"
#include "ps/checkpoint_io.h"
#include "ps/client.h"
#include "runtime/base/log.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

// A PsClient's sockets (requests, heartbeats, stripes) share a session: their routing ids are
// "pstrain/<worker>/<random>/<socket>" (ps/client.h). Any other routing id is a session alone.
std::string session_of(const zmq::message_t& routing_id) {
  std::string session(static_cast<const char*>(routing_id.data()), routing_id.size());
  if (session.starts_with(kSessionPrefix)) {
    const size_t slash = session.rfind('/');
    if (slash > std::strlen(kSessionPrefix)) session.resize(slash);
  }
  return session;
}

bool same_routing_id(const zmq::message_t& a, const zmq::message_t& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

// Whether every frame of a PUSH part holds float32, float16 or bfloat16 values, inline (bytes
// the message owns, that nobody else writes), exactly count of them, and all finite. false
// when any does not (the store then checks the part itself, and reports what is wrong).
bool all_values_finite(const InMessage& m) {
  for (size_t i = 0; i < m.num_frames(); ++i) {
    const wire::FrameInfo& f = m.frame_info(i);
    FloatFormat format = FloatFormat::kFloat32;
    if (!float_format_of(f.dtype(), &format) || f.in_shm()) return false;
    const std::span<const std::byte> bytes = m.frame_bytes(i);
    const size_t size = float_format_size(format);
    if (bytes.size() % size != 0 || bytes.size() / size != f.count()) return false;
    if (format != FloatFormat::kFloat32) {
      if (!halves_all_finite(format, bytes.data(), f.count())) return false;
      continue;
    }
    if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(float) != 0 ||
        !all_finite_parallel({reinterpret_cast<const float*>(bytes.data()), f.count()})) {
      return false;
    }
  }
  return true;
}

constexpr const char* kChiefLost =
    "the chief (worker 0) was lost before it initialised the variables; restart the job";

std::string worker_list(const std::vector<int>& ids) {
  std::ostringstream os;
  for (size_t i = 0; i < ids.size(); ++i) os << (i ? ", " : "") << ids[i];
  return os.str();
}

}  // namespace

Result<PsSocket> bind_ps_socket(zmq::context_t& ctx, const std::string& host, int port,
                                int ps_index, const JobKeys* keys) {
  PsSocket out;
  SocketOptions so;
  // Resource bounds (docs/security.md): a full queue drops the reply at once (no send waits),
  // a frame's declared size is capped before its bytes are buffered, a connection that does
  // not finish its handshake goes.
  so.send_hwm = kPsSendHwm;
  so.send_timeout = std::chrono::milliseconds(0);
  so.max_message_bytes = kPsMaxFrameBytesBeforeInit;
  so.handshake_ivl = kPsHandshakeTimeout;
  if (keys != nullptr) {
    // The ZAP handler first: a CURVE server with no handler would admit any client that knows
    // the server's public key.
    PSTRAIN_ASSIGN_OR_RETURN(out.zap, ZapHandler::start(ctx, keys->client_public));
    so.curve = keys;
  }
  // The monitor (with or without a secret): refused handshakes and the connection table that
  // caps the number of connections.
  PSTRAIN_ASSIGN_OR_RETURN(out.monitor, HandshakeMonitor::create(ctx));
  so.monitor_endpoint = out.monitor->endpoint();
  const std::string what = "ps/" + std::to_string(ps_index) + " service";
  PSTRAIN_ASSIGN_OR_RETURN(out.socket,
                           bind_socket(ctx, zmq::socket_type::router, host, port, what, so));
  PSTRAIN_ASSIGN_OR_RETURN(out.port, bound_port(out.socket));
  return out;
}

Result<std::unique_ptr<ParameterServer>> ParameterServer::create(zmq::context_t& ctx,
                                                                 ServerOptions options) {
  if (options.num_workers < 1) return invalid_argument("a parameter server needs 1+ workers");
  PSTRAIN_ASSIGN_OR_RETURN(PsSocket bound, bind_ps_socket(ctx, options.host, options.port,
                                                          options.ps_index, options.keys.get()));
  return create(std::move(bound), std::move(options));
}

Result<std::unique_ptr<ParameterServer>> ParameterServer::create(PsSocket bound,
                                                                 ServerOptions options) {
  if (options.num_workers < 1) return invalid_argument("a parameter server needs 1+ workers");
  if (options.keys && (!bound.zap || !bound.monitor)) {
    return invalid_argument(
        "the parameter server has a secret but its socket was bound "
        "without CURVE");
  }
  std::unique_ptr<ParameterServer> s(
      new ParameterServer(std::move(options), std::move(bound.socket), bound.port));
  s->zap_ = std::move(bound.zap);
  s->monitor_ = std::move(bound.monitor);
  PSTRAIN_RETURN_IF_ERROR(s->bind_local());
  return s;
}

Status ParameterServer::bind_local() {
  if (options_.host.empty()) return {};
  PSTRAIN_RETURN_IF_ERROR(bind_local_endpoint(
      socket_, options_.host, port_, "ps/" + std::to_string(options_.ps_index) + " service"));
  local_endpoint_ = local_endpoint(options_.host, port_);
  return {};
}

Result<std::unique_ptr<ParameterServer>> ParameterServer::create(zmq::socket_t bound, int port,
                                                                 ServerOptions options) {
  if (options.num_workers < 1) return invalid_argument("a parameter server needs 1+ workers");
  if (options.keys) {
    return invalid_argument(
        "a parameter server with a secret needs its socket from "
        "bind_ps_socket (CURVE and ZAP)");
  }
  std::unique_ptr<ParameterServer> s(
      new ParameterServer(std::move(options), std::move(bound), port));
  PSTRAIN_RETURN_IF_ERROR(s->bind_local());
  return s;
}

ParameterServer::ParameterServer(ServerOptions options, zmq::socket_t socket, int port)
    : options_(std::move(options)),
      socket_(std::move(socket)),
      port_(port),
      workers_(static_cast<size_t>(options_.num_workers)) {
  // Differs between two runs of the same PS (the time and the process), so a worker can tell
  // a restarted PS from the one it knew.
  std::random_device rd;
  incarnation_ = (static_cast<uint64_t>(rd()) << 32) ^ static_cast<uint64_t>(rd()) ^
                 static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  if (incarnation_ == 0) incarnation_ = 1;
  shm_resolver_ = [this](const InMessage& m) -> Result<ShmView> {
    PSTRAIN_ASSIGN_OR_RETURN(std::shared_ptr<ShmSegment> seg, shm_segment_of(m));
    return ShmView{.bytes = seg->bytes(), .keep = seg};
  };
  int cap = options_.max_connections;
  if (cap <= 0) {
    rlimit nofile{};
    cap = ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
              ? static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 1 << 30)) - kPsReservedFds
              : 1 << 20;
  }
  max_connections_ = static_cast<size_t>(std::max(cap, 2 * options_.num_workers + 8));
}

ParameterServer::~ParameterServer() {
  // Give the last replies (to DONE) a moment to leave before the socket closes.
  try {
    socket_.set(zmq::sockopt::linger, 2000);
  } catch (const zmq::error_t&) {
  }
}

wire::PsStats ParameterServer::stats() const {
  wire::PsStats s;
  s.set_global_step(store_.step());
  s.set_initialized(store_.initialized());
  const StoreCounters& c = store_.counters();
  s.set_gradients_applied(c.gradients_applied);
  s.set_stale_gradients_dropped(c.stale + c.duplicate + c.future + c.late);
  s.set_bad_messages(static_cast<int64_t>(counters_.malformed.load()));
  s.set_foreign_messages(static_cast<int64_t>(counters_.foreign.load()));
  int done = 0, lost = 0;
  for (const auto& w : workers_) {
    done += w.done;
    lost += w.lost;
  }
  s.set_workers_done(done);
  s.set_workers_lost(lost);
  s.set_bytes_received(counters_.bytes_in.load());
  s.set_bytes_sent(counters_.bytes_out.load());
  s.set_num_chunks(static_cast<int32_t>(store_.num_chunks()));
  s.set_parameter_bytes(store_.parameter_bytes());
  s.set_num_workers(options_.num_workers);
  const auto now = Clock::now();
  for (int i = 0; i < options_.num_workers; ++i) {
    const WorkerState& w = workers_[static_cast<size_t>(i)];
    wire::PsWorker* pw = s.add_workers();
    pw->set_index(i);
    pw->set_state(w.done   ? wire::PsWorker::DONE
                  : w.lost ? wire::PsWorker::LOST
                  : w.seen ? wire::PsWorker::CONNECTED
                           : wire::PsWorker::NOT_SEEN);
    pw->set_ms_since_seen(
        w.seen ? std::chrono::duration_cast<std::chrono::milliseconds>(now - w.last_seen).count()
               : -1);
    pw->set_gradients(w.pushes);
    pw->set_pending_gradient(config_ && config_->sync_replicas && store_.has_pending(i));
  }
  for (const ParkedPull& p : parked_) {
    if (p.worker >= 0 && p.worker < s.workers_size()) {
      wire::PsWorker* pw = s.mutable_workers(p.worker);
      pw->set_parked_pulls(pw->parked_pulls() + 1);
    }
  }
  if (config_) {
    s.set_sync_replicas(config_->sync_replicas);
    s.set_replicas_to_aggregate(config_->sync_replicas ? store_.replicas() : 1);
    s.set_gradients_pending(config_->sync_replicas ? store_.pending() : 0);
    s.set_train_steps(config_->train_steps);
  }
  s.set_last_checkpoint_step(last_save_ ? last_save_->step : -1);
  s.set_restored_step(restored_step_);
  s.set_unauthenticated(static_cast<int64_t>(unauthenticated_));
  s.set_non_finite_gradients(c.non_finite);
  if (monitor_) {
    s.set_connections(static_cast<int32_t>(monitor_->connections()));
    s.set_connections_evicted(static_cast<int64_t>(monitor_->evicted()));
  }
  return s;
}

void ParameterServer::publish_metrics(bool now_anyway) {
  if (!options_.metrics) return;
  if (!now_anyway &&
      Clock::now() - options_.metrics->last_publish() < std::chrono::milliseconds(100)) {
    return;
  }
  options_.metrics->publish({.stats = stats(),
                             .store = store_.counters(),
                             .messages_in = counters_.messages_in.load(),
                             .messages_out = counters_.messages_out.load(),
                             .identity_refused = identity_refused_,
                             .replies_dropped = replies_dropped_});
}

OutMessage ParameterServer::make_reply(wire::Kind kind, uint64_t request_id) const {
  OutMessage out;
  out.header.set_kind(kind);
  out.header.set_job_id(options_.job_id);
  out.header.set_request_id(request_id);
  out.header.set_step(store_.step());
  out.header.set_initialized(store_.initialized());
  out.header.set_ps_index(options_.ps_index);
  out.header.set_ps_incarnation(incarnation_);
  out.header.set_sender(-1);
  return out;
}

void ParameterServer::reply(const InMessage& to, wire::Kind kind, OutMessage out) {
  OutMessage base = make_reply(kind, to.header.request_id());
  base.header.MergeFrom(out.header);
  base.frames = std::move(out.frames);
  send_to(to.routing_id, std::move(base), "reply", to.header.sender());
}

bool ParameterServer::send_to(const zmq::message_t& routing_id, OutMessage out, const char* what,
                              int worker) {
  const Status st = send_message(socket_, std::move(out), &routing_id, &counters_);
  if (st.ok()) return true;
  if (st.code() == StatusCode::kDeadlineExceeded) {
    // kPsSendHwm messages wait unread on this connection: its peer does not read its replies.
    ++replies_dropped_;
    if (rejection_log_.allow()) {
      PSTRAIN_LOG(WARNING) << "dropped a " << what << " to worker " << worker << " ("
                           << replies_dropped_ << " in all): " << kPsSendHwm
                           << " messages wait unread on its connection";
    }
    return false;
  }
  if (rejection_log_.allow()) {
    PSTRAIN_LOG(WARNING) << what << " to worker " << worker << ": " << st.message();
  }
  return false;
}

void ParameterServer::tighten_frame_cap() {
  int64_t largest = 0;
  for (size_t i = 0; i < store_.num_chunks(); ++i) {
    largest = std::max<int64_t>(largest, static_cast<int64_t>(store_.values(i)->size()) *
                                             static_cast<int64_t>(sizeof(float)));
  }
  const int64_t cap = 2 * largest + (int64_t{1} << 20);
  try {
    socket_.set(zmq::sockopt::maxmsgsize, cap);
  } catch (const zmq::error_t& e) {
    PSTRAIN_LOG(WARNING) << "cannot cap the frame size: " << e.what();
    return;
  }
  PSTRAIN_LOG(INFO) << "new connections may send frames of at most " << cap
                    << " bytes (twice the largest chunk, " << largest << " bytes, + 1 MiB)";
}

void ParameterServer::reply_error(const InMessage& to, const std::string& error) {
  if (rejection_log_.allow()) {
    PSTRAIN_LOG(WARNING) << "rejecting " << describe(to.header) << ": " << error;
  }
  OutMessage out;
  out.header.set_error(error);
  reply(to, wire::REPLY_ERROR, std::move(out));
}

Result<ServerSummary> ParameterServer::serve() {
  started_ = Clock::now();
  if (!options_.checkpoint_dir.empty()) {
    auto found = find_ps_shard(options_.checkpoint_dir, options_.ps_index, options_.num_ps);
    if (!found.ok()) return invalid_argument(found.status().message());
    for (const std::string& why : found->skipped) {
      PSTRAIN_LOG(WARNING) << "skipping a torn checkpoint in " << options_.checkpoint_dir << ": "
                           << why;
    }
    if (found->shard) {
      restore_file_ = found->file;
      auto saved_config = training_config_from_json(found->shard->training_config);
      if (!saved_config.ok()) {
        PSTRAIN_LOG(WARNING) << found->file << ": " << saved_config.status().message()
                             << "; the variables come back when the chief initialises";
        restore_from_ = std::move(found->shard);
      } else {
        // Serve the checkpoint at once: a PS restarted alone rejoins its running job. The
        // chief of a job started again still sends INIT, whose config then applies.
        restore_from_ = *found->shard;
        Status st = saved_config->num_workers == options_.num_workers
                        ? restore_store(store_, std::move(*found->shard), *saved_config)
                        : invalid_argument("the checkpoint's job had " +
                                           std::to_string(saved_config->num_workers) + " workers");
        if (!st.ok()) {
          PSTRAIN_LOG(WARNING) << found->file << ": " << st.message()
                               << "; the variables come back when the chief initialises";
          store_ = ShardStore();
        } else {
          configured_replicas_ =
              saved_config->sync_replicas ? saved_config->replicas_to_aggregate : 1;
          staleness_ = saved_config->staleness;
          config_ = std::move(saved_config).value();
          restored_step_ = store_.step();
          awaiting_init_ = true;
          update_replicas();
          tighten_frame_cap();
          PSTRAIN_LOG(INFO) << "parameter server " << options_.ps_index << " resumed from "
                            << found->file << " at global step " << store_.step()
                            << " (serving it now; an INIT from the chief may still change the "
                               "training config)";
        }
      }
    }
  }
  PSTRAIN_LOG(INFO) << "parameter server " << options_.ps_index << " listening on port " << port_
                    << (local_endpoint_.empty()
                            ? ""
                            : " (and " + local_endpoint_ + " for workers on this machine)")
                    << " for " << options_.num_workers << " worker(s)"
                    << (options_.keys ? "; connections are CURVE-encrypted and only clients "
                                        "holding the job's secret get in"
                                      : "");
  while (true) {
    if (stop_.load()) return cancelled("parameter server stopped on request");
    if (!fatal_.ok()) return fatal_;
    // Wake at least every 100 ms to expire parked pulls and watch heartbeats.
    auto msg = recv_message(socket_, std::chrono::milliseconds(100), /*has_routing_id=*/true,
                            options_.job_id, &counters_, &shm_resolver_);
    if (msg.ok()) {
      handle(*msg);
      if (options_.metrics) options_.metrics->on_step(store_.step());
    } else {
      switch (decode_error_of(msg.status())) {
        case DecodeError::kMalformed:
          if (rejection_log_.allow()) {
            PSTRAIN_LOG(WARNING) << "dropped a malformed message: " << msg.status().message();
          }
          break;
        case DecodeError::kForeign:
          PSTRAIN_LOG(DEBUG) << "ignored a message of another job: " << msg.status().message();
          break;
        case DecodeError::kNone:
          if (msg.status().code() == StatusCode::kCancelled) return msg.status();
          if (msg.status().code() != StatusCode::kDeadlineExceeded) {
            PSTRAIN_LOG(WARNING) << "receive failed: " << msg.status().message();
          }
          break;
      }
    }
    answer_parked(/*expire_all_due=*/true);
    watch_handshakes();
    rejection_log_.flush();  // sums up the lines held back, once a window ends
    check_workers();
    publish_metrics(/*now_anyway=*/false);

    int done = 0, lost = 0;
    std::vector<int> lost_ids, never_came;
    for (int i = 0; i < options_.num_workers; ++i) {
      const WorkerState& w = workers_[static_cast<size_t>(i)];
      done += w.done;
      if (w.lost) {
        ++lost;
        lost_ids.push_back(i);
        if (!w.seen) never_came.push_back(i);
      }
    }
    if (done + lost == options_.num_workers) {
      publish_metrics(/*now_anyway=*/true);
      ServerSummary summary;
      summary.final_step = store_.step();
      summary.workers_done = done;
      summary.workers_lost = lost_ids;
      summary.stats = stats();
      if (lost == 0) {
        PSTRAIN_LOG(INFO) << "all " << done << " worker(s) done at global step " << store_.step()
                          << "; parameter server " << options_.ps_index << " exits";
        return summary;
      }
      if (done > 0 && never_came.empty()) {
        // Training reached its end (a worker says DONE only then): losing a task on the way
        // is worth a warning, not a failed job. (One that never came is more likely a wrong
        // host list: that stays an error.)
        PSTRAIN_LOG(WARNING) << "worker(s) " << worker_list(lost_ids)
                             << " stopped sending messages (lost); the other " << done
                             << " finished training at global step " << store_.step()
                             << "; parameter server " << options_.ps_index << " exits";
        return summary;
      }
      return unavailable("worker(s) " + worker_list(lost_ids) +
                         " stopped sending messages (lost) and none finished training; "
                         "parameter server " +
                         std::to_string(options_.ps_index) + " exits at global step " +
                         std::to_string(store_.step()));
    }
  }
}

void ParameterServer::handle(InMessage& msg) {
  if (monitor_) monitor_->note_message(msg.source_fd, /*worker=*/false);
  const wire::Header& h = msg.header;
  const int sender = h.sender();
  const bool from_worker = sender >= 0 && sender < options_.num_workers;
  if (h.kind() != wire::STATUS && !from_worker) {
    counters_.malformed.fetch_add(1);
    reply_error(msg, "sender " + std::to_string(sender) + " is not a worker of this job (" +
                         std::to_string(options_.num_workers) + " workers)");
    return;
  }
  if (from_worker) {
    std::string connection(static_cast<const char*>(msg.routing_id.data()), msg.routing_id.size());
    auto [it, inserted] = connection_owner_.try_emplace(connection, sender);
    if (inserted) {
      connection_order_.push_back(std::move(connection));
      const size_t cap = 64 + 8 * static_cast<size_t>(options_.num_workers);
      while (connection_order_.size() > cap) {
        connection_owner_.erase(connection_order_.front());
        connection_order_.pop_front();
      }
    } else if (it->second != sender) {
      counters_.malformed.fetch_add(1);
      reply_error(msg, "this connection speaks for worker " + std::to_string(it->second) +
                           ", not worker " + std::to_string(sender));
      return;
    }
    WorkerState& w = workers_[static_cast<size_t>(sender)];
    if (!claim_worker(msg, sender)) return;
    if (monitor_) monitor_->note_message(msg.source_fd, /*worker=*/true);
    if (w.lost) {
      PSTRAIN_LOG(WARNING) << "worker " << sender << " is back after being declared lost";
      w.lost = false;
      update_replicas();
    }
    if (!w.seen) {
      const std::string over = connection_transport(msg.source_fd);
      PSTRAIN_LOG(INFO) << "worker " << sender << " connected"
                        << (over.empty() ? "" : " over " + over);
    }
    w.seen = true;
    w.last_seen = Clock::now();
  }
  switch (h.kind()) {
    case wire::HELLO: {
      if (awaiting_init_ && h.config().layout_hash() != config_->layout_hash) {
        const Status st = invalid_argument(
            "the checkpoint " + restore_file_ + " has another variable layout than worker " +
            std::to_string(sender) +
            " (another --model, --hidden_units or cluster); use another --checkpoint_dir (or "
            "empty this one) to start afresh");
        reply_error(msg, st.message());
        // The chief's word ends this PS (exit 2); another worker is only refused.
        if (sender == 0) fatal_ = st;
        return;
      }
      if (config_ && h.config().layout_hash() != config_->layout_hash) {
        reply_error(msg, "worker " + std::to_string(sender) +
                             " lays out the variables differently from the chief (check that "
                             "every task has the same --model, --hidden_units and cluster)");
        return;
      }
      // --transport=shm: map the worker's segment now, and say whether that worked (if not,
      // the worker sends its tensors inline).
      OutMessage out = make_reply(wire::REPLY_OK, h.request_id());
      if (h.has_shm()) {
        auto seg = shm_segment_of(msg);
        out.header.set_shm_attached(seg.ok());
        if (!seg.ok()) {
          out.header.set_shm_error(seg.status().message());
          PSTRAIN_LOG(WARNING) << "worker " << sender
                               << " asked for shared memory: " << seg.status().message();
        }
      }
      // Restored from a checkpoint, not yet confirmed by an INIT: "not initialised", so the
      // chief of a job started again sends INIT (its config then applies).
      if (awaiting_init_) out.header.set_initialized(false);
      send_to(msg.routing_id, std::move(out), "reply", sender);
      return;
    }
    case wire::INIT:
      on_init(msg);
      return;
    case wire::PULL:
      on_pull(msg);
      return;
    case wire::PUSH:
      if (h.more_parts()) {
        on_push_part(msg);
      } else {
        on_push(msg);
      }
      return;
    case wire::HEARTBEAT:
      reply(msg, wire::REPLY_OK);
      return;
    case wire::DONE: {
      WorkerState& w = workers_[static_cast<size_t>(sender)];
      if (!w.done) PSTRAIN_LOG(INFO) << "worker " << sender << " is done";
      w.done = true;
      w.partial = {};
      reply(msg, wire::REPLY_OK);
      update_replicas();
      return;
    }
    case wire::SAVE:
      on_save(msg);
      return;
    case wire::STATUS: {
      OutMessage out;
      *out.header.mutable_stats() = stats();
      reply(msg, wire::REPLY_OK, std::move(out));
      return;
    }
    default:
      counters_.malformed.fetch_add(1);
      reply_error(msg, "a " + wire::Kind_Name(h.kind()) + " is not a request");
      return;
  }
}

void ParameterServer::on_init(InMessage& msg) {
  const wire::Header& h = msg.header;
  if (awaiting_init_) {
    adopt_init(msg);
    return;
  }
  if (config_) {
    if (h.config().layout_hash() != config_->layout_hash) {
      reply_error(msg, "variables are already initialised with another layout");
    } else {
      reply(msg, wire::REPLY_OK);
    }
    return;
  }
  if (h.sender() != 0) {
    reply_error(msg, "only the chief (worker 0) initialises variables");
    return;
  }
  auto config = JobTrainingConfig::from_wire(h.config());
  if (!config.ok()) {
    reply_error(msg, config.status().message());
    return;
  }
  if (config->num_workers != options_.num_workers) {
    reply_error(msg, "the chief counts " + std::to_string(config->num_workers) +
                         " workers, this parameter server's cluster has " +
                         std::to_string(options_.num_workers));
    return;
  }
  const AggregationConfig agg{config->sync_replicas, config->replicas_to_aggregate,
                              config->train_steps};
  std::vector<ChunkInit> chunks;
  chunks.reserve(msg.num_frames());
  for (size_t i = 0; i < msg.num_frames(); ++i) {
    ChunkInit ci;
    ci.key = msg.frame_info(i).key();
    ci.values.resize(msg.frame_info(i).count());
    Status st = msg.copy_frame_f32(i, ci.values);
    if (!st.ok()) {
      reply_error(msg, st.message());
      return;
    }
    chunks.push_back(std::move(ci));
  }
  Status st;
  if (restore_from_) {
    st = check_restorable(*restore_from_, *config, options_.num_ps, restore_file_);
    if (st.ok()) {
      // The chunks must be the ones INIT sends (the layout hash says so; check anyway).
      bool same = restore_from_->chunks.size() == chunks.size();
      for (size_t i = 0; same && i < chunks.size(); ++i) {
        same = restore_from_->chunks[i].key == chunks[i].key &&
               restore_from_->chunks[i].values.size() == chunks[i].values.size();
      }
      if (!same) {
        st = invalid_argument("the checkpoint " + restore_file_ +
                              " holds other chunks than the chief sends; use another "
                              "--checkpoint_dir to start afresh");
      }
    }
    if (!st.ok()) {
      reply_error(msg, st.message());
      fatal_ = st;
      return;
    }
    restored_step_ = restore_from_->step;
    st = restore_store(store_, std::move(*restore_from_), *config);
    restore_from_.reset();
    if (st.ok()) {
      PSTRAIN_LOG(INFO) << "parameter server " << options_.ps_index << " resumed from "
                        << restore_file_ << " at global step " << store_.step();
    }
  } else {
    st = store_.initialize(config->optimizer, agg, std::move(chunks));
  }
  if (!st.ok()) {
    reply_error(msg, st.message());
    return;
  }
  configured_replicas_ = agg.sync ? agg.replicas_to_aggregate : 1;
  staleness_ = config->staleness;  // 0 when sync (checked by from_wire)
  config_ = std::move(*config);
  update_replicas();
  PSTRAIN_LOG(INFO) << "initialised by the chief: " << config_->describe() << "; "
                    << store_.num_chunks() << " chunks, " << store_.parameter_bytes() << " bytes";
  tighten_frame_cap();
  reply(msg, wire::REPLY_OK);
  answer_parked(/*expire_all_due=*/false);
}

void ParameterServer::adopt_init(InMessage& msg) {
  const wire::Header& h = msg.header;
  if (h.sender() != 0) {
    reply_error(msg, "only the chief (worker 0) initialises variables");
    return;
  }
  auto config = JobTrainingConfig::from_wire(h.config());
  if (!config.ok()) {
    reply_error(msg, config.status().message());
    return;
  }
  checkpoint::ShardData held;  // what the restored variables are, for the comparison
  held.model = config_->model;
  held.num_ps = options_.num_ps;
  held.layout_hash = config_->layout_hash;
  held.optimizer = optimizer_name(config_->optimizer.kind);
  Status st = config->num_workers == options_.num_workers
                  ? check_restorable(held, *config, options_.num_ps, restore_file_)
                  : invalid_argument("the chief counts " + std::to_string(config->num_workers) +
                                     " workers, this parameter server's cluster has " +
                                     std::to_string(options_.num_workers));
  if (!st.ok()) {
    reply_error(msg, st.message());
    fatal_ = st;
    return;
  }
  const AggregationConfig agg{config->sync_replicas, config->replicas_to_aggregate,
                              config->train_steps};
  if (restore_from_ && store_.counters().updates == 0 && store_.pending() == 0) {
    // Nothing changed since the restore: start again from the checkpoint under the new config.
    store_ = ShardStore();
    st = restore_store(store_, std::move(*restore_from_), *config);
  } else {
    st = store_.reconfigure(config->optimizer, agg);
  }
  restore_from_.reset();
  if (!st.ok()) {
    reply_error(msg, st.message());
    fatal_ = st;
    return;
  }
  configured_replicas_ = agg.sync ? agg.replicas_to_aggregate : 1;
  staleness_ = config->staleness;
  config_ = std::move(config).value();
  awaiting_init_ = false;
  update_replicas();
  PSTRAIN_LOG(INFO) << "the chief's INIT confirmed the restored variables at global step "
                    << store_.step() << ": " << config_->describe();
  tighten_frame_cap();
  reply(msg, wire::REPLY_OK);
  answer_parked(/*expire_all_due=*/false);
}

Result<std::shared_ptr<ShmSegment>> ParameterServer::shm_segment_of(const InMessage& msg) {
  const wire::ShmSegment& id = msg.header.shm();
  if (id.token() == 0) return invalid_argument("the request names no shared-memory segment");
  const int peer = peer_pid(msg.source_fd);
  if (peer < 0 || static_cast<uint32_t>(peer) != id.pid()) {
    return invalid_argument(
        "shared memory of process " + std::to_string(id.pid()) + " named on " +
        (peer < 0 ? std::string("a connection that is not a Unix socket")
                  : "the connection of process " + std::to_string(peer)) +
        ": a PS maps only its peer's own segment (--transport=shm needs the worker and the PS "
        "on one machine)");
  }
  for (const auto& seg : shm_segments_) {
    if (seg->pid() == id.pid() && seg->fd() == id.fd() && seg->token() == id.token()) return seg;
  }
  PSTRAIN_ASSIGN_OR_RETURN(std::shared_ptr<ShmSegment> seg,
                           ShmSegment::attach(id.pid(), id.fd(), id.token()));
  // Bounded: the segments of processes that are gone go first, then the oldest.
  std::erase_if(shm_segments_, [](const std::shared_ptr<ShmSegment>& s) {
    return kill(static_cast<pid_t>(s->pid()), 0) != 0 && errno == ESRCH;
  });
  const size_t cap = 8 + 4 * static_cast<size_t>(options_.num_workers);
  while (shm_segments_.size() >= cap) shm_segments_.pop_front();
  shm_segments_.push_back(seg);
  PSTRAIN_LOG(INFO) << "worker " << msg.header.sender() << " sends its tensors through shared "
                    << "memory (a " << seg->bytes().size() / 1024 << " KB segment of process "
                    << id.pid() << ")";
  return seg;
}

ParameterServer::ShmReply ParameterServer::shm_reply_of(const InMessage& msg) {
  const wire::ShmSegment& id = msg.header.shm();
  if (id.token() == 0 || id.reply_size() == 0) return {};
  auto seg = shm_segment_of(msg);
  if (!seg.ok()) {
    if (rejection_log_.allow()) {
      PSTRAIN_LOG(WARNING) << "answering worker " << msg.header.sender()
                           << " inline: " << seg.status().message();
    }
    return {};
  }
  const uint64_t size = (*seg)->bytes().size();
  if (id.reply_offset() > size || id.reply_size() > size - id.reply_offset()) return {};
  return {.segment = *seg, .offset = id.reply_offset(), .size = id.reply_size()};
}

void ParameterServer::answer_not_ready(const zmq::message_t& routing_id, uint64_t request_id,
                                       int worker, std::optional<bool> pushed) {
  OutMessage out = make_reply(wire::REPLY_NOT_READY, request_id);
  if (pushed) out.header.set_accepted(*pushed);
  send_to(routing_id, std::move(out), "not-ready reply", worker);
}

void ParameterServer::answer_pull(const zmq::message_t& routing_id, uint64_t request_id, int worker,
                                  const ShmReply& shm, std::optional<bool> pushed,
                                  uint64_t part_bytes, std::span<const zmq::message_t> lanes) {
  OutMessage out = make_reply(wire::REPLY_PARAMS, request_id);
  if (pushed) out.header.set_accepted(*pushed);
  if (shm.segment != nullptr) {
    // Back to back: a worker whose parameters live in the reply region (ps/client.h) then
    // finds this PS's chunks where its flat layout has them, and copies nothing.
    out.shm = {.base = shm.segment->bytes().data(),
               .offset = shm.offset,
               .size = shm.size,
               .packed = true,
               .copy = copy_parallel};
  }
  out.frames.reserve(store_.num_chunks());
  if (shm.written) {
    // Named where the update wrote them; send_message() finds every frame in place.
    auto* at = reinterpret_cast<const float*>(shm.segment->bytes().data() + shm.offset);
    for (size_t i = 0; i < store_.num_chunks(); ++i) {
      const auto count = static_cast<size_t>(store_.count(i));
      out.frames.push_back(f32_frame(store_.key(i), {at, count}, shm.segment));
      at += count;
    }
    send_to(routing_id, std::move(out), "parameters", worker);
    return;
  }
  PartsReply r = plan_parts(shm.segment != nullptr ? 0 : part_bytes);
  r.lanes = lanes;
  send_parts(routing_id, request_id, worker, pushed, r, r.total, &out);
}

ParameterServer::PartsReply ParameterServer::plan_parts(uint64_t part_bytes) const {
  PartsReply r;
  for (size_t i = 0; i < store_.num_chunks(); ++i)
    r.total += static_cast<uint64_t>(store_.count(i));
  const uint64_t part_values = std::max<uint64_t>(part_bytes / sizeof(float), 1);
  r.parts = part_bytes == 0 ? 1
                            : std::clamp<uint64_t>((r.total + part_values - 1) / part_values, 1,
                                                   kMaxReplyParts);
  return r;
}

void ParameterServer::send_parts(const zmq::message_t& routing_id, uint64_t request_id, int worker,
                                 std::optional<bool> pushed, PartsReply& r, uint64_t through,
                                 OutMessage* last) {
  // Part k holds the values [k * total / parts, (k + 1) * total / parts) of the chunks laid
  // end to end: ranges of chunks, in order, each value once.
  while (r.sent < r.parts) {
    const uint64_t k = r.sent;
    const bool is_last = k + 1 == r.parts;
    const uint64_t end = (k + 1) * r.total / r.parts;
    if (end > through || (is_last && through < r.total)) return;
    OutMessage part =
        is_last && last != nullptr ? std::move(*last) : make_reply(wire::REPLY_PARAMS, request_id);
    if (pushed) part.header.set_accepted(*pushed);
    part.header.set_more_parts(!is_last);
    if (is_last) part.header.set_parts_before(static_cast<uint32_t>(r.parts - 1));
    if (!r.lanes.empty()) part.header.set_part_index(static_cast<uint32_t>(k));
    if (is_last && r.lost) part.header.set_parts_lost(true);
    uint64_t left = end - k * r.total / r.parts;
    while (r.chunk < store_.num_chunks() && (left > 0 || is_last)) {
      std::shared_ptr<const std::vector<float>> values = store_.values(r.chunk);
      const uint64_t count =
          std::min<uint64_t>(values->size() - r.offset, is_last ? values->size() : left);
      std::span<const float> view = std::span<const float>(*values).subspan(
          static_cast<size_t>(r.offset), static_cast<size_t>(count));
      OutFrame f = f32_frame(store_.key(r.chunk), view, std::move(values));
      f.offset = r.offset;
      part.frames.push_back(std::move(f));
      left -= std::min(left, count);
      r.offset += count;
      if (r.offset == static_cast<uint64_t>(store_.count(r.chunk))) {
        ++r.chunk;
        r.offset = 0;
      }
    }
    ++r.sent;
    // (Over the worker's connections in turn; the last part on the request's.)
    const uint64_t lane = is_last ? 0 : k % (r.lanes.size() + 1);
    if (!send_to(lane == 0 ? routing_id : r.lanes[lane - 1], std::move(part), "parameters",
                 worker)) {
      r.lost = true;
    }
  }
}

void ParameterServer::on_pull(InMessage& msg, std::optional<bool> pushed, const ShmReply* shm,
                              std::span<const zmq::message_t> lanes) {
  const wire::Header& h = msg.header;
  if (chief_lost_) {
    reply_error(msg, kChiefLost);
    return;
  }
  ShmReply target = shm != nullptr ? *shm : shm_reply_of(msg);
  if (pull_ready(h.sender(), h.min_step())) {
    answer_pull(msg.routing_id, h.request_id(), h.sender(), target, pushed, h.reply_part_bytes(),
                lanes);
    return;
  }
  target.written = false;  // parked: the values may change before it is answered
  // Bounded: a worker has one PULL outstanding; beyond kMaxParkedPullsPerWorker the oldest of
  // its parked ones is answered "not ready" (a client that still waits for it asks again).
  int mine = 0;
  for (const ParkedPull& q : parked_) mine += q.worker == h.sender();
  if (mine >= kMaxParkedPullsPerWorker) {
    for (auto it = parked_.begin(); it != parked_.end(); ++it) {
      if (it->worker != h.sender()) continue;
      answer_not_ready(it->routing_id, it->request_id, it->worker, it->pushed);
      parked_.erase(it);
      break;
    }
  }
  ParkedPull p;
  p.routing_id.copy(msg.routing_id);
  p.request_id = h.request_id();
  p.worker = h.sender();
  p.min_step = h.min_step();
  p.expires = Clock::now() + options_.long_poll;
  p.shm = std::move(target);
  p.pushed = pushed;
  p.part_bytes = h.reply_part_bytes();
  for (const zmq::message_t& lane : lanes) p.lanes.emplace_back(lane.data(), lane.size());
  parked_.push_back(std::move(p));
}

bool ParameterServer::pull_ready(int worker, int64_t min_step) const {
  if (!store_.initialized()) return false;
  if (store_.finished()) return true;
  if (store_.step() < min_step) return false;
  if (staleness_ > 0) {
    int64_t slowest = -1;
    for (const WorkerState& w : workers_) {
      if (w.done || w.lost) continue;
      if (slowest < 0 || w.pushes < slowest) slowest = w.pushes;
    }
    const int64_t mine = workers_[static_cast<size_t>(worker)].pushes;
    if (slowest >= 0 && mine - slowest > staleness_) return false;
  }
  return true;
}

void ParameterServer::answer_parked(bool expire_all_due) {
  const auto now = Clock::now();
  for (auto it = parked_.begin(); it != parked_.end();) {
    const bool ready = pull_ready(it->worker, it->min_step);
    if (ready) {
      answer_pull(it->routing_id, it->request_id, it->worker, it->shm, it->pushed, it->part_bytes,
                  it->lanes);
    } else if (chief_lost_) {
      OutMessage out = make_reply(wire::REPLY_ERROR, it->request_id);
      out.header.set_error(kChiefLost);
      send_to(it->routing_id, std::move(out), "error", it->worker);
    } else if (expire_all_due && now >= it->expires) {
      answer_not_ready(it->routing_id, it->request_id, it->worker, it->pushed);
    } else {
      ++it;
      continue;
    }
    it = parked_.erase(it);
  }
}

void ParameterServer::on_push_part(InMessage& msg) {
  const wire::Header& h = msg.header;
  WorkerState::PartialPush& partial = workers_[static_cast<size_t>(h.sender())].partial;
  std::string session = session_of(msg.routing_id);
  if (partial.session != session || partial.step != h.step()) {
    // A new PUSH: the parts of an earlier one that never completed (its worker gave it up)
    // go.
    partial = {};
    partial.session = std::move(session);
    partial.step = h.step();
  }
  partial.frames += msg.num_frames();
  if (msg.num_frames() == 0 || partial.frames > store_.num_chunks() + kMaxPushStripes) {
    counters_.malformed.fetch_add(1);
    const size_t frames = partial.frames;
    partial = {};
    reply_error(msg, !store_.initialized() ? "PUSH before the chief initialised the variables"
                                           : "a PUSH in parts carries " + std::to_string(frames) +
                                                 " frames by now; this parameter server holds " +
                                                 std::to_string(store_.num_chunks()) + " chunks");
    return;
  }
  partial.finite.push_back(all_values_finite(msg));
  partial.parts.push_back(std::move(msg));
  // The last part came first (over another connection) and waited for this one.
  if (partial.last && partial.parts.size() == partial.last->header.parts_before()) {
    InMessage last = std::move(*partial.last);
    const bool finite = partial.last_finite;
    partial.last.reset();
    on_push(last, finite);
  }
}

void ParameterServer::on_push(InMessage& msg, bool checked_finite) {
  const wire::Header& h = msg.header;
  reply_lanes_.clear();
  WorkerState::PartialPush& partial = workers_[static_cast<size_t>(h.sender())].partial;
  if (!store_.initialized()) {
    partial = {};
    reply_error(msg, "PUSH before the chief initialised the variables");
    return;
  }
  // The PUSH's frames: those of its earlier parts (in the order they came), then its own.
  struct PushFrame {
    const InMessage* message = nullptr;
    size_t index = 0;
    bool known_finite = false;  // (checked when its part came)
  };
  std::vector<PushFrame> frames;
  if (h.parts_before() > 0) {
    std::string session = session_of(msg.routing_id);
    const bool same = partial.step == h.step() && partial.session == session;
    const size_t held = same ? partial.parts.size() : 0;
    // Parts sent on this part's connection came before it: those not held are lost (the PS
    // was restarted in between). Those sent over the worker's other connections may still be
    // on their way: this part waits for them.
    const size_t held_here = same ? static_cast<size_t>(std::count_if(
                                        partial.parts.begin(), partial.parts.end(),
                                        [&](const InMessage& p) {
                                          return same_routing_id(p.routing_id, msg.routing_id);
                                        }))
                                  : 0;
    const uint32_t elsewhere = std::min(h.parts_elsewhere(), h.parts_before());
    if (held_here < h.parts_before() - elsewhere || held > h.parts_before()) {
      partial = {};
      reply_error(msg, std::string(kPushPartsMissing) + ": the PUSH of step " +
                           std::to_string(h.step()) + " came in " +
                           std::to_string(h.parts_before() + 1) +
                           " parts and this parameter "
                           "server holds " +
                           std::to_string(held) +
                           " of the earlier ones (was it restarted?); send it whole");
      return;
    }
    if (held < h.parts_before()) {
      if (!same) {
        partial = {};
        partial.session = std::move(session);
        partial.step = h.step();
      }
      partial.last_finite = all_values_finite(msg);
      partial.last = std::move(msg);
      return;
    }
    for (size_t k = 0; k < partial.parts.size(); ++k) {
      const InMessage& part = partial.parts[k];
      const bool finite = k < partial.finite.size() && partial.finite[k];
      for (size_t i = 0; i < part.num_frames(); ++i) frames.push_back({&part, i, finite});
    }
    // Header.reply_lanes: the connections the stripes came on (of this PUSH's session), each
    // once, may carry parts of the reply.
    const size_t lanes = std::min<size_t>(h.reply_lanes(), kMaxPushStripes);
    for (const InMessage& part : partial.parts) {
      if (!h.then_pull() || reply_lanes_.size() >= lanes) break;
      if (same_routing_id(part.routing_id, msg.routing_id)) continue;
      if (std::any_of(reply_lanes_.begin(), reply_lanes_.end(), [&](const zmq::message_t& l) {
            return same_routing_id(l, part.routing_id);
          })) {
        continue;
      }
      reply_lanes_.emplace_back(part.routing_id.data(), part.routing_id.size());
    }
  } else {
    partial = {};
  }
  for (size_t i = 0; i < msg.num_frames(); ++i) frames.push_back({&msg, i, checked_finite});
  if (h.parts_before() > 0) {
    // Parts come in the order backward finished them, or over several connections: put the
    // frames in this PS's order, chunk by chunk, a chunk's ranges by offset (check_layout
    // below then finds any chunk or range missing or sent twice).
    if (chunk_slot_.size() != store_.num_chunks()) {
      chunk_slot_.clear();
      for (size_t i = 0; i < store_.num_chunks(); ++i) chunk_slot_.emplace(store_.key(i), i);
    }
    std::vector<std::pair<size_t, uint64_t>> place(frames.size());
    bool known = true;
    for (size_t j = 0; j < frames.size() && known; ++j) {
      const wire::FrameInfo& f = frames[j].message->frame_info(frames[j].index);
      auto slot = chunk_slot_.find(f.key());
      known = slot != chunk_slot_.end();
      if (known) place[j] = {slot->second, f.offset()};
    }
    // (A key unknown: the frames stay as they came and fail the check.)
    if (known) {
      std::vector<size_t> order(frames.size());
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return place[a] < place[b]; });
      std::vector<PushFrame> ordered;
      ordered.reserve(frames.size());
      for (size_t j : order) ordered.push_back(frames[j]);
      frames = std::move(ordered);
    }
  }
  std::vector<std::string> keys;
  std::vector<int64_t> offsets;
  std::vector<int64_t> counts;
  std::vector<GradientView> views;
  for (const auto& [m, i, known_finite] : frames) {
    const wire::FrameInfo& f = m->frame_info(i);
    FloatFormat format = FloatFormat::kFloat32;  // float32, or 16 bits with --compress
    if (!float_format_of(f.dtype(), &format)) {
      counters_.malformed.fetch_add(1);
      partial = {};
      reply_error(msg, "gradient frame '" + f.key() + "' holds " + dtype_name(f.dtype()) +
                           ", not float32, float16 or bfloat16");
      return;
    }
    keys.push_back(f.key());
    offsets.push_back(static_cast<int64_t>(f.offset()));
    counts.push_back(static_cast<int64_t>(f.count()));
    views.push_back({m->frame_bytes(i).data(), static_cast<int64_t>(f.count()), format,
                     offsets.back(), known_finite});
  }
  Status layout = store_.check_layout(keys, offsets, counts);
  if (!layout.ok()) {
    counters_.malformed.fetch_add(1);
    partial = {};
    reply_error(msg,
                "gradients do not match this parameter server's variables: " + layout.message());
    return;
  }
  // A PUSH answered with the parameters in the worker's segment: the update writes them into
  // the reply region as it makes them (unless the region overlaps the gradients it reads).
  ShmReply reply_shm;
  ShardStore::WriteThrough through;
  if (h.then_pull() && !chief_lost_) {
    reply_shm = shm_reply_of(msg);
    if (reply_shm.segment != nullptr) {
      std::byte* first = reply_shm.segment->bytes().data() + reply_shm.offset;
      std::byte* last = first + reply_shm.size;
      const bool overlaps = std::any_of(views.begin(), views.end(), [&](const GradientView& g) {
        const auto* data = static_cast<const std::byte*>(g.data);
        const size_t bytes = static_cast<size_t>(g.count) * float_format_size(g.format);
        return std::less<>()(data, last) && std::less<>()(first, data + bytes);
      });
      const bool aligned = reinterpret_cast<uintptr_t>(first) % alignof(float) == 0;
      if (aligned && !overlaps) through.bytes = {first, last};
    }
  }
  // Asynchronous, its pull half answered at once and over the wire in parts: each part goes as
  // soon as the update has made its values, while the update goes on with the next.
  std::optional<PartsReply> early;
  ShardStore::UpdateProgress progress;
  if (h.then_pull() && !chief_lost_ && reply_shm.segment == nullptr && config_ &&
      !config_->sync_replicas && staleness_ == 0 && h.reply_part_bytes() > 0 &&
      store_.step() + 1 >= h.min_step()) {
    early = plan_parts(h.reply_part_bytes());
    early->lanes = reply_lanes_;
    if (early->parts > 1) {
      progress.step_values = (early->total + early->parts - 1) / early->parts;
      progress.done = [&](uint64_t final_values) {
        // (Never the last part here: it carries the step, which moves once the update ends.)
        send_parts(msg.routing_id, h.request_id(), h.sender(), true, *early,
                   std::min(final_values, early->total - 1), nullptr);
      };
    }
  }
  const int64_t before = store_.step();
  const PushOutcome outcome =
      store_.push(h.sender(), h.step(), views, through.bytes.empty() ? nullptr : &through,
                  progress.done ? &progress : nullptr);
  reply_shm.written = through.written;
  partial = {};  // (the views above point into its parts)
  WorkerState& pusher = workers_[static_cast<size_t>(h.sender())];
  ++pusher.pushes;
  if (outcome == PushOutcome::kNonFinite) {
    ++pusher.non_finite;
    ++pusher.non_finite_streak;
    // Named at the first one, the third in a row, then every 100th: the log stays bounded.
    if (pusher.non_finite == 1 || pusher.non_finite_streak == 3 || pusher.non_finite % 100 == 0) {
      PSTRAIN_LOG(WARNING) << "refused a gradient of worker " << h.sender() << " at step "
                           << h.step() << " holding NaN or Inf (" << pusher.non_finite_streak
                           << " in a row, " << pusher.non_finite << " in all)"
                           << (pusher.non_finite_streak >= 3
                                   ? ": its training keeps diverging; usually --learning_rate "
                                     "is too high for it"
                                   : "");
    }
  } else {
    pusher.non_finite_streak = 0;
  }
  if (outcome != PushOutcome::kApplied && outcome != PushOutcome::kAccumulated) {
    PSTRAIN_LOG(DEBUG) << "gradient of worker " << h.sender() << " at step " << h.step()
                       << " dropped (" << push_outcome_name(outcome) << ", step " << before << ")";
  }
  if (store_.step() != before) {
    save_if_due();
    restore_from_.reset();  // the restored copy is not needed once training moved on
  }
  const bool accepted = outcome == PushOutcome::kApplied || outcome == PushOutcome::kAccumulated;
  // The parked pulls first (this PUSH may have completed their step), then this one's own
  // pull half, answered at once when its step is there, or parked.
  if (store_.step() != before || staleness_ > 0) answer_parked(/*expire_all_due=*/false);
  if (h.then_pull() && early && early->sent > 0) {
    // (The update made every value: the parts left, the last one with this step.)
    send_parts(msg.routing_id, h.request_id(), h.sender(), accepted, *early, early->total, nullptr);
    return;
  }
  if (h.then_pull()) {
    on_pull(msg, accepted, &reply_shm, reply_lanes_);
    return;
  }
  OutMessage out;
  out.header.set_accepted(accepted);
  reply(msg, wire::REPLY_OK, std::move(out));
}

bool ParameterServer::connection_alive(const std::string& connection) {
  // A ROUTER_MANDATORY send to a routing id whose connection is gone fails with EHOSTUNREACH
  // (kUnavailable). The probe is a reply to request 0, which no client ever sends (their ids
  // start at 1), so a live worker ignores it. A full pipe (kDeadlineExceeded) is connected.
  OutMessage probe = make_reply(wire::REPLY_NOT_READY, 0);
  zmq::message_t rid(connection.data(), connection.size());
  const Status st = send_message(socket_, std::move(probe), &rid, &counters_);
  return st.code() != StatusCode::kUnavailable;
}

bool ParameterServer::claim_worker(const InMessage& msg, int sender) {
  WorkerState& w = workers_[static_cast<size_t>(sender)];
  std::string connection(static_cast<const char*>(msg.routing_id.data()), msg.routing_id.size());
  std::string session = session_of(msg.routing_id);
  auto remember = [&w](std::string c) {
    if (std::find(w.connections.begin(), w.connections.end(), c) != w.connections.end()) return;
    w.connections.push_back(std::move(c));
    if (w.connections.size() > 8) w.connections.erase(w.connections.begin());
  };
  if (w.session.empty() || w.session == session) {
    w.session = std::move(session);
    remember(std::move(connection));
    return true;
  }
  // Another process claims this worker's index. It takes the index over when the owner is
  // gone: declared lost (no message for heartbeat_timeout), or every connection of its session
  // closed (a worker killed and started again). The probe is sent at most every 100 ms per
  // worker, so a flood of claims does not become a flood of probes.
  const auto now = Clock::now();
  if (!w.lost && now - w.last_probe >= std::chrono::milliseconds(100)) {
    w.last_probe = now;
    w.owner_alive = false;
    for (const std::string& c : w.connections) {
      if (connection_alive(c)) {
        w.owner_alive = true;
        break;
      }
    }
  }
  if (w.lost || !w.owner_alive) {
    PSTRAIN_LOG(INFO) << "worker " << sender << " speaks on a new connection (the old one "
                      << (w.lost ? "was lost" : "closed") << ")";
    w.session = std::move(session);
    w.connections.clear();
    w.owner_alive = true;
    remember(std::move(connection));
    return true;
  }
  ++identity_refused_;
  counters_.malformed.fetch_add(1);
  reply_error(msg, std::string(kWorkerIndexInUse) + ": worker " + std::to_string(sender) +
                       " is connected to parameter server " + std::to_string(options_.ps_index) +
                       " from another live process (two tasks with the same --task_index, or "
                       "a process outside the job)");
  return false;
}

void ParameterServer::watch_handshakes() {
  if (!monitor_) return;
  monitor_->poll();
  if (const int shut = monitor_->evict_over(max_connections_); shut > 0) {
    if (rejection_log_.allow()) {
      PSTRAIN_LOG(WARNING) << "closed " << shut << " connection(s) over the cap of "
                           << max_connections_ << " (" << monitor_->evicted()
                           << " in all; those never heard from first, then the least recently "
                              "heard; never a worker's): many connections from outside the job?";
    }
  }
  if (!options_.keys) return;  // (without CURVE a failed handshake is only garbage)
  unauthenticated_ = monitor_->failed();
  const auto now = Clock::now();
  if (unauthenticated_ == unauthenticated_logged_ ||
      now - last_auth_log_ < std::chrono::seconds(10)) {
    return;
  }
  const std::string from = zap_ ? zap_->last_refused() : std::string();
  PSTRAIN_LOG(WARNING) << "refused " << (unauthenticated_ - unauthenticated_logged_)
                       << " connection(s) without the job's key (" << unauthenticated_ << " in all"
                       << (from.empty() ? "" : "; the last from " + from)
                       << "): a task with another or no --secret_file, or a process outside "
                          "the job";
  unauthenticated_logged_ = unauthenticated_;
  last_auth_log_ = now;
}

void ParameterServer::check_workers() {
  const auto now = Clock::now();
  bool changed = false;
  for (int i = 0; i < options_.num_workers; ++i) {
    WorkerState& w = workers_[static_cast<size_t>(i)];
    if (w.done || w.lost) continue;
    if (w.seen && now - w.last_seen > options_.heartbeat_timeout) {
      PSTRAIN_LOG(WARNING) << "worker " << i << " lost: no message for "
                           << options_.heartbeat_timeout.count() / 1000.0 << " s";
      w.lost = true;
      w.partial = {};
      changed = true;
    } else if (!w.seen && now - started_ > options_.startup_timeout) {
      PSTRAIN_LOG(WARNING) << "worker " << i << " never connected within "
                           << options_.startup_timeout.count() / 1000.0 << " s";
      w.lost = true;
      changed = true;
    }
  }
  if (changed) update_replicas();
  if (!store_.initialized() && workers_[0].lost && !chief_lost_) {
    // Nobody else may initialise the variables: tell every waiting worker instead of letting
    // them wait for an event that cannot come.
    chief_lost_ = true;
    PSTRAIN_LOG(ERROR) << "the chief (worker 0) was lost before it initialised the variables";
    answer_parked(/*expire_all_due=*/false);
  }
}

void ParameterServer::update_replicas() {
  if (!store_.initialized()) return;
  int alive = 0;
  for (const auto& w : workers_) alive += !w.lost;
  const int replicas = std::max(1, std::min(configured_replicas_, alive));
  if (replicas != store_.replicas()) {
    PSTRAIN_LOG(WARNING) << "aggregating " << replicas << " gradient(s) per step instead of "
                         << configured_replicas_ << " while " << (options_.num_workers - alive)
                         << " worker(s) are lost";
    store_.set_replicas(replicas);
  }
  // A step may be complete now; with --staleness, the slowest worker may have changed.
  const bool advanced = store_.complete_pending();
  if (advanced) save_if_due();
  if (advanced || staleness_ > 0) answer_parked(false);
}

void ParameterServer::fill_save_reply(OutMessage& out) const {
  if (!last_save_) return;
  out.header.set_checkpoint_file(last_save_->file);
  out.header.set_checkpoint_bytes(last_save_->bytes);
  out.header.set_checkpoint_crc32(last_save_->crc32);
  out.header.set_checkpoint_step(last_save_->step);
}

void ParameterServer::save_now() {
  const auto start = Clock::now();
  const checkpoint::ShardData shard =
      shard_from_store(store_, *config_, options_.ps_index, options_.num_ps);
  auto info = checkpoint::write_shard(options_.checkpoint_dir, shard);
  if (!info.ok()) {
    save_error_ = info.status().message();
    PSTRAIN_LOG(ERROR) << "parameter server " << options_.ps_index
                       << " cannot write its checkpoint shard: " << save_error_;
    return;
  }
  last_save_ = *info;
  save_error_.clear();
  PSTRAIN_LOG(INFO)
      << "parameter server " << options_.ps_index << " wrote " << info->file << " (" << info->bytes
      << " bytes, global step " << info->step << ") in "
      << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()
      << " ms";
  if (options_.keep_checkpoint_max > 0) {
    // This PS's own older shards beyond the newest keep_checkpoint_max (a PS-local directory
    // has no index for the chief's retention to follow).
    auto listing = checkpoint::list_checkpoints(options_.checkpoint_dir);
    if (listing.ok()) {
      std::vector<int64_t> mine;
      for (const auto& l : *listing) {
        const std::string name =
            checkpoint::shard_file_name(l.step, options_.ps_index, options_.num_ps);
        std::error_code ec;
        if (std::filesystem::exists(std::filesystem::path(options_.checkpoint_dir) / name, ec)) {
          mine.push_back(l.step);
        }
      }
      const int extra = static_cast<int>(mine.size()) - options_.keep_checkpoint_max;
      for (int i = 0; i < extra; ++i) {
        std::error_code ec;
        std::filesystem::remove(std::filesystem::path(options_.checkpoint_dir) /
                                    checkpoint::shard_file_name(mine[static_cast<size_t>(i)],
                                                                options_.ps_index, options_.num_ps),
                                ec);
      }
    }
  }
}

Result<std::optional<checkpoint::ShardFileInfo>> ParameterServer::save_on_stop() {
  if (options_.checkpoint_dir.empty() || !store_.initialized() || !config_) {
    return std::optional<checkpoint::ShardFileInfo>();
  }
  if (last_save_ && last_save_->step == store_.step()) return last_save_;
  save_now();
  if (!save_error_.empty()) return unavailable(save_error_);
  return last_save_;
}

void ParameterServer::save_if_due() {
  if (save_at_ && store_.step() >= *save_at_) {
    save_at_.reset();
    save_now();
  }
}

void ParameterServer::on_save(InMessage& msg) {
  const wire::Header& h = msg.header;
  if (options_.checkpoint_dir.empty()) {
    reply_error(msg, "parameter server " + std::to_string(options_.ps_index) +
                         " has no --checkpoint_dir: give every task the same flag");
    return;
  }
  if (!store_.initialized()) {
    reply_error(msg, "nothing to save before the chief initialised the variables");
    return;
  }
  if (!save_error_.empty()) {
    const std::string error = save_error_;
    save_error_.clear();
    reply_error(msg, error);
    return;
  }
  const int64_t target = h.min_step();
  if (!(last_save_ && last_save_->step >= target)) {
    if (store_.step() >= target) {
      save_at_.reset();
      save_now();
      if (!save_error_.empty()) {
        const std::string error = save_error_;
        save_error_.clear();
        reply_error(msg, error);
        return;
      }
    } else {
      save_at_ = target;  // scheduled: the update that reaches it writes the shard
      reply(msg, wire::REPLY_OK);
      return;
    }
  }
  OutMessage out;
  fill_save_reply(out);
  reply(msg, wire::REPLY_OK, std::move(out));
}

}  // namespace pstrain
