#include "ps/client.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <type_traits>
#include <utility>

#include "kernels/optim.h"
#include "runtime/base/log.h"
#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

// The request sockets' send timeout: a send that cannot be queued returns after this, so the
// handshake monitor is read between tries (exchange()).
constexpr std::chrono::milliseconds kSendSlice{50};

// Keeps what a ZeroMQ I/O thread may still read (the header bytes and buffers of a request
// that was never answered, borrowed without copying: runtime/wire/message.h) for as long as
// the process lives: a failed request's socket is closed, but ZeroMQ may finish writing the
// message it had started. Only failures add to it (a few bytes of header, and a reference to
// a gradient buffer the caller owns anyway).
void keep_until_exit(std::shared_ptr<const void> p) {
  static std::mutex mu;
  static auto* kept = new std::vector<std::shared_ptr<const void>>();  // reachable: no leak
  std::lock_guard<std::mutex> lock(mu);
  kept->push_back(std::move(p));
}

const std::string kNoSecretFile;

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
      incarnation_(ps_.size(), 0),
      reply_cursor_(ps_.size()),
      reply_lanes_(ps_.size(), 0),
      held_parts_(ps_.size()),
      send_buffers_(ps_.size()),
      answered_(ps_.size(), 1),
      push_out_(ps_.size()),
      part_sent_(ps_.size()),
      parts_sent_(ps_.size(), 0),
      parts_given_up_(ps_.size(), 0),
      part_out_(ps_.size()),
      part_buffers_(ps_.size()),
      first_send_(ps_.size(), 1),
      lanes_(ps_.size()),
      stripe_out_(ps_.size()),
      stripe_buffers_(ps_.size()),
      stripes_sent_(ps_.size(), 0) {
  // The reused reply and the held parts' messages trade places (hold_if_early, take_held):
  // each has room for a reply's frames from the start, so none grows in the steady state.
  // (Its header too: a cleared repeated field keeps its elements for the next parse.)
  const auto make_room = [](InMessage& m) {
    m.frames.reserve(kInMessageReservedParts);
    for (size_t k = 0; k < kInMessageReservedParts; ++k) {
      m.header.add_frames()->set_key(std::string(64, 'k'));  // (chunk keys are shorter)
    }
    m.header.Clear();
  };
  make_room(reply_);
  for (HeldParts& h : held_parts_) {
    for (InMessage& m : h.parts) make_room(m);
  }
  for (size_t i = 0; i < ps_.size(); ++i) {
    all_ps_.push_back(static_cast<int>(i));
    names_.push_back("parameter server ps/" + std::to_string(i) + " at " + ps_[i].to_string());
  }
  std::random_device rd;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%08x%08x", rd(), rd());
  session_ = std::string(kSessionPrefix) + std::to_string(options_.worker) + "/" + hex;
}

PsClient::~PsClient() {
  stop_heartbeats();
  retire_unanswered(nullptr);
  retire_parts();
  retire_stripes(nullptr);
}

void PsClient::retire_stripes(std::shared_ptr<const void> owner) {
  bool any = false;
  for (size_t i = 0; i < ps_.size(); ++i) {
    if (stripes_sent_[i] == 0) continue;
    for (uint32_t k = 0; k < stripes_sent_[i]; ++k) {
      SendBuffers& b = stripe_buffers_[i][k];
      keep_until_exit(std::make_shared<std::vector<std::byte>>(std::move(b.header_bytes)));
      b.header_bytes = {};
    }
    stripes_sent_[i] = 0;
    any = true;
    {
      for (zmq::socket_t& lane : lanes_[i]) {
        lane.set(zmq::sockopt::linger, 0);
        lane.close();
      }
      lanes_[i].clear();
    }
  }
  stripes_resent_ = false;
  if (!any) return;
  if (owner != nullptr) keep_until_exit(std::move(owner));
  if (half_grads_ != nullptr) {
    keep_until_exit(std::move(half_grads_));
    half_grads_ = nullptr;
  }
}

