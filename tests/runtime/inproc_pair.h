// A ROUTER and a DEALER (routing id "inproc-dealer") connected over inproc:// in a context of
// their own: messages are in the peer's queue as soon as send returns. For the message-layer
// tests (message_test.cc, shm_test.cc).
#pragma once

#include <string>

#include <zmq.hpp>

namespace pstrain::testing_util {

struct InprocPair {
  zmq::context_t ctx;
  zmq::socket_t router{ctx, zmq::socket_type::router};
  zmq::socket_t dealer{ctx, zmq::socket_type::dealer};

  explicit InprocPair(const std::string& name) {
    router.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::routing_id, "inproc-dealer");
    router.bind("inproc://" + name);
    dealer.connect("inproc://" + name);
  }
};

}  // namespace pstrain::testing_util
