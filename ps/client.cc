#include "ps/client.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>

#include "runtime/base/log.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

// The request sockets' send timeout: a send that cannot be queued returns after this, so the
// handshake monitor is read between tries (exchange()).
constexpr std::chrono::milliseconds kSendSlice{50};

// Counts buffers handed to ZeroMQ without copying; wait() returns once all are released.
// Shared with the keepalives it hands out, so a release that comes after the caller gave up
// waiting (a hung peer) still finds it alive.
class ReleaseTracker : public std::enable_shared_from_this<ReleaseTracker> {
 public:
  // A keepalive for `data` that also keeps `owner` (the buffer's owner) alive until ZeroMQ
  // releases it.
  std::shared_ptr<const void> hold(const void* data, std::shared_ptr<const void> owner) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++in_flight_;
    }
    return std::shared_ptr<const void>(
        data, [self = shared_from_this(), owner = std::move(owner)](const void*) {
          std::lock_guard<std::mutex> lock(self->mu_);
          --self->in_flight_;
          self->cv_.notify_all();
        });
  }
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return in_flight_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;  // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<PsClient>> PsClient::connect(zmq::context_t& ctx,
                                                    const std::vector<HostPort>& ps,
                                                    const Placement& placement,
                                                    ClientOptions options) {
  if (ps.empty()) return invalid_argument("the cluster has no parameter server");
  if (static_cast<int>(ps.size()) != placement.num_ps) {
    return invalid_argument("placement is for " + std::to_string(placement.num_ps) +
                            " parameter servers, the cluster has " + std::to_string(ps.size()));
  }
  std::unique_ptr<PsClient> c(new PsClient(ctx, ps, placement, options));
  for (size_t i = 0; i < ps.size(); ++i) {
    const HostPort& p = ps[i];
    Transport t = options.transport;
    if (t == Transport::kAuto) t = is_this_machine(p.host) ? Transport::kShm : Transport::kTcp;
    std::shared_ptr<ShmSegment> segment;
    uint64_t region = 0;
    if (t == Transport::kShm) {
      // Each region holds the PS's chunks as float32, each at a 64-byte boundary.
      for (int ci : placement.chunks_of_ps[i]) {
        region += (static_cast<uint64_t>(placement.chunks[static_cast<size_t>(ci)].count) *
                       sizeof(float) +
                   63) &
                  ~uint64_t{63};
      }
      region = (region + 4095) & ~uint64_t{4095};
      auto created = ShmSegment::create(2 * region);
      if (!created.ok() && options.transport == Transport::kShm) {
        return created.status().with_context("--transport=shm for " + p.to_string());
      }
      if (!created.ok()) {
        PSTRAIN_LOG(WARNING) << "no shared memory for the PS at " << p.to_string() << " ("
                             << created.status().message() << "): using its Unix socket";
        t = Transport::kIpc;
      } else {
        segment = *created;
      }
    }
    c->transports_.push_back(t);
    c->shm_region_.push_back(region);
    c->shm_resolvers_.emplace_back();
    if (segment != nullptr) {
      c->shm_resolvers_.back() = [segment](const InMessage&) -> Result<ShmView> {
        return ShmView{.bytes = segment->bytes(), .keep = segment};
      };
    }
    c->shm_.push_back(std::move(segment));
    if (t == Transport::kIpc || t == Transport::kShm) {
      PSTRAIN_LOG(INFO) << "ps at " << p.to_string() << " is on this machine: connecting over "
                        << local_endpoint(p.host, p.port)
                        << (t == Transport::kShm ? ", tensors through shared memory" : "")
                        << " (--transport=tcp for TCP)";
    }
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    PSTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<HandshakeMonitor> monitor,
                             HandshakeMonitor::create(ctx));
    SocketOptions so;
    so.curve = c->options_.keys.get();
    so.monitor_endpoint = monitor->endpoint();
    so.routing_id = c->session_ + "/r";
    so.send_timeout = kSendSlice;
    so.transport = c->transports_[i];
    PSTRAIN_ASSIGN_OR_RETURN(zmq::socket_t s,
                             connect_socket(ctx, zmq::socket_type::dealer, ps[i].host, ps[i].port,
                                            c->name(static_cast<int>(i)), so));
    c->monitors_.push_back(std::move(monitor));
    c->sockets_.push_back(std::move(s));
  }
  return c;
}

