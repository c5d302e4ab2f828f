#include "ps/status_query.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <sstream>

#include "runtime/wire/transport.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

// A connected worker silent this long is worth naming (heartbeats come every second or so).
constexpr int64_t kSilentMs = 5000;

std::string id_list(const std::vector<int>& ids) {
  std::ostringstream os;
  for (size_t i = 0; i < ids.size(); ++i) os << (i ? ", " : "") << ids[i];
  return os.str();
}

std::string workers_phrase(const std::vector<int>& ids) {
  return (ids.size() == 1 ? "worker " : "workers ") + id_list(ids);
}

std::string seconds_text(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", ms / 1000.0);
  return buf;
}

}  // namespace

const char* ps_worker_state_name(wire::PsWorker::State state) {
  switch (state) {
    case wire::PsWorker::NOT_SEEN:
      return "not seen";
    case wire::PsWorker::CONNECTED:
      return "connected";
    case wire::PsWorker::DONE:
      return "done";
    case wire::PsWorker::LOST:
      return "lost";
    default:
      return "unknown";
  }
}

std::vector<PsStatusAnswer> query_ps_status(zmq::context_t& ctx, const std::vector<HostPort>& ps,
                                            uint64_t job_id, std::chrono::milliseconds timeout,
                                            const JobKeys* keys) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  std::vector<PsStatusAnswer> answers(ps.size());
  std::vector<std::optional<zmq::socket_t>> sockets(ps.size());
  SocketOptions so;
  so.send_timeout = timeout;
  so.curve = keys;
  for (size_t i = 0; i < ps.size(); ++i) {
    PsStatusAnswer& a = answers[i];
    a.ps = static_cast<int>(i);
    a.address = ps[i];
    auto s = connect_socket(ctx, zmq::socket_type::dealer, ps[i].host, ps[i].port,
                            "ps/" + std::to_string(i) + " status", so);
    if (!s.ok()) {
      a.error = s.status().message();
      continue;
    }
    OutMessage m;
    m.header.set_kind(wire::STATUS);
    m.header.set_job_id(job_id);
    m.header.set_sender(-1);
    m.header.set_request_id(i + 1);
    Status st = send_message(*s, std::move(m));
    if (!st.ok()) {
      a.error = "cannot send STATUS: " + st.message();
      continue;
    }
    sockets[i] = std::move(s).value();
  }
  while (true) {
    std::vector<zmq::pollitem_t> items;
    std::vector<size_t> which;
    for (size_t i = 0; i < ps.size(); ++i) {
      if (!sockets[i] || answers[i].answered) continue;
      items.push_back({static_cast<void*>(*sockets[i]), 0, ZMQ_POLLIN, 0});
      which.push_back(i);
    }
    const auto now = Clock::now();
    if (items.empty() || now >= deadline) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    try {
      zmq::poll(items.data(), items.size(), std::max(left, std::chrono::milliseconds(1)));
    } catch (const zmq::error_t& e) {
      for (size_t k = 0; k < which.size(); ++k) answers[which[k]].error = e.what();
      break;
    }
    for (size_t k = 0; k < items.size(); ++k) {
      if (!(items[k].revents & ZMQ_POLLIN)) continue;
      PsStatusAnswer& a = answers[which[k]];
      auto reply = recv_message(*sockets[which[k]], std::chrono::milliseconds(0),
                                /*has_routing_id=*/false, job_id);
      if (!reply.ok()) {
        a.error = reply.status().message();  // a bad reply: keep waiting for a good one
        continue;
      }
      if (reply->header.kind() != wire::REPLY_OK) {
        a.error = "answered " + wire::Kind_Name(reply->header.kind()) +
                  (reply->header.error().empty() ? "" : ": " + reply->header.error());
        sockets[which[k]].reset();
        continue;
      }
      a.answered = true;
      a.error.clear();
      a.stats = reply->header.stats();
      a.reply_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    }
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    PsStatusAnswer& a = answers[i];
    if (a.answered || !sockets[i]) continue;
    a.error = "no answer within " + seconds_text(static_cast<double>(timeout.count())) +
              " (nothing listening there, the PS is hung, or it runs another job: check "
              "--job_id / --worker_hosts)" +
              (a.error.empty() ? "" : "; last reply: " + a.error);
  }
  return answers;
}