uint32_t PsClient::send_stripes(size_t ps, OutMessage& m, size_t value_bytes, uint64_t request_id) {
  stripes_sent_[ps] = 0;
  uint64_t total = 0;  // elements in m
  for (const OutFrame& f : m.frames) total += f.count;
  const uint64_t min_bytes = std::max<uint64_t>(options_.min_stripe_bytes, 1);
  const uint64_t k = std::min<uint64_t>({static_cast<uint64_t>(std::max(options_.push_stripes, 1)),
                                         kMaxPushStripes, total * value_bytes / min_bytes});
  if (k < 2) return 0;
  std::vector<zmq::socket_t>& lanes = lanes_[ps];
  if (lanes.size() + 1 < k) {
    for (zmq::socket_t& lane : lanes) lane.close();
    lanes.clear();
    for (uint64_t l = 1; l < k; ++l) {
      SocketOptions so;
      so.curve = options_.keys.get();
      so.routing_id = session_ + "/r" + std::to_string(l);
      so.send_timeout = std::chrono::milliseconds(0);
      so.transport = Transport::kTcp;
      auto lane = connect_socket(*ctx_, zmq::socket_type::dealer, ps_[ps].host, ps_[ps].port,
                                 name(static_cast<int>(ps)), so);
      if (!lane.ok()) {
        PSTRAIN_LOG(WARNING) << "no further connection to " << name(static_cast<int>(ps))
                             << " for striping: " << lane.status().message();
        lanes.clear();
        return 0;
      }
      lanes.push_back(std::move(lane).value());
    }
    stripe_out_[ps].resize(lanes.size());
    stripe_buffers_[ps].resize(lanes.size());
  }
  // Replies a PS sends on these connections (an error about a stripe, a liveness probe) are
  // not waited for: the push's own reply says how it went.
  for (zmq::socket_t& lane : lanes) {
    zmq::message_t junk;
    while (lane.recv(junk, zmq::recv_flags::dontwait)) {
    }
  }
  // Stripe l holds m's elements [bound(l), bound(l + 1)), counted over its frames in order.
  const auto bound = [&](uint64_t l) { return total * l / k; };
  uint32_t sent = 0;
  for (uint64_t l = 1; l < k; ++l) {
    OutMessage& s = stripe_out_[ps][l - 1];
    size_t n = 0;
    uint64_t at = 0;
    for (const OutFrame& f : m.frames) {
      const uint64_t first = std::max(at, bound(l));
      const uint64_t last = std::min(at + f.count, bound(l + 1));
      if (first < last) {
        if (s.frames.size() <= n) s.frames.resize(n + 1);
        OutFrame& o = s.frames[n++];
        if (o.key != f.key) o.key = f.key;
        o.dtype = f.dtype;
        o.data = static_cast<const std::byte*>(f.data) + (first - at) * value_bytes;
        o.count = last - first;
        o.offset = f.offset + (first - at);
        o.keepalive = nullptr;
        o.borrowed = true;  // read by ZeroMQ until the PS answers the push's last part
      }
      at += f.count;
    }
    s.frames.resize(n);  // (shrinking: no allocation)
    wire::Header& h = s.header;
    h.set_kind(wire::PUSH);
    h.set_job_id(options_.job_id);
    h.set_sender(options_.worker);
    h.set_step(m.header.step());
    h.set_more_parts(true);
    h.set_request_id(request_id);
    s.shm = {};
    SendBuffers& b = stripe_buffers_[ps][l - 1];
    // Borrow only when the PS answered everything sent before (as push_part()).
    b.borrow = answered_[ps] != 0;
    const Status st = send_message(lanes[l - 1], s, b, nullptr, &counters_);
    if (!st.ok()) {
      // Not queued at once (a connection still being made, a full pipe): this stripe and
      // the ones after it go in the last part.
      PSTRAIN_LOG(DEBUG) << "a stripe for " << name(static_cast<int>(ps))
                         << " goes with the last part: " << st.message();
      break;
    }
    ++sent;
  }
  if (sent == 0) return 0;
  stripes_sent_[ps] = sent;
  push_stripes_total_ += sent;
  // m keeps its elements outside [bound(1), bound(1 + sent)).
  const uint64_t cut_from = bound(1);
  const uint64_t cut_to = bound(1 + sent);
  std::vector<OutFrame> kept;  // (only when a stripe was not sent: the last part has two
                               // ranges then)
  size_t n = 0;
  uint64_t at = 0;
  for (size_t j = 0; j < m.frames.size(); ++j) {
    OutFrame& f = m.frames[j];
    const uint64_t end = at + f.count;
    if (end <= cut_from) {
      if (n != j) m.frames[n] = f;
      ++n;
    } else if (at < cut_from) {
      if (n != j) m.frames[n] = f;
      m.frames[n].count = cut_from - at;
      ++n;
    }
    if (end > cut_to) {
      const uint64_t first = std::max(at, cut_to);
      OutFrame tail = f;
      tail.data = static_cast<const std::byte*>(f.data) + (first - at) * value_bytes;
      tail.count = end - first;
      tail.offset = f.offset + (first - at);
      kept.push_back(std::move(tail));
    }
    at = end;
  }
  m.frames.resize(n);
  for (OutFrame& f : kept) m.frames.push_back(std::move(f));
  return sent;
}