PsClient::PsClient(zmq::context_t& ctx, std::vector<HostPort> ps, const Placement& placement,
                   ClientOptions options)
    : ctx_(&ctx),
      ps_(std::move(ps)),
      placement_(&placement),
      options_(options),
      incarnation_(ps_.size(), 0) {
  std::random_device rd;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%08x%08x", rd(), rd());
  session_ = std::string(kSessionPrefix) + std::to_string(options_.worker) + "/" + hex;
}

PsClient::~PsClient() { stop_heartbeats(); }

std::vector<int> PsClient::all_ps() const {
  std::vector<int> all(ps_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  return all;
}

std::string PsClient::name(int ps) const {
  return "parameter server ps/" + std::to_string(ps) + " at " +
         ps_[static_cast<size_t>(ps)].to_string();
}

void PsClient::name_segment(OutMessage& m, int ps, bool reply) const {
  const ShmSegment* seg = shm_[static_cast<size_t>(ps)].get();
  if (seg == nullptr) return;
  wire::ShmSegment* id = m.header.mutable_shm();
  id->set_pid(seg->pid());
  id->set_fd(seg->fd());
  id->set_token(seg->token());
  if (reply) {
    id->set_reply_offset(kShmHeaderBytes + shm_region_[static_cast<size_t>(ps)]);
    id->set_reply_size(shm_region_[static_cast<size_t>(ps)]);
  }
}

OutMessage PsClient::request(wire::Kind kind) const {
  OutMessage m;
  m.header.set_kind(kind);
  m.header.set_job_id(options_.job_id);
  m.header.set_sender(options_.worker);
  return m;
}

Status PsClient::exchange(const std::vector<int>& targets,
                          const std::function<OutMessage(int)>& make,
                          const std::function<Result<bool>(int, InMessage&)>& on_reply,
                          std::chrono::milliseconds timeout, bool backoff) {
  struct Pending {
    int ps;
    uint64_t request_id = 0;
    wire::Kind kind = wire::KIND_INVALID;
    Clock::time_point sent;
    Clock::time_point give_up;
    std::chrono::milliseconds retry{250};
    bool finished = false;
    std::optional<Clock::time_point> silent_since;  // ps_restart_timeout: first unanswered send
    std::string in_use;  // the PS's kWorkerIndexInUse refusal, while asking again
    std::optional<Clock::time_point> ask_again_at;
  };
  std::vector<Pending> pending;
  // A request is queued in slices of kSendSlice (the sockets' send timeout) with the
  // handshake monitor read between them: while a PS refuses our handshake (another or no
  // secret) there is no peer to queue for, and the refusal must be reported at once, not
  // after the whole send timeout. `again`: a request asked anew (backoff, a silent PS); it
  // gets one slice, and one that cannot be queued now is asked again later.
  auto send = [&](Pending& p, bool again) -> Status {
    p.request_id = next_request_++;
    zmq::socket_t& socket = sockets_[static_cast<size_t>(p.ps)];
    HandshakeMonitor& monitor = *monitors_[static_cast<size_t>(p.ps)];
    const auto send_deadline = Clock::now() + SocketOptions{}.send_timeout;
    Status st;
    while (true) {
      OutMessage m = make(p.ps);
      p.kind = m.header.kind();
      m.header.set_request_id(p.request_id);
      p.sent = Clock::now();
      st = send_message(socket, std::move(m), nullptr, &counters_);
      if (st.ok()) return st;
      monitor.poll();
      if (auto why = monitor.refusal(options_.keys != nullptr,
                                     options_.keys ? options_.keys->secret_file : std::string(),
                                     name(p.ps))) {
        return invalid_argument(*why);
      }
      if (st.code() != StatusCode::kDeadlineExceeded) break;
      if (again) return {};
      if (Clock::now() >= send_deadline) break;
      if (options_.stop != nullptr && options_.stop->load() != 0) {
        return cancelled("stopped on request while sending to " + name(p.ps));
      }
    }
    return st.with_context("sending to " + name(p.ps));
  };
  const auto start = Clock::now();
  for (int ps : targets) {
    Pending p;
    p.ps = ps;
    p.give_up = start + timeout;
    PSTRAIN_RETURN_IF_ERROR(send(p, /*again=*/false));
    pending.push_back(p);
  }
  std::vector<zmq::pollitem_t> items;
  while (true) {
    items.clear();
    std::vector<size_t> index;
    for (size_t i = 0; i < pending.size(); ++i) {
      if (pending[i].finished) continue;
      items.push_back(
          {static_cast<void*>(sockets_[static_cast<size_t>(pending[i].ps)]), 0, ZMQ_POLLIN, 0});
      index.push_back(i);
    }
    if (items.empty()) return {};
    if (options_.stop != nullptr && options_.stop->load() != 0) {
      return cancelled("stopped on request while waiting for " + name(pending.front().ps));
    }
    const auto now = Clock::now();
    for (Pending& p : pending) {
      if (p.finished) continue;
      if (now >= p.give_up && !backoff && options_.ps_restart_timeout.count() > 0) {
        if (!p.silent_since) {
          p.silent_since = p.sent;
          PSTRAIN_LOG(WARNING) << name(p.ps) << " did not answer within "
                               << timeout.count() / 1000.0 << " s; asking again for up to "
                               << options_.ps_restart_timeout.count() / 1000.0
                               << " s (--ps_restart_timeout_s) in case it is being restarted";
        }
        if (now - *p.silent_since < timeout + options_.ps_restart_timeout) {
          p.give_up = now + timeout;
          PSTRAIN_RETURN_IF_ERROR(send(p, /*again=*/true));
          continue;
        }
        return deadline_exceeded(
            name(p.ps) + " did not answer for " +
            std::to_string((timeout + options_.ps_restart_timeout).count() / 1000) +
            " s (--heartbeat_timeout_s plus --ps_restart_timeout_s)");
      }
      if (now >= p.give_up && !p.in_use.empty()) {
        return failed_precondition(name(p.ps) + " refused " + wire::Kind_Name(p.kind) + ": " +
                                   p.in_use);
      }
      if (now >= p.give_up) {
        if (backoff) {
          return unavailable(
              "cannot reach " + name(p.ps) + ": no answer in " +
              std::to_string(timeout.count() / 1000) +
              " s (is it running? check --ps_hosts or AZ_BATCHAI_PS_HOSTS; a PS of another "
              "pstrain version or job ignores this worker: run the same binary "
              "and --job_id everywhere)");
        }
        return deadline_exceeded(name(p.ps) + " did not answer within " +
                                 std::to_string(timeout.count() / 1000) + " s");
      }
      if (p.ask_again_at && now >= *p.ask_again_at) {
        p.ask_again_at.reset();
        PSTRAIN_RETURN_IF_ERROR(send(p, /*again=*/true));
        continue;
      }
      if (backoff && now - p.sent >= p.retry) {
        PSTRAIN_LOG(DEBUG) << "no answer yet from " << name(p.ps) << "; asking again";
        p.retry = std::min<std::chrono::milliseconds>(p.retry * 2, std::chrono::seconds(4));
        PSTRAIN_RETURN_IF_ERROR(send(p, /*again=*/true));
      }
    }
    for (const Pending& p : pending) {
      if (p.finished) continue;
      HandshakeMonitor& m = *monitors_[static_cast<size_t>(p.ps)];
      m.poll();
      if (auto why =
              m.refusal(options_.keys != nullptr,
                        options_.keys ? options_.keys->secret_file : std::string(), name(p.ps))) {
        return invalid_argument(*why);
      }
    }
    if (options_.ps_restart_timeout.count() == 0) {
      // (With ps_restart_timeout, each request's own deadline decides.)
      const std::string failure = heartbeat_failure();
      if (!failure.empty()) return unavailable(failure);
    }
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(50));
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return cancelled("ZeroMQ context closed");
      if (e.num() != EINTR) return unavailable(std::string("poll failed: ") + e.what());
    }
    for (size_t k = 0; k < items.size(); ++k) {
      if (!(items[k].revents & ZMQ_POLLIN)) continue;
      Pending& p = pending[index[k]];
      const ShmResolver& shm = shm_resolvers_[static_cast<size_t>(p.ps)];
      auto msg = recv_message(sockets_[static_cast<size_t>(p.ps)], std::chrono::milliseconds(0),
                              false, options_.job_id, &counters_, shm ? &shm : nullptr);
      if (!msg.ok()) {
        if (msg.status().code() == StatusCode::kDeadlineExceeded) continue;
        if (msg.status().code() == StatusCode::kCancelled) return msg.status();
        PSTRAIN_LOG(WARNING) << "dropped a bad reply from " << name(p.ps) << ": "
                             << msg.status().message();
        continue;
      }
      if (msg->header.request_id() != p.request_id) continue;  // an answer to an older try
      if (msg->header.kind() == wire::REPLY_ERROR &&
          msg->header.error().starts_with(kWorkerIndexInUse)) {
        if (p.in_use.empty()) {
          PSTRAIN_LOG(WARNING) << name(p.ps) << " refused " << wire::Kind_Name(p.kind) << ": "
                               << msg->header.error() << "; asking again until "
                               << "the old connection is gone";
        }
        p.in_use = msg->header.error();
        p.ask_again_at = Clock::now() + std::chrono::milliseconds(200);
        continue;
      }
      if (msg->header.kind() == wire::REPLY_ERROR) {
        return failed_precondition(name(p.ps) + " refused " + wire::Kind_Name(p.kind) + ": " +
                                   msg->header.error());
      }
      PSTRAIN_ASSIGN_OR_RETURN(bool finished, on_reply(p.ps, *msg));
      if (finished) {
        p.finished = true;
      } else {
        p.give_up = Clock::now() + timeout;
        PSTRAIN_RETURN_IF_ERROR(send(p, /*again=*/false));
      }
    }
  }
}

