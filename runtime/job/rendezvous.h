// The rendezvous of rank-based schedulers: tasks that know only their rank (Slurm, Open MPI,
// PMI) or their role (DMLC) find each other without a host list.
//
// Contract
// - One process serves (RendezvousServer: rank 0 in a thread, or DMLC's scheduler role) on a
//   known address. Every task first binds its own port (port 0, read back), then calls
//   rendezvous_register with (job, index or -1, host, port); it gets the whole cluster back
//   once every task of the job has registered. A task with index -1 (DMLC) gets the next free
//   index of its job, in arrival order; a registration sent again (same token) keeps its slot.
// - While tasks are missing, server and tasks log every `log_every` (10 s) which ranks are
//   missing ("waiting for rank 3 (worker 2): 3 of 4 arrived"). At the deadline the server
//   tells every registered task that it failed, naming the missing ranks, and returns
//   kDeadlineExceeded; a task that hears nothing returns kDeadlineExceeded by its own deadline
//   (a little after the server's), naming what it last heard.
// - Bytes from the network never abort: a message that does not parse, has another version,
//   or is inconsistent (other cluster size, index out of range, a rank taken by another task,
//   a bad host:port) is logged and counted, and the sender gets a FAILED naming the problem.
// - The CLUSTER a task receives is checked (sizes, every host:port) before it is used.
// - With the job's keys (a --secret_file), the rendezvous is CURVE-encrypted like the PS
//   connections: the server admits only clients holding the job's client key (a ZAP handler
//   in its own context), so nobody outside the job can register a task, read the cluster or
//   make it fail. A task without the secret, or with another one, gets kInvalidArgument
//   saying so as soon as the handshake is refused (HandshakeMonitor::refusal).
// Thread-safety: a RendezvousServer is used by one thread (serve() may run on its own thread;
// nothing else touches it meanwhile). rendezvous_register is reentrant.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/job/cluster.h"

namespace pstrain {

struct JobKeys;  // runtime/wire/security.h

struct RendezvousOptions {
  HostPort address;  // where the server listens and tasks connect
  int num_ps = 1;
  int num_workers = 1;
  // Ranks are numbered ps first (rank r < num_ps is ps r, else worker r - num_ps); log lines
  // and errors name tasks as "rank 3 (worker 2)". False (DMLC): "worker 2".
  bool ranked = true;
  std::chrono::milliseconds deadline{300000};  // from the start of serve()/register
  std::chrono::milliseconds log_every{10000};
  std::chrono::milliseconds resend_every{2000};  // tasks re-send REGISTER this often
  // The job's keys (runtime/wire/security.h): CURVE with a ZAP handler when set; nullptr: plain.
  std::shared_ptr<const JobKeys> keys = nullptr;
};

// "rank 3 (worker 2)" or "worker 2".
std::string rendezvous_task_name(const RendezvousOptions& o, JobName job, int index);

class RendezvousServer {
 public:
  // Binds the address (a loopback host binds only loopback, others every interface; see
  // runtime/wire/transport.h). A port in use is an error naming it.
  static Result<std::unique_ptr<RendezvousServer>> create(const RendezvousOptions& options);
  ~RendezvousServer();
  RendezvousServer(const RendezvousServer&) = delete;
  RendezvousServer& operator=(const RendezvousServer&) = delete;

  // Serves until every task has been sent the cluster (ok) or the deadline passed
  // (kDeadlineExceeded naming the missing ranks).
  Status serve();
  // Messages that were dropped or refused (tests).
  int bad_messages() const { return bad_messages_; }

 private:
  struct Impl;
  explicit RendezvousServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int bad_messages_ = 0;
};

struct RendezvousResult {
  ClusterSpec cluster;
  JobName job = JobName::kWorker;
  int task_index = 0;
};

// Registers this task (index -1: the server assigns one) served at `me`, and waits for the
// cluster. Errors: kDeadlineExceeded (missing tasks or no server), kInvalidArgument (the server
// refused the registration, or sent a cluster that does not check out), both naming the
// rendezvous address.
Result<RendezvousResult> rendezvous_register(const RendezvousOptions& options, JobName job,
                                             int index, const HostPort& me);

// A TCP port held for this process's life: a worker serves nothing, but every task of the
// cluster has its own host:port (and TF's workers do listen), so a worker binds one.
class PortReservation {
 public:
  // Binds port 0 on `host`'s interface (loopback hosts: 127.0.0.1; others: every interface).
  static Result<PortReservation> bind(const std::string& host);
  PortReservation(PortReservation&& o) noexcept : fd_(o.fd_), port_(o.port_) { o.fd_ = -1; }
  PortReservation& operator=(PortReservation&&) = delete;
  PortReservation(const PortReservation&) = delete;
  ~PortReservation();
  int port() const { return port_; }

 private:
  PortReservation(int fd, int port) : fd_(fd), port_(port) {}
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace pstrain