void PsClient::retire_parts() {
  bool any = false;
  for (size_t i = 0; i < ps_.size(); ++i) {
    for (uint32_t k = 0; k < parts_sent_[i]; ++k) {
      SendBuffers& b = part_buffers_[i][k];
      keep_until_exit(std::make_shared<std::vector<std::byte>>(std::move(b.header_bytes)));
      b.header_bytes = {};
      any = true;
    }
    parts_sent_[i] = 0;
    parts_given_up_[i] = 0;
    std::fill(part_sent_[i].begin(), part_sent_[i].end(), 0);
  }
  if (any && parts_owner_ != nullptr) keep_until_exit(std::move(parts_owner_));
  parts_owner_ = nullptr;
  if (any && half_grads_ != nullptr) {
    keep_until_exit(std::move(half_grads_));
    half_grads_ = nullptr;
  }
}

std::span<uint16_t> PsClient::half_buffer(size_t count) {
  if (half_grads_ == nullptr) half_grads_ = std::make_shared<std::vector<uint16_t>>();
  // (The same size push after push: no reallocation while parts borrow it.)
  if (half_grads_->size() != count) half_grads_->resize(count);
  return *half_grads_;
}

void PsClient::push_part(std::span<const float> flat_grads, const PsSteps& steps,
                         int64_t ready_from, std::shared_ptr<const void> owner) {
  if (steps.size() != ps_.size() ||
      flat_grads.size() < static_cast<size_t>(placement_->total_elements)) {
    return;
  }
  const FloatFormat format = options_.compression;
  std::span<uint16_t> words;
  if (format != FloatFormat::kFloat32) words = half_buffer(flat_grads.size());
  for (size_t i = 0; i < ps_.size(); ++i) {
    if (shm_[i] != nullptr) continue;  // nothing travels: the push names the segment
    const auto& mine = placement_->chunks_of_ps[i];
    std::vector<char>& sent = part_sent_[i];
    if (sent.size() != mine.size()) sent.assign(mine.size(), 0);
    if (part_out_[i].size() < mine.size()) {
      part_out_[i].resize(mine.size());
      part_buffers_[i].resize(mine.size());
    }
    if (parts_given_up_[i] != 0 || parts_sent_[i] >= mine.size()) continue;
    uint64_t ready_bytes = 0;
    for (size_t k = 0; k < mine.size(); ++k) {
      const Chunk& c = placement_->chunks[static_cast<size_t>(mine[k])];
      if (sent[k] == 0 && c.flat_offset >= ready_from) {
        ready_bytes += static_cast<uint64_t>(c.count) * sizeof(float);
      }
    }
    if (ready_bytes == 0 || ready_bytes < options_.min_push_part_bytes) continue;
    OutMessage& m = part_out_[i][parts_sent_[i]];
    size_t n = 0;
    for (size_t k = 0; k < mine.size(); ++k) {
      const Chunk& c = placement_->chunks[static_cast<size_t>(mine[k])];
      if (sent[k] != 0 || c.flat_offset < ready_from) continue;
      if (m.frames.size() <= n) m.frames.resize(n + 1);
      OutFrame& f = m.frames[n++];
      if (f.key != c.key) f.key = c.key;
      const auto offset = static_cast<size_t>(c.flat_offset);
      const auto count = static_cast<size_t>(c.count);
      f.dtype = wire_dtype(format);
      if (format != FloatFormat::kFloat32) {
        narrow_floats(format, flat_grads.subspan(offset, count), words.subspan(offset, count));
        f.data = words.data() + offset;
      } else {
        f.data = flat_grads.data() + offset;
      }
      f.count = count;
      f.keepalive = nullptr;
      f.borrowed = true;  // read by ZeroMQ until the PS answers the push's last part
    }
    m.frames.resize(n);  // (shrinking: no allocation)
    wire::Header& h = m.header;
    h.set_kind(wire::PUSH);
    h.set_job_id(options_.job_id);
    h.set_sender(options_.worker);
    h.set_step(steps[i]);
    h.set_more_parts(true);
    // The request id the push's last part to this PS will carry (exchange() numbers the
    // servers' requests in order): a PS's error about a part then fails the push.
    h.set_request_id(next_request_ + i);
    m.shm = {};
    SendBuffers& b = part_buffers_[i][parts_sent_[i]];
    // Borrow only when the PS answered everything sent before (then ZeroMQ is done with what
    // this buffer lent last time); one part's buffer is never reused within a push.
    b.borrow = answered_[i] != 0;
    const Status st = send_message(sockets_[i], m, b, nullptr, &counters_);
    if (!st.ok()) {
      // Not queued (a full pipe, a PS not connected): the push sends every chunk to this PS
      // (its parts_before 0 makes the PS drop the parts it got).
      PSTRAIN_LOG(DEBUG) << "a push part for " << name(static_cast<int>(i))
                         << " was not sent: " << st.message();
      parts_given_up_[i] = 1;
      continue;
    }
    for (size_t k = 0; k < mine.size(); ++k) {
      const Chunk& c = placement_->chunks[static_cast<size_t>(mine[k])];
      if (c.flat_offset >= ready_from) sent[k] = 1;
    }
    ++parts_sent_[i];
    ++push_parts_total_;
    if (parts_owner_ == nullptr) parts_owner_ = owner;
  }
}