Result<bool> PsClient::hello(uint64_t layout_hash) {
  bool initialized = true;
  Status st = exchange(
      all_ps(),
      [&](int ps) {
        OutMessage m = request(wire::HELLO);
        m.header.mutable_config()->set_layout_hash(layout_hash);
        name_segment(m, ps, /*reply=*/false);
        return m;
      },
      [&](int ps, InMessage& reply) -> Result<bool> {
        if (reply.header.kind() != wire::REPLY_OK) {
          return data_loss(name(ps) + " answered HELLO with " +
                           wire::Kind_Name(reply.header.kind()));
        }
        const size_t i = static_cast<size_t>(ps);
        if (shm_[i] != nullptr && !reply.header.shm_attached()) {
          const std::string why = reply.header.shm_error().empty()
                                      ? "it does not support shared memory (an older pstrain?)"
                                      : reply.header.shm_error();
          if (options_.transport == Transport::kShm) {
            return invalid_argument("--transport=shm: " + name(ps) +
                                    " cannot map this worker's shared memory: " + why);
          }
          PSTRAIN_LOG(WARNING) << name(ps) << " cannot map this worker's shared memory (" << why
                               << "): sending tensors over its Unix socket";
          shm_[i].reset();
          shm_resolvers_[i] = nullptr;
          transports_[i] = Transport::kIpc;
        }
        initialized = initialized && reply.header.initialized();
        incarnation_[static_cast<size_t>(ps)] = reply.header.ps_incarnation();
        return true;
      },
      options_.connect_timeout, /*backoff=*/true);
  // A PS refuses HELLO for configuration reasons only (another variable layout than the
  // chief's or than its checkpoint): a usage error (exit 2).
  if (st.code() == StatusCode::kFailedPrecondition) return invalid_argument(st.message());
  if (!st.ok()) return st;
  return initialized;
}