std::string describe_ps_progress(const PsStatusAnswer& a) {
  std::ostringstream os;
  os << "ps " << a.ps << " (" << a.address.to_string() << "): ";
  if (!a.answered) {
    os << a.error;
    return os.str();
  }
  const wire::PsStats& s = a.stats;
  std::vector<int> lost, not_seen, silent, done, parked, have;
  for (const wire::PsWorker& w : s.workers()) {
    switch (w.state()) {
      case wire::PsWorker::LOST:
        lost.push_back(w.index());
        break;
      case wire::PsWorker::NOT_SEEN:
        not_seen.push_back(w.index());
        break;
      case wire::PsWorker::DONE:
        done.push_back(w.index());
        break;
      case wire::PsWorker::CONNECTED:
        if (w.ms_since_seen() > kSilentMs) silent.push_back(w.index());
        break;
      default:
        break;
    }
    if (w.parked_pulls() > 0) parked.push_back(w.index());
    if (w.pending_gradient()) have.push_back(w.index());
  }
  std::vector<std::string> parts;
  if (!s.initialized()) {
    std::string p = "not initialised, waiting for the chief (worker 0) to send INIT";
    if (!parked.empty()) p += "; " + workers_phrase(parked) + " waiting to pull";
    parts.push_back(p);
  } else {
    std::string p = "step " + std::to_string(s.global_step());
    if (s.train_steps() > 0) p += " of " + std::to_string(s.train_steps());
    p += s.sync_replicas() ? ", sync" : ", async";
    parts.push_back(p);
    const int total = s.num_workers();
    if (s.train_steps() > 0 && s.global_step() >= s.train_steps()) {
      parts.push_back("training finished, " + std::to_string(s.workers_done()) + " of " +
                      std::to_string(total) + " workers done");
    } else if (s.sync_replicas() && s.replicas_to_aggregate() > 0) {
      const int need = s.replicas_to_aggregate() - s.gradients_pending();
      std::string w = "waiting for " + std::to_string(std::max(need, 0)) + " of " +
                      std::to_string(s.replicas_to_aggregate()) + " gradients for step " +
                      std::to_string(s.global_step());
      if (!have.empty()) w += " (have " + workers_phrase(have) + ")";
      parts.push_back(w);
    } else {
      parts.push_back(std::to_string(s.gradients_applied()) + " gradients applied");
      if (!parked.empty())
        parts.push_back(workers_phrase(parked) + " held back (bounded staleness)");
    }
  }
  if (s.stale_gradients_dropped() > 0)
    parts.push_back(std::to_string(s.stale_gradients_dropped()) + " dropped");
  if (!lost.empty()) parts.push_back(workers_phrase(lost) + " lost");
  if (!not_seen.empty()) parts.push_back(workers_phrase(not_seen) + " not connected yet");
  for (const wire::PsWorker& w : s.workers()) {
    if (std::find(silent.begin(), silent.end(), w.index()) != silent.end()) {
      parts.push_back("worker " + std::to_string(w.index()) + " silent for " +
                      seconds_text(static_cast<double>(w.ms_since_seen())));
    }
  }
  if (s.bad_messages() > 0) parts.push_back(std::to_string(s.bad_messages()) + " bad messages");
  if (s.foreign_messages() > 0)
    parts.push_back(std::to_string(s.foreign_messages()) + " messages of another job");
  for (size_t i = 0; i < parts.size(); ++i) os << (i == 0 ? "" : i == 1 ? ", " : "; ") << parts[i];
  return os.str();
}

}  // namespace pstrain