const std::string& PsClient::name(int ps) const { return names_[static_cast<size_t>(ps)]; }

const std::string& PsClient::secret_file() const {
  return options_.keys ? options_.keys->secret_file : kNoSecretFile;
}

bool PsClient::retire_unanswered(std::shared_ptr<const void> owner) {
  bool any = false;
  for (size_t i = 0; i < ps_.size(); ++i) {
    if (answered_[i]) continue;
    any = true;
    // The vector's bytes stay where they are when it moves: the retired copy owns them.
    keep_until_exit(
        std::make_shared<std::vector<std::byte>>(std::move(send_buffers_[i].header_bytes)));
    send_buffers_[i].header_bytes = {};
    answered_[i] = 1;  // nothing borrowed is in flight from the fresh buffer
  }
  if (any && owner != nullptr) keep_until_exit(std::move(owner));
  return any;
}

PsClient::FlatInShm PsClient::flat_in_shm() const {
  if (ps_.size() != 1 || shm_[0] == nullptr || options_.compression != FloatFormat::kFloat32) {
    return {};
  }
  // PS 0's chunks must tile the flat layout in order, as a one-PS placement lays them out.
  int64_t next = 0;
  for (int ci : placement_->chunks_of_ps[0]) {
    const Chunk& c = placement_->chunks[static_cast<size_t>(ci)];
    if (c.flat_offset != next) return {};
    next += c.count;
  }
  const auto count = static_cast<size_t>(next);
  if (next != placement_->total_elements || count * sizeof(float) > shm_region_[0]) return {};
  const std::shared_ptr<ShmSegment>& seg = shm_[0];
  auto* request = reinterpret_cast<float*>(seg->bytes().data() + kShmHeaderBytes);
  auto* reply = reinterpret_cast<float*>(seg->bytes().data() + kShmHeaderBytes + shm_region_[0]);
  return {.gradients = {request, count},
          .parameters = {reply, count},
          .owner = std::shared_ptr<void>(seg, seg.get())};
}

void PsClient::name_segment(OutMessage& m, int ps, bool reply) const {
  const ShmSegment* seg = shm_[static_cast<size_t>(ps)].get();
  if (seg == nullptr) return;
  wire::ShmSegment* id = m.header.mutable_shm();
  id->set_pid(seg->pid());
  id->set_fd(seg->fd());
  id->set_token(seg->token());
  id->set_reply_offset(reply ? kShmHeaderBytes + shm_region_[static_cast<size_t>(ps)] : 0);
  id->set_reply_size(reply ? shm_region_[static_cast<size_t>(ps)] : 0);
}

OutMessage PsClient::request(wire::Kind kind) const {
  OutMessage m;
  m.header.set_kind(kind);
  m.header.set_job_id(options_.job_id);
  m.header.set_sender(options_.worker);
  return m;
}

template <class Make, class OnReply>
Status PsClient::exchange(const std::vector<int>& targets, Make&& make, OnReply&& on_reply,
                          std::chrono::milliseconds timeout, bool backoff) {
  Status st = exchange_impl(targets, make, on_reply, timeout, backoff);
  // A request left unanswered may still be read by ZeroMQ: its borrowed header bytes must
  // never be written or freed again.
  left_unanswered_ = !st.ok() && retire_unanswered(nullptr);
  return st;
}