Status PsClient::init(const JobTrainingConfig& config, std::span<const float> flat) {
  if (Status st = config.validate(); !st.ok()) return st.with_context("the training config");
  const wire::TrainingConfig wire_config = config.to_wire();
  Status st = exchange(
      all_ps(),
      [&](int ps) {
        OutMessage m = request(wire::INIT);
        *m.header.mutable_config() = wire_config;
        for (int ci : placement_->chunks_of_ps[static_cast<size_t>(ps)]) {
          const Chunk& c = placement_->chunks[static_cast<size_t>(ci)];
          // Copied: INIT happens once, and the caller's buffer may change right after.
          m.frames.push_back(f32_frame(
              c.key, flat.subspan(static_cast<size_t>(c.flat_offset), static_cast<size_t>(c.count)),
              nullptr));
        }
        return m;
      },
      [](int, InMessage&) -> Result<bool> { return true; }, options_.reply_timeout, false);
  // A PS refuses INIT for configuration reasons only (another cluster size, a checkpoint of
  // another model in its --checkpoint_dir): a usage error (exit 2), not a failure.
  if (st.code() == StatusCode::kFailedPrecondition) return invalid_argument(st.message());
  return st;
}

Result<bool> PsClient::take_params(int ps, const InMessage& reply, std::span<float> flat,
                                   PsSteps& mins, PsSteps& steps) {
  uint64_t& known = incarnation_[static_cast<size_t>(ps)];
  const uint64_t now_running = reply.header.ps_incarnation();
  if (known != 0 && now_running != 0 && now_running != known) {
    // Another process answers: the PS was restarted, from its checkpoint (or from
    // nothing). Continue from the step it is at now: what this worker sent the old one
    // after that step is lost.
    int64_t& min = mins[static_cast<size_t>(ps)];
    PSTRAIN_LOG(WARNING) << name(ps) << " was restarted; it is at global step "
                         << reply.header.step() << " (this worker asked for " << min << ")";
    min = std::min(min, reply.header.step());
  }
  if (now_running != 0) known = now_running;
  if (reply.header.kind() == wire::REPLY_NOT_READY) return false;  // ask again
  if (reply.header.kind() != wire::REPLY_PARAMS) {
    return data_loss(name(ps) + " answered PULL with " + wire::Kind_Name(reply.header.kind()));
  }
  const auto& mine = placement_->chunks_of_ps[static_cast<size_t>(ps)];
  if (reply.num_frames() != mine.size()) {
    return data_loss(name(ps) + " sent " + std::to_string(reply.num_frames()) +
                     " chunks, expected " + std::to_string(mine.size()));
  }
  for (size_t i = 0; i < mine.size(); ++i) {
    const Chunk& c = placement_->chunks[static_cast<size_t>(mine[i])];
    if (reply.frame_info(i).key() != c.key) {
      return data_loss(name(ps) + " sent chunk '" + reply.frame_info(i).key() + "' where '" +
                       c.key + "' was expected");
    }
    PSTRAIN_RETURN_IF_ERROR(reply.copy_frame_f32(
        i, flat.subspan(static_cast<size_t>(c.flat_offset), static_cast<size_t>(c.count))));
  }
  steps[static_cast<size_t>(ps)] = reply.header.step();
  return true;
}

