// Asking parameter servers how they are: the STATUS request as a tool sends it, and the plain
// words `pstrain status` prints for a PS's answer.
//
// Contract
// - query_ps_status sends one STATUS (sender -1, a tool) to every PS at once and waits for the
//   answers until one shared deadline: it returns after at most about `timeout`, whatever the
//   servers do. A PS that does not answer in time is reported as not answering (nothing
//   listens there, it is hung, or it belongs to another job id or protocol version, which a
//   PS ignores); it is never an error of the call.
// - describe_ps_progress says what blocks progress, in one line: "ps 0: step 120 of 1000,
//   sync, waiting for 1 of 2 gradients (have worker 0's); worker 1 lost".
// Thread-safety: reentrant (each call uses its own sockets on the given context).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "runtime/job/cluster.h"
#include "runtime/wire/message.h"
#include "runtime/wire/security.h"

namespace pstrain {

struct PsStatusAnswer {
  int ps = 0;
  HostPort address;
  bool answered = false;
  std::string error;  // why not, when !answered
  wire::PsStats stats;
  double reply_ms = 0;  // how long the answer took
};

// With `keys` (runtime/wire/security.h), as a CURVE client of a job that has a secret.
std::vector<PsStatusAnswer> query_ps_status(zmq::context_t& ctx, const std::vector<HostPort>& ps,
                                            uint64_t job_id, std::chrono::milliseconds timeout,
                                            const JobKeys* keys = nullptr);

// One line: the PS's step, mode and what it waits for, then the workers that are lost,
// silent or not seen yet. For a PS that did not answer: "ps 1 (h:p): no answer: <error>".
std::string describe_ps_progress(const PsStatusAnswer& answer);

// Lower-case name of a worker state as a PS sees it: "not seen", "connected", "done", "lost".
const char* ps_worker_state_name(wire::PsWorker::State state);

}  // namespace pstrain