template <class Make, class OnReply>
Status PsClient::exchange_impl(const std::vector<int>& targets, Make& make, OnReply& on_reply,
                               std::chrono::milliseconds timeout, bool backoff) {
  // Member vectors, cleared: their capacity stays, so a steady stream of requests allocates
  // nothing here.
  std::vector<Pending>& pending = pending_;
  pending.clear();
  // A request is queued in slices of kSendSlice (the sockets' send timeout) with the
  // handshake monitor read between them: while a PS refuses our handshake (another or no
  // secret) there is no peer to queue for, and the refusal must be reported at once, not
  // after the whole send timeout. `again`: a request asked anew (backoff, a silent PS); it
  // gets one slice, and one that cannot be queued now is asked again later.
  auto send = [&](Pending& p, bool again) -> Status {
    p.request_id = next_request_++;
    reply_lanes_[static_cast<size_t>(p.ps)] = 0;  // (make() sets it for a striped push_pull)
    zmq::socket_t& socket = sockets_[static_cast<size_t>(p.ps)];
    HandshakeMonitor& monitor = *monitors_[static_cast<size_t>(p.ps)];
    const auto send_deadline = Clock::now() + SocketOptions{}.send_timeout;
    Status st;
    while (true) {
      // make() returns a message of the caller's to send in place (the hot paths) or a fresh
      // one (kept in cold_out_ while it is sent).
      OutMessage* m = nullptr;
      if constexpr (std::is_lvalue_reference_v<std::invoke_result_t<Make&, int>>) {
        m = &make(p.ps);
      } else {
        cold_out_ = make(p.ps);
        m = &cold_out_;
      }
      p.kind = m->header.kind();
      m->header.set_request_id(p.request_id);
      p.sent = Clock::now();
      const size_t i = static_cast<size_t>(p.ps);
      // Borrow (no copy, no allocation) only when the PS answered everything sent before:
      // then ZeroMQ has finished with the bytes of the last borrowing send.
      send_buffers_[i].borrow = answered_[i] != 0;
      answered_[i] = 0;
      st = send_message(socket, *m, send_buffers_[i], nullptr, &counters_);
      if (st.ok()) return st;
      monitor.poll();
      if (auto why = monitor.refusal(options_.keys != nullptr, secret_file(), name(p.ps))) {
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
  if (WhileWaiting* w = std::exchange(while_waiting_, nullptr); w != nullptr) w->run();
  std::vector<zmq::pollitem_t>& items = poll_items_;
  std::vector<size_t>& index = poll_index_;
  std::vector<int>& lane_of = poll_lane_;
  while (true) {
    items.clear();
    index.clear();
    lane_of.clear();
    for (size_t i = 0; i < pending.size(); ++i) {
      if (pending[i].finished) continue;
      const auto ps = static_cast<size_t>(pending[i].ps);
      items.push_back({static_cast<void*>(sockets_[ps]), 0, ZMQ_POLLIN, 0});
      index.push_back(i);
      lane_of.push_back(-1);
      // (The stripes' connections too, when the PS may send parts of the reply there.)
      const size_t lanes = std::min<size_t>(reply_lanes_[ps], lanes_[ps].size());
      for (size_t l = 0; l < lanes; ++l) {
        items.push_back({static_cast<void*>(lanes_[ps][l]), 0, ZMQ_POLLIN, 0});
        index.push_back(i);
        lane_of.push_back(static_cast<int>(l));
      }
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
      if (auto why = m.refusal(options_.keys != nullptr, secret_file(), name(p.ps))) {
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
      if (p.finished) continue;  // (a part on a lane after the last one came)
      const auto ps = static_cast<size_t>(p.ps);
      const ShmResolver& shm = shm_resolvers_[ps];
      InMessage& msg = reply_;
      const bool on_lane = lane_of[k] >= 0;
      Status got =
          recv_message_into(on_lane ? lanes_[ps][static_cast<size_t>(lane_of[k])] : sockets_[ps],
                            std::chrono::milliseconds(0), false, options_.job_id, msg, &counters_,
                            shm && !on_lane ? &shm : nullptr);
      if (!got.ok()) {
        if (got.code() == StatusCode::kDeadlineExceeded) continue;
        if (got.code() == StatusCode::kCancelled) return got;
        PSTRAIN_LOG(WARNING) << "dropped a bad reply from " << name(p.ps) << ": " << got.message();
        continue;
      }
      if (msg.header.request_id() != p.request_id) continue;  // an answer to an older try
      if (on_lane) {
        // Only parts of the reply come there (what else a PS sends on them, an error about a
        // stripe, is not waited for: the push's own reply says how it went).
        if (msg.header.kind() != wire::REPLY_PARAMS || !msg.header.more_parts()) continue;
        ++reply_parts_on_lanes_;
      }
      if (reply_lanes_[ps] > 0 && msg.header.kind() == wire::REPLY_PARAMS &&
          !msg.header.parts_lost() && hold_if_early(p.ps, p.request_id, msg)) {
        continue;
      }

      // The PS read the whole request, and every one sent before it on this socket.
      answered_[static_cast<size_t>(p.ps)] = 1;
      if (msg.header.kind() == wire::REPLY_ERROR &&
          msg.header.error().starts_with(kWorkerIndexInUse)) {
        if (p.in_use.empty()) {
          PSTRAIN_LOG(WARNING) << name(p.ps) << " refused " << wire::Kind_Name(p.kind) << ": "
                               << msg.header.error() << "; asking again until "
                               << "the old connection is gone";
        }
        p.in_use = msg.header.error();
        p.ask_again_at = Clock::now() + std::chrono::milliseconds(200);
        continue;
      }
      if (msg.header.kind() == wire::REPLY_ERROR &&
          msg.header.error().starts_with(kPushPartsMissing)) {
        // The PS lost the push's earlier parts (restarted between them): the whole push now.
        PSTRAIN_LOG(WARNING) << name(p.ps) << ": " << msg.header.error();
        PSTRAIN_RETURN_IF_ERROR(send(p, /*again=*/false));
        continue;
      }
      if (msg.header.kind() == wire::REPLY_ERROR) {
        return failed_precondition(name(p.ps) + " refused " + wire::Kind_Name(p.kind) + ": " +
                                   msg.header.error());
      }
      Result<bool> handled = on_reply(p.ps, msg);
      while (msg.header.more_parts() && handled.ok()) {
        // A part of a reply in parts (take_params()): the rest follows, or came before its turn
        // (then it is taken now).
        msg.frames.clear();
        if (!take_held(p.ps, p.request_id, msg)) break;
        handled = on_reply(p.ps, msg);
      }
      if (msg.header.more_parts() && handled.ok()) continue;
      // The reply's buffers go back now, not at the next receive: ZeroMQ's next large
      // receive buffer can then reuse them (runtime/base/allocator.h).
      msg.frames.clear();
      msg.shm_frames.clear();
      msg.shm_keep.reset();
      PSTRAIN_ASSIGN_OR_RETURN(bool finished, std::move(handled));
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

bool PsClient::hold_if_early(int ps, uint64_t request_id, InMessage& msg) {
  const ReplyCursor& at = reply_cursor_[static_cast<size_t>(ps)];
  const uint32_t turn = at.request_id == request_id ? at.parts : 0;
  const uint32_t index = msg.header.part_index();
  if (index <= turn || index >= kMaxReplyParts) return false;  // (take_params() judges it)
  HeldParts& h = held_parts_[static_cast<size_t>(ps)];
  if (h.request_id != request_id) {
    // (Parts of an older request, not taken: their buffers go now.)
    for (InMessage& held : h.parts) held.frames.clear();
    h.request_id = request_id;
    h.held = 0;
  }
  if ((h.held & (1u << index)) != 0) return false;  // twice: take_params() refuses it
  std::swap(h.parts[index], msg);  // (msg gets the slot's empty message, its capacity kept)
  h.held |= 1u << index;
  return true;
}

bool PsClient::take_held(int ps, uint64_t request_id, InMessage& msg) {
  HeldParts& h = held_parts_[static_cast<size_t>(ps)];
  const ReplyCursor& at = reply_cursor_[static_cast<size_t>(ps)];
  if (h.request_id != request_id || at.request_id != request_id) return false;
  const uint32_t turn = at.parts;
  if (turn >= kMaxReplyParts || (h.held & (1u << turn)) == 0) return false;
  std::swap(h.parts[turn], msg);
  h.held &= ~(1u << turn);
  return true;
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
  const bool more = reply.header.more_parts();
  ReplyCursor& at = reply_cursor_[static_cast<size_t>(ps)];
  if (at.request_id != reply.header.request_id()) at = {.request_id = reply.header.request_id()};
  if (!more && reply.header.parts_before() == 0 && at.parts == 0 &&
      reply.num_frames() != mine.size()) {
    return data_loss(name(ps) + " sent " + std::to_string(reply.num_frames()) +
                     " chunks, expected " + std::to_string(mine.size()));
  }
  if (!more && (reply.header.parts_before() != at.parts || reply.header.parts_lost())) {
    // A part did not come (a PS drops a reply its full send queue cannot take): ask again.
    PSTRAIN_LOG(DEBUG) << name(ps) << " sent the last of " << reply.header.parts_before() + 1
                       << " parts of its parameters after " << at.parts << "; asking again";
    at = {};
    return false;
  }
  for (size_t i = 0; i < reply.num_frames(); ++i) {
    if (at.chunk >= mine.size()) {
      return data_loss(name(ps) + " sent more parameters than its " + std::to_string(mine.size()) +
                       " chunks hold");
    }
    const Chunk& c = placement_->chunks[static_cast<size_t>(mine[at.chunk])];
    const wire::FrameInfo& f = reply.frame_info(i);
    if (f.key() != c.key) {
      return data_loss(name(ps) + " sent chunk '" + f.key() + "' where '" + c.key +
                       "' was expected");
    }
    const auto chunk_count = static_cast<uint64_t>(c.count);
    if (f.offset() != at.offset || f.count() > chunk_count - at.offset) {
      return data_loss(name(ps) + " sent elements [" + std::to_string(f.offset()) + ", " +
                       std::to_string(f.offset() + f.count()) + ") of chunk '" + c.key +
                       "' where [" + std::to_string(at.offset) + ", " +
                       std::to_string(chunk_count) + ") or a start of it was expected");
    }
    PSTRAIN_RETURN_IF_ERROR(reply.copy_frame_f32(
        i,
        flat.subspan(static_cast<size_t>(c.flat_offset) + static_cast<size_t>(at.offset),
                     static_cast<size_t>(f.count())),
        copy_parallel));
    at.offset += f.count();
    if (at.offset == chunk_count) {
      ++at.chunk;
      at.offset = 0;
    }
  }
  if (more) {
    ++at.parts;
    ++reply_parts_total_;
    return false;
  }
  if (at.chunk != mine.size()) {
    return data_loss(name(ps) + " sent parameters that end in chunk " + std::to_string(at.chunk) +
                     " of its " + std::to_string(mine.size()));
  }
  at = {};
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
        m.header.set_reply_part_bytes(options_.reply_part_bytes);
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
                                       const PsSteps& min_steps, PsSteps& pulled,
                                       ParametersArrived* arrived, WhileWaiting* while_waiting) {
  if (min_steps.size() != ps_.size()) {
    return invalid_argument("push_pull needs one minimum step per parameter server");
  }
  along_mins_.assign(min_steps.begin(), min_steps.end());  // same size each step: no allocation
  pulled.assign(ps_.size(), 0);
  along_done_.assign(ps_.size(), 0);
  // Where earlier requests' replies stopped says nothing of this one's (tell_arrived()).
  for (ReplyCursor& at : reply_cursor_) at = {};
  PullAlong along{.flat = flat, .mins = along_mins_, .steps = pulled, .arrived = arrived};
  while_waiting_ = while_waiting;
  Result<PushResult> pushed = push_impl(flat_grads, steps, std::move(owner), &along);
  while_waiting_ = nullptr;  // (not run when a request could not be sent)
  PSTRAIN_ASSIGN_OR_RETURN(PushResult result, std::move(pushed));
  result.pulled = along.complete;
  return result;
}

void PsClient::tell_arrived(PullAlong& along) {
  if (along.arrived == nullptr) return;
  // Each PS's chunks lie in flat order and its reply fills them in order (reply_cursor_): all
  // of flat below the first element some PS has still to send is in.
  int64_t until = placement_->total_elements;
  for (size_t ps = 0; ps < ps_.size(); ++ps) {
    if (along_done_[ps] != 0) continue;
    const ReplyCursor& at = reply_cursor_[ps];
    const auto& mine = placement_->chunks_of_ps[ps];
    if (at.chunk >= mine.size()) continue;
    const Chunk& c = placement_->chunks[static_cast<size_t>(mine[at.chunk])];
    until = std::min(until, c.flat_offset + static_cast<int64_t>(at.offset));
  }
  if (until < along.told) {
    // A PS's reply started again (its cursor went back): what was told may be overwritten.
    along.told = 0;
    along.arrived->restarted();
  }
  if (until > along.told) {
    along.told = until;
    along.arrived->arrived(until);
  }
}

Result<PushResult> PsClient::push_impl(std::span<const float> flat_grads, const PsSteps& steps,
                                       std::shared_ptr<const void> owner, PullAlong* along) {
  if (steps.size() != ps_.size()) {
    return invalid_argument("push needs one step per parameter server");
  }
  if (!placement_->chunks.empty() &&
      flat_grads.size() < static_cast<size_t>(placement_->total_elements)) {
    return invalid_argument("push: " + std::to_string(flat_grads.size()) +
                            " gradient values for a model of " +
                            std::to_string(placement_->total_elements));
  }
  // --compress: the gradients are narrowed into the 16-bit buffer, which the frames then borrow,
  // chunk by chunk as their first send takes them (push_part() narrowed those it sent). Once
  // every PS answered, ZeroMQ has finished with it, so the next push reuses it.
  const FloatFormat format = options_.compression;
  std::span<uint16_t> words;
  if (format != FloatFormat::kFloat32) words = half_buffer(flat_grads.size());
  PushResult result;
  std::fill(first_send_.begin(), first_send_.end(), 1);
  Status st = exchange(
      all_ps(),
      [&](int ps) -> OutMessage& {
        // PS `ps`'s PUSH, rewritten in place: the same fields every time, the frame table's
        // keys and sizes unchanged after the first push, only steps and pointers new.
        OutMessage& m = push_out_[static_cast<size_t>(ps)];
        wire::Header& h = m.header;
        h.set_kind(wire::PUSH);
        h.set_job_id(options_.job_id);
        h.set_sender(options_.worker);
        h.set_step(steps[static_cast<size_t>(ps)]);
        h.set_then_pull(along != nullptr);
        h.set_min_step(along != nullptr ? along->mins[static_cast<size_t>(ps)] : 0);
        h.set_reply_part_bytes(along != nullptr ? options_.reply_part_bytes : 0);
        // After push_part(): the push's first send carries the chunks not sent yet; a later
        // one (the PS lost the parts) every chunk.
        const size_t i = static_cast<size_t>(ps);
        const bool first = first_send_[i] != 0;
        const bool rest = first && parts_sent_[i] > 0 && parts_given_up_[i] == 0;
        first_send_[i] = 0;
        if (part_sent_[i].size() != mine_count(i)) part_sent_[i].assign(mine_count(i), 0);
        h.set_more_parts(false);
        h.set_parts_before(rest ? parts_sent_[i] : 0);
        h.set_parts_elsewhere(0);
        h.set_reply_lanes(0);
        if (!first && stripes_sent_[i] > 0) stripes_resent_ = true;
        m.shm = {};
        if (const ShmSegment* seg = shm_[static_cast<size_t>(ps)].get(); seg != nullptr) {
          name_segment(m, ps, /*reply=*/along != nullptr);
          m.shm = {.base = seg->bytes().data(),
                   .offset = kShmHeaderBytes,
                   .size = shm_region_[static_cast<size_t>(ps)],
                   .copy = copy_parallel};
        }
        const auto& mine = placement_->chunks_of_ps[static_cast<size_t>(ps)];
        m.frames.resize(mine.size());
        size_t n = 0;
        for (size_t k = 0; k < mine.size(); ++k) {
          if (rest && part_sent_[i][k] != 0) continue;
          const Chunk& c = placement_->chunks[static_cast<size_t>(mine[k])];
          const size_t offset = static_cast<size_t>(c.flat_offset);
          const size_t count = static_cast<size_t>(c.count);
          OutFrame& f = m.frames[n++];
          if (f.key != c.key) f.key = c.key;
          if (format != FloatFormat::kFloat32 && first && part_sent_[i][k] == 0) {
            narrow_floats(format, flat_grads.subspan(offset, count), words.subspan(offset, count));
          }
          f.dtype = wire_dtype(format);
          f.data = format != FloatFormat::kFloat32
                       ? static_cast<const void*>(words.data() + offset)
                       : static_cast<const void*>(flat_grads.data() + offset);
          f.count = count;
          f.offset = 0;
          f.keepalive = nullptr;
          // Read by ZeroMQ in place until the PS answers (runtime/wire/message.h).
          f.borrowed = true;
        }
        m.frames.resize(n);
        if (first && transports_[i] == Transport::kTcp && options_.push_stripes > 1 && n > 0) {
          // (exchange() numbered this request just before asking for it.)
          const uint32_t striped = send_stripes(i, m, float_format_size(format), next_request_ - 1);
          h.set_parts_before(h.parts_before() + striped);
          h.set_parts_elsewhere(striped);
          // The reply's parts may come back over the stripes' connections too.
          if (along != nullptr && options_.reply_part_bytes > 0) h.set_reply_lanes(striped);
        }
        reply_lanes_[i] = h.reply_lanes();
        return m;
      },
      [&](int ps, InMessage& reply) -> Result<bool> {
        if (reply.header.more_parts()) {
          // A part of the parameters (exchange() waits on for the rest).
          if (along == nullptr || reply.header.kind() != wire::REPLY_PARAMS) return false;
          Result<bool> taken = take_params(ps, reply, along->flat, along->mins, along->steps);
          if (taken.ok()) tell_arrived(*along);
          return taken;
        }
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
          along_done_[static_cast<size_t>(ps)] = got ? 1 : 0;
          tell_arrived(*along);
        }
        return true;
      },
      options_.reply_timeout, false);
  if (!st.ok() || stripes_resent_) retire_stripes(owner);
  if (!st.ok()) {
    retire_parts();
    // A failed exchange (a stop request, a PS that stopped answering) may leave a message in a
    // socket's queue for a PS that will never read it, borrowing the gradients (or the 16-bit
    // copy) for as long as the socket lives: those buffers are kept alive (the caller, whose
    // push failed, must not write into its buffer again: client.h), and the sockets opened
    // afresh, which drops such messages.
    if (left_unanswered_) {
      if (half_grads_ != nullptr) {
        keep_until_exit(std::move(half_grads_));
        half_grads_ = nullptr;
      }
      if (owner != nullptr) keep_until_exit(std::move(owner));
      if (Status reopened = reopen_sockets(); !reopened.ok()) return reopened;
    }
    return st;
  }
  // Every PS answered: ZeroMQ has finished with what the parts and stripes borrowed.
  for (size_t i = 0; i < ps_.size(); ++i) {
    stripes_sent_[i] = 0;
    parts_sent_[i] = 0;
    parts_given_up_[i] = 0;
    std::fill(part_sent_[i].begin(), part_sent_[i].end(), 0);
  }
  parts_owner_ = nullptr;
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