Result<PsSteps> PsClient::pull(std::span<float> flat, int64_t min_step) {
  return pull(flat, PsSteps(ps_.size(), min_step));
}

Result<PsSteps> PsClient::pull(std::span<float> flat, const PsSteps& min_steps) {
  if (min_steps.size() != ps_.size()) {
    return invalid_argument("pull needs one minimum step per parameter server");
  }
  PsSteps steps(ps_.size(), 0);
  PsSteps mins = min_steps;
  Status st = exchange(
      all_ps(),
      [&](int ps) {
        OutMessage m = request(wire::PULL);
        m.header.set_min_step(mins[static_cast<size_t>(ps)]);
        name_segment(m, ps, /*reply=*/true);
        return m;
      },
      [&](int ps, InMessage& reply) -> Result<bool> {
        return take_params(ps, reply, flat, mins, steps);
      },
      options_.reply_timeout, false);
  if (!st.ok()) return st;
  return steps;
}

Result<PushResult> PsClient::push(std::span<const float> flat_grads, const PsSteps& steps,
                                  std::shared_ptr<const void> owner) {
  return push_impl(flat_grads, steps, std::move(owner), nullptr);
}

Result<PushResult> PsClient::push_pull(std::span<const float> flat_grads, const PsSteps& steps,
                                       std::shared_ptr<const void> owner, std::span<float> flat,
                                       const PsSteps& min_steps, std::optional<PsSteps>* pulled) {
  pulled->reset();
  if (min_steps.size() != ps_.size()) {
    return invalid_argument("push_pull needs one minimum step per parameter server");
  }
  PullAlong along{.flat = flat, .mins = min_steps, .steps = PsSteps(ps_.size(), 0)};
  PSTRAIN_ASSIGN_OR_RETURN(PushResult result,
                           push_impl(flat_grads, steps, std::move(owner), &along));
  if (along.complete) *pulled = std::move(along.steps);
  return result;
}

Result<PushResult> PsClient::push_impl(std::span<const float> flat_grads, const PsSteps& steps,
                                       std::shared_ptr<const void> owner, PullAlong* along) {
  if (steps.size() != ps_.size()) {
    return invalid_argument("push needs one step per parameter server");
  }
  // --compress: narrow the gradients once into the 16-bit buffer, which the frames then borrow
  // (its keepalive holds it as `owner` holds the caller's buffer). After a successful push
  // ZeroMQ has let go of it (the wait below), so the next push reuses it without allocating.
  const FloatFormat format = options_.compression;
  std::span<const uint16_t> words;
  if (format != FloatFormat::kFloat32) {
    if (half_grads_ == nullptr) half_grads_ = std::make_shared<std::vector<uint16_t>>();
    half_grads_->resize(flat_grads.size());
    narrow_floats(format, flat_grads, *half_grads_);
    words = *half_grads_;
    owner = half_grads_;
  }
  auto tracker = std::make_shared<ReleaseTracker>();
  PushResult result;
  Status st = exchange(
      all_ps(),
      [&](int ps) {
        OutMessage m = request(wire::PUSH);
        m.header.set_step(steps[static_cast<size_t>(ps)]);
        if (along != nullptr) {
          m.header.set_then_pull(true);
          m.header.set_min_step(along->mins[static_cast<size_t>(ps)]);
        }
        if (const ShmSegment* seg = shm_[static_cast<size_t>(ps)].get(); seg != nullptr) {
          name_segment(m, ps, /*reply=*/along != nullptr);
          m.shm = {.base = seg->bytes().data(),
                   .offset = kShmHeaderBytes,
                   .size = shm_region_[static_cast<size_t>(ps)]};
        }
        std::shared_ptr<const void> keep = tracker->hold(
            format != FloatFormat::kFloat32 ? static_cast<const void*>(words.data())
                                            : static_cast<const void*>(flat_grads.data()),
            owner);
        for (int ci : placement_->chunks_of_ps[static_cast<size_t>(ps)]) {
          const Chunk& c = placement_->chunks[static_cast<size_t>(ci)];
          const size_t offset = static_cast<size_t>(c.flat_offset);
          const size_t count = static_cast<size_t>(c.count);
          if (format != FloatFormat::kFloat32) {
            m.frames.push_back(half_frame(c.key, format, words.subspan(offset, count), keep));
          } else {
            m.frames.push_back(f32_frame(c.key, flat_grads.subspan(offset, count), keep));
          }
        }
        return m;
      },
      [&](int ps, InMessage& reply) -> Result<bool> {
        if (ps == 0) result.global_step = reply.header.step();
        result.accepted = result.accepted && reply.header.accepted();
        if (along != nullptr) {
          // REPLY_OK: a PS that does not pull along; REPLY_NOT_READY: the gradient is taken,
          // the parameters are not there yet. Either way pull() asks for them.
          if (reply.header.kind() != wire::REPLY_PARAMS) {
            along->complete = false;
            return true;
          }
          PSTRAIN_ASSIGN_OR_RETURN(bool got,
                                   take_params(ps, reply, along->flat, along->mins, along->steps));
          along->complete = along->complete && got;
        }
        return true;
      },
      options_.reply_timeout, false);
  if (!st.ok()) {
    // ZeroMQ may still read the 16-bit buffer: the next push narrows into a new one (the
    // keepalives hold this one until ZeroMQ lets go).
    half_grads_.reset();
    // A failed exchange (a stop request, a PS that stopped answering) may leave a message in a
    // socket's queue for a PS that will never read it, borrowing the buffer for as long as the
    // socket lives: drop those messages by opening the sockets afresh, and give ZeroMQ a
    // moment to let go. The keepalive holds `owner` (the buffer) for as long as ZeroMQ may
    // still read it, so returning without waiting longer frees nothing early; the caller,
    // whose push failed, must not write into the buffer again (client.h).
    if (!tracker->wait(std::chrono::milliseconds(0))) {
      if (Status reopened = reopen_sockets(); !reopened.ok()) return reopened;
      (void)tracker->wait(std::chrono::milliseconds(100));
    }
    return st;
  }
  // The caller may reuse the buffer only once ZeroMQ let go of it.
  if (!tracker->wait(options_.reply_timeout)) {
    half_grads_.reset();
    return internal_error("ZeroMQ did not release a gradient buffer within " +
                          std::to_string(options_.reply_timeout.count() / 1000) + " s");
  }
  return result;
}

Status PsClient::reopen_sockets() {
  for (size_t i = 0; i < ps_.size(); ++i) {
    sockets_[i].close();
    // Secured as connect() secures them, with a handshake monitor of their own.
    PSTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<HandshakeMonitor> monitor,
                             HandshakeMonitor::create(*ctx_));
    SocketOptions so;
    so.curve = options_.keys.get();
    so.monitor_endpoint = monitor->endpoint();
    so.routing_id = session_ + "/r";  // the PS hands the routing id over to this connection
    so.send_timeout = kSendSlice;
    so.transport = transports_[i];
    PSTRAIN_ASSIGN_OR_RETURN(
        sockets_[i], connect_socket(*ctx_, zmq::socket_type::dealer, ps_[i].host, ps_[i].port,
                                    name(static_cast<int>(i)), so));
    monitors_[i] = std::move(monitor);
  }
  return {};
}

Status PsClient::done() {
  return exchange(
      all_ps(), [&](int) { return request(wire::DONE); },
      [](int, InMessage&) -> Result<bool> { return true; }, options_.reply_timeout, false);
}

Result<std::vector<std::optional<SavedShard>>> PsClient::save(const std::vector<int>& targets,
                                                              int64_t min_step) {
  std::vector<std::optional<SavedShard>> out(targets.size());
  Status st = exchange(
      targets,
      [&](int) {
        OutMessage m = request(wire::SAVE);
        m.header.set_min_step(min_step);
        return m;
      },
      [&](int ps, InMessage& reply) -> Result<bool> {
        const wire::Header& h = reply.header;
        if (!h.checkpoint_file().empty()) {
          const size_t at =
              static_cast<size_t>(std::find(targets.begin(), targets.end(), ps) - targets.begin());
          if (at < out.size()) {
            out[at] = SavedShard{.ps = ps,
                                 .file = h.checkpoint_file(),
                                 .bytes = h.checkpoint_bytes(),
                                 .crc32 = h.checkpoint_crc32(),
                                 .step = h.checkpoint_step()};
          }
        }
        return true;
      },
      options_.reply_timeout, false);
  if (!st.ok()) return st;
  return out;
}

Result<wire::PsStats> PsClient::status(int ps) {
  wire::PsStats stats;
  Status st = exchange(
      {ps}, [&](int) { return request(wire::STATUS); },
      [&](int, InMessage& reply) -> Result<bool> {
        stats = reply.header.stats();
        return true;
      },
      options_.reply_timeout, false);
  if (!st.ok()) return st;
  return stats;
}

std::string PsClient::heartbeat_failure() const {
  std::lock_guard<std::mutex> lock(failure_mu_);
  return heartbeat_failure_;
}

void PsClient::start_heartbeats() {
  if (heartbeat_.joinable()) return;
  heartbeat_stop_.store(false);
  heartbeat_ = std::thread([this] { heartbeat_loop(); });
}

void PsClient::stop_heartbeats() {
  heartbeat_stop_.store(true);
  if (heartbeat_.joinable()) heartbeat_.join();
}

void PsClient::heartbeat_loop() {
  std::vector<zmq::socket_t> sockets;
  for (size_t i = 0; i < ps_.size(); ++i) {
    SocketOptions so;
    so.curve = options_.keys.get();
    so.routing_id = session_ + "/h";
    so.transport = transports_[i];
    auto s = connect_socket(*ctx_, zmq::socket_type::dealer, ps_[i].host, ps_[i].port,
                            name(static_cast<int>(i)) + " heartbeat", so);
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(failure_mu_);
      heartbeat_failure_ = s.status().message();
      return;
    }
    sockets.push_back(std::move(s).value());
  }
  std::vector<Clock::time_point> last_answer(ps_.size(), Clock::now());
  uint64_t request_id = 0;
  auto next_beat = Clock::now();
  while (!heartbeat_stop_.load()) {
    const auto now = Clock::now();
    if (now >= next_beat) {
      ++request_id;
      for (auto& s : sockets) {
        OutMessage m = request(wire::HEARTBEAT);
        m.header.set_request_id(request_id);
        Status st = send_message(s, std::move(m));
        if (!st.ok() && st.code() == StatusCode::kCancelled) return;
      }
      next_beat = now + std::min<std::chrono::milliseconds>(options_.heartbeat_interval,
                                                            options_.reply_timeout / 4);
    }
    for (size_t i = 0; i < sockets.size(); ++i) {
      while (true) {
        auto reply = recv_message(sockets[i], std::chrono::milliseconds(0), false, options_.job_id);
        if (!reply.ok()) {
          if (reply.status().code() == StatusCode::kCancelled) return;
          break;
        }
        last_answer[i] = Clock::now();
      }
      if (Clock::now() - last_answer[i] > options_.reply_timeout) {
        std::lock_guard<std::mutex> lock(failure_mu_);
        if (heartbeat_failure_.empty()) {
          heartbeat_failure_ = name(static_cast<int>(i)) + " stopped answering heartbeats for " +
                               std::to_string(options_.reply_timeout.count() / 1000) + " s";
        }
      }
    }
    // Wait for a reply or the next beat, whichever comes first (bounded: at most one
    // heartbeat interval, and the stop flag is checked every 100 ms).
    std::vector<zmq::pollitem_t> items;
    for (auto& s : sockets) items.push_back({static_cast<void*>(s), 0, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
    }
  }
}

}  // namespace pstrain
